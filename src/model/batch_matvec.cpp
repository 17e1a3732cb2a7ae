#include "model/batch_matvec.hpp"

// GCC 12 warns falsely inside its own AVX-512 headers (_mm512_undefined_*), as in
// cmake/StackllamaKernels.cmake.
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

#include <stdint.h>
#include <string.h>

#ifdef STACKLLAMA_BATCH_INTRINSICS_HEADER
// Tests: the intrinsics emulated (tests/simde_avx512_shim.h), so the AVX-512 path runs anywhere.
#include STACKLLAMA_BATCH_INTRINSICS_HEADER
#define SL_AVX2_FN
#define SL_AVX512_FN
#else
#include <immintrin.h>
#define SL_AVX2_FN __attribute__((target("avx2,fma,f16c")))
#define SL_AVX512_FN \
    __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")))
#endif

namespace stackllama {
namespace {

// Vectors per pass over a tile of rows.
constexpr size_t kGroup = 4;

inline float bf16_scalar(uint16_t b) {
    uint32_t u = static_cast<uint32_t>(b) << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

// --- AVX2: 8 lanes ------------------------------------------------------------------------------

SL_AVX2_FN inline __m256 a2_load(const float* p) { return _mm256_loadu_ps(p); }
template <bool kBf16>
SL_AVX2_FN inline __m256 a2_load(const uint16_t* p) {
    __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    if (!kBf16) return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}
template <bool kBf16>
SL_AVX2_FN inline __m256 a2_loadw(const float* p) { return a2_load(p); }
template <bool kBf16>
SL_AVX2_FN inline __m256 a2_loadw(const uint16_t* p) { return a2_load<kBf16>(p); }
SL_AVX2_FN inline float a2_hsum(__m256 v) {
    __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
    lo = _mm_add_ps(lo, hi);
    lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
    lo = _mm_add_ss(lo, _mm_shuffle_ps(lo, lo, 1));
    return _mm_cvtss_f32(lo);
}
template <bool kBf16>
SL_AVX2_FN inline float a2_widen(float v) { return v; }
template <bool kBf16>
SL_AVX2_FN inline float a2_widen(uint16_t v) { return kBf16 ? bf16_scalar(v) : _cvtsh_ss(v); }

// A tile of R rows x G vectors: Y[g, r + a] = W[r + a, :] · X[g, :], one accumulator per pair,
// so each weight vector loaded serves G products and each x vector R.
template <size_t R, size_t G, bool kBf16, typename Elem>
SL_AVX2_FN void a2_tile(const Elem* w, size_t n, const float* x, float* y, size_t rows) {
    constexpr size_t L = 8;
    __m256 acc[R][G];
#pragma GCC unroll 4
    for (size_t a = 0; a < R; ++a)
#pragma GCC unroll 4
        for (size_t g = 0; g < G; ++g) acc[a][g] = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + L <= n; i += L) {
        __m256 wv[R];
#pragma GCC unroll 4
        for (size_t a = 0; a < R; ++a) wv[a] = a2_loadw<kBf16>(w + a * n + i);
#pragma GCC unroll 4
        for (size_t g = 0; g < G; ++g) {
            const __m256 xv = a2_load(x + g * n + i);
#pragma GCC unroll 4
            for (size_t a = 0; a < R; ++a) acc[a][g] = _mm256_fmadd_ps(wv[a], xv, acc[a][g]);
        }
    }
    for (size_t a = 0; a < R; ++a) {
        for (size_t g = 0; g < G; ++g) {
            float sum = a2_hsum(acc[a][g]);
            for (size_t j = i; j < n; ++j) sum += a2_widen<kBf16>(w[a * n + j]) * x[g * n + j];
            y[g * rows + a] = sum;
        }
    }
}

// One tile of R rows for every vector, kGroup vectors at a time: the tile's rows are read from
// memory once and from L1 for the later groups.
template <size_t R, bool kBf16, typename Elem>
SL_AVX2_FN void a2_tile_all(const Elem* w, size_t n, const float* x, size_t m, float* y,
                            size_t rows) {
    for (size_t g0 = 0; g0 < m; g0 += kGroup) {
        const float* xg = x + g0 * n;
        float* yg = y + g0 * rows;
        switch (m - g0 < kGroup ? m - g0 : kGroup) {
            case 1: a2_tile<R, 1, kBf16>(w, n, xg, yg, rows); break;
            case 2: a2_tile<R, 2, kBf16>(w, n, xg, yg, rows); break;
            case 3: a2_tile<R, 3, kBf16>(w, n, xg, yg, rows); break;
            default: a2_tile<R, 4, kBf16>(w, n, xg, yg, rows); break;
        }
    }
}

// Tiles of 3 rows x 4 vectors: 12 accumulators, 3 weight vectors and one x vector fill the 16
// AVX2 registers.
template <bool kBf16, typename Elem>
SL_AVX2_FN void a2_rows(const Elem* base, size_t n, const float* x, size_t m, float* y,
                        size_t rows, size_t r0, size_t r1) {
    size_t r = r0;
    for (; r + 3 <= r1; r += 3) a2_tile_all<3, kBf16>(base + r * n, n, x, m, y + r, rows);
    for (; r < r1; ++r) a2_tile_all<1, kBf16>(base + r * n, n, x, m, y + r, rows);
}

// --- AVX-512: 16 lanes ---------------------------------------------------------------------------

SL_AVX512_FN inline __m512 a5_load(const float* p) { return _mm512_loadu_ps(p); }
template <bool kBf16>
SL_AVX512_FN inline __m512 a5_load(const uint16_t* p) {
    __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    if (!kBf16) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}
template <bool kBf16>
SL_AVX512_FN inline __m512 a5_loadw(const float* p) { return a5_load(p); }
template <bool kBf16>
SL_AVX512_FN inline __m512 a5_loadw(const uint16_t* p) { return a5_load<kBf16>(p); }
template <bool kBf16>
SL_AVX512_FN inline float a5_widen(float v) { return v; }
template <bool kBf16>
SL_AVX512_FN inline float a5_widen(uint16_t v) { return kBf16 ? bf16_scalar(v) : _cvtsh_ss(v); }

template <size_t R, size_t G, bool kBf16, typename Elem>
SL_AVX512_FN void a5_tile(const Elem* w, size_t n, const float* x, float* y, size_t rows) {
    constexpr size_t L = 16;
    __m512 acc[R][G];
#pragma GCC unroll 4
    for (size_t a = 0; a < R; ++a)
#pragma GCC unroll 4
        for (size_t g = 0; g < G; ++g) acc[a][g] = _mm512_setzero_ps();
    size_t i = 0;
    for (; i + L <= n; i += L) {
        __m512 wv[R];
#pragma GCC unroll 4
        for (size_t a = 0; a < R; ++a) wv[a] = a5_loadw<kBf16>(w + a * n + i);
#pragma GCC unroll 4
        for (size_t g = 0; g < G; ++g) {
            const __m512 xv = a5_load(x + g * n + i);
#pragma GCC unroll 4
            for (size_t a = 0; a < R; ++a) acc[a][g] = _mm512_fmadd_ps(wv[a], xv, acc[a][g]);
        }
    }
    for (size_t a = 0; a < R; ++a) {
        for (size_t g = 0; g < G; ++g) {
            float sum = _mm512_reduce_add_ps(acc[a][g]);
            for (size_t j = i; j < n; ++j) sum += a5_widen<kBf16>(w[a * n + j]) * x[g * n + j];
            y[g * rows + a] = sum;
        }
    }
}

// One tile of R rows for every vector, kGroup vectors at a time: the tile's rows are read from
// memory once and from L1 for the later groups.
template <size_t R, bool kBf16, typename Elem>
SL_AVX512_FN void a5_tile_all(const Elem* w, size_t n, const float* x, size_t m, float* y,
                              size_t rows) {
    for (size_t g0 = 0; g0 < m; g0 += kGroup) {
        const float* xg = x + g0 * n;
        float* yg = y + g0 * rows;
        switch (m - g0 < kGroup ? m - g0 : kGroup) {
            case 1: a5_tile<R, 1, kBf16>(w, n, xg, yg, rows); break;
            case 2: a5_tile<R, 2, kBf16>(w, n, xg, yg, rows); break;
            case 3: a5_tile<R, 3, kBf16>(w, n, xg, yg, rows); break;
            default: a5_tile<R, 4, kBf16>(w, n, xg, yg, rows); break;
        }
    }
}

// Tiles of 4 rows x 4 vectors: 16 of the 32 AVX-512 registers accumulate.
template <bool kBf16, typename Elem>
SL_AVX512_FN void a5_rows(const Elem* base, size_t n, const float* x, size_t m, float* y,
                        size_t rows, size_t r0, size_t r1) {
    size_t r = r0;
    for (; r + 4 <= r1; r += 4) a5_tile_all<4, kBf16>(base + r * n, n, x, m, y + r, rows);
    for (; r < r1; ++r) a5_tile_all<1, kBf16>(base + r * n, n, x, m, y + r, rows);
}

bool plain_type(kernels::WeightType t) {
    return t == kernels::WeightType::f32 || t == kernels::WeightType::f16 ||
           t == kernels::WeightType::bf16;
}

}  // namespace

bool matvec_multi_available(const kernels::KernelTable& kt, kernels::WeightType type) {
    return plain_type(type) && (&kt == &kernels::table_avx2() || &kt == &kernels::table_avx512());
}

void matvec_multi(const kernels::KernelTable& kt, const kernels::Matrix& w, const float* x,
                  size_t m, float* y, size_t r0, size_t r1) {
    const size_t n = w.cols, rows = w.rows;
    const bool avx512 = &kt == &kernels::table_avx512();
    if (!matvec_multi_available(kt, w.type)) {
        // No batched kernel: one product per vector, with the table's own matvec.
        for (size_t i = 0; i < m; ++i) kt.matvec(w, x + i * n, y + i * rows, r0, r1);
        return;
    }
    const auto* h = static_cast<const uint16_t*>(w.data);
    const auto* f = static_cast<const float*>(w.data);
    switch (w.type) {
        case kernels::WeightType::f32:
            avx512 ? a5_rows<false>(f, n, x, m, y, rows, r0, r1)
                   : a2_rows<false>(f, n, x, m, y, rows, r0, r1);
            break;
        case kernels::WeightType::f16:
            avx512 ? a5_rows<false>(h, n, x, m, y, rows, r0, r1)
                   : a2_rows<false>(h, n, x, m, y, rows, r0, r1);
            break;
        case kernels::WeightType::bf16:
            avx512 ? a5_rows<true>(h, n, x, m, y, rows, r0, r1)
                   : a2_rows<true>(h, n, x, m, y, rows, r0, r1);
            break;
        default: break;
    }
}

}  // namespace stackllama
