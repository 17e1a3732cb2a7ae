#include "generate/sampler.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>
#include <limits>
#include <numeric>
#include <unordered_map>

#include "stackllama/error.hpp"

namespace stackllama {

namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

[[noreturn]] void bad(const std::string& field, const std::string& what) {
    throw Error(ErrorCode::invalid_argument, "GenerationConfig." + field + " " + what);
}

std::string num(double v) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%g", v);
    return buf;
}

// The ids of the tokens still in play (score above -inf), in order of decreasing score, ties by
// increasing id. After top_k only k of them are left, so this sort is short.
void order_desc(const float* scores, size_t n, std::vector<uint32_t>& idx) {
    idx.clear();
    for (size_t i = 0; i < n; ++i)
        if (scores[i] != kNegInf) idx.push_back(uint32_t(i));
    std::sort(idx.begin(), idx.end(), [&](uint32_t a, uint32_t b) {
        return scores[a] > scores[b] || (scores[a] == scores[b] && a < b);
    });
}

}  // namespace

void check_generation_config(const GenerationConfig& c, int32_t n_vocab) {
    if (c.max_new_tokens < 0) bad("max_new_tokens", "must be >= 0, got " + std::to_string(c.max_new_tokens));
    if (!std::isfinite(c.temperature) || c.temperature < 0.0f)
        bad("temperature", "must be a finite number >= 0 (0 = greedy), got " + num(c.temperature));
    if (c.top_k < 0) bad("top_k", "must be >= 0 (0 = off), got " + std::to_string(c.top_k));
    if (!(c.top_p > 0.0f && c.top_p <= 1.0f))
        bad("top_p", "must be in (0, 1] (1 = off), got " + num(c.top_p));
    if (!(c.min_p >= 0.0f && c.min_p <= 1.0f))
        bad("min_p", "must be in [0, 1] (0 = off), got " + num(c.min_p));
    if (!(c.typical_p > 0.0f && c.typical_p <= 1.0f))
        bad("typical_p", "must be in (0, 1] (1 = off), got " + num(c.typical_p));
    if (!std::isfinite(c.repetition_penalty) || c.repetition_penalty <= 0.0f)
        bad("repetition_penalty", "must be a finite number > 0 (1 = off), got " +
                                      num(c.repetition_penalty));
    if (!std::isfinite(c.presence_penalty))
        bad("presence_penalty", "must be finite, got " + num(c.presence_penalty));
    if (!std::isfinite(c.frequency_penalty))
        bad("frequency_penalty", "must be finite, got " + num(c.frequency_penalty));
    if (c.no_repeat_ngram_size < 0)
        bad("no_repeat_ngram_size", "must be >= 0 (0 = off), got " +
                                        std::to_string(c.no_repeat_ngram_size));
    for (const auto& [id, b] : c.logit_bias) {
        if (id < 0 || id >= n_vocab)
            bad("logit_bias", "names token id " + std::to_string(id) +
                                  ", outside the vocabulary [0, " + std::to_string(n_vocab) + ")");
        if (std::isnan(b) || b == std::numeric_limits<float>::infinity())
            bad("logit_bias", "for token " + std::to_string(id) + " must be a number or -inf, got " +
                                  num(b));
    }
    for (int32_t id : c.eos_token_ids) {
        if (id < 0 || id >= n_vocab)
            bad("eos_token_ids", "holds token id " + std::to_string(id) +
                                     ", outside the vocabulary [0, " + std::to_string(n_vocab) +
                                     ")");
    }
    for (size_t i = 0; i < c.stop_strings.size(); ++i) {
        if (c.stop_strings[i].empty())
            bad("stop_strings", "[" + std::to_string(i) + "] is empty (it would stop at once)");
    }
    if (c.num_return_sequences < 1)
        bad("num_return_sequences", "must be >= 1, got " + std::to_string(c.num_return_sequences));
}

namespace sampling {

double exp_det(double x) {
    if (std::isnan(x)) return x;
    if (x < -745.2) return 0.0;
    if (x > 709.78) return std::numeric_limits<double>::infinity();
    // x = k ln2 + r, |r| <= ln2 / 2; ln2 split so that k · kLn2Hi is exact.
    constexpr double kLog2e = 1.4426950408889634;
    constexpr double kLn2Hi = 6.93147180369123816490e-01;
    constexpr double kLn2Lo = 1.90821492927058770002e-10;
    const double k = std::floor(x * kLog2e + 0.5);
    const double r = (x - k * kLn2Hi) - k * kLn2Lo;
    // e^r = Σ_{i<=13} r^i / i!, Horner from the highest term.
    static const double kInvFact[14] = {
        1.0,
        1.0,
        1.0 / 2,
        1.0 / 6,
        1.0 / 24,
        1.0 / 120,
        1.0 / 720,
        1.0 / 5040,
        1.0 / 40320,
        1.0 / 362880,
        1.0 / 3628800,
        1.0 / 39916800,
        1.0 / 479001600,
        1.0 / 6227020800.0,
    };
    double p = kInvFact[13];
    for (int i = 12; i >= 0; --i) p = p * r + kInvFact[i];
    return std::ldexp(p, static_cast<int>(k));
}

void logit_bias(float* scores, size_t n, const std::map<int32_t, float>& bias) {
    for (const auto& [id, b] : bias)
        if (id >= 0 && size_t(id) < n) scores[id] += b;
}

void repetition_penalty(float* scores, size_t n, const int32_t* context, size_t len, float p) {
    if (p == 1.0f) return;
    // Each distinct token once (transformers gathers, then scatters, the same value).
    std::vector<int32_t> ids(context, context + len);
    std::sort(ids.begin(), ids.end());
    ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
    for (int32_t t : ids) {
        if (t < 0 || size_t(t) >= n) continue;
        float& s = scores[t];
        s = s < 0.0f ? s * p : s / p;
    }
}

void presence_frequency(float* scores, size_t n, const int32_t* generated, size_t len,
                        float presence, float frequency) {
    if (presence == 0.0f && frequency == 0.0f) return;
    std::unordered_map<int32_t, int> count;
    for (size_t i = 0; i < len; ++i) ++count[generated[i]];
    for (const auto& [t, c] : count) {
        if (t < 0 || size_t(t) >= n) continue;
        scores[t] -= frequency * float(c) + presence;
    }
}

void no_repeat_ngram(float* scores, size_t n, const int32_t* context, size_t len, int ngram) {
    if (ngram <= 0 || len + 1 < size_t(ngram)) return;
    const size_t g = size_t(ngram);
    // The last g - 1 tokens; every earlier place where they occur bans the token that followed.
    const int32_t* tail = context + (len - (g - 1));
    for (size_t start = 0; start + g <= len; ++start) {
        if (std::equal(tail, tail + (g - 1), context + start)) {
            const int32_t t = context[start + g - 1];
            if (t >= 0 && size_t(t) < n) scores[t] = kNegInf;
        }
    }
}

void temperature(float* scores, size_t n, float t) {
    if (t == 1.0f) return;
    for (size_t i = 0; i < n; ++i) scores[i] = scores[i] / t;
}

void top_k(float* scores, size_t n, int k) {
    if (k <= 0 || size_t(k) >= n) return;
    std::vector<float> v(scores, scores + n);
    std::nth_element(v.begin(), v.begin() + (k - 1), v.end(), std::greater<float>());
    const float kth = v[size_t(k - 1)];
    for (size_t i = 0; i < n; ++i)
        if (scores[i] < kth) scores[i] = kNegInf;
}

void top_p(float* scores, size_t n, float p) {
    if (p >= 1.0f) return;
    std::vector<double> probs;
    softmax(scores, n, probs);
    std::vector<uint32_t> idx;
    order_desc(scores, n, idx);
    double before = 0.0;
    for (size_t j = 0; j < idx.size(); ++j) {
        // The first token always stays (min_tokens_to_keep = 1).
        if (j > 0 && before >= double(p)) scores[idx[j]] = kNegInf;
        before += probs[idx[j]];
    }
}

void min_p(float* scores, size_t n, float p) {
    if (p <= 0.0f) return;
    std::vector<double> probs;
    softmax(scores, n, probs);
    const size_t best = argmax(scores, n);
    const double threshold = double(p) * probs[best];
    for (size_t i = 0; i < n; ++i)
        if (i != best && probs[i] < threshold) scores[i] = kNegInf;
}

void typical_p(float* scores, size_t n, float mass) {
    if (mass >= 1.0f) return;
    std::vector<double> probs;
    softmax(scores, n, probs);
    // Entropy H = -Σ p log p over tokens with p > 0.
    double h = 0.0;
    for (size_t i = 0; i < n; ++i)
        if (probs[i] > 0.0) h -= probs[i] * std::log(probs[i]);
    // Tokens with probability 0 have shifted score +inf: they come last and are (already) out,
    // so only the others are ordered.
    std::vector<double> shifted(n, std::numeric_limits<double>::infinity());
    std::vector<uint32_t> idx;
    for (size_t i = 0; i < n; ++i) {
        if (probs[i] > 0.0) {
            shifted[i] = std::fabs(-std::log(probs[i]) - h);
            idx.push_back(uint32_t(i));
        }
    }
    if (idx.empty()) return;
    std::stable_sort(idx.begin(), idx.end(),
                     [&](uint32_t a, uint32_t b) { return shifted[a] < shifted[b]; });
    // last = how many tokens (in this order) have cumulative mass below `mass`; the tokens whose
    // shifted score exceeds that of token `last` go.
    size_t last = 0;
    double cum = 0.0;
    for (size_t j = 0; j < idx.size(); ++j) {
        cum += probs[idx[j]];
        if (cum < double(mass)) last = j + 1;
    }
    last = std::min(last, idx.size() - 1);
    const double limit = shifted[idx[last]];
    for (size_t j = 1; j < idx.size(); ++j)  // the first token always stays
        if (shifted[idx[j]] > limit) scores[idx[j]] = kNegInf;
}

void softmax(const float* scores, size_t n, std::vector<double>& probs) {
    probs.assign(n, 0.0);
    float mx = kNegInf;
    for (size_t i = 0; i < n; ++i) mx = std::max(mx, scores[i]);
    if (mx == kNegInf) return;  // nothing left: all zero
    double sum = 0.0;
    for (size_t i = 0; i < n; ++i) {
        probs[i] = scores[i] == kNegInf ? 0.0 : exp_det(double(scores[i]) - double(mx));
        sum += probs[i];
    }
    for (double& p : probs) p /= sum;
}

size_t draw(const std::vector<double>& probs, double u) {
    double total = 0.0;
    for (double p : probs) total += p;
    const double target = u * total;
    double cum = 0.0;
    size_t last_nonzero = 0;
    for (size_t i = 0; i < probs.size(); ++i) {
        if (probs[i] <= 0.0) continue;
        cum += probs[i];
        last_nonzero = i;
        if (cum > target) return i;
    }
    return last_nonzero;  // rounding left target at the very top
}

size_t argmax(const float* x, size_t n) {
    size_t best = 0;
    for (size_t i = 1; i < n; ++i)
        if (x[i] > x[best]) best = i;
    return best;
}

double log_prob(const float* logits, size_t n, size_t i) {
    float mx = kNegInf;
    for (size_t j = 0; j < n; ++j) mx = std::max(mx, logits[j]);
    double sum = 0.0;
    for (size_t j = 0; j < n; ++j) sum += std::exp(double(logits[j]) - double(mx));
    return double(logits[i]) - double(mx) - std::log(sum);
}

}  // namespace sampling

TokenChooser::TokenChooser(const GenerationConfig& config, uint64_t seed)
    : config_(config), sample_(config.do_sample && config.temperature > 0.0f), rng_(seed) {}

int32_t TokenChooser::choose(const float* logits, size_t n, const std::vector<int32_t>& context,
                             size_t n_generated) {
    const GenerationConfig& c = config_;
    scores_.assign(logits, logits + n);
    float* s = scores_.data();
    sampling::logit_bias(s, n, c.logit_bias);
    sampling::repetition_penalty(s, n, context.data(), context.size(), c.repetition_penalty);
    const size_t gen = std::min(n_generated, context.size());
    sampling::presence_frequency(s, n, context.data() + (context.size() - gen), gen,
                                 c.presence_penalty, c.frequency_penalty);
    sampling::no_repeat_ngram(s, n, context.data(), context.size(), c.no_repeat_ngram_size);
    if (sample_) {
        sampling::temperature(s, n, c.temperature);
        sampling::top_k(s, n, c.top_k);
        sampling::top_p(s, n, c.top_p);
        sampling::min_p(s, n, c.min_p);
        sampling::typical_p(s, n, c.typical_p);
    }
    const size_t best = sampling::argmax(s, n);
    if (std::isnan(s[best]) || s[best] == kNegInf) {
        throw Error(ErrorCode::invalid_argument,
                    "no token is left to choose after " + std::to_string(n_generated) +
                        " generated: logit_bias, no_repeat_ngram_size or the penalties removed "
                        "every token of the vocabulary");
    }
    if (!sample_) return int32_t(best);
    sampling::softmax(s, n, probs_);
    return int32_t(sampling::draw(probs_, rng_.uniform()));
}

}  // namespace stackllama
