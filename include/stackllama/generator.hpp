// Runs a Model over a sequence: owns the KV cache of one conversation and generates tokens.
//
// Thread-safety: a Generator is single-threaded state; use one per thread. Many Generators may
// share one Model.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "stackllama/adapter.hpp"
#include "stackllama/export.hpp"
#include "stackllama/model.hpp"

namespace stackllama {

struct GeneratorParams {
    int n_ctx = 0;  // context length in tokens; 0 = the model's max_position_embeddings
};

// Named like transformers' generate(). Only greedy decoding exists so far.
struct GenerationConfig {
    int max_new_tokens = 128;
    float temperature = 0.0f;  // 0 = greedy
    // Tokens that end generation; when use_model_eos is true the model's EOS ids are added.
    std::vector<int32_t> eos_token_ids;
    bool use_model_eos = true;
};

enum class FinishReason : int { eos = 0, length = 1, stop_string = 2, cancelled = 3 };
STACKLLAMA_API const char* finish_reason_name(FinishReason r) noexcept;

struct GenerationResult {
    std::vector<int32_t> tokens;  // the new tokens, the EOS that stopped generation included
    std::string text;             // their text (without the EOS)
    FinishReason finish_reason = FinishReason::length;
};

// Called with each new token and the text that became final with it (complete UTF-8, possibly
// empty). Return false to stop generation (finish reason: cancelled). Text the decoder still
// held at the end arrives in one last call with token -1.
using TokenCallback = std::function<bool(std::string_view piece, int32_t token)>;

// Logits of one or more positions: rows x n_vocab, row-major. Valid until the next call that
// changes the Generator.
struct LogitsView {
    const float* data = nullptr;
    size_t rows = 0;
    size_t n_vocab = 0;
    const float* row(size_t i) const { return data + i * n_vocab; }
};

class STACKLLAMA_API Generator {
public:
    explicit Generator(std::shared_ptr<const Model> model, const GeneratorParams& params = {});
    ~Generator();
    Generator(Generator&&) noexcept;
    Generator& operator=(Generator&&) noexcept;

    const Model& model() const noexcept;
    int n_ctx() const noexcept;
    // Tokens already in the KV cache. The last token generate() returned is not among them yet:
    // it enters the cache at the start of the next eval() or generate().
    int n_past() const noexcept;
    const std::vector<int32_t>& tokens() const noexcept;
    // Forget the sequence (the KV cache is kept allocated).
    void reset();

    // LoRA adapters applied unmerged from the next evaluated token on, each with its own
    // multiplier on its scale. Attaching or detaching does not recompute tokens already in the
    // cache: reset() to start over. The adapter must fit this generator's model (Error(format)
    // otherwise); attaching the same adapter twice, or two adapters that both replace one module
    // (modules_to_save), is Error(invalid_argument).
    void attach(std::shared_ptr<const Adapter> adapter, float scale = 1.0f);
    // Error(invalid_argument) when the adapter is not attached.
    void detach(const Adapter& adapter);
    void detach_all();
    std::vector<AdapterRef> attached() const;

    // Appends tokens to the sequence and runs them through the model in one pass (prefill goes
    // through matrix-matrix products). Returns the logits of the last token, or of every token
    // appended when all_logits is true. Throws Error (out_of_range) when the context would
    // overflow and (invalid_argument) for an id outside the vocabulary; the sequence is then
    // unchanged.
    LogitsView eval(const std::vector<int32_t>& tokens, bool all_logits = false);

    // Evaluates `prompt` after the current sequence and generates up to max_new_tokens tokens.
    GenerationResult generate(const std::vector<int32_t>& prompt, const GenerationConfig& config,
                              const TokenCallback& on_token = {});
    // Same, encoding `prompt` with the model's tokenizer (BOS per tokenizer_config.json when the
    // sequence is empty).
    GenerationResult generate(std::string_view prompt, const GenerationConfig& config,
                              const TokenCallback& on_token = {});

    struct Impl;

private:
    std::unique_ptr<Impl> impl_;
};

}  // namespace stackllama
