// The instruction throughput that bounds the integer kernels, per core: how many of each
// multiply instruction (and of the kernels' instruction sequences) one core retires per second,
// and the multiply-adds per second that makes. The figures against which kernel_bench's GEMM
// GFLOP/s and the prefill tokens/s are judged (docs/ARCHITECTURE.md, "Kernels and dispatch").
//
//   isa_bench [-r REPS]
//
// Independent accumulator chains, so latency hides and only throughput counts; every figure is
// scaled to 8 · kIters instructions or sequences. The AVX-512 rows run only where the CPU has
// AVX-512 VNNI.
#include <immintrin.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "kernels/isa.hpp"

namespace {

using Clock = std::chrono::steady_clock;
constexpr long kIters = 20'000'000;

// An empty asm that claims to read and write v: the compiler can neither drop nor merge the work.
// "v": any vector register the target has (zmm included with AVX-512).
#define KEEP(v) __asm__ volatile("" : "+v"(v))

struct Row {
    const char* what;
    int macs;  // int8 multiply-adds per instruction or sequence (per 256-bit or 512-bit vector)
    double (*run)();  // seconds for 8 · kIters instructions or sequences
};

double seconds_since(Clock::time_point t0) {
    return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Named registers, not arrays: GCC keeps an array of vectors on the stack across the loop here,
// and the store-to-load round trip then bounds the chains instead of the instruction.
#define FOR12(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7) X(8) X(9) X(10) X(11)
#define FOR6(X) X(0) X(1) X(2) X(3) X(4) X(5)

// 12 independent dependency chains (more than latency × throughput) of STEP, which retires
// `units` instructions or pairs per iteration; seconds scaled to 8 · kIters units.
#define CHAIN_BENCH(NAME, TARGET, VEC, INIT, STEP, units)                  \
    __attribute__((target(TARGET))) double NAME() {                        \
        const VEC b = INIT(3);                                             \
        FOR12(CHAIN_DECL)                                                  \
        const auto t0 = Clock::now();                                      \
        for (long i = 0; i < kIters; ++i) { FOR12(STEP) }                  \
        const double t = seconds_since(t0);                                \
        FOR12(CHAIN_SINK)                                                  \
        return t * (8.0 / (units));                                        \
    }
#define CHAIN_DECL(j) auto a##j = b; KEEP(a##j);
#define CHAIN_SINK(j) KEEP(a##j);

#define STEP_MADDUBS(j) a##j = _mm256_maddubs_epi16(a##j, b); KEEP(a##j);
#define STEP_MADD(j) a##j = _mm256_madd_epi16(a##j, b); KEEP(a##j);
#define STEP_PAIR(j) a##j = (j % 2) ? _mm256_madd_epi16(a##j, b) : _mm256_maddubs_epi16(a##j, b); KEEP(a##j);
#define STEP_FMA(j) a##j = _mm256_fmadd_ps(a##j, b, b); KEEP(a##j);
#define STEP_DPBUSD(j) a##j = _mm256_dpbusd_epi32(a##j, b, b); KEEP(a##j);
#define STEP_DPBUSD_Z(j) a##j = _mm512_dpbusd_epi32(a##j, b, b); KEEP(a##j);

#define VNNI "avx512f,avx512bw,avx512vl,avx512vnni"
CHAIN_BENCH(maddubs_only, "avx2,fma", __m256i, _mm256_set1_epi8, STEP_MADDUBS, 12)
CHAIN_BENCH(madd_only, "avx2,fma", __m256i, _mm256_set1_epi16, STEP_MADD, 12)
CHAIN_BENCH(maddubs_and_madd, "avx2,fma", __m256i, _mm256_set1_epi8, STEP_PAIR, 6)  // 6 pairs
CHAIN_BENCH(fma_ps, "avx2,fma", __m256, _mm256_set1_ps, STEP_FMA, 12)
CHAIN_BENCH(dpbusd_ymm, VNNI, __m256i, _mm256_set1_epi8, STEP_DPBUSD, 12)
CHAIN_BENCH(dpbusd_zmm, VNNI, __m512i, _mm512_set1_epi8, STEP_DPBUSD_Z, 12)

// The kernels' sequences: 6 weight registers the compiler must treat as new each time, 6 sums.
#define SEQ_BENCH(NAME, STEP)                                              \
    __attribute__((target("avx2,fma"))) double NAME() {                    \
        const __m256i x = _mm256_set1_epi8(5);                             \
        FOR6(SEQ_DECL)                                                     \
        const auto t0 = Clock::now();                                      \
        for (long i = 0; i < kIters; ++i) { FOR6(STEP) }                   \
        const double t = seconds_since(t0);                                \
        FOR6(SEQ_SINK)                                                     \
        return t * (8.0 / 6.0);                                            \
    }
#define SEQ_DECL(j) __m256i w##j = _mm256_set1_epi8(char(j - 3)), s##j = _mm256_setzero_si256();
#define SEQ_SINK(j) KEEP(s##j);
// q8 (AVX2): |w| and x with w's sign, maddubs, madd to int32, add.
#define SEQ_Q8(j)                                                                                   \
    KEEP(w##j);                                                                                     \
    s##j = _mm256_add_epi32(s##j, _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_abs_epi8(w##j),     \
                                                                         _mm256_sign_epi8(x, w##j)), \
                                                    _mm256_set1_epi16(1)));
// q4 (AVX2): maddubs of unsigned levels, add in int16.
#define SEQ_Q4(j) KEEP(w##j); s##j = _mm256_add_epi16(s##j, _mm256_maddubs_epi16(w##j, x));

SEQ_BENCH(q8_sequence, SEQ_Q8)
SEQ_BENCH(q4_sequence, SEQ_Q4)

}  // namespace

int main(int argc, char** argv) {
    int reps = 3;
    for (int i = 1; i < argc; ++i) {
        if (std::strcmp(argv[i], "-r") == 0 && i + 1 < argc) {
            reps = std::atoi(argv[++i]);
        } else {
            std::fprintf(stderr, "usage: isa_bench [-r REPS]\n");
            return std::strcmp(argv[i], "-h") == 0 ? 0 : 2;
        }
    }
    if (reps < 1) reps = 1;
    using stackllama::kernels::Isa;
    if (!stackllama::kernels::isa_supported(Isa::avx2)) {
        std::printf("this CPU has no AVX2: nothing to measure\n");
        return 0;
    }
    const bool vnni = stackllama::kernels::isa_supported(Isa::avx512);
    const Row rows[] = {
        {"vpmaddubsw ymm", 32, maddubs_only},
        {"vpmaddwd ymm", 16, madd_only},
        {"vpmaddubsw + vpmaddwd, pairs", 32, maddubs_and_madd},
        {"q8 AVX2: abs, sign, maddubs, madd, add", 32, q8_sequence},
        {"q4 AVX2: maddubs, add (int16)", 32, q4_sequence},
        {"vfmadd ps ymm (f32 multiply-adds)", 8, fma_ps},
        {"vpdpbusd ymm (VNNI)", 32, dpbusd_ymm},
        {"vpdpbusd zmm (VNNI)", 64, dpbusd_zmm},
    };
    std::printf("Per core, best of %d runs.\n\n", reps);
    std::printf("| instruction or sequence | G per s | G multiply-adds per s |\n|---|---:|---:|\n");
    for (const Row& r : rows) {
        if (std::strstr(r.what, "VNNI") && !vnni) {
            std::printf("| %s | (no AVX-512 VNNI) | |\n", r.what);
            continue;
        }
        double best = 1e30;
        for (int i = 0; i < reps; ++i) best = std::min(best, r.run());
        const double per_s = 8.0 * double(kIters) / best / 1e9;
        std::printf("| %s | %.2f | %.1f |\n", r.what, per_s, per_s * r.macs);
    }
    return 0;
}
