#include "stackllama/generator.hpp"

#include <algorithm>
#include <cmath>
#include <map>
#include <optional>

#include "adapter/adapter_impl.hpp"
#include "kernels/gemm.hpp"
#include "model/llama.hpp"
#include "model/model_impl.hpp"
#include "stackllama/error.hpp"
#include "util/thread_pool.hpp"

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

constexpr int kBatch = 512;  // tokens per prefill chunk

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

}  // namespace

struct Generator::Impl {
    Impl(std::shared_ptr<const Model> m, const GeneratorParams& params)
        : model(std::move(m)),
          n_ctx(resolve_n_ctx(*model, params)),
          pool(model->n_threads()),
          state(model->config(), n_ctx, kBatch, model->n_threads()),
          kt(kernels::active()) {
        kernels::set_blas_threads(model->n_threads());
        logits.reserve(size_t(model->config().vocab_size));
    }

    std::shared_ptr<const Model> model;
    int n_ctx;
    ThreadPool pool;
    LlamaState state;
    const kernels::KernelTable& kt;
    std::vector<int32_t> tokens;
    std::vector<float> logits;
    // The last token generate() chose is returned before it is run through the model; it enters
    // the cache at the start of the next eval.
    std::optional<int32_t> pending;
    std::vector<AdapterRef> adapters;
    WeightOverrides overrides;  // what `adapters` change in the forward pass

    void rebuild_overrides() {
        WeightOverrides ov;
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
            }
        }
        overrides = std::move(ov);
    }

    LogitsView eval(const std::vector<int32_t>& toks, bool all_logits) {
        if (!pending) return eval_now(toks, all_logits);
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

    LogitsView eval_now(const std::vector<int32_t>& new_tokens, bool all_logits) {
        const ModelConfig& c = model->config();
        if (new_tokens.empty())
            throw Error(ErrorCode::invalid_argument, "eval() needs at least one token");
        for (size_t i = 0; i < new_tokens.size(); ++i) {
            if (new_tokens[i] < 0 || new_tokens[i] >= c.vocab_size)
                throw Error(ErrorCode::invalid_argument,
                            "token id " + std::to_string(new_tokens[i]) + " at index " +
                                std::to_string(i) + " is outside the vocabulary [0, " +
                                std::to_string(c.vocab_size) + ")");
        }
        if (tokens.size() + new_tokens.size() > size_t(n_ctx))
            throw Error(ErrorCode::out_of_range,
                        std::to_string(tokens.size()) + " tokens in context + " +
                            std::to_string(new_tokens.size()) +
                            " new ones exceed the context length n_ctx = " +
                            std::to_string(n_ctx));
        const size_t rows = all_logits ? new_tokens.size() : 1;
        logits.resize(rows * size_t(c.vocab_size));
        llama_forward(c, model->impl().weights, overrides, state, kt, pool, new_tokens.data(),
                      new_tokens.size(), tokens.size(), logits.data(), all_logits);
        tokens.insert(tokens.end(), new_tokens.begin(), new_tokens.end());
        return LogitsView{logits.data(), rows, size_t(c.vocab_size)};
    }
};

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
void Generator::reset() {
    impl_->tokens.clear();
    impl_->pending.reset();
}

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

namespace {

int32_t argmax(const float* x, size_t n) {
    size_t best = 0;
    for (size_t i = 1; i < n; ++i)
        if (x[i] > x[best]) best = i;
    return int32_t(best);
}

}  // namespace

GenerationResult Generator::generate(const std::vector<int32_t>& prompt,
                                     const GenerationConfig& config,
                                     const TokenCallback& on_token) {
    if (config.max_new_tokens < 0)
        throw Error(ErrorCode::invalid_argument,
                    "max_new_tokens must be >= 0, got " + std::to_string(config.max_new_tokens));
    if (!(config.temperature >= 0.0f) || !std::isfinite(config.temperature))
        throw Error(ErrorCode::invalid_argument,
                    "temperature must be >= 0, got " + std::to_string(config.temperature));
    if (config.temperature > 0.0f)
        throw Error(ErrorCode::unsupported,
                    "sampling with temperature > 0 is not implemented yet; use temperature 0");
    if (prompt.empty() && impl_->tokens.empty() && !impl_->pending)
        throw Error(ErrorCode::invalid_argument,
                    "generate() needs a prompt of at least one token (e.g. BOS) on an empty "
                    "sequence");

    std::vector<int32_t> eos = config.eos_token_ids;
    if (config.use_model_eos) {
        const auto& m = impl_->model->config().eos_token_ids;
        eos.insert(eos.end(), m.begin(), m.end());
        if (impl_->model->has_tokenizer() && impl_->model->tokenizer().eos_id() >= 0)
            eos.push_back(impl_->model->tokenizer().eos_id());
    }
    const auto is_eos = [&](int32_t t) { return std::find(eos.begin(), eos.end(), t) != eos.end(); };

    // The whole prompt must fit with room for at least one new token, or the run is refused
    // before any work.
    const size_t pending = impl_->pending ? 1 : 0;
    if (impl_->tokens.size() + pending + prompt.size() > size_t(impl_->n_ctx))
        throw Error(ErrorCode::out_of_range,
                    "the prompt has " + std::to_string(prompt.size()) + " tokens (" +
                        std::to_string(impl_->tokens.size()) +
                        " already in context) but the context holds n_ctx = " +
                        std::to_string(impl_->n_ctx));

    GenerationResult result;
    const Tokenizer* tok = impl_->model->has_tokenizer() ? &impl_->model->tokenizer() : nullptr;
    std::optional<StreamDecoder> detok;
    if (tok) detok.emplace(*tok);

    LogitsView lv;
    if (!prompt.empty() || impl_->pending) {
        lv = impl_->eval(prompt, false);
    } else {
        // Continuing with no new tokens: the logits of the last evaluated token are still there.
        lv = LogitsView{impl_->logits.data(), 1, size_t(impl_->model->config().vocab_size)};
    }

    const auto emit = [&](int32_t t) -> bool {
        std::string piece = detok ? detok->push(t) : std::string();
        result.text += piece;
        return !on_token || on_token(piece, t);
    };

    for (int i = 0; i < config.max_new_tokens; ++i) {
        const int32_t next = argmax(lv.row(lv.rows - 1), lv.n_vocab);
        result.tokens.push_back(next);
        if (is_eos(next)) {
            result.finish_reason = FinishReason::eos;
            break;
        }
        if (!emit(next)) {
            result.finish_reason = FinishReason::cancelled;
            break;
        }
        // Stop at max_new_tokens, or when the context is full (finish reason: length).
        if (i + 1 == config.max_new_tokens || impl_->tokens.size() >= size_t(impl_->n_ctx)) break;
        lv = impl_->eval_now({next}, false);
    }
    if (!result.tokens.empty() && impl_->tokens.size() < size_t(impl_->n_ctx))
        impl_->pending = result.tokens.back();
    if (detok) {
        std::string rest = detok->flush();
        if (!rest.empty()) {
            result.text += rest;
            if (on_token) on_token(rest, -1);
        }
    }
    return result;
}

GenerationResult Generator::generate(std::string_view prompt, const GenerationConfig& config,
                                     const TokenCallback& on_token) {
    const Tokenizer& tok = impl_->model->tokenizer();
    // Special tokens (BOS) belong at the start of a sequence only.
    std::vector<int32_t> ids = tok.encode(prompt, impl_->tokens.empty());
    return generate(ids, config, on_token);
}

}  // namespace stackllama
