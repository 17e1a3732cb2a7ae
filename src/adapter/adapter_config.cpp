#include "adapter/adapter_config.hpp"

#include <cmath>
#include <regex>

namespace stackllama {

namespace {

std::regex compile(const std::string& pattern, const std::string& origin, const char* field) {
    try {
        return std::regex(pattern, std::regex::ECMAScript);
    } catch (const std::regex_error& e) {
        throw Error(ErrorCode::format, origin + ": field \"" + field + "\" has an invalid regular "
                                           "expression \"" + pattern + "\": " + e.what());
    }
}

std::vector<std::string> string_list(const io::JsonObject& o, const char* key) {
    std::vector<std::string> out;
    const io::Json* v = o.get(key);
    if (!v) return out;
    if (!v->is_array()) o.fail(key, "must be a list of strings, found " + v->dump());
    for (const auto& e : *v) {
        if (!e.is_string()) o.fail(key, "must be a list of strings, found " + v->dump());
        out.push_back(e.get<std::string>());
    }
    return out;
}

// PEFT options that change the arithmetic in ways stackllama does not implement.
void refuse_unsupported(const io::JsonObject& o, const std::string& origin) {
    auto refuse = [&](const std::string& what) {
        throw Error(ErrorCode::unsupported, origin + ": " + what + " is not supported");
    };
    if (o.opt_boolean("use_dora").value_or(false)) refuse("use_dora=true (DoRA)");
    if (o.has("layer_replication")) refuse("layer_replication");
    if (o.has("megatron_config")) refuse("megatron_config");
    if (o.opt_boolean("use_qalora").value_or(false)) refuse("use_qalora=true");
    if (const io::Json* v = o.get("target_parameters"); v && !(v->is_array() && v->empty()))
        refuse("target_parameters");
    if (o.has("trainable_token_indices")) refuse("trainable_token_indices");
    if (o.has("alora_invocation_tokens")) refuse("alora_invocation_tokens (aLoRA)");
    if (const io::Json* v = o.get("runtime_config");
        v && v->is_object() && v->value("ephemeral_gpu_offload", false))
        refuse("runtime_config.ephemeral_gpu_offload");
}

bool name_in_list(const std::vector<std::string>& list, const std::string& name) {
    for (const auto& t : list) {
        if (name == t) return true;
        if (name.size() > t.size() + 1 && name.compare(name.size() - t.size(), t.size(), t) == 0 &&
            name[name.size() - t.size() - 1] == '.')
            return true;
    }
    return false;
}

int layer_index(const std::string& name) {
    static const std::regex re(R"(^.*\.layers\.(\d+)\..*$)");
    std::smatch m;
    if (std::regex_match(name, m, re)) return std::stoi(m[1].str());
    return -1;
}

}  // namespace

AdapterConfig parse_adapter_config(const io::Json& j, const std::string& origin) {
    io::JsonObject o(j, origin);
    AdapterConfig c;
    c.peft_type = o.opt_string("peft_type").value_or("");
    if (c.peft_type != "LORA") {
        throw Error(ErrorCode::unsupported,
                    origin + ": peft_type \"" + c.peft_type +
                        "\" is not supported (stackllama applies LORA adapters)");
    }
    refuse_unsupported(o, origin);
    c.task_type = o.opt_string("task_type").value_or("");
    const int64_t r = o.opt_integer("r").value_or(8);
    if (r <= 0 || r > 65536) o.fail("r", "must be a positive rank, found " + std::to_string(r));
    c.r = static_cast<int>(r);
    c.lora_alpha = static_cast<float>(o.opt_number("lora_alpha").value_or(8.0));
    c.use_rslora = o.opt_boolean("use_rslora").value_or(false);
    c.fan_in_fan_out = o.opt_boolean("fan_in_fan_out").value_or(false);
    c.bias = o.opt_string("bias").value_or("none");
    if (c.bias != "none" && c.bias != "all" && c.bias != "lora_only")
        o.fail("bias", "must be \"none\", \"all\" or \"lora_only\", found \"" + c.bias + "\"");
    c.lora_bias = o.opt_boolean("lora_bias").value_or(false);

    if (const io::Json* t = o.get("target_modules")) {
        if (t->is_string()) {
            c.target_modules_regex = t->get<std::string>();
            if (c.target_modules_regex != "all-linear")
                compile(c.target_modules_regex, origin, "target_modules");
        } else {
            c.target_modules = string_list(o, "target_modules");
        }
    }
    if (c.target_modules.empty() && c.target_modules_regex.empty())
        o.fail("target_modules", "is missing or empty: the adapter targets no module");
    c.modules_to_save = string_list(o, "modules_to_save");

    if (const io::Json* rp = o.get("rank_pattern")) {
        if (!rp->is_object()) o.fail("rank_pattern", "must be an object, found " + rp->dump());
        for (auto it = rp->begin(); it != rp->end(); ++it) {
            if (!it->is_number_integer() || it->get<int64_t>() <= 0)
                o.fail("rank_pattern", "entry \"" + it.key() + "\" must be a positive rank");
            compile(it.key(), origin, "rank_pattern");
            c.rank_pattern[it.key()] = static_cast<int>(it->get<int64_t>());
        }
    }
    if (const io::Json* ap = o.get("alpha_pattern")) {
        if (!ap->is_object()) o.fail("alpha_pattern", "must be an object, found " + ap->dump());
        for (auto it = ap->begin(); it != ap->end(); ++it) {
            if (!it->is_number())
                o.fail("alpha_pattern", "entry \"" + it.key() + "\" must be a number");
            compile(it.key(), origin, "alpha_pattern");
            c.alpha_pattern[it.key()] = it->get<float>();
        }
    }
    if (const io::Json* lt = o.get("layers_to_transform")) {
        if (lt->is_number_integer()) {
            c.layers_to_transform.push_back(static_cast<int>(lt->get<int64_t>()));
        } else if (lt->is_array()) {
            for (const auto& e : *lt) {
                if (!e.is_number_integer())
                    o.fail("layers_to_transform", "must be a list of layer indices");
                c.layers_to_transform.push_back(static_cast<int>(e.get<int64_t>()));
            }
        } else {
            o.fail("layers_to_transform", "must be a layer index or a list of them");
        }
    }
    c.base_model_name_or_path = o.opt_string("base_model_name_or_path").value_or("");
    return c;
}

bool targets_module(const AdapterConfig& c, const std::string& name) {
    bool match;
    if (c.target_modules_regex == "all-linear") {
        match = name.find(".self_attn.") != std::string::npos ||
                name.find(".mlp.") != std::string::npos;
    } else if (!c.target_modules_regex.empty()) {
        match = std::regex_match(name, std::regex(c.target_modules_regex));
    } else {
        match = name_in_list(c.target_modules, name);
    }
    if (match && !c.layers_to_transform.empty() && c.target_modules_regex.empty()) {
        const int idx = layer_index(name);
        match = false;
        for (int l : c.layers_to_transform) match = match || l == idx;
    }
    return match;
}

int rank_for(const AdapterConfig& c, const std::string& name) {
    for (const auto& [key, r] : c.rank_pattern)
        if (std::regex_match(name, std::regex("(.*\\.)?" + key))) return r;
    return c.r;
}

float alpha_for(const AdapterConfig& c, const std::string& name) {
    for (const auto& [key, a] : c.alpha_pattern)
        if (std::regex_match(name, std::regex("(.*\\.)?" + key))) return a;
    return c.lora_alpha;
}

float lora_scale(const AdapterConfig& c, int r, float alpha) {
    return c.use_rslora ? alpha / std::sqrt(static_cast<float>(r)) : alpha / static_cast<float>(r);
}

}  // namespace stackllama
