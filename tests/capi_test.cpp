// The C ABI against the C++ API in one process: same tokens and logits, plus what a C file cannot
// easily test (threads: cancel from another thread, thread-local errors, one model shared by
// generators on several threads). tests/capi_test.c covers the whole header from C.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

// Both headers in one translation unit: the version macros must agree token for token.
#include "stackllama/stackllama.h"
#include "stackllama/stackllama.hpp"
#include "test_support.hpp"

namespace ts = testing_support;

namespace {

constexpr const char* kPrompt = "Question: How do I sort a dict?\n\nAnswer: ";

std::string model_dir() {
    std::string dir = ts::tiny_model();
    if (dir.empty() || !ts::exists(dir + "/config.json")) return "";
    return dir;
}

std::string adapter_dir() {
    return ts::fixture_dir() + "/capi/adapter";
}

struct CModel {
    stackllama_model* m = nullptr;
    explicit CModel(const std::string& dir, int n_threads = 2) {
        stackllama_model_params p;
        stackllama_model_params_init(&p, sizeof p);
        p.n_threads = n_threads;
        REQUIRE_MESSAGE(stackllama_model_load(dir.c_str(), &p, &m) == STACKLLAMA_OK,
                        stackllama_last_error());
    }
    ~CModel() { stackllama_model_free(m); }
};

struct CGenerator {
    stackllama_generator* g = nullptr;
    explicit CGenerator(const stackllama_model* m) {
        REQUIRE(stackllama_generator_create(m, nullptr, &g) == STACKLLAMA_OK);
    }
    ~CGenerator() { stackllama_generator_free(g); }
};

std::vector<int32_t> c_generate(stackllama_generator* g, int max_new_tokens) {
    stackllama_generation_params gp;
    stackllama_generation_params_init(&gp, sizeof gp);
    gp.max_new_tokens = max_new_tokens;
    stackllama_result* r = nullptr;
    REQUIRE(stackllama_generator_reset(g) == STACKLLAMA_OK);
    REQUIRE_MESSAGE(
        stackllama_generator_generate(g, kPrompt, &gp, nullptr, nullptr, &r) == STACKLLAMA_OK,
        stackllama_last_error());
    std::vector<int32_t> v(stackllama_result_tokens(r),
                           stackllama_result_tokens(r) + stackllama_result_n_tokens(r));
    stackllama_result_free(r);
    return v;
}

}  // namespace

TEST_CASE("the C ABI gives the C++ API's tokens and logits, with and without an adapter") {
    const std::string dir = model_dir();
    if (dir.empty()) {
        MESSAGE("SKIP: the default model (build/tiny-model) was not built");
        return;
    }
    stackllama::ModelParams mp;
    mp.n_threads = 2;
    auto model = stackllama::Model::load(dir, mp);
    auto adapter = stackllama::Adapter::load(model, adapter_dir());
    CModel cm(dir);
    stackllama_adapter* ca = nullptr;
    REQUIRE(stackllama_adapter_load(cm.m, adapter_dir().c_str(), &ca) == STACKLLAMA_OK);

    for (bool with_adapter : {false, true}) {
        CAPTURE(with_adapter);
        stackllama::Generator gen(model);
        CGenerator cg(cm.m);
        if (with_adapter) {
            gen.attach(adapter, 0.75f);
            REQUIRE(stackllama_generator_attach(cg.g, ca, 0.75f) == STACKLLAMA_OK);
        }
        stackllama::GenerationConfig cfg;
        cfg.max_new_tokens = 40;
        const auto expected = gen.generate(std::string_view(kPrompt), cfg).tokens;
        CHECK(c_generate(cg.g, 40) == expected);

        const std::vector<int32_t> ids = model->tokenizer().encode(kPrompt);
        gen.reset();
        const stackllama::LogitsView lv = gen.eval(ids, true);
        const float* logits = nullptr;
        size_t rows = 0;
        REQUIRE(stackllama_generator_reset(cg.g) == STACKLLAMA_OK);
        REQUIRE(stackllama_generator_eval(cg.g, ids.data(), ids.size(), true, &logits, &rows) ==
                STACKLLAMA_OK);
        REQUIRE(rows == lv.rows);
        CHECK(std::memcmp(logits, lv.data, rows * lv.n_vocab * sizeof(float)) == 0);
        if (with_adapter) REQUIRE(stackllama_generator_detach(cg.g, ca) == STACKLLAMA_OK);
    }
    CHECK(stackllama_adapter_free(ca) == STACKLLAMA_OK);
}

TEST_CASE("stackllama_last_error is per thread") {
    stackllama_model* m = nullptr;
    REQUIRE(stackllama_model_load("/nonexistent/main-thread", nullptr, &m) == STACKLLAMA_ERROR_IO);
    std::string other;
    std::thread t([&] {
        stackllama_model* m2 = nullptr;
        CHECK(std::string(stackllama_last_error()).empty());
        stackllama_model_load("/nonexistent/other-thread", nullptr, &m2);
        other = stackllama_last_error();
    });
    t.join();
    CHECK(other.find("other-thread") != std::string::npos);
    CHECK(std::string(stackllama_last_error()).find("main-thread") != std::string::npos);
}

TEST_CASE("stackllama_generator_cancel stops a generation running on another thread") {
    const std::string dir = model_dir();
    if (dir.empty()) {
        MESSAGE("SKIP: the default model (build/tiny-model) was not built");
        return;
    }
    CModel cm(dir);
    CGenerator cg(cm.m);
    struct State {
        std::atomic<int> n{0};
    } state;
    stackllama_generation_params gp;
    stackllama_generation_params_init(&gp, sizeof gp);
    gp.max_new_tokens = 1000;
    gp.use_model_eos = 0;  // run until cancelled or the context (1024) is full
    stackllama_result* r = nullptr;
    stackllama_status st = STACKLLAMA_ERROR_INTERNAL;
    std::thread worker([&] {
        st = stackllama_generator_generate(
            cg.g, kPrompt, &gp,
            [](const char*, size_t, int32_t, void* ud) {
                static_cast<State*>(ud)->n.fetch_add(1);
                std::this_thread::sleep_for(std::chrono::milliseconds(2));
                return true;
            },
            &state, &r);
    });
    while (state.n.load() < 5) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    stackllama_generator_cancel(cg.g);
    worker.join();
    REQUIRE(st == STACKLLAMA_OK);
    CHECK(stackllama_result_finish_reason(r) == STACKLLAMA_FINISH_CANCELLED);
    CHECK(stackllama_result_n_tokens(r) < 100);
    CHECK(stackllama_result_n_tokens(r) >= 5);
    stackllama_result_free(r);
}

TEST_CASE("a generation started from inside the callback on the same generator is refused") {
    const std::string dir = model_dir();
    if (dir.empty()) return;
    CModel cm(dir);
    CGenerator cg(cm.m);
    struct State {
        stackllama_generator* g;
        stackllama_status nested = STACKLLAMA_OK;
        std::string message;
    } state{cg.g};
    stackllama_result* r = nullptr;
    REQUIRE(stackllama_generator_generate(
                cg.g, kPrompt, nullptr,
                [](const char*, size_t, int32_t, void* ud) {
                    auto* s = static_cast<State*>(ud);
                    s->nested = stackllama_generator_generate(s->g, "x", nullptr, nullptr, nullptr,
                                                              nullptr);
                    s->message = stackllama_last_error();
                    return false;
                },
                &state, &r) == STACKLLAMA_OK);
    CHECK(state.nested == STACKLLAMA_ERROR_INVALID_ARGUMENT);
    CHECK(state.message.find("already running") != std::string::npos);
    stackllama_result_free(r);
}

TEST_CASE("one model, generators on several threads, each as if alone") {
    const std::string dir = model_dir();
    if (dir.empty()) return;
    CModel cm(dir, 1);
    std::vector<int32_t> expected;
    {
        CGenerator cg(cm.m);
        expected = c_generate(cg.g, 48);
    }
    std::vector<std::vector<int32_t>> got(4);
    std::vector<std::thread> threads;
    for (size_t i = 0; i < got.size(); ++i) {
        threads.emplace_back([&, i] {
            stackllama_generator* g = nullptr;
            if (stackllama_generator_create(cm.m, nullptr, &g) != STACKLLAMA_OK) return;
            stackllama_generation_params gp;
            stackllama_generation_params_init(&gp, sizeof gp);
            gp.max_new_tokens = 48;
            stackllama_result* r = nullptr;
            if (stackllama_generator_generate(g, kPrompt, &gp, nullptr, nullptr, &r) ==
                STACKLLAMA_OK)
                got[i].assign(stackllama_result_tokens(r),
                              stackllama_result_tokens(r) + stackllama_result_n_tokens(r));
            stackllama_result_free(r);
            stackllama_generator_free(g);
        });
    }
    for (auto& t : threads) t.join();
    for (const auto& g : got) CHECK(g == expected);
}

TEST_CASE("params structs: sizes and defaults follow the C++ defaults") {
    stackllama_generation_params gp;
    stackllama_generation_params_init(&gp, sizeof gp);
    const stackllama::GenerationConfig cfg;
    CHECK(gp.max_new_tokens == cfg.max_new_tokens);
    CHECK((gp.use_model_eos != 0) == cfg.use_model_eos);
    CHECK((gp.do_sample != 0) == cfg.do_sample);
    CHECK(gp.temperature == cfg.temperature);
    CHECK(gp.top_k == cfg.top_k);
    CHECK(gp.top_p == cfg.top_p);
    CHECK(gp.min_p == cfg.min_p);
    CHECK(gp.typical_p == cfg.typical_p);
    CHECK(gp.repetition_penalty == cfg.repetition_penalty);
    CHECK(gp.presence_penalty == cfg.presence_penalty);
    CHECK(gp.frequency_penalty == cfg.frequency_penalty);
    CHECK(gp.no_repeat_ngram_size == cfg.no_repeat_ngram_size);
    CHECK((gp.has_seed != 0) == cfg.seed.has_value());
    CHECK(gp.num_return_sequences == cfg.num_return_sequences);
    CHECK(gp.n_eos_token_ids == cfg.eos_token_ids.size());
    CHECK(gp.n_stop_strings == cfg.stop_strings.size());
    CHECK(gp.n_logit_bias == cfg.logit_bias.size());
    stackllama_model_params mp;
    stackllama_model_params_init(&mp, sizeof mp);
    const stackllama::ModelParams mcpp;
    CHECK(mp.n_threads == mcpp.n_threads);
    CHECK((mp.load_tokenizer != 0) == mcpp.load_tokenizer);
    CHECK((mp.verbose != 0) == mcpp.verbose);
    CHECK((mp.verify_checksums != 0) == mcpp.verify_checksums);
    stackllama_generator_params gen;
    stackllama_generator_params_init(&gen, sizeof gen);
    CHECK(gen.n_ctx == stackllama::GeneratorParams{}.n_ctx);
    CHECK(gen.pool == nullptr);
    if (sizeof(void*) == 8) CHECK(sizeof(stackllama_generator_params) == 16);  // LP64 layout
    // Fields are 4 or 8 bytes without padding (also asserted at compile time in the shim).
    CHECK(sizeof(stackllama_model_params) % 4 == 0);
    if (sizeof(void*) == 8) CHECK(sizeof(stackllama_generation_params) == 128);  // LP64 layout
    CHECK(std::string(stackllama_version()) == stackllama::version());
}

TEST_CASE("generate_batch and scoring through the C ABI equal the C++ API") {
    const std::string dir = model_dir();
    if (dir.empty()) return;
    stackllama::ModelParams mp;
    mp.n_threads = 2;
    auto model = stackllama::Model::load(dir, mp);
    stackllama::Generator gen(model);
    stackllama::GenerationConfig cfg;
    cfg.max_new_tokens = 12;
    cfg.do_sample = true;
    cfg.seed = 5;
    cfg.num_return_sequences = 3;
    cfg.repetition_penalty = 1.3f;
    cfg.no_repeat_ngram_size = 2;
    const auto expected = gen.generate_batch(std::vector<std::string>{kPrompt}, cfg);

    CModel cm(dir);
    CGenerator cg(cm.m);
    stackllama_generation_params gp;
    stackllama_generation_params_init(&gp, sizeof gp);
    gp.max_new_tokens = 12;
    gp.do_sample = 1;
    gp.has_seed = 1;
    gp.seed = 5;
    gp.num_return_sequences = 3;
    gp.repetition_penalty = 1.3f;
    gp.no_repeat_ngram_size = 2;
    const char* prompts[] = {kPrompt};
    stackllama_result* rs[3] = {};
    size_t n = 0;
    REQUIRE(stackllama_generator_generate_batch(cg.g, prompts, 1, &gp, nullptr, nullptr, rs, 3,
                                                &n) == STACKLLAMA_OK);
    REQUIRE(n == expected.size());
    for (size_t i = 0; i < n; ++i) {
        CHECK(std::vector<int32_t>(stackllama_result_tokens(rs[i]),
                                   stackllama_result_tokens(rs[i]) +
                                       stackllama_result_n_tokens(rs[i])) == expected[i].tokens);
        CHECK(stackllama_result_seed(rs[i]) == expected[i].seed);
        stackllama_result_free(rs[i]);
    }

    const auto lp = gen.log_likelihood(std::string_view(kPrompt), std::string_view("a dict"));
    stackllama_logprobs* clp = nullptr;
    REQUIRE(stackllama_generator_log_likelihood(cg.g, kPrompt, "a dict", &clp) == STACKLLAMA_OK);
    CHECK(stackllama_logprobs_sum(clp) == lp.sum);
    CHECK(stackllama_logprobs_n_tokens(clp) == lp.tokens.size());
    stackllama_logprobs_free(clp);
    double ppl = 0;
    REQUIRE(stackllama_generator_perplexity(cg.g, kPrompt, &ppl) == STACKLLAMA_OK);
    CHECK(ppl == gen.perplexity(std::string_view(kPrompt)));
}
