// SentencePiece tokenizer of a LLaMA model directory (tokenizer.model + tokenizer_config.json).
//
// Thread-safety: a Tokenizer is immutable after load; encode/decode may be called from any number
// of threads at once. A StreamDecoder is single-threaded state.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "stackllama/export.hpp"

namespace stackllama {

class STACKLLAMA_API Tokenizer {
public:
    // Loads `dir/tokenizer.model`, honouring `dir/tokenizer_config.json` when present
    // (add_bos_token, add_eos_token, bos/eos/unk/pad tokens). Throws Error naming the file.
    static Tokenizer load(const std::string& dir);
    // Loads a serialized SentencePiece model held in memory (the native file carries one).
    // `config_json` is the text of a tokenizer_config.json, or empty for the defaults.
    static Tokenizer from_serialized(std::string_view model_proto, std::string_view config_json,
                                     const std::string& origin = "<memory>");

    Tokenizer(const Tokenizer&);
    Tokenizer& operator=(const Tokenizer&);
    Tokenizer(Tokenizer&&) noexcept;
    Tokenizer& operator=(Tokenizer&&) noexcept;
    ~Tokenizer();

    // Text to ids. With add_special, BOS/EOS are added as tokenizer_config.json says (a BOS is
    // added for an empty text too). Invalid UTF-8 is an Error.
    std::vector<int32_t> encode(std::string_view text, bool add_special = true) const;
    // Ids to text, as SentencePiece decodes them (the first piece loses its dummy-prefix space).
    // Control tokens (BOS, EOS, ...) are skipped when skip_special is true. Ids outside the
    // vocabulary are an Error.
    std::string decode(const std::vector<int32_t>& ids, bool skip_special = true) const;

    // The raw piece of one id ("▁the", "<0x0A>", "<s>").
    std::string id_to_piece(int32_t id) const;
    // -1 when the piece is not in the vocabulary.
    int32_t piece_to_id(std::string_view piece) const;

    int32_t n_vocab() const noexcept;
    int32_t bos_id() const noexcept;  // -1 when the model has none
    int32_t eos_id() const noexcept;
    int32_t unk_id() const noexcept;
    int32_t pad_id() const noexcept;
    bool add_bos() const noexcept;
    bool add_eos() const noexcept;
    bool is_control(int32_t id) const noexcept;  // BOS, EOS, PAD and other control pieces
    bool is_byte(int32_t id) const noexcept;     // byte-fallback pieces <0xNN>

    // The serialized SentencePiece model (for writing it into other files).
    const std::string& serialized_model() const noexcept;

    struct Impl;

private:
    explicit Tokenizer(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

// Incremental detokenizer for streaming: push ids one at a time and receive text that is always
// complete UTF-8. The concatenation of every push() and a final flush() equals
// Tokenizer::decode(all ids) exactly, including the leading-space rule of the first piece.
//
// Keeps a reference to the Tokenizer, which must outlive it.
class STACKLLAMA_API StreamDecoder {
public:
    explicit StreamDecoder(const Tokenizer& tokenizer, bool skip_special = true);
    // Returns the text that became final with this id (possibly empty).
    std::string push(int32_t id);
    // Returns what is still held back (incomplete UTF-8 at the end comes out as U+FFFD, as decode
    // does).
    std::string flush();
    void reset();

private:
    const Tokenizer* tok_;
    bool skip_special_;
    std::vector<int32_t> ids_;  // the window: ids from the prefix offset on
    std::string emitted_;       // decode of ids_[0, read_), text already returned
    std::size_t read_ = 0;      // read offset within the window
};

}  // namespace stackllama
