// Converting a loaded model's weight matrices to another storage type (quantizing at load).
#pragma once

#include <string>
#include <vector>

#include "kernels/kernels.hpp"
#include "model/weights.hpp"

namespace stackllama {
class ThreadPool;

// Converts every weight matrix of w (embedding, layers, LM head; not a reward model's small
// score head) to type t, in memory the result owns, and drops w's references to the files
// (w.owners), so the caller may unmap them. A matrix whose row length t cannot hold (q8/q4 need a
// multiple of 32) keeps its type, copied into memory too; its name goes to *kept. A tied LM head
// stays the embedding. Recomputes w.dtype and w.matrix_bytes.
void convert_weights(LlamaWeights& w, kernels::WeightType t, ThreadPool& pool,
                     std::vector<std::string>* kept);

// Bytes read per decoded token: every matrix once, the embedding only as the (tied) LM head.
uint64_t weight_bytes_per_token(const LlamaWeights& w);

}  // namespace stackllama
