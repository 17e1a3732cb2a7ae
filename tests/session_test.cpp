// KV sessions: save, restore, continue exactly; refuse another model or other adapters.
#include <doctest/doctest.h>

#include "stackllama/stackllama.hpp"
#include "test_support.hpp"
#include "util/checksum.hpp"

#include <zstd.h>

using namespace testing_support;

namespace {

std::shared_ptr<const stackllama::Model> load(const std::string& dir) {
    stackllama::ModelParams mp;
    mp.load_tokenizer = false;
    mp.n_threads = 2;
    return stackllama::Model::load(dir, mp);
}

std::vector<int32_t> prompt_ids(int n, int vocab) {
    std::vector<int32_t> ids{1};
    for (int i = 1; i < n; ++i) ids.push_back((i * 53 + 7) % vocab);
    return ids;
}

stackllama::GenerationConfig sampling(uint64_t seed) {
    stackllama::GenerationConfig c;
    c.max_new_tokens = 12;
    c.do_sample = true;
    c.temperature = 0.9f;
    c.top_p = 0.95f;
    c.seed = seed;
    c.use_model_eos = false;
    return c;
}

}  // namespace

TEST_CASE("restore then continue equals an uninterrupted run") {
    auto model = load(fixture_dir() + "/models/gqa_f32");
    const auto prompt = prompt_ids(40, model->config().vocab_size);
    TempDir t;

    stackllama::Generator straight(model);
    auto want = straight.generate(prompt, sampling(7));

    stackllama::Generator first(model);
    first.eval(prompt);
    first.save_session(t / "prefix.session");

    // The prefix restored twice, into fresh generators, continues like the straight run.
    for (int k = 0; k < 2; ++k) {
        stackllama::Generator g(model);
        g.load_session(t / "prefix.session");
        CHECK(g.n_past() == int(prompt.size()));
        CHECK(g.tokens() == prompt);
        auto got = g.generate(std::vector<int32_t>{}, sampling(7));
        CHECK(got.tokens == want.tokens);
    }

    // Mid-generation: save after some tokens (a pending token included), continue, compare logits.
    stackllama::Generator a(model), b(model);
    stackllama::GenerationConfig greedy;
    greedy.max_new_tokens = 5;
    greedy.use_model_eos = false;
    auto r1 = a.generate(prompt, greedy);
    a.save_session(t / "mid.session");
    b.load_session(t / "mid.session");
    auto la = a.eval({3, 4, 5}, true);
    std::vector<float> va(la.data, la.data + la.rows * la.n_vocab);
    auto lb = b.eval({3, 4, 5}, true);
    std::vector<float> vb(lb.data, lb.data + lb.rows * lb.n_vocab);
    CHECK(va == vb);  // bit for bit
    CHECK(a.tokens() == b.tokens());
}

TEST_CASE("a session is refused by another model or other adapters") {
    const std::string adir = fixture_dir() + "/adapters";
    auto base = load(adir + "/base");
    auto adapter = stackllama::Adapter::load(base, adir + "/adapters/qv_r16");
    TempDir t;
    stackllama::Generator g(base);
    g.attach(adapter, 1.0f);
    g.eval(prompt_ids(10, base->config().vocab_size));
    g.save_session(t / "s");

    stackllama::Generator none(base);
    try {
        none.load_session(t / "s");
        FAIL("no error");
    } catch (const stackllama::Error& e) {
        MESSAGE(std::string(e.what()));
        CHECK(e.code() == stackllama::ErrorCode::invalid_argument);
        CHECK(std::string(e.what()).find("adapters") != std::string::npos);
    }
    CHECK(none.n_past() == 0);

    stackllama::Generator scaled(base);
    scaled.attach(adapter, 0.5f);
    CHECK_THROWS_AS(scaled.load_session(t / "s"), stackllama::Error);

    stackllama::Generator same(base);
    same.attach(adapter, 1.0f);
    same.load_session(t / "s");
    CHECK(same.n_past() == 10);

    auto other = load(fixture_dir() + "/models/gqa_f32");
    stackllama::Generator o(other);
    try {
        o.load_session(t / "s");
        FAIL("no error");
    } catch (const stackllama::Error& e) {
        CHECK(std::string(e.what()).find("another model") != std::string::npos);
    }
}

TEST_CASE("damaged session files") {
    auto model = load(fixture_dir() + "/models/gqa_f32");
    TempDir t;
    stackllama::Generator g(model);
    g.eval(prompt_ids(20, model->config().vocab_size));
    g.save_session(t / "s");
    const std::string good = read_file(t / "s");
    for (size_t cut : {size_t(0), size_t(12), size_t(40), good.size() - 3}) {
        write_file(t / "cut", good.substr(0, cut));
        stackllama::Generator h(model);
        CHECK_THROWS_AS(h.load_session(t / "cut"), stackllama::Error);
        CHECK(h.n_past() == 0);
    }
    std::string flipped = good;
    flipped[good.size() / 2] = char(flipped[good.size() / 2] ^ 0x10);
    write_file(t / "flip", flipped);
    stackllama::Generator h(model);
    try {
        h.load_session(t / "flip");
        FAIL("no error");
    } catch (const stackllama::Error& e) {
        CHECK(std::string(e.what()).find("checksum") != std::string::npos);
    }
}

namespace {

// A session file around an arbitrary payload, with a valid header, checksum and zstd frame.
std::string wrap_session(const std::string& payload, uint64_t claimed_size) {
    std::string packed(ZSTD_compressBound(payload.size()), '\0');
    packed.resize(ZSTD_compress(packed.data(), packed.size(), payload.data(), payload.size(), 1));
    std::string f("SLLMSESS", 8);
    f += std::string("\x01\0\0\0\0\0\0\0", 8);
    for (int i = 0; i < 8; ++i) f.push_back(char((claimed_size >> (8 * i)) & 0xff));
    const uint64_t h = stackllama::xxh64(packed.data(), packed.size());
    for (int i = 0; i < 8; ++i) f.push_back(char((h >> (8 * i)) & 0xff));
    return f + packed;
}

std::string with_meta(const std::string& meta) {
    std::string p;
    for (int i = 0; i < 8; ++i) p.push_back(char((uint64_t(meta.size()) >> (8 * i)) & 0xff));
    return p + meta;
}

}  // namespace

TEST_CASE("hostile session payloads (fuzzer findings) are errors, not crashes") {
    auto model = load(fixture_dir() + "/models/gqa_f32");
    TempDir t;
    const std::vector<std::pair<std::string, std::string>> cases = {
        {"meta not an object", wrap_session(with_meta("[1,2,3]"), 15)},
        {"model not a string", wrap_session(with_meta(R"({"model":5,"adapters":[],"tokens":[]})"), 47)},
        {"token out of range", wrap_session(with_meta(R"({"model":"x","adapters":[],"tokens":[99999]})"), 53)},
        {"payload claims 16 GiB", wrap_session("tiny", uint64_t(16) << 30)},
    };
    for (const auto& [name, bytes] : cases) {
        CAPTURE(name);
        write_file(t / "s", bytes);
        stackllama::Generator g(model);
        try {
            g.load_session(t / "s");
            FAIL("no error");
        } catch (const stackllama::Error& e) {
            MESSAGE(name << ": " << std::string(e.what()));
            CHECK(e.code() == stackllama::ErrorCode::format);
        }
        CHECK(g.n_past() == 0);
    }
}
