// libFuzzer target: tokenizer_config.json (the input) through Tokenizer::from_serialized, over a
// real SentencePiece model (stories260K's 512-piece tokenizer.model, or the file named by
// STACKLLAMA_FUZZ_TOKENIZER_MODEL). A loaded tokenizer then encodes the input itself as a
// prompt (invalid UTF-8 must be an Error) and decodes what it got.
#include <cstdlib>
#include <vector>

#include "fuzz_support.hpp"
#include "stackllama/tokenizer.hpp"

using namespace stackllama;

namespace {

const std::string& model_proto() {
    static const std::string proto = [] {
        const char* env = std::getenv("STACKLLAMA_FUZZ_TOKENIZER_MODEL");
        const std::string path = env && *env ? env : STACKLLAMA_FUZZ_TOKENIZER_MODEL;
        if (!std::filesystem::is_regular_file(path)) {
            std::fprintf(stderr,
                         "fuzz_tokenizer_config: no tokenizer model at %s; set "
                         "STACKLLAMA_FUZZ_TOKENIZER_MODEL to a tokenizer.model\n",
                         path.c_str());
            std::exit(2);
        }
        return fuzz::read_file(path);
    }();
    return proto;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    std::unique_ptr<Tokenizer> tok;
    const bool ok = fuzz::expect_ok_or_error([&] {
        tok = std::make_unique<Tokenizer>(
            Tokenizer::from_serialized(model_proto(), text, "fuzz input"));
    });
    if (!ok) return 0;
    const int32_t n = tok->n_vocab();
    FUZZ_CHECK(n > 0, "a vocabulary");
    for (int32_t id : {tok->bos_id(), tok->eos_id(), tok->unk_id(), tok->pad_id()})
        FUZZ_CHECK(id == -1 || (id >= 0 && id < n), "special ids in the vocabulary or -1");

    std::vector<int32_t> ids;
    if (fuzz::expect_ok_or_error([&] { ids = tok->encode(text, true); })) {
        for (int32_t id : ids) FUZZ_CHECK(id >= 0 && id < n, "encoded ids in the vocabulary");
        std::string back;
        fuzz::expect_ok_or_error([&] { back = tok->decode(ids, true); });
        StreamDecoder sd(*tok);
        std::string streamed;
        for (int32_t id : ids) streamed += sd.push(id);
        streamed += sd.flush();
        FUZZ_CHECK(streamed == back, "streamed text equals decode()");
    }
    return 0;
}
