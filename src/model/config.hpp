// config.json of a Hugging Face LLaMA checkpoint.
#pragma once

#include <string>

#include "io/json_file.hpp"
#include "stackllama/model.hpp"

namespace stackllama {

// Reads the fields the forward pass needs, with HF LlamaConfig's defaults for optional ones.
// Refuses architectures and options that would change the arithmetic (rope_scaling, biases, other
// activations) with Error(unsupported) rather than computing something else. `origin` names the
// file in messages.
ModelConfig parse_model_config(const io::Json& j, const std::string& origin);

// Limits that keep a hostile config from asking for absurd allocations.
constexpr int kMaxHiddenSize = 1 << 16;
constexpr int kMaxLayers = 1024;
constexpr int kMaxVocab = 1 << 22;
constexpr int kMaxPositions = 1 << 22;

}  // namespace stackllama
