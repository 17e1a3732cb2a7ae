// libFuzzer target: the native single-file format (.sllm) through io::read_native: the fixed
// header, the JSON index, tensor places, zstd frames and checksums.
//
// Built only when the library has src/io/native_file.cpp (fuzz/CMakeLists.txt checks); the
// format is still being written (its own issue), so this target follows io/native_file.hpp.
// Seeds: at start-up the target writes two valid files (stored and zstd-compressed, with
// io::write_native) into its first corpus folder when that folder has none yet.
// TODO(native format): add a dictionary of the index's field names once the format is frozen.
#include <cstring>
#include <memory>
#include <vector>

#include "fuzz_support.hpp"
#include "io/native_file.hpp"
#include "util/checksum.hpp"

using namespace stackllama;

extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) {
    std::string corpus;
    for (int i = 1; i < *argc; ++i) {
        if ((*argv)[i][0] != '-') {
            corpus = (*argv)[i];
            break;
        }
    }
    if (corpus.empty() || !std::filesystem::is_directory(corpus) ||
        std::filesystem::exists(corpus + "/seed-stored.sllm"))
        return 0;
    static const float w[12] = {1, -2, 3, 0.5f, 0, 7, 8, -9, 10, 11, 12, 13};
    static const uint16_t h[4] = {0x3c00, 0x4000, 0xc200, 0x0000};
    std::vector<io::NativeTensor> ts(3);
    ts[0].name = "model.embed_tokens.weight";
    ts[0].dtype = io::TensorDType::F32;
    ts[0].shape = {3, 4};
    ts[0].nbytes = sizeof w;
    ts[0].data = w;
    ts[1].name = "model.norm.weight";
    ts[1].dtype = io::TensorDType::F16;
    ts[1].shape = {4};
    ts[1].nbytes = sizeof h;
    ts[1].data = h;
    ts[2].name = "lm_head.weight";
    ts[2].dtype = io::TensorDType::BF16;
    ts[2].shape = {2, 2};
    ts[2].nbytes = sizeof h;
    ts[2].data = h;
    const io::Json config = {{"architectures", {"LlamaForCausalLM"}}, {"hidden_size", 4},
                             {"vocab_size", 3}};
    for (int level : {0, 3}) {
        io::NativeWriteOptions opt;
        opt.zstd_level = level;
        const std::string path = corpus + (level ? "/seed-zstd.sllm" : "/seed-stored.sllm");
        try {
            io::write_native(path, config, std::string("not a real sentencepiece model"),
                             io::Json{{"add_bos_token", true}},
                             io::Json{{"generation_config.json", {{"do_sample", false}}}}, ts, opt);
        } catch (const Error& e) {
            std::fprintf(stderr, "fuzz_native_file: cannot write seed %s: %s\n", path.c_str(),
                         e.what());
        }
    }
    return 0;
}

// The header (bytes 0..47) and the index carry XXH64 checksums that no mutation survives, and
// the header records the file size and the index size, which every insertion or deletion
// breaks. The harness makes them consistent before writing the file (the index is the last
// section: it runs to the end of the file), so the fuzzer reaches the index JSON and the tensors.
// Those mismatch paths are trivial comparisons, covered by the native format's own tests.
static void fix_checksums(std::string& f) {
    auto put64 = [&](size_t at, uint64_t v) {
        for (int i = 0; i < 8; ++i) f[at + size_t(i)] = char(uint8_t(v >> (8 * i)));
    };
    auto get64 = [&](size_t at) {
        uint64_t v = 0;
        for (int i = 7; i >= 0; --i) v = (v << 8) | uint8_t(f[at + size_t(i)]);
        return v;
    };
    if (f.size() < io::kNativeHeaderSize) return;
    put64(40, f.size());
    const uint64_t off = get64(16);
    if (off <= f.size()) put64(24, f.size() - off);
    const uint64_t n = get64(24);
    if (off <= f.size() && n <= f.size() - off) put64(32, xxh64(f.data() + off, size_t(n)));
    put64(48, xxh64(f.data(), 48));
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string path = fuzz::scratch_path("input.sllm");
    std::string bytes(reinterpret_cast<const char*>(data), size);
    fix_checksums(bytes);
    fuzz::write_file(path, bytes);
    for (bool verify : {true, false}) {
        io::NativeReadOptions opt;
        opt.verify_checksums = verify;
        opt.n_threads = 1;
        io::NativeContents c;
        if (!fuzz::expect_ok_or_error([&] { c = io::read_native(path, opt); })) continue;
        volatile uint8_t sink = 0;
        for (const auto& [name, t] : c.tensors.tensors()) {
            FUZZ_CHECK(t.nbytes == t.numel() * io::dtype_size(t.dtype), "nbytes of " + name);
            for (uint64_t i = 0; i < t.nbytes; i += 4096) sink = sink ^ t.data[i];
            if (t.nbytes) sink = sink ^ t.data[t.nbytes - 1];
        }
        (void)sink;
    }
    return 0;
}
