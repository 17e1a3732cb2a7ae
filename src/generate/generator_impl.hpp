// What a Generator holds (internal; shared by generator.cpp and scoring.cpp).
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "kernels/kernels.hpp"
#include "model/llama.hpp"
#include "model/overrides.hpp"
#include "stackllama/generator.hpp"
#include "util/thread_pool.hpp"

namespace stackllama {

struct Generator::Impl {
    Impl(std::shared_ptr<const Model> m, const GeneratorParams& params);

    std::shared_ptr<const Model> model;
    int n_ctx;
    std::shared_ptr<WorkerPool> workers;  // given in GeneratorParams, or one of its own
    ThreadPool& pool;                     // the workers' threads
    LlamaState state;
    const kernels::KernelTable& kt;
    std::vector<int32_t> tokens;  // sequence 0: the tokens in its KV cache
    std::vector<float> logits;
    // The last token generate() chose is returned before it is run through the model; it enters
    // the cache at the start of the next eval.
    std::optional<int32_t> pending;
    std::vector<AdapterRef> adapters;
    WeightOverrides overrides;                    // what `adapters` change in the forward pass
    const kernels::Matrix* score_override = nullptr;  // an attached adapter's `score` module

    // Tests: called with every logits row a sampler sees (sequence index, step, row).
    std::function<void(size_t seq, size_t step, const float* row, size_t n_vocab)> logits_hook;

    void rebuild_overrides();
    // Error(unsupported) for a model without an LM head (a reward model).
    void require_lm_head(const char* what) const;
    LogitsView eval(const std::vector<int32_t>& toks, bool all_logits);
    LogitsView eval_now(const std::vector<int32_t>& new_tokens, bool all_logits);
    void check_ids(const std::vector<int32_t>& ids, const char* what) const;
    // The tokenizer, or Error(invalid_argument) saying the model was loaded without one.
    const Tokenizer& tokenizer() const { return model->tokenizer(); }
    // Error(format) when out[0, n) holds a NaN or an infinity: a weight of the model (mapped,
    // never read at load) is not finite. `what` says which output.
    void check_finite(const float* out, size_t n, const std::string& what) const;
    // Forgets every sequence.
    void reset_all();

    // One forward over rows (token, sequence, position); logits of the rows in out_rows.
    void forward_rows(const std::vector<int32_t>& toks, const std::vector<int32_t>& seqs,
                      const std::vector<int32_t>& pos, const std::vector<size_t>& out_rows,
                      const LlamaHead& head, float* out);
};

}  // namespace stackllama
