// Logits processors and sampling (src/generate/sampler.*) against hand computations on hand-made
// logits, the PRNG against values computed outside C++, and the sampling distributions against
// the expected ones with a chi-square test over 20 000 draws at a fixed seed.
#include <doctest/doctest.h>

#include <cmath>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include "generate/rng.hpp"
#include "generate/sampler.hpp"
#include "stackllama/error.hpp"

using namespace stackllama;

namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

bool kept(float s) { return s != -kInf; }

// Which entries survive a filter, as a string of 0/1 (readable in failure messages).
std::string mask(const std::vector<float>& s) {
    std::string m;
    for (float v : s) m += kept(v) ? '1' : '0';
    return m;
}

std::vector<float> logs(const std::vector<double>& p) {
    std::vector<float> out;
    for (double v : p) out.push_back(v > 0 ? float(std::log(v)) : -kInf);
    return out;
}

// Expected distribution by plain double arithmetic: softmax of logits / t over the kept set.
std::vector<double> softmax_over(const std::vector<float>& logits, double t,
                                 const std::string& keep) {
    std::vector<double> p(logits.size(), 0.0);
    double mx = -1e300, sum = 0;
    for (size_t i = 0; i < logits.size(); ++i)
        if (keep[i] == '1') mx = std::max(mx, double(logits[i]) / t);
    for (size_t i = 0; i < logits.size(); ++i)
        if (keep[i] == '1') sum += p[i] = std::exp(double(logits[i]) / t - mx);
    for (double& v : p) v /= sum;
    return p;
}

// Chi-square critical values at significance 0.001 for 1..10 degrees of freedom.
double chi2_critical(size_t df) {
    static const double t[] = {10.83, 13.82, 16.27, 18.47, 20.52, 22.46, 24.32, 26.12, 27.88, 29.59};
    REQUIRE(df >= 1);
    REQUIRE(df <= 10);
    return t[df - 1];
}

struct Fit {
    double chi2 = 0;
    size_t df = 0;
    size_t impossible = 0;  // draws of tokens with expected probability 0
};

Fit fit(const std::vector<int>& counts, const std::vector<double>& expected, int n) {
    Fit f;
    size_t cells = 0;
    for (size_t i = 0; i < counts.size(); ++i) {
        if (expected[i] <= 0) {
            f.impossible += size_t(counts[i]);
            continue;
        }
        const double e = expected[i] * n;
        f.chi2 += (counts[i] - e) * (counts[i] - e) / e;
        ++cells;
    }
    f.df = cells - 1;
    return f;
}

// 20 000 draws from a TokenChooser with `config` on fixed logits.
std::vector<int> draw_counts(const GenerationConfig& config, const std::vector<float>& logits,
                             int n) {
    TokenChooser chooser(config, *config.seed);
    std::vector<int> counts(logits.size(), 0);
    const std::vector<int32_t> context;
    for (int i = 0; i < n; ++i) ++counts[size_t(chooser.choose(logits.data(), logits.size(), context, 0))];
    return counts;
}

const std::vector<float> kLogits = {1.2f, 0.4f, 2.0f, -0.5f, 0.9f, 1.7f, -1.3f, 0.1f};

}  // namespace

TEST_CASE("rng: xoshiro256** seeded with splitmix64 gives the reference stream") {
    // Values from an independent Python implementation of both generators.
    Rng a(0);
    CHECK(a.next() == 0x99ec5f36cb75f2b4ull);
    CHECK(a.next() == 0xbf6e1f784956452aull);
    CHECK(a.next() == 0x1a5f849d4933e6e0ull);
    CHECK(a.next() == 0x6aa594f1262d2d2cull);
    Rng b(42);
    CHECK(b.uniform() == 0.08386297105988216);
    CHECK(b.uniform() == 0.3789802506626686);
    Rng c(7);
    for (int i = 0; i < 100000; ++i) {
        const double u = c.uniform();
        REQUIRE(u >= 0.0);
        REQUIRE(u < 1.0);
    }
}

TEST_CASE("exp_det agrees with exp to 2 ulp, and at the edges") {
    double worst = 0;
    for (double x = -745.0; x <= 709.0; x += 0.0137) {
        const double want = std::exp(x);
        if (want == 0.0 || !std::isnormal(want)) continue;
        worst = std::max(worst, std::fabs(sampling::exp_det(x) - want) / want);
    }
    MESSAGE("worst relative error of exp_det: " << worst);
    CHECK(worst < 4.5e-16);
    CHECK(sampling::exp_det(0.0) == 1.0);
    CHECK(sampling::exp_det(-1000.0) == 0.0);
    CHECK(std::isinf(sampling::exp_det(1000.0)));
    CHECK(std::isnan(sampling::exp_det(std::nan(""))));
}

TEST_CASE("logit_bias adds, -inf bans") {
    std::vector<float> s = {1, 2, 3, -kInf};
    sampling::logit_bias(s.data(), s.size(), {{0, 1.5f}, {2, -kInf}, {3, 2.0f}});
    CHECK(s[0] == 2.5f);
    CHECK(s[1] == 2.0f);
    CHECK(s[2] == -kInf);
    CHECK(s[3] == -kInf);
}

TEST_CASE("repetition_penalty divides positive and multiplies negative scores, once per token") {
    std::vector<float> s = {2.0f, -1.0f, 0.5f, 3.0f, -kInf};
    const std::vector<int32_t> ctx = {0, 1, 1, 1, 4};
    sampling::repetition_penalty(s.data(), s.size(), ctx.data(), ctx.size(), 2.0f);
    CHECK(s[0] == 1.0f);    // 2 / 2
    CHECK(s[1] == -2.0f);   // -1 · 2, not · 8 for three occurrences
    CHECK(s[2] == 0.5f);    // not in the context
    CHECK(s[3] == 3.0f);
    CHECK(s[4] == -kInf);
    // A penalty below 1 favours repeats.
    std::vector<float> t = {2.0f, -1.0f};
    sampling::repetition_penalty(t.data(), t.size(), ctx.data(), 2, 0.5f);
    CHECK(t[0] == 4.0f);
    CHECK(t[1] == -0.5f);
}

TEST_CASE("presence and frequency penalties count the generated tokens") {
    std::vector<float> s = {0, 0, 1, 0, 0, 2};
    const std::vector<int32_t> gen = {2, 2, 5};
    sampling::presence_frequency(s.data(), s.size(), gen.data(), gen.size(), 0.5f, 0.25f);
    CHECK(s[2] == doctest::Approx(1.0 - (0.5 + 2 * 0.25)));
    CHECK(s[5] == doctest::Approx(2.0 - (0.5 + 0.25)));
    CHECK(s[0] == 0.0f);
    CHECK(s[1] == 0.0f);
}

TEST_CASE("no_repeat_ngram_size bans the tokens that would repeat an n-gram") {
    const std::vector<int32_t> ctx = {1, 2, 3, 1, 2, 4, 1, 2};
    std::vector<float> s(6, 0.0f);
    sampling::no_repeat_ngram(s.data(), s.size(), ctx.data(), ctx.size(), 3);
    CHECK(mask(s) == "111001");  // "1 2 3" and "1 2 4" seen: 3 and 4 banned after "1 2"
    std::vector<float> u(6, 0.0f);
    sampling::no_repeat_ngram(u.data(), u.size(), ctx.data(), ctx.size(), 1);
    CHECK(mask(u) == "100001");  // unigrams: every token seen
    std::vector<float> v(6, 0.0f);
    sampling::no_repeat_ngram(v.data(), v.size(), ctx.data(), 3, 5);
    CHECK(mask(v) == "111111");  // too short for a 5-gram
    std::vector<float> w(6, 0.0f);
    sampling::no_repeat_ngram(w.data(), w.size(), ctx.data(), ctx.size(), 4);
    CHECK(mask(w) == "111111");  // "4 1 2" never came before
}

TEST_CASE("temperature divides the scores") {
    std::vector<float> s = {1, 2, -kInf, -3};
    sampling::temperature(s.data(), s.size(), 0.5f);
    CHECK(s[0] == 2.0f);
    CHECK(s[1] == 4.0f);
    CHECK(s[2] == -kInf);
    CHECK(s[3] == -6.0f);
}

TEST_CASE("top_k keeps ties at the boundary, and everything when k >= vocabulary") {
    const std::vector<float> base = {1, 3, 3, 2, -kInf};
    auto run = [&](int k) {
        std::vector<float> s = base;
        sampling::top_k(s.data(), s.size(), k);
        return mask(s);
    };
    CHECK(run(1) == "01100");  // the 1st largest is 3, held by two tokens
    CHECK(run(2) == "01100");
    CHECK(run(3) == "01110");
    CHECK(run(4) == "11110");
    CHECK(run(5) == "11110");   // k = n: unchanged (the -inf stays -inf)
    CHECK(run(100) == "11110");  // k > n
    CHECK(run(0) == "11110");    // off
    std::vector<float> s = base;
    sampling::top_k(s.data(), s.size(), 3);
    CHECK(s[1] == 3.0f);  // kept values are untouched
    CHECK(s[3] == 2.0f);
}

TEST_CASE("top_p keeps the smallest prefix reaching p, and at least one token") {
    const std::vector<float> base = logs({0.5, 0.3, 0.15, 0.05});
    auto run = [&](float p, std::vector<float> s) {
        sampling::top_p(s.data(), s.size(), p);
        return mask(s);
    };
    // transformers: remove a token when the ascending cumulative mass up to it is <= 1 - p.
    // Ascending cumulatives: 0.05, 0.20, 0.50, 1.00.
    CHECK(run(0.7f, base) == "1100");    // 1 - p = 0.3: remove 0.05 and 0.20
    CHECK(run(0.85f, base) == "1110");   // 1 - p = 0.15: remove 0.05
    CHECK(run(0.97f, base) == "1111");   // 1 - p = 0.03: nothing
    CHECK(run(0.2f, base) == "1000");    // p below the top token's mass: the top token alone
    CHECK(run(1e-6f, base) == "1000");
    CHECK(run(1.0f, base) == "1111");    // off
    // Shuffled order, a -inf entry.
    const std::vector<float> mixed = logs({0.15, 0.0, 0.5, 0.05, 0.3});
    CHECK(run(0.7f, mixed) == "00101");
    // Ties: equal scores are ordered by id, so the lower id stays when the cut falls inside.
    const std::vector<float> tie = logs({0.2, 0.4, 0.4});
    CHECK(run(0.3f, tie) == "010");
    CHECK(run(0.5f, tie) == "011");
}

TEST_CASE("min_p keeps tokens with probability >= min_p · the top probability") {
    const std::vector<float> base = logs({0.5, 0.3, 0.15, 0.05});
    auto run = [&](float p, std::vector<float> s) {
        sampling::min_p(s.data(), s.size(), p);
        return mask(s);
    };
    CHECK(run(0.35f, base) == "1100");  // threshold 0.175
    CHECK(run(0.25f, base) == "1110");  // threshold 0.125
    CHECK(run(0.05f, base) == "1111");  // threshold 0.025
    CHECK(run(1.0f, base) == "1000");   // only the top
    CHECK(run(0.0f, base) == "1111");   // off
    CHECK(run(1.0f, logs({0.4, 0.4, 0.2})) == "110");  // equal tops both stay
    CHECK(run(0.9f, logs({0.0, 0.7, 0.3})) == "010");
}

TEST_CASE("typical_p keeps the tokens closest to the entropy until their mass reaches p") {
    // p = 0.5, 0.3, 0.15, 0.05: H = 1.14212; |-ln p - H| = 0.4490, 0.0619, 0.7550, 1.8536.
    // By that: t1 (0.3), t0 (0.8 cumulative), t2 (0.95), t3 (1.0).
    const std::vector<float> base = logs({0.5, 0.3, 0.15, 0.05});
    auto run = [&](float p, std::vector<float> s) {
        sampling::typical_p(s.data(), s.size(), p);
        return mask(s);
    };
    CHECK(run(0.2f, base) == "0100");   // no cumulative below 0.2: the most typical token only
    CHECK(run(0.5f, base) == "1100");   // one cumulative (0.3) below 0.5: keep up to t0
    CHECK(run(0.9f, base) == "1110");   // 0.3 and 0.8 below 0.9: keep up to t2
    CHECK(run(0.99f, base) == "1111");
    CHECK(run(0.5f, logs({0.3, 0.0, 0.5, 0.15, 0.05})) == "10100");
}

TEST_CASE("softmax and draw: zero-probability tokens are never drawn") {
    std::vector<double> p;
    sampling::softmax(logs({0.25, 0.0, 0.75}).data(), 3, p);
    CHECK(p[0] == doctest::Approx(0.25).epsilon(1e-6));  // log(0.25) rounded to float
    CHECK(p[1] == 0.0);
    CHECK(p[2] == doctest::Approx(0.75).epsilon(1e-6));
    CHECK(sampling::draw(p, 0.0) == 0);
    CHECK(sampling::draw(p, 0.2499) == 0);
    CHECK(sampling::draw(p, 0.2501) == 2);
    CHECK(sampling::draw(p, 0.999999999) == 2);
    CHECK(sampling::draw({0.0, 0.0, 1.0, 0.0}, 0.9999999999999999) == 2);
    CHECK(sampling::argmax(std::vector<float>{1, 3, 3, 2}.data(), 4) == 1);  // first of equals
}

TEST_CASE("greedy choice: penalties apply, warpers do not") {
    GenerationConfig c;  // do_sample false
    c.top_k = 1;         // would not matter
    c.repetition_penalty = 4.0f;
    TokenChooser ch(c, 0);
    const std::vector<float> logits = {1.0f, 3.0f, 2.0f};
    CHECK(ch.choose(logits.data(), 3, {}, 0) == 1);
    CHECK(ch.choose(logits.data(), 3, {1}, 1) == 2);  // 3 / 4 < 2
    c.logit_bias = {{0, -kInf}, {1, -kInf}, {2, -kInf}};
    TokenChooser none(c, 0);
    try {
        none.choose(logits.data(), 3, {}, 0);
        FAIL("choosing with every token banned must fail");
    } catch (const Error& e) {
        CHECK(e.code() == ErrorCode::invalid_argument);
        CHECK(std::string(e.what()).find("no token is left") != std::string::npos);
    }
}

TEST_CASE("invalid GenerationConfig values are errors naming the field") {
    struct Bad {
        const char* field;
        void (*set)(GenerationConfig&);
    };
    const Bad bad[] = {
        {"max_new_tokens", [](GenerationConfig& c) { c.max_new_tokens = -1; }},
        {"temperature", [](GenerationConfig& c) { c.temperature = -0.5f; }},
        {"temperature", [](GenerationConfig& c) { c.temperature = std::nanf(""); }},
        {"temperature", [](GenerationConfig& c) { c.temperature = kInf; }},
        {"top_k", [](GenerationConfig& c) { c.top_k = -1; }},
        {"top_p", [](GenerationConfig& c) { c.top_p = 0.0f; }},
        {"top_p", [](GenerationConfig& c) { c.top_p = 1.5f; }},
        {"top_p", [](GenerationConfig& c) { c.top_p = std::nanf(""); }},
        {"min_p", [](GenerationConfig& c) { c.min_p = -0.1f; }},
        {"min_p", [](GenerationConfig& c) { c.min_p = 1.1f; }},
        {"typical_p", [](GenerationConfig& c) { c.typical_p = 0.0f; }},
        {"typical_p", [](GenerationConfig& c) { c.typical_p = 2.0f; }},
        {"repetition_penalty", [](GenerationConfig& c) { c.repetition_penalty = 0.0f; }},
        {"repetition_penalty", [](GenerationConfig& c) { c.repetition_penalty = -1.0f; }},
        {"repetition_penalty", [](GenerationConfig& c) { c.repetition_penalty = kInf; }},
        {"presence_penalty", [](GenerationConfig& c) { c.presence_penalty = std::nanf(""); }},
        {"frequency_penalty", [](GenerationConfig& c) { c.frequency_penalty = kInf; }},
        {"no_repeat_ngram_size", [](GenerationConfig& c) { c.no_repeat_ngram_size = -2; }},
        {"logit_bias", [](GenerationConfig& c) { c.logit_bias = {{100, 1.0f}}; }},
        {"logit_bias", [](GenerationConfig& c) { c.logit_bias = {{-1, 1.0f}}; }},
        {"logit_bias", [](GenerationConfig& c) { c.logit_bias = {{3, std::nanf("")}}; }},
        {"logit_bias", [](GenerationConfig& c) { c.logit_bias = {{3, kInf}}; }},
        {"eos_token_ids", [](GenerationConfig& c) { c.eos_token_ids = {2, 100}; }},
        {"stop_strings", [](GenerationConfig& c) { c.stop_strings = {"ok", ""}; }},
        {"num_return_sequences", [](GenerationConfig& c) { c.num_return_sequences = 0; }},
    };
    for (const Bad& b : bad) {
        GenerationConfig c;
        b.set(c);
        INFO("field " << b.field);
        try {
            check_generation_config(c, 100);
            FAIL("accepted a bad " << b.field);
        } catch (const Error& e) {
            CHECK(e.code() == ErrorCode::invalid_argument);
            CHECK(std::string(e.what()).find(b.field) != std::string::npos);
        }
    }
    GenerationConfig ok;
    ok.logit_bias = {{3, -kInf}};  // a ban is fine
    ok.do_sample = true;
    ok.temperature = 0.0f;         // greedy
    ok.presence_penalty = -1.0f;   // negative penalties encourage; allowed
    CHECK_NOTHROW(check_generation_config(ok, 100));
}

TEST_CASE("sampling statistics: 20 000 draws fit the expected distribution (chi-square)") {
    constexpr int kDraws = 20000;
    struct Case {
        std::string name;
        GenerationConfig config;
        std::vector<double> expected;
        std::vector<double> wrong;  // a plausible mistake the test must reject
    };
    std::vector<Case> cases;
    {
        GenerationConfig c;
        c.do_sample = true;
        c.temperature = 0.6f;
        c.top_k = 0;
        c.seed = 1234;
        cases.push_back({"temperature 0.6", c, softmax_over(kLogits, 0.6, "11111111"),
                         softmax_over(kLogits, 1.0, "11111111")});
    }
    {
        GenerationConfig c;
        c.do_sample = true;
        c.top_k = 3;  // 2.0, 1.7, 1.2
        c.seed = 99;
        cases.push_back({"top_k 3", c, softmax_over(kLogits, 1.0, "10100100"),
                         softmax_over(kLogits, 1.0, "10101100")});
    }
    {
        GenerationConfig c;
        c.do_sample = true;
        c.top_k = 0;
        c.top_p = 0.6f;
        c.seed = 7;
        // Probabilities (T = 1) in order: 2.0 → 0.334, 1.7 → 0.247, 1.2 → 0.150,
        // 0.9 → 0.111, ...; masses before: 0, 0.334, 0.582, 0.732: keep the first three.
        cases.push_back({"top_p 0.6", c, softmax_over(kLogits, 1.0, "10100100"),
                         softmax_over(kLogits, 1.0, "10101100")});
    }
    {
        GenerationConfig c;
        c.do_sample = true;
        c.temperature = 1.5f;
        c.top_k = 4;  // after temperature: 2.0, 1.7, 1.2, 0.9
        c.top_p = 0.9f;
        c.seed = 2024;
        // At T = 1.5 over those four: 0.347, 0.284, 0.203, 0.166; masses before: 0, 0.347,
        // 0.630, 0.834 (< 0.9): all four stay.
        cases.push_back({"temperature 1.5, top_k 4, top_p 0.9", c,
                         softmax_over(kLogits, 1.5, "10101100"),
                         softmax_over(kLogits, 1.0, "10101100")});
    }
    for (const Case& k : cases) {
        INFO("case " << k.name);
        const std::vector<int> counts = draw_counts(k.config, kLogits, kDraws);
        const Fit f = fit(counts, k.expected, kDraws);
        MESSAGE(k.name << ": chi2 " << f.chi2 << " with " << f.df << " df (critical "
                       << chi2_critical(f.df) << ")");
        CHECK(f.impossible == 0);
        CHECK(f.chi2 < chi2_critical(f.df));
        // The same draws against the wrong distribution: the test has the power to fail.
        const Fit w = fit(counts, k.wrong, kDraws);
        CHECK((w.impossible > 0 || w.chi2 > 10 * chi2_critical(w.df)));
        // The fixed seed gives the same draws again.
        CHECK(draw_counts(k.config, kLogits, 500) == draw_counts(k.config, kLogits, 500));
    }
}
