// Base checkpoints saved by torch.save (pytorch_model.bin, sharded with an index, as
// huggyllama/llama-7b ships) give exactly the logits of the same weights in safetensors.
#include <doctest/doctest.h>

#include <cstdio>

#include "stackllama/stackllama.hpp"
#include "test_support.hpp"

using namespace testing_support;

namespace {

std::vector<float> logits_of(const std::string& dir, const std::vector<int32_t>& ids) {
    stackllama::ModelParams mp;
    mp.load_tokenizer = false;
    stackllama::Generator g(stackllama::Model::load(dir, mp));
    auto lv = g.eval(ids, true);
    return std::vector<float>(lv.data, lv.data + lv.rows * lv.n_vocab);
}

}  // namespace

TEST_CASE("pytorch_model.bin checkpoints, single and sharded, f32 and bf16") {
    struct Case {
        const char* fixture;
        const char* dtype;
        int shards;
    };
    for (Case c : {Case{"gqa_f32", "f32", 1}, Case{"gqa_f32", "f32", 3}, Case{"bf16", "bf16", 2}}) {
        CAPTURE(c.fixture);
        CAPTURE(c.shards);
        const std::string src = fixture_dir() + "/models/" + c.fixture;
        TempDir t;
        auto r = run_process({python(), source_dir() + "/tests/torch_bin/save_as_pytorch_checkpoint.py",
                              src, t / "bin", "--shards", std::to_string(c.shards), "--dtype",
                              c.dtype});
        INFO(r.err);
        REQUIRE(r.exit_code == 0);
        CHECK(exists(t / (c.shards == 1 ? "bin/pytorch_model.bin" : "bin/pytorch_model.bin.index.json")));
        const std::vector<int32_t> ids{1, 5, 17, 99, 3, 42, 7, 8};
        CHECK(logits_of(t / "bin", ids) == logits_of(src, ids));
    }
}

TEST_CASE("a sharded .bin checkpoint with a missing shard names it") {
    const std::string src = fixture_dir() + "/models/gqa_f32";
    TempDir t;
    auto r = run_process({python(), source_dir() + "/tests/torch_bin/save_as_pytorch_checkpoint.py",
                          src, t / "bin", "--shards", "2"});
    REQUIRE(r.exit_code == 0);
    std::remove((t / "bin/pytorch_model-00002-of-00002.bin").c_str());
    stackllama::ModelParams mp;
    mp.load_tokenizer = false;
    try {
        stackllama::Model::load(t / "bin", mp);
        FAIL("no error");
    } catch (const stackllama::Error& e) {
        MESSAGE(e.what());
        CHECK(std::string(e.what()).find("pytorch_model-00002-of-00002.bin") != std::string::npos);
    }
}
