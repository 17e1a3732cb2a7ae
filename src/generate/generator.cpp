#include "stackllama/generator.hpp"

#include <algorithm>
#include <cmath>
#include <map>
#include <optional>
#include <random>

#include "adapter/adapter_impl.hpp"
#include "generate/generator_impl.hpp"
#include "generate/sampler.hpp"
#include "generate/stop.hpp"
#include "kernels/gemm.hpp"
#include "model/model_impl.hpp"
#include "stackllama/error.hpp"
#include "util/worker_pool_impl.hpp"

namespace stackllama {

const char* finish_reason_name(FinishReason r) noexcept {
    switch (r) {
        case FinishReason::eos: return "eos";
        case FinishReason::length: return "length";
        case FinishReason::stop_string: return "stop_string";
        case FinishReason::cancelled: return "cancelled";
    }
    return "?";
}

namespace {

constexpr int kBatch = 512;  // rows per forward chunk (prefill)

int resolve_n_ctx(const Model& model, const GeneratorParams& params) {
    const int max_pos = model.config().max_position_embeddings;
    if (params.n_ctx < 0)
        throw Error(ErrorCode::invalid_argument,
                    "n_ctx must be 0 (the model's maximum) or positive, got " +
                        std::to_string(params.n_ctx));
    if (params.n_ctx > max_pos)
        throw Error(ErrorCode::invalid_argument,
                    "n_ctx " + std::to_string(params.n_ctx) +
                        " exceeds the model's max_position_embeddings " + std::to_string(max_pos));
    return params.n_ctx == 0 ? max_pos : params.n_ctx;
}

uint64_t random_seed() {
    std::random_device rd;
    return (uint64_t(rd()) << 32) ^ uint64_t(rd());
}

// The ids that end a sequence under `config`.
std::vector<int32_t> eos_ids(const Model& model, const GenerationConfig& config) {
    std::vector<int32_t> eos = config.eos_token_ids;
    if (config.use_model_eos) {
        const auto& m = model.config().eos_token_ids;
        eos.insert(eos.end(), m.begin(), m.end());
        if (model.has_tokenizer() && model.tokenizer().eos_id() >= 0)
            eos.push_back(model.tokenizer().eos_id());
    }
    std::sort(eos.begin(), eos.end());
    eos.erase(std::unique(eos.begin(), eos.end()), eos.end());
    return eos;
}

// One sequence being generated: its chooser, detokenizer, stop strings and result.
struct SeqRun {
    SeqRun(const GenerationConfig& config, uint64_t seed, const Tokenizer* tok)
        : chooser(config, seed), stops(config.stop_strings) {
        if (tok) detok.emplace(*tok);
        result.seed = seed;
    }
    int32_t slot = 0;              // KV cache sequence
    int32_t pos = 0;               // tokens in its cache: the position the next token takes
    std::vector<int32_t> context;  // every token so far (for the penalties)
    size_t n_generated = 0;
    TokenChooser chooser;
    std::optional<StreamDecoder> detok;
    StopStringMatcher stops;
    GenerationResult result;
    bool done = false;
    const float* logits = nullptr;  // the row to choose the next token from
};

using PieceFn = std::function<bool(std::string_view, int32_t)>;

// Ends a sequence: the decoder's and the stop matcher's held text goes out in a last piece.
void finish(SeqRun& s, FinishReason reason, const PieceFn& emit) {
    s.done = true;
    s.result.finish_reason = reason;
    std::string rest = s.detok ? s.detok->flush() : std::string();
    std::string out = s.stops.push(rest);
    if (s.stops.stopped()) {
        s.result.finish_reason = FinishReason::stop_string;
        s.result.stop_string = s.stops.matched();
    } else {
        out += s.stops.flush();
    }
    if (!out.empty()) {
        s.result.text += out;
        if (emit) emit(out, -1);
    }
}

// Chooses the next token of `s` from s.logits and records it; false when the sequence ended.
bool step(SeqRun& s, const GenerationConfig& config, const std::vector<int32_t>& eos,
          size_t n_vocab, int n_ctx, const PieceFn& emit) {
    const int32_t t = s.chooser.choose(s.logits, n_vocab, s.context, s.n_generated);
    s.result.tokens.push_back(t);
    s.result.logprobs.push_back(float(sampling::log_prob(s.logits, n_vocab, size_t(t))));
    s.context.push_back(t);
    ++s.n_generated;
    if (std::binary_search(eos.begin(), eos.end(), t)) {
        finish(s, FinishReason::eos, emit);
        return false;
    }
    const std::string piece = s.detok ? s.detok->push(t) : std::string();
    const std::string out = s.stops.push(piece);
    s.result.text += out;
    const bool go_on = !emit || emit(out, t);
    if (s.stops.stopped()) {
        s.done = true;
        s.result.finish_reason = FinishReason::stop_string;
        s.result.stop_string = s.stops.matched();
        return false;
    }
    if (!go_on) {
        finish(s, FinishReason::cancelled, emit);
        return false;
    }
    // At max_new_tokens, or with the context full (no room to run t), the length is reached.
    if (s.n_generated >= size_t(config.max_new_tokens) || s.pos >= n_ctx) {
        finish(s, FinishReason::length, emit);
        return false;
    }
    return true;
}

}  // namespace

Generator::Impl::Impl(std::shared_ptr<const Model> m, const GeneratorParams& params)
    : model(std::move(m)),
      n_ctx(resolve_n_ctx(*model, params)),
      workers(params.pool ? params.pool : std::make_shared<WorkerPool>(model->n_threads())),
      pool(workers->impl().pool),
      state(model->config(), n_ctx, kBatch, pool.size()),
      kt(kernels::active()) {
    kernels::set_blas_threads(pool.size());
    logits.reserve(size_t(model->config().vocab_size));
}

void Generator::Impl::rebuild_overrides() {
    WeightOverrides ov;
    const kernels::Matrix* score = nullptr;
    const ModelConfig& c = model->config();
    std::map<std::string, const Adapter*> replaced;  // saved module -> adapter
    for (const AdapterRef& ref : adapters) {
        const Adapter::Impl& a = ref.adapter->impl();
        for (const LoraModule& lm : a.loras) {
            LowRankTerm t{lm.a_m, lm.b_m, lm.b_bias.empty() ? nullptr : lm.b_bias.data(),
                          ref.scale * lm.s};
            if (lm.layer < 0) {
                ov.lm_head.push_back(t);
            } else {
                if (ov.layers.empty()) ov.layers.resize(size_t(c.num_hidden_layers));
                ov.layers[size_t(lm.layer)][lm.slot].push_back(t);
            }
            ov.max_rank = std::max(ov.max_rank, size_t(lm.r));
        }
        for (const auto& [name, sm] : a.saved) {
            if (replaced.count(name)) {
                throw Error(ErrorCode::invalid_argument,
                            "adapters " + replaced[name]->path() + " and " + a.path +
                                " both replace " + name + " (modules_to_save)");
            }
            replaced[name] = ref.adapter.get();
            if (name == "lm_head") ov.lm_head_matrix = &sm.m;
            if (name == "model.embed_tokens") ov.embed = &sm.m;
            if (name == "score") score = &sm.m;
        }
    }
    overrides = std::move(ov);
    score_override = score;
}

void Generator::Impl::require_lm_head(const char* what) const {
    if (model->impl().weights.lm_head.data == nullptr) {
        throw Error(ErrorCode::unsupported,
                    "model " + model->path() + " is a " + model->config().architecture +
                        " (a reward model): it has no LM head, so " + what +
                        " cannot run; use reward()");
    }
}

void Generator::Impl::check_ids(const std::vector<int32_t>& ids, const char* what) const {
    const int32_t vocab = model->config().vocab_size;
    for (size_t i = 0; i < ids.size(); ++i) {
        if (ids[i] < 0 || ids[i] >= vocab)
            throw Error(ErrorCode::invalid_argument,
                        std::string(what) + "token id " + std::to_string(ids[i]) + " at index " +
                            std::to_string(i) + " is outside the vocabulary [0, " +
                            std::to_string(vocab) + ")");
    }
}

void Generator::Impl::check_finite(const float* out, size_t n, const std::string& what) const {
    for (size_t i = 0; i < n; ++i) {
        if (!std::isfinite(out[i])) {
            throw Error(ErrorCode::format,
                        "the forward pass produced " +
                            std::string(std::isnan(out[i]) ? "NaN" : "an infinity") + " in " +
                            what + ": a weight of model " + model->path() +
                            " (or of an attached adapter) holds NaN or an infinity");
        }
    }
}

void Generator::Impl::reset_all() {
    tokens.clear();
    pending.reset();
}

LogitsView Generator::Impl::eval(const std::vector<int32_t>& toks, bool all_logits) {
    if (!pending) return eval_now(toks, all_logits);
    // Check the caller's tokens first, so that messages count them (not the pending token).
    require_lm_head("eval()");
    if (toks.empty()) throw Error(ErrorCode::invalid_argument, "eval() needs at least one token");
    check_ids(toks, "");
    if (tokens.size() + 1 + toks.size() > size_t(n_ctx))
        throw Error(ErrorCode::out_of_range,
                    std::to_string(tokens.size() + 1) +
                        " tokens in context (the last generated token included) + " +
                        std::to_string(toks.size()) +
                        " new ones exceed the context length n_ctx = " + std::to_string(n_ctx));
    std::vector<int32_t> with_pending;
    with_pending.reserve(toks.size() + 1);
    with_pending.push_back(*pending);
    with_pending.insert(with_pending.end(), toks.begin(), toks.end());
    LogitsView lv = eval_now(with_pending, all_logits);
    pending.reset();
    if (all_logits) {  // the caller asked for its own tokens' rows only
        lv.data += lv.n_vocab;
        lv.rows -= 1;
    }
    return lv;
}

LogitsView Generator::Impl::eval_now(const std::vector<int32_t>& new_tokens, bool all_logits) {
    const ModelConfig& c = model->config();
    require_lm_head("eval()");
    if (new_tokens.empty())
        throw Error(ErrorCode::invalid_argument, "eval() needs at least one token");
    check_ids(new_tokens, "");
    if (tokens.size() + new_tokens.size() > size_t(n_ctx))
        throw Error(ErrorCode::out_of_range,
                    std::to_string(tokens.size()) + " tokens in context + " +
                        std::to_string(new_tokens.size()) +
                        " new ones exceed the context length n_ctx = " + std::to_string(n_ctx));
    const size_t rows = all_logits ? new_tokens.size() : 1;
    logits.resize(rows * size_t(c.vocab_size));
    llama_forward(c, model->impl().weights, overrides, state, kt, pool, new_tokens.data(),
                  new_tokens.size(), tokens.size(), logits.data(), all_logits);
    check_finite(logits.data(), logits.size(), "the logits");  // the sequence stays unchanged
    tokens.insert(tokens.end(), new_tokens.begin(), new_tokens.end());
    return LogitsView{logits.data(), rows, size_t(c.vocab_size)};
}

void Generator::Impl::forward_rows(const std::vector<int32_t>& toks,
                                   const std::vector<int32_t>& seqs,
                                   const std::vector<int32_t>& pos,
                                   const std::vector<size_t>& out_rows, const LlamaHead& head,
                                   float* out) {
    llama_forward_rows(model->config(), model->impl().weights, overrides, state, kt, pool,
                       toks.data(), seqs.data(), pos.data(), toks.size(), out_rows.data(),
                       out_rows.size(), head, out);
    check_finite(out, out_rows.size() * head.out_size(model->config()),
                 head.kind == LlamaHead::logits ? "the logits" : "the outputs");
}

Generator::Generator(std::shared_ptr<const Model> model, const GeneratorParams& params) {
    if (!model) throw Error(ErrorCode::invalid_argument, "Generator needs a model (got null)");
    impl_ = std::make_unique<Impl>(std::move(model), params);
}
Generator::~Generator() = default;
Generator::Generator(Generator&&) noexcept = default;
Generator& Generator::operator=(Generator&&) noexcept = default;

const Model& Generator::model() const noexcept { return *impl_->model; }
int Generator::n_ctx() const noexcept { return impl_->n_ctx; }
int Generator::n_past() const noexcept { return int(impl_->tokens.size()); }
const std::vector<int32_t>& Generator::tokens() const noexcept { return impl_->tokens; }
void Generator::reset() { impl_->reset_all(); }

void Generator::attach(std::shared_ptr<const Adapter> adapter, float scale) {
    if (!adapter) throw Error(ErrorCode::invalid_argument, "attach() needs an adapter (got null)");
    if (!std::isfinite(scale))
        throw Error(ErrorCode::invalid_argument, "adapter scale must be finite, got " +
                                                     std::to_string(scale));
    for (const AdapterRef& r : impl_->adapters) {
        if (r.adapter == adapter)
            throw Error(ErrorCode::invalid_argument,
                        "adapter " + adapter->path() + " is already attached");
    }
    check_adapter_fits(*adapter, *impl_->model);
    impl_->adapters.push_back({std::move(adapter), scale});
    try {
        impl_->rebuild_overrides();
    } catch (...) {
        impl_->adapters.pop_back();
        impl_->rebuild_overrides();
        throw;
    }
}

void Generator::detach(const Adapter& adapter) {
    auto& v = impl_->adapters;
    auto it = std::find_if(v.begin(), v.end(),
                           [&](const AdapterRef& r) { return r.adapter.get() == &adapter; });
    if (it == v.end())
        throw Error(ErrorCode::invalid_argument, "adapter " + adapter.path() + " is not attached");
    v.erase(it);
    impl_->rebuild_overrides();
}

void Generator::detach_all() {
    impl_->adapters.clear();
    impl_->rebuild_overrides();
}

std::vector<AdapterRef> Generator::attached() const { return impl_->adapters; }

LogitsView Generator::eval(const std::vector<int32_t>& tokens, bool all_logits) {
    return impl_->eval(tokens, all_logits);
}

GenerationResult Generator::generate(const std::vector<int32_t>& prompt,
                                     const GenerationConfig& config,
                                     const TokenCallback& on_token) {
    Impl& I = *impl_;
    const ModelConfig& mc = I.model->config();
    I.require_lm_head("generate()");
    check_generation_config(config, mc.vocab_size);
    if (config.num_return_sequences != 1)
        throw Error(ErrorCode::invalid_argument,
                    "GenerationConfig.num_return_sequences is " +
                        std::to_string(config.num_return_sequences) +
                        ", but generate() returns one sequence; use generate_batch()");
    if (prompt.empty() && I.tokens.empty() && !I.pending)
        throw Error(ErrorCode::invalid_argument,
                    "generate() needs a prompt of at least one token (e.g. BOS) on an empty "
                    "sequence");
    I.check_ids(prompt, "prompt: ");

    // The whole prompt must fit with room for at least one new token, or the run is refused
    // before any work.
    const size_t pending = I.pending ? 1 : 0;
    if (I.tokens.size() + pending + prompt.size() > size_t(I.n_ctx))
        throw Error(ErrorCode::out_of_range,
                    "the prompt has " + std::to_string(prompt.size()) + " tokens (" +
                        std::to_string(I.tokens.size() + pending) +
                        " already in context) but the context holds n_ctx = " +
                        std::to_string(I.n_ctx));

    const std::vector<int32_t> eos = eos_ids(*I.model, config);
    const Tokenizer* tok = I.model->has_tokenizer() ? &I.model->tokenizer() : nullptr;
    SeqRun s(config, config.seed ? *config.seed : random_seed(), tok);
    s.context = I.tokens;
    if (I.pending) s.context.push_back(*I.pending);
    s.context.insert(s.context.end(), prompt.begin(), prompt.end());

    const size_t vocab = size_t(mc.vocab_size);
    LogitsView lv;
    if (!prompt.empty() || I.pending) {
        lv = I.eval(prompt, false);
    } else {
        // Continuing with no new tokens: the logits of the last evaluated token are still there.
        lv = LogitsView{I.logits.data(), 1, vocab};
    }
    const PieceFn emit = on_token ? PieceFn(on_token) : PieceFn();
    for (size_t i = 0; i < size_t(config.max_new_tokens); ++i) {
        s.logits = lv.row(lv.rows - 1);
        s.pos = int32_t(I.tokens.size());
        if (I.logits_hook) I.logits_hook(0, i, s.logits, vocab);
        if (!step(s, config, eos, vocab, I.n_ctx, emit)) break;
        lv = I.eval_now({s.result.tokens.back()}, false);
    }
    if (!s.result.tokens.empty() && I.tokens.size() < size_t(I.n_ctx))
        I.pending = s.result.tokens.back();
    return std::move(s.result);
}

GenerationResult Generator::generate(std::string_view prompt, const GenerationConfig& config,
                                     const TokenCallback& on_token) {
    const Tokenizer& tok = impl_->tokenizer();
    // Special tokens (BOS) belong at the start of a sequence only.
    std::vector<int32_t> ids = tok.encode(prompt, impl_->tokens.empty() && !impl_->pending);
    return generate(ids, config, on_token);
}

std::vector<GenerationResult> Generator::generate_batch(
    const std::vector<std::vector<int32_t>>& prompts, const GenerationConfig& config,
    const BatchTokenCallback& on_token) {
    Impl& I = *impl_;
    const ModelConfig& mc = I.model->config();
    I.require_lm_head("generate_batch()");
    check_generation_config(config, mc.vocab_size);
    for (size_t p = 0; p < prompts.size(); ++p) {
        const std::string where = "prompt " + std::to_string(p) + ": ";
        if (prompts[p].empty())
            throw Error(ErrorCode::invalid_argument,
                        where + "generate_batch() needs at least one token (e.g. BOS) per prompt");
        I.check_ids(prompts[p], where.c_str());
        if (prompts[p].size() > size_t(I.n_ctx))
            throw Error(ErrorCode::out_of_range,
                        where + "has " + std::to_string(prompts[p].size()) +
                            " tokens but the context holds n_ctx = " + std::to_string(I.n_ctx));
    }
    const size_t n = size_t(config.num_return_sequences), n_seq = prompts.size() * n;
    if (n_seq == 0) return {};
    if (n_seq > size_t(I.state.n_batch))
        throw Error(ErrorCode::invalid_argument,
                    std::to_string(prompts.size()) + " prompts x num_return_sequences " +
                        std::to_string(n) + " = " + std::to_string(n_seq) +
                        " sequences; at most " + std::to_string(I.state.n_batch) +
                        " decode together");

    I.reset_all();
    I.state.reserve_sequences(int(n_seq));
    const size_t vocab = size_t(mc.vocab_size);
    const std::vector<int32_t> eos = eos_ids(*I.model, config);
    const Tokenizer* tok = I.model->has_tokenizer() ? &I.model->tokenizer() : nullptr;
    const uint64_t seed = config.seed ? *config.seed : random_seed();

    // Prefill: every prompt once (into the cache of its first sequence) in one pass; its other
    // sequences get a copy of that cache.
    std::vector<int32_t> toks, seqs, pos;
    std::vector<size_t> out_rows;
    for (size_t p = 0; p < prompts.size(); ++p) {
        for (size_t i = 0; i < prompts[p].size(); ++i) {
            toks.push_back(prompts[p][i]);
            seqs.push_back(int32_t(p * n));
            pos.push_back(int32_t(i));
        }
        out_rows.push_back(toks.size() - 1);
    }
    std::vector<float> prompt_logits(prompts.size() * vocab);
    I.forward_rows(toks, seqs, pos, out_rows, LlamaHead{}, prompt_logits.data());
    for (size_t p = 0; p < prompts.size(); ++p)
        for (size_t j = 1; j < n; ++j)
            I.state.copy_sequence(mc, int(p * n), int(p * n + j), int(prompts[p].size()));

    std::vector<SeqRun> runs;
    runs.reserve(n_seq);
    for (size_t p = 0; p < prompts.size(); ++p) {
        for (size_t j = 0; j < n; ++j) {
            runs.emplace_back(config, seed + j, tok);
            SeqRun& s = runs.back();
            s.slot = int32_t(p * n + j);
            s.pos = int32_t(prompts[p].size());
            s.context = prompts[p];
            s.logits = prompt_logits.data() + p * vocab;
        }
    }

    std::vector<float> step_logits(n_seq * vocab);
    std::vector<PieceFn> emitters(n_seq);
    std::vector<size_t> active, next;
    for (size_t i = 0; i < n_seq; ++i) {
        active.push_back(i);
        if (on_token)
            emitters[i] = [&on_token, i](std::string_view piece, int32_t id) {
                return on_token(i, piece, id);
            };
    }
    for (size_t t = 0; t < size_t(config.max_new_tokens) && !active.empty(); ++t) {
        next.clear();
        for (size_t i : active) {
            SeqRun& s = runs[i];
            if (I.logits_hook) I.logits_hook(i, t, s.logits, vocab);
            if (step(s, config, eos, vocab, I.n_ctx, emitters[i])) next.push_back(i);
        }
        active.swap(next);
        if (active.empty()) break;
        // One forward: the new token of every unfinished sequence, each at its own position.
        toks.clear();
        seqs.clear();
        pos.clear();
        out_rows.clear();
        for (size_t k = 0; k < active.size(); ++k) {
            SeqRun& s = runs[active[k]];
            toks.push_back(s.result.tokens.back());
            seqs.push_back(s.slot);
            pos.push_back(s.pos);
            out_rows.push_back(k);
        }
        I.forward_rows(toks, seqs, pos, out_rows, LlamaHead{}, step_logits.data());
        for (size_t k = 0; k < active.size(); ++k) {
            SeqRun& s = runs[active[k]];
            ++s.pos;
            s.logits = step_logits.data() + k * vocab;
        }
    }
    // max_new_tokens == 0: nothing was generated.
    for (size_t i : active)
        if (!runs[i].done) finish(runs[i], FinishReason::length, PieceFn());
    I.reset_all();

    std::vector<GenerationResult> results;
    results.reserve(n_seq);
    for (SeqRun& s : runs) results.push_back(std::move(s.result));
    return results;
}

std::vector<GenerationResult> Generator::generate_batch(const std::vector<std::string>& prompts,
                                                        const GenerationConfig& config,
                                                        const BatchTokenCallback& on_token) {
    const Tokenizer& tok = impl_->tokenizer();
    std::vector<std::vector<int32_t>> ids;
    ids.reserve(prompts.size());
    for (const std::string& p : prompts) ids.push_back(tok.encode(p, true));
    return generate_batch(ids, config, on_token);
}

}  // namespace stackllama
