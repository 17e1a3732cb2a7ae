#include "adapter/adapter_config.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <regex>

namespace stackllama {

namespace {

// Patterns come from the file. std::regex compiles by recursive descent and, by default, matches
// by backtracking (recursion per character, exponential time on patterns such as "(.*)*x"), so a
// hostile pattern could exhaust the stack or hang the load. Patterns are bounded first (length,
// group nesting and a rough count of automaton states through counted repetitions), then compiled
// for libstdc++'s polynomial-time matcher, which also refuses back-references. PEFT's own patterns
// are a few dozen bytes.
constexpr size_t kMaxPatternBytes = 512;
constexpr size_t kMaxPatternGroups = 32;
constexpr uint64_t kMaxPatternStates = 4096;

// Why `p` is refused before std::regex sees it, or "".
std::string pattern_problem(const std::string& p) {
    if (p.size() > kMaxPatternBytes)
        return "is longer than " + std::to_string(kMaxPatternBytes) + " bytes";
    const auto sat = [](uint64_t a, uint64_t b) {  // saturating a * b
        return a != 0 && b > (kMaxPatternStates + 1) / a ? kMaxPatternStates + 1 : a * b;
    };
    std::vector<uint64_t> group{0};  // states in each open group
    uint64_t last = 0;               // states of the last atom, for a following {n,m}
    size_t i = 0;
    while (i < p.size()) {
        const char ch = p[i];
        if (ch == '\\') {
            i += 2;
            last = 1;
        } else if (ch == '[') {  // a class is one state: skip to its closing ]
            size_t j = i + 1;
            if (j < p.size() && p[j] == '^') ++j;
            if (j < p.size() && p[j] == ']') ++j;
            while (j < p.size() && p[j] != ']') j += p[j] == '\\' ? 2 : 1;
            i = j + 1;
            last = 1;
        } else if (ch == '(') {
            if (group.size() > kMaxPatternGroups)
                return "nests groups deeper than " + std::to_string(kMaxPatternGroups);
            group.push_back(0);
            ++i;
            last = 0;
            continue;
        } else if (ch == ')') {
            last = 1;
            if (group.size() > 1) {
                last = group.back() + 1;
                group.pop_back();
            }
            ++i;
        } else if (ch == '{') {
            // {n}, {n,} or {n,m}: the last atom is copied about max(n, m) + 1 times.
            uint64_t k = 0;
            size_t j = i + 1;
            for (; j < p.size() && (std::isdigit(static_cast<unsigned char>(p[j])) ||
                                    p[j] == ','); ++j) {
                if (p[j] == ',') {
                    k += 1;
                    continue;
                }
                uint64_t d = 0;
                while (j < p.size() && std::isdigit(static_cast<unsigned char>(p[j])) &&
                       d <= kMaxPatternStates)
                    d = d * 10 + uint64_t(p[j++] - '0');
                if (d > kMaxPatternStates) return "repeats something " + std::to_string(d) +
                                                  "+ times";
                k = std::max(k, d) + 1;
                --j;
            }
            const uint64_t extra = sat(std::max<uint64_t>(last, 1), k);
            group.back() = std::min(group.back() + extra, kMaxPatternStates + 1);
            last = extra;
            i = j + 1;
            if (group.back() > kMaxPatternStates) break;
            continue;
        } else {
            ++i;
            last = 1;
        }
        group.back() = std::min(group.back() + last, kMaxPatternStates + 1);
        if (group.back() > kMaxPatternStates) break;
    }
    uint64_t total = 0;
    for (uint64_t g : group) total = std::min(total + g, kMaxPatternStates + 1);
    if (total > kMaxPatternStates) return "is too complex (counted repetitions expand it too far)";
    return "";
}

std::regex compile(const std::string& pattern, const std::string& origin, const char* field) {
    const auto refuse = [&](const std::string& why) {
        std::string shown = pattern.size() > 120 ? pattern.substr(0, 120) + "..." : pattern;
        return Error(ErrorCode::format, origin + ": field \"" + field + "\" has a regular "
                                            "expression \"" + shown + "\" that " + why);
    };
    const std::string problem = pattern_problem(pattern);
    if (!problem.empty()) throw refuse(problem);
    try {
        return peft_regex(pattern);
    } catch (const std::regex_error& e) {
        throw refuse(std::string("is invalid: ") + e.what());
    }
}

std::vector<std::string> string_list(const io::JsonObject& o, const char* key) {
    std::vector<std::string> out;
    const io::Json* v = o.get(key);
    if (!v) return out;
    if (!v->is_array()) o.fail(key, "must be a list of strings, found " + io::json_excerpt(*v));
    for (const auto& e : *v) {
        if (!e.is_string())
            o.fail(key, "must be a list of strings, found " + io::json_excerpt(*v));
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
    static const std::regex re = peft_regex(R"(^.*\.layers\.(\d+)\..*$)");
    std::smatch m;
    if (!std::regex_match(name, m, re)) return -1;
    return parse_layer_number(m[1].str());
}

}  // namespace

std::regex peft_regex(const std::string& pattern) {
#if defined(__GLIBCXX__)
    return std::regex(pattern, std::regex::ECMAScript | std::regex_constants::__polynomial);
#else
    return std::regex(pattern, std::regex::ECMAScript);
#endif
}

int parse_layer_number(const std::string& digits) {
    int64_t v = 0;
    for (char ch : digits) {
        if (ch < '0' || ch > '9') return -1;
        v = v * 10 + (ch - '0');
        if (v > INT32_MAX) return -1;  // no model has that many layers: matches none
    }
    return digits.empty() ? -1 : static_cast<int>(v);
}

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
    if (!std::isfinite(c.lora_alpha))
        o.fail("lora_alpha", "must be a finite number, found " +
                                 io::json_excerpt(*o.get("lora_alpha")));
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
        if (!rp->is_object())
            o.fail("rank_pattern", "must be an object, found " + io::json_excerpt(*rp));
        for (auto it = rp->begin(); it != rp->end(); ++it) {
            if (!it->is_number_integer() || it->get<int64_t>() <= 0 ||
                it->get<int64_t>() > 65536)
                o.fail("rank_pattern",
                       "entry \"" + it.key() + "\" must be a rank from 1 to 65536");
            compile("(.*\\.)?" + it.key(), origin, "rank_pattern");
            c.rank_pattern[it.key()] = static_cast<int>(it->get<int64_t>());
        }
    }
    if (const io::Json* ap = o.get("alpha_pattern")) {
        if (!ap->is_object())
            o.fail("alpha_pattern", "must be an object, found " + io::json_excerpt(*ap));
        for (auto it = ap->begin(); it != ap->end(); ++it) {
            if (!it->is_number() || !std::isfinite(it->get<float>()))
                o.fail("alpha_pattern", "entry \"" + it.key() + "\" must be a finite number");
            compile("(.*\\.)?" + it.key(), origin, "alpha_pattern");
            c.alpha_pattern[it.key()] = it->get<float>();
        }
    }
    if (const io::Json* lt = o.get("layers_to_transform")) {
        const auto layer = [&](const io::Json& e) {
            if (!e.is_number_integer() || e.get<int64_t>() < 0 || e.get<int64_t>() > INT32_MAX)
                o.fail("layers_to_transform", "must be a layer index or a list of them, found " +
                                                  io::json_excerpt(*lt));
            c.layers_to_transform.push_back(static_cast<int>(e.get<int64_t>()));
        };
        if (lt->is_number_integer()) {
            layer(*lt);
        } else if (lt->is_array()) {
            for (const auto& e : *lt) layer(e);
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
        match = std::regex_match(name, peft_regex(c.target_modules_regex));
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
        if (std::regex_match(name, peft_regex("(.*\\.)?" + key))) return r;
    return c.r;
}

float alpha_for(const AdapterConfig& c, const std::string& name) {
    for (const auto& [key, a] : c.alpha_pattern)
        if (std::regex_match(name, peft_regex("(.*\\.)?" + key))) return a;
    return c.lora_alpha;
}

float lora_scale(const AdapterConfig& c, int r, float alpha) {
    return c.use_rslora ? alpha / std::sqrt(static_cast<float>(r)) : alpha / static_cast<float>(r);
}

}  // namespace stackllama
