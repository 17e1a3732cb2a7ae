// What attached adapters change in the forward pass, in model terms: extra low-rank terms on
// linear layers (y += scale · B (A x) [+ scale · b]) and whole matrices that replace the base's.
// The adapter layer (src/adapter/) builds these; the model knows nothing of PEFT.
#pragma once

#include <array>
#include <vector>

#include "kernels/kernels.hpp"

namespace stackllama {

// The linear layers of a LLaMA block.
enum Slot : int { kQ = 0, kK, kV, kO, kGate, kUp, kDown, kSlotCount };
const char* slot_module_name(Slot s);  // "self_attn.q_proj", ..., "mlp.down_proj"

struct LowRankTerm {
    kernels::Matrix a;               // [r, in], f32
    kernels::Matrix b;               // [out, r], f32
    const float* b_bias = nullptr;   // [out] or null (PEFT lora_bias)
    float scale = 1.0f;              // user scale · lora_alpha / r (or / sqrt(r))
};

struct WeightOverrides {
    // layers[l][slot]: terms added to that linear layer's output. Empty vector: no adapters.
    std::vector<std::array<std::vector<LowRankTerm>, kSlotCount>> layers;
    std::vector<LowRankTerm> lm_head;
    const kernels::Matrix* embed = nullptr;    // replaces model.embed_tokens (modules_to_save)
    const kernels::Matrix* lm_head_matrix = nullptr;  // replaces lm_head (modules_to_save)
    size_t max_rank = 0;                       // sizes the scratch for A·x

    bool empty() const { return layers.empty() && lm_head.empty() && !embed && !lm_head_matrix; }
};

}  // namespace stackllama
