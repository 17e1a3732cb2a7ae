// Tokenizer: a thin, immutable wrapper over sentencepiece::SentencePieceProcessor plus the special
// token settings of a Hugging Face tokenizer_config.json.
#include "stackllama/tokenizer.hpp"

#include <sentencepiece_processor.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <utility>

#include "stackllama/error.hpp"

namespace stackllama {

struct Tokenizer::Impl {
    // Shared so that copies of a Tokenizer are cheap; the processor is never mutated after load,
    // and its Encode/Decode are const and safe to call from several threads.
    std::shared_ptr<const sentencepiece::SentencePieceProcessor> sp;
    std::string serialized;
    int32_t n_vocab = 0;
    int32_t bos = -1;
    int32_t eos = -1;
    int32_t unk = -1;
    int32_t pad = -1;
    bool add_bos = true;
    bool add_eos = false;

    bool in_vocab(int32_t id) const noexcept { return id >= 0 && id < n_vocab; }
};

namespace {

using json = nlohmann::json;

std::string quoted(const std::string& s) {
    return "'" + s + "'";
}

// SentencePiece's status text, without the trailing blank some of its messages carry.
std::string status_text(const sentencepiece::util::Status& st) {
    std::string s = st.ToString();
    while (!s.empty() && (s.back() == ' ' || s.back() == '\n')) s.pop_back();
    return s;
}

// Reads a whole file; a missing or unreadable file is an io Error naming the path.
std::string read_whole_file(const std::string& path, const char* what) {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) {
        throw Error(ErrorCode::io, std::string("cannot open ") + what + " " + quoted(path) + ": " +
                                       std::strerror(errno));
    }
    if (S_ISDIR(st.st_mode)) {
        throw Error(ErrorCode::io,
                    std::string("cannot read ") + what + " " + quoted(path) + ": is a directory");
    }
    std::ifstream f(path, std::ios::binary);
    if (!f) {
        throw Error(ErrorCode::io, std::string("cannot open ") + what + " " + quoted(path) + ": " +
                                       std::strerror(errno));
    }
    std::string bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    if (f.bad()) {
        throw Error(ErrorCode::io, std::string("error reading ") + what + " " + quoted(path));
    }
    return bytes;
}

// Offset of the first byte that is not part of valid UTF-8 (RFC 3629: no overlong forms, no
// surrogates, nothing above U+10FFFF), or npos. `why` says what is wrong there.
size_t find_invalid_utf8(std::string_view s, const char** why) {
    const auto* p = reinterpret_cast<const unsigned char*>(s.data());
    const size_t n = s.size();
    size_t i = 0;
    while (i < n) {
        const unsigned c = p[i];
        if (c < 0x80) {
            ++i;
            continue;
        }
        size_t len = 0;
        unsigned lo = 0x80, hi = 0xBF;  // allowed range of the second byte
        if (c >= 0xC2 && c <= 0xDF) {
            len = 2;
        } else if (c >= 0xE0 && c <= 0xEF) {
            len = 3;
            if (c == 0xE0) lo = 0xA0;  // overlong
            if (c == 0xED) hi = 0x9F;  // surrogates
        } else if (c >= 0xF0 && c <= 0xF4) {
            len = 4;
            if (c == 0xF0) lo = 0x90;  // overlong
            if (c == 0xF4) hi = 0x8F;  // above U+10FFFF
        } else {
            *why = (c >= 0x80 && c <= 0xBF) ? "unexpected continuation byte"
                                            : "byte that never occurs in UTF-8";
            return i;
        }
        if (i + len > n) {
            *why = "truncated multi-byte sequence";
            return i;
        }
        if (p[i + 1] < lo || p[i + 1] > hi) {
            *why = "invalid multi-byte sequence";
            return i;
        }
        for (size_t k = 2; k < len; ++k) {
            if ((p[i + k] & 0xC0) != 0x80) {
                *why = "invalid multi-byte sequence";
                return i;
            }
        }
        i += len;
    }
    return std::string_view::npos;
}

const char* json_type(const json& v) {
    return v.type_name();
}

// Optional boolean field: absent or null keeps the default.
bool bool_field(const json& cfg, const char* key, bool dflt, const std::string& origin) {
    auto it = cfg.find(key);
    if (it == cfg.end() || it->is_null()) return dflt;
    if (!it->is_boolean()) {
        throw Error(ErrorCode::format,
                    origin + ": field \"" + key + "\" must be a boolean, not " + json_type(*it));
    }
    return it->get<bool>();
}

// A special token given as "<s>", as {"content": "<s>", ...} (an AddedToken), or null. Returns
// the id of that piece, or `fallback` (the SentencePiece model's own id) when the field is absent,
// null, or names a piece the model does not have (an added token we cannot represent).
int32_t token_field(const json& cfg, const char* key, int32_t fallback,
                    const sentencepiece::SentencePieceProcessor& sp, const std::string& origin) {
    auto it = cfg.find(key);
    if (it == cfg.end() || it->is_null()) return fallback;
    std::string piece;
    if (it->is_string()) {
        piece = it->get<std::string>();
    } else if (it->is_object()) {
        auto c = it->find("content");
        if (c == it->end() || !c->is_string()) {
            throw Error(ErrorCode::format, origin + ": field \"" + key +
                                               ".content\" must be a string, not " +
                                               (c == it->end() ? "missing" : json_type(*c)));
        }
        piece = c->get<std::string>();
    } else {
        throw Error(ErrorCode::format, origin + ": field \"" + key +
                                           "\" must be a string, an object with \"content\" or "
                                           "null, not " +
                                           json_type(*it));
    }
    // PieceToId answers unk_id for unknown pieces, so confirm the round trip.
    const int id = sp.PieceToId(piece);
    if (id >= 0 && id < sp.GetPieceSize() && sp.IdToPiece(id) == piece) return id;
    return fallback;
}

std::unique_ptr<Tokenizer::Impl> build(std::string proto, std::string_view config_json,
                                       const std::string& model_origin,
                                       const std::string& config_origin) {
    auto sp = std::make_shared<sentencepiece::SentencePieceProcessor>();
    const auto status = sp->LoadFromSerializedProto(proto);
    if (!status.ok()) {
        throw Error(ErrorCode::format,
                    model_origin + " is not a valid SentencePiece model: " + status_text(status));
    }
    if (sp->GetPieceSize() <= 0) {
        throw Error(ErrorCode::format, model_origin + " is a SentencePiece model with no pieces");
    }

    auto impl = std::make_unique<Tokenizer::Impl>();
    impl->n_vocab = sp->GetPieceSize();
    impl->bos = sp->bos_id();
    impl->eos = sp->eos_id();
    impl->unk = sp->unk_id();
    impl->pad = sp->pad_id();

    if (!config_json.empty()) {
        json cfg;
        try {
            cfg = json::parse(config_json.begin(), config_json.end());
        } catch (const json::exception& e) {
            throw Error(ErrorCode::format, config_origin + " is not valid JSON: " + e.what());
        }
        if (!cfg.is_object()) {
            throw Error(ErrorCode::format,
                        config_origin + " must hold a JSON object, not " + json_type(cfg));
        }
        impl->add_bos = bool_field(cfg, "add_bos_token", true, config_origin);
        impl->add_eos = bool_field(cfg, "add_eos_token", false, config_origin);
        impl->bos = token_field(cfg, "bos_token", impl->bos, *sp, config_origin);
        impl->eos = token_field(cfg, "eos_token", impl->eos, *sp, config_origin);
        impl->unk = token_field(cfg, "unk_token", impl->unk, *sp, config_origin);
        impl->pad = token_field(cfg, "pad_token", impl->pad, *sp, config_origin);
    }
    // Normalise "no such token" to -1 whatever negative value the model used.
    for (int32_t* id : {&impl->bos, &impl->eos, &impl->unk, &impl->pad}) {
        if (!impl->in_vocab(*id)) *id = -1;
    }

    impl->sp = std::move(sp);
    impl->serialized = std::move(proto);
    return impl;
}

}  // namespace

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::Tokenizer(const Tokenizer& o)
    : impl_(o.impl_ ? std::make_unique<Impl>(*o.impl_) : nullptr) {}
Tokenizer& Tokenizer::operator=(const Tokenizer& o) {
    if (this != &o) impl_ = o.impl_ ? std::make_unique<Impl>(*o.impl_) : nullptr;
    return *this;
}
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

Tokenizer Tokenizer::load(const std::string& dir) {
    const std::string model_path = dir + "/tokenizer.model";
    const std::string config_path = dir + "/tokenizer_config.json";
    std::string proto = read_whole_file(model_path, "tokenizer model");

    std::string config;
    struct stat st {};
    if (::stat(config_path.c_str(), &st) == 0) {
        config = read_whole_file(config_path, "tokenizer config");
        // An empty file is malformed JSON, not "no config".
        if (config.empty()) {
            throw Error(ErrorCode::format, quoted(config_path) + " is empty (not valid JSON)");
        }
    }
    return Tokenizer(build(std::move(proto), config, quoted(model_path), quoted(config_path)));
}

Tokenizer Tokenizer::from_serialized(std::string_view model_proto, std::string_view config_json,
                                     const std::string& origin) {
    return Tokenizer(build(std::string(model_proto), config_json, "tokenizer model of " + origin,
                           "tokenizer_config.json of " + origin));
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special) const {
    const char* why = "";
    const size_t bad = find_invalid_utf8(text, &why);
    if (bad != std::string_view::npos) {
        char byte[8];
        std::snprintf(byte, sizeof byte, "0x%02X", static_cast<unsigned char>(text[bad]));
        throw Error(ErrorCode::invalid_argument,
                    "text to encode is not valid UTF-8: " + std::string(why) + " (" + byte +
                        ") at byte offset " + std::to_string(bad));
    }
    std::vector<int> pieces;
    const auto status = impl_->sp->Encode(text, &pieces);
    if (!status.ok()) {
        throw Error(ErrorCode::internal, "SentencePiece failed to encode: " + status_text(status));
    }
    std::vector<int32_t> ids;
    ids.reserve(pieces.size() + 2);
    if (add_special && impl_->add_bos && impl_->bos >= 0) ids.push_back(impl_->bos);
    ids.insert(ids.end(), pieces.begin(), pieces.end());
    if (add_special && impl_->add_eos && impl_->eos >= 0) ids.push_back(impl_->eos);
    return ids;
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids, bool skip_special) const {
    std::vector<int> keep;
    keep.reserve(ids.size());
    for (size_t i = 0; i < ids.size(); ++i) {
        const int32_t id = ids[i];
        if (!impl_->in_vocab(id)) {
            throw Error(ErrorCode::invalid_argument, "token id " + std::to_string(id) +
                                                         " (at index " + std::to_string(i) +
                                                         ") is outside the vocabulary [0, " +
                                                         std::to_string(impl_->n_vocab) + ")");
        }
        // SentencePiece renders control pieces as nothing anyway, but they still end a run of
        // byte pieces; skipping them first lets bytes split by a BOS/EOS join up again.
        if (skip_special && is_control(id)) continue;
        keep.push_back(id);
    }
    std::string text;
    const auto status = impl_->sp->Decode(keep, &text);
    if (!status.ok()) {
        throw Error(ErrorCode::internal, "SentencePiece failed to decode: " + status_text(status));
    }
    return text;
}

std::string Tokenizer::id_to_piece(int32_t id) const {
    if (!impl_->in_vocab(id)) {
        throw Error(ErrorCode::invalid_argument, "token id " + std::to_string(id) +
                                                     " is outside the vocabulary [0, " +
                                                     std::to_string(impl_->n_vocab) + ")");
    }
    return impl_->sp->IdToPiece(id);
}

int32_t Tokenizer::piece_to_id(std::string_view piece) const {
    const int id = impl_->sp->PieceToId(piece);
    if (!impl_->in_vocab(id) || impl_->sp->IdToPiece(id) != piece) return -1;
    return id;
}

int32_t Tokenizer::n_vocab() const noexcept {
    return impl_->n_vocab;
}
int32_t Tokenizer::bos_id() const noexcept {
    return impl_->bos;
}
int32_t Tokenizer::eos_id() const noexcept {
    return impl_->eos;
}
int32_t Tokenizer::unk_id() const noexcept {
    return impl_->unk;
}
int32_t Tokenizer::pad_id() const noexcept {
    return impl_->pad;
}
bool Tokenizer::add_bos() const noexcept {
    return impl_->add_bos;
}
bool Tokenizer::add_eos() const noexcept {
    return impl_->add_eos;
}

bool Tokenizer::is_control(int32_t id) const noexcept {
    if (!impl_->in_vocab(id)) return false;
    // The configured BOS/EOS/PAD count as special even if the model typed them as normal pieces.
    return impl_->sp->IsControl(id) || id == impl_->bos || id == impl_->eos || id == impl_->pad;
}

bool Tokenizer::is_byte(int32_t id) const noexcept {
    return impl_->in_vocab(id) && impl_->sp->IsByte(id);
}

const std::string& Tokenizer::serialized_model() const noexcept {
    return impl_->serialized;
}

}  // namespace stackllama
