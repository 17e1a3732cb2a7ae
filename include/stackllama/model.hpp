// A LLaMA-family causal language model loaded from a Hugging Face directory.
//
// Thread-safety: a Model is immutable after load and may be shared (through std::shared_ptr) by
// any number of Generators on any threads.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "stackllama/export.hpp"
#include "stackllama/tokenizer.hpp"

namespace stackllama {

// Storage type of a weight tensor. q8 and q4 are block types (32 weights share an f16 scale;
// 8.5 and 4.5 bits per weight), for matrices whose row length is a multiple of 32.  (q8, q4
// since 0.2)
enum class DType : int { f32 = 0, f16 = 1, bf16 = 2, q8 = 3, q4 = 4 };
STACKLLAMA_API const char* dtype_name(DType t) noexcept;
// "f32", "f16", "bf16", "q8", "q4" to a DType; false for anything else.  (since 0.2)
STACKLLAMA_API bool parse_dtype_name(const std::string& name, DType* out) noexcept;

// The fields of config.json that the forward pass uses.
struct ModelConfig {
    std::string architecture;  // "LlamaForCausalLM" or "LlamaForSequenceClassification"
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
    // LlamaForSequenceClassification (a reward model): outputs of its score head (len(id2label),
    // or num_labels; 2 when neither is given, as transformers). 0 for a causal LM.  (since 0.2)
    int num_labels = 0;
};

struct ModelParams {
    int n_threads = 0;             // 0 = the physical cores this process may run on
    bool load_tokenizer = true;    // false: weights only (the tokenizer files may be absent)
    bool verbose = false;          // load log on stderr
    bool verify_checksums = true;  // native files: check every tensor's XXH64 at load
    // Convert the weight matrices to this type at load (q8/q4: quantize), instead of keeping the
    // stored type. A matrix whose rows do not fit the type (q8/q4 need a multiple of 32) keeps its
    // stored type, and the load log says which. The converted weights live in memory (2 MiB pages
    // where the kernel allows) and the files are unmapped.  (since 0.2)
    std::optional<DType> weight_type;
};

// How Model::save_native writes the native file.
struct NativeSaveOptions {
    bool convert = false;  // store the matrices as `type` (f32, f16, bf16, q8, q4; a matrix
                           // whose rows do not fit q8/q4 keeps its type)
    DType type = DType::f16;
    int zstd_level = 0;    // 0 = uncompressed; 1..19 = zstd level for tensor data
    int n_threads = 0;     // compression threads; 0 = all cores
    // PEFT adapter directories stored unmerged in the file, with their scales (since 0.2); each
    // is checked against the model first. Loaded back by bundled_adapters().
    std::vector<std::pair<std::string, float>> adapters;
    // Called after each tensor with bytes of tensor data written so far and in all.
    std::function<void(uint64_t done, uint64_t total)> progress;
};

class STACKLLAMA_API Model {
public:
    // Loads a model directory (config.json, model.safetensors or model.safetensors.index.json
    // shards, and with params.load_tokenizer the tokenizer), or a native file written by
    // save_native / stackllama-convert.
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
    // The storage type of the large matrices (as found in the files, or as converted at load).
    DType weight_dtype() const noexcept;
    // Bytes of weights read per decoded token (every matrix once).
    uint64_t weight_bytes() const noexcept;

    // Writes the model as a Hugging Face directory: config.json, model.safetensors (each tensor in
    // its storage type in memory, so merged matrices are f32) and, when the model has them, the
    // tokenizer files. The directory is created if needed. Error(io) naming the path on failure;
    // Error(unsupported) for q8/q4 weights, which safetensors cannot hold (save_native keeps them).
    void save_pretrained(const std::string& dir) const;

    // Writes the model (config, tokenizer, every tensor) as one native file, loadable by
    // Model::load. Written to PATH.tmp and renamed, so a failure leaves no damaged file.
    void save_native(const std::string& path, const NativeSaveOptions& options = {}) const;

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
