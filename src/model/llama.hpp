// The LLaMA forward pass (Touvron et al. 2023, in Hugging Face's conventions) and the state it
// runs on: KV caches, rotary tables and activation buffers.
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/kernels.hpp"
#include "model/overrides.hpp"
#include "model/weights.hpp"
#include "stackllama/model.hpp"

namespace stackllama {

class ThreadPool;

// Everything the sequences being decoded need besides the weights, allocated up front: no
// allocation per token. Each sequence has its own KV cache region of n_ctx positions.
struct LlamaState {
    // Error(out_of_memory) before allocating when the KV caches would not fit in memory.
    LlamaState(const ModelConfig& config, int n_ctx, int n_batch, int n_threads, int n_seq = 1);

    int n_ctx;
    int n_batch;  // most rows run through the layers at once (longer inputs are chunked)
    int n_seq;    // sequences with a KV cache region

    // KV cache, [seq][layer][kv_head][position][head_dim].
    std::vector<float> k_cache, v_cache;
    // Rotary tables [position][head_dim / 2].
    std::vector<float> rope_cos, rope_sin;

    // Activations for up to n_batch rows.
    std::vector<float> x, xb, q, k, v, att, gate, up;
    std::vector<float> scores;        // [n_threads][kAttendGroup · n_ctx]
    std::vector<float> lora_scratch;  // A·x and B·A·x of low-rank terms
    std::vector<int32_t> row_seq, row_pos;  // [n_batch] rows of a chunk (llama_forward)
    std::vector<size_t> row_out;            // [n_batch] rows of a chunk that get the head

    size_t kv_offset(const ModelConfig& c, int layer, int kv_head, int seq = 0) const;
    // Grows the caches to hold n sequences; the existing sequences keep their contents.
    // Error(out_of_memory) before allocating when they would not fit.
    void reserve_sequences(int n);
    // Copies positions [0, n_pos) of sequence `from` into sequence `to`, every layer and head
    // (a prompt evaluated once, shared by several continuations).
    void copy_sequence(const ModelConfig& c, int from, int to, int n_pos);

private:
    size_t seq_floats_ = 0;  // floats of one sequence's K (or V) cache
};

// What a forward pass writes for the rows asked for, from the final-normed hidden state h.
struct LlamaHead {
    enum Kind { logits, matrix, hidden };
    Kind kind = logits;
    // kind == matrix: out = M · h, M [n_out, hidden] (a reward model's score head).
    const kernels::Matrix* m = nullptr;
    size_t out_size(const ModelConfig& c) const {
        return kind == logits ? size_t(c.vocab_size)
                              : kind == matrix ? m->rows : size_t(c.hidden_size);
    }
};

// One forward pass over n rows; row i is token tokens[i] of sequence seqs[i] at position
// positions[i]. The rows of one sequence come in position order, and the positions before each
// row's are either in that sequence's cache already or earlier rows of this call (a prefill is the
// rows pos0, pos0 + 1, ... of one sequence; a batched decoding step is one row per sequence).
// Keys and values of every row enter the caches. For the rows listed in out_rows (ascending), the
// head's output goes to out, n_out rows of head.out_size(): logits are lm_head (or the adapters'
// replacement) plus the adapters' low-rank terms.
// The caller has checked ids, sequences and that every position is < n_ctx.
void llama_forward_rows(const ModelConfig& config, const LlamaWeights& weights,
                        const WeightOverrides& overrides, LlamaState& state,
                        const kernels::KernelTable& kt, ThreadPool& pool, const int32_t* tokens,
                        const int32_t* seqs, const int32_t* positions, size_t n,
                        const size_t* out_rows, size_t n_out, const LlamaHead& head, float* out);

// Runs tokens[0..n) of sequence 0 at positions pos0.. through the model, appending their keys and
// values to the cache, and writes logits: for every token ([n][vocab]) when all_logits, else for
// the last one. `overrides` are the attached adapters' changes (empty for the base model).
// The caller has checked ids and that pos0 + n <= n_ctx.
void llama_forward(const ModelConfig& config, const LlamaWeights& weights,
                   const WeightOverrides& overrides, LlamaState& state,
                   const kernels::KernelTable& kt, ThreadPool& pool, const int32_t* tokens,
                   size_t n, size_t pos0, float* logits, bool all_logits);

}  // namespace stackllama
