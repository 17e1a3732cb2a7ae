// Model::save_pretrained: the model as a Hugging Face directory.
#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <fstream>

#include "io/mmap_file.hpp"
#include "io/safetensors_writer.hpp"
#include "model/model_impl.hpp"
#include "stackllama/error.hpp"

namespace stackllama {

namespace {

io::TensorDType tensor_dtype(kernels::WeightType t) {
    switch (t) {
        case kernels::WeightType::f32: return io::TensorDType::F32;
        case kernels::WeightType::f16: return io::TensorDType::F16;
        case kernels::WeightType::bf16: return io::TensorDType::BF16;
    }
    return io::TensorDType::F32;
}

void make_dirs(const std::string& dir) {
    std::string partial;
    for (size_t i = 0; i <= dir.size(); ++i) {
        if (i == dir.size() || dir[i] == '/') {
            partial = dir.substr(0, i);
            if (!partial.empty() && !io::dir_exists(partial) && mkdir(partial.c_str(), 0755) != 0 &&
                errno != EEXIST)
                throw Error(ErrorCode::io, "cannot create " + partial + ": " + std::strerror(errno));
        }
    }
}

void write_text(const std::string& path, const std::string& text) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(text.data(), static_cast<std::streamsize>(text.size()));
    if (!out) throw Error(ErrorCode::io, "cannot write " + path);
}

}  // namespace

void Model::save_pretrained(const std::string& dir) const {
    const Impl& m = *impl_;
    make_dirs(dir);
    const LlamaWeights& w = m.weights;
    std::vector<io::TensorToWrite> out;
    bool any_f32 = false;
    auto matrix = [&](const std::string& name, const kernels::Matrix& x) {
        any_f32 = any_f32 || x.type == kernels::WeightType::f32;
        out.push_back({name, tensor_dtype(x.type), {int64_t(x.rows), int64_t(x.cols)}, x.data});
    };
    auto vec = [&](const std::string& name, const std::vector<float>& v) {
        out.push_back({name, io::TensorDType::F32, {int64_t(v.size())}, v.data()});
    };
    matrix("model.embed_tokens.weight", w.embed);
    for (size_t l = 0; l < w.layers.size(); ++l) {
        const std::string p = "model.layers." + std::to_string(l) + ".";
        const LayerWeights& L = w.layers[l];
        vec(p + "input_layernorm.weight", L.attn_norm);
        matrix(p + "self_attn.q_proj.weight", L.wq);
        matrix(p + "self_attn.k_proj.weight", L.wk);
        matrix(p + "self_attn.v_proj.weight", L.wv);
        matrix(p + "self_attn.o_proj.weight", L.wo);
        vec(p + "post_attention_layernorm.weight", L.ffn_norm);
        matrix(p + "mlp.gate_proj.weight", L.w_gate);
        matrix(p + "mlp.up_proj.weight", L.w_up);
        matrix(p + "mlp.down_proj.weight", L.w_down);
    }
    vec("model.norm.weight", w.final_norm);
    if (!m.config.tie_word_embeddings) matrix("lm_head.weight", w.lm_head);

    io::Json config = m.raw_config;
    config["tie_word_embeddings"] = m.config.tie_word_embeddings;
    if (any_f32) config["torch_dtype"] = "float32";
    write_text(io::join_path(dir, "config.json"), config.dump(2) + "\n");
    io::write_safetensors(io::join_path(dir, "model.safetensors"), out);

    if (m.tokenizer) {
        write_text(io::join_path(dir, "tokenizer.model"), m.tokenizer->serialized_model());
        for (const char* f : {"tokenizer_config.json", "special_tokens_map.json",
                              "generation_config.json"}) {
            const std::string src = io::join_path(m.path, f);
            if (io::file_exists(src)) write_text(io::join_path(dir, f), io::read_text_file(src));
        }
    }
}

}  // namespace stackllama
