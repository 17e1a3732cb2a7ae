// Several Generators decoding at once, as a server answers concurrent requests: each on threads
// of its own (the model's n_threads each, so G x n threads on n cores) against all on one shared
// WorkerPool of n threads. Each of G host threads evaluates a short prompt and then decodes N
// tokens one eval() at a time; the bench prints the aggregate decode tokens/s and the slowest
// generator's, medians over repetitions with the two modes interleaved, and their ratio.
//
//   shared_pool_bench [--shape 1b|7b] [--type q4|q8|f16|...] [-g GENERATORS] [-n TOKENS]
//                     [-t THREADS] [-r REPS]
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "random_model.hpp"
#include "stackllama/stackllama.hpp"
#include "util/thread_pool.hpp"

namespace {

using Clock = std::chrono::steady_clock;
using stackllama::Generator;
using stackllama::GeneratorParams;

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

struct Round {
    double aggregate_tps;  // all generators' decoded tokens / wall time of the whole round
    double slowest_tps;    // the slowest generator's own decode rate
};

// G generators on G host threads, started together; pool null = each its own threads.
Round run_round(const std::shared_ptr<const stackllama::Model>& model, int n_gen, int n_new,
                const std::shared_ptr<stackllama::WorkerPool>& pool) {
    GeneratorParams gp;
    gp.n_ctx = 16 + n_new;
    gp.pool = pool;
    std::vector<std::unique_ptr<Generator>> gens;
    for (int g = 0; g < n_gen; ++g) gens.push_back(std::make_unique<Generator>(model, gp));
    std::vector<double> decode_s(size_t(n_gen), 0.0);
    std::atomic<int> ready{0};
    std::atomic<bool> go{false};
    std::exception_ptr error;
    std::vector<std::thread> threads;
    Clock::time_point t0;
    for (int g = 0; g < n_gen; ++g) {
        threads.emplace_back([&, g] {
            try {
                Generator& gen = *gens[size_t(g)];
                std::vector<int32_t> prompt;
                for (int i = 0; i < 8; ++i) prompt.push_back(1 + (g * 8 + i) % 1000);
                ready.fetch_add(1);
                while (!go.load()) std::this_thread::yield();
                gen.eval(prompt);
                const auto d0 = Clock::now();
                int32_t next = 7 + g;
                for (int i = 0; i < n_new; ++i) {
                    const auto lv = gen.eval({next});
                    next = int32_t(std::max_element(lv.data, lv.data + lv.n_vocab) - lv.data);
                }
                decode_s[size_t(g)] = std::chrono::duration<double>(Clock::now() - d0).count();
            } catch (...) {
                error = std::current_exception();
            }
        });
    }
    while (ready.load() < n_gen) std::this_thread::yield();
    t0 = Clock::now();
    go.store(true);
    for (auto& t : threads) t.join();
    const double wall = std::chrono::duration<double>(Clock::now() - t0).count();
    if (error) std::rethrow_exception(error);
    const double slowest = *std::max_element(decode_s.begin(), decode_s.end());
    return {double(n_gen) * n_new / wall, n_new / slowest};
}

}  // namespace

int main(int argc, char** argv) {
    std::string shape = "1b", type = "q4";
    int n_gen = 4, n_new = 32, threads = stackllama::ThreadPool::default_threads(), reps = 3;
    for (int i = 1; i < argc; i += 2) {
        const std::string a = argv[i];
        if (i + 1 >= argc) {
            std::fprintf(stderr, "%s needs a value\n", a.c_str());
            return 2;
        }
        const char* v = argv[i + 1];
        if (a == "--shape") shape = v;
        else if (a == "--type") type = v;
        else if (a == "-g") n_gen = std::atoi(v);
        else if (a == "-n") n_new = std::atoi(v);
        else if (a == "-t") threads = std::atoi(v);
        else if (a == "-r") reps = std::atoi(v);
        else {
            std::fprintf(stderr,
                         "usage: %s [--shape 1b|7b] [--type q4] [-g GENERATORS] [-n TOKENS] "
                         "[-t THREADS] [-r REPS]\n",
                         argv[0]);
            return 2;
        }
    }
    stackllama::DType dt;
    if (n_gen < 1 || n_new < 1 || threads < 1 || reps < 1 ||
        !stackllama::parse_dtype_name(type, &dt)) {
        std::fprintf(stderr, "bad arguments: need -g, -n, -t, -r >= 1 and a known --type\n");
        return 2;
    }
    try {
        const auto& sh = stackllama_bench::shape_by_name(shape);
        auto model = stackllama_bench::build_random_model(
            sh, static_cast<stackllama::kernels::WeightType>(dt), threads);
        auto pool = std::make_shared<stackllama::WorkerPool>(threads);
        std::printf("%s %s, %d generators on %d host threads, %d decoded tokens each; "
                    "own: %d threads per generator (%d in all); shared: one pool of %d\n\n",
                    sh.label, type.c_str(), n_gen, n_gen, n_new, threads, n_gen * threads,
                    threads);
        std::vector<double> own_agg, own_slow, shared_agg, shared_slow, ratio;
        run_round(model, n_gen, 4, pool);  // warm-up: page in the weights
        for (int r = 0; r < reps; ++r) {
            const Round own = run_round(model, n_gen, n_new, nullptr);
            const Round shared = run_round(model, n_gen, n_new, pool);
            own_agg.push_back(own.aggregate_tps);
            own_slow.push_back(own.slowest_tps);
            shared_agg.push_back(shared.aggregate_tps);
            shared_slow.push_back(shared.slowest_tps);
            ratio.push_back(shared.aggregate_tps / own.aggregate_tps);
        }
        std::printf("| threads | aggregate decode t/s | slowest generator t/s |\n|---|---:|---:|\n");
        std::printf("| own pools | %.2f | %.2f |\n", median(own_agg), median(own_slow));
        std::printf("| shared WorkerPool | %.2f | %.2f |\n", median(shared_agg),
                    median(shared_slow));
        std::printf("\nshared / own aggregate: %.2fx (median of %d interleaved pairs)\n",
                    median(ratio), reps);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "shared_pool_bench: %s\n", e.what());
        return 1;
    }
    return 0;
}
