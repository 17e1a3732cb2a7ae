// Logits processors and sampling, as transformers' generate() does them, with arithmetic that is
// the same on every machine.
//
// Order (transformers' _get_logits_processor; presence/frequency as vLLM and OpenAI define them):
//   logit_bias, repetition_penalty, presence/frequency penalties, no_repeat_ngram_size
//   then, when sampling: temperature, top_k, top_p, min_p, typical_p; softmax; one draw.
// Greedy decoding applies the first group and takes the argmax (the first index among equals).
// Filtered tokens become -inf. Every filter keeps at least one token.
//
// Reproducibility: probabilities are computed in double with exp_det (an exp of plain IEEE
// operations, no libm) and drawn with Rng (rng.hpp); the same logits and seed give the same token
// on every machine.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <vector>

#include "generate/rng.hpp"
#include "stackllama/generator.hpp"

namespace stackllama {

// Error(invalid_argument) naming the field when a value is out of range (see GenerationConfig).
// n_vocab bounds logit_bias and eos_token_ids.
void check_generation_config(const GenerationConfig& c, int32_t n_vocab);

namespace sampling {

// exp(x) from IEEE double operations only (Cody-Waite reduction, degree-13 Taylor polynomial,
// ldexp), within 2 ulp of the true value; 0 below -745, +inf above 709.8.
double exp_det(double x);

// Each processor works in place on scores[0, n).
// scores[t] += bias for each (t, bias).
void logit_bias(float* scores, size_t n, const std::map<int32_t, float>& bias);
// CTRL's penalty on every distinct token of `context`: a score s becomes s / p when s > 0, s · p
// otherwise (transformers' RepetitionPenaltyLogitsProcessor; the context holds prompt and output).
void repetition_penalty(float* scores, size_t n, const int32_t* context, size_t len, float p);
// scores[t] -= frequency · count(t) + presence · [count(t) > 0], counts over `generated`.
void presence_frequency(float* scores, size_t n, const int32_t* generated, size_t len,
                        float presence, float frequency);
// Bans every token that would repeat an n-gram of `context` (transformers'
// NoRepeatNGramLogitsProcessor: the last ngram-1 tokens followed by t already occurred).
void no_repeat_ngram(float* scores, size_t n, const int32_t* context, size_t len, int ngram);
// scores[t] /= temperature.
void temperature(float* scores, size_t n, float t);
// Keeps the tokens whose score is at least the k-th largest (ties at the boundary stay, as
// torch.topk's threshold keeps them); k >= n keeps all.
void top_k(float* scores, size_t n, int k);
// Nucleus: in order of decreasing score (ties: lower id first), keeps each token whose
// predecessors' probability mass is below p (transformers' cumulative <= 1 - p rule).
void top_p(float* scores, size_t n, float p);
// Keeps the tokens with probability >= p · max probability.
void min_p(float* scores, size_t n, float p);
// Locally typical sampling (Meister et al.; transformers' TypicalLogitsWarper): by increasing
// |-log p(t) - H|, keeps tokens until their mass reaches `mass`.
void typical_p(float* scores, size_t n, float mass);

// probs[i] = softmax(scores)[i] in double (exp_det; a -inf score gives exactly 0).
void softmax(const float* scores, size_t n, std::vector<double>& probs);
// The index where the running sum of probs (in index order) first exceeds u · Σ probs; only an
// index with probs > 0 is returned. u in [0, 1).
size_t draw(const std::vector<double>& probs, double u);
// First index of the largest value.
size_t argmax(const float* x, size_t n);
// log softmax(logits)[i], in double (for reporting; not used to choose).
double log_prob(const float* logits, size_t n, size_t i);

}  // namespace sampling

// Chooses the tokens of one sequence under a GenerationConfig (checked beforehand).
class TokenChooser {
public:
    TokenChooser(const GenerationConfig& config, uint64_t seed);

    // Runs the processors on a copy of logits[0, n) and returns the chosen token. `context` is
    // every token of the sequence so far (prompt and output); its last n_generated are output.
    // Error(invalid_argument) when the processors removed every token.
    int32_t choose(const float* logits, size_t n, const std::vector<int32_t>& context,
                   size_t n_generated);
    // The processed scores of the last choose() (for tests).
    const std::vector<float>& scores() const { return scores_; }
    bool sampling() const { return sample_; }

private:
    const GenerationConfig& config_;
    bool sample_;
    Rng rng_;
    std::vector<float> scores_;
    std::vector<double> probs_;
};

}  // namespace stackllama
