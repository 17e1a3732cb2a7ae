// PEFT LoRA adapters (Adapter, Generator::attach, merge_adapters) against an independent float64
// PyTorch reference of PEFT's semantics (tests/reference/lora_ref.py).
//
// The CTest fixture step `fixtures_adapters` (tests/reference/make_adapter_fixtures.py) writes
// <fixtures>/adapters/: base/ (a random GQA checkpoint), base_h96/ (the same shape with hidden
// size 96), adapters/<name>/ (PEFT adapter directories, tools/make_peft_adapter.py), and
// cases/<name>/ with ids.txt, ref_logits.f32 ([n_ids][vocab] float32) and case.json (base,
// adapters [{dir, scale, lora_modules, saved_modules}], prefill_len, same_logits_as), all paths
// relative to <fixtures>/adapters; errors.json lists the adapters that must not load.
//
// Every case runs attached (prefill of ids[0:prefill_len], then one token at a time, and one token
// at a time from the start) and merged, against the reference and against each other.
#include "stackllama/adapter.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <functional>
#include <iomanip>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "stackllama/error.hpp"
#include "stackllama/generator.hpp"
#include "stackllama/model.hpp"
#include "test_support.hpp"

namespace fs = std::filesystem;
using nlohmann::json;
using nlohmann::ordered_json;
using stackllama::Adapter;
using stackllama::AdapterRef;
using stackllama::ErrorCode;
using stackllama::Generator;
using stackllama::Model;

namespace {

constexpr double kTolerance = 1e-4;
// Rows reported in detail per comparison; the rest are only counted.
constexpr int kDetailedRows = 3;

// clang-format off
const char* const kExpectedCases[] = {
    "base", "qv_r16", "all7_r4", "rslora", "patterns", "regex_targets", "layers_1",
    "mts_lm_head", "mts_embed_tokens", "bias_all_fifo", "bias_lora_only", "name_in_keys",
    "legacy_config", "other_base_name", "pair_safetensors", "pair_bin", "qv_bf16_safetensors",
    "qv_bf16_bin", "two_adapters"};
// clang-format on

std::string root() {
    return testing_support::fixture_dir() + "/adapters";
}
std::string at(const std::string& rel) {
    return root() + "/" + rel;
}

json read_json(const std::string& path) {
    return json::parse(testing_support::read_file(path));
}

bool contains(const std::string& s, const std::string& part) {
    return s.find(part) != std::string::npos;
}

stackllama::ModelParams weights_only() {
    stackllama::ModelParams p;
    p.load_tokenizer = false;
    return p;
}

std::shared_ptr<const Model> load_model(const std::string& rel = "base") {
    return Model::load(at(rel), weights_only());
}

struct AdapterSpec {
    std::string dir;  // absolute
    float scale = 1.0f;
    json meta;  // the case.json entry
};

struct Case {
    std::string name;
    std::vector<int32_t> ids;
    std::vector<float> ref;  // [ids.size()][vocab]
    size_t vocab = 0;
    size_t prefill_len = 0;
    std::vector<AdapterSpec> adapters;
    std::string same_logits_as;  // "" when none
    json meta;

    const float* ref_row(size_t p) const { return ref.data() + p * vocab; }
};

Case load_case(const std::string& name) {
    const std::string dir = root() + "/cases/" + name;
    REQUIRE_MESSAGE(fs::exists(dir + "/case.json"), "missing fixture case " << dir);
    Case c;
    c.meta = read_json(dir + "/case.json");
    c.name = c.meta.at("name").get<std::string>();
    c.prefill_len = c.meta.at("prefill_len").get<size_t>();
    c.vocab = c.meta.at("vocab").get<size_t>();
    REQUIRE(c.meta.at("base").get<std::string>() == "base");
    for (const json& a : c.meta.at("adapters")) {
        c.adapters.push_back({at(a.at("dir").get<std::string>()), a.at("scale").get<float>(), a});
    }
    if (c.meta.at("same_logits_as").is_string()) {
        c.same_logits_as = c.meta.at("same_logits_as").get<std::string>();
    }
    std::istringstream ids(testing_support::read_file(dir + "/ids.txt"));
    for (int32_t id; ids >> id;) c.ids.push_back(id);
    c.ref = testing_support::read_f32(dir + "/ref_logits.f32");
    REQUIRE(c.ids.size() >= 24);
    REQUIRE(c.ref.size() == c.ids.size() * c.vocab);
    REQUIRE(c.prefill_len >= 1);
    REQUIRE(c.prefill_len <= c.ids.size());
    return c;
}

std::vector<std::string> case_names() {
    std::vector<std::string> names;
    const std::string dir = root() + "/cases";
    if (!fs::is_directory(dir)) return names;
    for (const auto& e : fs::directory_iterator(dir)) {
        if (e.is_directory() && fs::exists(e.path() / "case.json")) {
            names.push_back(e.path().filename().string());
        }
    }
    std::sort(names.begin(), names.end());
    return names;
}

std::vector<AdapterRef> load_adapters(const std::shared_ptr<const Model>& model, const Case& c) {
    std::vector<AdapterRef> refs;
    for (const AdapterSpec& s : c.adapters) refs.push_back({Adapter::load(model, s.dir), s.scale});
    return refs;
}

void attach_all(Generator& gen, const std::vector<AdapterRef>& refs) {
    for (const AdapterRef& r : refs) gen.attach(r.adapter, r.scale);
}

// ---------------------------------------------------------------------------------------------
// Running and comparing

using Logits = std::vector<float>;  // [n_ids][vocab]

// Runs c.ids through an empty generator: ids[0:prefill] in one eval (all logits), then one token
// at a time; prefill 0 = one token at a time from the start. Returns every row.
Logits run(Generator& gen, const Case& c, size_t prefill) {
    REQUIRE(gen.n_past() == 0);
    const size_t n = c.ids.size();
    Logits out(n * c.vocab);
    size_t p = 0;
    if (prefill > 0) {
        std::vector<int32_t> prefix(c.ids.begin(), c.ids.begin() + long(prefill));
        stackllama::LogitsView v = gen.eval(prefix, /*all_logits=*/true);
        REQUIRE(v.rows == prefill);
        REQUIRE(v.n_vocab == c.vocab);
        std::memcpy(out.data(), v.data, prefill * c.vocab * sizeof(float));
        p = prefill;
    }
    for (; p < n; ++p) {
        stackllama::LogitsView v = gen.eval({c.ids[p]});
        REQUIRE(v.rows == 1);
        REQUIRE(v.n_vocab == c.vocab);
        std::memcpy(out.data() + p * c.vocab, v.row(0), c.vocab * sizeof(float));
    }
    CHECK(gen.n_past() == int(n));
    return out;
}

Logits run(Generator& gen, const Case& c) {
    return run(gen, c, c.prefill_len);
}

Logits run_fresh(std::shared_ptr<const Model> model, const Case& c,
                 const std::vector<AdapterRef>& refs = {}) {
    Generator gen(std::move(model));
    attach_all(gen, refs);
    return run(gen, c);
}

Logits reference(const Case& c) {
    return c.ref;
}

// Rows of `got` with an element more than tol away from `want` (NaN counts); the first few are
// reported with the worst vocab index and both values.
// Returns the largest |diff|.
double check_close(const Case& c, const Logits& got, const Logits& want, const std::string& what,
                   double tol = kTolerance) {
    REQUIRE(got.size() == want.size());
    int bad_rows = 0;
    double worst_all = 0.0;
    for (size_t p = 0; p < c.ids.size(); ++p) {
        const float* g = got.data() + p * c.vocab;
        const float* w = want.data() + p * c.vocab;
        size_t worst = 0;
        double worst_diff = 0.0;
        for (size_t i = 0; i < c.vocab; ++i) {
            double d = std::fabs(double(g[i]) - double(w[i]));
            if (std::isnan(d)) {
                worst = i;
                worst_diff = INFINITY;
                break;
            }
            if (d > worst_diff) {
                worst = i;
                worst_diff = d;
            }
        }
        worst_all = std::max(worst_all, worst_diff);
        if (worst_diff <= tol) continue;
        if (bad_rows++ < kDetailedRows) {
            INFO(std::setprecision(8)
                 << "case " << c.name << ", " << what << ": position " << p << " (token "
                 << c.ids[p] << "), vocab index " << worst << ": got " << g[worst] << ", want "
                 << w[worst] << ", |diff| " << worst_diff << " > " << tol);
            CHECK(worst_diff <= tol);
        }
    }
    INFO("case " << c.name << ", " << what << ": " << bad_rows << " rows differ by more than "
                 << tol << " (max |diff| " << worst_all << ")");
    CHECK(bad_rows == 0);
    return worst_all;
}

// Bit-identical rows.
void check_identical(const Case& c, const Logits& got, const Logits& want,
                     const std::string& what) {
    REQUIRE(got.size() == want.size());
    if (std::memcmp(got.data(), want.data(), got.size() * sizeof(float)) == 0) return;
    for (size_t k = 0; k < got.size(); ++k) {
        if (std::memcmp(&got[k], &want[k], sizeof(float)) != 0) {
            FAIL_CHECK(std::setprecision(9)
                       << "case " << c.name << ", " << what << ": not bit-identical; first at "
                       << "position " << k / c.vocab << ", vocab index " << k % c.vocab << ": "
                       << got[k] << " vs " << want[k]);
            return;
        }
    }
}

// Runs f; a std::exception fails a check naming `what` instead of ending the test case, so the
// other items of a loop still run.
template <class F>
void guarded(const std::string& what, F&& f) {
    try {
        f();
    } catch (const std::exception& e) {
        FAIL_CHECK(what << ": threw: " << std::string(e.what()));
    }
}

double row_std(const float* row, size_t n) {
    double mean = 0, sq = 0;
    for (size_t i = 0; i < n; ++i) mean += row[i];
    mean /= double(n);
    for (size_t i = 0; i < n; ++i) sq += (row[i] - mean) * (row[i] - mean);
    return std::sqrt(sq / double(n));
}

// ---------------------------------------------------------------------------------------------
// Every case

void run_case(const Case& c) {
    INFO("case " << c.name);
    for (size_t p = 0; p < c.ids.size(); ++p) {
        INFO("reference row " << p);
        CHECK(row_std(c.ref_row(p), c.vocab) > 0.3);
    }
    auto model = load_model();
    const std::vector<AdapterRef> refs = load_adapters(model, c);

    // Attached (unmerged): prefill then decode, and decode only.
    Generator gen(model);
    attach_all(gen, refs);
    {
        const std::vector<AdapterRef> att = gen.attached();
        REQUIRE(att.size() == refs.size());
        for (size_t i = 0; i < refs.size(); ++i) {
            CHECK(att[i].adapter == refs[i].adapter);
            CHECK(att[i].scale == refs[i].scale);
        }
    }
    const Logits attached = run(gen, c);
    const double d_attached =
        check_close(c, attached, reference(c), "attached, prefill path vs reference");
    gen.reset();
    const Logits attached_decode = run(gen, c, 0);
    const double d_decode =
        check_close(c, attached_decode, reference(c), "attached, decode path vs reference");
    check_close(c, attached_decode, attached, "attached, decode path vs prefill path");

    // Merged: a new model; the base model's logits are bit-identical before and after.
    const Logits base_before = run_fresh(model, c);
    auto merged = stackllama::merge_adapters(model, refs);
    REQUIRE(merged);
    REQUIRE(merged.get() != nullptr);
    CHECK(merged->config().vocab_size == int(c.vocab));
    const Logits merged_logits = run_fresh(merged, c);
    const double d_merged = check_close(c, merged_logits, reference(c), "merged vs reference");
    const double d_merged_attached = check_close(c, merged_logits, attached, "merged vs attached");
    MESSAGE("case " << c.name << ": max |diff| attached (prefill) vs reference " << d_attached
                    << ", attached (decode) " << d_decode << ", merged " << d_merged
                    << ", merged vs attached " << d_merged_attached);
    const Logits base_after = run_fresh(model, c);
    check_identical(c, base_after, base_before, "base model after merge_adapters vs before");
    // A case without adapters is the base model itself.
    if (c.adapters.empty()) check_identical(c, attached, base_before, "no adapters vs base");
}

void run_named(const char* name) {
    run_case(load_case(name));
}

// ---------------------------------------------------------------------------------------------
// Expecting errors

// Runs f, which must throw stackllama::Error with code `want`; returns the message (printed).
template <class F>
std::string expect_error(const std::string& what, ErrorCode want, F&& f) {
    std::string message;
    bool threw = false;
    try {
        f();
    } catch (const stackllama::Error& e) {
        threw = true;
        message = e.what();
        // std::string: doctest would print a const char* as a pointer.
        const std::string got_name = stackllama::error_code_name(e.code());
        const std::string want_name = stackllama::error_code_name(want);
        MESSAGE(what << "\n    -> [" << got_name << "] " << message);
        CHECK_MESSAGE(e.code() == want, what << ": expected ErrorCode::" << want_name << ", got "
                                             << got_name << " (" << message << ")");
    } catch (const std::exception& e) {
        FAIL(what << ": threw a std::exception that is not stackllama::Error: "
                  << std::string(e.what()));
    } catch (...) {
        FAIL(what << ": threw something that is not a std::exception");
    }
    if (!threw) FAIL(what << ": returned normally; expected an Error");
    CHECK_MESSAGE(!message.empty(), what << ": empty error message");
    return message;
}

#define CHECK_NAMES(message, part)             \
    CHECK_MESSAGE(contains((message), (part)), \
                  "the message does not name \"" << (part) << "\": " << (message))

// Whether the message shows `shape` ("[16, 96]" as errors.json writes it) in a common notation:
// [16, 96], [16,96], (16, 96), (16,96), 16x96 or 16 x 96.
bool names_shape(const std::string& message, const std::string& shape) {
    std::vector<std::string> dims;
    std::string cur;
    for (char ch : shape) {
        if (std::isdigit(static_cast<unsigned char>(ch))) {
            cur += ch;
        } else if (!cur.empty()) {
            dims.push_back(cur);
            cur.clear();
        }
    }
    if (!cur.empty()) dims.push_back(cur);
    auto join = [&](const std::string& sep) {
        std::string s;
        for (size_t i = 0; i < dims.size(); ++i) s += (i ? sep : "") + dims[i];
        return s;
    };
    for (const std::string& form :
         {"[" + join(", ") + "]", "[" + join(",") + "]", "(" + join(", ") + ")",
          "(" + join(",") + ")", join("x"), join(" x ")}) {
        if (contains(message, form)) return true;
    }
    return false;
}

// A copy of a fixture adapter in a TempDir, to damage.
struct AdapterCopy {
    testing_support::TempDir tmp;
    std::string dir;
    explicit AdapterCopy(const std::string& rel) : dir(tmp / "adapter") {
        testing_support::copy_dir(at(rel), dir);
    }
    std::string operator/(const std::string& name) const { return dir + "/" + name; }
    void edit_config(const std::function<void(ordered_json&)>& edit) const {
        ordered_json j =
            ordered_json::parse(testing_support::read_file(*this / "adapter_config.json"));
        edit(j);
        testing_support::write_file(*this / "adapter_config.json", j.dump(2) + "\n");
    }
};

}  // namespace

// ---------------------------------------------------------------------------------------------
// Against the reference, attached and merged

TEST_CASE("adapter vs reference: base (no adapters)") {
    run_named("base");
}
TEST_CASE("adapter vs reference: qv_r16 (StackLLaMA's q_proj/v_proj r=16 alpha=32)") {
    run_named("qv_r16");
}
TEST_CASE("adapter vs reference: all7_r4") {
    run_named("all7_r4");
}
TEST_CASE("adapter vs reference: rslora") {
    run_named("rslora");
}
TEST_CASE("adapter vs reference: patterns (rank_pattern, alpha_pattern)") {
    run_named("patterns");
}
TEST_CASE("adapter vs reference: regex_targets") {
    run_named("regex_targets");
}
TEST_CASE("adapter vs reference: layers_1 (layers_to_transform)") {
    run_named("layers_1");
}
TEST_CASE("adapter vs reference: mts_lm_head (modules_to_save)") {
    run_named("mts_lm_head");
}
TEST_CASE("adapter vs reference: mts_embed_tokens (modules_to_save, scale 0.7)") {
    run_named("mts_embed_tokens");
}
TEST_CASE("adapter vs reference: bias_all_fifo") {
    run_named("bias_all_fifo");
}
TEST_CASE("adapter vs reference: bias_lora_only") {
    run_named("bias_lora_only");
}
TEST_CASE("adapter vs reference: name_in_keys (lora_A.default.weight)") {
    run_named("name_in_keys");
}
TEST_CASE("adapter vs reference: legacy_config (PEFT 0.2 adapter_config.json)") {
    run_named("legacy_config");
}
TEST_CASE("adapter vs reference: other_base_name") {
    run_named("other_base_name");
}
TEST_CASE("adapter vs reference: pair_safetensors") {
    run_named("pair_safetensors");
}
TEST_CASE("adapter vs reference: pair_bin (adapter_model.bin)") {
    run_named("pair_bin");
}
TEST_CASE("adapter vs reference: qv_bf16_safetensors") {
    run_named("qv_bf16_safetensors");
}
TEST_CASE("adapter vs reference: qv_bf16_bin") {
    run_named("qv_bf16_bin");
}
TEST_CASE("adapter vs reference: two_adapters (scales 0.5 and 1.0)") {
    run_named("two_adapters");
}

TEST_CASE("adapter vs reference: any further fixture cases") {
    const std::set<std::string> known(std::begin(kExpectedCases), std::end(kExpectedCases));
    for (const std::string& name : case_names()) {
        if (known.count(name) == 0) run_case(load_case(name));
    }
}

// ---------------------------------------------------------------------------------------------
// Equal values in other forms give equal logits

TEST_CASE("the same values in another form give bit-identical logits") {
    // .bin vs .safetensors, bias / fan_in_fan_out (ignored for LLaMA), adapter name in keys,
    // PEFT 0.2's config, another base_model_name_or_path.
    auto model = load_model();
    int pairs = 0;
    for (const std::string& name : case_names()) {
        const Case c = load_case(name);
        if (c.same_logits_as.empty()) continue;
        ++pairs;
        INFO("case " << c.name << " vs " << c.same_logits_as);
        const Case other = load_case(c.same_logits_as);
        REQUIRE(other.ids == c.ids);
        guarded("case " + c.name, [&] {
            const Logits a = run_fresh(model, c, load_adapters(model, c));
            const Logits b = run_fresh(model, other, load_adapters(model, other));
            check_identical(c, a, b, "attached, vs " + c.same_logits_as);
            const Logits ma =
                run_fresh(stackllama::merge_adapters(model, load_adapters(model, c)), c);
            const Logits mb =
                run_fresh(stackllama::merge_adapters(model, load_adapters(model, other)), other);
            check_identical(c, ma, mb, "merged, vs " + c.same_logits_as);
        });
    }
    CHECK(pairs >= 7);
}

// ---------------------------------------------------------------------------------------------
// Attach, detach, several adapters

TEST_CASE("detach gives back the base logits exactly") {
    const Case c = load_case("two_adapters");
    auto model = load_model();
    const std::vector<AdapterRef> refs = load_adapters(model, c);
    REQUIRE(refs.size() == 2);
    const Logits fresh = run_fresh(model, c);

    Generator gen(model);
    attach_all(gen, refs);
    const Logits both = run(gen, c);
    check_close(c, both, reference(c), "both attached vs reference");

    SUBCASE("detach one by one") {
        gen.detach(*refs[0].adapter);
        REQUIRE(gen.attached().size() == 1);
        CHECK(gen.attached()[0].adapter == refs[1].adapter);
        gen.detach(*refs[1].adapter);
        CHECK(gen.attached().empty());
    }
    SUBCASE("detach_all") {
        gen.detach_all();
        CHECK(gen.attached().empty());
    }
    gen.reset();
    check_identical(c, run(gen, c), fresh, "after detach and reset vs a fresh generator");

    // Attached again: the same logits as the first time.
    attach_all(gen, refs);
    gen.reset();
    check_identical(c, run(gen, c), both, "attached again vs attached the first time");
}

TEST_CASE("detach of an adapter that is not attached is invalid_argument") {
    const Case c = load_case("two_adapters");
    auto model = load_model();
    const std::vector<AdapterRef> refs = load_adapters(model, c);
    Generator gen(model);
    gen.attach(refs[0].adapter, refs[0].scale);
    expect_error("detach of an adapter never attached", ErrorCode::invalid_argument,
                 [&] { gen.detach(*refs[1].adapter); });
    CHECK(gen.attached().size() == 1);
}

TEST_CASE("attaching the same adapter twice is invalid_argument") {
    const Case c = load_case("qv_r16");
    auto model = load_model();
    auto a = Adapter::load(model, c.adapters.at(0).dir);
    Generator gen(model);
    gen.attach(a, 1.0f);
    expect_error("attach twice", ErrorCode::invalid_argument, [&] { gen.attach(a, 0.5f); });
    REQUIRE(gen.attached().size() == 1);
    CHECK(gen.attached()[0].scale == 1.0f);
    // The generator still works, with the adapter once.
    check_close(c, run(gen, c), reference(c), "after the refused second attach");
}

TEST_CASE("two adapters that both replace lm_head cannot be attached together") {
    auto model = load_model();
    auto a = Adapter::load(model, at("adapters/mts_lm_head"));
    auto b = Adapter::load(model, at("adapters/pair"));
    Generator gen(model);
    gen.attach(a);
    const std::string m = expect_error("two adapters saving lm_head", ErrorCode::invalid_argument,
                                       [&] { gen.attach(b); });
    CHECK_NAMES(m, "lm_head");
    CHECK(gen.attached().size() == 1);
}

TEST_CASE("first adapter merged, second attached equals both attached") {
    const Case c = load_case("two_adapters");
    REQUIRE(c.adapters.size() == 2);
    auto model = load_model();
    const std::vector<AdapterRef> refs = load_adapters(model, c);
    const Logits both = run_fresh(model, c, refs);

    auto merged_first = stackllama::merge_adapters(model, {refs[0]});
    // The second adapter, loaded for the merged model (same shapes), attached to it.
    auto second = Adapter::load(merged_first, c.adapters[1].dir);
    const Logits mixed = run_fresh(merged_first, c, {{second, c.adapters[1].scale}});
    check_close(c, mixed, both, "first merged + second attached vs both attached");
    check_close(c, mixed, reference(c), "first merged + second attached vs reference");

    // And both merged, in one call and one after the other.
    const Logits all_merged = run_fresh(stackllama::merge_adapters(model, refs), c);
    check_close(c, all_merged, both, "both merged vs both attached");
    auto twice = stackllama::merge_adapters(merged_first, {{second, c.adapters[1].scale}});
    check_close(c, run_fresh(twice, c), both, "merged one after the other vs both attached");
}

TEST_CASE("one adapter on generators in several threads") {
    const Case c = load_case("pair_safetensors");
    auto model = load_model();
    const std::vector<AdapterRef> refs = load_adapters(model, c);
    const Logits single = run_fresh(model, c, refs);
    check_close(c, single, reference(c), "single thread vs reference");

    constexpr int kThreads = 4;
    std::vector<Logits> results(kThreads);
    std::vector<std::string> errors(kThreads);
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
        threads.emplace_back([&, t] {
            try {
                Generator gen(model);
                for (const AdapterRef& r : refs) gen.attach(r.adapter, r.scale);
                std::vector<int32_t> prefix(c.ids.begin(), c.ids.begin() + long(c.prefill_len));
                stackllama::LogitsView v = gen.eval(prefix, true);
                Logits out(v.data, v.data + v.rows * v.n_vocab);
                for (size_t p = c.prefill_len; p < c.ids.size(); ++p) {
                    stackllama::LogitsView w = gen.eval({c.ids[p]});
                    out.insert(out.end(), w.data, w.data + w.n_vocab);
                }
                results[size_t(t)] = std::move(out);
            } catch (const std::exception& e) {
                errors[size_t(t)] = e.what();
            }
        });
    }
    for (auto& th : threads) th.join();
    for (int t = 0; t < kThreads; ++t) {
        INFO("thread " << t);
        CHECK(errors[size_t(t)] == "");
        if (errors[size_t(t)].empty()) {
            check_identical(c, results[size_t(t)], single, "thread vs single thread");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// save_pretrained of a merged model

TEST_CASE("save_pretrained of a merged model reloads with the same logits") {
    for (const char* name : {"qv_r16", "mts_lm_head", "mts_embed_tokens", "two_adapters",
                             "pair_bin", "qv_bf16_safetensors"}) {
        const Case c = load_case(name);
        INFO("case " << c.name);
        guarded("case " + c.name, [&] {
            auto model = load_model();
            auto merged = stackllama::merge_adapters(model, load_adapters(model, c));
            const Logits merged_logits = run_fresh(merged, c);

            testing_support::TempDir tmp;
            const std::string dir = tmp / "merged";
            merged->save_pretrained(dir);
            REQUIRE(testing_support::exists(dir + "/config.json"));
            REQUIRE(testing_support::exists(dir + "/model.safetensors"));
            auto reloaded = Model::load(dir, weights_only());
            const stackllama::ModelConfig& a = reloaded->config();
            const stackllama::ModelConfig& b = model->config();
            CHECK(a.hidden_size == b.hidden_size);
            CHECK(a.num_hidden_layers == b.num_hidden_layers);
            CHECK(a.num_attention_heads == b.num_attention_heads);
            CHECK(a.num_key_value_heads == b.num_key_value_heads);
            CHECK(a.vocab_size == b.vocab_size);
            CHECK(a.tie_word_embeddings == b.tie_word_embeddings);
            const Logits reloaded_logits = run_fresh(reloaded, c);
            check_identical(c, reloaded_logits, merged_logits, "reloaded vs merged in memory");
            check_close(c, reloaded_logits, reference(c), "reloaded vs reference");
        });
    }
}

// ---------------------------------------------------------------------------------------------
// What an adapter reports

TEST_CASE("config(), lora_modules() and saved_modules() report the adapter") {
    auto model = load_model();
    std::set<std::string> seen;
    for (const std::string& name : case_names()) {
        const Case c = load_case(name);
        for (const AdapterSpec& s : c.adapters) {
            if (!seen.insert(s.dir).second) continue;
            INFO("adapter " << s.dir);
            guarded("adapter " + s.dir, [&] {
                auto a = Adapter::load(model, s.dir);
                const json j = read_json(s.dir + "/adapter_config.json");
                const stackllama::AdapterConfig& cfg = a->config();
                CHECK(&a->model() == model.get());
                CHECK(fs::equivalent(a->path(), s.dir));
                CHECK(cfg.peft_type == "LORA");
                CHECK(cfg.task_type == j.at("task_type").get<std::string>());
                CHECK(cfg.r == j.at("r").get<int>());
                CHECK(cfg.lora_alpha == doctest::Approx(j.at("lora_alpha").get<double>()));
                CHECK(cfg.use_rslora == j.value("use_rslora", false));
                CHECK(cfg.bias == j.at("bias").get<std::string>());
                CHECK(cfg.base_model_name_or_path ==
                      j.at("base_model_name_or_path").get<std::string>());
                const json& tm = j.at("target_modules");
                if (tm.is_string()) {
                    CHECK(cfg.target_modules_regex == tm.get<std::string>());
                    CHECK(cfg.target_modules.empty());
                } else {
                    CHECK(std::set<std::string>(cfg.target_modules.begin(),
                                                cfg.target_modules.end()) ==
                          tm.get<std::set<std::string>>());
                    CHECK(cfg.target_modules_regex.empty());
                }
                const json mts = j.value("modules_to_save", json());
                CHECK(cfg.modules_to_save == (mts.is_null() ? std::vector<std::string>{}
                                                            : mts.get<std::vector<std::string>>()));
                const json ltt = j.value("layers_to_transform", json());
                CHECK(cfg.layers_to_transform ==
                      (ltt.is_null() ? std::vector<int>{} : ltt.get<std::vector<int>>()));
                const json rp = j.value("rank_pattern", json::object());
                CHECK(cfg.rank_pattern == rp.get<std::map<std::string, int>>());
                const json ap = j.value("alpha_pattern", json::object());
                REQUIRE(cfg.alpha_pattern.size() == ap.size());
                for (const auto& [k, v] : ap.items()) {
                    INFO("alpha_pattern " << k);
                    REQUIRE(cfg.alpha_pattern.count(k) == 1);
                    CHECK(cfg.alpha_pattern.at(k) == doctest::Approx(v.get<double>()));
                }

                // The modules the reference adapted, by their model names.
                std::set<std::string> want_lora;
                for (const auto& [k, v] : s.meta.at("lora_modules").items()) want_lora.insert(k);
                const std::vector<std::string> lm = a->lora_modules();
                CHECK(std::set<std::string>(lm.begin(), lm.end()) == want_lora);
                CHECK(lm.size() == want_lora.size());
                // saved_modules: "lm_head", and "model.embed_tokens" or "embed_tokens".
                const std::vector<std::string> sm = a->saved_modules();
                const std::vector<std::string> want_saved =
                    s.meta.at("saved_modules").get<std::vector<std::string>>();
                CHECK(sm.size() == want_saved.size());
                for (const std::string& w : want_saved) {
                    const std::string leaf = w.substr(w.rfind('.') + 1);
                    const bool found = std::any_of(sm.begin(), sm.end(), [&](const std::string& x) {
                        return x == w || x == leaf;
                    });
                    CHECK_MESSAGE(found, "saved_modules() lacks " << w);
                }
            });
        }
    }
    CHECK(seen.size() >= 15);
}

TEST_CASE("base_model_name_or_path other than the model's only warns") {
    auto model = load_model();
    std::shared_ptr<const Adapter> a;
    CHECK_NOTHROW(a = Adapter::load(model, at("adapters/other_base_name")));
    REQUIRE(a);
    CHECK(a->config().base_model_name_or_path == "huggyllama/llama-7b");
}

// ---------------------------------------------------------------------------------------------
// Adapters that do not fit, and broken or unsupported ones

TEST_CASE("an adapter for another shape names the tensor and both shapes") {
    const json errors = read_json(root() + "/errors.json");
    auto model = load_model();
    for (const char* name : {"bad_hidden", "bad_layers", "bad_vocab"}) {
        INFO("adapter " << name);
        const json& e = errors.at(name);
        const std::string dir = at(e.at("dir").get<std::string>());
        const std::string m = expect_error(std::string("Adapter::load of ") + name,
                                           ErrorCode::format, [&] { Adapter::load(model, dir); });
        // Some tensor that does not fit must be named, with its shape and the model's.
        bool named = false, shapes = false;
        for (const json& f : e.at("misfits")) {
            const std::string key = f.at("key").get<std::string>();
            const std::string module = f.at("module").get<std::string>();
            const std::string want = f.at("want").get<std::string>();
            // The key, or the module with lora_A / lora_B; a module the model lacks, or a whole
            // saved module (lm_head), may be named alone.
            std::string part = module;
            const size_t lora = key.find(".lora_");
            if (lora != std::string::npos && !want.empty()) part = module + key.substr(lora, 7);
            if (!contains(m, key) && !contains(m, part)) continue;
            named = true;
            if (want.empty()) {
                shapes = true;  // no such module in the model: no shape to compare with
            } else if (names_shape(m, f.at("got").get<std::string>()) && names_shape(m, want)) {
                shapes = true;
            }
        }
        CHECK_MESSAGE(named, "the message names none of the misfit tensors: " << m);
        CHECK_MESSAGE(shapes, "the message does not give both shapes of the tensor: " << m);
    }
}

TEST_CASE("an adapter loaded for another model does not attach or merge") {
    const json errors = read_json(root() + "/errors.json");
    const json& e = errors.at("bad_hidden");
    REQUIRE(e.at("fits").get<std::string>() == "base_h96");
    auto model = load_model();
    auto other = load_model("base_h96");
    auto a = Adapter::load(other, at(e.at("dir").get<std::string>()));  // fits that model
    Generator gen(model);
    expect_error("attach of a hidden-96 adapter to a hidden-64 model", ErrorCode::format,
                 [&] { gen.attach(a); });
    CHECK(gen.attached().empty());
    expect_error("merge of a hidden-96 adapter into a hidden-64 model", ErrorCode::format, [&] {
        stackllama::merge_adapters(model, {{a, 1.0f}});
    });
    // On its own model it works.
    Generator ok(other);
    CHECK_NOTHROW(ok.attach(a));
    CHECK(ok.eval({1, 2, 3}).n_vocab == size_t(other->config().vocab_size));
}

TEST_CASE("a lora_A without its lora_B names the module") {
    const json errors = read_json(root() + "/errors.json");
    const json& e = errors.at("bad_missing_b");
    auto model = load_model();
    const std::string m = expect_error("lora_B missing", ErrorCode::format, [&] {
        Adapter::load(model, at(e.at("dir").get<std::string>()));
    });
    for (const json& module : e.at("missing")) CHECK_NAMES(m, module.get<std::string>());
}

TEST_CASE("use_dora: true is unsupported") {
    AdapterCopy a("adapters/qv_r16");
    a.edit_config([](ordered_json& j) { j["use_dora"] = true; });
    auto model = load_model();
    const std::string m = expect_error("use_dora: true", ErrorCode::unsupported,
                                       [&] { Adapter::load(model, a.dir); });
    CHECK_NAMES(m, "use_dora");
}

TEST_CASE("peft_type other than LORA is unsupported") {
    auto model = load_model();
    for (const char* type : {"LOHA", "IA3", "LOKR", "PREFIX_TUNING"}) {
        AdapterCopy a("adapters/qv_r16");
        a.edit_config([&](ordered_json& j) { j["peft_type"] = type; });
        const std::string m = expect_error(std::string("peft_type ") + type, ErrorCode::unsupported,
                                           [&] { Adapter::load(model, a.dir); });
        CHECK_NAMES(m, type);
    }
}

TEST_CASE("a missing adapter_config.json is an error naming the path") {
    AdapterCopy a("adapters/qv_r16");
    fs::remove(a / "adapter_config.json");
    auto model = load_model();
    const std::string m =
        expect_error("no adapter_config.json", ErrorCode::io, [&] { Adapter::load(model, a.dir); });
    CHECK_NAMES(m, "adapter_config.json");
    CHECK_NAMES(m, a.dir);
}

TEST_CASE("a missing adapter_model file is an error naming the directory") {
    AdapterCopy a("adapters/qv_r16");
    fs::remove(a / "adapter_model.safetensors");
    auto model = load_model();
    const std::string m = expect_error("no adapter_model.safetensors or .bin", ErrorCode::io,
                                       [&] { Adapter::load(model, a.dir); });
    CHECK_NAMES(m, a.dir);
}
