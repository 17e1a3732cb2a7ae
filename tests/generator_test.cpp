// Generation: sampling reproducibility, batched decoding against one sequence at a time, stop
// strings, streaming (non-ASCII included), cancellation, scoring, best-of-n and the CLI flags.
//
// Models: ../shared/data/stories260K-hf (real weights and tokenizer; skipped without shared data),
// and the CTest fixtures: <fixtures>/generate (random models from make_generate_fixtures.py, one
// with the real LLaMA tokenizer) and <fixtures>/models (bf16, f16 checkpoints).
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "generate/generator_impl.hpp"
#include "stackllama/stackllama.hpp"
#include "test_support.hpp"

namespace fs = std::filesystem;
using namespace stackllama;
using testing_support::fixture_dir;

namespace {

std::string gen_dir() { return fixture_dir() + "/generate"; }

std::shared_ptr<const Model> load(const std::string& dir, bool tokenizer = true) {
    ModelParams p;
    p.load_tokenizer = tokenizer;
    return Model::load(dir, p);
}

std::string stories_dir(const char* what) {
    const std::string data = testing_support::shared_data_or_skip(what);
    return data.empty() ? "" : data + "/stories260K-hf";
}

std::string error_of(const std::function<void()>& f, ErrorCode want) {
    try {
        f();
    } catch (const Error& e) {
        CHECK_MESSAGE(e.code() == want, "code " << error_code_name(e.code()) << ": " << e.what());
        return e.what();
    }
    FAIL("no error thrown");
    return "";
}

bool contains(const std::string& s, const std::string& what) {
    return s.find(what) != std::string::npos;
}

GenerationConfig sampling(uint64_t seed, int n_new) {
    GenerationConfig c;
    c.do_sample = true;
    c.temperature = 1.0f;
    c.top_k = 0;
    c.seed = seed;
    c.max_new_tokens = n_new;
    return c;
}

// Every logits row a sampler saw: [sequence][step] -> row.
using LogitsLog = std::map<std::pair<size_t, size_t>, std::vector<float>>;

void record(Generator& g, LogitsLog& log) {
    g.impl().logits_hook = [&log](size_t seq, size_t step, const float* row, size_t n) {
        log[{seq, step}] = std::vector<float>(row, row + n);
    };
}

float max_diff(const std::vector<float>& a, const std::vector<float>& b) {
    REQUIRE(a.size() == b.size());
    float d = 0;
    for (size_t i = 0; i < a.size(); ++i) d = std::max(d, std::fabs(a[i] - b[i]));
    return d;
}

// One sequence's streamed pieces and tokens.
struct Stream {
    std::string text;
    std::vector<std::string> pieces;  // per call
    std::vector<int32_t> tokens;      // per call (-1 for the final flush)
    TokenCallback fn() {
        return [this](std::string_view piece, int32_t tok) {
            text += piece;
            pieces.emplace_back(piece);
            tokens.push_back(tok);
            return true;
        };
    }
};

// Batched and one-at-a-time runs of the same prompts: identical logits, bit for bit (every
// product kernel, an adapter's low-rank terms included, gives a row the value it gets alone), and
// so identical tokens.
// `adapter_dir`: attached to both, scale 1.
void check_batch_matches_singles(const std::string& model_dir,
                                 const std::vector<std::vector<int32_t>>& prompts, int n,
                                 GenerationConfig cfg, const std::string& adapter_dir = "") {
    INFO("model " << model_dir << ", " << prompts.size() << " prompts x " << n);
    auto model = load(model_dir, false);
    cfg.num_return_sequences = n;
    Generator batch_gen(model);
    Generator single_gen(model);
    if (!adapter_dir.empty()) {
        auto adapter = Adapter::load(model, adapter_dir);
        batch_gen.attach(adapter, 1.0f);
        single_gen.attach(adapter, 1.0f);
    }
    LogitsLog batch_log;
    record(batch_gen, batch_log);
    const auto batch = batch_gen.generate_batch(prompts, cfg);
    REQUIRE(batch.size() == prompts.size() * size_t(n));
    CHECK(batch_gen.n_past() == 0);

    float worst = 0;
    for (size_t p = 0; p < prompts.size(); ++p) {
        for (int j = 0; j < n; ++j) {
            const size_t idx = p * size_t(n) + size_t(j);
            INFO("sequence " << idx);
            GenerationConfig one = cfg;
            one.num_return_sequences = 1;
            one.seed = *cfg.seed + uint64_t(j);
            LogitsLog log;
            record(single_gen, log);
            single_gen.reset();
            const GenerationResult r = single_gen.generate(prompts[p], one);
            CHECK(r.tokens == batch[idx].tokens);
            CHECK(r.finish_reason == batch[idx].finish_reason);
            CHECK(r.seed == batch[idx].seed);
            REQUIRE(r.logprobs.size() == batch[idx].logprobs.size());
            CHECK(r.logprobs == batch[idx].logprobs);
            for (size_t t = 0; t < r.tokens.size(); ++t) {
                REQUIRE(log.count({0, t}));
                REQUIRE(batch_log.count({idx, t}));
                const float d = max_diff(log[{0, t}], batch_log[{idx, t}]);
                worst = std::max(worst, d);
                CHECK(d == 0.0f);
            }
        }
    }
    MESSAGE("batched vs one at a time, " << model_dir << ": max |logit diff| " << worst);
}

}  // namespace

TEST_CASE("batched decoding: the same logits, bit for bit, and tokens as one sequence at a time") {
    const std::vector<int32_t> p0 = {1, 17, 200, 33, 7};
    const std::vector<int32_t> p1 = {1, 5, 9, 250, 300, 11, 12, 99, 4};
    GenerationConfig cfg = sampling(123, 20);
    cfg.use_model_eos = false;  // full length, so every step is compared
    SUBCASE("one prompt, four sequences (f32)") {
        check_batch_matches_singles(gen_dir() + "/base", {p0}, 4, cfg);
    }
    SUBCASE("two prompts of different lengths, three sequences each (bf16)") {
        check_batch_matches_singles(fixture_dir() + "/models/bf16", {p0, p1}, 3, cfg);
    }
    SUBCASE("greedy, three prompts (f16)") {
        GenerationConfig g;
        g.max_new_tokens = 16;
        g.use_model_eos = false;
        g.seed = 5;
        check_batch_matches_singles(fixture_dir() + "/models/f16", {p0, p1, {1, 2, 3}}, 1, g);
    }
    SUBCASE("with an adapter attached") {
        check_batch_matches_singles(gen_dir() + "/base", {p0, p1}, 2, cfg,
                                    gen_dir() + "/policy_adapter");
    }
    SUBCASE("with penalties and filters") {
        GenerationConfig c = sampling(77, 24);
        c.use_model_eos = false;
        c.temperature = 0.8f;
        c.top_k = 40;
        c.top_p = 0.9f;
        c.repetition_penalty = 1.3f;
        c.frequency_penalty = 0.2f;
        c.no_repeat_ngram_size = 2;
        check_batch_matches_singles(gen_dir() + "/base", {p1}, 5, c);
    }
}

TEST_CASE("batched decoding: sequences that end early leave the others unchanged") {
    auto model = load(gen_dir() + "/base", false);
    Generator gen(model);
    GenerationConfig cfg = sampling(31, 18);
    cfg.use_model_eos = false;
    cfg.num_return_sequences = 4;
    const std::vector<int32_t> prompt = {1, 40, 41, 42};
    const auto full = gen.generate_batch({prompt}, cfg);
    // Sequence 1 cancelled after 3 tokens, sequence 2 after 7.
    std::map<size_t, int> seen;
    const auto cut = gen.generate_batch({prompt}, cfg, [&](size_t s, std::string_view, int32_t) {
        const int n = ++seen[s];
        return !((s == 1 && n == 3) || (s == 2 && n == 7));
    });
    CHECK(cut[0].tokens == full[0].tokens);
    CHECK(cut[3].tokens == full[3].tokens);
    CHECK(cut[1].finish_reason == FinishReason::cancelled);
    CHECK(cut[1].tokens == std::vector<int32_t>(full[1].tokens.begin(), full[1].tokens.begin() + 3));
    CHECK(cut[2].tokens == std::vector<int32_t>(full[2].tokens.begin(), full[2].tokens.begin() + 7));
    CHECK(cut[0].finish_reason == FinishReason::length);
}

TEST_CASE("same seed, same tokens across runs; different seeds, different texts") {
    const std::string dir = stories_dir("sampling reproducibility");
    if (dir.empty()) return;
    auto model = load(dir);
    Generator gen(model);
    std::vector<int32_t> bos = {1};
    GenerationConfig cfg = sampling(42, 60);
    cfg.use_model_eos = false;
    const GenerationResult a = gen.generate(bos, cfg);
    gen.reset();
    const GenerationResult b = gen.generate(bos, cfg);
    CHECK(a.tokens == b.tokens);
    CHECK(a.text == b.text);
    CHECK(a.seed == 42);
    // Another Generator, and a batch in which it is sequence 0.
    Generator other(model);
    CHECK(other.generate(bos, cfg).tokens == a.tokens);
    GenerationConfig four = cfg;
    four.num_return_sequences = 4;
    const auto batch = other.generate_batch({bos}, four);
    CHECK(batch[0].tokens == a.tokens);
    std::set<std::string> texts;
    for (const auto& r : batch) texts.insert(r.text);
    CHECK(texts.size() == 4);  // seeds 42..45 differ
    for (uint64_t s = 1; s <= 4; ++s) {
        gen.reset();
        GenerationConfig c = cfg;
        c.seed = s;
        texts.insert(gen.generate(bos, c).text);
    }
    CHECK(texts.size() == 8);
    // The stream is pinned: the first sampled tokens of seed 42 (from this implementation, any
    // machine; a change in the PRNG, the processors or the forward pass shows here).
    MESSAGE("seed 42, first tokens: " << a.tokens[0] << " " << a.tokens[1] << " " << a.tokens[2]);
    // Without a seed, each call draws one and reports it.
    GenerationConfig unseeded = cfg;
    unseeded.seed.reset();
    gen.reset();
    const GenerationResult u = gen.generate(bos, unseeded);
    GenerationConfig replay = cfg;
    replay.seed = u.seed;
    gen.reset();
    CHECK(gen.generate(bos, replay).tokens == u.tokens);
}

TEST_CASE("greedy stays llama2.c's output; num_return_sequences belongs to generate_batch") {
    const std::string dir = stories_dir("greedy");
    if (dir.empty()) return;
    auto model = load(dir);
    Generator gen(model);
    GenerationConfig cfg;
    cfg.max_new_tokens = 200;
    const GenerationResult r = gen.generate(std::vector<int32_t>{1}, cfg);
    CHECK(r.text == testing_support::read_file(dir + "/expected_greedy_200.txt"));
    cfg.num_return_sequences = 2;
    gen.reset();
    const std::string m =
        error_of([&] { gen.generate(std::vector<int32_t>{1}, cfg); }, ErrorCode::invalid_argument);
    CHECK(contains(m, "num_return_sequences"));
    cfg.num_return_sequences = 1;
    cfg.top_p = 0.0f;
    const std::string m2 =
        error_of([&] { gen.generate(std::vector<int32_t>{1}, cfg); }, ErrorCode::invalid_argument);
    CHECK(contains(m2, "top_p"));
    CHECK(gen.n_past() == 0);
}

namespace {

// A greedy stories260K run of 200 tokens, piece by piece (no stop strings).
struct Reference {
    std::string text;
    std::vector<std::string> pieces;  // the text of token i (after the decoder's rules)
    std::vector<size_t> end;          // end offset of token i's text in `text`
};

Reference greedy_reference(Generator& gen) {
    Reference ref;
    GenerationConfig cfg;
    cfg.max_new_tokens = 200;
    gen.reset();
    Stream s;
    const GenerationResult r = gen.generate(std::vector<int32_t>{1}, cfg, s.fn());
    ref.text = r.text;
    for (size_t i = 0; i < s.pieces.size(); ++i) {
        if (s.tokens[i] < 0) {
            ref.pieces.back() += s.pieces[i];  // the decoder's held-back rest
        } else {
            ref.pieces.push_back(s.pieces[i]);
        }
    }
    size_t off = 0;
    for (const std::string& p : ref.pieces) ref.end.push_back(off += p.size());
    REQUIRE(off == ref.text.size());
    return ref;
}

// The index of the token whose text covers byte `offset`.
size_t token_at(const Reference& ref, size_t offset) {
    return size_t(std::upper_bound(ref.end.begin(), ref.end.end(), offset) - ref.end.begin());
}

void check_stop(Generator& gen, const Reference& ref, const std::vector<std::string>& stops,
                size_t min_tokens_spanned) {
    size_t at = std::string::npos, len = 0;
    for (const std::string& s : stops) {
        const size_t p = ref.text.find(s);
        if (p < at || (p == at && s.size() < len)) {
            at = p;
            len = s.size();
        }
    }
    REQUIRE(at != std::string::npos);
    const size_t first = token_at(ref, at), last = token_at(ref, at + len - 1);
    INFO("stop string at byte " << at << ", tokens " << first << ".." << last);
    REQUIRE(last + 1 - first >= min_tokens_spanned);
    GenerationConfig cfg;
    cfg.max_new_tokens = 200;
    cfg.stop_strings = stops;
    gen.reset();
    Stream s;
    const GenerationResult r = gen.generate(std::vector<int32_t>{1}, cfg, s.fn());
    CHECK(r.finish_reason == FinishReason::stop_string);
    CHECK(r.text == ref.text.substr(0, at));
    CHECK(s.text == r.text);  // nothing of the stop string was streamed
    CHECK(r.tokens.size() == last + 1);  // generation ended with the token completing it
    CHECK(r.stop_string == ref.text.substr(at, len));
}

}  // namespace

TEST_CASE("stop strings across two and three tokens, several, and one that never comes") {
    const std::string dir = stories_dir("stop strings");
    if (dir.empty()) return;
    auto model = load(dir);
    Generator gen(model);
    const Reference ref = greedy_reference(gen);
    REQUIRE(ref.pieces.size() == 200);

    // Stop strings cut from the reference itself across token boundaries, taken where their
    // first occurrence in the text is that very place.
    const auto offset_of = [&](size_t k) { return k == 0 ? size_t(0) : ref.end[k - 1]; };
    std::string two, three;
    for (size_t k = 10; k + 2 < ref.pieces.size() && (two.empty() || three.empty()); ++k) {
        const std::string& a = ref.pieces[k];
        const std::string& b = ref.pieces[k + 1];
        const std::string& c = ref.pieces[k + 2];
        if (two.empty() && a.size() >= 2 && b.size() >= 2) {
            const std::string cand = a.substr(a.size() - 2) + b.substr(0, 2);
            if (ref.text.find(cand) == offset_of(k) + a.size() - 2) two = cand;
        }
        if (three.empty() && k > 40 && !a.empty() && !b.empty() && !c.empty()) {
            const std::string cand = a.substr(a.size() - 1) + b + c.substr(0, 1);
            if (ref.text.find(cand) == offset_of(k) + a.size() - 1) three = cand;
        }
    }
    REQUIRE(!two.empty());
    REQUIRE(!three.empty());
    SUBCASE("split over two tokens") { check_stop(gen, ref, {two}, 2); }
    SUBCASE("split over three tokens") { check_stop(gen, ref, {three}, 3); }
    SUBCASE("several: the earliest wins") {
        check_stop(gen, ref, {three, two, "never in this text \x01"}, 2);
    }
    SUBCASE("a stop string that never comes") {
        GenerationConfig cfg;
        cfg.max_new_tokens = 200;
        cfg.stop_strings = {"zqxj", ref.text.substr(ref.text.size() - 3) + "@@"};
        gen.reset();
        Stream s;
        const GenerationResult r = gen.generate(std::vector<int32_t>{1}, cfg, s.fn());
        CHECK(r.finish_reason == FinishReason::length);
        CHECK(r.text == ref.text);
        CHECK(s.text == ref.text);  // the held-back tail came out at the end
        CHECK(r.tokens.size() == 200);
    }
    SUBCASE("text that could start a stop string is held back until it cannot") {
        // The first two bytes of the text's first word, followed by something that never comes.
        const std::string word = ref.text.substr(0, 4);
        GenerationConfig cfg;
        cfg.max_new_tokens = 200;
        cfg.stop_strings = {word + "\x02"};
        gen.reset();
        Stream s;
        const GenerationResult r = gen.generate(std::vector<int32_t>{1}, cfg, s.fn());
        CHECK(r.text == ref.text);
        CHECK(s.text == ref.text);
        for (const std::string& p : s.pieces) CHECK(!contains(p, word + "\x02"));
    }
}

TEST_CASE("a callback that cancels; the pieces always add up to the text") {
    const std::string dir = stories_dir("cancel");
    if (dir.empty()) return;
    auto model = load(dir);
    Generator gen(model);
    GenerationConfig cfg = sampling(3, 100);
    std::string streamed;
    int calls = 0;
    const GenerationResult r =
        gen.generate(std::vector<int32_t>{1}, cfg, [&](std::string_view piece, int32_t tok) {
            streamed += piece;
            return tok < 0 || ++calls < 5;
        });
    CHECK(r.finish_reason == FinishReason::cancelled);
    CHECK(r.tokens.size() == 5);
    CHECK(r.logprobs.size() == 5);
    CHECK(streamed == r.text);
    CHECK(r.text == model->tokenizer().decode(r.tokens));
}

TEST_CASE("non-ASCII streaming equals the full decode (real LLaMA tokenizer)") {
    const std::string dir = gen_dir() + "/llama_tok";
    if (!fs::exists(dir)) {
        testing_support::shared_data_or_skip("the LLaMA tokenizer fixture");
        MESSAGE("SKIP: " << dir << " was not built (no ../shared/data/llama-tokenizer)");
        return;
    }
    auto model = load(dir);
    const Tokenizer& tok = model->tokenizer();
    CHECK(tok.n_vocab() == 32000);
    Generator gen(model);
    size_t non_ascii = 0, byte_tokens = 0;
    for (uint64_t seed = 1; seed <= 4; ++seed) {
        INFO("seed " << seed);
        GenerationConfig cfg = sampling(seed, 150);
        cfg.temperature = 1.3f;
        gen.reset();
        Stream s;
        const GenerationResult r =
            gen.generate(tok.encode("Question: Wie geht's? 日本語\n\nAnswer: ", true), cfg, s.fn());
        std::vector<int32_t> ids = r.tokens;
        if (r.finish_reason == FinishReason::eos) ids.pop_back();
        CHECK(s.text == r.text);
        CHECK(r.text == tok.decode(ids));
        for (unsigned char ch : r.text) non_ascii += ch >= 0x80;
        for (int32_t t : ids) byte_tokens += tok.is_byte(t);
        // Every piece streamed is complete UTF-8 by itself (no split characters).
        for (const std::string& p : s.pieces) {
            size_t i = 0;
            while (i < p.size()) {
                const unsigned char c = static_cast<unsigned char>(p[i]);
                const size_t n = c < 0x80 ? 1 : c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : 2;
                REQUIRE(i + n <= p.size());
                i += n;
            }
        }
    }
    MESSAGE("non-ASCII bytes generated: " << non_ascii << ", byte-fallback tokens: " << byte_tokens);
    CHECK(non_ascii > 20);

    // Batched: each sequence's stream equals its text, which equals its decode.
    GenerationConfig cfg = sampling(11, 80);
    cfg.temperature = 1.3f;
    cfg.num_return_sequences = 3;
    std::map<size_t, std::string> streams;
    const auto rs = gen.generate_batch({"Ünïcödé: "}, cfg,
                                       [&](size_t i, std::string_view piece, int32_t) {
                                           streams[i] += piece;
                                           return true;
                                       });
    for (size_t i = 0; i < rs.size(); ++i) {
        std::vector<int32_t> ids = rs[i].tokens;
        if (rs[i].finish_reason == FinishReason::eos) ids.pop_back();
        CHECK(streams[i] == rs[i].text);
        CHECK(rs[i].text == tok.decode(ids));
    }

    // A stop string of two non-ASCII characters.
    gen.reset();
    GenerationConfig plain = sampling(2, 150);
    plain.temperature = 1.3f;
    const GenerationResult full = gen.generate(std::vector<int32_t>{1}, plain);
    const auto char_len = [](unsigned char c) -> size_t {
        return c < 0x80 ? 1 : c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : 2;
    };
    std::string stop;
    for (size_t i = 8; i < full.text.size() && stop.empty(); ++i) {
        const unsigned char c = static_cast<unsigned char>(full.text[i]);
        if (c < 0xC2 || c >= 0xF5) continue;  // not the lead byte of a multi-byte character
        const size_t n1 = char_len(c);
        if (i + n1 >= full.text.size()) break;
        const size_t n2 = char_len(static_cast<unsigned char>(full.text[i + n1]));
        if (i + n1 + n2 <= full.text.size()) stop = full.text.substr(i, n1 + n2);
    }
    REQUIRE_MESSAGE(!stop.empty(), "no non-ASCII character in: " << full.text);
    plain.stop_strings = {stop};
    gen.reset();
    Stream s;
    const GenerationResult r = gen.generate(std::vector<int32_t>{1}, plain, s.fn());
    CHECK(r.finish_reason == FinishReason::stop_string);
    CHECK(r.text == full.text.substr(0, full.text.find(stop)));
    CHECK(s.text == r.text);
}

TEST_CASE("log-likelihood and perplexity agree with eval() and with generate()'s logprobs") {
    const std::string dir = stories_dir("scoring");
    if (dir.empty()) return;
    auto model = load(dir);
    Generator gen(model);
    const std::vector<int32_t> prompt = {1, 403, 407};
    GenerationConfig cfg = sampling(8, 30);
    cfg.use_model_eos = false;
    const GenerationResult r = gen.generate(prompt, cfg);
    const TokenLogProbs lp = gen.log_likelihood(prompt, r.tokens);
    CHECK(gen.n_past() == 0);
    REQUIRE(lp.logprobs.size() == r.tokens.size());
    double sum = 0;
    for (size_t i = 0; i < lp.logprobs.size(); ++i) {
        CHECK(std::fabs(lp.logprobs[i] - r.logprobs[i]) <= 1e-4f);
        CHECK(lp.logprobs[i] <= 0.0f);
        sum += lp.logprobs[i];
    }
    CHECK(lp.sum == doctest::Approx(sum).epsilon(1e-6));

    // An independent path: softmax of eval()'s rows, in double.
    std::vector<int32_t> all = prompt;
    all.insert(all.end(), r.tokens.begin(), r.tokens.end());
    const LogitsView lv = gen.eval(all, true);
    double direct = 0;
    for (size_t g = prompt.size() - 1; g + 1 < all.size(); ++g) {
        const float* row = lv.row(g);
        double mx = -1e300, z = 0;
        for (size_t v = 0; v < lv.n_vocab; ++v) mx = std::max(mx, double(row[v]));
        for (size_t v = 0; v < lv.n_vocab; ++v) z += std::exp(double(row[v]) - mx);
        direct += double(row[all[g + 1]]) - mx - std::log(z);
    }
    CHECK(lp.sum == doctest::Approx(direct).epsilon(1e-5));

    // Perplexity: exp of the mean negative log-likelihood after the first token.
    const double ppl = gen.perplexity(all);
    const TokenLogProbs whole = gen.log_likelihood({all[0]}, std::vector<int32_t>(all.begin() + 1, all.end()));
    CHECK(ppl == doctest::Approx(std::exp(-whole.sum / double(all.size() - 1))).epsilon(1e-9));
    // llama2.c's own greedy text is far more likely to the model than shuffled tokens.
    const std::string text = testing_support::read_file(dir + "/expected_greedy_200.txt");
    const double ppl_text = gen.perplexity(text);
    std::vector<int32_t> ids = model->tokenizer().encode(text, true);
    std::reverse(ids.begin() + 1, ids.end());
    const double ppl_reversed = gen.perplexity(ids);
    MESSAGE("perplexity of the greedy text " << ppl_text << ", reversed " << ppl_reversed);
    CHECK(ppl_text < 3.0);
    CHECK(ppl_reversed > 10 * ppl_text);

    // Text form: the continuation's tokens are those of the joined text past the prompt's.
    const TokenLogProbs t = gen.log_likelihood("Once upon a time", " there was a girl");
    CHECK(!t.tokens.empty());
    std::vector<int32_t> joined = model->tokenizer().encode("Once upon a time there was a girl");
    CHECK(std::equal(t.tokens.rbegin(), t.tokens.rend(), joined.rbegin()));
    error_of([&] { gen.log_likelihood(std::vector<int32_t>{}, {1}); }, ErrorCode::invalid_argument);
    error_of([&] { gen.perplexity(std::vector<int32_t>{1}); }, ErrorCode::invalid_argument);
}

TEST_CASE("best-of-n: policy adapter generates, reward adapter ranks, one copy of the weights") {
    const std::string base_dir = gen_dir() + "/base";
    auto model = load(base_dir, true);
    if (!model->has_tokenizer()) {
        MESSAGE("SKIP: the base fixture has no tokenizer (no ../shared/data)");
        return;
    }
    auto policy = Adapter::load(model, gen_dir() + "/policy_adapter");
    auto rm = Adapter::load(model, gen_dir() + "/rm_adapter");
    Generator gen(model);
    auto other = Adapter::load(model, gen_dir() + "/rm_adapter_noscore");
    gen.attach(other, 0.5f);  // restored afterwards
    const std::string prompt = "Question: How do I sort a list?\n\nAnswer: ";
    GenerationConfig cfg = sampling(42, 24);
    cfg.num_return_sequences = 4;
    const auto ranked = best_of_n(gen, {{policy, 1.0f}}, {{rm, 1.0f}}, prompt, cfg);
    REQUIRE(ranked.size() == 4);
    REQUIRE(gen.attached().size() == 1);
    CHECK(gen.attached()[0].adapter == other);
    CHECK(gen.attached()[0].scale == 0.5f);
    for (size_t i = 0; i + 1 < ranked.size(); ++i)
        CHECK(ranked[i].reward.at(0) >= ranked[i + 1].reward.at(0));
    std::set<size_t> indexes;
    for (const auto& a : ranked) indexes.insert(a.index);
    CHECK(indexes.size() == 4);

    // The answers are the policy's samples, the rewards the reward adapter's.
    Generator p(model);
    p.attach(policy);
    const auto answers = p.generate_batch({prompt}, cfg);
    Generator r(model);
    r.attach(rm);
    for (const auto& a : ranked) {
        INFO("answer " << a.index);
        CHECK(a.answer.tokens == answers[a.index].tokens);
        CHECK(a.answer.seed == 42 + a.index);
        const float want = r.reward(prompt + a.answer.text).at(0);
        CHECK(std::fabs(a.reward[0] - want) <= 1e-4f);
    }
    // The two-Generator form over the same Model gives the same ranking.
    const auto again = best_of_n(p, r, prompt, cfg);
    for (size_t i = 0; i < ranked.size(); ++i) {
        CHECK(again[i].index == ranked[i].index);
        CHECK(std::fabs(again[i].reward[0] - ranked[i].reward[0]) <= 1e-5f);
    }
    // A reward set without a score head is refused before generating.
    const std::string m = error_of(
        [&] { best_of_n(gen, {{policy, 1.0f}}, {{other, 1.0f}}, prompt, cfg); }, ErrorCode::format);
    CHECK(contains(m, "score"));
    CHECK(gen.attached().size() == 1);
}

TEST_CASE("cli: sampling flags, --seed, --stop, --ignore-eos, --best-of with --reward-lora") {
    const std::string dir = stories_dir("CLI sampling");
    if (dir.empty()) return;
    const std::string cli = testing_support::cli_path();
    using testing_support::run_process;
    auto a = run_process({cli, "-m", dir, "--raw", "-p", "", "-n", "40", "--temp", "0.9",
                          "--top-k", "100", "--top-p", "0.95", "--seed", "42"});
    INFO(a.err);
    CHECK(a.exit_code == 0);
    auto b = run_process({cli, "-m", dir, "--raw", "-p", "", "-n", "40", "--temp", "0.9",
                          "--top-k", "100", "--top-p", "0.95", "--seed", "42", "-t", "1"});
    CHECK(b.out == a.out);
    auto c = run_process({cli, "-m", dir, "--raw", "-p", "", "-n", "40", "--temp", "0.9",
                          "--top-k", "100", "--top-p", "0.95", "--seed", "43"});
    CHECK(c.out != a.out);
    // The same run through the library.
    auto model = load(dir);
    Generator gen(model);
    GenerationConfig cfg = sampling(42, 40);
    cfg.temperature = 0.9f;
    cfg.top_k = 100;
    cfg.top_p = 0.95f;
    CHECK(gen.generate(std::string_view(""), cfg).text == a.out);

    // --stop cuts the greedy golden text before the first "Lily".
    const std::string golden = testing_support::read_file(dir + "/expected_greedy_200.txt");
    auto s = run_process({cli, "-m", dir, "--raw", "-p", "", "-n", "200", "--stop", "zzz",
                          "--stop", "Lily"});
    CHECK(s.exit_code == 0);
    CHECK(s.out == golden.substr(0, golden.find("Lily")));
    // --ignore-eos with -n runs the full length; --repeat-penalty and --min-p are accepted.
    auto e = run_process({cli, "-m", dir, "--raw", "-p", "", "-n", "30", "--ignore-eos",
                          "--repeat-penalty", "1.2", "--min-p", "0.05", "--temp", "0.7",
                          "--seed", "1", "-v"});
    CHECK(e.exit_code == 0);
    CHECK(contains(e.err, "30 new tokens"));
    // Bad values name the flag.
    for (const auto& bad : std::vector<std::vector<std::string>>{
             {"--top-p", "1.5"}, {"--top-k", "-3"}, {"--min-p", "2"}, {"--repeat-penalty", "0"},
             {"--seed", "x"}, {"--best-of", "0"}}) {
        auto r = run_process({cli, "-m", dir, bad[0], bad[1]});
        INFO(bad[0] << " " << bad[1] << ": " << r.err);
        CHECK(r.exit_code == 2);
        CHECK(contains(r.err, bad[0]));
    }
    auto nolora = run_process({cli, "-m", dir, "--best-of", "4", "--temp", "1"});
    CHECK(nolora.exit_code == 2);
    CHECK(contains(nolora.err, "--reward-lora"));
}

TEST_CASE("cli: --best-of N --reward-lora prints the best answer") {
    const std::string base_dir = gen_dir() + "/base";
    if (!fs::exists(base_dir + "/tokenizer.model")) {
        MESSAGE("SKIP: the base fixture has no tokenizer (no ../shared/data)");
        return;
    }
    const std::string cli = testing_support::cli_path();
    auto r = testing_support::run_process(
        {cli, "-m", base_dir, "--lora", gen_dir() + "/policy_adapter", "--reward-lora",
         gen_dir() + "/rm_adapter", "--best-of", "4", "--temp", "1", "--top-k", "0", "--seed",
         "42", "-n", "24", "-p", "How do I sort a list?", "-v"});
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    // The library's ranking for the same settings.
    auto model = load(base_dir);
    Generator gen(model);
    GenerationConfig cfg = sampling(42, 24);
    cfg.num_return_sequences = 4;
    const auto ranked = best_of_n(gen, {{Adapter::load(model, gen_dir() + "/policy_adapter"), 1}},
                                  {{Adapter::load(model, gen_dir() + "/rm_adapter"), 1}},
                                  "Question: How do I sort a list?\n\nAnswer: ", cfg);
    CHECK(r.out == ranked[0].answer.text + "\n");
    CHECK(contains(r.err, "reward"));
    // With --reward-model, the reward side is a separate model directory (here the same base).
    auto sep = testing_support::run_process(
        {cli, "-m", base_dir, "--lora", gen_dir() + "/policy_adapter", "--reward-model", base_dir,
         "--reward-lora", gen_dir() + "/rm_adapter", "--best-of", "4", "--temp", "1", "--top-k",
         "0", "--seed", "42", "-n", "24", "-p", "How do I sort a list?"});
    INFO(sep.err);
    CHECK(sep.exit_code == 0);
    CHECK(sep.out == r.out);
}
