// Model + Generator against an independent float64 PyTorch reference (tests/reference/).
//
// The CTest fixture step `fixtures_models` (tests/reference/make_model_fixtures.py) writes one
// folder per case under <fixtures>/models: a random checkpoint in Hugging Face layout, ids.txt,
// ref_logits.f32 ([n_ids][vocab] float32) and case.json (name, prefill_len). Every case is run
// three ways: (a) prefill of ids[0:prefill_len] then one token at a time, (b) one token at a
// time from the start, and (c) the two paths against each other.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <iomanip>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "stackllama/generator.hpp"
#include "stackllama/model.hpp"
#include "test_support.hpp"

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr double kTolerance = 1e-4;
// Rows reported in detail per comparison; the rest are only counted.
constexpr int kDetailedRows = 3;

const char* const kExpectedCases[] = {"gqa_f32",     "mha_tied_f32", "f16",       "bf16",
                                      "sharded_f32", "head_dim_f32", "theta_eps", "long_prompt"};

struct Case {
    std::string name;
    std::string dir;
    std::vector<int32_t> ids;
    std::vector<float> ref;  // [ids.size()][vocab]
    size_t vocab = 0;
    size_t prefill_len = 0;
    json config;

    const float* ref_row(size_t p) const { return ref.data() + p * vocab; }
};

std::string models_dir() { return testing_support::fixture_dir() + "/models"; }

json read_json(const std::string& path) { return json::parse(testing_support::read_file(path)); }

Case load_case(const std::string& dir) {
    Case c;
    c.dir = dir;
    json meta = read_json(dir + "/case.json");
    c.name = meta.at("name").get<std::string>();
    c.prefill_len = meta.at("prefill_len").get<size_t>();
    c.config = read_json(dir + "/config.json");
    c.vocab = c.config.at("vocab_size").get<size_t>();
    std::istringstream ids(testing_support::read_file(dir + "/ids.txt"));
    for (int32_t id; ids >> id;) c.ids.push_back(id);
    c.ref = testing_support::read_f32(dir + "/ref_logits.f32");
    return c;
}

// Every case folder (one with a case.json) under <fixtures>/models, sorted by name.
std::vector<std::string> case_dirs() {
    std::vector<std::string> dirs;
    if (!fs::is_directory(models_dir())) return dirs;
    for (const auto& e : fs::directory_iterator(models_dir())) {
        if (e.is_directory() && fs::exists(e.path() / "case.json")) {
            dirs.push_back(e.path().string());
        }
    }
    std::sort(dirs.begin(), dirs.end());
    return dirs;
}

double row_std(const float* row, size_t n) {
    double mean = 0, sq = 0;
    for (size_t i = 0; i < n; ++i) mean += row[i];
    mean /= double(n);
    for (size_t i = 0; i < n; ++i) sq += (row[i] - mean) * (row[i] - mean);
    return std::sqrt(sq / double(n));
}

// Compares logits rows and counts the rows with an element off by more than kTolerance (NaN
// included). The first few bad rows are reported with the worst vocab index and both values;
// finish() checks the count.
class RowChecker {
public:
    RowChecker(const Case& c, const char* what, const char* got_name, const char* want_name)
        : case_(c), what_(what), got_name_(got_name), want_name_(want_name) {}

    void check(size_t pos, const float* got, const float* want) {
        size_t worst = 0;
        float worst_diff = 0.0f;
        for (size_t i = 0; i < case_.vocab && !std::isnan(worst_diff); ++i) {
            float d = std::fabs(got[i] - want[i]);
            if (std::isnan(d) || d > worst_diff) {  // a NaN is the worst there is
                worst = i;
                worst_diff = d;
            }
        }
        if (worst_diff <= kTolerance) return;
        if (bad_rows_++ < kDetailedRows) {
            INFO(std::setprecision(8)
                 << "case " << case_.name << ", " << what_ << ": position " << pos << " (token "
                 << case_.ids[pos] << "), vocab index " << worst << ": " << got_name_ << " "
                 << got[worst] << ", " << want_name_ << " " << want[worst] << ", |diff| "
                 << worst_diff << " > " << kTolerance);
            CHECK(worst_diff <= kTolerance);
        }
    }

    void finish() {
        INFO("case " << case_.name << ", " << what_ << ": rows differing by more than "
                     << kTolerance);
        CHECK(bad_rows_ == 0);
    }

private:
    const Case& case_;
    // std::string: doctest would print a const char* as a pointer.
    std::string what_;
    std::string got_name_;
    std::string want_name_;
    int bad_rows_ = 0;
};

std::shared_ptr<const stackllama::Model> load_model(const Case& c) {
    stackllama::ModelParams params;
    params.load_tokenizer = false;
    return stackllama::Model::load(c.dir, params);
}

// Feeds ids[from:] one at a time; checks every row against the reference and keeps it.
void decode_rest(stackllama::Generator& gen, const Case& c, size_t from, RowChecker& checker,
                 std::vector<float>& kept) {
    for (size_t p = from; p < c.ids.size(); ++p) {
        stackllama::LogitsView v = gen.eval({c.ids[p]});
        INFO("case " << c.name << ", decode at position " << p);
        REQUIRE(v.rows == 1);
        REQUIRE(v.n_vocab == c.vocab);
        CHECK(gen.n_past() == int(p + 1));
        checker.check(p, v.row(0), c.ref_row(p));
        std::memcpy(kept.data() + p * c.vocab, v.row(0), c.vocab * sizeof(float));
    }
}

void run_case(const Case& c) {
    INFO("case " << c.name << " (" << c.dir << ")");
    REQUIRE(c.ids.size() >= 24);
    REQUIRE(c.ref.size() == c.ids.size() * c.vocab);
    REQUIRE(c.prefill_len >= 1);
    REQUIRE(c.prefill_len <= c.ids.size());
    // A reference row must be spread out, or a wrong forward could pass at kTolerance.
    for (size_t p = 0; p < c.ids.size(); ++p) {
        INFO("reference row " << p);
        CHECK(row_std(c.ref_row(p), c.vocab) > 0.3);
    }

    auto model = load_model(c);
    stackllama::Generator gen(model);
    const size_t n = c.ids.size();
    std::vector<float> via_prefill(n * c.vocab), via_decode(n * c.vocab);

    // (a) prefill, then token by token.
    {
        std::vector<int32_t> prefix(c.ids.begin(), c.ids.begin() + long(c.prefill_len));
        RowChecker checker(c, "prefill path", "stackllama", "reference");
        stackllama::LogitsView v = gen.eval(prefix, /*all_logits=*/true);
        REQUIRE(v.rows == c.prefill_len);
        REQUIRE(v.n_vocab == c.vocab);
        CHECK(gen.n_past() == int(c.prefill_len));
        CHECK(gen.tokens() == prefix);
        for (size_t p = 0; p < c.prefill_len; ++p) {
            CHECK(row_std(v.row(p), c.vocab) > 0.3);
            checker.check(p, v.row(p), c.ref_row(p));
        }
        std::memcpy(via_prefill.data(), v.data, c.prefill_len * c.vocab * sizeof(float));
        decode_rest(gen, c, c.prefill_len, checker, via_prefill);
        CHECK(gen.tokens() == c.ids);
        checker.finish();
    }

    // (b) the decode path alone, after reset.
    {
        gen.reset();
        CHECK(gen.n_past() == 0);
        CHECK(gen.tokens().empty());
        RowChecker checker(c, "decode path", "stackllama", "reference");
        decode_rest(gen, c, 0, checker, via_decode);
        checker.finish();
    }

    // (c) prefill and decode agree with each other.
    {
        RowChecker checker(c, "prefill vs decode", "prefill", "decode");
        for (size_t p = 0; p < n; ++p) {
            checker.check(p, via_prefill.data() + p * c.vocab, via_decode.data() + p * c.vocab);
        }
        checker.finish();
    }

    // Without all_logits, a prefill returns the last row only.
    {
        gen.reset();
        std::vector<int32_t> prefix(c.ids.begin(), c.ids.begin() + long(c.prefill_len));
        RowChecker checker(c, "prefill, last row only", "stackllama", "reference");
        stackllama::LogitsView v = gen.eval(prefix);
        REQUIRE(v.rows == 1);
        checker.check(c.prefill_len - 1, v.row(0), c.ref_row(c.prefill_len - 1));
        checker.finish();
    }
}

// The header JSON of a safetensors file.
json safetensors_header(const std::string& path) {
    std::string bytes = testing_support::read_file(path);
    REQUIRE(bytes.size() >= 8);
    uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = (n << 8) | uint8_t(bytes[size_t(i)]);
    REQUIRE(n <= bytes.size() - 8);
    return json::parse(bytes.substr(8, n));
}

// One test case per expected fixture case, so that a REQUIRE failing in one leaves the others
// running and the report names the case.
void run_named(const char* name) {
    const std::string dir = models_dir() + "/" + name;
    REQUIRE_MESSAGE(fs::exists(dir + "/case.json"), "missing fixture case " << dir);
    run_case(load_case(dir));
}

}  // namespace

TEST_CASE("logits vs reference: gqa_f32") { run_named("gqa_f32"); }
TEST_CASE("logits vs reference: mha_tied_f32") { run_named("mha_tied_f32"); }
TEST_CASE("logits vs reference: f16") { run_named("f16"); }
TEST_CASE("logits vs reference: bf16") { run_named("bf16"); }
TEST_CASE("logits vs reference: sharded_f32") { run_named("sharded_f32"); }
TEST_CASE("logits vs reference: head_dim_f32") { run_named("head_dim_f32"); }
TEST_CASE("logits vs reference: theta_eps") { run_named("theta_eps"); }
TEST_CASE("logits vs reference: long_prompt") { run_named("long_prompt"); }

TEST_CASE("logits vs reference: any further fixture cases") {
    const std::set<std::string> known(std::begin(kExpectedCases), std::end(kExpectedCases));
    for (const auto& dir : case_dirs()) {
        if (known.count(fs::path(dir).filename().string()) == 0) run_case(load_case(dir));
    }
}

TEST_CASE("model config() reports config.json") {
    for (const auto& dir : case_dirs()) {
        Case c = load_case(dir);
        INFO("case " << c.name);
        const json& j = c.config;
        auto model = load_model(c);
        const stackllama::ModelConfig& cfg = model->config();
        const int hidden = j.at("hidden_size").get<int>();
        const int heads = j.at("num_attention_heads").get<int>();
        CHECK(cfg.architecture == j.at("architectures").at(0).get<std::string>());
        CHECK(cfg.hidden_size == hidden);
        CHECK(cfg.intermediate_size == j.at("intermediate_size").get<int>());
        CHECK(cfg.num_hidden_layers == j.at("num_hidden_layers").get<int>());
        CHECK(cfg.num_attention_heads == heads);
        CHECK(cfg.num_key_value_heads == j.at("num_key_value_heads").get<int>());
        CHECK(cfg.head_dim == j.value("head_dim", hidden / heads));
        CHECK(cfg.rms_norm_eps == doctest::Approx(j.at("rms_norm_eps").get<double>()));
        CHECK(cfg.rope_theta == doctest::Approx(j.at("rope_theta").get<double>()));
        CHECK(cfg.vocab_size == j.at("vocab_size").get<int>());
        CHECK(cfg.max_position_embeddings == j.at("max_position_embeddings").get<int>());
        CHECK(cfg.tie_word_embeddings == j.at("tie_word_embeddings").get<bool>());
        CHECK(cfg.bos_token_id == j.at("bos_token_id").get<int32_t>());
        CHECK(cfg.eos_token_ids == std::vector<int32_t>{j.at("eos_token_id").get<int32_t>()});
        CHECK(cfg.pad_token_id == -1);  // absent from these configs

        const std::string torch_dtype = j.at("torch_dtype").get<std::string>();
        stackllama::DType want = torch_dtype == "float16"    ? stackllama::DType::f16
                                 : torch_dtype == "bfloat16" ? stackllama::DType::bf16
                                                             : stackllama::DType::f32;
        CHECK(model->weight_dtype() == want);
        CHECK_FALSE(model->has_tokenizer());
    }
}

TEST_CASE("tied case has no lm_head tensor in its file, untied case has one") {
    const std::string tied_dir = models_dir() + "/mha_tied_f32";
    const std::string untied_dir = models_dir() + "/gqa_f32";
    REQUIRE(testing_support::exists(tied_dir + "/model.safetensors"));
    REQUIRE(testing_support::exists(untied_dir + "/model.safetensors"));

    json tied = safetensors_header(tied_dir + "/model.safetensors");
    CHECK(tied.contains("model.embed_tokens.weight"));
    CHECK_FALSE(tied.contains("lm_head.weight"));
    json untied = safetensors_header(untied_dir + "/model.safetensors");
    CHECK(untied.contains("lm_head.weight"));

    Case c = load_case(tied_dir);
    CHECK(c.config.at("tie_word_embeddings").get<bool>());
    auto model = load_model(c);
    CHECK(model->config().tie_word_embeddings);
}
