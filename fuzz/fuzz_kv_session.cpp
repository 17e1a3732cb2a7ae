// libFuzzer target: KV session files through Generator::load_session (src/generate/session.cpp),
// on a Generator of a tiny model (fuzz_model.hpp) with a 16-token context.
//
// A session file is a 32-byte header ("SLLMSESS", version, payload size, XXH64 of the compressed
// payload) and one zstd frame holding the payload (metadata JSON, logits, K and V). Mutating the
// compressed bytes mostly yields garbage, so the input is taken two ways:
//   * starting with "SLLMSESS": a whole file, whose checksum the harness recomputes (the header
//     and the zstd layer are fuzzed);
//   * anything else: the uncompressed payload, which the harness compresses and wraps in a valid
//     header (the metadata, the sizes and the cache bytes are fuzzed).
// At start-up the target writes sessions saved by the Generator itself (empty, after a prefill,
// after generate() with a pending token, a full context; whole files and raw payloads) into its
// first corpus folder when that folder has none yet.
//
// On success the restored generator must hold at most n_ctx tokens and go on evaluating: a wrong
// length or stride in the restored cache faults under ASan.
#include <zstd.h>

#include <cstring>
#include <functional>
#include <memory>
#include <vector>

#include "fuzz_model.hpp"
#include "fuzz_support.hpp"
#include "stackllama/generator.hpp"
#include "util/checksum.hpp"

using namespace stackllama;

namespace {

constexpr int kCtx = 16;

void put_u64(std::string& s, size_t at, uint64_t v) {
    for (int i = 0; i < 8; ++i) s[at + size_t(i)] = char(uint8_t(v >> (8 * i)));
}

std::string wrap_payload(std::string_view raw) {
    std::string packed(ZSTD_compressBound(raw.size()), '\0');
    const size_t n = ZSTD_compress(packed.data(), packed.size(), raw.data(), raw.size(), 1);
    if (ZSTD_isError(n)) fuzz::harness_failure("ZSTD_compress", ZSTD_getErrorName(n));
    packed.resize(n);
    std::string file("SLLMSESS\x01\0\0\0\0\0\0\0", 16);
    file.append(16, '\0');
    put_u64(file, 16, raw.size());
    put_u64(file, 24, xxh64(packed.data(), packed.size()));
    return file + packed;
}

void fix_checksum(std::string& file) {
    if (file.size() >= 32) put_u64(file, 24, xxh64(file.data() + 32, file.size() - 32));
}

Generator& generator() {
    static Generator g = [] {
        GeneratorParams p;
        p.n_ctx = kCtx;
        return Generator(fuzz::tiny_model(), p);
    }();
    return g;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) {
    std::string corpus;
    for (int i = 1; i < *argc; ++i) {
        if ((*argv)[i][0] != '-') {
            corpus = (*argv)[i];
            break;
        }
    }
    if (corpus.empty() || !std::filesystem::is_directory(corpus) ||
        std::filesystem::exists(corpus + "/seed-0.session"))
        return 0;
    GeneratorParams p;
    p.n_ctx = kCtx;
    Generator g(fuzz::tiny_model(), p);
    GenerationConfig cfg;
    cfg.max_new_tokens = 3;
    cfg.use_model_eos = false;
    std::vector<std::function<void()>> steps = {
        [] {},
        [&] { g.eval({1, 5, 9, 3}); },
        [&] { g.generate(std::vector<int32_t>{7}, cfg); },
        [&] {
            while (g.n_past() < kCtx - 1) g.eval({int32_t(g.n_past() % fuzz::kVocab)});
        },
    };
    for (size_t i = 0; i < steps.size(); ++i) {
        steps[i]();
        const std::string path = corpus + "/seed-" + std::to_string(i) + ".session";
        g.save_session(path);
        const std::string file = fuzz::read_file(path);
        std::string raw(size_t(ZSTD_getFrameContentSize(file.data() + 32, file.size() - 32)),
                        '\0');
        ZSTD_decompress(raw.data(), raw.size(), file.data() + 32, file.size() - 32);
        fuzz::write_file(corpus + "/seed-" + std::to_string(i) + ".raw", raw);
    }
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string_view in(reinterpret_cast<const char*>(data), size);
    std::string file;
    if (in.size() >= 8 && in.substr(0, 8) == "SLLMSESS") {
        file.assign(in);
        fix_checksum(file);
    } else {
        file = wrap_payload(in);
    }
    const std::string path = fuzz::scratch_path("input.session");
    fuzz::write_file(path, file);

    Generator& g = generator();
    if (!fuzz::expect_ok_or_error([&] { g.load_session(path); })) return 0;
    FUZZ_CHECK(g.n_past() >= 0 && g.n_past() <= g.n_ctx(), "n_past within the context");
    static int reported = 0;
    for (int32_t t : g.tokens()) {
        if ((t < 0 || t >= fuzz::kVocab) && reported++ < 3)
            std::fprintf(stderr,
                         "\n*** finding (not fatal): a loaded session holds token id %d, "
                         "outside the vocabulary [0, %d)\n",
                         t, fuzz::kVocab);
    }
    // Use the restored cache: one more token when there is room, then one generated token.
    fuzz::expect_ok_or_error([&] {
        if (g.n_past() + 2 <= g.n_ctx()) {
            g.eval({3});
            GenerationConfig cfg;
            cfg.max_new_tokens = 1;
            cfg.use_model_eos = false;
            g.generate(std::vector<int32_t>{}, cfg);
        }
    });
    g.reset();
    return 0;
}
