// The native single-file format: round trips with the HF directory, damage detection, the
// converter program.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <sstream>

#include "stackllama/stackllama.hpp"
#include "test_support.hpp"
#include "util/checksum.hpp"

using namespace testing_support;

namespace {

std::shared_ptr<const stackllama::Model> load(const std::string& p, bool tok = false) {
    stackllama::ModelParams mp;
    mp.load_tokenizer = tok;
    mp.n_threads = 2;
    return stackllama::Model::load(p, mp);
}

std::string error_of(const std::string& path) {
    try {
        load(path);
    } catch (const stackllama::Error& e) {
        return e.what();
    }
    return "";
}

void put_u64(std::string& s, size_t at, uint64_t v) {
    for (int i = 0; i < 8; ++i) s[at + size_t(i)] = char((v >> (8 * i)) & 0xff);
}

}  // namespace

TEST_CASE("native file round trip: logits bit-identical to the HF directory") {
    for (const char* name : {"gqa_f32", "f16", "bf16", "mha_tied_f32", "sharded_f32"}) {
        CAPTURE(name);
        const std::string dir = fixture_dir() + "/models/" + name;
        REQUIRE(exists(dir));
        auto hf = load(dir);
        const auto ids = some_ids(hf->config().vocab_size);
        const auto want = all_logits(hf, ids);
        for (int level : {0, 3}) {
            CAPTURE(level);
            TempDir t;
            stackllama::NativeSaveOptions o;
            o.zstd_level = level;
            hf->save_native(t / "m.sllm", o);
            auto native = load(t / "m.sllm");
            CHECK(native->config().hidden_size == hf->config().hidden_size);
            CHECK(native->weight_dtype() == hf->weight_dtype());
            CHECK(all_logits(native, ids) == want);  // bit for bit
        }
    }
}

TEST_CASE("native file: converting the type matches converting the HF weights") {
    const std::string dir = fixture_dir() + "/models/gqa_f32";
    auto hf = load(dir);
    TempDir t;
    stackllama::NativeSaveOptions o;
    o.convert = true;
    o.type = stackllama::DType::bf16;
    hf->save_native(t / "bf16.sllm", o);
    auto m = load(t / "bf16.sllm");
    CHECK(m->weight_dtype() == stackllama::DType::bf16);
    // bf16 rounding moves logits a little but not a lot.
    const auto ids = some_ids(hf->config().vocab_size);
    const auto a = all_logits(hf, ids), b = all_logits(m, ids);
    float worst = 0;
    for (size_t i = 0; i < a.size(); ++i) worst = std::max(worst, std::fabs(a[i] - b[i]));
    CHECK(worst > 0.0f);
    CHECK(worst < 0.2f);
}

TEST_CASE("native file: stories260K still prints llama2.c's text, with and without zstd") {
    const std::string data = shared_data_or_skip("native stories260K");
    if (data.empty()) return;
    const std::string dir = data + "/stories260K-hf";
    const std::string expected = read_file(dir + "/expected_greedy_200.txt");
    TempDir t;
    for (const std::vector<std::string>& extra :
         {std::vector<std::string>{}, std::vector<std::string>{"--zstd", "19"}}) {
        std::vector<std::string> argv{converter_path(), dir, t / "s.sllm", "-q"};
        argv.insert(argv.end(), extra.begin(), extra.end());
        auto r = run_process(argv);
        INFO(r.err);
        REQUIRE(r.exit_code == 0);
        auto out = run_process({cli_path(), "-m", t / "s.sllm", "--raw", "-p", "", "-n", "200"});
        INFO(out.err);
        CHECK(out.exit_code == 0);
        CHECK(out.out == expected);
    }
}

TEST_CASE("stackllama-convert --type q4 prints what --quantize q4 prints, from a smaller file") {
    const std::string data = shared_data_or_skip("native stories260K");
    if (data.empty()) return;
    const std::string dir = data + "/stories260K-hf";
    TempDir t;
    for (const char* type : {"q8", "q4"}) {
        CAPTURE(std::string(type));
        auto r = run_process({converter_path(), dir, t / "q.sllm", "-q", "--type", type});
        INFO(r.err);
        REQUIRE(r.exit_code == 0);
        auto from_file = run_process({cli_path(), "-m", t / "q.sllm", "--raw", "-p", "", "-n", "200"});
        auto at_load = run_process(
            {cli_path(), "-m", dir, "--quantize", type, "--raw", "-p", "", "-n", "200"});
        INFO(from_file.err << at_load.err);
        CHECK(from_file.exit_code == 0);
        CHECK(at_load.exit_code == 0);
        CHECK(from_file.out == at_load.out);
        CHECK(from_file.out.size() > 200);
        auto m = load(t / "q.sllm");
        CHECK(std::string(stackllama::dtype_name(m->weight_dtype())) == type);
    }
    auto bad = run_process({cli_path(), "-m", dir, "--quantize", "q3", "-p", "x"});
    CHECK(bad.exit_code == 2);
    CHECK(bad.err.find("--quantize") != std::string::npos);
}

TEST_CASE("native file: adapters kept unmerged or merged, as the converter was told") {
    const std::string root = fixture_dir() + "/adapters";
    const std::string base_dir = root + "/base", a1 = root + "/adapters/all7_r4",
                      a2 = root + "/adapters/layers_1";
    auto base = load(base_dir);
    const auto ids = some_ids(base->config().vocab_size);
    const std::vector<stackllama::AdapterRef> refs = {{stackllama::Adapter::load(base, a1), 1.0f},
                                                      {stackllama::Adapter::load(base, a2), 0.5f}};
    stackllama::Generator g(base);
    for (const auto& r : refs) g.attach(r.adapter, r.scale);
    auto lv = g.eval(ids, true);
    const std::vector<float> want(lv.data, lv.data + lv.rows * lv.n_vocab);
    TempDir t;

    // Kept: the file carries both adapters with their scales; attached, the logits are those of
    // the directories attached to the HF model, bit for bit.
    auto r = run_process({converter_path(), base_dir, t / "kept.sllm", "-q", "--lora", a1,
                          "--lora-scaled", a2, "0.5", "--keep-lora"});
    INFO(r.err);
    REQUIRE(r.exit_code == 0);
    auto kept = load(t / "kept.sllm");
    CHECK(kept->weight_bytes() == base->weight_bytes());  // the base weights are not merged
    const auto bundled = stackllama::bundled_adapters(kept);
    REQUIRE(bundled.size() == 2);
    CHECK(bundled[0].scale == 1.0f);
    CHECK(bundled[1].scale == 0.5f);
    CHECK(bundled[0].adapter->path().find("all7_r4") != std::string::npos);
    CHECK(bundled[0].adapter->lora_modules() == refs[0].adapter->lora_modules());
    stackllama::Generator gk(kept);
    for (const auto& b : bundled) gk.attach(b.adapter, b.scale);
    auto lk = gk.eval(ids, true);
    CHECK(std::vector<float>(lk.data, lk.data + lk.rows * lk.n_vocab) == want);
    CHECK(stackllama::bundled_adapters(base).empty());

    // Merged: the file's weights are the merge, and it carries no adapters.
    r = run_process({converter_path(), base_dir, t / "merged.sllm", "-q", "--lora", a1,
                     "--lora-scaled", a2, "0.5"});
    REQUIRE(r.exit_code == 0);
    auto merged = load(t / "merged.sllm");
    CHECK(stackllama::bundled_adapters(merged).empty());
    CHECK(all_logits(merged, ids) == all_logits(stackllama::merge_adapters(base, refs), ids));

    // An adapter for another model is refused before anything is written.
    r = run_process({converter_path(), base_dir, t / "bad.sllm", "-q", "--lora",
                     root + "/adapters/bad_hidden", "--keep-lora"});
    CHECK(r.exit_code == 3);
    CHECK(r.err.find("bad_hidden") != std::string::npos);
    CHECK(!exists(t / "bad.sllm"));
}

TEST_CASE("native file: damage is named") {
    const std::string dir = fixture_dir() + "/models/gqa_f32";
    auto hf = load(dir);
    TempDir t;
    hf->save_native(t / "m.sllm");
    const std::string good = read_file(t / "m.sllm");

    SUBCASE("a flipped byte in a tensor names the tensor") {
        std::string bad = good;
        bad[4096] = char(bad[4096] ^ 0x40);
        write_file(t / "bad.sllm", bad);
        const std::string e = error_of(t / "bad.sllm");
        MESSAGE(e);
        CHECK(e.find("checksum mismatch") != std::string::npos);
        CHECK(e.find("tensor model.") != std::string::npos);
    }
    SUBCASE("truncated at several points") {
        for (size_t cut : {size_t(0), size_t(10), size_t(63), size_t(64), good.size() / 2,
                           good.size() - 1}) {
            CAPTURE(cut);
            write_file(t / "cut.sllm", good.substr(0, cut));
            const std::string e = error_of(t / "cut.sllm");
            MESSAGE(e);
            CHECK(e.find("cut.sllm") != std::string::npos);
            CHECK((e.find("truncated") != std::string::npos ||
                   e.find("wrong magic") != std::string::npos));
        }
    }
    SUBCASE("wrong magic") {
        std::string bad = good;
        bad[0] = 'X';
        write_file(t / "magic.sllm", bad);
        CHECK(error_of(t / "magic.sllm").find("wrong magic") != std::string::npos);
    }
    SUBCASE("a newer major version") {
        std::string bad = good;
        bad[8] = 2;
        put_u64(bad, 48, stackllama::xxh64(bad.data(), 48));
        write_file(t / "v2.sllm", bad);
        const std::string e = error_of(t / "v2.sllm");
        MESSAGE(e);
        CHECK(e.find("version 2.1") != std::string::npos);
    }
    SUBCASE("a damaged index") {
        std::string bad = good;
        bad[bad.size() - 5] = char(bad[bad.size() - 5] ^ 1);
        write_file(t / "index.sllm", bad);
        CHECK(error_of(t / "index.sllm").find("index section checksum") != std::string::npos);
    }
    SUBCASE("a plain file that is not a native file") {
        write_file(t / "x.bin", std::string(200, 'x'));
        CHECK(error_of(t / "x.bin").find("wrong magic") != std::string::npos);
    }
}

TEST_CASE("stackllama-convert exit codes") {
    TempDir t;
    auto usage = run_process({converter_path()});
    CHECK(usage.exit_code == 2);
    auto missing = run_process({converter_path(), "/nonexistent", t / "o.sllm", "-q"});
    CHECK(missing.exit_code == 3);
    CHECK(missing.err.find("/nonexistent") != std::string::npos);
    CHECK(!exists(t / "o.sllm"));
    auto bad_type = run_process({converter_path(), "a", "b", "--type", "q3"});
    CHECK(bad_type.exit_code == 2);
    auto unwritable = run_process(
        {converter_path(), fixture_dir() + "/models/gqa_f32", "/nonexistent/dir/o.sllm", "-q"});
    CHECK(unwritable.exit_code == 5);
}

TEST_CASE("save_pretrained round trip") {
    const std::string dir = fixture_dir() + "/models/bf16";
    auto hf = load(dir);
    TempDir t;
    hf->save_pretrained(t / "copy");
    auto again = load(t / "copy");
    const auto ids = some_ids(hf->config().vocab_size);
    CHECK(all_logits(again, ids) == all_logits(hf, ids));
}
