// PEFT LoRA adapters, loaded from a directory exactly as PEFT saves it (adapter_config.json plus
// adapter_model.safetensors or adapter_model.bin).
//
// An adapter is applied unmerged by attaching it to a Generator (y = W x + scale · s · B (A x),
// s = lora_alpha / r, or lora_alpha / sqrt(r) with rsLoRA, per-module rank and alpha patterns);
// the base weights are never modified. merge_adapters() makes a new Model with W += scale · s · B A
// computed in f32, leaving the source model untouched.
//
// Thread-safety: an Adapter is immutable after load and may be attached to any number of
// Generators on any threads. An Adapter keeps the Model it was loaded for alive.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "stackllama/export.hpp"
#include "stackllama/model.hpp"

namespace stackllama {

// The fields of adapter_config.json that stackllama reads.
struct AdapterConfig {
    std::string peft_type;                    // "LORA"
    std::string task_type;                    // "CAUSAL_LM", "SEQ_CLS", ...
    int r = 8;
    float lora_alpha = 8.0f;
    bool use_rslora = false;
    bool fan_in_fan_out = false;              // ignored for LLaMA's nn.Linear layers (as PEFT does)
    std::string bias = "none";                // "none", "all", "lora_only"
    bool lora_bias = false;                   // lora_B has a bias
    std::vector<std::string> target_modules;  // a list of names, or empty when a regex is given
    std::string target_modules_regex;         // target_modules given as a string (full match)
    std::vector<std::string> modules_to_save;
    std::map<std::string, int> rank_pattern;
    std::map<std::string, float> alpha_pattern;
    std::vector<int> layers_to_transform;     // empty = all layers
    std::string base_model_name_or_path;
};

class STACKLLAMA_API Adapter {
public:
    // Loads a PEFT LoRA directory and checks it against `model`: every tensor's shape must fit
    // (Error(format) naming the tensor and both shapes). Options PEFT has that stackllama does not
    // implement (use_dora, other peft_types, layer_replication, ...) are Error(unsupported) naming
    // them. A base_model_name_or_path other than the model's name is only a warning.
    static std::shared_ptr<const Adapter> load(std::shared_ptr<const Model> model,
                                               const std::string& dir);
    ~Adapter();
    Adapter(const Adapter&) = delete;
    Adapter& operator=(const Adapter&) = delete;

    const AdapterConfig& config() const noexcept;
    const std::string& path() const noexcept;
    const Model& model() const noexcept;
    // Names of the modules with LoRA weights, e.g. "model.layers.0.self_attn.q_proj".
    std::vector<std::string> lora_modules() const;
    // Names of the whole modules the adapter replaces (modules_to_save): "lm_head", "score", ...
    std::vector<std::string> saved_modules() const;

    struct Impl;
    const Impl& impl() const noexcept { return *impl_; }
    // Internal: the library builds Adapters (Impl is not part of the public API).
    explicit Adapter(std::unique_ptr<Impl> impl);

private:
    std::unique_ptr<Impl> impl_;
};

// An adapter with the user's multiplier on its scale s.
struct AdapterRef {
    std::shared_ptr<const Adapter> adapter;
    float scale = 1.0f;
};

// A new Model whose weights are the base's with the adapters merged (W += scale · s · B A, in f32;
// merged matrices are stored as f32, untouched ones stay shared with the base), and whose
// modules_to_save replace the base's. The base model is not modified. In a q8/q4 base, a merged
// matrix is quantized again from its f32 merge (so it keeps the base's size; a warning in the log
// says so, since the result differs from the f32 merge by the quantization error).
STACKLLAMA_API std::shared_ptr<const Model> merge_adapters(std::shared_ptr<const Model> base,
                                                           const std::vector<AdapterRef>& adapters);

// The adapters a native file carries unmerged (stackllama-convert --keep-lora,
// NativeSaveOptions::adapters), each with the scale it was stored with, in the order stored;
// empty for a model without any. Attach them to a Generator as any other adapter. Each call
// makes new Adapter objects.  (since 0.2)
STACKLLAMA_API std::vector<AdapterRef> bundled_adapters(std::shared_ptr<const Model> model);

}  // namespace stackllama
