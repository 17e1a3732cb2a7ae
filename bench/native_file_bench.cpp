// The native file's trade-offs, measured: for f16 and q4, uncompressed and zstd, the file size,
// the time to write it, and the time from Model::load to the first token's logits with a warm
// page cache (and, with --cold, after dropping the file from the page cache).
//
//   native_file_bench (-m MODEL | --shape 1b|7b) OUT_DIR [--types f16,q4] [--zstd LEVEL]
//                     [-t THREADS] [-r REPS] [--cold] [--keep]
//
// MODEL is a Hugging Face directory or a native file; --shape builds random weights in memory
// (bench/random_model.hpp), so a 7B-shaped file never has to exist in Hugging Face form. The
// files are written to OUT_DIR and removed at the end unless --keep.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "bench_args.hpp"
#include "random_model.hpp"
#include "stackllama/stackllama.hpp"

namespace {

using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;

double seconds_since(Clock::time_point t0) {
    return std::chrono::duration<double>(Clock::now() - t0).count();
}

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v.empty() ? 0.0 : v[v.size() / 2];
}

// Drops the file's clean pages from the page cache (no root needed), for a cold load.
void drop_from_page_cache(const std::string& path) {
    const int fd = open(path.c_str(), O_RDONLY);
    if (fd < 0) return;
    fdatasync(fd);
    posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    close(fd);
}

struct Timing {
    double load_s;         // Model::load
    double first_token_s;  // Model::load + Generator + eval of one token
};

Timing time_to_first_token(const std::string& path, int threads) {
    stackllama::ModelParams mp;
    mp.n_threads = threads;
    mp.load_tokenizer = false;
    const auto t0 = Clock::now();
    auto model = stackllama::Model::load(path, mp);
    const double load = seconds_since(t0);
    stackllama::GeneratorParams gp;
    gp.n_ctx = 64;
    stackllama::Generator gen(model, gp);
    auto lv = gen.eval({1});
    (void)lv;
    return {load, seconds_since(t0)};
}

struct Args {
    std::string model, shape, out_dir;
    std::vector<std::string> types{"f16", "q4"};
    int zstd = 3;
    int threads = 0;
    int reps = 3;
    bool cold = false;
    bool keep = false;
};

Args parse(int argc, char** argv) {
    Args a;
    for (int i = 1; i < argc; ++i) {
        const std::string s = argv[i];
        auto next = [&]() -> std::string {
            if (i + 1 >= argc) throw std::invalid_argument(s + " needs a value");
            return argv[++i];
        };
        if (s == "-m") a.model = next();
        else if (s == "--shape") a.shape = next();
        else if (s == "--types") a.types = stackllama_bench::split_list(next());
        else if (s == "--zstd") a.zstd = std::atoi(next().c_str());
        else if (s == "-t") a.threads = std::atoi(next().c_str());
        else if (s == "-r") a.reps = std::max(1, std::atoi(next().c_str()));
        else if (s == "--cold") a.cold = true;
        else if (s == "--keep") a.keep = true;
        else if (!s.empty() && s[0] != '-' && a.out_dir.empty()) a.out_dir = s;
        else throw std::invalid_argument("unknown argument " + s);
    }
    if (a.out_dir.empty() || a.model.empty() == a.shape.empty())
        throw std::invalid_argument("give OUT_DIR and one of -m MODEL or --shape 1b|7b");
    for (const auto& t : a.types)
        if (!stackllama::parse_dtype_name(t, nullptr)) throw std::invalid_argument("bad type " + t);
    if (a.zstd < 1 || a.zstd > 19) throw std::invalid_argument("--zstd must be 1..19");
    return a;
}

}  // namespace

int main(int argc, char** argv) {
    Args a;
    try {
        a = parse(argc, argv);
    } catch (const std::exception& e) {
        std::fprintf(stderr,
                     "native_file_bench: %s\nusage: native_file_bench (-m MODEL | --shape 1b|7b) "
                     "OUT_DIR [--types f16,q4] [--zstd LEVEL] [-t THREADS] [-r REPS] [--cold] "
                     "[--keep]\n",
                     e.what());
        return 2;
    }
    try {
        fs::create_directories(a.out_dir);
        std::shared_ptr<const stackllama::Model> source;
        std::string name;
        auto t0 = Clock::now();
        if (!a.model.empty()) {
            stackllama::ModelParams mp;
            mp.n_threads = a.threads;
            mp.load_tokenizer = false;
            source = stackllama::Model::load(a.model, mp);
            name = a.model;
        } else {
            // Gaussian f16 weights: what compresses like a real checkpoint (random bits would not
            // compress at all), quantized from there for q4.
            source = stackllama_bench::build_random_model(
                stackllama_bench::shape_by_name(a.shape), stackllama::kernels::WeightType::f16,
                a.threads > 0 ? a.threads : int(std::thread::hardware_concurrency()));
            name = a.shape + " (random N(0, 0.02) weights)";
        }
        std::printf("source: %s, built or loaded in %.1f s\n\n", name.c_str(), seconds_since(t0));
        std::printf("| file | type | zstd | size GB | ratio | write s | load s (warm) | first token s "
                    "(warm)%s |\n",
                    a.cold ? " | load s (cold) | first token s (cold)" : "");
        std::printf("|---|---|---|---:|---:|---:|---:|---:%s|\n", a.cold ? "|---:|---:" : "");
        std::fflush(stdout);
        // Every file is written first and the source freed before any is loaded: a 7B f16 model
        // in memory and its 13.5 GB file in the page cache would not both fit in 24 GiB.
        struct Written {
            std::string file, type;
            int level;
            double write_s, size, plain_size;
        };
        std::vector<Written> written;
        for (const std::string& type : a.types) {
            double plain_size = 0;
            for (int level : {0, a.zstd}) {
                const std::string file = a.out_dir + "/" + type + (level ? "-zstd" : "") + ".sllm";
                stackllama::NativeSaveOptions o;
                o.convert = true;
                stackllama::parse_dtype_name(type, &o.type);
                o.zstd_level = level;
                o.n_threads = a.threads;
                t0 = Clock::now();
                source->save_native(file, o);
                const double write_s = seconds_since(t0);
                const double size = double(fs::file_size(file));
                if (level == 0) plain_size = size;
                written.push_back({file, type, level, write_s, size, plain_size});
                std::fprintf(stderr, "native_file_bench: wrote %s (%.2f GB) in %.1f s\n",
                             file.c_str(), size / 1e9, write_s);
            }
        }
        source.reset();
        for (const Written& w : written) {
            if (!a.cold) time_to_first_token(w.file, a.threads);  // warms the page cache
            std::string cold;
            if (a.cold) {
                std::vector<double> cl, cf;
                for (int r = 0; r < a.reps; ++r) {
                    drop_from_page_cache(w.file);
                    const Timing t = time_to_first_token(w.file, a.threads);
                    cl.push_back(t.load_s);
                    cf.push_back(t.first_token_s);
                }
                char buf[64];
                std::snprintf(buf, sizeof buf, " | %.3f | %.3f", median(cl), median(cf));
                cold = buf;
            }
            // Warm: the file was just read (the cold runs, or the warm-up above).
            std::vector<double> load, first;
            for (int r = 0; r < a.reps; ++r) {
                const Timing t = time_to_first_token(w.file, a.threads);
                load.push_back(t.load_s);
                first.push_back(t.first_token_s);
            }
            std::printf("| %s | %s | %s | %.3f | %.3f | %.1f | %.3f | %.3f%s |\n",
                        fs::path(w.file).filename().c_str(), w.type.c_str(),
                        w.level ? std::to_string(w.level).c_str() : "-", w.size / 1e9,
                        w.size / w.plain_size, w.write_s, median(load), median(first),
                        cold.c_str());
            std::fflush(stdout);
            if (!a.keep) fs::remove(w.file);
        }
        std::printf("\nratio: size over the uncompressed file of the same type; load and first "
                    "token: median of %d, %d threads\n",
                    a.reps, a.threads > 0 ? a.threads : int(std::thread::hardware_concurrency()));
        return 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "native_file_bench: %s\n", e.what());
        return 1;
    }
}
