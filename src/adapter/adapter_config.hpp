// adapter_config.json of a PEFT LoRA adapter, and PEFT's rules for which modules it targets and
// with which rank and alpha.
#pragma once

#include <optional>
#include <regex>
#include <string>

#include "io/json_file.hpp"
#include "stackllama/adapter.hpp"

namespace stackllama {

// Error(unsupported) names PEFT options stackllama does not implement; Error(format) names a
// field of the wrong type. `origin` names the file.
AdapterConfig parse_adapter_config(const io::Json& j, const std::string& origin);

// A regular expression from adapter_config.json (or PEFT's fixed ones), compiled for libstdc++'s
// polynomial-time matcher: no backtracking blow-up, no back-references (std::regex_error).
std::regex peft_regex(const std::string& pattern);

// "12" -> 12; -1 for an empty string, a non-digit or a number above INT32_MAX (never throws).
int parse_layer_number(const std::string& digits);

// PEFT's target test for a module name such as "model.layers.3.self_attn.q_proj":
// target_modules as a regex must match the whole name; as a list, the name must equal an entry
// or end with "." + entry; "all-linear" means every linear layer but the output head;
// layers_to_transform then limits the layer index.
bool targets_module(const AdapterConfig& c, const std::string& module_name);

// Rank and alpha for a module: the first rank_pattern / alpha_pattern key that matches
// "(.*\.)?KEY$" against the module name, else r / lora_alpha.
int rank_for(const AdapterConfig& c, const std::string& module_name);
float alpha_for(const AdapterConfig& c, const std::string& module_name);

// The LoRA scale s: alpha / r, or alpha / sqrt(r) with rsLoRA.
float lora_scale(const AdapterConfig& c, int r, float alpha);

}  // namespace stackllama
