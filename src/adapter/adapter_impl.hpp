// What a loaded Adapter holds (internal): LoRA factors widened to f32, and whole replacement
// matrices from modules_to_save.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "io/json_file.hpp"
#include "io/tensor_set.hpp"
#include "kernels/kernels.hpp"
#include "model/overrides.hpp"
#include "stackllama/adapter.hpp"

namespace stackllama {

struct LoraModule {
    std::string name;     // "model.layers.3.self_attn.q_proj" or "lm_head"
    int layer = -1;       // -1 for lm_head
    Slot slot = kQ;       // meaningful when layer >= 0
    int r = 0;
    float s = 1.0f;       // lora_alpha / r (or / sqrt(r))
    std::vector<float> a, b, b_bias;  // [r, in], [out, r], [out] or empty
    kernels::Matrix a_m, b_m;         // views of a and b
};

struct SavedModule {
    std::string name;     // "lm_head", "model.embed_tokens", "score"
    std::vector<float> data;
    kernels::Matrix m;    // view of data, [rows, cols]
};

struct Adapter::Impl {
    AdapterConfig config;
    std::string path;
    std::shared_ptr<const Model> model;
    std::vector<LoraModule> loras;
    std::map<std::string, SavedModule> saved;
};

// An adapter from its adapter_config.json and PEFT-named tensors (a PEFT directory, or a native
// file's bundled adapter); `path` names it in messages, `config_path` names the config. The
// tensors are copied (widened to f32), so the set need not outlive the call.
std::shared_ptr<const Adapter> make_adapter(std::shared_ptr<const Model> model,
                                            const std::string& path, const io::Json& config,
                                            const std::string& config_path,
                                            const io::TensorSet& tensors);

// Error(format) when the adapter was loaded for a model of another shape than `model`.
void check_adapter_fits(const Adapter& adapter, const Model& model);

}  // namespace stackllama
