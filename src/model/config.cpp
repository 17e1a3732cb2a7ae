#include "model/config.hpp"

#include <cmath>
#include <optional>

namespace stackllama {

namespace {

// A reward model: a score head [num_labels, hidden] instead of lm_head.
constexpr const char* kSequenceClassification = "LlamaForSequenceClassification";

int positive_int(const io::JsonObject& o, const char* key, int64_t max) {
    int64_t v = o.integer(key);
    if (v <= 0 || v > max)
        o.fail(key, "must be between 1 and " + std::to_string(max) + ", found " + std::to_string(v));
    return static_cast<int>(v);
}

std::vector<int32_t> token_id_list(const io::JsonObject& o, const char* key) {
    const io::Json* v = o.get(key);
    std::vector<int32_t> ids;
    if (!v) return ids;
    auto one = [&](const io::Json& e) {
        if (!e.is_number_integer() || e.get<int64_t>() < 0 || e.get<int64_t>() > INT32_MAX)
            o.fail(key, "must be a token id or a list of token ids, found " + v->dump());
        ids.push_back(static_cast<int32_t>(e.get<int64_t>()));
    };
    if (v->is_array()) {
        for (const auto& e : *v) one(e);
    } else {
        one(*v);
    }
    return ids;
}

// transformers' PretrainedConfig: id2label decides the number of labels (config.json carries
// it; num_labels is only a constructor argument, but some writers store it too); without either,
// two labels.
int num_labels(const io::JsonObject& o) {
    std::optional<int64_t> from_map;
    if (const io::Json* m = o.get("id2label")) {
        if (!m->is_object() || m->empty())
            o.fail("id2label", "must be a non-empty object of label names, found " +
                                   io::json_excerpt(*m));
        from_map = int64_t(m->size());
    }
    std::optional<int64_t> given;
    if (o.has("num_labels")) given = positive_int(o, "num_labels", kMaxVocab);
    if (from_map && given && *from_map != *given)
        o.fail("num_labels", "(" + std::to_string(*given) + ") disagrees with id2label, which has " +
                                 std::to_string(*from_map) + " labels");
    const int64_t n = from_map ? *from_map : given ? *given : 2;
    if (n > kMaxVocab) o.fail("id2label", "has too many labels (" + std::to_string(n) + ")");
    return static_cast<int>(n);
}

}  // namespace

ModelConfig parse_model_config(const io::Json& j, const std::string& origin) {
    io::JsonObject o(j, origin);
    ModelConfig c;

    // Architecture: LlamaForCausalLM (architectures list) or model_type "llama".
    if (const io::Json* archs = o.get("architectures")) {
        if (!archs->is_array() || archs->empty() || !(*archs)[0].is_string())
            o.fail("architectures", "must be a list of class names, found " + archs->dump());
        c.architecture = (*archs)[0].get<std::string>();
    } else {
        auto model_type = o.opt_string("model_type");
        if (!model_type)
            o.fail("architectures", "is missing (and so is model_type): cannot tell the model");
        c.architecture = *model_type == "llama" ? "LlamaForCausalLM" : *model_type;
    }
    if (c.architecture != "LlamaForCausalLM" && c.architecture != kSequenceClassification) {
        throw Error(ErrorCode::unsupported,
                    origin + ": architecture \"" + c.architecture +
                        "\" is not supported (stackllama runs LlamaForCausalLM and, as a reward "
                        "model, LlamaForSequenceClassification)");
    }
    if (auto act = o.opt_string("hidden_act"); act && *act != "silu") {
        throw Error(ErrorCode::unsupported,
                    origin + ": hidden_act \"" + *act + "\" is not supported (LLaMA uses silu)");
    }
    if (const io::Json* rs = o.get("rope_scaling")) {
        throw Error(ErrorCode::unsupported,
                    origin + ": rope_scaling " + rs->dump() + " is not supported yet");
    }
    for (const char* key : {"attention_bias", "mlp_bias"}) {
        if (o.opt_boolean(key).value_or(false))
            throw Error(ErrorCode::unsupported,
                        origin + ": " + key + "=true is not supported (LLaMA has no biases)");
    }

    c.hidden_size = positive_int(o, "hidden_size", kMaxHiddenSize);
    c.intermediate_size = positive_int(o, "intermediate_size", 4 * kMaxHiddenSize);
    c.num_hidden_layers = positive_int(o, "num_hidden_layers", kMaxLayers);
    c.num_attention_heads = positive_int(o, "num_attention_heads", kMaxHiddenSize);
    c.num_key_value_heads = o.has("num_key_value_heads")
                                ? positive_int(o, "num_key_value_heads", kMaxHiddenSize)
                                : c.num_attention_heads;
    c.vocab_size = positive_int(o, "vocab_size", kMaxVocab);
    if (o.has("head_dim")) {
        c.head_dim = positive_int(o, "head_dim", kMaxHiddenSize);
    } else {
        if (c.hidden_size % c.num_attention_heads != 0)
            o.fail("hidden_size", "(" + std::to_string(c.hidden_size) +
                                      ") is not a multiple of num_attention_heads (" +
                                      std::to_string(c.num_attention_heads) + ")");
        c.head_dim = c.hidden_size / c.num_attention_heads;
    }
    if (c.head_dim % 2 != 0) o.fail("head_dim", "must be even for rotary embeddings");
    if (c.num_attention_heads % c.num_key_value_heads != 0)
        o.fail("num_key_value_heads", "(" + std::to_string(c.num_key_value_heads) +
                                          ") must divide num_attention_heads (" +
                                          std::to_string(c.num_attention_heads) + ")");
    c.max_position_embeddings =
        o.has("max_position_embeddings") ? positive_int(o, "max_position_embeddings", kMaxPositions)
                                         : 2048;
    c.rms_norm_eps = static_cast<float>(o.opt_number("rms_norm_eps").value_or(1e-6));
    if (!(c.rms_norm_eps > 0.0f) || !std::isfinite(c.rms_norm_eps))
        o.fail("rms_norm_eps", "must be a positive number");
    c.rope_theta = static_cast<float>(o.opt_number("rope_theta").value_or(10000.0));
    if (!(c.rope_theta > 0.0f) || !std::isfinite(c.rope_theta))
        o.fail("rope_theta", "must be a positive number");
    c.tie_word_embeddings = o.opt_boolean("tie_word_embeddings").value_or(false);

    auto bos = token_id_list(o, "bos_token_id");
    c.bos_token_id = bos.empty() ? -1 : bos[0];
    c.eos_token_ids = token_id_list(o, "eos_token_id");
    auto pad = token_id_list(o, "pad_token_id");
    c.pad_token_id = pad.empty() ? -1 : pad[0];
    c.name_or_path = o.opt_string("_name_or_path").value_or("");
    if (c.architecture == kSequenceClassification) c.num_labels = num_labels(o);
    return c;
}

}  // namespace stackllama
