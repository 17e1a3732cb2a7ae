// A LLaMA-family causal language model loaded from a Hugging Face directory.
//
// Thread-safety: a Model is immutable after load and may be shared (through std::shared_ptr) by
// any number of Generators on any threads.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "stackllama/export.hpp"
#include "stackllama/tokenizer.hpp"

namespace stackllama {

// Storage type of a weight tensor.
enum class DType : int { f32 = 0, f16 = 1, bf16 = 2 };
STACKLLAMA_API const char* dtype_name(DType t) noexcept;

// The fields of config.json that the forward pass uses.
struct ModelConfig {
    std::string architecture;  // "LlamaForCausalLM"
    int hidden_size = 0;
    int intermediate_size = 0;
    int num_hidden_layers = 0;
    int num_attention_heads = 0;
    int num_key_value_heads = 0;  // = num_attention_heads when absent
    int head_dim = 0;             // = hidden_size / num_attention_heads when absent
    float rms_norm_eps = 1e-6f;
    float rope_theta = 10000.0f;
    int vocab_size = 0;
    int max_position_embeddings = 2048;
    bool tie_word_embeddings = false;
    int32_t bos_token_id = -1;              // -1 when absent
    std::vector<int32_t> eos_token_ids;     // config's eos_token_id (int or list)
    int32_t pad_token_id = -1;
    std::string name_or_path;               // _name_or_path, informative
};

struct ModelParams {
    int n_threads = 0;           // 0 = all hardware threads
    bool load_tokenizer = true;  // false: weights only (the tokenizer files may be absent)
    bool verbose = false;        // load log on stderr
};

class STACKLLAMA_API Model {
public:
    // Loads a model directory: config.json, model.safetensors or model.safetensors.index.json
    // shards, and (with params.load_tokenizer, when tokenizer.model exists) the tokenizer.
    // Weights stay memory-mapped in their stored dtype. Throws Error naming the file and the
    // field or tensor at fault.
    static std::shared_ptr<const Model> load(const std::string& path,
                                             const ModelParams& params = {});
    ~Model();
    Model(const Model&) = delete;
    Model& operator=(const Model&) = delete;

    const ModelConfig& config() const noexcept;
    const std::string& path() const noexcept;
    int n_threads() const noexcept;
    // The storage type of the large matrices (as found in the files).
    DType weight_dtype() const noexcept;
    // Bytes of weights read per decoded token (every matrix once).
    uint64_t weight_bytes() const noexcept;

    // Writes the model as a Hugging Face directory: config.json, model.safetensors (each tensor in
    // its storage type in memory, so merged matrices are f32) and, when the model has them, the
    // tokenizer files. The directory is created if needed. Error(io) naming the path on failure.
    void save_pretrained(const std::string& dir) const;

    bool has_tokenizer() const noexcept;
    // Throws Error when the model was loaded without its tokenizer.
    const Tokenizer& tokenizer() const;

    struct Impl;
    const Impl& impl() const noexcept { return *impl_; }
    // Internal: the library builds Models (Impl is not part of the public API).
    explicit Model(std::unique_ptr<Impl> impl);

private:
    std::unique_ptr<Impl> impl_;
};

}  // namespace stackllama
