// stackllama-bench: prefill and decode speed of a LLaMA model, printed like llama.cpp's
// llama-bench, with the decode rate also as GB/s of weights read beside the memory read bandwidth
// measured in the same run, and the process's memory beside weights + KV cache (the goal: peak
// memory <= weights + KV cache + 10 %).
//
//   stackllama-bench (-m PATH | --shape 1b|7b) [--type LIST] [-p N] [-n N] [-t N] [-r N]
//                    [--lora DIR] [-o md|json]
//
// --shape builds random weights in memory through the library's internals (nothing is written to
// disk). Each configuration (model x type) runs in a child process of its own, so that its
// memory figures are its own and not the high-water mark of an earlier, larger one.
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "adapter/adapter_impl.hpp"
#include "bandwidth.hpp"
#include "bench_args.hpp"
#include "random_model.hpp"
#include "kernels/isa.hpp"
#include "kernels/kernels.hpp"
#include "kernels/quant.hpp"
#include "model/convert.hpp"
#include "model/model_impl.hpp"
#include "stackllama/stackllama.hpp"
#include "util/thread_pool.hpp"

namespace {

using namespace stackllama;
using stackllama_bench::Shape;
using stackllama_bench::kShapes;
using stackllama_bench::all_matrices;
using stackllama_bench::build_random_model;
using stackllama_bench::Rng;
using stackllama_bench::shape_config;
using stackllama_bench::shaped_weights;
using kernels::WeightType;
using Clock = std::chrono::steady_clock;
using json = nlohmann::ordered_json;  // keys in the order written

constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;

// --- options -------------------------------------------------------------------------------------


struct Options {
    std::string model_path;
    const Shape* shape = nullptr;
    std::vector<std::optional<WeightType>> types;  // nullopt: as stored (-m without --type)
    int n_prompt = 128;
    int n_gen = 64;
    int threads = 0;
    int reps = 5;
    std::string lora;
    bool json_out = false;
};

void usage(FILE* f) {
    std::fprintf(
        f,
        "usage: stackllama-bench (-m PATH | --shape 1b|7b) [options]\n"
        "\n"
        "Prefill (ppN) and decode (tgN) tokens/s, mean +- sd over the repetitions; decode also\n"
        "as GB/s of weights read and as a share of the memory read bandwidth measured just before\n"
        "and just after the timed runs; load time; resident memory against weights + KV cache.\n"
        "Each configuration runs in a process of its own.\n"
        "\n"
        "  -m, --model PATH  a Hugging Face LLaMA directory or a native .sllm file\n"
        "  --shape 1b|7b     random weights built in memory (nothing is written to disk):\n"
        "                    1b = TinyLlama 1.1B: hidden 2048, 22 layers, 32 heads (4 kv),\n"
        "                         ffn 5632\n"
        "                    7b = LLaMA-1 7B: hidden 4096, 32 layers, 32 heads, ffn 11008\n"
        "                    both with vocab 32000 and an untied LM head\n"
        "  --type LIST       weight types, comma-separated, each benchmarked in turn: f32, f16,\n"
        "                    bf16, q8, q4. With -m: converted at load (default: as stored); with\n"
        "                    --shape: default q4\n"
        "  -p N              prompt tokens, default 128\n"
        "  -n N              generated tokens, default 64\n"
        "  -t N              threads, default all hardware threads (%d here)\n"
        "  -r N              timed repetitions after one warm-up run, default 5\n"
        "  --lora DIR        attach a PEFT LoRA adapter, unmerged (only with -m: --shape runs\n"
        "                    without adapters)\n"
        "  -o md|json        output: a markdown table (default) or a JSON array, one object per\n"
        "                    configuration\n"
        "  -h, --help        this text\n"
        "\n"
        "Exit status: 0 done, 1 a configuration failed, 2 bad arguments.\n",
        ThreadPool::default_threads());
}

[[noreturn]] void bad_argument(const std::string& msg) {
    std::fprintf(stderr, "stackllama-bench: %s (see --help)\n", msg.c_str());
    std::exit(2);
}

int positive_int(const std::string& flag, const std::string& v) {
    char* end = nullptr;
    errno = 0;
    const long n = std::strtol(v.c_str(), &end, 10);
    if (v.empty() || *end != '\0' || errno != 0 || n < 1 || n > (1 << 24))
        bad_argument(flag + " needs a positive integer, got '" + v + "'");
    return int(n);
}

Options parse_args(int argc, char** argv) {
    Options o;
    std::string type_list;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        const auto value = [&]() -> std::string {
            if (i + 1 >= argc) bad_argument(a + " needs a value");
            return argv[++i];
        };
        if (a == "-h" || a == "--help") {
            usage(stdout);
            std::exit(0);
        } else if (a == "-m" || a == "--model") {
            o.model_path = value();
        } else if (a == "--shape") {
            const std::string s = value();
            for (const Shape& sh : kShapes)
                if (s == sh.key) o.shape = &sh;
            if (!o.shape) bad_argument("--shape must be 1b or 7b, got '" + s + "'");
        } else if (a == "--type") {
            type_list = value();
        } else if (a == "-p") {
            o.n_prompt = positive_int(a, value());
        } else if (a == "-n") {
            o.n_gen = positive_int(a, value());
        } else if (a == "-t") {
            o.threads = positive_int(a, value());
        } else if (a == "-r") {
            o.reps = positive_int(a, value());
        } else if (a == "--lora") {
            o.lora = value();
        } else if (a == "-o") {
            const std::string f = value();
            if (f != "md" && f != "json") bad_argument("-o must be md or json, got '" + f + "'");
            o.json_out = f == "json";
        } else {
            bad_argument("unknown argument '" + a + "'");
        }
    }
    if (o.model_path.empty() == !o.shape) bad_argument("give exactly one of -m PATH and --shape");
    if (!o.lora.empty() && o.shape)
        bad_argument("--lora needs -m (random --shape models run without adapters)");
    if (o.threads == 0) o.threads = ThreadPool::default_threads();
    if (type_list.empty()) {
        o.types.push_back(o.shape ? std::optional<WeightType>(WeightType::q4) : std::nullopt);
    } else {
        for (const std::string& name : stackllama_bench::split_list(type_list)) {
            DType t;
            if (!parse_dtype_name(name, &t))
                bad_argument("--type takes f32, f16, bf16, q8, q4 (comma-separated), got '" +
                             name + "'");
            o.types.push_back(static_cast<WeightType>(t));
        }
    }
    return o;
}


// --- one configuration ---------------------------------------------------------------------------

struct Totals {
    uint64_t bytes = 0;   // every matrix and norm vector as held
    uint64_t params = 0;
};

Totals weight_totals(const LlamaWeights& w) {
    Totals t;
    for (const kernels::Matrix* m : all_matrices(w)) {
        t.bytes += m->bytes();
        t.params += uint64_t(m->rows) * m->cols;
    }
    uint64_t norms = w.final_norm.size();
    for (const LayerWeights& L : w.layers) norms += L.attn_norm.size() + L.ffn_norm.size();
    t.bytes += 4 * norms;
    t.params += norms;
    return t;
}

// K and V caches of n_ctx positions, f32: [layer][kv_head][position][head_dim] each.
uint64_t kv_cache_bytes(const ModelConfig& c, int n_ctx) {
    return 2ull * uint64_t(c.num_hidden_layers) * uint64_t(c.num_key_value_heads) *
           uint64_t(n_ctx) * uint64_t(c.head_dim) * sizeof(float);
}

uint64_t current_rss_bytes() {
    long pages = 0, resident = 0;
    FILE* f = std::fopen("/proc/self/statm", "r");
    if (!f) return 0;
    const int n = std::fscanf(f, "%ld %ld", &pages, &resident);
    std::fclose(f);
    return n == 2 ? uint64_t(resident) * uint64_t(sysconf(_SC_PAGESIZE)) : 0;
}

uint64_t peak_rss_bytes() {
    rusage u{};
    getrusage(RUSAGE_SELF, &u);
    return uint64_t(u.ru_maxrss) * 1024;  // Linux reports KiB
}

struct Run {
    double prefill_tps, decode_tps;
};

// Prefill of the prompt, then n_gen tokens decoded one at a time, each the argmax of the last
// logits, as greedy generation does.
Run timed_run(Generator& gen, const std::vector<int32_t>& prompt, int n_gen, int vocab,
              bool check_finite) {
    gen.reset();
    const auto t0 = Clock::now();
    LogitsView lv = gen.eval(prompt);
    const auto t1 = Clock::now();
    if (check_finite) {
        for (size_t i = 0; i < lv.n_vocab; ++i)
            if (!std::isfinite(lv.row(0)[i]))
                throw Error(ErrorCode::internal, "the prompt's logits are not finite (logit " +
                                                     std::to_string(i) + ")");
    }
    const auto t2 = Clock::now();
    for (int i = 0; i < n_gen; ++i) {
        const float* row = lv.row(0);
        const int32_t tok = int32_t(std::max_element(row, row + vocab) - row);
        lv = gen.eval({tok});
    }
    const auto t3 = Clock::now();
    return {double(prompt.size()) / std::chrono::duration<double>(t1 - t0).count(),
            double(n_gen) / std::chrono::duration<double>(t3 - t2).count()};
}

json stats(const std::vector<double>& v) {
    double mean = 0;
    for (double x : v) mean += x;
    mean /= double(v.size());
    double ss = 0;
    for (double x : v) ss += (x - mean) * (x - mean);
    const double sd = v.size() > 1 ? std::sqrt(ss / double(v.size() - 1)) : 0.0;
    return {{"avg_ts", mean}, {"stddev_ts", sd}, {"samples_ts", v}};
}

std::string base_name(const std::string& path) {
    std::string p = path;
    while (p.size() > 1 && p.back() == '/') p.pop_back();
    const size_t s = p.rfind('/');
    return s == std::string::npos ? p : p.substr(s + 1);
}

// Loads or builds the model, runs the benchmark and returns every figure. Runs in the child.
json run_config(const Options& o, std::optional<WeightType> type) {
    const uint64_t rss_at_start = current_rss_bytes();  // the program and its libraries
    const auto t0 = Clock::now();
    std::shared_ptr<const Model> model;
    if (o.shape) {
        model = build_random_model(*o.shape, *type, o.threads);
    } else {
        ModelParams mp;
        mp.n_threads = o.threads;
        mp.load_tokenizer = false;
        if (type) mp.weight_type = static_cast<DType>(*type);
        model = Model::load(o.model_path, mp);
    }
    const double load_s = std::chrono::duration<double>(Clock::now() - t0).count();
    const uint64_t rss_after_load = current_rss_bytes();
    const ModelConfig& c = model->config();
    const LlamaWeights& w = model->impl().weights;
    const Totals totals = weight_totals(w);

    const int n_ctx = o.n_prompt + o.n_gen;  // the timed runs fill it exactly
    if (n_ctx > c.max_position_embeddings)
        throw Error(ErrorCode::invalid_argument,
                    "-p + -n = " + std::to_string(n_ctx) + " exceeds the model's " +
                        "max_position_embeddings " + std::to_string(c.max_position_embeddings));
    GeneratorParams gp;
    gp.n_ctx = n_ctx;
    Generator gen(model, gp);

    // An attached adapter's factors (f32) are read for every token, and are weights in memory.
    uint64_t adapter_bytes = 0;
    double adapter_load_s = 0;
    if (!o.lora.empty()) {
        const auto ta = Clock::now();
        auto adapter = Adapter::load(model, o.lora);
        adapter_load_s = std::chrono::duration<double>(Clock::now() - ta).count();
        for (const LoraModule& lm : adapter->impl().loras)
            adapter_bytes += (lm.a.size() + lm.b.size() + lm.b_bias.size()) * sizeof(float);
        gen.attach(adapter);
    }

    // Random ids in [3, vocab): past the usual <unk>, <s>, </s>.
    const int vocab = c.vocab_size;
    if (vocab <= 3) throw Error(ErrorCode::invalid_argument, "the vocabulary is too small");
    std::vector<int32_t> prompt(size_t(o.n_prompt));
    Rng rng(12345, 0);
    for (int32_t& id : prompt) id = int32_t(3 + rng.next() % uint64_t(vocab - 3));

    // Warm-up: faults in mapped weights, sizes OpenBLAS's buffers, checks the numbers are sane.
    timed_run(gen, prompt, std::min(o.n_gen, 4), vocab, true);
    // Taken before the bandwidth measurements, whose 512 MiB buffer would otherwise count. The
    // Generator allocated its buffers when it was made, so the timed runs add next to nothing;
    // what they add is caught by the RSS taken after them.
    const uint64_t peak_rss_after_warm_up = peak_rss_bytes();

    const stackllama_bench::Bandwidth bw0 = stackllama_bench::read_bandwidth(o.threads);
    std::vector<double> pp, tg;
    for (int r = 0; r < o.reps; ++r) {
        const Run run = timed_run(gen, prompt, o.n_gen, vocab, false);
        pp.push_back(run.prefill_tps);
        tg.push_back(run.decode_tps);
    }
    const uint64_t rss_after_runs = current_rss_bytes();
    const uint64_t peak_rss = std::max(peak_rss_after_warm_up, rss_after_runs);
    const stackllama_bench::Bandwidth bw1 = stackllama_bench::read_bandwidth(o.threads);
    const double bw_mean = (bw0.median_gbs + bw1.median_gbs) / 2;

    const uint64_t bytes_per_token = w.matrix_bytes + adapter_bytes;
    json decode = stats(tg);
    const double gbs = decode["avg_ts"].get<double>() * double(bytes_per_token) / 1e9;
    decode["gbs"] = gbs;
    decode["pct_of_read_bw"] = 100.0 * gbs / bw_mean;

    const uint64_t weights_bytes = totals.bytes + adapter_bytes;
    const uint64_t kv_bytes = kv_cache_bytes(c, n_ctx);
    json r;
    r["model"] = o.shape ? std::string(o.shape->label) : base_name(o.model_path);
    r["model_path"] = o.shape ? json(nullptr) : json(o.model_path);
    r["shape"] = o.shape ? json(o.shape->key) : json(nullptr);
    r["type"] = dtype_name(model->weight_dtype());
    r["lora"] = o.lora.empty() ? json(nullptr) : json(o.lora);
    r["params"] = totals.params;
    r["size_bytes"] = totals.bytes;
    r["bytes_per_token"] = bytes_per_token;
    r["threads"] = model->n_threads();
    r["isa"] = kernels::isa_name(kernels::active_isa());
    r["n_prompt"] = o.n_prompt;
    r["n_gen"] = o.n_gen;
    r["n_ctx"] = n_ctx;
    r["reps"] = o.reps;
    r["load_s"] = load_s;
    r["adapter_load_s"] = adapter_load_s;
    r["prefill"] = stats(pp);
    r["decode"] = decode;
    r["read_bw_gbs"] = {{"before", bw0.median_gbs}, {"after", bw1.median_gbs}, {"mean", bw_mean},
                        {"before_best", bw0.best_gbs}, {"after_best", bw1.best_gbs}};
    r["memory"] = {{"weights_bytes", weights_bytes},
                   {"adapter_bytes", adapter_bytes},
                   {"kv_cache_bytes", kv_bytes},
                   {"rss_at_start_bytes", rss_at_start},
                   {"rss_after_load_bytes", rss_after_load},
                   {"peak_rss_bytes", peak_rss},
                   {"rss_after_runs_bytes", rss_after_runs},
                   {"peak_over_weights_kv", double(peak_rss) / double(weights_bytes + kv_bytes)}};
    return r;
}

// Runs run_config in a child process and returns its figures, or nullopt when it failed (it has
// said why on stderr).
std::optional<json> run_in_child(const Options& o, std::optional<WeightType> type) {
    int fds[2];
    if (pipe(fds) != 0) {
        std::perror("stackllama-bench: pipe");
        return std::nullopt;
    }
    std::fflush(stdout);
    std::fflush(stderr);
    const pid_t pid = fork();
    if (pid < 0) {
        std::perror("stackllama-bench: fork");
        return std::nullopt;
    }
    if (pid == 0) {
        close(fds[0]);
        int status = 0;
        try {
            const std::string out = run_config(o, type).dump();
            size_t done = 0;
            while (done < out.size()) {
                const ssize_t k = write(fds[1], out.data() + done, out.size() - done);
                if (k <= 0) break;
                done += size_t(k);
            }
        } catch (const std::exception& e) {
            std::fprintf(stderr, "stackllama-bench: %s\n", e.what());
            status = 1;
        }
        std::fflush(stderr);
        // Without destructors: freeing gigabytes of weights page by page takes a while.
        _exit(status);
    }
    close(fds[1]);
    std::string text;
    char buf[4096];
    for (;;) {
        const ssize_t k = read(fds[0], buf, sizeof buf);
        if (k > 0) text.append(buf, size_t(k));
        else if (k == 0 || errno != EINTR) break;
    }
    close(fds[0]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (WIFSIGNALED(status)) {
        std::fprintf(stderr, "stackllama-bench: the run was killed by signal %d%s\n",
                     WTERMSIG(status), WTERMSIG(status) == SIGKILL ? " (out of memory?)" : "");
        return std::nullopt;
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || text.empty()) return std::nullopt;
    json r = json::parse(text, nullptr, false);
    if (r.is_discarded()) {
        std::fprintf(stderr, "stackllama-bench: the run's report is not JSON: %s\n", text.c_str());
        return std::nullopt;
    }
    return r;
}

// --- output -------------------------------------------------------------------------------------

// 1.23 GiB, 456.7 MiB or 89.0 KiB.
std::string human_bytes(double b) {
    char s[32];
    if (b >= kGiB) std::snprintf(s, sizeof s, "%.2f GiB", b / kGiB);
    else if (b >= 1024.0 * 1024.0) std::snprintf(s, sizeof s, "%.1f MiB", b / (1024.0 * 1024.0));
    else std::snprintf(s, sizeof s, "%.1f KiB", b / 1024.0);
    return s;
}

void print_md_header() {
    std::printf("| model | type | size | params | threads | test | t/s | GB/s | %% of read BW |\n");
    std::printf("| --- | --- | ---: | ---: | ---: | --- | ---: | ---: | ---: |\n");
    std::fflush(stdout);
}

// The model, and the adapter attached to it.
std::string model_label(const json& r) {
    return r["model"].get<std::string>() +
           (r["lora"].is_null() ? "" : " + " + base_name(r["lora"].get<std::string>()));
}

void print_md_rows(const json& r) {
    const std::string model = model_label(r);
    const std::string size = human_bytes(r["size_bytes"].get<double>());
    const double params = r["params"].get<double>();
    char p[32];
    if (params >= 1e9) std::snprintf(p, sizeof p, "%.2f B", params / 1e9);
    else if (params >= 1e6) std::snprintf(p, sizeof p, "%.2f M", params / 1e6);
    else std::snprintf(p, sizeof p, "%.0f K", params / 1e3);
    const std::string type = r["type"];
    const int threads = r["threads"];
    const json& pp = r["prefill"];
    const json& tg = r["decode"];
    std::printf("| %s | %s | %s | %s | %d | pp%d | %.2f ± %.2f | - | - |\n", model.c_str(),
                type.c_str(), size.c_str(), p, threads, r["n_prompt"].get<int>(),
                pp["avg_ts"].get<double>(), pp["stddev_ts"].get<double>());
    std::printf("| %s | %s | %s | %s | %d | tg%d | %.2f ± %.2f | %.1f | %.0f %% |\n",
                model.c_str(), type.c_str(), size.c_str(), p, threads, r["n_gen"].get<int>(),
                tg["avg_ts"].get<double>(), tg["stddev_ts"].get<double>(), tg["gbs"].get<double>(),
                tg["pct_of_read_bw"].get<double>());
    std::fflush(stdout);
}

void print_md_summary(const json& r) {
    const json& bw = r["read_bw_gbs"];
    const json& m = r["memory"];
    const auto mem = [&](const char* k) { return human_bytes(m[k].get<double>()); };
    std::printf("\n%s %s: read BW %.1f GB/s before, %.1f after (mean %.1f); %s read per token; "
                "load %.2f s; kernels %s\n",
                model_label(r).c_str(), r["type"].get<std::string>().c_str(),
                bw["before"].get<double>(), bw["after"].get<double>(), bw["mean"].get<double>(),
                human_bytes(r["bytes_per_token"].get<double>()).c_str(), r["load_s"].get<double>(),
                r["isa"].get<std::string>().c_str());
    std::printf("memory: RSS at start %s, after load %s, peak %s; weights %s + KV cache %s "
                "(n_ctx %d) = %s; peak = %.2f x that\n",
                mem("rss_at_start_bytes").c_str(), mem("rss_after_load_bytes").c_str(),
                mem("peak_rss_bytes").c_str(), mem("weights_bytes").c_str(),
                mem("kv_cache_bytes").c_str(), r["n_ctx"].get<int>(),
                human_bytes(m["weights_bytes"].get<double>() + m["kv_cache_bytes"].get<double>())
                    .c_str(),
                m["peak_over_weights_kv"].get<double>());
}

}  // namespace

int main(int argc, char** argv) {
    const Options o = parse_args(argc, argv);

    // Random weights: refuse what cannot fit in memory before building anything.
    if (o.shape) {
        const ModelConfig c = shape_config(*o.shape);
        if (o.n_prompt + o.n_gen > c.max_position_embeddings)
            bad_argument("-p + -n = " + std::to_string(o.n_prompt + o.n_gen) +
                         " exceeds the context of " + std::to_string(c.max_position_embeddings));
        const double phys = double(sysconf(_SC_PHYS_PAGES)) * double(sysconf(_SC_PAGESIZE));
        for (const auto& t : o.types) {
            const double need = double(weight_totals(shaped_weights(c, *t)).bytes) +
                                double(kv_cache_bytes(c, o.n_prompt + o.n_gen));
            const char* name = kernels::weight_type_name(*t);
            if (need > phys) {
                char msg[200];
                std::snprintf(msg, sizeof msg,
                              "--shape %s in %s needs %.1f GB of memory but this machine has "
                              "%.1f GiB; try q8 or q4",
                              o.shape->key, name, need / 1e9, phys / kGiB);
                bad_argument(msg);
            }
            if (need > phys / 2)
                std::fprintf(stderr,
                             "stackllama-bench: warning: --shape %s in %s takes %.1f GB of the "
                             "machine's %.1f GiB\n", o.shape->key, name, need / 1e9, phys / kGiB);
        }
    }

    json results = json::array();
    bool failed = false;
    for (const auto& t : o.types) {
        std::fprintf(stderr, "stackllama-bench: %s %s, %d threads ...\n",
                     o.shape ? o.shape->key : o.model_path.c_str(),
                     t ? kernels::weight_type_name(*t) : "(as stored)", o.threads);
        const std::optional<json> r = run_in_child(o, t);
        if (!r) {
            failed = true;
            continue;
        }
        if (!o.json_out) {
            if (results.empty()) print_md_header();
            print_md_rows(*r);
        }
        results.push_back(*r);
    }
    if (o.json_out) {
        std::printf("%s\n", results.dump(2).c_str());
    } else {
        for (const json& r : results) print_md_summary(r);
    }
    return failed ? 1 : 0;
}
