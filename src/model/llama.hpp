// The LLaMA forward pass (Touvron et al. 2023, in Hugging Face's conventions) and the state it
// runs on: KV cache, rotary tables and activation buffers.
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/kernels.hpp"
#include "model/overrides.hpp"
#include "model/weights.hpp"
#include "stackllama/model.hpp"

namespace stackllama {

class ThreadPool;

// Everything one sequence needs besides the weights, allocated once: no allocation per token.
struct LlamaState {
    // Error(out_of_memory) before allocating when the KV cache would not fit in memory.
    LlamaState(const ModelConfig& config, int n_ctx, int n_batch, int n_threads);

    int n_ctx;
    int n_batch;  // most tokens run through the layers at once (prefill is chunked)

    // KV cache, [layer][kv_head][position][head_dim].
    std::vector<float> k_cache, v_cache;
    // Rotary tables [position][head_dim / 2].
    std::vector<float> rope_cos, rope_sin;

    // Activations for up to n_batch tokens.
    std::vector<float> x, xb, q, k, v, att, gate, up;
    std::vector<float> scores;       // [n_threads][n_ctx]
    std::vector<float> gemm_scratch;  // widened weight tiles
    std::vector<float> lora_scratch;  // A·x of low-rank terms

    size_t kv_offset(const ModelConfig& c, int layer, int kv_head) const;
};

// Runs tokens[0..n) at positions pos0.. through the model, appending their keys and values to the
// cache, and writes logits: for every token ([n][vocab]) when all_logits, else for the last one.
// `overrides` are the attached adapters' changes (empty for the base model).
// The caller has checked ids and that pos0 + n <= n_ctx.
void llama_forward(const ModelConfig& config, const LlamaWeights& weights,
                   const WeightOverrides& overrides, LlamaState& state,
                   const kernels::KernelTable& kt, ThreadPool& pool, const int32_t* tokens,
                   size_t n, size_t pos0, float* logits, bool all_logits);

}  // namespace stackllama
