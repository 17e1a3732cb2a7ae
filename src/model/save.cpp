// Saving a Model: as a Hugging Face directory (save_pretrained) or as one native file
// (save_native). Both write the same tensors under the same Hugging Face names.
#include <sys/stat.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>

#include "io/mmap_file.hpp"
#include "io/json_file.hpp"
#include "io/native_file.hpp"
#include "io/peft_files.hpp"
#include "io/safetensors_writer.hpp"
#include "kernels/isa.hpp"
#include "kernels/quant.hpp"
#include "model/model_impl.hpp"
#include "stackllama/error.hpp"
#include "util/log.hpp"
#include "util/thread_pool.hpp"

namespace stackllama {

namespace {

io::TensorDType tensor_dtype(kernels::WeightType t) {
    switch (t) {
        case kernels::WeightType::f32: return io::TensorDType::F32;
        case kernels::WeightType::f16: return io::TensorDType::F16;
        case kernels::WeightType::bf16: return io::TensorDType::BF16;
        case kernels::WeightType::q8: return io::TensorDType::Q8;
        case kernels::WeightType::q4: return io::TensorDType::Q4;
    }
    return io::TensorDType::F32;
}

struct NamedTensor {
    std::string name;
    const kernels::Matrix* matrix = nullptr;  // a weight matrix, or
    const std::vector<float>* vector = nullptr;  // a norm vector (f32)
};

// Every tensor of the model under its Hugging Face name, in checkpoint order.
std::vector<NamedTensor> model_tensors(const Model::Impl& m) {
    const LlamaWeights& w = m.weights;
    std::vector<NamedTensor> out;
    out.push_back({"model.embed_tokens.weight", &w.embed, nullptr});
    for (size_t l = 0; l < w.layers.size(); ++l) {
        const std::string p = "model.layers." + std::to_string(l) + ".";
        const LayerWeights& L = w.layers[l];
        out.push_back({p + "input_layernorm.weight", nullptr, &L.attn_norm});
        out.push_back({p + "self_attn.q_proj.weight", &L.wq, nullptr});
        out.push_back({p + "self_attn.k_proj.weight", &L.wk, nullptr});
        out.push_back({p + "self_attn.v_proj.weight", &L.wv, nullptr});
        out.push_back({p + "self_attn.o_proj.weight", &L.wo, nullptr});
        out.push_back({p + "post_attention_layernorm.weight", nullptr, &L.ffn_norm});
        out.push_back({p + "mlp.gate_proj.weight", &L.w_gate, nullptr});
        out.push_back({p + "mlp.up_proj.weight", &L.w_up, nullptr});
        out.push_back({p + "mlp.down_proj.weight", &L.w_down, nullptr});
    }
    out.push_back({"model.norm.weight", nullptr, &w.final_norm});
    if (w.score.data) {
        out.push_back({"score.weight", &w.score, nullptr});  // a reward model: no LM head
    } else if (!m.config.tie_word_embeddings) {
        out.push_back({"lm_head.weight", &w.lm_head, nullptr});
    }
    return out;
}

void make_dirs(const std::string& dir) {
    for (size_t i = 1; i <= dir.size(); ++i) {
        if (i == dir.size() || dir[i] == '/') {
            const std::string partial = dir.substr(0, i);
            if (!io::dir_exists(partial) && mkdir(partial.c_str(), 0755) != 0 && errno != EEXIST)
                throw Error(ErrorCode::io, "cannot create " + partial + ": " + std::strerror(errno));
        }
    }
}

void write_text(const std::string& path, const std::string& text) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(text.data(), static_cast<std::streamsize>(text.size()));
    if (!out) throw Error(ErrorCode::io, "cannot write " + path);
}

io::Json config_for_save(const Model::Impl& m, bool any_f32) {
    io::Json config = m.raw_config;
    config["tie_word_embeddings"] = m.config.tie_word_embeddings;
    if (any_f32) config["torch_dtype"] = "float32";
    return config;
}

}  // namespace

void Model::save_pretrained(const std::string& dir) const {
    const Impl& m = *impl_;
    make_dirs(dir);
    std::vector<io::TensorToWrite> out;
    bool any_f32 = false;
    for (const NamedTensor& t : model_tensors(m)) {
        if (t.matrix) {
            const kernels::Matrix& x = *t.matrix;
            if (kernels::weight_type_quantized(x.type)) {
                throw Error(ErrorCode::unsupported,
                            "save_pretrained: " + t.name + " is " +
                                kernels::weight_type_name(x.type) +
                                ", which safetensors cannot hold; save_native keeps quantized "
                                "weights (or load the model without weight_type to save it)");
            }
            any_f32 = any_f32 || x.type == kernels::WeightType::f32;
            out.push_back({t.name, tensor_dtype(x.type), {int64_t(x.rows), int64_t(x.cols)}, x.data});
        } else {
            out.push_back({t.name, io::TensorDType::F32, {int64_t(t.vector->size())},
                           t.vector->data()});
        }
    }
    write_text(io::join_path(dir, "config.json"), config_for_save(m, any_f32).dump(2) + "\n");
    io::write_safetensors(io::join_path(dir, "model.safetensors"), out);
    if (m.tokenizer) {
        write_text(io::join_path(dir, "tokenizer.model"), m.tokenizer->serialized_model());
        for (auto it = m.extra_files.begin(); it != m.extra_files.end(); ++it)
            write_text(io::join_path(dir, it.key()), it.value().dump(2) + "\n");
    }
}

void Model::save_native(const std::string& path, const NativeSaveOptions& options) const {
    const Impl& m = *impl_;
    if (options.zstd_level < 0 || options.zstd_level > 19)
        throw Error(ErrorCode::invalid_argument, "zstd_level must be 0..19, got " +
                                                     std::to_string(options.zstd_level));
    if (options.convert && !parse_dtype_name(dtype_name(options.type), nullptr))
        throw Error(ErrorCode::invalid_argument, "NativeSaveOptions.type is not a known DType (" +
                                                     std::to_string(int(options.type)) + ")");
    std::vector<io::NativeTensor> tensors;
    std::vector<std::string> kept;
    ThreadPool pool(options.n_threads > 0 ? options.n_threads : ThreadPool::default_threads());
    bool any_f32 = false;
    for (const NamedTensor& t : model_tensors(m)) {
        io::NativeTensor nt;
        nt.name = t.name;
        if (t.vector) {
            nt.dtype = io::TensorDType::F32;
            nt.shape = {int64_t(t.vector->size())};
            nt.nbytes = t.vector->size() * sizeof(float);
            nt.data = t.vector->data();
        } else {
            const kernels::Matrix& x = *t.matrix;
            nt.shape = {int64_t(x.rows), int64_t(x.cols)};
            kernels::WeightType want =
                options.convert ? static_cast<kernels::WeightType>(options.type) : x.type;
            if (!kernels::weight_type_fits(want, x.cols)) {
                kept.push_back(t.name);
                want = x.type;
            }
            nt.dtype = tensor_dtype(want);
            nt.nbytes = x.rows * kernels::row_bytes(want, x.cols);
            any_f32 = any_f32 || want == kernels::WeightType::f32;
            if (want == x.type) {
                nt.data = x.data;
            } else {
                // Widened to f32 and narrowed (round to nearest even) or quantized, a tensor at a
                // time while the writer asks for it.
                nt.produce = [&x, want, &pool]() {
                    kernels::OwnedMatrix c = kernels::convert_matrix(kernels::active(), x, want, pool);
                    const auto* p = static_cast<const uint8_t*>(c.m.data);
                    return std::vector<uint8_t>(p, p + c.m.bytes());
                };
            }
        }
        tensors.push_back(std::move(nt));
    }
    // Adapters kept unmerged: their PEFT tensors as stored, under a prefix per adapter, and
    // their configs in the index. What they mean is checked when they are loaded back
    // (bundled_adapters); stackllama-convert checks them against the model first.
    std::vector<io::TensorSet> adapter_sets;  // keep the adapters' bytes until written
    adapter_sets.reserve(options.adapters.size());
    io::Json adapters = io::Json::array();
    for (size_t k = 0; k < options.adapters.size(); ++k) {
        const auto& [dir, scale] = options.adapters[k];
        if (!std::isfinite(scale))
            throw Error(ErrorCode::invalid_argument, "adapter " + dir + ": scale is not finite");
        const std::string config_path = io::join_path(dir, "adapter_config.json");
        if (!io::file_exists(config_path))
            throw Error(ErrorCode::io, "missing adapter_config.json in " + dir);
        io::Json config = io::read_json_file(config_path);
        if (!config.is_object()) throw Error(ErrorCode::format, config_path + " is not an object");
        adapter_sets.push_back(io::open_adapter_weights(dir));
        const std::string prefix = "adapter." + std::to_string(k) + ".";
        for (const auto& [name, t] : adapter_sets.back().tensors()) {
            io::NativeTensor nt;
            nt.name = prefix + name;
            nt.dtype = t.dtype;
            nt.shape = t.shape;
            nt.nbytes = t.nbytes;
            nt.data = t.data;
            tensors.push_back(std::move(nt));
        }
        std::string name = dir;
        while (name.size() > 1 && name.back() == '/') name.pop_back();
        name = name.substr(name.find_last_of('/') == std::string::npos ? 0
                                                                        : name.find_last_of('/') + 1);
        adapters.push_back({{"name", name}, {"scale", scale}, {"config", config},
                            {"prefix", prefix}});
    }

    io::NativeWriteOptions wo;
    wo.adapters = adapters;
    wo.zstd_level = options.zstd_level;
    wo.n_threads = options.n_threads > 0 ? options.n_threads : ThreadPool::default_threads();
    wo.progress = options.progress;
    io::Json config = config_for_save(m, any_f32);
    if (options.convert && !any_f32 && !kernels::weight_type_quantized(
                                           static_cast<kernels::WeightType>(options.type)))
        config["torch_dtype"] = options.type == DType::bf16 ? "bfloat16" : "float16";
    if (!kept.empty())
        log::info(std::to_string(kept.size()) + " matrices keep their type in " + path +
                  " because " + dtype_name(options.type) +
                  " needs rows that are a multiple of 32 (first: " + kept[0] + ")");
    io::write_native(path, config, m.tokenizer ? m.tokenizer->serialized_model() : std::string(),
                     io::Json(), m.extra_files, tensors, wo);
}

}  // namespace stackllama
