// Plain loops: the oracle every ISA's table is tested against, plus the scalar helpers that are
// not worth vectorising (conversions of single values, RoPE, the attention driver).
#include <cmath>
#include <cstring>

#include "kernels/kernels.hpp"

namespace stackllama::kernels {

float f16_to_f32(uint16_t h) {
    uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t man = h & 0x3ffu;
    uint32_t bits;
    if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else {  // subnormal: normalise
            int e = -1;
            do {
                ++e;
                man <<= 1;
            } while ((man & 0x400u) == 0);
            bits = sign | (static_cast<uint32_t>(127 - 15 - e) << 23) | ((man & 0x3ffu) << 13);
        }
    } else if (exp == 0x1f) {
        bits = sign | 0x7f800000u | (man << 13);
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    float f;
    std::memcpy(&f, &bits, sizeof f);
    return f;
}

uint16_t f32_to_f16(float f) {
    uint32_t x;
    std::memcpy(&x, &f, sizeof x);
    uint32_t sign = (x >> 16) & 0x8000u;
    uint32_t absx = x & 0x7fffffffu;
    if (absx >= 0x7f800000u) {  // Inf or NaN
        return static_cast<uint16_t>(sign | 0x7c00u | (absx > 0x7f800000u ? 0x200u : 0));
    }
    if (absx >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // rounds to Inf
    int exp = static_cast<int>(absx >> 23) - 127 + 15;
    uint32_t man = absx & 0x7fffffu;
    if (exp <= 0) {  // subnormal or zero in f16
        if (exp < -10) return static_cast<uint16_t>(sign);
        man |= 0x800000u;
        int shift = 14 - exp;
        uint32_t half = man >> shift;
        uint32_t rem = man & ((1u << shift) - 1);
        uint32_t mid = 1u << (shift - 1);
        if (rem > mid || (rem == mid && (half & 1))) ++half;
        return static_cast<uint16_t>(sign | half);
    }
    uint32_t half = (static_cast<uint32_t>(exp) << 10) | (man >> 13);
    uint32_t rem = man & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (half & 1))) ++half;  // may carry into the exponent
    return static_cast<uint16_t>(sign | half);
}

float bf16_to_f32(uint16_t b) {
    uint32_t u = static_cast<uint32_t>(b) << 16;
    float f;
    std::memcpy(&f, &u, sizeof f);
    return f;
}

uint16_t f32_to_bf16(float f) {
    uint32_t x;
    std::memcpy(&x, &f, sizeof x);
    if ((x & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((x >> 16) | 0x40u);  // NaN
    x += 0x7fffu + ((x >> 16) & 1u);
    return static_cast<uint16_t>(x >> 16);
}

void rope(float* x, size_t n_heads, size_t head_dim, const float* cos, const float* sin) {
    const size_t half = head_dim / 2;
    for (size_t h = 0; h < n_heads; ++h) {
        float* v = x + h * head_dim;
        for (size_t i = 0; i < half; ++i) {
            float a = v[i], b = v[i + half];
            v[i] = a * cos[i] - b * sin[i];
            v[i + half] = b * cos[i] + a * sin[i];
        }
    }
}

void attend(const KernelTable& kt, const float* q, const float* k, const float* v, size_t n_kv,
            size_t stride, size_t head_dim, float scale, float* scores, float* out) {
    float max_score = -INFINITY;
    for (size_t t = 0; t < n_kv; ++t) {
        scores[t] = kt.dot(q, k + t * stride, head_dim) * scale;
        if (scores[t] > max_score) max_score = scores[t];
    }
    float sum = 0.0f;
    for (size_t t = 0; t < n_kv; ++t) {
        scores[t] = std::exp(scores[t] - max_score);
        sum += scores[t];
    }
    const float inv = 1.0f / sum;
    std::memset(out, 0, head_dim * sizeof(float));
    for (size_t t = 0; t < n_kv; ++t) kt.axpy(scores[t] * inv, v + t * stride, out, head_dim);
}

namespace {

float element(const Matrix& w, size_t i) {
    switch (w.type) {
        case WeightType::f32: return static_cast<const float*>(w.data)[i];
        case WeightType::f16: return f16_to_f32(static_cast<const uint16_t*>(w.data)[i]);
        case WeightType::bf16: return bf16_to_f32(static_cast<const uint16_t*>(w.data)[i]);
    }
    return 0.0f;
}

void ref_matvec(const Matrix& w, const float* x, float* y, size_t r0, size_t r1) {
    for (size_t r = r0; r < r1; ++r) {
        double acc = 0.0;  // the oracle sums in double
        for (size_t c = 0; c < w.cols; ++c) acc += double(element(w, r * w.cols + c)) * x[c];
        y[r] = static_cast<float>(acc);
    }
}

void ref_rows_to_f32(const Matrix& w, size_t r0, size_t r1, float* out) {
    for (size_t i = r0 * w.cols; i < r1 * w.cols; ++i) out[i - r0 * w.cols] = element(w, i);
}

float ref_dot(const float* a, const float* b, size_t n) {
    double acc = 0.0;
    for (size_t i = 0; i < n; ++i) acc += double(a[i]) * b[i];
    return static_cast<float>(acc);
}

void ref_axpy(float a, const float* x, float* y, size_t n) {
    for (size_t i = 0; i < n; ++i) y[i] += a * x[i];
}

void ref_rmsnorm(const float* x, const float* w, float* y, size_t n, float eps) {
    double ss = 0.0;
    for (size_t i = 0; i < n; ++i) ss += double(x[i]) * x[i];
    float inv = 1.0f / std::sqrt(static_cast<float>(ss / double(n)) + eps);
    for (size_t i = 0; i < n; ++i) y[i] = (x[i] * inv) * w[i];
}

void ref_silu_mul(float* g, const float* u, size_t n) {
    for (size_t i = 0; i < n; ++i) g[i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];
}

void ref_add(float* y, const float* x, size_t n) {
    for (size_t i = 0; i < n; ++i) y[i] += x[i];
}

}  // namespace

const KernelTable& table_reference() {
    static const KernelTable t{"reference", ref_matvec,  ref_rows_to_f32, ref_dot,
                               ref_axpy,    ref_rmsnorm, ref_silu_mul,    ref_add};
    return t;
}

}  // namespace stackllama::kernels
