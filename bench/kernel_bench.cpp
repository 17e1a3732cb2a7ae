// Kernel throughput: matrix-vector GB/s of weights read per type and ISA at LLaMA-7B and
// TinyLlama-1.1B shapes (decode), a whole-model sweep of matrix-vector products (the weight reads
// of one decoded token), and GEMM GFLOP/s for prefill batches; each decode figure beside the
// memory read bandwidth measured just before it in the same run.
//
//   kernel_bench [-t THREADS] [-r REPS] [--isa LIST] [--type LIST] [--model 7B,1.1B]
//                [--skip matvec,sweep,gemm] [--quick]
//   LIST: comma-separated (isa: scalar,avx2,avx512; type: f32,f16,bf16,q8,q4)
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include <cblas.h>

#include "bandwidth.hpp"
#include "bench_args.hpp"
#include "kernels/gemm.hpp"
#include "kernels/isa.hpp"
#include "kernels/kernels.hpp"
#include "kernels/quant.hpp"
#include "util/thread_pool.hpp"

using namespace stackllama;
using namespace stackllama::kernels;
using Clock = std::chrono::steady_clock;

namespace {

struct Options {
    int threads = 2;
    int reps = 7;
    bool quick = false;
    std::vector<std::string> isas, types, skip, models;
};

bool has(const std::vector<std::string>& v, const std::string& s) {
    return std::find(v.begin(), v.end(), s) != v.end();
}

double seconds_since(Clock::time_point t0) {
    return std::chrono::duration<double>(Clock::now() - t0).count();
}

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v.empty() ? 0.0 : v[v.size() / 2];
}

// One random matrix of the shape in f32 (N(0, 0.02)), converted to the type once and copied
// `copies` times to distinct memory, so passes over all copies stream from DRAM.
struct MatrixSet {
    std::vector<OwnedMatrix> copies;
    size_t bytes() const { return copies.empty() ? 0 : copies[0].m.bytes(); }
};

MatrixSet make_set(WeightType t, size_t rows, size_t cols, size_t copies, ThreadPool& pool) {
    std::vector<float> f(rows * cols);
    std::mt19937 rng(unsigned(rows * 31 + cols));
    std::normal_distribution<float> nd(0.0f, 0.02f);
    for (auto& v : f) v = nd(rng);
    const Matrix src{WeightType::f32, f.data(), rows, cols};
    MatrixSet s;
    s.copies.push_back(convert_matrix(table_reference(), src, t, pool));
    for (size_t i = 1; i < copies; ++i) {
        std::shared_ptr<void> mem = alloc_weight_memory(s.bytes());
        std::memcpy(mem.get(), s.copies[0].m.data, s.bytes());
        OwnedMatrix o{s.copies[0].m, mem};
        o.m.data = mem.get();
        s.copies.push_back(o);
    }
    return s;
}

struct Isa_ {
    const char* name;
    const KernelTable* table;
};

std::vector<Isa_> isas(const Options& o) {
    std::vector<Isa_> out;
    const std::pair<Isa, const KernelTable*> all[] = {
        {Isa::scalar, &table_scalar()}, {Isa::avx2, &table_avx2()}, {Isa::avx512, &table_avx512()}};
    for (const auto& [isa, t] : all) {
        if (!isa_supported(isa)) continue;
        if (!o.isas.empty() && !has(o.isas, isa_name(isa))) continue;
        out.push_back({isa_name(isa), t});
    }
    return out;
}

std::vector<WeightType> types(const Options& o) {
    std::vector<WeightType> out;
    for (WeightType t : {WeightType::f32, WeightType::f16, WeightType::bf16, WeightType::q8,
                         WeightType::q4}) {
        if (o.types.empty() || has(o.types, weight_type_name(t))) out.push_back(t);
    }
    return out;
}

struct Shape {
    const char* model;
    const char* what;
    size_t rows, cols;
};

const Shape kShapes[] = {
    {"7B", "q,k,v,o", 4096, 4096},    {"7B", "gate,up", 11008, 4096},
    {"7B", "down", 4096, 11008},      {"1.1B", "q,o", 2048, 2048},
    {"1.1B", "k,v", 256, 2048},       {"1.1B", "gate,up", 5632, 2048},
    {"1.1B", "down", 2048, 5632},
};

// --- matrix-vector ---------------------------------------------------------------------------------

void bench_matvec(const Options& o, ThreadPool& pool) {
    std::printf("\n## Matrix-vector (decode), %d threads\n\n", o.threads);
    std::printf("GB/s of weights read over passes through copies larger than the caches: wall "
                "clock median (best) of %d, and over the CPU time the threads got (cpu, median: "
                "robust when other processes share the cores). bw = read bandwidth measured just "
                "before, the same three ways. %% = GB/s / bw: median (best) [cpu].\n\n", o.reps);
    std::printf("| model | matrix | rows x cols | type | isa | us/call | GB/s | cpu GB/s | bw GB/s | cpu bw | %% of bw |\n");
    std::printf("|---|---|---|---|---|---:|---:|---:|---:|---:|---:|\n");
    const size_t min_total = size_t(o.quick ? 128 : 384) << 20;
    for (const Shape& sh : kShapes) {
        if (!o.models.empty() && !has(o.models, sh.model)) continue;
        for (WeightType t : types(o)) {
            const size_t bytes = Matrix{t, nullptr, sh.rows, sh.cols}.bytes();
            const size_t copies = std::max<size_t>(2, (min_total + bytes - 1) / bytes);
            MatrixSet set = make_set(t, sh.rows, sh.cols, copies, pool);
            std::vector<float> x(sh.cols), y(sh.rows);
            std::mt19937 rng(3);
            std::normal_distribution<float> nd(0.0f, 1.0f);
            for (auto& v : x) v = nd(rng);
            for (const Isa_& isa : isas(o)) {
                // Scalar is slow: fewer copies per pass.
                const size_t n_copies = std::string(isa.name) == "scalar"
                                            ? std::min<size_t>(copies, std::max<size_t>(2, copies / 8))
                                            : copies;
                const stackllama_bench::Bandwidth bw =
                    stackllama_bench::read_bandwidth(o.threads, size_t(256) << 20, 3);
                for (size_t c = 0; c < n_copies; ++c)  // warm-up pass
                    matvec(*isa.table, set.copies[c].m, x.data(), y.data(), pool);
                std::vector<double> wall, cpu;
                for (int r = 0; r < o.reps; ++r) {
                    const stackllama_bench::Stamp t0 = stackllama_bench::now();
                    for (size_t c = 0; c < n_copies; ++c)
                        matvec(*isa.table, set.copies[c].m, x.data(), y.data(), pool);
                    const stackllama_bench::Stamp t1 = stackllama_bench::now();
                    wall.push_back((t1.wall - t0.wall) / double(n_copies));
                    cpu.push_back((t1.cpu - t0.cpu) / o.threads / double(n_copies));
                }
                const double s = median(wall);
                const double gbs = double(bytes) / s / 1e9;
                const double best = double(bytes) / *std::min_element(wall.begin(), wall.end()) / 1e9;
                const double cgbs = double(bytes) / median(cpu) / 1e9;
                std::printf("| %s | %s | %zux%zu | %s | %s | %.1f | %.1f (%.1f) | %.1f | %.1f (%.1f) | "
                            "%.1f | %.0f (%.0f) [%.0f] |\n",
                            sh.model, sh.what, sh.rows, sh.cols, weight_type_name(t), isa.name,
                            s * 1e6, gbs, best, cgbs, bw.median_gbs, bw.best_gbs, bw.cpu_gbs,
                            100.0 * gbs / bw.median_gbs, 100.0 * best / bw.best_gbs,
                            100.0 * cgbs / bw.cpu_gbs);
                std::fflush(stdout);
            }
        }
    }
}

// --- whole-model sweep -------------------------------------------------------------------------------

struct ModelShape {
    const char* name;
    size_t dim, ffn, kv_dim, layers, vocab;
};

void bench_sweep(const Options& o, ThreadPool& pool) {
    const ModelShape models[] = {{"1.1B", 2048, 5632, 256, 22, 32000},
                                 {"7B", 4096, 11008, 4096, 32, 32000}};
    std::printf("\n## Decode sweep: every matrix of the model once (7 per layer and the LM head), "
                "as one decoded token reads them, in the model's dispatches ({q,k,v}, o, "
                "{gate,up}, down); %d threads\n\n", o.threads);
    std::printf("Matrix-vector time only (no attention, norms or sampling): an upper bound on "
                "decode tokens/s. Wall clock median (best) [cpu]; bw = read bandwidth measured just "
                "before, the same ways.\n\n");
    std::printf("| model | type | isa | GB/token | ms/token | tokens/s | GB/s | cpu GB/s | bw GB/s | cpu bw | %% of bw |\n");
    std::printf("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for (const ModelShape& ms : models) {
        if (!o.models.empty() && !has(o.models, ms.name)) continue;
        for (WeightType t : types(o)) {
            if (t == WeightType::f32 || t == WeightType::bf16) continue;  // f16 stands for both
            if (std::string(ms.name) == "7B" && t == WeightType::f16) continue;  // 13.5 GB
            if (o.quick && std::string(ms.name) == "7B") continue;
            // One matrix per shape, copied for every layer.
            const size_t shapes[4][2] = {{ms.dim, ms.dim}, {ms.kv_dim, ms.dim},
                                         {ms.ffn, ms.dim}, {ms.dim, ms.ffn}};
            std::vector<MatrixSet> per_shape;
            const size_t per_layer[4] = {2, 2, 2, 1};  // q,o / k,v / gate,up / down
            for (size_t k = 0; k < 4; ++k)
                per_shape.push_back(make_set(t, shapes[k][0], shapes[k][1],
                                             per_layer[k] * ms.layers, pool));
            MatrixSet head = make_set(t, ms.vocab, ms.dim, 1, pool);
            // In decode order, grouped as the model runs them (one dispatch per group, products of
            // one input together): {q, k, v}, o, {gate, up}, down per layer, then the head.
            std::vector<std::vector<const Matrix*>> order;
            size_t bytes = head.bytes();
            for (size_t l = 0; l < ms.layers; ++l) {
                order.push_back({&per_shape[0].copies[2 * l].m, &per_shape[1].copies[2 * l].m,
                                 &per_shape[1].copies[2 * l + 1].m});
                order.push_back({&per_shape[0].copies[2 * l + 1].m});
                order.push_back({&per_shape[2].copies[2 * l].m, &per_shape[2].copies[2 * l + 1].m});
                order.push_back({&per_shape[3].copies[l].m});
            }
            order.push_back({&head.copies[0].m});
            for (const auto& group : order)
                for (const Matrix* m : group) bytes += m->bytes();
            std::vector<float> x(std::max(ms.dim, ms.ffn), 0.01f);
            std::vector<std::vector<float>> y(3, std::vector<float>(std::max(ms.vocab, ms.ffn)));
            float* ys[3] = {y[0].data(), y[1].data(), y[2].data()};
            const auto token = [&](const KernelTable& kt) {
                for (const auto& g : order)
                    matmul_shared_input(kt, g.data(), ys, g.size(), x.data(), 1, pool);
            };
            for (const Isa_& isa : isas(o)) {
                if (std::string(isa.name) == "scalar") continue;
                const stackllama_bench::Bandwidth bw =
                    stackllama_bench::read_bandwidth(o.threads, size_t(256) << 20, 3);
                token(*isa.table);
                std::vector<double> wall, cpu;
                for (int r = 0; r < o.reps; ++r) {
                    const stackllama_bench::Stamp t0 = stackllama_bench::now();
                    token(*isa.table);
                    const stackllama_bench::Stamp t1 = stackllama_bench::now();
                    wall.push_back(t1.wall - t0.wall);
                    cpu.push_back((t1.cpu - t0.cpu) / o.threads);
                }
                const double s = median(wall), gbs = double(bytes) / s / 1e9;
                const double sb = *std::min_element(wall.begin(), wall.end()), best = double(bytes) / sb / 1e9;
                const double cgbs = double(bytes) / median(cpu) / 1e9;
                std::printf("| %s | %s | %s | %.3f | %.2f (%.2f) | %.1f (%.1f) [%.1f] | %.1f (%.1f) | %.1f | "
                            "%.1f (%.1f) | %.1f | %.0f (%.0f) [%.0f] |\n",
                            ms.name, weight_type_name(t), isa.name, double(bytes) / 1e9, s * 1e3,
                            sb * 1e3, 1.0 / s, 1.0 / sb, cgbs / (double(bytes) / 1e9), gbs, best,
                            cgbs, bw.median_gbs, bw.best_gbs, bw.cpu_gbs,
                            100.0 * gbs / bw.median_gbs, 100.0 * best / bw.best_gbs,
                            100.0 * cgbs / bw.cpu_gbs);
                std::fflush(stdout);
            }
        }
    }
}

// --- matrix-matrix ----------------------------------------------------------------------------------

// The yardstick for the float kernels: W widened to f32 (kt.rows_to_f32) a tile of about 1 MiB at
// a time, multiplied by OpenBLAS sgemm.
void widened_sgemm(const KernelTable& kt, const Matrix& w, const float* x, size_t m, float* y,
                   ThreadPool& pool, std::vector<float>& scratch) {
    const size_t tile_rows = std::max<size_t>(16, (size_t(1) << 18) / std::max<size_t>(1, w.cols));
    if (scratch.size() < tile_rows * w.cols) scratch.resize(tile_rows * w.cols);
    for (size_t r0 = 0; r0 < w.rows; r0 += tile_rows) {
        const size_t r1 = std::min(w.rows, r0 + tile_rows);
        float* tile = scratch.data();
        pool.parallel_for(r1 - r0, 64, [&](size_t a, size_t b) {
            kt.rows_to_f32(w, r0 + a, r0 + b, tile + a * w.cols);
        });
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(m), int(r1 - r0), int(w.cols),
                    1.0f, x, int(w.cols), tile, int(w.cols), 0.0f, y + r0, int(w.rows));
    }
}

void bench_gemm(const Options& o, ThreadPool& pool) {
    std::printf("\n## Matrix-matrix (prefill), %d threads\n\n", o.threads);
    std::printf("GFLOP/s = 2·m·rows·cols / time, wall clock median (best) of %d. The first row of "
                "each shape is OpenBLAS sgemm on f32 weights already in memory; the others go "
                "through kernels::matmul (path: int8 for q8/q4, matmul_f for float weights) or "
                "the weights widened to f32 a tile at a time for OpenBLAS sgemm (widened+sgemm, how the "
                "library multiplied f16/bf16 weights before matmul_f).\n\n", o.reps);
    std::printf("| rows x cols | m | type | isa | path | ms | GFLOP/s median (best) |\n");
    std::printf("|---|---:|---|---|---|---:|---:|\n");
    const Shape shapes[] = {{"7B", "q", 4096, 4096}, {"7B", "gate", 11008, 4096},
                            {"1.1B", "gate", 5632, 2048}};
    const size_t ms[] = {16, 128, 512};
    std::vector<float> scratch;
    for (const Shape& sh : shapes) {
        if (o.quick && sh.rows == 11008) continue;
        for (size_t m : ms) {
            if (o.quick && m == 512) continue;
            std::vector<float> x(m * sh.cols, 0.01f), y(m * sh.rows);
            const double flop = 2.0 * double(m) * double(sh.rows) * double(sh.cols);
            {  // OpenBLAS sgemm on f32 weights: the yardstick
                MatrixSet set = make_set(WeightType::f32, sh.rows, sh.cols, 1, pool);
                const float* w = static_cast<const float*>(set.copies[0].m.data);
                std::vector<double> ts;
                for (int r = -1; r < o.reps; ++r) {
                    const auto t0 = Clock::now();
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(m), int(sh.rows),
                                int(sh.cols), 1.0f, x.data(), int(sh.cols), w, int(sh.cols), 0.0f,
                                y.data(), int(sh.rows));
                    if (r >= 0) ts.push_back(seconds_since(t0));
                }
                const double best = *std::min_element(ts.begin(), ts.end());
                std::printf("| %zux%zu | %zu | f32 | - | OpenBLAS sgemm | %.2f | %.1f (%.1f) |\n",
                            sh.rows, sh.cols, m, median(ts) * 1e3, flop / median(ts) / 1e9,
                            flop / best / 1e9);
            }
            for (WeightType t : types(o)) {
                MatrixSet set = make_set(t, sh.rows, sh.cols, 1, pool);
                for (const Isa_& isa : isas(o)) {
                    if (std::string(isa.name) == "scalar") continue;
                    // matmul as the model calls it, then (but for f32: the row above) the
                    // weights widened to f32 a tile at a time for sgemm.
                    for (int path = 0; path < (t == WeightType::f32 ? 1 : 2); ++path) {
                        std::vector<double> ts;
                        for (int r = -1; r < o.reps; ++r) {
                            const auto t0 = Clock::now();
                            if (path == 0) {
                                matmul(*isa.table, set.copies[0].m, x.data(), m, y.data(), pool);
                            } else {
                                widened_sgemm(*isa.table, set.copies[0].m, x.data(), m, y.data(), pool,
                                              scratch);
                            }
                            if (r >= 0) ts.push_back(seconds_since(t0));
                        }
                        const double best = *std::min_element(ts.begin(), ts.end());
                        const char* how = path == 1                    ? "widened+sgemm"
                                          : weight_type_quantized(t) ? "int8"
                                                                     : "matmul_f";
                        std::printf("| %zux%zu | %zu | %s | %s | %s | %.2f | %.1f (%.1f) |\n", sh.rows,
                                    sh.cols, m, weight_type_name(t), isa.name, how, median(ts) * 1e3,
                                    flop / median(ts) / 1e9, flop / best / 1e9);
                        std::fflush(stdout);
                    }
                }
            }
        }
    }
}

}  // namespace

int main(int argc, char** argv) {
    Options o;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        const auto next = [&]() -> std::string {
            if (i + 1 >= argc) {
                std::fprintf(stderr, "%s needs a value\n", a.c_str());
                std::exit(2);
            }
            return argv[++i];
        };
        if (a == "-t") o.threads = std::max(1, std::atoi(next().c_str()));
        else if (a == "-r") o.reps = std::max(1, std::atoi(next().c_str()));
        else if (a == "--isa") o.isas = stackllama_bench::split_list(next());
        else if (a == "--type") o.types = stackllama_bench::split_list(next());
        else if (a == "--skip") o.skip = stackllama_bench::split_list(next());
        else if (a == "--model") o.models = stackllama_bench::split_list(next());
        else if (a == "--quick") o.quick = true;
        else {
            std::fprintf(stderr,
                         "usage: kernel_bench [-t THREADS] [-r REPS] [--isa scalar,avx2,avx512] "
                         "[--type f32,f16,bf16,q8,q4] [--model 7B,1.1B] [--skip matvec,sweep,gemm] "
                         "[--quick]\n");
            return 2;
        }
    }
    ThreadPool pool(o.threads);
    set_blas_threads(o.threads);
    std::printf("# kernel_bench: %d threads, detected ISA %s\n", o.threads,
                isa_name(detected_isa()));
    const stackllama_bench::Bandwidth bw = stackllama_bench::read_bandwidth(o.threads);
    const stackllama_bench::Bandwidth bw1 = stackllama_bench::read_bandwidth(1);
    std::printf("\nmemory read bandwidth: %d threads %.1f GB/s (best %.1f, cpu %.1f), 1 thread "
                "%.1f GB/s (best %.1f, cpu %.1f)\n", o.threads, bw.median_gbs, bw.best_gbs,
                bw.cpu_gbs, bw1.median_gbs, bw1.best_gbs, bw1.cpu_gbs);
    if (!has(o.skip, "matvec")) bench_matvec(o, pool);
    if (!has(o.skip, "sweep")) bench_sweep(o, pool);
    if (!has(o.skip, "gemm")) bench_gemm(o, pool);
    const stackllama_bench::Bandwidth bw_end = stackllama_bench::read_bandwidth(o.threads);
    std::printf("\nmemory read bandwidth at the end: %.1f GB/s (best %.1f, cpu %.1f)\n",
                bw_end.median_gbs, bw_end.best_gbs, bw_end.cpu_gbs);
    return 0;
}
