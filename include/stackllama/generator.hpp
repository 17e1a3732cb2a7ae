// Runs a Model over sequences: owns the KV caches, generates (one sequence, or many decoded
// together), scores text, and computes rewards with a reward model.
//
//   stackllama::Generator gen(model);
//   stackllama::GenerationConfig cfg;
//   cfg.do_sample = true;                 // as transformers: temperature / top_k / top_p apply
//   cfg.temperature = 0.9f; cfg.top_k = 100; cfg.top_p = 0.95f; cfg.seed = 42;
//   cfg.stop_strings = {"\n\nQuestion:"};
//   auto r = gen.generate("Question: What is RoPE?\n\nAnswer: ", cfg);
//   cfg.num_return_sequences = 4;          // four answers decoded together
//   auto rs = gen.generate_batch({"Question: What is RoPE?\n\nAnswer: "}, cfg);
//
// Thread-safety: a Generator is single-threaded state; use one per thread. Many Generators may
// share one Model.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "stackllama/adapter.hpp"
#include "stackllama/export.hpp"
#include "stackllama/model.hpp"
#include "stackllama/worker_pool.hpp"

namespace stackllama {

struct GeneratorParams {
    int n_ctx = 0;  // context length in tokens, per sequence; 0 = the model's max_position_embeddings
    // Threads to compute on, shared with other Generators (worker_pool.hpp). Null: a pool of the
    // model's n_threads of this Generator's own.  (since 0.2)
    std::shared_ptr<WorkerPool> pool;
};

// Named like transformers' GenerationConfig, with its defaults; presence_penalty,
// frequency_penalty and logit_bias as in the OpenAI / vLLM APIs. Every value is checked when a
// generation starts: one out of range is Error(invalid_argument) naming the field.
//
// Processing order (transformers): logit_bias, repetition_penalty, presence and frequency
// penalties, no_repeat_ngram_size; then, when sampling, temperature, top_k, top_p, min_p,
// typical_p. Without do_sample the first group applies and the best token is taken (greedy).
struct GenerationConfig {
    int max_new_tokens = 128;          // >= 0
    bool do_sample = false;            // false = greedy (the defaults below are then unused)
    float temperature = 1.0f;          // >= 0; with do_sample, 0 means greedy (llama.cpp's --temp 0)
    int top_k = 50;                    // >= 0; 0 = off (transformers' default is 50)
    float top_p = 1.0f;                // (0, 1]; 1 = off
    float min_p = 0.0f;                // [0, 1]; 0 = off
    float typical_p = 1.0f;            // (0, 1]; 1 = off
    float repetition_penalty = 1.0f;   // > 0; 1 = off. Over prompt and output tokens
    float presence_penalty = 0.0f;     // subtracted once from each token present in the output
    float frequency_penalty = 0.0f;    // subtracted per occurrence in the output
    int no_repeat_ngram_size = 0;      // >= 0; 0 = off. Over prompt and output tokens
    std::map<int32_t, float> logit_bias;  // added to a token's logit; -inf bans it
    // Unset: a random seed, drawn once per call and reported in GenerationResult::seed. Sequence
    // j of num_return_sequences samples with seed + j, so a batch reproduces n separate runs.
    std::optional<uint64_t> seed;
    // Tokens that end a sequence. With use_model_eos the model's EOS ids (config.json and
    // tokenizer) are added; so eos_token_ids empty and use_model_eos false = never stop on EOS.
    std::vector<int32_t> eos_token_ids;
    bool use_model_eos = true;
    // Text that ends a sequence, found across token boundaries in the decoded text; neither the
    // stop string nor anything after it is returned or streamed.
    std::vector<std::string> stop_strings;
    // Sequences per prompt (generate_batch); generate() needs 1.
    int num_return_sequences = 1;
};

enum class FinishReason : int { eos = 0, length = 1, stop_string = 2, cancelled = 3 };
STACKLLAMA_API const char* finish_reason_name(FinishReason r) noexcept;

struct GenerationResult {
    // The new tokens: the EOS that stopped generation included, and with a stop string the token
    // that completed it (though its text is cut).
    std::vector<int32_t> tokens;
    std::string text;  // their text (without the EOS, ending before a stop string)
    FinishReason finish_reason = FinishReason::length;
    // log p(tokens[i]) under the model's own distribution (log-softmax of the logits before any
    // processor), natural log: what log_likelihood() gives for the same tokens.
    std::vector<float> logprobs;
    uint64_t seed = 0;                // the seed this sequence sampled with
    std::string stop_string;          // the stop string found (finish_reason stop_string)
};

// Called with each new token and the text that became final with it (complete UTF-8, possibly
// empty: text that could be the start of a stop string is held back). Return false to stop
// generation (finish reason: cancelled). Text still held at the end arrives in one last call with
// token -1. The pieces put together are exactly GenerationResult::text.
using TokenCallback = std::function<bool(std::string_view piece, int32_t token)>;
// The same for generate_batch: `sequence` is the index into its result vector. Returning false
// cancels that sequence only.
using BatchTokenCallback =
    std::function<bool(size_t sequence, std::string_view piece, int32_t token)>;

// Logits of one or more positions: rows x n_vocab, row-major. Valid until the next call that
// changes the Generator.
struct LogitsView {
    const float* data = nullptr;
    size_t rows = 0;
    size_t n_vocab = 0;
    const float* row(size_t i) const { return data + i * n_vocab; }
};

// Log-probabilities of scored tokens.
struct TokenLogProbs {
    std::vector<int32_t> tokens;  // the scored tokens
    std::vector<float> logprobs;  // log p(tokens[i] | all before it), natural log
    double sum = 0.0;             // Σ logprobs, accumulated in double
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

    // KV sessions. save_session writes the sequence (tokens, KV cache, the pending token and the
    // last logits) to a zstd-compressed file; load_session replaces this generator's sequence
    // with it, so generation continues exactly where the saved one left off. The model and the
    // attached adapters (and scales) must be the ones it was saved with: Error(invalid_argument)
    // otherwise. A damaged file is Error(format) and leaves this generator unchanged. A prefix
    // saved once can be loaded by any number of generators. Since 0.1.
    void save_session(const std::string& path) const;
    void load_session(const std::string& path);

    // Appends tokens to the sequence and runs them through the model in one pass (prefill goes
    // through matrix-matrix products). Returns the logits of the last token, or of every token
    // appended when all_logits is true. Throws Error (out_of_range) when the context would
    // overflow and (invalid_argument) for an id outside the vocabulary; the sequence is then
    // unchanged. A reward model (no LM head) is Error(unsupported).
    LogitsView eval(const std::vector<int32_t>& tokens, bool all_logits = false);

    // Evaluates `prompt` after the current sequence and generates up to max_new_tokens tokens.
    // config.num_return_sequences must be 1 (see generate_batch).
    GenerationResult generate(const std::vector<int32_t>& prompt, const GenerationConfig& config,
                              const TokenCallback& on_token = {});
    // Same, encoding `prompt` with the model's tokenizer (BOS per tokenizer_config.json when the
    // sequence is empty).
    GenerationResult generate(std::string_view prompt, const GenerationConfig& config,
                              const TokenCallback& on_token = {});

    // Generates num_return_sequences sequences for each prompt, decoding all of them together:
    // each step is one forward pass over one row per unfinished sequence (each with its own
    // position and KV cache), so the weights are read once per step for all. Results are ordered
    // prompt by prompt, [p · n + j] for sequence j of prompt p; sequence j samples with seed + j.
    // A sequence gets the same tokens and logits, bit for bit, as generate() on that prompt alone
    // with seed + j: every product (each weight type, adapters' low-rank terms) gives a row the
    // value it gets alone.
    // Starts from an empty sequence (reset()) and leaves the Generator reset. KV caches for all
    // sequences are allocated at the start of the call (and kept for the next).
    std::vector<GenerationResult> generate_batch(const std::vector<std::vector<int32_t>>& prompts,
                                                 const GenerationConfig& config,
                                                 const BatchTokenCallback& on_token = {});
    // Same with text prompts (each encoded with BOS as the tokenizer says).
    std::vector<GenerationResult> generate_batch(const std::vector<std::string>& prompts,
                                                 const GenerationConfig& config,
                                                 const BatchTokenCallback& on_token = {});

    // --- scoring (each starts from an empty sequence and leaves the Generator reset) ---

    // log p(continuation | prompt), per token and summed. `prompt` needs at least one token.
    TokenLogProbs log_likelihood(const std::vector<int32_t>& prompt,
                                 const std::vector<int32_t>& continuation);
    // Text form: the continuation's tokens are those of encode(prompt + continuation) past the
    // tokens of encode(prompt) (so a word split across the seam is scored as the model sees it
    // in the joined text); when the joined encoding does not start with the prompt's, the
    // continuation is encoded on its own.
    TokenLogProbs log_likelihood(std::string_view prompt, std::string_view continuation);
    // exp(-mean log p(ids[i] | ids[<i])) over i >= 1. Needs at least two ids.
    double perplexity(const std::vector<int32_t>& ids);
    // Of encode(text) (BOS as the tokenizer says).
    double perplexity(std::string_view text);

    // --- reward model ---

    // The score head applied to the final hidden state (after the final norm) of the last token:
    // num_labels values. The head is score.weight of a LlamaForSequenceClassification model, or
    // the `score` module of an attached adapter (modules_to_save; it wins over the model's).
    // Error(unsupported) when there is no score head; an attached adapter with task_type SEQ_CLS
    // and no score tensor is refused with an error naming it (never a made-up head).
    std::vector<float> reward(const std::vector<int32_t>& ids);
    std::vector<float> reward(std::string_view text);  // encode(text), BOS as the tokenizer says
    // Rewards of several inputs, run through the model together (a few sequences per forward
    // pass); each equals reward() of that input alone, bit for bit.
    std::vector<std::vector<float>> reward_batch(const std::vector<std::vector<int32_t>>& inputs);
    std::vector<std::vector<float>> reward_batch(const std::vector<std::string>& texts);

    struct Impl;
    // Internal (tests, bindings): the implementation.
    Impl& impl() noexcept { return *impl_; }

private:
    std::unique_ptr<Impl> impl_;
};

// One answer of best_of_n.
struct ScoredAnswer {
    GenerationResult answer;
    std::vector<float> reward;  // the reward model's num_labels outputs; answers rank by reward[0]
    size_t index = 0;           // place in generation order: it sampled with seed + index
};

// Best-of-n: generates config.num_return_sequences answers to `prompt` with `policy` (as
// generate_batch), scores the text prompt + answer of each with `reward_model` (reward_batch),
// and returns them best first (ties keep generation order). The two Generators may run over the
// same Model: the base weights are in memory once.
STACKLLAMA_API std::vector<ScoredAnswer> best_of_n(Generator& policy, Generator& reward_model,
                                                   std::string_view prompt,
                                                   const GenerationConfig& config);
// The same on one Generator with two adapter sets over one copy of the weights: attaches `policy`
// to generate and `reward` to score (e.g. StackLLaMA's policy LoRA and its reward LoRA with
// `score` saved), and restores the adapters that were attached before.
STACKLLAMA_API std::vector<ScoredAnswer> best_of_n(Generator& gen,
                                                   const std::vector<AdapterRef>& policy,
                                                   const std::vector<AdapterRef>& reward,
                                                   std::string_view prompt,
                                                   const GenerationConfig& config);

}  // namespace stackllama
