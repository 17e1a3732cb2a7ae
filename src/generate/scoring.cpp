// Scoring: log-likelihoods, perplexity, rewards of a reward model, and best-of-n.
#include <algorithm>
#include <cmath>

#include "adapter/adapter_impl.hpp"
#include "generate/generator_impl.hpp"
#include "generate/sampler.hpp"
#include "model/model_impl.hpp"
#include "stackllama/error.hpp"

namespace stackllama {

namespace {

// Tokens per forward pass when every row's logits are needed (bounds the logits buffer).
constexpr size_t kScoreChunk = 128;
// Inputs of reward_batch that share one forward pass (each needs its own KV cache region).
constexpr size_t kRewardGroup = 8;

// The score head in use: an attached adapter's `score` module, else the model's score.weight.
// Refuses a SEQ_CLS adapter that lacks its score tensor, and a model without any head.
const kernels::Matrix& score_head(const Generator::Impl& I) {
    for (const AdapterRef& ref : I.adapters) {
        const Adapter::Impl& a = ref.adapter->impl();
        if (a.config.task_type == "SEQ_CLS" && a.saved.count("score") == 0) {
            throw Error(ErrorCode::format,
                        "adapter " + a.path +
                            " is a reward adapter (task_type SEQ_CLS) but holds no score tensor "
                            "(base_model.model.score.weight, saved through modules_to_save); "
                            "its score head was not saved, and stackllama will not make one up");
        }
    }
    if (I.score_override) return *I.score_override;
    const LlamaWeights& w = I.model->impl().weights;
    if (w.score.data) return w.score;
    throw Error(ErrorCode::unsupported,
                "no score head for reward(): model " + I.model->path() + " is a " +
                    I.model->config().architecture +
                    " and no attached adapter saves a score module; load a "
                    "LlamaForSequenceClassification model or attach a reward adapter (task_type "
                    "SEQ_CLS) with score in modules_to_save");
}

void check_input(const Generator::Impl& I, const std::vector<int32_t>& ids,
                 const std::string& where) {
    if (ids.empty())
        throw Error(ErrorCode::invalid_argument, where + "needs at least one token");
    I.check_ids(ids, where.c_str());
    if (ids.size() > size_t(I.n_ctx))
        throw Error(ErrorCode::out_of_range,
                    where + "has " + std::to_string(ids.size()) +
                        " tokens but the context holds n_ctx = " + std::to_string(I.n_ctx));
}

}  // namespace

TokenLogProbs Generator::log_likelihood(const std::vector<int32_t>& prompt,
                                        const std::vector<int32_t>& continuation) {
    Impl& I = *impl_;
    I.require_lm_head("log_likelihood()");
    check_input(I, prompt, "log_likelihood: the prompt ");
    I.check_ids(continuation, "log_likelihood: the continuation: ");
    std::vector<int32_t> all = prompt;
    all.insert(all.end(), continuation.begin(), continuation.end());
    if (all.size() > size_t(I.n_ctx))
        throw Error(ErrorCode::out_of_range,
                    "log_likelihood: prompt and continuation have " + std::to_string(all.size()) +
                        " tokens but the context holds n_ctx = " + std::to_string(I.n_ctx));

    TokenLogProbs out;
    out.tokens = continuation;
    out.logprobs.reserve(continuation.size());
    I.reset_all();
    try {
        const size_t vocab = size_t(I.model->config().vocab_size);
        // Row g predicts all[g + 1]; the continuation starts at index prompt.size().
        for (size_t done = 0; done + 1 < all.size();) {
            const size_t m = std::min(kScoreChunk, all.size() - 1 - done);
            std::vector<int32_t> chunk(all.begin() + long(done), all.begin() + long(done + m));
            LogitsView lv = I.eval_now(chunk, true);
            for (size_t r = 0; r < m; ++r) {
                const size_t g = done + r;
                if (g + 1 < prompt.size()) continue;
                const double lp = sampling::log_prob(lv.row(r), vocab, size_t(all[g + 1]));
                out.logprobs.push_back(float(lp));
                out.sum += lp;
            }
            done += m;
        }
    } catch (...) {
        I.reset_all();
        throw;
    }
    I.reset_all();
    return out;
}

TokenLogProbs Generator::log_likelihood(std::string_view prompt, std::string_view continuation) {
    const Tokenizer& tok = impl_->tokenizer();
    const std::vector<int32_t> p = tok.encode(prompt, true);
    std::string joined(prompt);
    joined.append(continuation);
    const std::vector<int32_t> full = tok.encode(joined, true);
    std::vector<int32_t> cont;
    if (full.size() >= p.size() && std::equal(p.begin(), p.end(), full.begin())) {
        cont.assign(full.begin() + long(p.size()), full.end());
    } else {
        cont = tok.encode(continuation, false);
    }
    return log_likelihood(p, cont);
}

double Generator::perplexity(const std::vector<int32_t>& ids) {
    if (ids.size() < 2)
        throw Error(ErrorCode::invalid_argument,
                    "perplexity needs at least two tokens (the first one is only context), got " +
                        std::to_string(ids.size()));
    TokenLogProbs lp =
        log_likelihood(std::vector<int32_t>(ids.begin(), ids.begin() + 1),
                       std::vector<int32_t>(ids.begin() + 1, ids.end()));
    return std::exp(-lp.sum / double(lp.logprobs.size()));
}

double Generator::perplexity(std::string_view text) {
    return perplexity(impl_->tokenizer().encode(text, true));
}

std::vector<std::vector<float>> Generator::reward_batch(
    const std::vector<std::vector<int32_t>>& inputs) {
    Impl& I = *impl_;
    const kernels::Matrix& head = score_head(I);
    for (size_t i = 0; i < inputs.size(); ++i)
        check_input(I, inputs[i], "reward input " + std::to_string(i) + " ");

    std::vector<std::vector<float>> out;
    out.reserve(inputs.size());
    const size_t labels = head.rows;
    I.reset_all();
    I.state.reserve_sequences(int(std::min(inputs.size(), kRewardGroup)));
    std::vector<int32_t> toks, seqs, pos;
    std::vector<size_t> rows;
    std::vector<float> buf;
    LlamaHead h;
    h.kind = LlamaHead::matrix;
    h.m = &head;
    for (size_t g0 = 0; g0 < inputs.size(); g0 += kRewardGroup) {
        const size_t g1 = std::min(inputs.size(), g0 + kRewardGroup);
        toks.clear();
        seqs.clear();
        pos.clear();
        rows.clear();
        for (size_t i = g0; i < g1; ++i) {
            for (size_t p = 0; p < inputs[i].size(); ++p) {
                toks.push_back(inputs[i][p]);
                seqs.push_back(int32_t(i - g0));
                pos.push_back(int32_t(p));
            }
            rows.push_back(toks.size() - 1);  // the last token of each input
        }
        buf.assign(rows.size() * labels, 0.0f);
        I.forward_rows(toks, seqs, pos, rows, h, buf.data());
        for (size_t k = 0; k < rows.size(); ++k)
            out.emplace_back(buf.begin() + long(k * labels), buf.begin() + long((k + 1) * labels));
    }
    I.reset_all();
    return out;
}

std::vector<std::vector<float>> Generator::reward_batch(const std::vector<std::string>& texts) {
    const Tokenizer& tok = impl_->tokenizer();
    std::vector<std::vector<int32_t>> ids;
    ids.reserve(texts.size());
    for (const std::string& t : texts) ids.push_back(tok.encode(t, true));
    return reward_batch(ids);
}

std::vector<float> Generator::reward(const std::vector<int32_t>& ids) {
    return reward_batch(std::vector<std::vector<int32_t>>{ids}).at(0);
}

std::vector<float> Generator::reward(std::string_view text) {
    return reward(impl_->tokenizer().encode(text, true));
}

namespace {

std::vector<ScoredAnswer> rank(std::vector<GenerationResult> answers,
                               std::vector<std::vector<float>> rewards) {
    std::vector<ScoredAnswer> out(answers.size());
    for (size_t i = 0; i < answers.size(); ++i) {
        out[i].answer = std::move(answers[i]);
        out[i].reward = std::move(rewards[i]);
        out[i].index = i;
    }
    std::stable_sort(out.begin(), out.end(), [](const ScoredAnswer& a, const ScoredAnswer& b) {
        return a.reward.at(0) > b.reward.at(0);
    });
    return out;
}

std::vector<std::string> reward_texts(std::string_view prompt,
                                      const std::vector<GenerationResult>& answers) {
    std::vector<std::string> texts;
    texts.reserve(answers.size());
    for (const GenerationResult& r : answers) texts.push_back(std::string(prompt) + r.text);
    return texts;
}

void attach_all(Generator& gen, const std::vector<AdapterRef>& set) {
    gen.detach_all();
    for (const AdapterRef& a : set) gen.attach(a.adapter, a.scale);
}

}  // namespace

std::vector<ScoredAnswer> best_of_n(Generator& policy, Generator& reward_model,
                                    std::string_view prompt, const GenerationConfig& config) {
    score_head(reward_model.impl());  // refuse before generating
    policy.impl().tokenizer();
    reward_model.impl().tokenizer();
    std::vector<GenerationResult> answers =
        policy.generate_batch(std::vector<std::string>{std::string(prompt)}, config);
    std::vector<std::vector<float>> rewards =
        reward_model.reward_batch(reward_texts(prompt, answers));
    return rank(std::move(answers), std::move(rewards));
}

std::vector<ScoredAnswer> best_of_n(Generator& gen, const std::vector<AdapterRef>& policy,
                                    const std::vector<AdapterRef>& reward,
                                    std::string_view prompt, const GenerationConfig& config) {
    const std::vector<AdapterRef> before = gen.attached();
    try {
        attach_all(gen, reward);
        score_head(gen.impl());  // refuse before generating
        attach_all(gen, policy);
        std::vector<GenerationResult> answers =
            gen.generate_batch(std::vector<std::string>{std::string(prompt)}, config);
        attach_all(gen, reward);
        std::vector<std::vector<float>> rewards = gen.reward_batch(reward_texts(prompt, answers));
        attach_all(gen, before);
        return rank(std::move(answers), std::move(rewards));
    } catch (...) {
        attach_all(gen, before);
        throw;
    }
}

}  // namespace stackllama
