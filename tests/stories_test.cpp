// Outside truth: the real stories260K model (llama2.c's test model, in HF layout) must reproduce
// llama2.c's greedy output byte for byte and its logits within 1e-4.
#include <doctest/doctest.h>

#include <cmath>
#include <sstream>

#include "stackllama/stackllama.hpp"
#include "test_support.hpp"

using namespace testing_support;

TEST_CASE("stories260K: greedy 200 tokens and logits match llama2.c") {
    const std::string data = shared_data_or_skip("stories260K golden output");
    if (data.empty()) return;
    const std::string dir = data + "/stories260K-hf";
    const auto ids = read_ids(dir + "/expected_greedy_200_ids.txt");
    const auto ref = read_f32(dir + "/reference_logits_greedy200.f32");
    const std::string expected = read_file(dir + "/expected_greedy_200.txt");
    REQUIRE(ids.size() == 201);
    REQUIRE(ref.size() == 200 * 512);

    auto model = stackllama::Model::load(dir);
    CHECK(model->config().vocab_size == 512);
    CHECK(model->config().tie_word_embeddings);

    SUBCASE("step by step, logits at each of the 200 positions") {
        stackllama::Generator gen(model);
        float worst = 0.0f;
        for (size_t p = 0; p < 200; ++p) {
            auto lv = gen.eval({ids[p]});
            const float* row = lv.row(0);
            size_t best = 0;
            for (size_t j = 0; j < 512; ++j) {
                const float d = std::fabs(row[j] - ref[p * 512 + j]);
                worst = std::max(worst, d);
                if (d > 1e-4f) {
                    INFO("position " << p << ", vocab index " << j);
                    CHECK(row[j] == doctest::Approx(ref[p * 512 + j]).epsilon(0));
                }
                if (row[j] > row[best]) best = j;
            }
            INFO("position " << p);
            CHECK(int32_t(best) == ids[p + 1]);
        }
        MESSAGE("max |logit - llama2.c| over 200x512: " << worst);
        CHECK(worst < 1e-4f);
    }

    SUBCASE("generate() from BOS prints expected_greedy_200.txt") {
        stackllama::Generator gen(model);
        stackllama::GenerationConfig cfg;
        cfg.max_new_tokens = 200;
        std::string streamed;
        auto result = gen.generate(std::vector<int32_t>{1}, cfg,
                                   [&](std::string_view piece, int32_t) {
                                       streamed += piece;
                                       return true;
                                   });
        CHECK(result.tokens == std::vector<int32_t>(ids.begin() + 1, ids.end()));
        CHECK(result.text == expected);
        CHECK(streamed == expected);
        CHECK(result.finish_reason == stackllama::FinishReason::length);
    }

    SUBCASE("generate() from an empty text prompt adds the BOS itself") {
        stackllama::Generator gen(model);
        stackllama::GenerationConfig cfg;
        cfg.max_new_tokens = 200;
        auto result = gen.generate(std::string_view(""), cfg);
        CHECK(result.text == expected);
    }
}
