// StreamDecoder: incremental detokenisation with a sliding window, so each push() decodes a few
// ids rather than the whole history.
//
// The window ids_ starts at the "prefix offset"; ids_[0, read_) is the part whose text was already
// returned (emitted_ = decode(ids_[0, read_))). On push, decode(ids_) minus emitted_ is the new
// text. Decoding a window that starts mid-text drops the dummy-prefix space of its first piece,
// but it does so in both decodes alike, so the difference is exact. Two rules keep it exact:
//  * the window starts at offset 0 until some text has been emitted, so the first piece of the
//    stream loses its space exactly as Tokenizer::decode drops it;
//  * text is held back while the window ends in byte-fallback pieces that form an unfinished
//    UTF-8 sequence (SentencePiece renders them as U+FFFD for now, but the next byte piece may
//    complete them), so the window only ever advances at a character boundary.
// Whenever text is emitted, the window advances (the old read offset becomes the prefix offset),
// provided the new prefix window renders as non-empty text: only then has SentencePiece stopped
// dropping leading whitespace inside it, so later pieces decode as they do in the full text.
#include <cstddef>
#include <string>
#include <utility>
#include <vector>

#include "stackllama/error.hpp"
#include "stackllama/tokenizer.hpp"

namespace stackllama {

namespace {

// Value of a byte-fallback piece "<0xNN>", or -1.
int piece_byte(const std::string& piece) {
    if (piece.size() != 6 || piece.compare(0, 3, "<0x") != 0 || piece[5] != '>') return -1;
    int v = 0;
    for (int i = 3; i < 5; ++i) {
        const char c = piece[i];
        v <<= 4;
        if (c >= '0' && c <= '9') {
            v |= c - '0';
        } else if (c >= 'A' && c <= 'F') {
            v |= c - 'A' + 10;
        } else if (c >= 'a' && c <= 'f') {
            v |= c - 'a' + 10;
        } else {
            return -1;
        }
    }
    return v;
}

// True when `tail` (the last bytes of a run of byte pieces, at most 3) ends with a proper prefix
// of a valid UTF-8 sequence that more bytes could complete. SentencePiece judges validity strictly
// (no overlong forms, surrogates or values above U+10FFFF), and so does this.
bool ends_with_unfinished_utf8(const unsigned char* tail, size_t n) {
    for (size_t start = n; start-- > 0;) {
        const unsigned c = tail[start];
        if ((c & 0xC0) == 0x80) continue;  // continuation byte: look further back for its lead
        size_t need = 0;
        unsigned lo = 0x80, hi = 0xBF;
        if (c >= 0xC2 && c <= 0xDF) {
            need = 2;
        } else if (c >= 0xE0 && c <= 0xEF) {
            need = 3;
            if (c == 0xE0) lo = 0xA0;
            if (c == 0xED) hi = 0x9F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            need = 4;
            if (c == 0xF0) lo = 0x90;
            if (c == 0xF4) hi = 0x8F;
        } else {
            return false;  // ASCII or a byte that never starts a sequence: nothing is pending
        }
        const size_t have = n - start;
        if (have >= need) return false;  // complete (or over-long run of continuations)
        if (have >= 2 && (tail[start + 1] < lo || tail[start + 1] > hi)) return false;
        return true;  // later bytes are continuation bytes (checked by the loop)
    }
    return false;  // only continuation bytes: already invalid whatever follows
}

}  // namespace

StreamDecoder::StreamDecoder(const Tokenizer& tokenizer, bool skip_special)
    : tok_(&tokenizer), skip_special_(skip_special) {}

std::string StreamDecoder::push(int32_t id) {
    if (id < 0 || id >= tok_->n_vocab()) {
        throw Error(ErrorCode::invalid_argument,
                    "StreamDecoder::push: token id " + std::to_string(id) +
                        " is outside the vocabulary [0, " + std::to_string(tok_->n_vocab()) + ")");
    }
    // decode(skip_special=true) drops these before decoding, so they never enter the window.
    if (skip_special_ && tok_->is_control(id)) return {};
    ids_.push_back(id);

    // Hold back an unfinished UTF-8 sequence spelled by trailing byte pieces.
    if (tok_->is_byte(id)) {
        unsigned char tail[3];
        size_t n = 0;
        for (size_t i = ids_.size(); i-- > 0 && n < 3 && tok_->is_byte(ids_[i]);) {
            const int b = piece_byte(tok_->id_to_piece(ids_[i]));
            if (b < 0) break;
            tail[n++] = static_cast<unsigned char>(b);
        }
        // tail was filled newest first; put it in text order.
        for (size_t i = 0; i < n / 2; ++i) std::swap(tail[i], tail[n - 1 - i]);
        if (ends_with_unfinished_utf8(tail, n)) return {};
    }

    // Raw decode: any control ids left in the window are there because skip_special is false,
    // and decode(ids, false) is plain SentencePiece decoding.
    std::string text = tok_->decode(ids_, false);
    if (text.size() <= emitted_.size() || text.compare(0, emitted_.size(), emitted_) != 0) {
        return {};
    }
    std::string out = text.substr(emitted_.size());

    // Advance: [read_, end) becomes the new prefix window, and its text the new emitted_. But
    // only if that text is non-empty: SentencePiece keeps dropping leading spaces until a piece
    // renders as something (a window of "▁" pieces or control pieces renders as nothing, and with
    // remove_extra_whitespaces the next "▁word" would lose its space too). Otherwise the window
    // keeps its start and just grows.
    if (read_ > 0) {
        const auto from = ids_.begin() + static_cast<std::ptrdiff_t>(read_);
        std::string prefix_text = tok_->decode(std::vector<int32_t>(from, ids_.end()), false);
        if (!prefix_text.empty()) {
            ids_.erase(ids_.begin(), from);
            text = std::move(prefix_text);
        }
    }
    emitted_ = std::move(text);
    read_ = ids_.size();
    return out;
}

// Ends the stream: returns the held-back rest (unfinished UTF-8 comes out as U+FFFD, as decode
// renders it) and resets, so the next push() starts a new text.
std::string StreamDecoder::flush() {
    std::string out;
    if (!ids_.empty()) {
        std::string text = tok_->decode(ids_, false);
        if (text.size() > emitted_.size() && text.compare(0, emitted_.size(), emitted_) == 0) {
            out = text.substr(emitted_.size());
        }
    }
    reset();
    return out;
}

void StreamDecoder::reset() {
    ids_.clear();
    emitted_.clear();
    read_ = 0;
}

}  // namespace stackllama
