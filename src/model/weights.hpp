// The tensors of a LLaMA model, taken from a TensorSet and checked against the config. Large
// matrices stay in their stored type inside the mapped files; norm vectors are widened to f32.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "io/tensor_set.hpp"
#include "kernels/kernels.hpp"
#include "stackllama/model.hpp"

namespace stackllama {

struct LayerWeights {
    std::vector<float> attn_norm;  // input_layernorm           [hidden]
    kernels::Matrix wq;            // self_attn.q_proj           [heads·head_dim, hidden]
    kernels::Matrix wk;            // self_attn.k_proj           [kv_heads·head_dim, hidden]
    kernels::Matrix wv;            // self_attn.v_proj           [kv_heads·head_dim, hidden]
    kernels::Matrix wo;            // self_attn.o_proj           [hidden, heads·head_dim]
    std::vector<float> ffn_norm;   // post_attention_layernorm   [hidden]
    kernels::Matrix w_gate;        // mlp.gate_proj              [ffn, hidden]
    kernels::Matrix w_up;          // mlp.up_proj                [ffn, hidden]
    kernels::Matrix w_down;        // mlp.down_proj              [hidden, ffn]
};

struct LlamaWeights {
    kernels::Matrix embed;          // model.embed_tokens        [vocab, hidden]
    std::vector<LayerWeights> layers;
    std::vector<float> final_norm;  // model.norm                [hidden]
    kernels::Matrix lm_head;        // lm_head, or embed when tied [vocab, hidden]; empty (data
                                    // null) in a LlamaForSequenceClassification
    kernels::Matrix score;          // score [num_labels, hidden]: reward models only, else empty
    DType dtype = DType::f32;       // storage type of the matrices
    uint64_t matrix_bytes = 0;      // bytes read per token (every matrix once)
    // Keep the mapped files (and any realigned copies) alive as long as the matrices.
    std::vector<std::shared_ptr<const void>> owners;
};

// A LlamaForSequenceClassification (config.num_labels > 0) has score.weight instead of lm_head.
// Error(format) names the file, the tensor and both shapes when a tensor does not fit the config;
// Error(format) names a missing tensor and where it was looked for; Error(unsupported) names a
// tensor stored in a type other than F32/F16/BF16.
LlamaWeights load_llama_weights(const io::TensorSet& tensors, const ModelConfig& config);

}  // namespace stackllama
