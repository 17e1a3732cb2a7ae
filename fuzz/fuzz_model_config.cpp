// libFuzzer target: config.json through io::parse_json and parse_model_config, exactly as
// Model::load reads it. On success the config must satisfy what the forward pass and the KV-cache
// sizing rely on.
#include "fuzz_support.hpp"
#include "io/json_file.hpp"
#include "model/config.hpp"

using namespace stackllama;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    ModelConfig c;
    const bool ok = fuzz::expect_ok_or_error(
        [&] { c = parse_model_config(io::parse_json(text, "config.json"), "config.json"); });
    if (!ok) return 0;
    FUZZ_CHECK(c.architecture == "LlamaForCausalLM", c.architecture);
    FUZZ_CHECK(c.hidden_size > 0 && c.hidden_size <= kMaxHiddenSize, "hidden_size in range");
    FUZZ_CHECK(c.num_hidden_layers > 0 && c.num_hidden_layers <= kMaxLayers, "layers in range");
    FUZZ_CHECK(c.vocab_size > 0 && c.vocab_size <= kMaxVocab, "vocab_size in range");
    FUZZ_CHECK(c.max_position_embeddings > 0 && c.max_position_embeddings <= kMaxPositions,
               "max_position_embeddings in range");
    FUZZ_CHECK(c.num_attention_heads > 0 && c.num_key_value_heads > 0 &&
                   c.num_attention_heads % c.num_key_value_heads == 0,
               "kv heads divide heads");
    FUZZ_CHECK(c.head_dim > 0 && c.head_dim % 2 == 0, "head_dim even");
    FUZZ_CHECK(c.rms_norm_eps > 0 && c.rope_theta > 0, "eps and theta positive");
    for (int32_t id : c.eos_token_ids) FUZZ_CHECK(id >= 0, "eos ids non-negative");
    return 0;
}
