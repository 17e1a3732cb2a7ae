#include <climits>
#include <cmath>
#include <cstring>
#include <regex>

#include "adapter/adapter_config.hpp"
#include "adapter/adapter_impl.hpp"
#include "model/model_impl.hpp"
#include "io/json_file.hpp"
#include "io/mmap_file.hpp"
#include "io/peft_files.hpp"
#include "io/safetensors.hpp"
#include "io/torch_bin.hpp"
#include "util/log.hpp"

namespace stackllama {

namespace {

std::string shape_str(std::initializer_list<int64_t> dims) {
    std::string s = "[";
    size_t i = 0;
    for (int64_t d : dims) s += (i++ ? ", " : "") + std::to_string(d);
    return s + "]";
}

std::vector<float> to_f32(const io::TensorInfo& t) {
    if (t.dtype != io::TensorDType::F32 && t.dtype != io::TensorDType::F16 &&
        t.dtype != io::TensorDType::BF16) {
        throw Error(ErrorCode::unsupported, "tensor " + t.name + " in " + t.file + " has dtype " +
                                                io::dtype_str(t.dtype) +
                                                "; adapters must be F32, F16 or BF16");
    }
    std::vector<float> out(t.numel());
    for (size_t i = 0; i < out.size(); ++i) {
        if (t.dtype == io::TensorDType::F32) {
            std::memcpy(&out[i], t.data + 4 * i, 4);
        } else {
            uint16_t h;
            std::memcpy(&h, t.data + 2 * i, 2);
            out[i] = t.dtype == io::TensorDType::F16 ? kernels::f16_to_f32(h)
                                                     : kernels::bf16_to_f32(h);
        }
        // Every value is read here anyway, so a NaN or infinity is reported now, naming the
        // tensor, rather than spreading silently through every generated token.
        if (!std::isfinite(out[i])) {
            throw Error(ErrorCode::format, "tensor " + t.name + " in " + t.file + " holds " +
                                               (std::isnan(out[i]) ? "NaN" : "an infinity") +
                                               " at element " + std::to_string(i) +
                                               " (a damaged or diverged adapter)");
        }
    }
    return out;
}

void expect_shape(const io::TensorInfo& t, std::initializer_list<int64_t> dims,
                  const std::string& why) {
    if (t.shape != std::vector<int64_t>(dims)) {
        throw Error(ErrorCode::format, "tensor " + t.name + " in " + t.file + " has shape " +
                                           t.shape_str() + ", but the model needs " +
                                           shape_str(dims) + " (" + why + ")");
    }
}

// One parsed PEFT key: "<module>.<kind>[.<adapter name>].<param>".
struct Key {
    std::string module;  // without "base_model.model."
    std::string kind;    // "lora_A", "lora_B", "saved", "base"
    std::string param;   // "weight" or "bias"
};

Key parse_key(const std::string& full, const std::string& file) {
    static const std::string prefix = "base_model.model.";
    if (full.compare(0, prefix.size(), prefix) != 0) {
        throw Error(ErrorCode::format, "tensor " + full + " in " + file +
                                           " does not start with base_model.model. as PEFT "
                                           "writes adapter keys");
    }
    const std::string rest = full.substr(prefix.size());
    // Names come from the file; PEFT's are under 100 bytes. The bound keeps messages short.
    if (full.size() > 1024) {
        throw Error(ErrorCode::format, "a tensor name of " + std::to_string(full.size()) +
                                           " bytes in " + file + " (" + full.substr(0, 80) +
                                           "...) is not a PEFT adapter key");
    }
    static const std::regex lora_re =
        peft_regex(R"(^(.+)\.(lora_A|lora_B)(\.[^.]+)?\.(weight|bias)$)");
    static const std::regex emb_re =
        peft_regex(R"(^(.+)\.(lora_embedding_A|lora_embedding_B)(\.[^.]+)?$)");
    static const std::regex saved_re =
        peft_regex(R"(^(.+)\.modules_to_save\.[^.]+\.(weight|bias)$)");
    static const std::regex plain_re = peft_regex(R"(^(.+)\.(weight|bias)$)");
    std::smatch m;
    if (std::regex_match(rest, m, lora_re)) return {m[1], m[2], m[4]};
    if (std::regex_match(rest, m, emb_re)) {
        throw Error(ErrorCode::unsupported,
                    "tensor " + full + " in " + file +
                        ": LoRA on the embedding (lora_embedding_A/B) is not supported yet");
    }
    if (std::regex_match(rest, m, saved_re)) return {m[1], "saved", m[2]};
    if (std::regex_match(rest, m, plain_re)) return {m[1], "base", m[2]};
    throw Error(ErrorCode::format, "tensor " + full + " in " + file + " is not a LoRA or "
                                   "modules_to_save tensor stackllama recognises");
}

// (layer, slot) of a module name; layer -1 and slot unused for lm_head.
bool locate(const std::string& module, int* layer, Slot* slot) {
    if (module == "lm_head") {
        *layer = -1;
        return true;
    }
    static const std::regex re = peft_regex(
        R"(^model\.layers\.(\d+)\.(self_attn\.[qkvo]_proj|mlp\.(gate|up|down)_proj)$)");
    std::smatch m;
    if (!std::regex_match(module, m, re)) return false;
    // A number past INT32_MAX is -1 here and then "not a layer of the model" (never an
    // std::out_of_range escaping as something other than stackllama::Error).
    *layer = parse_layer_number(m[1].str());
    if (*layer < 0) *layer = INT32_MAX;
    for (int s = 0; s < kSlotCount; ++s)
        if (m[2].str() == slot_module_name(Slot(s))) *slot = Slot(s);
    return true;
}

// Output and input sizes of a linear layer of the model.
std::pair<int64_t, int64_t> linear_shape(const ModelConfig& c, int layer, Slot slot) {
    const int64_t hidden = c.hidden_size, ffn = c.intermediate_size;
    const int64_t q_dim = int64_t(c.num_attention_heads) * c.head_dim;
    const int64_t kv_dim = int64_t(c.num_key_value_heads) * c.head_dim;
    if (layer < 0) return {c.vocab_size, hidden};
    switch (slot) {
        case kQ: return {q_dim, hidden};
        case kK:
        case kV: return {kv_dim, hidden};
        case kO: return {hidden, q_dim};
        case kGate:
        case kUp: return {ffn, hidden};
        case kDown: return {hidden, ffn};
        default: break;
    }
    return {0, 0};
}

}  // namespace



Adapter::Adapter(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Adapter::~Adapter() = default;
const AdapterConfig& Adapter::config() const noexcept { return impl_->config; }
const std::string& Adapter::path() const noexcept { return impl_->path; }
const Model& Adapter::model() const noexcept { return *impl_->model; }

std::vector<std::string> Adapter::lora_modules() const {
    std::vector<std::string> out;
    for (const auto& l : impl_->loras) out.push_back(l.name);
    return out;
}

std::vector<std::string> Adapter::saved_modules() const {
    std::vector<std::string> out;
    for (const auto& [name, m] : impl_->saved) out.push_back(name);
    return out;
}

std::shared_ptr<const Adapter> Adapter::load(std::shared_ptr<const Model> model,
                                             const std::string& dir) {
    if (!model) throw Error(ErrorCode::invalid_argument, "Adapter::load needs a model (got null)");
    if (!io::dir_exists(dir)) throw Error(ErrorCode::io, "adapter directory " + dir + " does not exist");
    const std::string config_path = io::join_path(dir, "adapter_config.json");
    if (!io::file_exists(config_path))
        throw Error(ErrorCode::io, "missing adapter_config.json in " + dir);
    const io::Json config = io::read_json_file(config_path);
    const io::TensorSet tensors = io::open_adapter_weights(dir);
    return make_adapter(std::move(model), dir, config, config_path, tensors);
}

std::shared_ptr<const Adapter> make_adapter(std::shared_ptr<const Model> model,
                                            const std::string& path, const io::Json& config,
                                            const std::string& config_path,
                                            const io::TensorSet& tensors) {
    auto impl = std::make_unique<Adapter::Impl>();
    impl->path = path;
    impl->model = model;
    impl->config = parse_adapter_config(config, config_path);
    const AdapterConfig& cfg = impl->config;
    const ModelConfig& mc = model->config();

    if (cfg.fan_in_fan_out)
        log::warn(config_path + ": fan_in_fan_out is true, but LLaMA's layers are nn.Linear; "
                                "ignored, as PEFT does");
    if (!cfg.base_model_name_or_path.empty() && !mc.name_or_path.empty() &&
        cfg.base_model_name_or_path != mc.name_or_path) {
        log::warn(config_path + ": base_model_name_or_path is \"" + cfg.base_model_name_or_path +
                  "\" but the model is \"" + mc.name_or_path + "\"; the shapes fit, so loading");
    }

    struct Pair {
        const io::TensorInfo* a = nullptr;
        const io::TensorInfo* b = nullptr;
        const io::TensorInfo* b_bias = nullptr;
    };
    std::map<std::string, Pair> pairs;
    for (const auto& [name, t] : tensors.tensors()) {
        Key k = parse_key(name, t.file);
        if (k.kind == "lora_A" && k.param == "weight") {
            pairs[k.module].a = &t;
        } else if (k.kind == "lora_B" && k.param == "weight") {
            pairs[k.module].b = &t;
        } else if (k.kind == "lora_B" && k.param == "bias") {
            pairs[k.module].b_bias = &t;
        } else if (k.kind == "lora_A") {
            throw Error(ErrorCode::format, "tensor " + name + " in " + t.file +
                                               ": lora_A has no bias in PEFT");
        } else {
            // modules_to_save: a whole module's weight.
            bool listed = false;
            for (const auto& m : cfg.modules_to_save) {
                listed = listed || k.module == m ||
                         (k.module.size() > m.size() &&
                          k.module.compare(k.module.size() - m.size(), m.size(), m) == 0 &&
                          k.module[k.module.size() - m.size() - 1] == '.');
            }
            if (!listed) {
                throw Error(ErrorCode::unsupported,
                            "tensor " + name + " in " + t.file + " replaces " + k.module + "." +
                                k.param + ", which modules_to_save does not list (base-layer "
                                          "biases, bias=\"" + cfg.bias + "\", do not exist in "
                                          "LLaMA)");
            }
            if (k.param != "weight") {
                throw Error(ErrorCode::unsupported,
                            "tensor " + name + " in " + t.file + ": a bias for " + k.module +
                                ", which LLaMA does not have");
            }
            SavedModule sm;
            sm.name = k.module;
            int64_t rows = 0, cols = mc.hidden_size;
            if (k.module == "lm_head" || k.module == "model.embed_tokens") {
                rows = mc.vocab_size;
                expect_shape(t, {rows, cols}, k.module + " of the model");
            } else if (k.module == "score") {
                if (t.shape.size() != 2 || t.shape[1] != mc.hidden_size || t.shape[0] <= 0)
                    expect_shape(t, {t.shape.empty() ? 1 : t.shape[0], cols},
                                 "score head over the hidden size");
                rows = t.shape[0];
            } else {
                throw Error(ErrorCode::unsupported, "tensor " + name + " in " + t.file +
                                                        ": modules_to_save for " + k.module +
                                                        " is not supported");
            }
            sm.data = to_f32(t);
            sm.m = kernels::Matrix{kernels::WeightType::f32, nullptr, size_t(rows), size_t(cols)};
            impl->saved[k.module] = std::move(sm);
        }
    }

    for (auto& [module, p] : pairs) {
        if (!p.a || !p.b) {
            throw Error(ErrorCode::format, tensors.origin + ": module " + module + " has " +
                                               (p.a ? "lora_A but no lora_B" : "lora_B but no lora_A"));
        }
        LoraModule lm;
        lm.name = module;
        if (!locate(module, &lm.layer, &lm.slot)) {
            throw Error(ErrorCode::unsupported,
                        "tensor " + p.a->name + " in " + p.a->file + ": LoRA on module " + module +
                            " is not supported (q/k/v/o_proj, gate/up/down_proj and lm_head are)");
        }
        if (lm.layer >= mc.num_hidden_layers) {
            throw Error(ErrorCode::format, "tensor " + p.a->name + " in " + p.a->file +
                                               " is for layer " +
                                               (lm.layer == INT32_MAX ? std::string("(out of range)")
                                                                      : std::to_string(lm.layer)) +
                                               ", but the model has " +
                                               std::to_string(mc.num_hidden_layers) + " layers");
        }
        if (!targets_module(cfg, module)) {
            throw Error(ErrorCode::format, "tensor " + p.a->name + " in " + p.a->file +
                                               ": module " + module +
                                               " is not selected by adapter_config.json's "
                                               "target_modules / layers_to_transform");
        }
        const auto [out, in] = linear_shape(mc, lm.layer, lm.slot);
        lm.r = rank_for(cfg, module);
        expect_shape(*p.a, {lm.r, in}, "rank " + std::to_string(lm.r) + " from adapter_config.json");
        expect_shape(*p.b, {out, lm.r}, "rank " + std::to_string(lm.r) + " from adapter_config.json");
        lm.s = lora_scale(cfg, lm.r, alpha_for(cfg, module));
        lm.a = to_f32(*p.a);
        lm.b = to_f32(*p.b);
        if (p.b_bias) {
            expect_shape(*p.b_bias, {out}, "lora_B bias");
            lm.b_bias = to_f32(*p.b_bias);
        }
        impl->loras.push_back(std::move(lm));
    }
    // Views are made once the vectors no longer move.
    for (auto& lm : impl->loras) {
        const auto [out, in] = linear_shape(mc, lm.layer, lm.slot);
        lm.a_m = kernels::Matrix{kernels::WeightType::f32, lm.a.data(), size_t(lm.r), size_t(in)};
        lm.b_m = kernels::Matrix{kernels::WeightType::f32, lm.b.data(), size_t(out), size_t(lm.r)};
    }
    for (auto& [name, sm] : impl->saved) sm.m.data = sm.data.data();
    if (impl->loras.empty() && impl->saved.empty())
        throw Error(ErrorCode::format, tensors.origin + " holds no LoRA or modules_to_save tensors");

    log::info("loaded adapter " + path + ": " + std::to_string(impl->loras.size()) +
              " LoRA modules, " + std::to_string(impl->saved.size()) + " saved modules");
    return std::make_shared<const Adapter>(std::move(impl));
}

void check_adapter_fits(const Adapter& adapter, const Model& model) {
    const ModelConfig& a = adapter.model().config();
    const ModelConfig& m = model.config();
    auto differ = [&](const char* what, int x, int y) {
        if (x != y)
            throw Error(ErrorCode::format, "adapter " + adapter.path() + " was loaded for a model with " +
                                               what + " " + std::to_string(x) + ", but this model has " +
                                               std::to_string(y));
    };
    differ("hidden_size", a.hidden_size, m.hidden_size);
    differ("intermediate_size", a.intermediate_size, m.intermediate_size);
    differ("num_hidden_layers", a.num_hidden_layers, m.num_hidden_layers);
    differ("num_attention_heads", a.num_attention_heads, m.num_attention_heads);
    differ("num_key_value_heads", a.num_key_value_heads, m.num_key_value_heads);
    differ("head_dim", a.head_dim, m.head_dim);
    differ("vocab_size", a.vocab_size, m.vocab_size);
}

std::vector<AdapterRef> bundled_adapters(std::shared_ptr<const Model> model) {
    if (!model)
        throw Error(ErrorCode::invalid_argument, "bundled_adapters needs a model (got null)");
    std::vector<AdapterRef> out;
    for (const BundledAdapter& b : model->impl().bundled) {
        const std::string where = model->path() + " (adapter " + b.name + ")";
        out.push_back({make_adapter(model, where, b.config, where, b.tensors), b.scale});
    }
    return out;
}

}  // namespace stackllama
