#include "model/llama.hpp"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>

#include "kernels/gemm.hpp"
#include "stackllama/error.hpp"
#include "util/thread_pool.hpp"

namespace stackllama {

namespace {

uint64_t physical_memory_bytes() {
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    return pages > 0 && page > 0 ? uint64_t(pages) * uint64_t(page) : UINT64_MAX;
}

}  // namespace

LlamaState::LlamaState(const ModelConfig& c, int n_ctx_, int n_batch_, int n_threads)
    : n_ctx(n_ctx_), n_batch(std::max(1, std::min(n_batch_, n_ctx_))) {
    const size_t hd = size_t(c.head_dim), q_dim = size_t(c.num_attention_heads) * hd;
    const size_t kv_dim = size_t(c.num_key_value_heads) * hd;
    const uint64_t cache_floats = uint64_t(c.num_hidden_layers) * kv_dim * uint64_t(n_ctx);
    const uint64_t cache_bytes = 2 * cache_floats * sizeof(float);
    if (cache_bytes > physical_memory_bytes()) {
        throw Error(ErrorCode::out_of_memory,
                    "a context of " + std::to_string(n_ctx) + " tokens needs a KV cache of " +
                        std::to_string(cache_bytes >> 20) + " MiB, more than this machine's " +
                        std::to_string(physical_memory_bytes() >> 20) +
                        " MiB; ask for a smaller n_ctx");
    }
    k_cache.assign(cache_floats, 0.0f);
    v_cache.assign(cache_floats, 0.0f);

    // inv_freq and position·inv_freq in f32 as transformers computes them; cos/sin of that f32.
    const size_t half = hd / 2;
    rope_cos.resize(size_t(n_ctx) * half);
    rope_sin.resize(size_t(n_ctx) * half);
    for (size_t i = 0; i < half; ++i) {
        const float exponent = float(int64_t(2 * i)) / float(int64_t(hd));
        const float inv_freq = 1.0f / std::pow(c.rope_theta, exponent);
        for (int p = 0; p < n_ctx; ++p) {
            const float angle = float(p) * inv_freq;
            rope_cos[size_t(p) * half + i] = static_cast<float>(std::cos(double(angle)));
            rope_sin[size_t(p) * half + i] = static_cast<float>(std::sin(double(angle)));
        }
    }

    const size_t B = size_t(n_batch), hidden = size_t(c.hidden_size);
    x.resize(B * hidden);
    xb.resize(B * std::max(hidden, q_dim));
    q.resize(B * q_dim);
    k.resize(B * kv_dim);
    v.resize(B * kv_dim);
    att.resize(B * q_dim);
    gate.resize(B * size_t(c.intermediate_size));
    up.resize(B * size_t(c.intermediate_size));
    scores.resize(size_t(std::max(1, n_threads)) * size_t(n_ctx));
}

size_t LlamaState::kv_offset(const ModelConfig& c, int layer, int kv_head) const {
    return ((size_t(layer) * size_t(c.num_key_value_heads) + size_t(kv_head)) * size_t(n_ctx)) *
           size_t(c.head_dim);
}

const char* slot_module_name(Slot slot) {
    static const char* names[kSlotCount] = {"self_attn.q_proj", "self_attn.k_proj",
                                            "self_attn.v_proj", "self_attn.o_proj",
                                            "mlp.gate_proj",    "mlp.up_proj",
                                            "mlp.down_proj"};
    return names[slot];
}

namespace {

// y[m, out] = x[m, in] · W^T, plus the low-rank terms of attached adapters.
void linear(const kernels::KernelTable& kt, const kernels::Matrix& w,
            const std::vector<LowRankTerm>* terms, const float* x, size_t m, float* y,
            ThreadPool& pool, LlamaState& s) {
    kernels::matmul(kt, w, x, m, y, pool, s.gemm_scratch);
    if (!terms) return;
    for (const LowRankTerm& t : *terms) {
        kernels::matmul_add_low_rank(kt, t.a, t.b, t.scale, x, m, y, pool, s.lora_scratch);
        if (t.b_bias) {
            for (size_t i = 0; i < m; ++i) kt.axpy(t.scale, t.b_bias, y + i * w.rows, w.rows);
        }
    }
}

// One chunk of at most n_batch tokens through every layer; leaves the final hidden states in x.
void forward_chunk(const ModelConfig& c, const LlamaWeights& w, const WeightOverrides& ov,
                   LlamaState& s, const kernels::KernelTable& kt, ThreadPool& pool,
                   const int32_t* tokens, size_t m, size_t pos0) {
    const size_t hidden = size_t(c.hidden_size), ffn = size_t(c.intermediate_size);
    const size_t hd = size_t(c.head_dim), n_heads = size_t(c.num_attention_heads);
    const size_t n_kv_heads = size_t(c.num_key_value_heads), group = n_heads / n_kv_heads;
    const size_t q_dim = n_heads * hd, kv_dim = n_kv_heads * hd, half = hd / 2;
    const float eps = c.rms_norm_eps, scale = 1.0f / std::sqrt(float(hd));
    float *x = s.x.data(), *xb = s.xb.data(), *q = s.q.data(), *k = s.k.data(), *v = s.v.data();
    float *att = s.att.data(), *gate = s.gate.data(), *up = s.up.data();

    // Token embeddings.
    const kernels::Matrix& embed = ov.embed ? *ov.embed : w.embed;
    for (size_t i = 0; i < m; ++i) {
        kt.rows_to_f32(embed, size_t(tokens[i]), size_t(tokens[i]) + 1, x + i * hidden);
    }

    for (size_t l = 0; l < w.layers.size(); ++l) {
        const LayerWeights& L = w.layers[l];
        // Adapter terms of this layer's linear layers (null when none are attached).
        const auto lora = [&](Slot slot) -> const std::vector<LowRankTerm>* {
            if (ov.layers.empty() || ov.layers[l][slot].empty()) return nullptr;
            return &ov.layers[l][slot];
        };

        // Attention block: x += Wo · attention(rope(Wq·h), rope(Wk·h), Wv·h), h = rmsnorm(x).
        for (size_t i = 0; i < m; ++i)
            kt.rmsnorm(x + i * hidden, L.attn_norm.data(), xb + i * hidden, hidden, eps);
        linear(kt, L.wq, lora(kQ), xb, m, q, pool, s);
        linear(kt, L.wk, lora(kK), xb, m, k, pool, s);
        linear(kt, L.wv, lora(kV), xb, m, v, pool, s);
        for (size_t i = 0; i < m; ++i) {
            const size_t pos = pos0 + i;
            const float* cos = s.rope_cos.data() + pos * half;
            const float* sin = s.rope_sin.data() + pos * half;
            kernels::rope(q + i * q_dim, n_heads, hd, cos, sin);
            kernels::rope(k + i * kv_dim, n_kv_heads, hd, cos, sin);
            for (size_t h = 0; h < n_kv_heads; ++h) {
                const size_t off = s.kv_offset(c, int(l), int(h)) + pos * hd;
                std::memcpy(&s.k_cache[off], k + i * kv_dim + h * hd, hd * sizeof(float));
                std::memcpy(&s.v_cache[off], v + i * kv_dim + h * hd, hd * sizeof(float));
            }
        }
        // Causal grouped-query attention: query head h reads kv head h / group.
        pool.run(pool.size(), [&](int t) {
            float* scores = s.scores.data() + size_t(t) * size_t(s.n_ctx);
            for (size_t job = size_t(t); job < m * n_heads; job += size_t(pool.size())) {
                const size_t i = job / n_heads, h = job % n_heads;
                const size_t base = s.kv_offset(c, int(l), int(h / group));
                kernels::attend(kt, q + i * q_dim + h * hd, &s.k_cache[base], &s.v_cache[base],
                                pos0 + i + 1, hd, hd, scale, scores, att + i * q_dim + h * hd);
            }
        });
        linear(kt, L.wo, lora(kO), att, m, xb, pool, s);
        kt.add(x, xb, m * hidden);

        // Feed-forward block (SwiGLU): x += W_down · (silu(W_gate·h) ⊙ W_up·h), h = rmsnorm(x).
        for (size_t i = 0; i < m; ++i)
            kt.rmsnorm(x + i * hidden, L.ffn_norm.data(), xb + i * hidden, hidden, eps);
        linear(kt, L.w_gate, lora(kGate), xb, m, gate, pool, s);
        linear(kt, L.w_up, lora(kUp), xb, m, up, pool, s);
        kt.silu_mul(gate, up, m * ffn);
        linear(kt, L.w_down, lora(kDown), gate, m, xb, pool, s);
        kt.add(x, xb, m * hidden);
    }
}

}  // namespace

void llama_forward(const ModelConfig& c, const LlamaWeights& w, const WeightOverrides& ov,
                   LlamaState& s, const kernels::KernelTable& kt, ThreadPool& pool,
                   const int32_t* tokens, size_t n, size_t pos0, float* logits, bool all_logits) {
    const size_t hidden = size_t(c.hidden_size), vocab = size_t(c.vocab_size);
    for (size_t done = 0; done < n;) {
        const size_t m = std::min(n - done, size_t(s.n_batch));
        forward_chunk(c, w, ov, s, kt, pool, tokens + done, m, pos0 + done);

        // Final norm and LM head, for the rows the caller wants.
        const size_t first = all_logits ? 0 : m - 1;
        const bool last_chunk = done + m == n;
        if (all_logits || last_chunk) {
            const size_t rows = m - first;
            for (size_t i = first; i < m; ++i) {
                kt.rmsnorm(s.x.data() + i * hidden, w.final_norm.data(),
                           s.xb.data() + (i - first) * hidden, hidden, c.rms_norm_eps);
            }
            float* out = all_logits ? logits + done * vocab : logits;
            const kernels::Matrix& head = ov.lm_head_matrix ? *ov.lm_head_matrix : w.lm_head;
            linear(kt, head, ov.lm_head.empty() ? nullptr : &ov.lm_head, s.xb.data(), rows, out,
                   pool, s);
        }
        done += m;
    }
}

}  // namespace stackllama
