// The kernels, compiled once per ISA (cmake/StackllamaKernels.cmake sets STACKLLAMA_KERNEL_ISA and
// the flags). This file includes only the kernel header, intrinsics and C headers, and keeps every
// helper in an anonymous namespace: a shared inline function compiled with AVX-512 flags could be
// picked by the linker for all callers and crash an older CPU.
//
// Matrix-vector products are bound by memory bandwidth: they read several rows at once so one
// load of x serves them all, and keep enough independent accumulators for the loads in flight.
// Quantized weights (q8, q4) meet activations quantized to int8 blocks (BlockQ8A): 32 products
// per block are summed in integers (AVX2 maddubs/madd, AVX-512 VNNI dpbusd) and scaled once.
#if defined(STACKLLAMA_KERNEL_INTRINSICS_HEADER)
// Tests only: a header that emulates the intrinsics (SIMDe), so this ISA's code runs anywhere.
#include STACKLLAMA_KERNEL_INTRINSICS_HEADER
#else
#include <immintrin.h>
#endif
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.hpp"

#if defined(STACKLLAMA_KERNEL_ISA_avx512)
#define SL_AVX512 1
#elif defined(STACKLLAMA_KERNEL_ISA_avx2)
#define SL_AVX2 1
#endif

namespace stackllama::kernels {
namespace {

// Rows the float kernels read at once: a matrix-vector product 4 (four streams in flight per load
// of x); a matrix-matrix tile 3 against 4 vectors with AVX2 (12 accumulators and 3 weight vectors
// of its 16 registers), 6 with AVX-512 (24 and 6 of 32).
constexpr size_t kRows = 4;
#if SL_AVX512
constexpr size_t kTileRows = 6;
#elif SL_AVX2
constexpr size_t kTileRows = 3;
#else
constexpr size_t kTileRows = 4;
#endif
constexpr size_t kTileVectors = 4;

// Not std::min/max: a template instantiated here with ISA flags could be picked by the linker
// for callers elsewhere.
inline size_t min_size(size_t a, size_t b) { return a < b ? a : b; }
inline size_t max_size(size_t a, size_t b) { return a > b ? a : b; }

inline float scalar_bf16(uint16_t b) {
    uint32_t u = static_cast<uint32_t>(b) << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

#if SL_AVX512 || SL_AVX2
inline float scalar_f16(uint16_t h) { return _cvtsh_ss(h); }
#else
// Exact f16 -> f32 without branches on the exponent (subnormals included).
inline float scalar_f16(uint16_t h) {
    const uint32_t w = static_cast<uint32_t>(h) << 16;
    const uint32_t sign = w & 0x80000000u;
    const uint32_t two_w = w + w;
    uint32_t bits;
    if (two_w < (1u << 27)) {  // zero or subnormal: 0.5 + mantissa, less 0.5
        const uint32_t m = (two_w >> 17) | (126u << 23);
        float f;
        memcpy(&f, &m, sizeof f);
        f -= 0.5f;
        memcpy(&bits, &f, sizeof bits);
    } else {  // normal, Inf, NaN: rebias by scaling
        const uint32_t m = (two_w >> 4) + (0xE0u << 23);
        float f;
        memcpy(&f, &m, sizeof f);
        f *= 0x1.0p-112f;
        memcpy(&bits, &f, sizeof bits);
    }
    bits |= sign;
    float out;
    memcpy(&out, &bits, sizeof out);
    return out;
}
#endif

#if SL_AVX512
// 16 lanes. Loads of 16 weights widened to f32.
inline __m512 load16(const float* p) { return _mm512_loadu_ps(p); }
template <bool kBf16>
inline __m512 load16h(const uint16_t* p) {
    __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    if (!kBf16) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}
inline float hsum(__m512 v) { return _mm512_reduce_add_ps(v); }
#endif
#if SL_AVX512 || SL_AVX2
inline __m256 load8(const float* p) { return _mm256_loadu_ps(p); }
template <bool kBf16>
inline __m256 load8h(const uint16_t* p) {
    __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    if (!kBf16) return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}
inline float hsum(__m256 v) {
    __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
    lo = _mm_add_ps(lo, hi);
    lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
    lo = _mm_add_ss(lo, _mm_shuffle_ps(lo, lo, 1));
    return _mm_cvtss_f32(lo);
}
// 8 int32 lanes, lane k = Σ_{j<4} u[4k+j] · s[4k+j]; u unsigned bytes, s signed bytes, no
// pair of products above 2 · 128 · 127 (so maddubs does not saturate).
inline __m256i dot_us(__m256i u, __m256i s) {
#if SL_AVX512
    return _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, s);
#else
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
#endif
}
// The 32 levels of a q4 block as unsigned bytes 0..15, in element order.
inline __m256i q4_unpack(const uint8_t* q) {
    const __m128i n = _mm_loadu_si128(reinterpret_cast<const __m128i*>(q));
    const __m256i both = _mm256_inserti128_si256(_mm256_castsi128_si256(n), _mm_srli_epi16(n, 4), 1);
    return _mm256_and_si256(both, _mm256_set1_epi8(0x0f));
}
#endif

float dot_f32(const float* a, const float* b, size_t n) {
    size_t i = 0;
    float sum = 0.0f;
#if SL_AVX512
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    for (; i + 32 <= n; i += 32) {
        acc0 = _mm512_fmadd_ps(load16(a + i), load16(b + i), acc0);
        acc1 = _mm512_fmadd_ps(load16(a + i + 16), load16(b + i + 16), acc1);
    }
    for (; i + 16 <= n; i += 16) acc0 = _mm512_fmadd_ps(load16(a + i), load16(b + i), acc0);
    sum = hsum(_mm512_add_ps(acc0, acc1));
#elif SL_AVX2
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    for (; i + 16 <= n; i += 16) {
        acc0 = _mm256_fmadd_ps(load8(a + i), load8(b + i), acc0);
        acc1 = _mm256_fmadd_ps(load8(a + i + 8), load8(b + i + 8), acc1);
    }
    for (; i + 8 <= n; i += 8) acc0 = _mm256_fmadd_ps(load8(a + i), load8(b + i), acc0);
    sum = hsum(_mm256_add_ps(acc0, acc1));
#else
    float acc[4] = {0, 0, 0, 0};
    for (; i + 4 <= n; i += 4)
        for (int l = 0; l < 4; ++l) acc[l] += a[i + l] * b[i + l];
    sum = (acc[0] + acc[1]) + (acc[2] + acc[3]);
#endif
    for (; i < n; ++i) sum += a[i] * b[i];
    return sum;
}

// --- f32 / f16 / bf16: R rows against T vectors --------------------------------------------------
// Elem is float or uint16_t; kBf16 picks bf16 over f16 for uint16_t.
//
// Every (row, vector) value is one accumulator of L lanes, fma(w, x, acc) over the L-element chunks
// in order, summed across its lanes (hsum), plus the elements after the last chunk in order. It
// depends on nothing else, so matvec (T = 1) and matmul_f (T vectors at once) give the same bits
// for a row and a vector, whatever the batch (batch-invariant, as the quantized kernels).
template <bool kBf16>
inline float widen(float v) { return v; }
template <bool kBf16>
inline float widen(uint16_t v) { return kBf16 ? scalar_bf16(v) : scalar_f16(v); }

#if SL_AVX512
template <bool kBf16>
inline __m512 vload(const float* p) { return load16(p); }
template <bool kBf16>
inline __m512 vload(const uint16_t* p) { return load16h<kBf16>(p); }
#elif SL_AVX2
template <bool kBf16>
inline __m256 vload(const float* p) { return load8(p); }
template <bool kBf16>
inline __m256 vload(const uint16_t* p) { return load8h<kBf16>(p); }
#endif

#if SL_AVX512 || SL_AVX2
#if SL_AVX512
using VF = __m512;
constexpr size_t kLanes = 16;
inline VF zero_acc() { return _mm512_setzero_ps(); }
inline VF vfma(VF a, VF b, VF c) { return _mm512_fmadd_ps(a, b, c); }
#else
using VF = __m256;
constexpr size_t kLanes = 8;
inline VF zero_acc() { return _mm256_setzero_ps(); }
inline VF vfma(VF a, VF b, VF c) { return _mm256_fmadd_ps(a, b, c); }
#endif
#else
// Scalar: 4 lanes, summed as (l0 + l1) + (l2 + l3).
struct VF {
    float l[4];
};
constexpr size_t kLanes = 4;
inline VF zero_acc() { return VF{{0.0f, 0.0f, 0.0f, 0.0f}}; }
#endif

// acc[t·R + r] += the chunks [i0, i1) (multiples of kLanes) of row r times vector t, for R
// consecutive rows starting at w (row stride n elements) and T vectors x_t = x + t·ldx.
template <size_t T, size_t R, bool kBf16, typename Elem>
inline void tile_part(const Elem* w, size_t n, const float* x, size_t ldx, size_t i0, size_t i1,
                      VF* acc_io) {
    VF acc[T][R];
    for (size_t t = 0; t < T; ++t)
        for (size_t r = 0; r < R; ++r) acc[t][r] = acc_io[t * R + r];
#if SL_AVX512 || SL_AVX2
    for (size_t i = i0; i < i1; i += kLanes) {
        VF wv[R];
        for (size_t r = 0; r < R; ++r) wv[r] = vload<kBf16>(w + r * n + i);
        for (size_t t = 0; t < T; ++t) {
            const VF xv = vload<kBf16>(x + t * ldx + i);
            for (size_t r = 0; r < R; ++r) acc[t][r] = vfma(wv[r], xv, acc[t][r]);
        }
    }
#else
    for (size_t i = i0; i < i1; i += kLanes)
        for (size_t t = 0; t < T; ++t)
            for (size_t r = 0; r < R; ++r)
                for (size_t l = 0; l < kLanes; ++l)
                    acc[t][r].l[l] += widen<kBf16>(w[r * n + i + l]) * x[t * ldx + i + l];
#endif
    for (size_t t = 0; t < T; ++t)
        for (size_t r = 0; r < R; ++r) acc_io[t * R + r] = acc[t][r];
}

// a · b + c, fused or not the same way in every instantiation (left to itself the compiler
// contracts some and not others, and a row's value would depend on T and R).
inline float tail_fma(float a, float b, float c) {
#if SL_AVX512 || SL_AVX2
    return _mm_cvtss_f32(_mm_fmadd_ss(_mm_set_ss(a), _mm_set_ss(b), _mm_set_ss(c)));
#else
    return a * b + c;  // the baseline build has no FMA instruction to contract into
#endif
}

// y[t·ldy + r] = the lanes of acc[t·R + r] summed, plus the elements after the last whole chunk.
template <size_t T, size_t R, bool kBf16, typename Elem>
inline void tile_end(const Elem* w, size_t n, const float* x, size_t ldx, const VF* acc, float* y,
                     size_t ldy) {
    float sum[T][R];
    for (size_t t = 0; t < T; ++t)
        for (size_t r = 0; r < R; ++r) {
#if SL_AVX512 || SL_AVX2
            sum[t][r] = hsum(acc[t * R + r]);
#else
            const float* l = acc[t * R + r].l;
            sum[t][r] = (l[0] + l[1]) + (l[2] + l[3]);
#endif
        }
    for (size_t i = n / kLanes * kLanes; i < n; ++i)
        for (size_t t = 0; t < T; ++t)
            for (size_t r = 0; r < R; ++r)
                sum[t][r] = tail_fma(widen<kBf16>(w[r * n + i]), x[t * ldx + i], sum[t][r]);
    for (size_t t = 0; t < T; ++t)
        for (size_t r = 0; r < R; ++r) y[t * ldy + r] = sum[t][r];
}

// y[t·ldy + r] = W[r, :] · x_t, the whole row in one pass.
template <size_t T, size_t R, bool kBf16, typename Elem>
void tile_dot(const Elem* w, size_t n, const float* x, size_t ldx, float* y, size_t ldy) {
    VF acc[T * R];
    for (size_t k = 0; k < T * R; ++k) acc[k] = zero_acc();
    tile_part<T, R, kBf16>(w, n, x, ldx, 0, n / kLanes * kLanes, acc);
    tile_end<T, R, kBf16>(w, n, x, ldx, acc, y, ldy);
}

template <bool kBf16, typename Elem>
void matvec_rows(const Elem* base, size_t n, const float* x, float* y, size_t r0, size_t r1) {
    size_t r = r0;
    for (; r + kRows <= r1; r += kRows) tile_dot<1, kRows, kBf16>(base + r * n, n, x, 0, y + r, 0);
    for (; r < r1; ++r) tile_dot<1, 1, kBf16>(base + r * n, n, x, 0, y + r, 0);
}

// Elements of a row per pass (a multiple of every kLanes): T vectors' share (4 · 512 floats,
// 8 KiB) stays in L1 while the rows of a block pass over it.
constexpr size_t kChunkCols = 512;
// Rows per block: about 96 KiB of weights, in L2 while every vector passes over them.
constexpr size_t kBlockBytes = 96 * 1024, kMaxBlockRows = 96;

// Rows [b0, b1) (b1 - b0 <= kMaxBlockRows) against T vectors: the row-chunks in order, each
// over all of the block's rows, the accumulators kept in `state` between chunks; then the ends.
template <size_t T, bool kBf16, typename Elem>
void block_tile(const Elem* base, size_t n, const float* x, size_t ldx, float* y, size_t ldy,
                size_t b0, size_t b1, VF* state) {
    constexpr size_t R = kTileRows;
    const size_t full = n / kLanes * kLanes;
    for (size_t k = 0; k < (b1 - b0) * T; ++k) state[k] = zero_acc();
    for (size_t i0 = 0; i0 < full; i0 += kChunkCols) {
        const size_t i1 = min_size(full, i0 + kChunkCols);
        size_t r = b0;
        for (; r + R <= b1; r += R)
            tile_part<T, R, kBf16>(base + r * n, n, x, ldx, i0, i1, state + (r - b0) * T);
        for (; r < b1; ++r)
            tile_part<T, 1, kBf16>(base + r * n, n, x, ldx, i0, i1, state + (r - b0) * T);
    }
    size_t r = b0;
    for (; r + R <= b1; r += R)
        tile_end<T, R, kBf16>(base + r * n, n, x, ldx, state + (r - b0) * T, y + r, ldy);
    for (; r < b1; ++r)
        tile_end<T, 1, kBf16>(base + r * n, n, x, ldx, state + (r - b0) * T, y + r, ldy);
}

// Rows [r0, r1) against m vectors (x [m, n], y [m, ldy]): blocks of rows, each against the
// vectors kTileVectors at a time.
template <bool kBf16, typename Elem>
void matmul_rows(const Elem* base, size_t n, const float* x, size_t m, float* y, size_t ldy,
                 size_t r0, size_t r1) {
    constexpr size_t R = kTileRows;
    const size_t fit = n == 0 ? kMaxBlockRows : kBlockBytes / (n * sizeof(Elem)) / R * R;
    const size_t block = min_size(kMaxBlockRows / R * R, max_size(R, fit));
    VF state[kMaxBlockRows * kTileVectors];
    for (size_t b0 = r0; b0 < r1; b0 += block) {
        const size_t b1 = min_size(r1, b0 + block);
        size_t t = 0;
        for (; t + kTileVectors <= m; t += kTileVectors)
            block_tile<kTileVectors, kBf16>(base, n, x + t * n, n, y + t * ldy, ldy, b0, b1, state);
        static_assert(kTileVectors == 4, "the tail below handles up to 3 vectors");
        const float* xt = x + t * n;
        float* yt = y + t * ldy;
        switch (m - t) {
            case 3: block_tile<3, kBf16>(base, n, xt, n, yt, ldy, b0, b1, state); break;
            case 2: block_tile<2, kBf16>(base, n, xt, n, yt, ldy, b0, b1, state); break;
            case 1: block_tile<1, kBf16>(base, n, xt, n, yt, ldy, b0, b1, state); break;
            default: break;
        }
    }
}

// --- quantized: activations -----------------------------------------------------------------------

// o.sum and o.q4_start from n partial sums t[j] of elements ≡ j (mod n), n a multiple of 4.
inline void set_sums(BlockQ8A& o, const int32_t* t, size_t n) {
    int32_t pair[2] = {0, 0};
    for (size_t j = 0; j < n; ++j) pair[j % 4 / 2] += t[j];
    o.sum = pair[0] + pair[1];
    o.q4_start[0] = static_cast<int16_t>(-8 * pair[0]);
    o.q4_start[1] = static_cast<int16_t>(-8 * pair[1]);
}

void quantize_acts(const float* x, size_t n, BlockQ8A* xq) {
    for (size_t b = 0; b < n / kQuantBlock; ++b) {
        const float* v = x + b * kQuantBlock;
        BlockQ8A& o = xq[b];
#if SL_AVX512
        const __m512 v0 = _mm512_loadu_ps(v), v1 = _mm512_loadu_ps(v + 16);
        const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
        const float id = amax > 0.0f ? 127.0f / amax : 0.0f;
        o.d = amax / 127.0f;
        const __m512 vid = _mm512_set1_ps(id);
        const __m512i lim = _mm512_set1_epi32(127), nlim = _mm512_set1_epi32(-127);
        // cvtps rounds in the current mode: nearest, ties to even, as nearbyint in the reference.
        __m512i q0 = _mm512_cvtps_epi32(_mm512_mul_ps(v0, vid));
        __m512i q1 = _mm512_cvtps_epi32(_mm512_mul_ps(v1, vid));
        q0 = _mm512_max_epi32(_mm512_min_epi32(q0, lim), nlim);
        q1 = _mm512_max_epi32(_mm512_min_epi32(q1, lim), nlim);
        _mm_storeu_si128(reinterpret_cast<__m128i*>(o.q), _mm512_cvtepi32_epi8(q0));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(o.q + 16), _mm512_cvtepi32_epi8(q1));
        // Lane j holds elements j and j + 16, which fall in the same half of the q4 pair.
        int32_t t[16];
        _mm512_storeu_si512(t, _mm512_add_epi32(q0, q1));
        set_sums(o, t, 16);
#elif SL_AVX2
        const __m256 sign = _mm256_set1_ps(-0.0f);
        __m256 f[4];
        for (int k = 0; k < 4; ++k) f[k] = _mm256_loadu_ps(v + 8 * k);
        __m256 m = _mm256_max_ps(_mm256_max_ps(_mm256_andnot_ps(sign, f[0]), _mm256_andnot_ps(sign, f[1])),
                                 _mm256_max_ps(_mm256_andnot_ps(sign, f[2]), _mm256_andnot_ps(sign, f[3])));
        __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        m4 = _mm_max_ss(m4, _mm_shuffle_ps(m4, m4, 1));
        const float amax = _mm_cvtss_f32(m4);
        const float id = amax > 0.0f ? 127.0f / amax : 0.0f;
        o.d = amax / 127.0f;
        const __m256 vid = _mm256_set1_ps(id);
        const __m256i lim = _mm256_set1_epi32(127), nlim = _mm256_set1_epi32(-127);
        __m256i q[4];
        for (int k = 0; k < 4; ++k) {
            q[k] = _mm256_cvtps_epi32(_mm256_mul_ps(f[k], vid));
            q[k] = _mm256_max_epi32(_mm256_min_epi32(q[k], lim), nlim);
        }
        // Lane j holds elements j, j + 8, j + 16 and j + 24, all in the same half of the q4 pair.
        int32_t t[8];
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(t),
                            _mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3])));
        set_sums(o, t, 8);
        // packs work within 128-bit lanes; the permute puts the 32 bytes back in order.
        const __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(o.q),
                            _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)));
#else
        float amax = 0.0f;
        for (size_t i = 0; i < kQuantBlock; ++i) amax = fmaxf(amax, fabsf(v[i]));
        const float id = amax > 0.0f ? 127.0f / amax : 0.0f;
        o.d = amax / 127.0f;
        int32_t t[kQuantBlock];
        for (size_t i = 0; i < kQuantBlock; ++i) {
            const float q = fminf(127.0f, fmaxf(-127.0f, nearbyintf(v[i] * id)));
            o.q[i] = static_cast<int8_t>(q);
            t[i] = o.q[i];
        }
        set_sums(o, t, kQuantBlock);
#endif
    }
}

// --- quantized: one vector against G groups of 8 rows (decode) -----------------------------------
//
// Panels (kernels.hpp, PanelQ8) put 8 rows in the 8 int32 lanes of an AVX2 register: one 32-byte
// load holds 4 levels of each row, the activations' matching 4 bytes are broadcast, and
// maddubs/madd (AVX2) or dpbusd (VNNI) leave each row's partial dot product in its own lane. A
// block then costs one conversion and one FMA for 8 rows, with the 8 row scales loaded as one
// vector, and no horizontal sums.
//
// Every (row, vector) value is acc += float(dot_b) · (d_w · d_x) over blocks in order, whatever
// the number of vectors or the row range, so matvec_q and matmul_q agree bit for bit.

#ifndef SL_PREFETCH
#define SL_PREFETCH 1024
#endif
// Panels of a group are one sequential stream; asking for the lines this far ahead keeps more
// reads in flight than the hardware prefetcher does for a single stream.
[[maybe_unused]] constexpr size_t kPrefetchBytes = SL_PREFETCH;  // unused by the scalar build
template <size_t Bytes>
inline void prefetch_panel(const void* p) {
#if SL_AVX512 || SL_AVX2
    if (kPrefetchBytes == 0) return;
    const char* c = static_cast<const char*>(p) + kPrefetchBytes;
    for (size_t off = 0; off < Bytes; off += 64) _mm_prefetch(c + off, _MM_HINT_T0);
#else
    (void)p;
#endif
}

#if SL_AVX512 || SL_AVX2
// 4 bytes of x (elements 4k .. 4k+3 of a block) in every lane.
inline __m256i bcast4(const BlockQ8A& x, size_t k) {
    int32_t v;
    memcpy(&v, x.q + 4 * k, 4);
    return _mm256_set1_epi32(v);
}

// The 8 row scales of a panel, as floats.
inline __m256 panel_scales(const uint16_t* d) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(d)));
}

// acc + float(dot) · (d_w · d_x): one block's integer sums, scaled, into the 8 rows' accumulators.
// Every kernel ends a block with this, in this order, so all of them give the same bits.
inline __m256 add_block(__m256 acc, __m256i dot, __m256 dw, float dx) {
    return _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), _mm256_mul_ps(dw, _mm256_set1_ps(dx)), acc);
}

// A q4 block's dot products from its sums s (AVX-512: int32; AVX2: int16 pairs) less 8 · Σ q_x,
// as levels are stored as l + 8.
inline __m256i q4_block_dot(__m256i s, int32_t sum_x) {
#if SL_AVX2
    s = _mm256_madd_epi16(s, _mm256_set1_epi16(1));
#endif
    return _mm256_sub_epi32(s, _mm256_set1_epi32(8 * sum_x));
}
#endif

// s += v, in place. Left to itself GCC adds the sums of a block into a fresh register and copies
// each back once per chunk: the copies cost groups_q4 17 % of its speed from cache (a harness of
// the kernel alone, 32 -> 39 GB/s per core) and tile_q4 3 %. (The q8 kernels, bound by their
// multiplies, gain nothing from it.)
#if SL_AVX2 && defined(__GNUC__)
#define SL_ADD_EPI16(s, v) asm("vpaddw %1, %0, %0" : "+x"(s) : "x"(v))
#else
#define SL_ADD_EPI16(s, v) ((s) = _mm256_add_epi16((s), (v)))
#endif

// out[g][r] = Σ_b d_w[r] d_x dot(row r of group g, x): G groups (panel streams p[g]; several
// streams keep more reads in flight), 8 rows each, one vector xq [nb].
template <size_t G>
void groups_q4(const PanelQ4* const* p, size_t nb, const BlockQ8A* xq, float (*out)[kQuantRows]) {
#if SL_AVX512 || SL_AVX2
    __m256 acc[G];
    for (size_t g = 0; g < G; ++g) acc[g] = _mm256_setzero_ps();
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    for (size_t b = 0; b < nb; ++b) {
        const BlockQ8A& x = xq[b];
        // AVX-512: int32 sums (dpbusd). AVX2: int16 pairs, as 8 maddubs of levels ≤ 15 stay
        // below 8 · 2 · 15 · 127 < 2^15.
        __m256i s[G];
        for (size_t g = 0; g < G; ++g) s[g] = _mm256_setzero_si256();
        for (size_t g = 0; g < G; ++g) prefetch_panel<sizeof(PanelQ4)>(p[g] + b);
        for (size_t c = 0; c < 4; ++c) {
            const __m256i xlo = bcast4(x, 2 * c), xhi = bcast4(x, 2 * c + 1);
            for (size_t g = 0; g < G; ++g) {
                const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p[g][b].q + 32 * c));
                const __m256i lo = _mm256_and_si256(v, m4);                         // elements 8c + j
                const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);  // 8c + 4 + j
#if SL_AVX512
                s[g] = _mm256_dpbusd_epi32(s[g], lo, xlo);
                s[g] = _mm256_dpbusd_epi32(s[g], hi, xhi);
#else
                SL_ADD_EPI16(s[g], _mm256_maddubs_epi16(lo, xlo));
                SL_ADD_EPI16(s[g], _mm256_maddubs_epi16(hi, xhi));
#endif
            }
        }
        for (size_t g = 0; g < G; ++g)
            acc[g] = add_block(acc[g], q4_block_dot(s[g], x.sum), panel_scales(p[g][b].d), x.d);
    }
    for (size_t g = 0; g < G; ++g) _mm256_storeu_ps(out[g], acc[g]);
#else
    for (size_t g = 0; g < G; ++g) {
        float* o = out[g];
        for (size_t r = 0; r < kQuantRows; ++r) o[r] = 0.0f;
        for (size_t b = 0; b < nb; ++b) {
            const PanelQ4& pan = p[g][b];
            const BlockQ8A& x = xq[b];
            for (size_t r = 0; r < kQuantRows; ++r) {
                int32_t dot = 0;
                for (size_t c = 0; c < 4; ++c) {
                    for (size_t j = 0; j < 4; ++j) {
                        const uint8_t v = pan.q[32 * c + 4 * r + j];
                        dot += int32_t(v & 15) * x.q[8 * c + j] + int32_t(v >> 4) * x.q[8 * c + 4 + j];
                    }
                }
                dot -= 8 * x.sum;
                o[r] += float(dot) * (scalar_f16(pan.d[r]) * x.d);
            }
        }
    }
#endif
}

template <size_t G>
void groups_q8(const PanelQ8* const* p, size_t nb, const BlockQ8A* xq, float (*out)[kQuantRows]) {
#if SL_AVX512 || SL_AVX2
    __m256 acc[G];
    for (size_t g = 0; g < G; ++g) acc[g] = _mm256_setzero_ps();
#if SL_AVX512
    // dpbusd wants unsigned by signed bytes: (x + 128, the sign bit flipped) times w, less
    // 128 · Σ w.
    const __m256i flip = _mm256_set1_epi8(int8_t(0x80));
#endif
    for (size_t b = 0; b < nb; ++b) {
        const BlockQ8A& x = xq[b];
        __m256i s[G];  // int32 sums, one lane per row
        for (size_t g = 0; g < G; ++g) s[g] = _mm256_setzero_si256();
        for (size_t g = 0; g < G; ++g) prefetch_panel<sizeof(PanelQ8)>(p[g] + b);
#if SL_AVX512
        __m256i sum_w[G];
        for (size_t g = 0; g < G; ++g) sum_w[g] = _mm256_setzero_si256();
#endif
        for (size_t c = 0; c < 8; ++c) {
            const __m256i xs = bcast4(x, c);
#if SL_AVX512
            const __m256i xu = _mm256_xor_si256(xs, flip);
#else
            // |x| times w with x's sign: |x| is the same for the 8 rows of every group, so it is
            // taken once per chunk, not once per panel.
            const __m256i ax = _mm256_sign_epi8(xs, xs);
#endif
            for (size_t g = 0; g < G; ++g) {
                const __m256i w = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p[g][b].q + 32 * c));
#if SL_AVX512
                sum_w[g] = _mm256_dpbusd_epi32(sum_w[g], flip, w);
                s[g] = _mm256_dpbusd_epi32(s[g], xu, w);
#else
                // A pair of products is up to 2 · 127 · 127 (levels are in [-127, 127]), so each
                // maddubs result is widened to int32 before adding.
                s[g] = _mm256_add_epi32(s[g], _mm256_madd_epi16(_mm256_maddubs_epi16(ax, _mm256_sign_epi8(w, xs)),
                                                                _mm256_set1_epi16(1)));
#endif
            }
        }
        for (size_t g = 0; g < G; ++g) {
#if SL_AVX512
            const __m256i dot = _mm256_sub_epi32(s[g], sum_w[g]);
#else
            const __m256i dot = s[g];
#endif
            acc[g] = add_block(acc[g], dot, panel_scales(p[g][b].d), x.d);
        }
    }
    for (size_t g = 0; g < G; ++g) _mm256_storeu_ps(out[g], acc[g]);
#else
    for (size_t g = 0; g < G; ++g) {
        float* o = out[g];
        for (size_t r = 0; r < kQuantRows; ++r) o[r] = 0.0f;
        for (size_t b = 0; b < nb; ++b) {
            const PanelQ8& pan = p[g][b];
            const BlockQ8A& x = xq[b];
            for (size_t r = 0; r < kQuantRows; ++r) {
                int32_t dot = 0;
                for (size_t c = 0; c < 8; ++c)
                    for (size_t j = 0; j < 4; ++j) dot += int32_t(pan.q[32 * c + 4 * r + j]) * x.q[4 * c + j];
                o[r] += float(dot) * (scalar_f16(pan.d[r]) * x.d);
            }
        }
    }
#endif
}

// --- quantized: one group of 8 rows against T vectors (prefill, batched decode) ------------------

// Vectors per pass over a panel: the 6 block sums, a chunk of weights, |w| and the constants fit
// the 16 AVX2 registers (at 8 the q8 kernel spills, 10 % slower; q4 gains nothing from 8).
constexpr size_t kTile = 6;
//
// The 32 bytes of a panel chunk are loaded once for T vectors. Per vector and chunk only the
// activation bytes are broadcast (a load) and multiplied in: the sums of a block stay in T
// registers and the float accumulators live in `out` (L1), so nothing spills whatever T.
// q8 multiplies |w| by x with w's sign, |w| being taken once per chunk for all T vectors (the
// unsigned-by-signed byte product wants one operand non-negative); the integer sums are those
// of groups_q8, so every value is bit-identical to the one-vector kernel's.

// out[t][r] = Σ_b d_w[r] d_x[t] dot(row r, x_t) for T vectors x_t = xq + t·nb.
template <size_t T>
void tile_q8(const PanelQ8* p, size_t nb, const BlockQ8A* xq, float (*out)[kQuantRows]) {
#if SL_AVX512 || SL_AVX2
    for (size_t t = 0; t < T; ++t) _mm256_storeu_ps(out[t], _mm256_setzero_ps());
#if SL_AVX2
    const __m256i ones = _mm256_set1_epi16(1);
#endif
    for (size_t b = 0; b < nb; ++b) {
        __m256i s[T];
        for (size_t t = 0; t < T; ++t) s[t] = _mm256_setzero_si256();
        prefetch_panel<sizeof(PanelQ8)>(p + b);
        // Not unrolled: unrolled, GCC sums the products as a tree and spills them.
#pragma GCC unroll 1
        for (size_t c = 0; c < 8; ++c) {
            const __m256i w = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p[b].q + 32 * c));
            const __m256i aw = _mm256_sign_epi8(w, w);
            for (size_t t = 0; t < T; ++t) {
                const __m256i sx = _mm256_sign_epi8(bcast4(xq[t * nb + b], c), w);
#if SL_AVX512
                s[t] = _mm256_dpbusd_epi32(s[t], aw, sx);
#else
                // A pair of products is at most 2 · 127 · 127: one maddubs cannot saturate, two
                // added in int16 could, so each is widened to int32 first.
                s[t] = _mm256_add_epi32(s[t], _mm256_madd_epi16(_mm256_maddubs_epi16(aw, sx), ones));
#endif
            }
        }
        const __m256 dw = panel_scales(p[b].d);
        for (size_t t = 0; t < T; ++t)
            _mm256_storeu_ps(out[t], add_block(_mm256_loadu_ps(out[t]), s[t], dw, xq[t * nb + b].d));
    }
#else
    for (size_t t = 0; t < T; ++t) {
        const PanelQ8* g = p;
        groups_q8<1>(&g, nb, xq + t * nb, out + t);
    }
#endif
}

// A q4 tile starts each (vector, block) sum at the block's share of -8 · Σ q_x (the stored levels
// are l + 8; AVX2: BlockQ8A::q4_start, AVX-512: the int32 -8 · sum) instead of subtracting
// 8 · Σ q_x after: fewer instructions per vector and block in an epilogue that was a quarter of
// the kernel's time (a harness of tile_q4 alone: 70 -> 76 G multiply-adds/s). The int16 adds
// wrap, and the final halves, Σ l · q_x over 16 elements, are within ±16 · 8 · 127.
template <size_t T>
void tile_q4(const PanelQ4* p, size_t nb, const BlockQ8A* xq, float (*out)[kQuantRows]) {
#if SL_AVX512 || SL_AVX2
    for (size_t t = 0; t < T; ++t) _mm256_storeu_ps(out[t], _mm256_setzero_ps());
    const __m256i m4 = _mm256_set1_epi8(0x0f);
#if SL_AVX2
    const __m256i ones = _mm256_set1_epi16(1);
#endif
    for (size_t b = 0; b < nb; ++b) {
        // AVX-512: int32 sums (dpbusd). AVX2: int16 pairs, as 8 maddubs of levels ≤ 15 stay
        // below 8 · 2 · 15 · 127 < 2^15.
        __m256i s[T];
        for (size_t t = 0; t < T; ++t) {
#if SL_AVX512
            s[t] = _mm256_set1_epi32(-8 * xq[t * nb + b].sum);
#else
            int32_t pair;
            memcpy(&pair, xq[t * nb + b].q4_start, 4);
            s[t] = _mm256_set1_epi32(pair);
#endif
        }
        prefetch_panel<sizeof(PanelQ4)>(p + b);
        // Not unrolled: unrolled, GCC sums the products as a tree and spills them.
#pragma GCC unroll 1
        for (size_t c = 0; c < 4; ++c) {
            const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p[b].q + 32 * c));
            const __m256i lo = _mm256_and_si256(v, m4);                         // elements 8c + j
            const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);  // 8c + 4 + j
            for (size_t t = 0; t < T; ++t) {
                const BlockQ8A& x = xq[t * nb + b];
#if SL_AVX512
                s[t] = _mm256_dpbusd_epi32(s[t], lo, bcast4(x, 2 * c));
                s[t] = _mm256_dpbusd_epi32(s[t], hi, bcast4(x, 2 * c + 1));
#else
                SL_ADD_EPI16(s[t], _mm256_maddubs_epi16(lo, bcast4(x, 2 * c)));
                SL_ADD_EPI16(s[t], _mm256_maddubs_epi16(hi, bcast4(x, 2 * c + 1)));
#endif
            }
        }
        const __m256 dw = panel_scales(p[b].d);
        for (size_t t = 0; t < T; ++t) {
#if SL_AVX512
            const __m256i dot = s[t];
#else
            const __m256i dot = _mm256_madd_epi16(s[t], ones);
#endif
            _mm256_storeu_ps(out[t], add_block(_mm256_loadu_ps(out[t]), dot, dw, xq[t * nb + b].d));
        }
    }
#else
    for (size_t t = 0; t < T; ++t) {
        const PanelQ4* g = p;
        groups_q4<1>(&g, nb, xq + t * nb, out + t);
    }
#endif
}

// One plain row (the rows % 8 after the panels) against one vector: the same per-block formula
// with the 8 lanes of a block summed in the vector unit.
float row_q8(const BlockQ8* w, size_t nb, const BlockQ8A* xq) {
#if SL_AVX512 || SL_AVX2
    __m256 acc = _mm256_setzero_ps();
    for (size_t b = 0; b < nb; ++b) {
        const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq[b].q));
        const __m256i wv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w[b].q));
        const __m256i p = dot_us(_mm256_sign_epi8(wv, wv), _mm256_sign_epi8(xv, wv));
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(scalar_f16(w[b].d) * xq[b].d), acc);
    }
    return hsum(acc);
#else
    float acc = 0.0f;
    for (size_t b = 0; b < nb; ++b) {
        int32_t dot = 0;
        for (size_t i = 0; i < kQuantBlock; ++i) dot += int32_t(w[b].q[i]) * xq[b].q[i];
        acc += float(dot) * (scalar_f16(w[b].d) * xq[b].d);
    }
    return acc;
#endif
}

float row_q4(const BlockQ4* w, size_t nb, const BlockQ8A* xq) {
#if SL_AVX512 || SL_AVX2
    __m256 acc = _mm256_setzero_ps();
    for (size_t b = 0; b < nb; ++b) {
        const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq[b].q));
        const __m256i corr = _mm256_setr_epi32(-8 * xq[b].sum, 0, 0, 0, 0, 0, 0, 0);
        const __m256i p = _mm256_add_epi32(dot_us(q4_unpack(w[b].q), xv), corr);
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(scalar_f16(w[b].d) * xq[b].d), acc);
    }
    return hsum(acc);
#else
    constexpr size_t h = kQuantBlock / 2;
    float acc = 0.0f;
    for (size_t b = 0; b < nb; ++b) {
        int32_t dot = 0;
        for (size_t i = 0; i < h; ++i)
            dot += int32_t(w[b].q[i] & 15) * xq[b].q[i] + int32_t(w[b].q[i] >> 4) * xq[b].q[i + h];
        dot -= 8 * xq[b].sum;
        acc += float(dot) * (scalar_f16(w[b].d) * xq[b].d);
    }
    return acc;
#endif
}

struct KernQ4 {
    using Panel = PanelQ4;
    using Block = BlockQ4;
    template <size_t G>
    static void groups(const Panel* const* p, size_t nb, const BlockQ8A* xq, float (*out)[kQuantRows]) {
        groups_q4<G>(p, nb, xq, out);
    }
    template <size_t T>
    static void tile(const Panel* p, size_t nb, const BlockQ8A* xq, float (*out)[kQuantRows]) {
        tile_q4<T>(p, nb, xq, out);
    }
    static float row(const Block* w, size_t nb, const BlockQ8A* xq) { return row_q4(w, nb, xq); }
};
struct KernQ8 {
    using Panel = PanelQ8;
    using Block = BlockQ8;
    template <size_t G>
    static void groups(const Panel* const* p, size_t nb, const BlockQ8A* xq, float (*out)[kQuantRows]) {
        groups_q8<G>(p, nb, xq, out);
    }
    template <size_t T>
    static void tile(const Panel* p, size_t nb, const BlockQ8A* xq, float (*out)[kQuantRows]) {
        tile_q8<T>(p, nb, xq, out);
    }
    static float row(const Block* w, size_t nb, const BlockQ8A* xq) { return row_q8(w, nb, xq); }
};

// One group against T = n vectors (n ≤ kTile).
template <class K>
void group_tile(const typename K::Panel* p, size_t nb, const BlockQ8A* xq, size_t n,
                float (*out)[kQuantRows]) {
    switch (n) {
        case 6: K::template tile<6>(p, nb, xq, out); break;
        case 5: K::template tile<5>(p, nb, xq, out); break;
        case 4: K::template tile<4>(p, nb, xq, out); break;
        case 3: K::template tile<3>(p, nb, xq, out); break;
        case 2: K::template tile<2>(p, nb, xq, out); break;
        default: K::template tile<1>(p, nb, xq, out); break;
    }
}

// Rows [r0, r1) of every group in [ga, gb) (rows of other groups untouched), m vectors.
template <class K>
void groups_range(const typename K::Panel* panels, size_t nb, size_t ga, size_t gb,
                  const BlockQ8A* xq, size_t m, float* y, size_t ldy, size_t r0, size_t r1) {
    for (size_t g = ga; g < gb; ++g) {
        const size_t a = max_size(r0, g * kQuantRows), e = min_size(r1, (g + 1) * kQuantRows);
        for (size_t t0 = 0; t0 < m; t0 += kTile) {
            const size_t n = min_size(kTile, m - t0);
            float out[kTile][kQuantRows];
            group_tile<K>(panels + g * nb, nb, xq + t0 * nb, n, out);
            for (size_t t = 0; t < n; ++t)
                for (size_t r = a; r < e; ++r) y[(t0 + t) * ldy + r] = out[t][r - g * kQuantRows];
        }
    }
}

template <class K>
void matmul_q_impl(const Matrix& w, const BlockQ8A* xq, size_t m, float* y, size_t ldy, size_t r0,
                   size_t r1) {
    using Panel = typename K::Panel;
    const size_t nb = w.cols / kQuantBlock, full = w.rows / kQuantRows * kQuantRows;
    const Panel* panels = static_cast<const Panel*>(w.data);
    const typename K::Block* tail =
        reinterpret_cast<const typename K::Block*>(panels + (full / kQuantRows) * nb);
    const size_t pr1 = min_size(r1, full);  // rows in panels: [r0, pr1)
    if (r0 < pr1) {
        // Groups wholly inside the range: [ga, gb); at most one partial group on each side.
        const size_t ga = (r0 + kQuantRows - 1) / kQuantRows, gb = pr1 / kQuantRows;
        if (ga > gb) {  // the range lies inside one group
            groups_range<K>(panels, nb, r0 / kQuantRows, r0 / kQuantRows + 1, xq, m, y, ldy, r0, pr1);
        } else {
            if (r0 % kQuantRows) groups_range<K>(panels, nb, ga - 1, ga, xq, m, y, ldy, r0, pr1);
            if (pr1 % kQuantRows) groups_range<K>(panels, nb, gb, gb + 1, xq, m, y, ldy, r0, pr1);
            if (m == 1) {
                // One vector: four groups a quarter of the range apart at once, four streams.
                const size_t n = gb - ga, q = (n + 3) / 4;
                for (size_t i = 0; i < q; ++i) {
                    const Panel* p[4];
                    size_t gs[4], k = 0;
                    for (size_t s = 0; s < 4; ++s) {
                        const size_t g = ga + i + s * q;
                        if (g < gb && (s == 0 || i + s * q < n)) {
                            gs[k] = g;
                            p[k++] = panels + g * nb;
                        }
                    }
                    float out[4][kQuantRows];
                    switch (k) {
                        case 4: K::template groups<4>(p, nb, xq, out); break;
                        case 3: K::template groups<3>(p, nb, xq, out); break;
                        case 2: K::template groups<2>(p, nb, xq, out); break;
                        default: K::template groups<1>(p, nb, xq, out); break;
                    }
                    for (size_t j = 0; j < k; ++j)
                        memcpy(y + gs[j] * kQuantRows, out[j], sizeof out[j]);
                }
            } else {
                groups_range<K>(panels, nb, ga, gb, xq, m, y, ldy, r0, r1);
            }
        }
    }
    for (size_t r = max_size(r0, full); r < r1; ++r)
        for (size_t t = 0; t < m; ++t) y[t * ldy + r] = K::row(tail + (r - full) * nb, nb, xq + t * nb);
}

void matmul_q(const Matrix& w, const BlockQ8A* xq, size_t m, float* y, size_t ldy, size_t r0,
              size_t r1) {
    if (w.type == WeightType::q8) {
        matmul_q_impl<KernQ8>(w, xq, m, y, ldy, r0, r1);
    } else if (w.type == WeightType::q4) {
        matmul_q_impl<KernQ4>(w, xq, m, y, ldy, r0, r1);
    }
}

void matvec_q(const Matrix& w, const BlockQ8A* xq, float* y, size_t r0, size_t r1) {
    matmul_q(w, xq, 1, y, 0, r0, r1);
}

// --- table entries ----------------------------------------------------------------------------------

void matvec(const Matrix& w, const float* x, float* y, size_t r0, size_t r1) {
    const size_t n = w.cols;
    switch (w.type) {
        case WeightType::f32:
            matvec_rows<false>(static_cast<const float*>(w.data), n, x, y, r0, r1);
            return;
        case WeightType::f16:
            matvec_rows<false>(static_cast<const uint16_t*>(w.data), n, x, y, r0, r1);
            return;
        case WeightType::bf16:
            matvec_rows<true>(static_cast<const uint16_t*>(w.data), n, x, y, r0, r1);
            return;
        case WeightType::q8:
        case WeightType::q4: {
            // Quantize x here (callers with many row ranges use quantize_acts + matvec_q).
            const size_t nb = n / kQuantBlock;
            BlockQ8A local[256];
            BlockQ8A* xq = nb <= 256 ? local : static_cast<BlockQ8A*>(malloc(nb * sizeof(BlockQ8A)));
            if (!xq) abort();
            quantize_acts(x, n, xq);
            matvec_q(w, xq, y, r0, r1);
            if (xq != local) free(xq);
            return;
        }
    }
}

void matmul_f(const Matrix& w, const float* x, size_t m, float* y, size_t ldy, size_t r0,
              size_t r1) {
    const size_t n = w.cols;
    switch (w.type) {
        case WeightType::f32:
            matmul_rows<false>(static_cast<const float*>(w.data), n, x, m, y, ldy, r0, r1);
            return;
        case WeightType::f16:
            matmul_rows<false>(static_cast<const uint16_t*>(w.data), n, x, m, y, ldy, r0, r1);
            return;
        case WeightType::bf16:
            matmul_rows<true>(static_cast<const uint16_t*>(w.data), n, x, m, y, ldy, r0, r1);
            return;
        case WeightType::q8:
        case WeightType::q4:
            abort();  // a programming error: quantized weights go through matmul_q
    }
}

// out[i] = float(level i) · d for block b of row r, wherever the layout keeps it.
void dequantize_block(const Matrix& w, size_t nb, size_t full, size_t r, size_t b, float* out) {
    int8_t l[kQuantBlock];
    uint16_t d;
    if (w.type == WeightType::q8) {
        if (r < full) {
            const PanelQ8& p = static_cast<const PanelQ8*>(w.data)[(r / kQuantRows) * nb + b];
            const size_t lane = r % kQuantRows;
            d = p.d[lane];
            for (size_t c = 0; c < 8; ++c) memcpy(l + 4 * c, p.q + 32 * c + 4 * lane, 4);
        } else {
            const BlockQ8& blk = reinterpret_cast<const BlockQ8*>(
                static_cast<const PanelQ8*>(w.data) + (full / kQuantRows) * nb)[(r - full) * nb + b];
            d = blk.d;
            memcpy(l, blk.q, kQuantBlock);
        }
    } else {
        if (r < full) {
            const PanelQ4& p = static_cast<const PanelQ4*>(w.data)[(r / kQuantRows) * nb + b];
            const size_t lane = r % kQuantRows;
            d = p.d[lane];
            for (size_t c = 0; c < 4; ++c) {
                for (size_t j = 0; j < 4; ++j) {
                    const uint8_t v = p.q[32 * c + 4 * lane + j];
                    l[8 * c + j] = int8_t((v & 15) - 8);
                    l[8 * c + 4 + j] = int8_t((v >> 4) - 8);
                }
            }
        } else {
            const BlockQ4& blk = reinterpret_cast<const BlockQ4*>(
                static_cast<const PanelQ4*>(w.data) + (full / kQuantRows) * nb)[(r - full) * nb + b];
            d = blk.d;
            for (size_t i = 0; i < kQuantBlock / 2; ++i) {
                l[i] = int8_t((blk.q[i] & 15) - 8);
                l[i + kQuantBlock / 2] = int8_t((blk.q[i] >> 4) - 8);
            }
        }
    }
    const float df = scalar_f16(d);
#if SL_AVX512 || SL_AVX2
    const __m256 vd = _mm256_set1_ps(df);
    for (size_t k = 0; k < kQuantBlock; k += 8) {
        const __m128i q = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(l + k));
        _mm256_storeu_ps(out + k, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q)), vd));
    }
#else
    for (size_t k = 0; k < kQuantBlock; ++k) out[k] = float(l[k]) * df;
#endif
}

void rows_to_f32(const Matrix& w, size_t r0, size_t r1, float* out) {
    const size_t begin = r0 * w.cols, end = r1 * w.cols, n = end - begin;
    switch (w.type) {
        case WeightType::f32:
            memcpy(out, static_cast<const float*>(w.data) + begin, n * sizeof(float));
            return;
        case WeightType::f16:
        case WeightType::bf16: {
            const uint16_t* src = static_cast<const uint16_t*>(w.data) + begin;
            size_t i = 0;
            if (w.type == WeightType::f16) {
#if SL_AVX512
                for (; i + 16 <= n; i += 16) _mm512_storeu_ps(out + i, load16h<false>(src + i));
#elif SL_AVX2
                for (; i + 8 <= n; i += 8) _mm256_storeu_ps(out + i, load8h<false>(src + i));
#endif
                for (; i < n; ++i) out[i] = scalar_f16(src[i]);
            } else {
#if SL_AVX512
                for (; i + 16 <= n; i += 16) _mm512_storeu_ps(out + i, load16h<true>(src + i));
#elif SL_AVX2
                for (; i + 8 <= n; i += 8) _mm256_storeu_ps(out + i, load8h<true>(src + i));
#endif
                for (; i < n; ++i) out[i] = scalar_bf16(src[i]);
            }
            return;
        }
        case WeightType::q8:
        case WeightType::q4: {
            const size_t nb = w.cols / kQuantBlock, full = w.rows / kQuantRows * kQuantRows;
            for (size_t r = r0; r < r1; ++r, out += w.cols) {
                for (size_t b = 0; b < nb; ++b) dequantize_block(w, nb, full, r, b, out + b * kQuantBlock);
            }
            return;
        }
    }
}

#if SL_AVX512 || SL_AVX2
// e^x in 8 lanes: x = n·ln2 + r with |r| ≤ ln2/2, e^r by Cephes expf's degree-6 polynomial, 2^n
// placed in the exponent bits; within 2 ulp of expf (tests/kernels_test.cpp). Inputs are clamped
// to [-87.3, 88]: below, the result is the smallest normal rather than a subnormal or 0 (the
// softmax and SiLU here lose nothing by it), above, e^88. NaN stays NaN.
inline __m256 exp8(__m256 x) {
    x = _mm256_min_ps(_mm256_set1_ps(88.0f), x);  // min/max return the second operand on NaN
    x = _mm256_max_ps(_mm256_set1_ps(-87.33654475f), x);
    // n = round(x / ln2), to nearest even as the default rounding mode converts.
    const __m256i ni = _mm256_cvtps_epi32(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)));
    const __m256 n = _mm256_cvtepi32_ps(ni);
    // r = x - n·ln2, ln2 in two parts so that n·ln2_hi is exact.
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_add_ps(_mm256_fmadd_ps(p, _mm256_mul_ps(r, r), r), _mm256_set1_ps(1.0f));
    const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(ni, _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}
#endif

void axpy(float a, const float* x, float* y, size_t n) {
    size_t i = 0;
#if SL_AVX512
    __m512 va = _mm512_set1_ps(a);
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(y + i, _mm512_fmadd_ps(va, load16(x + i), load16(y + i)));
#elif SL_AVX2
    __m256 va = _mm256_set1_ps(a);
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, load8(x + i), load8(y + i)));
#endif
    for (; i < n; ++i) y[i] += a * x[i];
}

void rmsnorm(const float* x, const float* w, float* y, size_t n, float eps) {
    const float ss = dot_f32(x, x, n);
    const float inv = 1.0f / sqrtf(ss / static_cast<float>(n) + eps);
    for (size_t i = 0; i < n; ++i) y[i] = (x[i] * inv) * w[i];
}

void silu_mul(float* g, const float* u, size_t n) {
    size_t i = 0;
#if SL_AVX512 || SL_AVX2
    const __m256 one = _mm256_set1_ps(1.0f);
    for (; i + 8 <= n; i += 8) {
        const __m256 x = load8(g + i);
        const __m256 e = exp8(_mm256_sub_ps(_mm256_setzero_ps(), x));
        _mm256_storeu_ps(g + i, _mm256_mul_ps(_mm256_div_ps(x, _mm256_add_ps(one, e)), load8(u + i)));
    }
#endif
    for (; i < n; ++i) g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

void add(float* y, const float* x, size_t n) {
    for (size_t i = 0; i < n; ++i) y[i] += x[i];
}

// Plain loops: compiled with each ISA's flags, GCC vectorises them over i.
void rope(float* x, size_t n_heads, size_t head_dim, const float* cos, const float* sin) {
    const size_t half = head_dim / 2;
    for (size_t h = 0; h < n_heads; ++h) {
        float* v = x + h * head_dim;
        for (size_t i = 0; i < half; ++i) {
            const float a = v[i], b = v[i + half];
            v[i] = a * cos[i] - b * sin[i];
            v[i + half] = b * cos[i] + a * sin[i];
        }
    }
}

#if SL_AVX512 || SL_AVX2
// out[c .. c + 8W) = Σ_t p[t] · v_t[c .. c + 8W) · inv, the W accumulators in registers.
template <size_t W>
void attend_values(const float* p, const float* v, size_t n_kv, size_t stride, float inv, float* out) {
    __m256 o[W];
    for (size_t j = 0; j < W; ++j) o[j] = _mm256_setzero_ps();
    for (size_t t = 0; t < n_kv; ++t) {
        const __m256 pt = _mm256_set1_ps(p[t]);
        const float* vt = v + t * stride;
        for (size_t j = 0; j < W; ++j) o[j] = _mm256_fmadd_ps(pt, load8(vt + 8 * j), o[j]);
    }
    const __m256 vi = _mm256_set1_ps(inv);
    for (size_t j = 0; j < W; ++j) _mm256_storeu_ps(out + 8 * j, _mm256_mul_ps(o[j], vi));
}
#endif

// Attention of one query head over n_kv cached positions.
void attend_one(const float* q, const float* k, const float* v, size_t n_kv, size_t stride,
            size_t head_dim, float scale, float* scores, float* out) {
#if SL_AVX512 || SL_AVX2
    if (head_dim % 8 == 0) {
        // Scores four positions at a time: four accumulators, reduced together by hadd.
        size_t t = 0;
        for (; t + 4 <= n_kv; t += 4) {
            __m256 a[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
            for (size_t i = 0; i < head_dim; i += 8) {
                const __m256 qi = load8(q + i);
                for (size_t j = 0; j < 4; ++j) a[j] = _mm256_fmadd_ps(qi, load8(k + (t + j) * stride + i), a[j]);
            }
            const __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(a[0], a[1]), _mm256_hadd_ps(a[2], a[3]));
            const __m128 s = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
            _mm_storeu_ps(scores + t, _mm_mul_ps(s, _mm_set1_ps(scale)));
        }
        for (; t < n_kv; ++t) scores[t] = dot_f32(q, k + t * stride, head_dim) * scale;

        float max_score = -INFINITY;
        for (t = 0; t < n_kv; ++t) max_score = scores[t] > max_score ? scores[t] : max_score;
        const __m256 vmax = _mm256_set1_ps(max_score);
        __m256 vsum = _mm256_setzero_ps();
        for (t = 0; t + 8 <= n_kv; t += 8) {
            const __m256 e = exp8(_mm256_sub_ps(load8(scores + t), vmax));
            _mm256_storeu_ps(scores + t, e);
            vsum = _mm256_add_ps(vsum, e);
        }
        float sum = hsum(vsum);
        if (t < n_kv) {  // the last n_kv % 8 through the same exp8, padded
            float tail[8];
            for (size_t j = 0; j < 8; ++j) tail[j] = t + j < n_kv ? scores[t + j] - max_score : -INFINITY;
            _mm256_storeu_ps(tail, exp8(load8(tail)));
            for (size_t j = 0; t + j < n_kv; ++j) {
                scores[t + j] = tail[j];
                sum += tail[j];
            }
        }
        const float inv = 1.0f / sum;
        for (size_t c = 0; c < head_dim; c += 64) {
            switch ((head_dim - c >= 64 ? 64 : head_dim - c) / 8) {
                case 8: attend_values<8>(scores, v + c, n_kv, stride, inv, out + c); break;
                case 7: attend_values<7>(scores, v + c, n_kv, stride, inv, out + c); break;
                case 6: attend_values<6>(scores, v + c, n_kv, stride, inv, out + c); break;
                case 5: attend_values<5>(scores, v + c, n_kv, stride, inv, out + c); break;
                case 4: attend_values<4>(scores, v + c, n_kv, stride, inv, out + c); break;
                case 3: attend_values<3>(scores, v + c, n_kv, stride, inv, out + c); break;
                case 2: attend_values<2>(scores, v + c, n_kv, stride, inv, out + c); break;
                default: attend_values<1>(scores, v + c, n_kv, stride, inv, out + c); break;
            }
        }
        return;
    }
#endif
    float max_score = -INFINITY;
    for (size_t t = 0; t < n_kv; ++t) {
        scores[t] = dot_f32(q, k + t * stride, head_dim) * scale;
        if (scores[t] > max_score) max_score = scores[t];
    }
    float sum = 0.0f;
    for (size_t t = 0; t < n_kv; ++t) {
        scores[t] = expf(scores[t] - max_score);
        sum += scores[t];
    }
    const float inv = 1.0f / sum;
    for (size_t i = 0; i < head_dim; ++i) out[i] = 0.0f;
    for (size_t t = 0; t < n_kv; ++t) axpy(scores[t] * inv, v + t * stride, out, head_dim);
}


// Attention of n_q query heads that share one KV head (grouped-query attention; n_q = 1 for
// multi-head). Up to 8 heads go together: each K and V row is loaded once for all of them, and
// their scores sit side by side ([t][8]), so the softmax runs across heads in the vector lanes.
void attend(const float* q, size_t n_q, const float* k, const float* v, size_t n_kv, size_t stride,
            size_t head_dim, float scale, float* scores, float* out) {
#if SL_AVX512 || SL_AVX2
    if (head_dim % 8 == 0 && n_q > 1) {
        for (size_t g0 = 0; g0 < n_q; g0 += kAttendGroup) {
            const size_t G = min_size(kAttendGroup, n_q - g0);
            const float* qh[kAttendGroup];  // lanes past G repeat the last head; their results are dropped
            for (size_t g = 0; g < kAttendGroup; ++g) qh[g] = q + (g0 + min_size(g, G - 1)) * head_dim;
            __m256 vmax = _mm256_set1_ps(-INFINITY);
            for (size_t t = 0; t < n_kv; ++t) {
                __m256 a[kAttendGroup];
                for (size_t g = 0; g < kAttendGroup; ++g) a[g] = _mm256_setzero_ps();
                const float* kt = k + t * stride;
                for (size_t i = 0; i < head_dim; i += 8) {
                    const __m256 kv = load8(kt + i);
                    for (size_t g = 0; g < kAttendGroup; ++g) a[g] = _mm256_fmadd_ps(load8(qh[g] + i), kv, a[g]);
                }
                // Eight sums into one vector: hadd pairs, then the two 128-bit halves.
                const __m256 h01 = _mm256_hadd_ps(_mm256_hadd_ps(a[0], a[1]), _mm256_hadd_ps(a[2], a[3]));
                const __m256 h23 = _mm256_hadd_ps(_mm256_hadd_ps(a[4], a[5]), _mm256_hadd_ps(a[6], a[7]));
                const __m256 s = _mm256_mul_ps(_mm256_add_ps(_mm256_permute2f128_ps(h01, h23, 0x20),
                                                             _mm256_permute2f128_ps(h01, h23, 0x31)),
                                               _mm256_set1_ps(scale));
                _mm256_storeu_ps(scores + t * kAttendGroup, s);
                vmax = _mm256_max_ps(vmax, s);
            }
            __m256 vsum = _mm256_setzero_ps();
            for (size_t t = 0; t < n_kv; ++t) {
                const __m256 e = exp8(_mm256_sub_ps(load8(scores + t * kAttendGroup), vmax));
                _mm256_storeu_ps(scores + t * kAttendGroup, e);
                vsum = _mm256_add_ps(vsum, e);
            }
            float inv[kAttendGroup];
            _mm256_storeu_ps(inv, _mm256_div_ps(_mm256_set1_ps(1.0f), vsum));
            for (size_t c = 0; c < head_dim; c += 8) {
                __m256 o[kAttendGroup];
                for (size_t g = 0; g < kAttendGroup; ++g) o[g] = _mm256_setzero_ps();
                for (size_t t = 0; t < n_kv; ++t) {
                    const __m256 vv = load8(v + t * stride + c);
                    const float* p = scores + t * kAttendGroup;
                    for (size_t g = 0; g < kAttendGroup; ++g) o[g] = _mm256_fmadd_ps(_mm256_set1_ps(p[g]), vv, o[g]);
                }
                for (size_t g = 0; g < G; ++g)
                    _mm256_storeu_ps(out + (g0 + g) * head_dim + c, _mm256_mul_ps(o[g], _mm256_set1_ps(inv[g])));
            }
        }
        return;
    }
#endif
    for (size_t h = 0; h < n_q; ++h)
        attend_one(q + h * head_dim, k, v, n_kv, stride, head_dim, scale, scores, out + h * head_dim);
}

}  // namespace

#define SL_CONCAT2(a, b) a##b
#define SL_CONCAT(a, b) SL_CONCAT2(a, b)
#define SL_STR2(a) #a
#define SL_STR(a) SL_STR2(a)

const KernelTable& SL_CONCAT(table_, STACKLLAMA_KERNEL_ISA)() {
    static const KernelTable t{SL_STR(STACKLLAMA_KERNEL_ISA), matvec, matmul_f, rows_to_f32,
                               dot_f32, axpy, rmsnorm, silu_mul, add, quantize_acts, matvec_q,
                               matmul_q, rope, attend};
    return t;
}

}  // namespace stackllama::kernels
