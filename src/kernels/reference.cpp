// Plain loops: the oracle every ISA's table is tested against, plus the scalar helpers that are
// not worth vectorising (conversions of single values, RoPE, the attention driver).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "kernels/kernels.hpp"
#include "kernels/quant.hpp"

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


namespace {

// Integer level of element i (i = r · cols + c) of a q8/q4 matrix (q8: q; q4: q - 8) and its
// block's scale, read through the llama.cpp-layout block (quant.hpp).
int level(const Matrix& w, size_t i, float* d) {
    const size_t r = i / w.cols, c = i % w.cols, b = c / kQuantBlock, j = c % kQuantBlock;
    if (w.type == WeightType::q8) {
        const BlockQ8 blk = load_block_q8(w, r, b);
        *d = f16_to_f32(blk.d);
        return blk.q[j];
    }
    const BlockQ4 blk = load_block_q4(w, r, b);
    const size_t h = kQuantBlock / 2;
    *d = f16_to_f32(blk.d);
    return (j < h ? (blk.q[j] & 15) : (blk.q[j - h] >> 4)) - 8;
}

// Element i of W in row-major order (i = r · cols + c), dequantized.
float element(const Matrix& w, size_t i) {
    switch (w.type) {
        case WeightType::f32: return static_cast<const float*>(w.data)[i];
        case WeightType::f16: return f16_to_f32(static_cast<const uint16_t*>(w.data)[i]);
        case WeightType::bf16: return bf16_to_f32(static_cast<const uint16_t*>(w.data)[i]);
        case WeightType::q8:
        case WeightType::q4: {
            float d;
            const int l = level(w, i, &d);
            return float(l) * d;
        }
    }
    return 0.0f;
}

// For q8/q4 weights this is the dequantize-then-f32 product (x not quantized); ref_matvec_q is
// the exact value of what the ISA tables compute.
void ref_matvec(const Matrix& w, const float* x, float* y, size_t r0, size_t r1) {
    for (size_t r = r0; r < r1; ++r) {
        double acc = 0.0;  // the oracle sums in double
        for (size_t c = 0; c < w.cols; ++c) acc += double(element(w, r * w.cols + c)) * x[c];
        y[r] = static_cast<float>(acc);
    }
}

void ref_matmul_f(const Matrix& w, const float* x, size_t m, float* y, size_t ldy, size_t r0,
                  size_t r1) {
    std::vector<float> row(w.rows);
    for (size_t i = 0; i < m; ++i) {
        ref_matvec(w, x + i * w.cols, row.data(), r0, r1);
        for (size_t r = r0; r < r1; ++r) y[i * ldy + r] = row[r];
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

void ref_quantize_acts(const float* x, size_t n, BlockQ8A* xq) {
    for (size_t b = 0; b < n / kQuantBlock; ++b) {
        const float* v = x + b * kQuantBlock;
        float amax = 0.0f;
        for (size_t i = 0; i < kQuantBlock; ++i) amax = std::max(amax, std::fabs(v[i]));
        const float id = amax > 0.0f ? 127.0f / amax : 0.0f;
        xq[b].d = amax / 127.0f;
        xq[b].sum = 0;
        int32_t pair[2] = {0, 0};
        for (size_t i = 0; i < kQuantBlock; ++i) {
            const float q = std::min(127.0f, std::max(-127.0f, std::nearbyint(v[i] * id)));
            xq[b].q[i] = static_cast<int8_t>(q);
            xq[b].sum += xq[b].q[i];
            pair[i % 4 / 2] += xq[b].q[i];
        }
        xq[b].q4_start[0] = static_cast<int16_t>(-8 * pair[0]);
        xq[b].q4_start[1] = static_cast<int16_t>(-8 * pair[1]);
    }
}

void ref_matvec_q(const Matrix& w, const BlockQ8A* xq, float* y, size_t r0, size_t r1) {
    const size_t nb = w.cols / kQuantBlock;
    for (size_t r = r0; r < r1; ++r) {
        double acc = 0.0;
        for (size_t b = 0; b < nb; ++b) {
            int64_t dot = 0;  // exact
            float d = 0.0f;
            for (size_t i = 0; i < kQuantBlock; ++i) {
                dot += int64_t(level(w, r * w.cols + b * kQuantBlock + i, &d)) * xq[b].q[i];
            }
            acc += double(d) * double(xq[b].d) * double(dot);
        }
        y[r] = static_cast<float>(acc);
    }
}

void ref_rope(float* x, size_t n_heads, size_t head_dim, const float* cos, const float* sin) {
    const size_t half = head_dim / 2;
    for (size_t h = 0; h < n_heads; ++h) {
        float* v = x + h * head_dim;
        for (size_t i = 0; i < half; ++i) {
            const double a = v[i], b = v[i + half];
            v[i] = float(a * cos[i] - b * sin[i]);
            v[i + half] = float(b * cos[i] + a * sin[i]);
        }
    }
}

// Attention in double, one head at a time: the softmax and the weighted sum of values.
void ref_attend_one(const float* q, const float* k, const float* v, size_t n_kv, size_t stride,
                    size_t head_dim, float scale, float* scores, float* out) {
    std::vector<double> s(n_kv);
    double max_score = -INFINITY;
    for (size_t t = 0; t < n_kv; ++t) {
        double d = 0.0;
        for (size_t i = 0; i < head_dim; ++i) d += double(q[i]) * k[t * stride + i];
        s[t] = d * scale;
        max_score = std::max(max_score, s[t]);
    }
    double sum = 0.0;
    for (size_t t = 0; t < n_kv; ++t) {
        s[t] = std::exp(s[t] - max_score);
        sum += s[t];
    }
    for (size_t i = 0; i < head_dim; ++i) {
        double o = 0.0;
        for (size_t t = 0; t < n_kv; ++t) o += s[t] * v[t * stride + i];
        out[i] = float(o / sum);
    }
    for (size_t t = 0; t < n_kv; ++t) scores[t] = float(s[t] / sum);
}

void ref_attend(const float* q, size_t n_q, const float* k, const float* v, size_t n_kv,
                size_t stride, size_t head_dim, float scale, float* scores, float* out) {
    for (size_t h = 0; h < n_q; ++h)
        ref_attend_one(q + h * head_dim, k, v, n_kv, stride, head_dim, scale, scores, out + h * head_dim);
}

void ref_matmul_q(const Matrix& w, const BlockQ8A* xq, size_t m, float* y, size_t ldy, size_t r0,
                  size_t r1) {
    for (size_t i = 0; i < m; ++i) ref_matvec_q(w, xq + i * (w.cols / kQuantBlock), y + i * ldy, r0, r1);
}

}  // namespace

const KernelTable& table_reference() {
    static const KernelTable t{"reference",       ref_matvec,   ref_matmul_f, ref_rows_to_f32,
                               ref_dot,           ref_axpy,     ref_rmsnorm,  ref_silu_mul,
                               ref_add,           ref_quantize_acts,          ref_matvec_q,
                               ref_matmul_q,      ref_rope,     ref_attend};
    return t;
}

}  // namespace stackllama::kernels
