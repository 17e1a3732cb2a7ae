// stackllama-convert: a Hugging Face directory (plus LoRA adapters, merged in or kept) to one
// native file.
//
//   stackllama-convert IN_DIR OUT_FILE [--type f32|f16|bf16|q8|q4] [--lora DIR]...
//                      [--lora-scaled DIR S]... [--keep-lora] [--zstd [LEVEL]] [-t N] [-q]
//
// Exit status: 0 written; 2 bad arguments; 3 the input could not be read or is malformed;
// 4 the input asks for something unsupported; 5 the output could not be written; 1 other.
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "stackllama/stackllama.hpp"

namespace {

const char* kUsage =
    "usage: stackllama-convert IN_DIR OUT_FILE [options]\n"
    "\n"
    "Converts a Hugging Face LLaMA directory (safetensors, sharded or not) to a stackllama\n"
    "native file that loads by mmap.\n"
    "\n"
    "  --type T            store the matrices as f32, f16, bf16, q8 (8.5 bits per weight)\n"
    "                      or q4 (4.5 bits) (default: as stored); adapters are merged in\n"
    "                      f32 first, then the result is converted\n"
    "  --lora DIR          merge a PEFT LoRA adapter into the weights (repeatable)\n"
    "  --lora-scaled DIR S merge an adapter with its scale multiplied by S (repeatable)\n"
    "  --keep-lora         store the adapters unmerged, with their scales, instead of merging\n"
    "                      them (loaded back by bundled_adapters(); the CLI attaches them)\n"
    "  --zstd [LEVEL]      compress tensor data with zstd (default level 3) for distribution\n"
    "  -t, --threads N     threads (default: the physical cores)\n"
    "  -q, --quiet         no progress bar\n"
    "\n"
    "Exit status: 0 written, 2 bad arguments, 3 unreadable or malformed input, 4 unsupported\n"
    "input, 5 output not written, 1 other errors.\n";

struct Args {
    std::string in, out;
    bool convert = false;
    stackllama::DType type = stackllama::DType::f16;
    std::vector<std::pair<std::string, float>> loras;
    bool keep_lora = false;
    int zstd = 0;
    int threads = 0;
    bool quiet = false;
};

Args parse(int argc, char** argv) {
    Args a;
    std::vector<std::string> pos;
    for (int i = 1; i < argc; ++i) {
        std::string s = argv[i];
        auto next = [&]() -> std::string {
            if (i + 1 >= argc) throw std::invalid_argument(s + " needs a value");
            return argv[++i];
        };
        if (s == "--type") {
            std::string t = next();
            a.convert = true;
            if (!stackllama::parse_dtype_name(t, &a.type))
                throw std::invalid_argument("--type must be f32, f16, bf16, q8 or q4, got " + t);
        } else if (s == "--lora") {
            a.loras.push_back({next(), 1.0f});
        } else if (s == "--lora-scaled") {
            std::string dir = next();
            std::string v = next();
            char* end = nullptr;
            float f = std::strtof(v.c_str(), &end);
            if (end == v.c_str() || *end) throw std::invalid_argument("--lora-scaled needs a number, got " + v);
            a.loras.push_back({dir, f});
        } else if (s == "--keep-lora") {
            a.keep_lora = true;
        } else if (s == "--zstd") {
            a.zstd = 3;
            if (i + 1 < argc && argv[i + 1][0] >= '0' && argv[i + 1][0] <= '9') {
                a.zstd = std::atoi(argv[++i]);
                if (a.zstd < 1 || a.zstd > 19) throw std::invalid_argument("--zstd level must be 1..19");
            }
        } else if (s == "-t" || s == "--threads") {
            a.threads = std::atoi(next().c_str());
        } else if (s == "-q" || s == "--quiet") {
            a.quiet = true;
        } else if (s == "-h" || s == "--help") {
            std::fputs(kUsage, stdout);
            std::exit(0);
        } else if (!s.empty() && s[0] == '-') {
            throw std::invalid_argument("unknown option " + s);
        } else {
            pos.push_back(s);
        }
    }
    if (pos.size() != 2) throw std::invalid_argument("expected IN_DIR and OUT_FILE");
    a.in = pos[0];
    a.out = pos[1];
    return a;
}

int exit_code(const stackllama::Error& e, bool writing) {
    using stackllama::ErrorCode;
    if (writing && e.code() == ErrorCode::io) return 5;
    switch (e.code()) {
        case ErrorCode::io:
        case ErrorCode::format: return 3;
        case ErrorCode::unsupported: return 4;
        default: return 1;
    }
}

}  // namespace

int main(int argc, char** argv) {
    Args a;
    try {
        a = parse(argc, argv);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "stackllama-convert: %s\n%s", e.what(), kUsage);
        return 2;
    }
    const bool bar = !a.quiet && isatty(STDERR_FILENO);
    bool writing = false;
    try {
        stackllama::ModelParams mp;
        mp.n_threads = a.threads;
        // Carry the tokenizer when there is one; weights-only checkpoints convert too.
        mp.load_tokenizer = access((a.in + "/tokenizer.model").c_str(), R_OK) == 0 ||
                            access(a.in.c_str(), F_OK) != 0;
        auto model = stackllama::Model::load(a.in, mp);
        stackllama::NativeSaveOptions o;
        if (!a.loras.empty()) {
            // Loaded here either way, so an adapter for another model is refused before writing.
            std::vector<stackllama::AdapterRef> refs;
            for (const auto& [dir, s] : a.loras)
                refs.push_back({stackllama::Adapter::load(model, dir), s});
            if (a.keep_lora) {
                o.adapters = a.loras;
            } else {
                model = stackllama::merge_adapters(model, refs);
            }
        }
        o.convert = a.convert;
        o.type = a.type;
        o.zstd_level = a.zstd;
        o.n_threads = a.threads;
        const auto t0 = std::chrono::steady_clock::now();
        if (bar) {
            o.progress = [](uint64_t done, uint64_t total) {
                const int width = 40;
                const int filled = total ? int(double(done) / double(total) * width) : width;
                std::fprintf(stderr, "\r[%.*s%*s] %5.1f%% of %.2f GB", filled,
                             "########################################", width - filled, "",
                             total ? 100.0 * double(done) / double(total) : 100.0,
                             double(total) / 1e9);
                std::fflush(stderr);
            };
        }
        writing = true;
        model->save_native(a.out, o);
        if (bar) std::fputc('\n', stderr);
        const double s =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        if (!a.quiet)
            std::fprintf(stderr, "stackllama-convert: wrote %s in %.1f s\n", a.out.c_str(), s);
        return 0;
    } catch (const stackllama::Error& e) {
        if (bar) std::fputc('\n', stderr);
        std::fprintf(stderr, "stackllama-convert: error: %s\n", e.what());
        return exit_code(e, writing);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "stackllama-convert: error: %s\n", e.what());
        return 1;
    }
}
