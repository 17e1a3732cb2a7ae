// Tokenizer and StreamDecoder against python3-sentencepiece (reference written by the CTest
// fixture step tests/tokenizer/sp_reference.py) and the llama2.c stories260K vectors.
#include "stackllama/tokenizer.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "stackllama/error.hpp"
#include "test_support.hpp"

using stackllama::Error;
using stackllama::ErrorCode;
using stackllama::StreamDecoder;
using stackllama::Tokenizer;
namespace ts = testing_support;
using json = nlohmann::json;

namespace {

// The tokenizers the fixture step writes references for: name and folder under shared data.
const char* const kTokenizers[] = {"llama-tokenizer", "stories260K-hf"};

// Strict UTF-8 check (RFC 3629), written independently of the library's.
bool valid_utf8(const std::string& s) {
    size_t i = 0;
    const size_t n = s.size();
    while (i < n) {
        const auto c = static_cast<unsigned char>(s[i]);
        uint32_t cp = 0;
        size_t len = 0;
        if (c < 0x80) {
            ++i;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            len = 2;
            cp = c & 0x1F;
        } else if ((c & 0xF0) == 0xE0) {
            len = 3;
            cp = c & 0x0F;
        } else if ((c & 0xF8) == 0xF0) {
            len = 4;
            cp = c & 0x07;
        } else {
            return false;
        }
        if (i + len > n) return false;
        for (size_t k = 1; k < len; ++k) {
            const auto cc = static_cast<unsigned char>(s[i + k]);
            if ((cc & 0xC0) != 0x80) return false;
            cp = (cp << 6) | (cc & 0x3F);
        }
        static const uint32_t kMin[5] = {0, 0, 0x80, 0x800, 0x10000};
        if (cp < kMin[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
        i += len;
    }
    return true;
}

std::string shown(const std::string& s) {
    std::string out = s.size() > 60 ? s.substr(0, 60) + "..." : s;
    return "\"" + out + "\" (" + std::to_string(s.size()) + " bytes)";
}

// The fixture's reference for one tokenizer, or null JSON (with a SKIP message) when there is no
// shared data. A missing reference while shared data exists is a failure: the fixture step
// should have written it.
json load_reference(const std::string& shared, const std::string& name) {
    const std::string dir = ts::fixture_dir() + "/tokenizer";
    const std::string status_path = dir + "/status.json";
    REQUIRE_MESSAGE(
        ts::exists(status_path),
        "missing " << status_path << ": run through ctest so that fixtures_tokenizer runs first");
    const json status = json::parse(ts::read_file(status_path));
    if (!status.value("available", false)) {
        MESSAGE("SKIP: python reference unavailable: " << status.value("reason", "?"));
        return json();
    }
    const std::string path = dir + "/" + name + ".json";
    REQUIRE_MESSAGE(ts::exists(path),
                    "missing reference " << path << " although " << shared << " exists");
    return json::parse(ts::read_file(path));
}

struct StreamResult {
    std::string text;
    std::vector<std::string> pieces;
};

StreamResult stream(const Tokenizer& tok, const std::vector<int32_t>& ids, bool skip_special) {
    StreamDecoder dec(tok, skip_special);
    StreamResult r;
    for (int32_t id : ids) {
        r.pieces.push_back(dec.push(id));
        r.text += r.pieces.back();
    }
    r.pieces.push_back(dec.flush());
    r.text += r.pieces.back();
    return r;
}

// Streams ids and checks the concatenation against decode() and every piece for valid UTF-8.
void check_stream(const Tokenizer& tok, const std::vector<int32_t>& ids, bool skip_special) {
    const StreamResult r = stream(tok, ids, skip_special);
    const std::string want = tok.decode(ids, skip_special);
    CHECK_MESSAGE(r.text == want, "stream " << shown(r.text) << " != decode " << shown(want)
                                            << " (skip_special=" << skip_special << ")");
    for (size_t i = 0; i < r.pieces.size(); ++i) {
        CHECK_MESSAGE(valid_utf8(r.pieces[i]),
                      "piece " << i << " is not valid UTF-8: " << shown(r.pieces[i]));
    }
}

template <class F>
Error expect_error(F&& f) {
    try {
        f();
    } catch (const Error& e) {
        return e;
    }
    FAIL("no stackllama::Error was thrown");
    return Error(ErrorCode::internal, "unreachable");
}

bool contains(const std::string& s, const std::string& part) {
    return s.find(part) != std::string::npos;
}

// A tokenizer folder in a TempDir: the stories260K model plus the given config (none if empty).
void make_dir(const ts::TempDir& tmp, const std::string& shared, const std::string& config) {
    ts::write_file(tmp / "tokenizer.model",
                   ts::read_file(shared + "/stories260K-hf/tokenizer.model"));
    if (!config.empty()) ts::write_file(tmp / "tokenizer_config.json", config);
}

std::vector<int32_t> read_ids(const std::string& path) {
    std::istringstream in(ts::read_file(path));
    std::vector<int32_t> ids;
    int32_t id;
    while (in >> id) ids.push_back(id);
    return ids;
}

int32_t byte_id(const Tokenizer& tok, unsigned b) {
    char piece[8];
    std::snprintf(piece, sizeof piece, "<0x%02X>", b);
    const int32_t id = tok.piece_to_id(piece);
    REQUIRE(id >= 0);
    return id;
}

}  // namespace

TEST_CASE("encode matches python sentencepiece on the corpus") {
    const std::string shared = ts::shared_data_or_skip("tokenizer corpus vs python");
    if (shared.empty()) return;
    for (const std::string name : kTokenizers) {
        const json ref = load_reference(shared, name);
        if (ref.is_null()) return;
        INFO("tokenizer " << name);
        const Tokenizer tok = Tokenizer::load(shared + "/" + name);
        CHECK(tok.n_vocab() == ref["n_vocab"].get<int32_t>());
        CHECK(tok.bos_id() == ref["bos_id"].get<int32_t>());
        CHECK(tok.eos_id() == ref["eos_id"].get<int32_t>());
        CHECK(tok.unk_id() == ref["unk_id"].get<int32_t>());
        CHECK(tok.pad_id() == ref["pad_id"].get<int32_t>());
        const bool add_bos = ref["config"]["add_bos_token"].get<bool>();
        const bool add_eos = ref["config"]["add_eos_token"].get<bool>();
        CHECK(tok.add_bos() == add_bos);
        CHECK(tok.add_eos() == add_eos);

        const auto& cases = ref["cases"];
        REQUIRE(cases.size() >= 220);
        size_t mismatches = 0;
        for (size_t i = 0; i < cases.size(); ++i) {
            const std::string text = cases[i]["text"].get<std::string>();
            const auto want = cases[i]["ids"].get<std::vector<int32_t>>();
            const auto got = tok.encode(text, false);
            if (got != want) ++mismatches;
            CHECK_MESSAGE(got == want, name << " case " << i << " " << shown(text));

            std::vector<int32_t> special;
            if (add_bos) special.push_back(tok.bos_id());
            special.insert(special.end(), want.begin(), want.end());
            if (add_eos) special.push_back(tok.eos_id());
            CHECK_MESSAGE(tok.encode(text, true) == special,
                          name << " case " << i << " with special tokens");
        }
        MESSAGE(name << ": " << cases.size() - mismatches << "/" << cases.size()
                     << " corpus strings encode exactly as python sentencepiece");
    }
}

TEST_CASE("decode matches python sentencepiece and round-trips where it does") {
    const std::string shared = ts::shared_data_or_skip("tokenizer decode vs python");
    if (shared.empty()) return;
    for (const std::string name : kTokenizers) {
        const json ref = load_reference(shared, name);
        if (ref.is_null()) return;
        INFO("tokenizer " << name);
        const Tokenizer tok = Tokenizer::load(shared + "/" + name);
        size_t roundtrips = 0;
        for (size_t i = 0; i < ref["cases"].size(); ++i) {
            const auto& c = ref["cases"][i];
            const std::string text = c["text"].get<std::string>();
            const std::string want = c["decoded"].get<std::string>();
            const auto ids = c["ids"].get<std::vector<int32_t>>();
            CAPTURE(i);
            CHECK_MESSAGE(tok.decode(ids, false) == want, shown(text));
            CHECK(tok.decode(ids, true) == want);
            // BOS/EOS added by encode are invisible either way.
            CHECK(tok.decode(tok.encode(text, true), true) == want);
            CHECK(tok.decode(tok.encode(text, true), false) == want);
            if (c["roundtrip"].get<bool>()) {
                ++roundtrips;
                CHECK_MESSAGE(tok.decode(tok.encode(text, false)) == text, shown(text));
            }
        }
        MESSAGE(name << ": " << roundtrips << " corpus strings round-trip exactly");
    }
}

TEST_CASE("stream decoding equals decode for every corpus string") {
    const std::string shared = ts::shared_data_or_skip("tokenizer streaming");
    if (shared.empty()) return;
    for (const std::string name : kTokenizers) {
        const json ref = load_reference(shared, name);
        if (ref.is_null()) return;
        INFO("tokenizer " << name);
        const Tokenizer tok = Tokenizer::load(shared + "/" + name);
        for (size_t i = 0; i < ref["cases"].size(); ++i) {
            const std::string text = ref["cases"][i]["text"].get<std::string>();
            CAPTURE(i);
            for (bool special : {false, true}) {
                const auto ids = tok.encode(text, special);
                check_stream(tok, ids, true);
                check_stream(tok, ids, false);
            }
        }
    }
}

TEST_CASE("stream decoding across BOS/EOS between texts") {
    const std::string shared = ts::shared_data_or_skip("tokenizer streaming with specials");
    if (shared.empty()) return;
    for (const std::string name : kTokenizers) {
        INFO("tokenizer " << name);
        const Tokenizer tok = Tokenizer::load(shared + "/" + name);
        const std::vector<std::string> texts = {"Question: What is 2+2?\n\nAnswer: ",
                                                "4",
                                                " It is four.",
                                                "漢字 and 🦙 bytes",
                                                " leading",
                                                "",
                                                "  spaces  ",
                                                "\n"};
        std::vector<int32_t> ids;
        std::vector<int32_t> plain;
        for (const auto& t : texts) {
            const auto e = tok.encode(t, false);
            ids.push_back(tok.bos_id());
            ids.insert(ids.end(), e.begin(), e.end());
            ids.push_back(tok.eos_id());
            plain.insert(plain.end(), e.begin(), e.end());
        }
        check_stream(tok, ids, true);
        check_stream(tok, ids, false);
        CHECK(stream(tok, ids, true).text == tok.decode(plain));
        // With skip_special the control ids produce no output at all.
        StreamDecoder dec(tok, true);
        CHECK(dec.push(tok.bos_id()).empty());
        CHECK(dec.push(tok.eos_id()).empty());
        CHECK(dec.flush().empty());
    }
}

TEST_CASE("stream decoding holds back incomplete byte-fallback UTF-8") {
    const std::string shared = ts::shared_data_or_skip("tokenizer byte fallback streaming");
    if (shared.empty()) return;
    const Tokenizer tok = Tokenizer::load(shared + "/llama-tokenizer");
    const int32_t e2 = byte_id(tok, 0xE2), x82 = byte_id(tok, 0x82), xac = byte_id(tok, 0xAC);

    SUBCASE("a euro sign one byte at a time") {
        StreamDecoder dec(tok);
        CHECK(dec.push(e2).empty());
        CHECK(dec.push(x82).empty());
        CHECK(dec.push(xac) == "\xE2\x82\xAC");
        CHECK(dec.flush().empty());
    }
    SUBCASE("a llama emoji encoded as four byte pieces after a space") {
        const auto ids = tok.encode("a 🦙 b", false);
        int n_bytes = 0;
        for (int32_t id : ids) n_bytes += tok.is_byte(id);
        CHECK(n_bytes == 4);
        const StreamResult r = stream(tok, ids, true);
        CHECK(r.text == "a 🦙 b");
        for (const auto& p : r.pieces) CHECK(valid_utf8(p));
    }
    SUBCASE("unfinished bytes come out as U+FFFD at flush, as decode renders them") {
        StreamDecoder dec(tok);
        CHECK(dec.push(e2).empty());
        CHECK(dec.push(x82).empty());
        CHECK(dec.flush() == "\xEF\xBF\xBD\xEF\xBF\xBD");
        CHECK(tok.decode({e2, x82}) == "\xEF\xBF\xBD\xEF\xBF\xBD");
    }
    SUBCASE("an EOS between byte pieces") {
        const std::vector<int32_t> ids = {e2, tok.eos_id(), x82, xac};
        // Skipped, the EOS does not split the character; kept, it ends the byte run (as
        // python's sp.decode, which gives three U+FFFD).
        CHECK(tok.decode(ids, true) == "\xE2\x82\xAC");
        CHECK(tok.decode(ids, false) == "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");
        check_stream(tok, ids, true);
        check_stream(tok, ids, false);
    }
    SUBCASE("invalid sequences are emitted at once when nothing can complete them") {
        StreamDecoder dec(tok);
        CHECK(dec.push(byte_id(tok, 0x80)) == "\xEF\xBF\xBD");  // lone continuation byte
        CHECK(dec.push(byte_id(tok, 0xED)).empty());            // may start a character
        CHECK(dec.push(byte_id(tok, 0xA0)) == "\xEF\xBF\xBD\xEF\xBF\xBD");  // surrogate: never
        CHECK(dec.flush().empty());
    }
}

TEST_CASE("stream decoding equals decode for random id sequences") {
    const std::string shared = ts::shared_data_or_skip("tokenizer random streaming");
    if (shared.empty()) return;
    for (const std::string name : kTokenizers) {
        INFO("tokenizer " << name);
        const Tokenizer tok = Tokenizer::load(shared + "/" + name);
        std::vector<int32_t> bytes, controls, words, spaces;
        for (int32_t id = 0; id < tok.n_vocab(); ++id) {
            if (tok.is_byte(id)) {
                bytes.push_back(id);
            } else if (tok.is_control(id) || id == tok.unk_id()) {
                controls.push_back(id);
            } else {
                words.push_back(id);
                // Pieces made only of "▁": they render as nothing at the start of a text, the
                // case where the leading-space rule is easiest to get wrong.
                const std::string p = tok.id_to_piece(id);
                bool all_space = !p.empty() && p.size() % 3 == 0;
                for (size_t k = 0; all_space && k < p.size(); k += 3) {
                    all_space = p.compare(k, 3, "\xE2\x96\x81") == 0;
                }
                if (all_space) spaces.push_back(id);
            }
        }
        REQUIRE(!spaces.empty());
        std::mt19937 rng(1234);
        auto pick = [&](const std::vector<int32_t>& v) {
            return v[std::uniform_int_distribution<size_t>(0, v.size() - 1)(rng)];
        };
        for (int round = 0; round < 1000; ++round) {
            CAPTURE(round);
            std::vector<int32_t> ids;
            const int len = std::uniform_int_distribution<int>(0, 24)(rng);
            for (int k = 0; k < len; ++k) {
                const int kind = std::uniform_int_distribution<int>(0, 11)(rng);
                if (kind < 4) {
                    ids.push_back(pick(words));
                } else if (kind < 6) {
                    ids.push_back(pick(bytes));
                } else if (kind < 8) {
                    ids.push_back(pick(spaces));
                } else if (kind < 9) {
                    ids.push_back(pick(controls));
                } else {
                    // A UTF-8 character as byte pieces, sometimes truncated.
                    const char* chars[] = {"\xE2\x82\xAC", "\xF0\x9F\xA6\x99", "\xC3\xA9",
                                           "\xE6\xBC\xA2"};
                    const std::string ch = chars[std::uniform_int_distribution<int>(0, 3)(rng)];
                    const size_t keep = std::uniform_int_distribution<size_t>(1, ch.size())(rng);
                    for (size_t b = 0; b < keep; ++b) {
                        ids.push_back(byte_id(tok, static_cast<unsigned char>(ch[b])));
                    }
                }
            }
            check_stream(tok, ids, true);
            check_stream(tok, ids, false);
        }
    }
}

TEST_CASE("stories260K: llama2.c encode vectors") {
    const std::string shared = ts::shared_data_or_skip("tok512 encode vectors");
    if (shared.empty()) return;
    const json vectors =
        json::parse(ts::read_file(shared + "/stories260K/tok512_encode_vectors.json"));
    const Tokenizer tok = Tokenizer::load(shared + "/stories260K-hf");
    // The same model file as stories260K/tok512.model, loaded from memory.
    const Tokenizer tok_mem = Tokenizer::from_serialized(
        ts::read_file(shared + "/stories260K/tok512.model"), "", "tok512.model");
    size_t n = 0;
    for (const auto& c : vectors["cases"]) {
        const std::string text = c["text"].get<std::string>();
        CAPTURE(text);
        const auto want = c["sentencepiece_ids_with_bos"].get<std::vector<int32_t>>();
        CHECK(tok.encode(text, true) == want);
        CHECK(tok_mem.encode(text, true) == want);
        if (c["agree"].get<bool>()) {
            CHECK(tok.encode(text, true) == c["runc_ids_with_bos"].get<std::vector<int32_t>>());
        }
        ++n;
    }
    CHECK(n == 21);
}

TEST_CASE("stories260K: the greedy 200-token ids decode and stream to the expected text") {
    const std::string shared = ts::shared_data_or_skip("expected greedy text");
    if (shared.empty()) return;
    const Tokenizer tok = Tokenizer::load(shared + "/stories260K-hf");
    const auto ids = read_ids(shared + "/stories260K-hf/expected_greedy_200_ids.txt");
    const std::string want = ts::read_file(shared + "/stories260K-hf/expected_greedy_200.txt");
    REQUIRE(ids.size() == 201);
    REQUIRE(ids[0] == tok.bos_id());
    const std::vector<int32_t> generated(ids.begin() + 1, ids.end());
    CHECK(tok.decode(generated) == want);
    CHECK(tok.decode(ids) == want);  // the BOS is a control piece: invisible
    CHECK(stream(tok, generated, true).text == want);
    CHECK(stream(tok, ids, true).text == want);
    CHECK(stream(tok, ids, false).text == want);
    // The text re-encodes to the same ids (the model's output is in canonical form).
    CHECK(tok.encode(want, true) == ids);
}

TEST_CASE("tokenizer_config.json variants") {
    const std::string shared = ts::shared_data_or_skip("tokenizer config variants");
    if (shared.empty()) return;

    SUBCASE("missing config: defaults") {
        ts::TempDir tmp;
        make_dir(tmp, shared, "");
        const Tokenizer tok = Tokenizer::load(tmp.path);
        CHECK(tok.add_bos());
        CHECK_FALSE(tok.add_eos());
        CHECK(tok.bos_id() == 1);
        CHECK(tok.eos_id() == 2);
        CHECK(tok.unk_id() == 0);
        CHECK(tok.pad_id() == -1);
        CHECK(tok.encode("", true) == std::vector<int32_t>{1});
        CHECK(tok.encode("Once upon a time") == std::vector<int32_t>{1, 403, 407, 261, 378});
    }
    SUBCASE("add_bos_token false") {
        ts::TempDir tmp;
        make_dir(tmp, shared, R"({"add_bos_token": false})");
        const Tokenizer tok = Tokenizer::load(tmp.path);
        CHECK_FALSE(tok.add_bos());
        CHECK(tok.encode("Once upon a time") == std::vector<int32_t>{403, 407, 261, 378});
        CHECK(tok.encode("").empty());
    }
    SUBCASE("add_eos_token true") {
        ts::TempDir tmp;
        make_dir(tmp, shared, R"({"add_bos_token": true, "add_eos_token": true})");
        const Tokenizer tok = Tokenizer::load(tmp.path);
        CHECK(tok.add_eos());
        CHECK(tok.encode("Once upon a time") == std::vector<int32_t>{1, 403, 407, 261, 378, 2});
        CHECK(tok.encode("") == std::vector<int32_t>{1, 2});
        CHECK(tok.encode("Once upon a time", false) == std::vector<int32_t>{403, 407, 261, 378});
    }
    SUBCASE("special tokens given as AddedToken objects") {
        ts::TempDir tmp;
        make_dir(tmp, shared, R"({
            "bos_token": {"__type": "AddedToken", "content": "</s>", "lstrip": false},
            "eos_token": {"content": "<s>"},
            "unk_token": "<unk>",
            "pad_token": {"content": "<unk>"}
        })");
        const Tokenizer tok = Tokenizer::load(tmp.path);
        CHECK(tok.bos_id() == 2);
        CHECK(tok.eos_id() == 1);
        CHECK(tok.unk_id() == 0);
        CHECK(tok.pad_id() == 0);
        CHECK(tok.encode("Once") == std::vector<int32_t>{2, 403});
    }
    SUBCASE("null and unknown special tokens fall back to the model's ids") {
        ts::TempDir tmp;
        make_dir(tmp, shared, R"({"bos_token": null, "eos_token": "<|not a piece|>",
                                  "pad_token": null})");
        const Tokenizer tok = Tokenizer::load(tmp.path);
        CHECK(tok.bos_id() == 1);
        CHECK(tok.eos_id() == 2);
        CHECK(tok.pad_id() == -1);
    }
    SUBCASE("the shared folders' own configs") {
        const Tokenizer llama = Tokenizer::load(shared + "/llama-tokenizer");
        CHECK(llama.n_vocab() == 32000);
        CHECK(llama.bos_id() == 1);
        CHECK(llama.eos_id() == 2);
        CHECK(llama.unk_id() == 0);
        CHECK(llama.pad_id() == -1);
        CHECK(llama.add_bos());
        CHECK_FALSE(llama.add_eos());
    }
    SUBCASE("malformed JSON names the file") {
        ts::TempDir tmp;
        make_dir(tmp, shared, R"({"add_bos_token": true,)");
        const Error e = expect_error([&] { Tokenizer::load(tmp.path); });
        CHECK(e.code() == ErrorCode::format);
        CHECK_MESSAGE(contains(e.what(), tmp / "tokenizer_config.json"), e.what());
    }
    SUBCASE("an empty config file is malformed") {
        ts::TempDir tmp;
        ts::write_file(tmp / "tokenizer.model",
                       ts::read_file(shared + "/stories260K-hf/tokenizer.model"));
        ts::write_file(tmp / "tokenizer_config.json", "");
        const Error e = expect_error([&] { Tokenizer::load(tmp.path); });
        CHECK(e.code() == ErrorCode::format);
        CHECK_MESSAGE(contains(e.what(), tmp / "tokenizer_config.json"), e.what());
    }
    SUBCASE("a config that is not an object") {
        ts::TempDir tmp;
        make_dir(tmp, shared, "[true]");
        const Error e = expect_error([&] { Tokenizer::load(tmp.path); });
        CHECK(e.code() == ErrorCode::format);
        CHECK_MESSAGE(contains(e.what(), tmp / "tokenizer_config.json"), e.what());
    }
    SUBCASE("add_bos_token of the wrong type names the field") {
        ts::TempDir tmp;
        make_dir(tmp, shared, R"({"add_bos_token": "yes"})");
        const Error e = expect_error([&] { Tokenizer::load(tmp.path); });
        CHECK(e.code() == ErrorCode::format);
        CHECK_MESSAGE(contains(e.what(), "add_bos_token"), e.what());
        CHECK_MESSAGE(contains(e.what(), tmp / "tokenizer_config.json"), e.what());
    }
    SUBCASE("add_eos_token of the wrong type names the field") {
        ts::TempDir tmp;
        make_dir(tmp, shared, R"({"add_eos_token": 1})");
        const Error e = expect_error([&] { Tokenizer::load(tmp.path); });
        CHECK(e.code() == ErrorCode::format);
        CHECK_MESSAGE(contains(e.what(), "add_eos_token"), e.what());
    }
    SUBCASE("bos_token of the wrong type names the field") {
        ts::TempDir tmp;
        make_dir(tmp, shared, R"({"bos_token": 1})");
        const Error e = expect_error([&] { Tokenizer::load(tmp.path); });
        CHECK(e.code() == ErrorCode::format);
        CHECK_MESSAGE(contains(e.what(), "bos_token"), e.what());
    }
    SUBCASE("an AddedToken without string content names the field") {
        ts::TempDir tmp;
        make_dir(tmp, shared, R"({"eos_token": {"content": 5}})");
        const Error e = expect_error([&] { Tokenizer::load(tmp.path); });
        CHECK(e.code() == ErrorCode::format);
        CHECK_MESSAGE(contains(e.what(), "eos_token.content"), e.what());
    }
    SUBCASE("from_serialized honours the config text and names the origin") {
        const std::string model = ts::read_file(shared + "/stories260K-hf/tokenizer.model");
        const Tokenizer tok = Tokenizer::from_serialized(model, R"({"add_bos_token": false})");
        CHECK_FALSE(tok.add_bos());
        CHECK(tok.serialized_model() == model);
        const Error e =
            expect_error([&] { Tokenizer::from_serialized(model, "{oops", "model.stackllama"); });
        CHECK(e.code() == ErrorCode::format);
        CHECK_MESSAGE(contains(e.what(), "model.stackllama"), e.what());
    }
}

TEST_CASE("tokenizer load errors") {
    const std::string shared = ts::shared_data_or_skip("tokenizer load errors");
    if (shared.empty()) return;

    SUBCASE("missing tokenizer.model names the path") {
        ts::TempDir tmp;
        const Error e = expect_error([&] { Tokenizer::load(tmp.path); });
        CHECK(e.code() == ErrorCode::io);
        CHECK_MESSAGE(contains(e.what(), tmp / "tokenizer.model"), e.what());
    }
    SUBCASE("missing folder") {
        const std::string dir = "/nonexistent/stackllama/tokenizer";
        const Error e = expect_error([&] { Tokenizer::load(dir); });
        CHECK(e.code() == ErrorCode::io);
        CHECK_MESSAGE(contains(e.what(), dir + "/tokenizer.model"), e.what());
    }
    SUBCASE("a garbage tokenizer.model") {
        ts::TempDir tmp;
        ts::write_file(tmp / "tokenizer.model", "this is not a protobuf \xff\xff\xff\xff garbage");
        const Error e = expect_error([&] { Tokenizer::load(tmp.path); });
        CHECK(e.code() == ErrorCode::format);
        CHECK_MESSAGE(contains(e.what(), tmp / "tokenizer.model"), e.what());
    }
    SUBCASE("a truncated tokenizer.model") {
        ts::TempDir tmp;
        const std::string model = ts::read_file(shared + "/stories260K-hf/tokenizer.model");
        ts::write_file(tmp / "tokenizer.model", model.substr(0, model.size() / 2));
        const Error e = expect_error([&] { Tokenizer::load(tmp.path); });
        CHECK(e.code() == ErrorCode::format);
        CHECK_MESSAGE(contains(e.what(), tmp / "tokenizer.model"), e.what());
    }
    SUBCASE("an empty tokenizer.model") {
        ts::TempDir tmp;
        ts::write_file(tmp / "tokenizer.model", "");
        const Error e = expect_error([&] { Tokenizer::load(tmp.path); });
        CHECK(e.code() == ErrorCode::format);
        CHECK_MESSAGE(contains(e.what(), tmp / "tokenizer.model"), e.what());
    }
    SUBCASE("garbage from memory") {
        const Error e =
            expect_error([&] { Tokenizer::from_serialized("\x0a\x05garbage", "", "my.bin"); });
        CHECK(e.code() == ErrorCode::format);
        CHECK_MESSAGE(contains(e.what(), "my.bin"), e.what());
    }
}

TEST_CASE("encode and decode argument errors") {
    const std::string shared = ts::shared_data_or_skip("tokenizer argument errors");
    if (shared.empty()) return;
    const Tokenizer tok = Tokenizer::load(shared + "/llama-tokenizer");

    struct Bad {
        std::string text;
        size_t offset;
    };
    const Bad bad[] = {
        {"abc\xff", 3},           // never valid
        {"ok \xE2\x82", 3},       // truncated euro sign
        {"\xC0\xAF", 0},          // overlong '/'
        {"x\xED\xA0\x80y", 1},    // UTF-16 surrogate
        {"\xF4\x90\x80\x80", 0},  // above U+10FFFF
        {"caf\xC3\xA9 \x80", 6},  // lone continuation byte after valid text
    };
    for (const auto& b : bad) {
        CAPTURE(b.offset);
        const Error e = expect_error([&] { tok.encode(b.text); });
        CHECK(e.code() == ErrorCode::invalid_argument);
        CHECK_MESSAGE(contains(e.what(), "UTF-8"), e.what());
        CHECK_MESSAGE(contains(e.what(), "byte offset " + std::to_string(b.offset)), e.what());
    }

    for (int32_t id : {32000, -1, 1 << 30}) {
        const Error e = expect_error([&] { tok.decode({1, 100, id}); });
        CHECK(e.code() == ErrorCode::invalid_argument);
        CHECK_MESSAGE(contains(e.what(), std::to_string(id)), e.what());
        StreamDecoder dec(tok);
        const Error s = expect_error([&] { dec.push(id); });
        CHECK(s.code() == ErrorCode::invalid_argument);
        CHECK_MESSAGE(contains(s.what(), std::to_string(id)), s.what());
        CHECK_THROWS_AS(tok.id_to_piece(id), Error);
        CHECK_FALSE(tok.is_control(id));
        CHECK_FALSE(tok.is_byte(id));
    }
}

TEST_CASE("pieces, special ids and copies") {
    const std::string shared = ts::shared_data_or_skip("tokenizer pieces");
    if (shared.empty()) return;
    const Tokenizer tok = Tokenizer::load(shared + "/llama-tokenizer");
    CHECK(tok.encode("") == std::vector<int32_t>{1});
    CHECK(tok.encode("", false).empty());
    CHECK(tok.decode({}).empty());
    CHECK(tok.id_to_piece(1) == "<s>");
    CHECK(tok.id_to_piece(2) == "</s>");
    CHECK(tok.id_to_piece(13) == "<0x0A>");
    CHECK(tok.piece_to_id("<s>") == 1);
    CHECK(tok.piece_to_id("<unk>") == 0);
    CHECK(tok.piece_to_id("\xE2\x96\x81the") == tok.encode("the", false).at(0));
    CHECK(tok.piece_to_id("definitely not a piece") == -1);
    CHECK(tok.is_control(1));
    CHECK(tok.is_control(2));
    CHECK_FALSE(tok.is_control(0));
    CHECK_FALSE(tok.is_control(13));
    CHECK(tok.is_byte(13));
    CHECK_FALSE(tok.is_byte(1));
    // The literal text "<s>" is ordinary text, never the BOS id.
    const auto lit = tok.encode("<s>", false);
    CHECK(std::find(lit.begin(), lit.end(), 1) == lit.end());

    CHECK(tok.serialized_model() == ts::read_file(shared + "/llama-tokenizer/tokenizer.model"));
    Tokenizer copy = tok;
    CHECK(copy.encode("Hello world") == tok.encode("Hello world"));
    Tokenizer moved = std::move(copy);
    CHECK(moved.encode("Hello world") == tok.encode("Hello world"));
    copy = moved;
    CHECK(copy.n_vocab() == 32000);
}

TEST_CASE("encode and decode from several threads at once") {
    const std::string shared = ts::shared_data_or_skip("tokenizer threads");
    if (shared.empty()) return;
    const Tokenizer tok = Tokenizer::load(shared + "/llama-tokenizer");
    const std::string text = "Question: How do I reverse a list in Python?\n\nAnswer: 漢字 🦙";
    const auto want = tok.encode(text);
    std::atomic<int> failures{0};
    std::vector<std::thread> threads;
    for (int t = 0; t < 8; ++t) {
        threads.emplace_back([&] {
            for (int k = 0; k < 200; ++k) {
                if (tok.encode(text) != want || tok.decode(want) != text) ++failures;
            }
        });
    }
    for (auto& th : threads) th.join();
    CHECK(failures == 0);
}
