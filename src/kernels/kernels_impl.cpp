// The kernels, compiled once per ISA (cmake/StackllamaKernels.cmake sets STACKLLAMA_KERNEL_ISA and
// the flags). This file includes only the kernel header, intrinsics and C headers, and keeps every
// helper in an anonymous namespace: a shared inline function compiled with AVX-512 flags could be
// picked by the linker for all callers and crash an older CPU.
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "kernels/kernels.hpp"

#if defined(STACKLLAMA_KERNEL_ISA_avx512)
#define SL_AVX512 1
#elif defined(STACKLLAMA_KERNEL_ISA_avx2)
#define SL_AVX2 1
#endif

namespace stackllama::kernels {
namespace {

inline float scalar_f16(uint16_t h) { return f16_to_f32(h); }
inline float scalar_bf16(uint16_t b) {
    uint32_t u = static_cast<uint32_t>(b) << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

#if SL_AVX512
// 16 lanes. Loads of 16 weights widened to f32.
inline __m512 load16(const float* p) { return _mm512_loadu_ps(p); }
inline __m512 load16(const uint16_t* p, WeightType t) {
    __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    if (t == WeightType::f16) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}
inline float hsum(__m512 v) { return _mm512_reduce_add_ps(v); }
#elif SL_AVX2
inline __m256 load8(const float* p) { return _mm256_loadu_ps(p); }
inline __m256 load8(const uint16_t* p, WeightType t) {
    __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    if (t == WeightType::f16) return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}
inline float hsum(__m256 v) {
    __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
    lo = _mm_add_ps(lo, hi);
    lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
    lo = _mm_add_ss(lo, _mm_shuffle_ps(lo, lo, 1));
    return _mm_cvtss_f32(lo);
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

// Σ w[i] x[i] with w stored as f16 or bf16.
float dot_half(const uint16_t* w, WeightType t, const float* x, size_t n) {
    size_t i = 0;
    float sum = 0.0f;
#if SL_AVX512
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    for (; i + 32 <= n; i += 32) {
        acc0 = _mm512_fmadd_ps(load16(w + i, t), load16(x + i), acc0);
        acc1 = _mm512_fmadd_ps(load16(w + i + 16, t), load16(x + i + 16), acc1);
    }
    for (; i + 16 <= n; i += 16) acc0 = _mm512_fmadd_ps(load16(w + i, t), load16(x + i), acc0);
    sum = hsum(_mm512_add_ps(acc0, acc1));
#elif SL_AVX2
    __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
    for (; i + 16 <= n; i += 16) {
        acc0 = _mm256_fmadd_ps(load8(w + i, t), load8(x + i), acc0);
        acc1 = _mm256_fmadd_ps(load8(w + i + 8, t), load8(x + i + 8), acc1);
    }
    for (; i + 8 <= n; i += 8) acc0 = _mm256_fmadd_ps(load8(w + i, t), load8(x + i), acc0);
    sum = hsum(_mm256_add_ps(acc0, acc1));
#endif
    if (t == WeightType::f16) {
        for (; i < n; ++i) sum += scalar_f16(w[i]) * x[i];
    } else {
        for (; i < n; ++i) sum += scalar_bf16(w[i]) * x[i];
    }
    return sum;
}

void matvec(const Matrix& w, const float* x, float* y, size_t r0, size_t r1) {
    const size_t n = w.cols;
    if (w.type == WeightType::f32) {
        const float* base = static_cast<const float*>(w.data);
        for (size_t r = r0; r < r1; ++r) y[r] = dot_f32(base + r * n, x, n);
    } else {
        const uint16_t* base = static_cast<const uint16_t*>(w.data);
        for (size_t r = r0; r < r1; ++r) y[r] = dot_half(base + r * n, w.type, x, n);
    }
}

void rows_to_f32(const Matrix& w, size_t r0, size_t r1, float* out) {
    const size_t begin = r0 * w.cols, end = r1 * w.cols;
    if (w.type == WeightType::f32) {
        memcpy(out, static_cast<const float*>(w.data) + begin, (end - begin) * sizeof(float));
        return;
    }
    const uint16_t* src = static_cast<const uint16_t*>(w.data) + begin;
    const size_t n = end - begin;
    size_t i = 0;
#if SL_AVX512
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(out + i, load16(src + i, w.type));
#elif SL_AVX2
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(out + i, load8(src + i, w.type));
#endif
    if (w.type == WeightType::f16) {
        for (; i < n; ++i) out[i] = scalar_f16(src[i]);
    } else {
        for (; i < n; ++i) out[i] = scalar_bf16(src[i]);
    }
}

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
    for (size_t i = 0; i < n; ++i) g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

void add(float* y, const float* x, size_t n) {
    for (size_t i = 0; i < n; ++i) y[i] += x[i];
}

}  // namespace

#define SL_CONCAT2(a, b) a##b
#define SL_CONCAT(a, b) SL_CONCAT2(a, b)
#define SL_STR2(a) #a
#define SL_STR(a) SL_STR2(a)

const KernelTable& SL_CONCAT(table_, STACKLLAMA_KERNEL_ISA)() {
    static const KernelTable t{SL_STR(STACKLLAMA_KERNEL_ISA), matvec, rows_to_f32, dot_f32, axpy,
                               rmsnorm, silu_mul, add};
    return t;
}

}  // namespace stackllama::kernels
