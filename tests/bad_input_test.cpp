// Bad inputs: every damaged checkpoint, config or call must end in a stackllama::Error with the
// right ErrorCode and a message naming the file and the tensor or field at fault. Never a crash,
// never a silent success.
//
// Starting material: the random Hugging Face checkpoints that the CTest fixture step
// `fixtures_models` writes under <fixtures>/models/<case>/ (tests/reference/make_model_fixtures.py).
// Each test copies a case into a TempDir and damages the copy. Tests that need a real tokenizer
// use ../shared/data/stories260K-hf and skip (with a message) when it is absent.
//
// Every error message is printed with MESSAGE, so the test log lists each case and its message.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "stackllama/error.hpp"
#include "stackllama/generator.hpp"
#include "stackllama/model.hpp"
#include "stackllama/worker_pool.hpp"
#include "test_support.hpp"

namespace fs = std::filesystem;
using nlohmann::ordered_json;
using stackllama::ErrorCode;
using stackllama::GenerationConfig;
using stackllama::Generator;
using stackllama::GeneratorParams;
using stackllama::Model;
using stackllama::ModelParams;
using testing_support::TempDir;

namespace {

// ---------------------------------------------------------------------------------------------
// Fixtures and copies

// gqa_f32: hidden 64, 2 layers, 8 heads / 2 KV heads (head_dim 8), ffn 96, vocab 320,
// max_position_embeddings 512, untied, one model.safetensors.
// sharded_f32: the same shapes in model-0000K-of-00003.safetensors + index.
constexpr int kVocab = 320;
constexpr int kMaxPos = 512;

std::string fixture_case(const std::string& name) {
    const std::string dir = testing_support::fixture_dir() + "/models/" + name;
    REQUIRE_MESSAGE(fs::is_regular_file(dir + "/config.json"),
                    "fixture checkpoint " << dir << " is missing: run the CTest fixture step "
                                          << "fixtures_models (ctest -R 'fixtures_models|bad_input')");
    return dir;
}

// A writable copy of a checkpoint folder in a fresh temporary directory.
struct Copy {
    TempDir tmp;
    std::string dir;

    explicit Copy(const std::string& src) : dir(tmp / "model") {
        testing_support::copy_dir(src, dir);
        // ../shared is read-only; so would be the copies of its files.
        for (const auto& e : fs::directory_iterator(dir))
            fs::permissions(e.path(), fs::perms::owner_read | fs::perms::owner_write,
                            fs::perm_options::add);
    }
    std::string operator/(const std::string& name) const { return dir + "/" + name; }
};

Copy copy_case(const std::string& name) { return Copy(fixture_case(name)); }

ModelParams weights_only() {
    ModelParams p;
    p.load_tokenizer = false;
    p.n_threads = 2;
    return p;
}

std::shared_ptr<const Model> load_weights(const std::string& dir) {
    return Model::load(dir, weights_only());
}

// ---------------------------------------------------------------------------------------------
// Expecting errors

bool contains(const std::string& s, const std::string& part) {
    return s.find(part) != std::string::npos;
}

// doctest prints a const char* as a pointer: hand it strings.
std::string code_name(ErrorCode c) { return stackllama::error_code_name(c); }

std::string code_list(const std::vector<ErrorCode>& codes) {
    std::string s;
    for (ErrorCode c : codes) s += (s.empty() ? "" : " or ") + code_name(c);
    return s;
}

// Runs f, which must throw stackllama::Error with one of the codes `want`; returns the message
// (printed).
template <class F>
std::string expect_error(const std::string& what, const std::vector<ErrorCode>& want, F&& f) {
    std::string message;
    bool threw = false;
    try {
        f();
    } catch (const stackllama::Error& e) {
        threw = true;
        message = e.what();
        MESSAGE(what << "\n    -> [" << code_name(e.code()) << "] " << message);
        CHECK_MESSAGE(std::find(want.begin(), want.end(), e.code()) != want.end(),
                      what << ": expected " << code_list(want) << ", got " << code_name(e.code())
                           << " (" << message << ")");
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

template <class F>
std::string expect_error(const std::string& what, ErrorCode want, F&& f) {
    return expect_error(what, std::vector<ErrorCode>{want}, std::forward<F>(f));
}

#define CHECK_NAMES(message, part)                                                    \
    CHECK_MESSAGE(contains((message), (part)),                                        \
                  "the message does not name \"" << std::string(part) << "\": " << (message))

std::string load_error(const std::string& what, const std::vector<ErrorCode>& want,
                       const std::string& dir, const ModelParams& params = weights_only()) {
    return expect_error(what, want, [&] { Model::load(dir, params); });
}

std::string load_error(const std::string& what, ErrorCode want, const std::string& dir,
                       const ModelParams& params = weights_only()) {
    return load_error(what, std::vector<ErrorCode>{want}, dir, params);
}

// ---------------------------------------------------------------------------------------------
// Editing config.json

ordered_json read_json(const std::string& path) {
    return ordered_json::parse(testing_support::read_file(path));
}

void write_json(const std::string& path, const ordered_json& j) {
    testing_support::write_file(path, j.dump(2) + "\n");
}

void edit_config(const Copy& c, const std::function<void(ordered_json&)>& edit) {
    ordered_json j = read_json(c / "config.json");
    edit(j);
    write_json(c / "config.json", j);
}

// ---------------------------------------------------------------------------------------------
// Editing safetensors files: an 8-byte little-endian header length N, N bytes of JSON header
// ({name: {dtype, shape, data_offsets}} plus "__metadata__"), then the data section.

uint64_t read_u64_le(const std::string& b, size_t at = 0) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(b[at + size_t(i)]);
    return v;
}

std::string u64_le(uint64_t v) {
    std::string s(8, '\0');
    for (int i = 0; i < 8; ++i) s[size_t(i)] = static_cast<char>((v >> (8 * i)) & 0xff);
    return s;
}

// Length prefix + header text padded with spaces to a multiple of 8 (as the spec suggests).
std::string header_block(std::string text) {
    text.append((8 - text.size() % 8) % 8, ' ');
    return u64_le(text.size()) + text;
}

struct StTensor {
    std::string name;
    std::string dtype;
    ordered_json shape;  // JSON, so that a test can store any value there
    std::string bytes;
};

struct StFile {
    ordered_json metadata;  // null when absent
    std::vector<StTensor> tensors;  // in data order

    StTensor& at(const std::string& name) {
        for (auto& t : tensors)
            if (t.name == name) return t;
        FAIL("no tensor " << name << " in the test's safetensors copy");
        throw std::logic_error("unreachable");
    }
    bool erase(const std::string& name) {
        auto it = std::find_if(tensors.begin(), tensors.end(),
                               [&](const StTensor& t) { return t.name == name; });
        if (it == tensors.end()) return false;
        tensors.erase(it);
        return true;
    }
};

StFile parse_st(const std::string& path) {
    const std::string b = testing_support::read_file(path);
    REQUIRE(b.size() >= 8);
    const uint64_t n = read_u64_le(b);
    REQUIRE(n <= b.size() - 8);
    const ordered_json h = ordered_json::parse(b.substr(8, size_t(n)));
    const std::string data = b.substr(8 + size_t(n));
    StFile f;
    std::vector<std::pair<uint64_t, StTensor>> by_offset;
    for (auto it = h.begin(); it != h.end(); ++it) {
        if (it.key() == "__metadata__") {
            f.metadata = it.value();
            continue;
        }
        const auto& e = it.value();
        const uint64_t begin = e.at("data_offsets")[0].get<uint64_t>();
        const uint64_t end = e.at("data_offsets")[1].get<uint64_t>();
        REQUIRE(end <= data.size());
        by_offset.push_back({begin, StTensor{it.key(), e.at("dtype").get<std::string>(),
                                             e.at("shape"), data.substr(begin, end - begin)}});
    }
    std::stable_sort(by_offset.begin(), by_offset.end(),
                     [](const auto& x, const auto& y) { return x.first < y.first; });
    for (auto& entry : by_offset) f.tensors.push_back(std::move(entry.second));
    return f;
}

// Serializes with consecutive offsets. `raw` may then edit the header JSON and the data section
// directly (offsets that lie, etc.).
void write_st(const std::string& path, const StFile& f,
              const std::function<void(ordered_json&, std::string&)>& raw = {}) {
    ordered_json h = ordered_json::object();
    if (!f.metadata.is_null()) h["__metadata__"] = f.metadata;
    std::string data;
    for (const auto& t : f.tensors) {
        const uint64_t begin = data.size();
        data += t.bytes;
        h[t.name] = {{"dtype", t.dtype},
                     {"shape", t.shape},
                     {"data_offsets", {begin, uint64_t(data.size())}}};
    }
    if (raw) raw(h, data);
    testing_support::write_file(path, header_block(h.dump()) + data);
}

void edit_st(const std::string& path, const std::function<void(StFile&)>& edit,
             const std::function<void(ordered_json&, std::string&)>& raw = {}) {
    StFile f = parse_st(path);
    if (edit) edit(f);
    write_st(path, f, raw);
}

// Float32 bytes re-encoded as float64 (same values, twice the bytes).
std::string f32_to_f64(const std::string& bytes) {
    std::string out;
    for (size_t i = 0; i + 4 <= bytes.size(); i += 4) {
        float f;
        std::memcpy(&f, bytes.data() + i, 4);
        const double d = f;
        char b[8];
        std::memcpy(b, &d, 8);
        out.append(b, 8);
    }
    return out;
}

std::string index_shard_of(const Copy& c, const std::string& tensor) {
    ordered_json idx = read_json(c / "model.safetensors.index.json");
    return idx.at("weight_map").at(tensor).get<std::string>();
}

// ---------------------------------------------------------------------------------------------
// Generator helpers

std::vector<int32_t> some_ids(size_t n) {
    std::vector<int32_t> ids{1};
    for (size_t i = 1; i < n; ++i) ids.push_back(int32_t((i * 37 + 5) % kVocab));
    return ids;
}

// Greedy decoding, said explicitly (the defaults of GenerationConfig follow transformers').
GenerationConfig greedy() {
    GenerationConfig gc;
    gc.temperature = 0.0f;
    return gc;
}

std::vector<float> last_row(const stackllama::LogitsView& lv) {
    REQUIRE(lv.rows >= 1);
    REQUIRE(lv.n_vocab == size_t(kVocab));
    const float* r = lv.row(lv.rows - 1);
    return std::vector<float>(r, r + lv.n_vocab);
}

// Logits of `ids` from a fresh generator: what an untouched state gives.
std::vector<float> fresh_logits(const std::shared_ptr<const Model>& m,
                                const std::vector<int32_t>& ids) {
    GeneratorParams gp;
    gp.n_ctx = 16;
    Generator g(m, gp);
    return last_row(g.eval(ids));
}

void check_same_logits(const std::vector<float>& a, const std::vector<float>& b) {
    REQUIRE(a.size() == b.size());
    double worst = 0;
    for (size_t i = 0; i < a.size(); ++i) {
        REQUIRE(std::isfinite(a[i]));
        worst = std::max(worst, double(std::fabs(a[i] - b[i])));
    }
    CHECK_MESSAGE(worst <= 1e-5, "logits after the refused call differ from a fresh generator's "
                                 "by up to " << worst);
}

}  // namespace

// =============================================================================================
// Baseline: the undamaged copies load (so each damage below is what causes its error).

TEST_CASE("baseline: undamaged copies of the fixtures load") {
    for (const char* name : {"gqa_f32", "sharded_f32", "mha_tied_f32"}) {
        Copy c = copy_case(name);
        auto m = load_weights(c.dir);
        REQUIRE(m);
        CHECK(m->config().hidden_size == 64);
        CHECK(m->config().max_position_embeddings == kMaxPos);
    }
    // The copy helper round-trips a safetensors file unchanged in meaning.
    Copy c = copy_case("gqa_f32");
    edit_st(c / "model.safetensors", {});
    CHECK(load_weights(c.dir));
}

// =============================================================================================
// 1-5, 21, 22: config.json

TEST_CASE("1: missing config.json") {
    Copy c = copy_case("gqa_f32");
    fs::remove(c / "config.json");
    const std::string m = load_error("no config.json", ErrorCode::io, c.dir);
    CHECK_NAMES(m, "config.json");
    CHECK_NAMES(m, c.dir);
}

TEST_CASE("2: config.json without a required field") {
    for (const char* field : {"hidden_size", "intermediate_size", "num_hidden_layers",
                              "num_attention_heads", "vocab_size"}) {
        Copy c = copy_case("gqa_f32");
        edit_config(c, [&](ordered_json& j) { j.erase(field); });
        const std::string m =
            load_error(std::string("config.json without ") + field, ErrorCode::format, c.dir);
        CHECK_NAMES(m, c / "config.json");
        CHECK_NAMES(m, "\"" + std::string(field) + "\"");
        CHECK_NAMES(m, "missing");
    }
    // A null value counts as missing.
    Copy c = copy_case("gqa_f32");
    edit_config(c, [](ordered_json& j) { j["hidden_size"] = nullptr; });
    const std::string m = load_error("hidden_size: null", ErrorCode::format, c.dir);
    CHECK_NAMES(m, c / "config.json");
    CHECK_NAMES(m, "hidden_size");
}

TEST_CASE("3: config.json field of the wrong type") {
    struct Bad {
        const char* field;
        ordered_json value;
        const char* shown;  // part of the value the message should quote
    };
    const Bad bad[] = {
        {"hidden_size", "64", "\"64\""},
        {"hidden_size", 64.5, "64.5"},
        {"hidden_size", ordered_json::array({64}), "[64]"},
        {"hidden_size", 1e30, "1e+30"},  // a float no int64 holds: must not be converted
        {"num_hidden_layers", true, "true"},
        {"rms_norm_eps", "1e-6", "\"1e-6\""},
        {"rope_theta", ordered_json::object(), "{}"},
        {"tie_word_embeddings", "yes", "\"yes\""},
        {"eos_token_id", "2", "\"2\""},
        {"architectures", "LlamaForCausalLM", "\"LlamaForCausalLM\""},
    };
    for (const auto& b : bad) {
        Copy c = copy_case("gqa_f32");
        edit_config(c, [&](ordered_json& j) { j[b.field] = b.value; });
        const std::string m = load_error(std::string(b.field) + ": " + b.value.dump(),
                                         ErrorCode::format, c.dir);
        CHECK_NAMES(m, c / "config.json");
        CHECK_NAMES(m, "\"" + std::string(b.field) + "\"");
        CHECK_NAMES(m, b.shown);
    }
    // Right type, impossible value.
    for (int v : {0, -64}) {
        Copy c = copy_case("gqa_f32");
        edit_config(c, [&](ordered_json& j) { j["hidden_size"] = v; });
        const std::string m =
            load_error("hidden_size: " + std::to_string(v), ErrorCode::format, c.dir);
        CHECK_NAMES(m, c / "config.json");
        CHECK_NAMES(m, "hidden_size");
        CHECK_NAMES(m, std::to_string(v));
    }
}

TEST_CASE("4: malformed config.json") {
    const std::pair<const char*, std::string> texts[] = {
        {"cut short", "{\n  \"architectures\": [\"LlamaForCausalLM\"],\n  \"hidden_size\": 64,"},
        {"empty file", ""},
        {"trailing garbage", "{\"hidden_size\": 64} }"},
        {"not UTF-8", "{\"hidden_size\": \"\xff\xfe\"}"},
    };
    for (const auto& [what, text] : texts) {
        Copy c = copy_case("gqa_f32");
        testing_support::write_file(c / "config.json", text);
        const std::string m =
            load_error(std::string("config.json ") + what, ErrorCode::format, c.dir);
        CHECK_NAMES(m, c / "config.json");
        CHECK_NAMES(m, "JSON");
    }
    Copy c = copy_case("gqa_f32");
    testing_support::write_file(c / "config.json", "[64, 2, 8]");
    const std::string m = load_error("config.json is a JSON array", ErrorCode::format, c.dir);
    CHECK_NAMES(m, c / "config.json");
    CHECK_NAMES(m, "object");
}

TEST_CASE("5: unsupported architecture and features") {
    {
        Copy c = copy_case("gqa_f32");
        edit_config(c, [](ordered_json& j) { j["architectures"] = {"MistralForCausalLM"}; });
        const std::string m = load_error("architectures: [MistralForCausalLM]",
                                         ErrorCode::unsupported, c.dir);
        CHECK_NAMES(m, c / "config.json");
        CHECK_NAMES(m, "architecture");
        CHECK_NAMES(m, "MistralForCausalLM");
    }
    {
        Copy c = copy_case("gqa_f32");
        edit_config(c, [](ordered_json& j) {
            j.erase("architectures");
            j["model_type"] = "mistral";
        });
        const std::string m =
            load_error("model_type: mistral, no architectures", ErrorCode::unsupported, c.dir);
        CHECK_NAMES(m, c / "config.json");
        CHECK_NAMES(m, "mistral");
    }
    {
        Copy c = copy_case("gqa_f32");
        edit_config(c, [](ordered_json& j) {
            j.erase("architectures");
            j.erase("model_type");
        });
        const std::string m =
            load_error("neither architectures nor model_type", ErrorCode::format, c.dir);
        CHECK_NAMES(m, c / "config.json");
        CHECK_NAMES(m, "architectures");
    }
    {
        Copy c = copy_case("gqa_f32");
        edit_config(c, [](ordered_json& j) { j["hidden_act"] = "gelu"; });
        const std::string m = load_error("hidden_act: gelu", ErrorCode::unsupported, c.dir);
        CHECK_NAMES(m, c / "config.json");
        CHECK_NAMES(m, "hidden_act");
        CHECK_NAMES(m, "gelu");
    }
    for (const char* key : {"attention_bias", "mlp_bias"}) {
        Copy c = copy_case("gqa_f32");
        edit_config(c, [&](ordered_json& j) { j[key] = true; });
        const std::string m =
            load_error(std::string(key) + ": true", ErrorCode::unsupported, c.dir);
        CHECK_NAMES(m, c / "config.json");
        CHECK_NAMES(m, key);
    }
}

TEST_CASE("21: num_key_value_heads does not divide num_attention_heads") {
    {
        Copy c = copy_case("gqa_f32");
        edit_config(c, [](ordered_json& j) { j["num_key_value_heads"] = 3; });
        const std::string m = load_error("8 heads, 3 KV heads", ErrorCode::format, c.dir);
        CHECK_NAMES(m, c / "config.json");
        CHECK_NAMES(m, "num_key_value_heads");
        CHECK_NAMES(m, "(3)");
        CHECK_NAMES(m, "(8)");
    }
    {
        Copy c = copy_case("gqa_f32");
        edit_config(c, [](ordered_json& j) { j["num_key_value_heads"] = 16; });
        const std::string m = load_error("8 heads, 16 KV heads", ErrorCode::format, c.dir);
        CHECK_NAMES(m, "num_key_value_heads");
    }
    {
        Copy c = copy_case("gqa_f32");
        edit_config(c, [](ordered_json& j) { j["num_key_value_heads"] = 0; });
        const std::string m = load_error("0 KV heads", ErrorCode::format, c.dir);
        CHECK_NAMES(m, "num_key_value_heads");
    }
    {
        // No head_dim in config.json: hidden_size must split evenly into the heads.
        Copy c = copy_case("gqa_f32");
        edit_config(c, [](ordered_json& j) { j["num_attention_heads"] = 6; });
        const std::string m = load_error("hidden 64, 6 heads", ErrorCode::format, c.dir);
        CHECK_NAMES(m, c / "config.json");
        CHECK_NAMES(m, "hidden_size");
        CHECK_NAMES(m, "num_attention_heads");
    }
    {
        Copy c = copy_case("gqa_f32");
        edit_config(c, [](ordered_json& j) { j["head_dim"] = 7; });
        const std::string m = load_error("head_dim 7 (odd)", ErrorCode::format, c.dir);
        CHECK_NAMES(m, c / "config.json");
        CHECK_NAMES(m, "head_dim");
    }
}

TEST_CASE("22: rope_scaling is unsupported") {
    const ordered_json values[] = {
        {{"type", "linear"}, {"factor", 2.0}},
        {{"rope_type", "llama3"}, {"factor", 8.0}, {"original_max_position_embeddings", 8192}},
    };
    for (const auto& v : values) {
        Copy c = copy_case("gqa_f32");
        edit_config(c, [&](ordered_json& j) { j["rope_scaling"] = v; });
        const std::string m =
            load_error("rope_scaling: " + v.dump(), ErrorCode::unsupported, c.dir);
        CHECK_NAMES(m, c / "config.json");
        CHECK_NAMES(m, "rope_scaling");
    }
    // rope_scaling: null (as transformers writes it) is fine: the fixture's config has it.
    CHECK(read_json(fixture_case("gqa_f32") + "/config.json").at("rope_scaling").is_null());
}

// =============================================================================================
// 6-11, 23: safetensors files

TEST_CASE("6: safetensors truncated") {
    const std::string full = testing_support::read_file(fixture_case("gqa_f32") +
                                                        "/model.safetensors");
    const uint64_t header_len = read_u64_le(full);
    const size_t data_start = 8 + size_t(header_len);
    REQUIRE(full.size() > data_start + 16);
    const std::pair<const char*, size_t> cuts[] = {
        {"0 bytes", 0},
        {"5 bytes", 5},
        {"8 bytes (the header length only)", 8},
        {"half the header", 8 + size_t(header_len) / 2},
        {"header complete, no data", data_start},
        {"in the middle of the data", data_start + (full.size() - data_start) / 2},
        {"last byte missing", full.size() - 1},
    };
    for (const auto& [what, size] : cuts) {
        Copy c = copy_case("gqa_f32");
        const std::string path = c / "model.safetensors";
        testing_support::write_file(path, full.substr(0, size));
        const std::string m = load_error(std::string("model.safetensors truncated to ") + what +
                                             " (" + std::to_string(size) + " bytes)",
                                         ErrorCode::format, c.dir);
        CHECK_NAMES(m, path);
        if (size < 8) {
            CHECK_NAMES(m, "truncated");
            CHECK_NAMES(m, std::to_string(size) + " bytes");
        } else if (size < data_start) {
            CHECK_NAMES(m, "header length " + std::to_string(header_len));
        } else {
            // The header is intact: the first tensor reaching past the end is named.
            CHECK_NAMES(m, "tensor ");
            CHECK_NAMES(m, "data_offsets");
            CHECK_NAMES(m, "truncated");
        }
    }
}

TEST_CASE("7: safetensors header length larger than the file") {
    const std::string full = testing_support::read_file(fixture_case("gqa_f32") +
                                                        "/model.safetensors");
    const uint64_t lengths[] = {uint64_t(full.size()) - 7, uint64_t(full.size()), 1ull << 40,
                                UINT64_MAX};
    for (uint64_t len : lengths) {
        Copy c = copy_case("gqa_f32");
        const std::string path = c / "model.safetensors";
        testing_support::write_file(path, u64_le(len) + full.substr(8));
        const std::string m = load_error("header length " + std::to_string(len) + " in a " +
                                             std::to_string(full.size()) + "-byte file",
                                         ErrorCode::format, c.dir);
        CHECK_NAMES(m, path);
        CHECK_NAMES(m, "header length " + std::to_string(len));
        CHECK_NAMES(m, std::to_string(full.size()));
    }
}

TEST_CASE("8: malformed safetensors header") {
    const std::string src = fixture_case("gqa_f32") + "/model.safetensors";
    const std::string full = testing_support::read_file(src);
    const uint64_t header_len = read_u64_le(full);
    const std::string data = full.substr(8 + size_t(header_len));

    // Not JSON at all, cut-off JSON, JSON but not an object.
    const std::pair<const char*, std::string> headers[] = {
        {"not JSON", "this is not JSON"},
        {"cut-off JSON", full.substr(8, size_t(header_len) / 2)},
        {"a JSON array", "[1, 2, 3]"},
        {"NUL bytes", std::string(16, '\0')},
    };
    for (const auto& [what, text] : headers) {
        Copy c = copy_case("gqa_f32");
        const std::string path = c / "model.safetensors";
        testing_support::write_file(path, header_block(text) + data);
        const std::string m =
            load_error(std::string("safetensors header: ") + what, ErrorCode::format, c.dir);
        CHECK_NAMES(m, path);
        CHECK_NAMES(m, "header");
    }

    // Valid JSON, broken entries: the tensor is named.
    const std::string t = "model.layers.0.self_attn.k_proj.weight";
    const std::pair<const char*, std::function<void(ordered_json&)>> entries[] = {
        {"entry is a string", [&](ordered_json& e) { e = "F32"; }},
        {"no dtype", [&](ordered_json& e) { e.erase("dtype"); }},
        {"dtype is a number", [&](ordered_json& e) { e["dtype"] = 32; }},
        {"no shape", [&](ordered_json& e) { e.erase("shape"); }},
        {"shape is a string", [&](ordered_json& e) { e["shape"] = "[16, 64]"; }},
        {"no data_offsets", [&](ordered_json& e) { e.erase("data_offsets"); }},
        {"three data_offsets", [&](ordered_json& e) { e["data_offsets"].push_back(0); }},
        {"data_offsets strings",
         [&](ordered_json& e) { e["data_offsets"] = {"0", "4096"}; }},
        {"negative data_offsets", [&](ordered_json& e) { e["data_offsets"][0] = -4; }},
        {"reversed data_offsets",
         [&](ordered_json& e) {
             auto o = e["data_offsets"];
             e["data_offsets"] = {o[1], o[0]};
         }},
        {"float dimension", [&](ordered_json& e) { e["shape"] = {16.0, 64}; }},
    };
    for (const auto& [what, edit] : entries) {
        Copy c = copy_case("gqa_f32");
        const std::string path = c / "model.safetensors";
        edit_st(path, {}, [&, &edit = edit](ordered_json& h, std::string&) { edit(h[t]); });
        const std::string m = load_error(std::string("header entry of ") + t + ": " + what,
                                         ErrorCode::format, c.dir);
        CHECK_NAMES(m, path);
        CHECK_NAMES(m, "tensor " + t);
    }
}

TEST_CASE("9: data_offsets past the end of the file") {
    const std::string t = "lm_head.weight";  // the last tensor in the file
    const std::pair<const char*, std::function<void(ordered_json&, std::string&)>> edits[] = {
        {"shifted by 8 bytes",
         [&](ordered_json& h, std::string&) {
             auto& o = h[t]["data_offsets"];
             o = {o[0].get<uint64_t>() + 8, o[1].get<uint64_t>() + 8};
         }},
        {"far away",
         [&](ordered_json& h, std::string&) {
             auto& o = h[t]["data_offsets"];
             const uint64_t n = o[1].get<uint64_t>() - o[0].get<uint64_t>();
             o = {uint64_t(1) << 40, (uint64_t(1) << 40) + n};
         }},
        {"end at 2^64-1",
         [&](ordered_json& h, std::string&) { h[t]["data_offsets"][1] = UINT64_MAX; }},
        {"data section shortened by 1 byte",
         [&](ordered_json&, std::string& data) { data.pop_back(); }},
    };
    for (const auto& [what, raw] : edits) {
        Copy c = copy_case("gqa_f32");
        const std::string path = c / "model.safetensors";
        edit_st(path, {}, raw);
        const std::string m = load_error(std::string("data_offsets of ") + t + " " + what,
                                         ErrorCode::format, c.dir);
        CHECK_NAMES(m, path);
        CHECK_NAMES(m, "tensor " + t);
        CHECK_NAMES(m, "data_offsets");
    }
}

TEST_CASE("10: dtype stackllama does not support") {
    struct Case {
        std::string tensor;
        std::string dtype;
        std::function<std::string(const std::string&)> convert;  // f32 bytes -> new bytes
    };
    const Case cases[] = {
        {"model.norm.weight", "F64", f32_to_f64},
        {"model.layers.0.input_layernorm.weight", "I8",
         [](const std::string& b) { return std::string(b.size() / 4, '\1'); }},
        {"model.layers.1.self_attn.q_proj.weight", "F64", f32_to_f64},
        {"model.layers.0.mlp.up_proj.weight", "F8_E4M3",
         [](const std::string& b) { return std::string(b.size() / 4, '\x38'); }},
        {"model.embed_tokens.weight", "I32", [](const std::string& b) { return b; }},
    };
    for (const auto& cs : cases) {
        Copy c = copy_case("gqa_f32");
        const std::string path = c / "model.safetensors";
        edit_st(path, [&](StFile& f) {
            StTensor& t = f.at(cs.tensor);
            t.dtype = cs.dtype;
            t.bytes = cs.convert(t.bytes);
        });
        const std::string m =
            load_error(cs.tensor + " stored as " + cs.dtype, ErrorCode::unsupported, c.dir);
        CHECK_NAMES(m, path);
        CHECK_NAMES(m, "tensor " + cs.tensor);
        CHECK_NAMES(m, cs.dtype);
    }
    // A dtype safetensors itself does not know is a format error.
    Copy c = copy_case("gqa_f32");
    const std::string path = c / "model.safetensors";
    edit_st(path, [](StFile& f) { f.at("model.norm.weight").dtype = "Q4_0"; });
    const std::string m = load_error("model.norm.weight stored as Q4_0", ErrorCode::format, c.dir);
    CHECK_NAMES(m, path);
    CHECK_NAMES(m, "tensor model.norm.weight");
    CHECK_NAMES(m, "Q4_0");
}

TEST_CASE("11: byte count does not match dtype x shape") {
    {
        Copy c = copy_case("gqa_f32");
        const std::string path = c / "model.safetensors";
        edit_st(path, [](StFile& f) {
            auto& b = f.at("model.norm.weight").bytes;
            b.resize(b.size() - 4);
        });
        const std::string m = load_error("model.norm.weight: 252 bytes for F32 [64]",
                                         ErrorCode::format, c.dir);
        CHECK_NAMES(m, path);
        CHECK_NAMES(m, "tensor model.norm.weight");
        CHECK_NAMES(m, "252 bytes");
        CHECK_NAMES(m, "F32");
        CHECK_NAMES(m, "[64]");
        CHECK_NAMES(m, "256");
    }
    {
        // Same bytes, dtype says half the size.
        Copy c = copy_case("gqa_f32");
        const std::string path = c / "model.safetensors";
        const std::string t = "model.layers.1.mlp.down_proj.weight";
        edit_st(path, [&](StFile& f) { f.at(t).dtype = "BF16"; });
        const std::string m =
            load_error(t + ": F32 bytes labelled BF16", ErrorCode::format, c.dir);
        CHECK_NAMES(m, path);
        CHECK_NAMES(m, "tensor " + t);
        CHECK_NAMES(m, "BF16");
        CHECK_NAMES(m, "[64, 96]");
    }
    {
        // Same bytes, shape one row short.
        Copy c = copy_case("gqa_f32");
        const std::string path = c / "model.safetensors";
        const std::string t = "model.layers.0.self_attn.v_proj.weight";
        edit_st(path, [&](StFile& f) { f.at(t).shape = {15, 64}; });
        const std::string m = load_error(t + ": shape [15, 64] for [16, 64] bytes",
                                         ErrorCode::format, c.dir);
        CHECK_NAMES(m, path);
        CHECK_NAMES(m, "tensor " + t);
        CHECK_NAMES(m, "[15, 64]");
    }
}

TEST_CASE("12: tensor shape contradicts config.json") {
    struct ConfigEdit {
        const char* field;
        int value;
        const char* tensor;
        const char* stored;
        const char* implied;
    };
    const ConfigEdit config_edits[] = {
        {"hidden_size", 128, "model.embed_tokens.weight", "[320, 64]", "[320, 128]"},
        {"vocab_size", 321, "model.embed_tokens.weight", "[320, 64]", "[321, 64]"},
        {"intermediate_size", 100, "model.layers.0.mlp.gate_proj.weight", "[96, 64]",
         "[100, 64]"},
        {"num_key_value_heads", 4, "model.layers.0.self_attn.k_proj.weight", "[16, 64]",
         "[32, 64]"},
        {"num_hidden_layers", 3, "model.layers.2.", nullptr, nullptr},  // a missing layer
    };
    for (const auto& e : config_edits) {
        Copy c = copy_case("gqa_f32");
        edit_config(c, [&](ordered_json& j) { j[e.field] = e.value; });
        const std::string what =
            std::string("config.json ") + e.field + " = " + std::to_string(e.value);
        if (!e.stored) {
            const std::string m = load_error(what, ErrorCode::format, c.dir);
            CHECK_NAMES(m, "missing tensor " + std::string(e.tensor));
            CHECK_NAMES(m, c / "model.safetensors");
            continue;
        }
        const std::string m = load_error(what, ErrorCode::format, c.dir);
        CHECK_NAMES(m, "tensor " + std::string(e.tensor));
        CHECK_NAMES(m, c / "model.safetensors");
        CHECK_NAMES(m, e.stored);
        CHECK_NAMES(m, e.implied);
    }

    struct HeaderEdit {
        const char* tensor;
        ordered_json shape;  // same element count as stored
        const char* stored;
        const char* implied;
    };
    const HeaderEdit header_edits[] = {
        {"model.layers.0.self_attn.q_proj.weight", {32, 128}, "[32, 128]", "[64, 64]"},
        {"model.layers.1.mlp.down_proj.weight", {96, 64}, "[96, 64]", "[64, 96]"},  // transposed
        {"model.layers.1.post_attention_layernorm.weight", {1, 64}, "[1, 64]", "[64]"},
        {"lm_head.weight", {320 * 64}, "[20480]", "[320, 64]"},
    };
    for (const auto& e : header_edits) {
        Copy c = copy_case("gqa_f32");
        const std::string path = c / "model.safetensors";
        edit_st(path, [&](StFile& f) { f.at(e.tensor).shape = e.shape; });
        const std::string m = load_error(std::string(e.tensor) + " stored with shape " + e.stored,
                                         ErrorCode::format, c.dir);
        CHECK_NAMES(m, "tensor " + std::string(e.tensor));
        CHECK_NAMES(m, path);
        CHECK_NAMES(m, e.stored);
        CHECK_NAMES(m, e.implied);
    }
}

TEST_CASE("13: missing tensor") {
    for (const char* t : {"model.layers.1.mlp.down_proj.weight", "model.norm.weight",
                          "model.embed_tokens.weight", "model.layers.0.input_layernorm.weight"}) {
        Copy c = copy_case("gqa_f32");
        const std::string path = c / "model.safetensors";
        edit_st(path, [&](StFile& f) { REQUIRE(f.erase(t)); });
        const std::string m =
            load_error(std::string("model.safetensors without ") + t, ErrorCode::format, c.dir);
        CHECK_NAMES(m, "missing tensor " + std::string(t));
        CHECK_NAMES(m, path);
    }
    {
        // Untied model without its output head.
        Copy c = copy_case("gqa_f32");
        const std::string path = c / "model.safetensors";
        edit_st(path, [](StFile& f) { REQUIRE(f.erase("lm_head.weight")); });
        const std::string m =
            load_error("untied model without lm_head.weight", ErrorCode::format, c.dir);
        CHECK_NAMES(m, "lm_head.weight");
        CHECK_NAMES(m, path);
        CHECK_NAMES(m, "tie_word_embeddings");
    }
    {
        Copy c = copy_case("gqa_f32");
        fs::remove(c / "model.safetensors");
        const std::string m = load_error("no weight files at all", ErrorCode::io, c.dir);
        CHECK_NAMES(m, c.dir);
        CHECK_NAMES(m, "model.safetensors");
    }
}

// =============================================================================================
// 14, 15: sharded checkpoints

// =============================================================================================
// 14, 15: sharded checkpoints

TEST_CASE("14: missing shard") {
    const std::string shards[] = {"model-00001-of-00003.safetensors",
                                  "model-00002-of-00003.safetensors",
                                  "model-00003-of-00003.safetensors"};
    for (const auto& shard : shards) {
        Copy c = copy_case("sharded_f32");
        REQUIRE(fs::is_regular_file(c / shard));
        fs::remove(c / shard);
        const std::string m =
            load_error("sharded checkpoint without " + shard, ErrorCode::io, c.dir);
        CHECK_NAMES(m, c / shard);
        CHECK_NAMES(m, "model.safetensors.index.json");
    }
    {
        // A damaged shard is named too.
        Copy c = copy_case("sharded_f32");
        const std::string shard = c / "model-00002-of-00003.safetensors";
        const std::string b = testing_support::read_file(shard);
        testing_support::write_file(shard, b.substr(0, b.size() / 2));
        const std::string m = load_error("shard 2 truncated to half", ErrorCode::format, c.dir);
        CHECK_NAMES(m, shard);
    }
}

TEST_CASE("15: index names a tensor its shard lacks") {
    const std::string index_name = "model.safetensors.index.json";
    {
        // The tensor is gone from its shard, the index still maps it there.
        Copy c = copy_case("sharded_f32");
        const std::string t = "model.layers.1.self_attn.o_proj.weight";
        const std::string shard = index_shard_of(c, t);
        edit_st(c / shard, [&](StFile& f) { REQUIRE(f.erase(t)); });
        const std::string m =
            load_error(t + " removed from " + shard + " but listed in the index",
                       ErrorCode::format, c.dir);
        CHECK_NAMES(m, c / index_name);
        CHECK_NAMES(m, "tensor " + t);
        CHECK_NAMES(m, shard);
    }
    {
        // The index lists a tensor that exists nowhere.
        Copy c = copy_case("sharded_f32");
        const std::string t = "model.layers.0.self_attn.rotary_emb.inv_freq";
        const std::string shard = "model-00001-of-00003.safetensors";
        ordered_json idx = read_json(c / index_name);
        idx["weight_map"][t] = shard;
        write_json(c / index_name, idx);
        const std::string m =
            load_error("index lists " + t + " in " + shard, ErrorCode::format, c.dir);
        CHECK_NAMES(m, c / index_name);
        CHECK_NAMES(m, "tensor " + t);
        CHECK_NAMES(m, shard);
    }
    {
        // The same tensor in two shards.
        Copy c = copy_case("sharded_f32");
        const std::string t = "model.embed_tokens.weight";
        const std::string from = index_shard_of(c, t);
        const std::string to = "model-00003-of-00003.safetensors";
        REQUIRE(from != to);
        StTensor copy = parse_st(c / from).at(t);
        edit_st(c / to, [&](StFile& f) { f.tensors.push_back(copy); });
        const std::string m =
            load_error(t + " stored in " + from + " and " + to, ErrorCode::format, c.dir);
        CHECK_NAMES(m, "tensor " + t);
        CHECK_NAMES(m, c / from);
        CHECK_NAMES(m, c / to);
    }
    // A broken index.
    const std::pair<const char*, std::function<void(ordered_json&)>> index_edits[] = {
        {"no weight_map", [](ordered_json& j) { j.erase("weight_map"); }},
        {"weight_map is a list", [](ordered_json& j) { j["weight_map"] = {"a", "b"}; }},
        {"a shard name that is a number",
         [](ordered_json& j) { j["weight_map"]["model.norm.weight"] = 3; }},
        {"a shard name outside the folder",
         [](ordered_json& j) { j["weight_map"]["model.norm.weight"] = "../model.safetensors"; }},
    };
    for (const auto& [what, edit] : index_edits) {
        Copy c = copy_case("sharded_f32");
        ordered_json idx = read_json(c / index_name);
        edit(idx);
        write_json(c / index_name, idx);
        const std::string m =
            load_error(std::string(index_name) + ": " + what, ErrorCode::format, c.dir);
        CHECK_NAMES(m, c / index_name);
    }
    {
        Copy c = copy_case("sharded_f32");
        testing_support::write_file(c / index_name, "{\"weight_map\": {");
        const std::string m = load_error(index_name + " cut short", ErrorCode::format, c.dir);
        CHECK_NAMES(m, c / index_name);
        CHECK_NAMES(m, "JSON");
    }
}

// =============================================================================================
// 16: tokenizer

TEST_CASE("16: missing tokenizer.model when load_tokenizer is true") {
    ModelParams with_tokenizer;
    with_tokenizer.n_threads = 2;
    REQUIRE(with_tokenizer.load_tokenizer);
    {
        // The random fixtures carry no tokenizer at all.
        Copy c = copy_case("gqa_f32");
        const std::string m = load_error("fixture without tokenizer.model, load_tokenizer=true",
                                         ErrorCode::io, c.dir, with_tokenizer);
        CHECK_NAMES(m, "tokenizer.model");
        CHECK_NAMES(m, c.dir);
        CHECK(load_weights(c.dir));  // and weights only is fine
    }
    {
        // A model loaded without its tokenizer cannot take text.
        auto model = load_weights(fixture_case("gqa_f32"));
        CHECK_FALSE(model->has_tokenizer());
        expect_error("Model::tokenizer() without a tokenizer", ErrorCode::invalid_argument,
                     [&] { model->tokenizer(); });
        Generator g(model);
        const std::string m = expect_error("generate(text) without a tokenizer",
                                           ErrorCode::invalid_argument,
                                           [&] { g.generate("Once upon a time", greedy()); });
        CHECK_NAMES(m, fixture_case("gqa_f32"));
        CHECK(g.n_past() == 0);
    }

    const std::string data = testing_support::shared_data_or_skip("bad tokenizer inputs");
    if (data.empty()) return;
    const std::string stories = data + "/stories260K-hf";
    REQUIRE(fs::is_regular_file(stories + "/tokenizer.model"));
    {
        Copy c(stories);
        CHECK(Model::load(c.dir, with_tokenizer)->has_tokenizer());  // the copy is sound
        fs::remove(c / "tokenizer.model");
        const std::string m = load_error("stories260K-hf without tokenizer.model", ErrorCode::io,
                                         c.dir, with_tokenizer);
        CHECK_NAMES(m, "tokenizer.model");
        CHECK_NAMES(m, c.dir);
    }
    {
        Copy c(stories);
        const std::string path = c / "tokenizer.model";
        const std::string b = testing_support::read_file(path);
        for (size_t size : {size_t(0), size_t(7), b.size() / 2}) {
            testing_support::write_file(path, b.substr(0, size));
            const std::string m =
                load_error("stories260K-hf tokenizer.model cut to " + std::to_string(size) +
                               " bytes",
                           ErrorCode::format, c.dir, with_tokenizer);
            CHECK_NAMES(m, "tokenizer.model");
            CHECK_NAMES(m, c.dir);
        }
    }
    {
        // 512 pieces for a model with vocab_size 320.
        Copy c = copy_case("gqa_f32");
        fs::copy_file(stories + "/tokenizer.model", c / "tokenizer.model");
        const std::string m = load_error("a 512-piece tokenizer.model in a 320-token model",
                                         ErrorCode::format, c.dir, with_tokenizer);
        CHECK_NAMES(m, c / "tokenizer.model");
        CHECK_NAMES(m, "vocab_size");
        CHECK_NAMES(m, "512");
        CHECK_NAMES(m, "320");
    }
}

// =============================================================================================
// 17, 18, 20: Generator

TEST_CASE("17: prompt longer than the context") {
    auto model = load_weights(fixture_case("gqa_f32"));
    GeneratorParams gp;
    gp.n_ctx = 16;
    const std::vector<int32_t> too_long = some_ids(20);
    const std::vector<int32_t> ok = some_ids(5);
    const std::vector<float> expected = fresh_logits(model, ok);

    {
        Generator g(model, gp);
        REQUIRE(g.n_ctx() == 16);
        const std::string m = expect_error("eval of 20 tokens with n_ctx 16",
                                           ErrorCode::out_of_range, [&] { g.eval(too_long); });
        CHECK_NAMES(m, "20");
        CHECK_NAMES(m, "n_ctx = 16");
        CHECK(g.n_past() == 0);
        CHECK(g.tokens().empty());
        check_same_logits(last_row(g.eval(ok)), expected);
        CHECK(g.n_past() == 5);
    }
    {
        Generator g(model, gp);
        GenerationConfig gc = greedy();
        gc.max_new_tokens = 4;
        const std::string m =
            expect_error("generate with a 20-token prompt and n_ctx 16", ErrorCode::out_of_range,
                         [&] { g.generate(too_long, gc); });
        CHECK_NAMES(m, "20");
        CHECK_NAMES(m, "n_ctx = 16");
        CHECK(g.n_past() == 0);
        CHECK(g.tokens().empty());
        check_same_logits(last_row(g.eval(ok)), expected);
        CHECK(g.n_past() == 5);
    }
    {
        // Overflow by appending to a partly filled context: the sequence is kept as it was.
        Generator g(model, gp);
        g.eval(ok);
        const std::vector<int32_t> before = g.tokens();
        const std::string m = expect_error("eval of 12 tokens after 5 with n_ctx 16",
                                           ErrorCode::out_of_range,
                                           [&] { g.eval(some_ids(12)); });
        CHECK_NAMES(m, "n_ctx = 16");
        CHECK(g.n_past() == 5);
        CHECK(g.tokens() == before);
        GenerationConfig gc = greedy();
        gc.max_new_tokens = 2;
        expect_error("generate with 12 more tokens after 5 with n_ctx 16",
                     ErrorCode::out_of_range, [&] { g.generate(some_ids(12), gc); });
        CHECK(g.n_past() == 5);
        CHECK(g.tokens() == before);
        // Exactly filling the context still works.
        g.eval(some_ids(11));
        CHECK(g.n_past() == 16);
        expect_error("eval of 1 token into a full context", ErrorCode::out_of_range,
                     [&] { g.eval({1}); });
        CHECK(g.n_past() == 16);
    }
}

TEST_CASE("18: token id outside the vocabulary") {
    auto model = load_weights(fixture_case("gqa_f32"));
    GeneratorParams gp;
    gp.n_ctx = 16;
    const std::vector<int32_t> ok = some_ids(5);
    const std::vector<float> expected = fresh_logits(model, ok);
    for (int32_t bad : {kVocab, kVocab + 1000, -1, INT32_MIN, INT32_MAX}) {
        Generator g(model, gp);
        const std::string m =
            expect_error("eval with token id " + std::to_string(bad), ErrorCode::invalid_argument,
                         [&] { g.eval({1, 5, bad, 7}); });
        CHECK_NAMES(m, "token id " + std::to_string(bad));
        CHECK_NAMES(m, "index 2");
        CHECK_NAMES(m, std::to_string(kVocab));
        CHECK(g.n_past() == 0);
        GenerationConfig gc = greedy();
        gc.max_new_tokens = 3;
        const std::string m2 = expect_error("generate with token id " + std::to_string(bad),
                                            ErrorCode::invalid_argument,
                                            [&] { g.generate({bad}, gc); });
        CHECK_NAMES(m2, "token id " + std::to_string(bad));
        CHECK(g.n_past() == 0);
        check_same_logits(last_row(g.eval(ok)), expected);
    }
    {
        // After generate() the last new token waits outside the cache; a refused eval must keep
        // it, and name the caller's index of the bad id.
        Generator g(model, gp);
        GenerationConfig gc = greedy();
        gc.max_new_tokens = 2;
        gc.use_model_eos = false;
        auto r = g.generate(ok, gc);
        REQUIRE(r.tokens.size() == 2);
        const int n_past = g.n_past();
        const std::vector<int32_t> before = g.tokens();
        const std::string m = expect_error("eval after generate() with a bad id at index 1",
                                           ErrorCode::invalid_argument,
                                           [&] { g.eval({3, kVocab}); });
        CHECK_NAMES(m, "token id " + std::to_string(kVocab));
        CHECK(g.n_past() == n_past);
        CHECK(g.tokens() == before);
        // The pending token still enters the cache with the next valid eval.
        g.eval({3});
        CHECK(g.n_past() == n_past + 2);
        CHECK(g.tokens()[size_t(n_past)] == r.tokens.back());
    }
    {
        Generator g(model, gp);
        const std::string m = expect_error("eval of no tokens", ErrorCode::invalid_argument,
                                           [&] { g.eval({}); });
        CHECK(g.n_past() == 0);
        expect_error("generate with an empty prompt on an empty sequence",
                     ErrorCode::invalid_argument, [&] { g.generate(std::vector<int32_t>{}, greedy()); });
        GenerationConfig gc = greedy();
        gc.max_new_tokens = -1;
        const std::string m2 = expect_error("max_new_tokens -1", ErrorCode::invalid_argument,
                                            [&] { g.generate(ok, gc); });
        CHECK_NAMES(m2, "max_new_tokens");
        gc.max_new_tokens = 2;
        gc.do_sample = true;
        gc.temperature = -1.0f;
        const std::string m3 = expect_error("temperature -1", ErrorCode::invalid_argument,
                                            [&] { g.generate(ok, gc); });
        CHECK_NAMES(m3, "temperature");
        gc.temperature = std::nanf("");
        expect_error("temperature NaN", ErrorCode::invalid_argument, [&] { g.generate(ok, gc); });
        CHECK(g.n_past() == 0);
    }
}

// After generate(), the token it returned last waits outside the cache and enters it with the
// next eval(); the messages of a refused eval still speak of the caller's tokens.
TEST_CASE("18b: messages after generate() count the caller's tokens") {
    auto model = load_weights(fixture_case("gqa_f32"));
    GeneratorParams gp;
    gp.n_ctx = 16;
    Generator g(model, gp);
    GenerationConfig gc = greedy();
    gc.max_new_tokens = 2;
    gc.use_model_eos = false;
    g.generate(some_ids(5), gc);
    REQUIRE(g.n_past() == 6);
    const std::string m = expect_error("eval({3, 320}) after generate()",
                                       ErrorCode::invalid_argument, [&] { g.eval({3, kVocab}); });
    CHECK_NAMES(m, "at index 1");
    const std::string m2 = expect_error("eval of 10 tokens after generate() filled 6 of 16",
                                        ErrorCode::out_of_range, [&] { g.eval(some_ids(10)); });
    CHECK_NAMES(m2, "+ 10 new");
}

TEST_CASE("20: n_ctx larger than max_position_embeddings") {
    auto model = load_weights(fixture_case("gqa_f32"));
    REQUIRE(model->config().max_position_embeddings == kMaxPos);
    {
        GeneratorParams gp;
        gp.n_ctx = kMaxPos + 1;
        const std::string m = expect_error("n_ctx 513 with max_position_embeddings 512",
                                           ErrorCode::invalid_argument,
                                           [&] { Generator g(model, gp); });
        CHECK_NAMES(m, "n_ctx 513");
        CHECK_NAMES(m, "max_position_embeddings 512");
    }
    {
        GeneratorParams gp;
        gp.n_ctx = -1;
        const std::string m = expect_error("n_ctx -1", ErrorCode::invalid_argument,
                                           [&] { Generator g(model, gp); });
        CHECK_NAMES(m, "n_ctx");
        CHECK_NAMES(m, "-1");
    }
    {
        const std::string m = expect_error("Generator with a null model",
                                           ErrorCode::invalid_argument,
                                           [&] { Generator g(nullptr); });
        CHECK_NAMES(m, "null");
    }
    {
        GeneratorParams gp;
        gp.n_ctx = kMaxPos;  // the limit itself is fine
        Generator g(model, gp);
        CHECK(g.n_ctx() == kMaxPos);
    }
}

// =============================================================================================
// 19: the model path itself

TEST_CASE("19: model path that does not exist, or is a file") {
    TempDir tmp;
    {
        const std::string path = tmp / "no-such-model";
        const std::string m = load_error("a path that does not exist", ErrorCode::io, path);
        CHECK_NAMES(m, path);
        CHECK_NAMES(m, "does not exist");
    }
    // A regular file is read as a stackllama native model file (.sllm, docs/NATIVE_FORMAT.md);
    // one that is not such a file is a format error naming it.
    {
        const std::string path = fixture_case("gqa_f32") + "/model.safetensors";
        const std::string m =
            load_error("a path that is a regular file (model.safetensors)", ErrorCode::format,
                       path);
        CHECK_NAMES(m, path);
    }
    const std::pair<const char*, std::string> files[] = {
        {"an empty file", ""},
        {"a 5-byte file", "SLLMO"},
        {"a text file", "{\"hidden_size\": 64}\n"},
        {"1 KiB of 0xff", std::string(1024, '\xff')},
    };
    for (const auto& [what, bytes] : files) {
        const std::string path = tmp / "model.sllm";
        testing_support::write_file(path, bytes);
        const std::string m =
            load_error(std::string("a path that is ") + what, ErrorCode::format, path);
        CHECK_NAMES(m, path);
    }
    // With the native magic but garbage after it: refused (a bad version is `unsupported`, a
    // damaged header `format`), never a crash.
    const std::pair<const char*, std::string> magic_files[] = {
        {"the native magic and 56 zero bytes", std::string("SLLMODEL") + std::string(56, '\0')},
        {"the native magic and 4 KiB of 0xff",
         std::string("SLLMODEL") + std::string(4096, '\xff')},
    };
    for (const auto& [what, bytes] : magic_files) {
        const std::string path = tmp / "model.sllm";
        testing_support::write_file(path, bytes);
        const std::string m = load_error(std::string("a path that is ") + what,
                                         {ErrorCode::format, ErrorCode::unsupported}, path);
        CHECK_NAMES(m, path);
    }
    {
        const std::string path = fixture_case("gqa_f32") + "/config.json/";
        expect_error("a path through a regular file", ErrorCode::io, [&] {
            Model::load(path, weights_only());
        });
    }
    {
        const std::string m = load_error("an empty path", ErrorCode::invalid_argument, "");
        CHECK_NAMES(m, "empty");
    }
    {
        fs::create_directories(tmp / "empty-dir");
        const std::string m = load_error("an empty directory", ErrorCode::io, tmp / "empty-dir");
        CHECK_NAMES(m, tmp / "empty-dir");
        CHECK_NAMES(m, "config.json");
    }
    {
        ModelParams p = weights_only();
        p.n_threads = -1;
        const std::string m = load_error("n_threads -1", ErrorCode::invalid_argument,
                                         fixture_case("gqa_f32"), p);
        CHECK_NAMES(m, "n_threads");
        p.n_threads = 1 << 20;  // a million threads: refused before any is started
        const std::string big = load_error("n_threads 1048576", ErrorCode::invalid_argument,
                                           fixture_case("gqa_f32"), p);
        CHECK_NAMES(big, "n_threads");
        CHECK_NAMES(big, "1048576");
    }
    for (int n : {-1, 1025}) {  // a WorkerPool of as many threads
        CAPTURE(n);
        try {
            stackllama::WorkerPool pool(n);
            FAIL("WorkerPool(" << n << ") was made");
        } catch (const stackllama::Error& e) {
            CHECK(e.code() == ErrorCode::invalid_argument);
            CHECK_NAMES(std::string(e.what()), "n_threads");
            CHECK_NAMES(std::string(e.what()), std::to_string(n));
        }
    }
}

// =============================================================================================
// 23: absurd dimensions

TEST_CASE("23: negative or absurd dimension in a safetensors header") {
    const std::string t = "model.layers.0.self_attn.q_proj.weight";
    const std::pair<ordered_json, const char*> shapes[] = {
        {{-64, -64}, "not a non-negative integer"},
        {{64, -1}, "not a non-negative integer"},
        {{uint64_t(1) << 62, 64}, "overflows"},
        {{uint64_t(1) << 62}, "overflows"},
        {{UINT64_MAX, 1}, "overflows"},
        {{uint64_t(1) << 40, uint64_t(1) << 40, uint64_t(1) << 40}, "overflows"},
        {{uint64_t(1) << 31, uint64_t(1) << 31, 16}, "overflows"},
    };
    for (const auto& [shape, why] : shapes) {
        Copy c = copy_case("gqa_f32");
        const std::string path = c / "model.safetensors";
        edit_st(path, [&, &shape = shape](StFile& f) { f.at(t).shape = shape; });
        const std::string m =
            load_error(t + " with shape " + shape.dump(), ErrorCode::format, c.dir);
        CHECK_NAMES(m, path);
        CHECK_NAMES(m, "tensor " + t);
        CHECK_NAMES(m, shape.dump());
        CHECK_NAMES(m, why);
    }
    {
        // A zero dimension is legal safetensors but contradicts the config.
        Copy c = copy_case("gqa_f32");
        const std::string path = c / "model.safetensors";
        edit_st(path, [&](StFile& f) {
            f.at(t).shape = {0, 64};
            f.at(t).bytes.clear();
        });
        const std::string m = load_error(t + " with shape [0, 64]", ErrorCode::format, c.dir);
        CHECK_NAMES(m, "tensor " + t);
        CHECK_NAMES(m, "[0, 64]");
        CHECK_NAMES(m, "[64, 64]");
    }
}
