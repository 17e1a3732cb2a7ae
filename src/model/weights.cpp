#include "model/weights.hpp"

#include <cmath>
#include <cstring>

#include "stackllama/error.hpp"
#include "util/log.hpp"

namespace stackllama {

namespace {

class Loader {
public:
    Loader(const io::TensorSet& t, LlamaWeights& w) : tensors_(t), w_(w) {}

    const io::TensorInfo& find(const std::string& name) const {
        const io::TensorInfo* t = tensors_.find(name);
        if (!t) throw Error(ErrorCode::format, "missing tensor " + name + " in " + tensors_.origin);
        return *t;
    }

    static std::string shape_of(std::initializer_list<int64_t> dims) {
        std::string s = "[";
        size_t i = 0;
        for (int64_t d : dims) s += (i++ ? ", " : "") + std::to_string(d);
        return s + "]";
    }

    void check_shape(const io::TensorInfo& t, std::initializer_list<int64_t> dims) const {
        if (t.shape != std::vector<int64_t>(dims)) {
            throw Error(ErrorCode::format, "tensor " + t.name + " in " + t.file + " has shape " +
                                               t.shape_str() + ", but config.json implies " +
                                               shape_of(dims));
        }
    }

    static kernels::WeightType weight_type(const io::TensorInfo& t) {
        switch (t.dtype) {
            case io::TensorDType::F32: return kernels::WeightType::f32;
            case io::TensorDType::F16: return kernels::WeightType::f16;
            case io::TensorDType::BF16: return kernels::WeightType::bf16;
            case io::TensorDType::Q8: return kernels::WeightType::q8;
            case io::TensorDType::Q4: return kernels::WeightType::q4;
            default: break;
        }
        throw Error(ErrorCode::unsupported, "tensor " + t.name + " in " + t.file + " has dtype " +
                                                io::dtype_str(t.dtype) +
                                                "; stackllama reads F32, F16, BF16, Q8 and Q4");
    }

    kernels::Matrix matrix(const std::string& name, int64_t rows, int64_t cols) {
        const io::TensorInfo& t = find(name);
        check_shape(t, {rows, cols});
        kernels::Matrix m;
        m.type = weight_type(t);
        m.rows = static_cast<size_t>(rows);
        m.cols = static_cast<size_t>(cols);
        m.data = t.data;
        // Block types are read with unaligned loads but their f16 scales want 2 bytes; native
        // files align every tensor to 64 anyway.
        const size_t align = kernels::weight_type_quantized(m.type)
                                 ? 2
                                 : kernels::weight_type_size(m.type);
        if (reinterpret_cast<uintptr_t>(t.data) % align != 0) {
            // safetensors does not promise aligned offsets; elements must be, so copy.
            auto copy = std::shared_ptr<uint8_t[]>(new uint8_t[t.nbytes + 64]);
            uint8_t* p = copy.get() + (64 - reinterpret_cast<uintptr_t>(copy.get()) % 64) % 64;
            std::memcpy(p, t.data, t.nbytes);
            m.data = p;
            w_.owners.push_back(std::shared_ptr<const void>(copy, copy.get()));
            log::debug("tensor " + name + " is misaligned in " + t.file + "; copied");
        }
        w_.matrix_bytes += t.nbytes;
        return m;
    }

    std::vector<float> vector(const std::string& name, int64_t n) {
        const io::TensorInfo& t = find(name);
        check_shape(t, {n});
        kernels::Matrix m{weight_type(t), nullptr, 1, static_cast<size_t>(n)};
        if (kernels::weight_type_quantized(m.type)) {
            throw Error(ErrorCode::unsupported, "tensor " + name + " in " + t.file + " is " +
                                                    io::dtype_str(t.dtype) +
                                                    "; norm vectors must be F32, F16 or BF16");
        }
        std::vector<float> out(static_cast<size_t>(n));
        // Read element by element through memcpy: the bytes may be unaligned.
        const size_t es = kernels::weight_type_size(m.type);
        for (size_t i = 0; i < out.size(); ++i) {
            if (m.type == kernels::WeightType::f32) {
                std::memcpy(&out[i], t.data + i * es, 4);
            } else {
                uint16_t h;
                std::memcpy(&h, t.data + i * es, 2);
                out[i] = m.type == kernels::WeightType::f16 ? kernels::f16_to_f32(h)
                                                            : kernels::bf16_to_f32(h);
            }
            // The vectors are read here anyway: a non-finite value would poison every token.
            if (!std::isfinite(out[i])) {
                throw Error(ErrorCode::format,
                            "tensor " + name + " in " + t.file + " holds " +
                                (std::isnan(out[i]) ? "NaN" : out[i] > 0 ? "+inf" : "-inf") +
                                " at element " + std::to_string(i) + "; weights must be finite");
            }
        }
        return out;
    }

private:
    const io::TensorSet& tensors_;
    LlamaWeights& w_;
};

}  // namespace

LlamaWeights load_llama_weights(const io::TensorSet& tensors, const ModelConfig& c) {
    LlamaWeights w;
    Loader ld(tensors, w);
    const int64_t hidden = c.hidden_size, ffn = c.intermediate_size, vocab = c.vocab_size;
    const int64_t q_dim = int64_t(c.num_attention_heads) * c.head_dim;
    const int64_t kv_dim = int64_t(c.num_key_value_heads) * c.head_dim;

    w.embed = ld.matrix("model.embed_tokens.weight", vocab, hidden);
    w.matrix_bytes = 0;  // decoding reads one embedding row, not the matrix
    w.layers.resize(static_cast<size_t>(c.num_hidden_layers));
    for (int l = 0; l < c.num_hidden_layers; ++l) {
        const std::string p = "model.layers." + std::to_string(l) + ".";
        LayerWeights& L = w.layers[static_cast<size_t>(l)];
        L.attn_norm = ld.vector(p + "input_layernorm.weight", hidden);
        L.wq = ld.matrix(p + "self_attn.q_proj.weight", q_dim, hidden);
        L.wk = ld.matrix(p + "self_attn.k_proj.weight", kv_dim, hidden);
        L.wv = ld.matrix(p + "self_attn.v_proj.weight", kv_dim, hidden);
        L.wo = ld.matrix(p + "self_attn.o_proj.weight", hidden, q_dim);
        L.ffn_norm = ld.vector(p + "post_attention_layernorm.weight", hidden);
        L.w_gate = ld.matrix(p + "mlp.gate_proj.weight", ffn, hidden);
        L.w_up = ld.matrix(p + "mlp.up_proj.weight", ffn, hidden);
        L.w_down = ld.matrix(p + "mlp.down_proj.weight", hidden, ffn);
    }
    w.final_norm = ld.vector("model.norm.weight", hidden);
    if (c.num_labels > 0) {
        // LlamaForSequenceClassification: a bias-free score head replaces the LM head (a tied
        // setting is meaningless there and ignored, as transformers does).
        if (!tensors.find("score.weight")) {
            throw Error(ErrorCode::format, "missing tensor score.weight in " + tensors.origin +
                                               " (config.json says " + c.architecture +
                                               " with " + std::to_string(c.num_labels) +
                                               " labels)");
        }
        w.score = ld.matrix("score.weight", c.num_labels, hidden);
    } else if (c.tie_word_embeddings) {
        w.lm_head = w.embed;  // a stored lm_head.weight copy, if any, is ignored
        w.matrix_bytes += w.embed.bytes();
    } else {
        if (!tensors.find("lm_head.weight")) {
            throw Error(ErrorCode::format, "missing tensor lm_head.weight in " + tensors.origin +
                                               " (config.json says tie_word_embeddings is false)");
        }
        w.lm_head = ld.matrix("lm_head.weight", vocab, hidden);
    }
    w.dtype = static_cast<DType>(w.layers.empty() ? w.embed.type : w.layers[0].wq.type);
    for (const auto& o : tensors.owners()) w.owners.push_back(o);
    return w;
}

}  // namespace stackllama
