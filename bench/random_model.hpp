// LLaMA-shaped models with random weights built in memory, through the library's internals, for
// benchmarks: a 7B-shaped model never has to exist on disk in Hugging Face form.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "kernels/kernels.hpp"
#include "model/weights.hpp"
#include "stackllama/model.hpp"

namespace stackllama_bench {

// A LLaMA-family shape for random weights.
struct Shape {
    const char* key;
    const char* label;
    int hidden, layers, heads, kv_heads, ffn, vocab;
    float rms_norm_eps;
};

extern const Shape kShapes[2];
// The shape named `key` ("1b", "7b"); throws std::invalid_argument naming the choices.
const Shape& shape_by_name(const std::string& key);

// splitmix64 to seed, xorshift64* to draw: cheap, and seeded per row so that the weights do not
// depend on how rows are split across threads.
struct Rng {
    uint64_t s;
    Rng(uint64_t seed, uint64_t stream);
    uint64_t next();
    // Roughly N(0, sd): the sum of four 16-bit uniforms (Irwin-Hall), one draw per value.
    float normalish(float sd);
};

stackllama::ModelConfig shape_config(const Shape& sh);

// The weights of a config with every matrix of type t, shapes set and no memory yet.
stackllama::LlamaWeights shaped_weights(const stackllama::ModelConfig& c,
                                        stackllama::kernels::WeightType t);

// Every matrix of the weights, each once (a tied LM head is the embedding); W is LlamaWeights
// or const LlamaWeights. An absent LM head or score head has no rows, so it counts for nothing.
template <class W>
auto all_matrices(W& w) -> std::vector<decltype(&w.embed)> {
    std::vector<decltype(&w.embed)> out{&w.embed};
    for (auto& L : w.layers)
        for (auto* m : {&L.wq, &L.wk, &L.wv, &L.wo, &L.w_gate, &L.w_up, &L.w_down})
            out.push_back(m);
    if (w.lm_head.data != w.embed.data || !w.lm_head.data) out.push_back(&w.lm_head);
    out.push_back(&w.score);
    return out;
}

// A model of this shape with every matrix of type t: f32/f16/bf16 weights of standard deviation
// about 0.02 (LLaMA's init), q8/q4 random levels under a fixed scale; norms 1. Deterministic.
std::shared_ptr<const stackllama::Model> build_random_model(const Shape& sh,
                                                            stackllama::kernels::WeightType t,
                                                            int threads);

}  // namespace stackllama_bench
