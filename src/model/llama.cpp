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

LlamaState::LlamaState(const ModelConfig& c, int n_ctx_, int n_batch_, int n_threads, int n_seq_)
    : n_ctx(n_ctx_), n_batch(std::max(1, std::min(n_batch_, n_ctx_))), n_seq(0) {
    const size_t hd = size_t(c.head_dim), q_dim = size_t(c.num_attention_heads) * hd;
    const size_t kv_dim = size_t(c.num_key_value_heads) * hd;
    seq_floats_ = size_t(c.num_hidden_layers) * kv_dim * size_t(n_ctx);
    reserve_sequences(std::max(1, n_seq_));

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
    scores.resize(size_t(std::max(1, n_threads)) * kernels::kAttendGroup * size_t(n_ctx));
}

size_t LlamaState::kv_offset(const ModelConfig& c, int layer, int kv_head, int seq) const {
    return size_t(seq) * seq_floats_ +
           ((size_t(layer) * size_t(c.num_key_value_heads) + size_t(kv_head)) * size_t(n_ctx)) *
               size_t(c.head_dim);
}

void LlamaState::reserve_sequences(int n) {
    if (n <= n_seq) return;
    const uint64_t cache_bytes = 2 * uint64_t(seq_floats_) * uint64_t(n) * sizeof(float);
    if (cache_bytes > physical_memory_bytes()) {
        const std::string what = n == 1 ? std::string("a context of ") + std::to_string(n_ctx) +
                                              " tokens"
                                        : std::to_string(n) + " sequences of " +
                                              std::to_string(n_ctx) + " tokens";
        throw Error(ErrorCode::out_of_memory,
                    what + " needs a KV cache of " + std::to_string(cache_bytes >> 20) +
                        " MiB, more than this machine's " +
                        std::to_string(physical_memory_bytes() >> 20) +
                        " MiB; ask for a smaller n_ctx" + (n > 1 ? " or fewer sequences" : ""));
    }
    k_cache.resize(seq_floats_ * size_t(n), 0.0f);
    v_cache.resize(seq_floats_ * size_t(n), 0.0f);
    n_seq = n;
}

void LlamaState::copy_sequence(const ModelConfig& c, int from, int to, int n_pos) {
    if (from == to || n_pos <= 0) return;
    const size_t len = size_t(n_pos) * size_t(c.head_dim);
    for (int l = 0; l < c.num_hidden_layers; ++l) {
        for (int h = 0; h < c.num_key_value_heads; ++h) {
            const size_t src = kv_offset(c, l, h, from), dst = kv_offset(c, l, h, to);
            std::memcpy(&k_cache[dst], &k_cache[src], len * sizeof(float));
            std::memcpy(&v_cache[dst], &v_cache[src], len * sizeof(float));
        }
    }
}

const char* slot_module_name(Slot slot) {
    static const char* names[kSlotCount] = {"self_attn.q_proj", "self_attn.k_proj",
                                            "self_attn.v_proj", "self_attn.o_proj",
                                            "mlp.gate_proj",    "mlp.up_proj",
                                            "mlp.down_proj"};
    return names[slot];
}

namespace {

// y[m, out] += the low-rank terms of attached adapters on x[m, in] (W: the base matrix).
void add_low_rank_terms(const kernels::KernelTable& kt, const kernels::Matrix& w,
                        const std::vector<LowRankTerm>& terms, const float* x, size_t m, float* y,
                        ThreadPool& pool, LlamaState& s) {
    for (const LowRankTerm& t : terms) {
        kernels::matmul_add_low_rank(kt, t.a, t.b, t.scale, x, m, y, pool, s.lora_scratch);
        if (t.b_bias) {
            for (size_t i = 0; i < m; ++i) kt.axpy(t.scale, t.b_bias, y + i * w.rows, w.rows);
        }
    }
}

// y[m, out] = x[m, in] · W^T, plus the low-rank terms of attached adapters.
void linear(const kernels::KernelTable& kt, const kernels::Matrix& w,
            const std::vector<LowRankTerm>* terms, const float* x, size_t m, float* y,
            ThreadPool& pool, LlamaState& s) {
    // Each row of y is what it would be alone (kernels::matmul is batch-invariant), so a sequence
    // decodes the same in a batch as by itself.
    kernels::matmul(kt, w, x, m, y, pool);
    if (terms) add_low_rank_terms(kt, w, *terms, x, m, y, pool, s);
}

// linear() for n matrices of one input x, their products in one dispatch where the kernels allow
// (kernels::matmul_shared_input; each output bit-identical to its own linear()), else one
// linear() each.
template <size_t n>
void linear_shared(const kernels::KernelTable& kt, const kernels::Matrix* const (&w)[n],
                   const std::vector<LowRankTerm>* const (&terms)[n], const float* x, size_t m,
                   float* const (&y)[n], ThreadPool& pool, LlamaState& s) {
    if (!kernels::shares_dispatch(w, n)) {
        for (size_t j = 0; j < n; ++j) linear(kt, *w[j], terms[j], x, m, y[j], pool, s);
        return;
    }
    kernels::matmul_shared_input(kt, w, y, n, x, m, pool);
    for (size_t j = 0; j < n; ++j) {
        if (terms[j]) add_low_rank_terms(kt, *w[j], *terms[j], x, m, y[j], pool, s);
    }
}

// One chunk of at most n_batch rows through every layer; leaves the final hidden states in x.
// Row i is token tokens[i] of sequence seqs[i] at position positions[i].
void forward_chunk(const ModelConfig& c, const LlamaWeights& w, const WeightOverrides& ov,
                   LlamaState& s, const kernels::KernelTable& kt, ThreadPool& pool,
                   const int32_t* tokens, const int32_t* seqs, const int32_t* positions,
                   size_t m) {
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
        linear_shared<3>(kt, {&L.wq, &L.wk, &L.wv}, {lora(kQ), lora(kK), lora(kV)}, xb, m,
                         {q, k, v}, pool, s);
        for (size_t i = 0; i < m; ++i) {
            const size_t pos = size_t(positions[i]);
            const float* cos = s.rope_cos.data() + pos * half;
            const float* sin = s.rope_sin.data() + pos * half;
            kt.rope(q + i * q_dim, n_heads, hd, cos, sin);
            kt.rope(k + i * kv_dim, n_kv_heads, hd, cos, sin);
            for (size_t h = 0; h < n_kv_heads; ++h) {
                const size_t off = s.kv_offset(c, int(l), int(h), seqs[i]) + pos * hd;
                std::memcpy(&s.k_cache[off], k + i * kv_dim + h * hd, hd * sizeof(float));
                std::memcpy(&s.v_cache[off], v + i * kv_dim + h * hd, hd * sizeof(float));
            }
        }
        // Causal grouped-query attention: query head j reads kv head j / group of the row's own
        // sequence, positions up to its own. A job is up to kAttendGroup heads of one kv head,
        // which the kernel reads once for all of them.
        const size_t blocks = (group + kernels::kAttendGroup - 1) / kernels::kAttendGroup;
        pool.run(pool.size(), [&](int t) {
            float* scores = s.scores.data() + size_t(t) * kernels::kAttendGroup * size_t(s.n_ctx);
            for (size_t job = size_t(t); job < m * n_kv_heads * blocks; job += size_t(pool.size())) {
                // Rows inner: consecutive jobs read the same KV head, which stays in cache.
                const size_t i = job % m, hb = job / m, h = hb / blocks;
                const size_t first = h * group + hb % blocks * kernels::kAttendGroup;  // query head
                const size_t n_q = std::min(kernels::kAttendGroup, (h + 1) * group - first);
                const size_t base = s.kv_offset(c, int(l), int(h), seqs[i]);
                kt.attend(q + i * q_dim + first * hd, n_q, &s.k_cache[base], &s.v_cache[base],
                          size_t(positions[i]) + 1, hd, hd, scale, scores,
                          att + i * q_dim + first * hd);
            }
        });
        linear(kt, L.wo, lora(kO), att, m, xb, pool, s);
        kt.add(x, xb, m * hidden);

        // Feed-forward block (SwiGLU): x += W_down · (silu(W_gate·h) ⊙ W_up·h), h = rmsnorm(x).
        for (size_t i = 0; i < m; ++i)
            kt.rmsnorm(x + i * hidden, L.ffn_norm.data(), xb + i * hidden, hidden, eps);
        linear_shared<2>(kt, {&L.w_gate, &L.w_up}, {lora(kGate), lora(kUp)}, xb, m, {gate, up},
                         pool, s);
        kt.silu_mul(gate, up, m * ffn);
        linear(kt, L.w_down, lora(kDown), gate, m, xb, pool, s);
        kt.add(x, xb, m * hidden);
    }
}

// The head for rows local[0..k) of the chunk just run (final norm, then the head).
void apply_head(const ModelConfig& c, const LlamaWeights& w, const WeightOverrides& ov,
                LlamaState& s, const kernels::KernelTable& kt, ThreadPool& pool,
                const size_t* local, size_t k, const LlamaHead& head, float* out) {
    if (k == 0) return;
    const size_t hidden = size_t(c.hidden_size);
    for (size_t j = 0; j < k; ++j) {
        kt.rmsnorm(s.x.data() + local[j] * hidden, w.final_norm.data(), s.xb.data() + j * hidden,
                   hidden, c.rms_norm_eps);
    }
    switch (head.kind) {
        case LlamaHead::logits: {
            const kernels::Matrix& m = ov.lm_head_matrix ? *ov.lm_head_matrix : w.lm_head;
            linear(kt, m, ov.lm_head.empty() ? nullptr : &ov.lm_head, s.xb.data(), k, out, pool,
                   s);
            break;
        }
        case LlamaHead::matrix:
            linear(kt, *head.m, nullptr, s.xb.data(), k, out, pool, s);
            break;
        case LlamaHead::hidden:
            std::memcpy(out, s.xb.data(), k * hidden * sizeof(float));
            break;
    }
}

}  // namespace

void llama_forward_rows(const ModelConfig& c, const LlamaWeights& w, const WeightOverrides& ov,
                        LlamaState& s, const kernels::KernelTable& kt, ThreadPool& pool,
                        const int32_t* tokens, const int32_t* seqs, const int32_t* positions,
                        size_t n, const size_t* out_rows, size_t n_out, const LlamaHead& head,
                        float* out) {
    const size_t out_size = head.out_size(c);
    if (s.row_out.size() < size_t(s.n_batch)) s.row_out.resize(size_t(s.n_batch));
    size_t next = 0;  // first out_rows entry not written yet
    for (size_t done = 0; done < n;) {
        const size_t m = std::min(n - done, size_t(s.n_batch));
        forward_chunk(c, w, ov, s, kt, pool, tokens + done, seqs + done, positions + done, m);
        size_t k = 0;
        const size_t first = next;
        while (next < n_out && out_rows[next] < done + m) s.row_out[k++] = out_rows[next++] - done;
        apply_head(c, w, ov, s, kt, pool, s.row_out.data(), k, head, out + first * out_size);
        done += m;
    }
}

void llama_forward(const ModelConfig& c, const LlamaWeights& w, const WeightOverrides& ov,
                   LlamaState& s, const kernels::KernelTable& kt, ThreadPool& pool,
                   const int32_t* tokens, size_t n, size_t pos0, float* logits, bool all_logits) {
    const size_t vocab = size_t(c.vocab_size), B = size_t(s.n_batch);
    if (s.row_seq.size() < B) s.row_seq.resize(B);
    if (s.row_pos.size() < B) s.row_pos.resize(B);
    if (s.row_out.size() < B) s.row_out.resize(B);
    for (size_t done = 0; done < n;) {
        const size_t m = std::min(n - done, B);
        for (size_t i = 0; i < m; ++i) {
            s.row_seq[i] = 0;
            s.row_pos[i] = int32_t(pos0 + done + i);
        }
        forward_chunk(c, w, ov, s, kt, pool, tokens + done, s.row_seq.data(), s.row_pos.data(),
                      m);
        // Final norm and LM head, for the rows the caller wants.
        size_t k = 0;
        if (all_logits) {
            for (size_t i = 0; i < m; ++i) s.row_out[k++] = i;
        } else if (done + m == n) {
            s.row_out[k++] = m - 1;
        }
        apply_head(c, w, ov, s, kt, pool, s.row_out.data(), k, LlamaHead{},
                   all_logits ? logits + done * vocab : logits);
        done += m;
    }
}

}  // namespace stackllama
