#include "kernels/quant.hpp"

#include <sys/mman.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>
#include <vector>

#include "stackllama/error.hpp"
#include "util/memory.hpp"
#include "util/thread_pool.hpp"

namespace stackllama::kernels {

namespace {

// Round to nearest, ties to even, for |v| < 2^22: what nearbyint does in the default rounding
// mode, without a call (so the loops vectorise).
inline float round_even(float v) {
    const float magic = 12582912.0f;  // 1.5 · 2^23
    return (v + magic) - magic;
}

inline float f16_round(float d) { return f16_to_f32(f32_to_f16(d)); }

// Σ x·l and Σ l² for the levels l = clamp(round(x · id), lo_l, hi_l) of one block; the levels go
// to `l` when it is not null. SSE2 (baseline x86-64) in a fixed order, so every CPU gets the same.
inline void q_try(const float* x, float id, float lo_l, float hi_l, float* sxl, float* sll,
                  float* l) {
#if defined(__SSE2__)
    const __m128 magic = _mm_set1_ps(12582912.0f), vid = _mm_set1_ps(id);
    const __m128 lo = _mm_set1_ps(lo_l), hi = _mm_set1_ps(hi_l);
    __m128 a = _mm_setzero_ps(), b = _mm_setzero_ps();
    for (size_t i = 0; i < kQuantBlock; i += 4) {
        const __m128 v = _mm_loadu_ps(x + i);
        __m128 q = _mm_sub_ps(_mm_add_ps(_mm_mul_ps(v, vid), magic), magic);
        q = _mm_max_ps(_mm_min_ps(q, hi), lo);
        if (l) _mm_storeu_ps(l + i, q);
        a = _mm_add_ps(a, _mm_mul_ps(v, q));
        b = _mm_add_ps(b, _mm_mul_ps(q, q));
    }
    float ta[4], tb[4];
    _mm_storeu_ps(ta, a);
    _mm_storeu_ps(tb, b);
    *sxl = (ta[0] + ta[1]) + (ta[2] + ta[3]);
    *sll = (tb[0] + tb[1]) + (tb[2] + tb[3]);
#else
    float a[4] = {0, 0, 0, 0}, b[4] = {0, 0, 0, 0};
    for (size_t i = 0; i < kQuantBlock; ++i) {
        const float q = std::min(hi_l, std::max(lo_l, round_even(x[i] * id)));
        if (l) l[i] = q;
        a[i % 4] += x[i] * q;
        b[i % 4] += q * q;
    }
    *sxl = (a[0] + a[1]) + (a[2] + a[3]);
    *sll = (b[0] + b[1]) + (b[2] + b[3]);
#endif
}

// Squared error of levels l at scale d over one block: a sum of squares, so float is accurate to
// its own rounding (the expanded Σx² - 2dΣxl + d²Σl² would cancel). SSE2 in a fixed order.
inline float block_sse(const float* x, const float* l, float d) {
#if defined(__SSE2__)
    const __m128 vd = _mm_set1_ps(d);
    __m128 e = _mm_setzero_ps();
    for (size_t i = 0; i < kQuantBlock; i += 4) {
        const __m128 r = _mm_sub_ps(_mm_loadu_ps(x + i), _mm_mul_ps(vd, _mm_loadu_ps(l + i)));
        e = _mm_add_ps(e, _mm_mul_ps(r, r));
    }
    float t[4];
    _mm_storeu_ps(t, e);
    return (t[0] + t[1]) + (t[2] + t[3]);
#else
    float e[4] = {0, 0, 0, 0};
    for (size_t i = 0; i < kQuantBlock; ++i) {
        const float r = x[i] - d * l[i];
        e[i % 4] += r * r;
    }
    return (e[0] + e[1]) + (e[2] + e[3]);
#endif
}

void quantize_block_q8(const float* x, BlockQ8* out) {
    // Nine candidates map max|x| to level 127 - k/2 (k in [0, 8]), levels rounded, the scale
    // refitted by least squares for those levels; as for q4 below, the largest (Σxl)² / Σl² leaves
    // the least squared error. Its error with the scale as stored (f16) is then compared with
    // llama.cpp's Q8_0 rule (d = max|x| / 127 as f16, levels round(x / d)) and the better kept:
    // never more squared error than Q8_0 (tests/quant_test.cpp: about 2 % less), a small gain at
    // 8 bits.
    float amax = 0.0f;
    for (size_t i = 0; i < kQuantBlock; ++i) amax = std::max(amax, std::fabs(x[i]));
    float l[kQuantBlock];
    float d = 0.0f;
    std::fill(l, l + kQuantBlock, 0.0f);
    if (amax > 0.0f) {
        float best = -1.0f, best_id = 0.0f, sxl, sll;
        for (int k = 0; k <= 8; ++k) {
            const float id = (127.0f - 0.5f * float(k)) / amax;
            q_try(x, id, -127.0f, 127.0f, &sxl, &sll, nullptr);
            const float score = sll > 0.0f ? sxl * sxl / sll : 0.0f;
            if (score > best) {
                best = score;
                best_id = id;
            }
        }
        float t[kQuantBlock];
        q_try(x, best_id, -127.0f, 127.0f, &sxl, &sll, t);
        const float dt = sll > 0.0f ? f16_round(sxl / sll) : 0.0f;
        d = f16_round(amax / 127.0f);
        q_try(x, 1.0f / d, -127.0f, 127.0f, &sxl, &sll, l);
        if (block_sse(x, t, dt) < block_sse(x, l, d)) {
            d = dt;
            std::copy(t, t + kQuantBlock, l);
        }
    }
    out->d = f32_to_f16(d);
    for (size_t i = 0; i < kQuantBlock; ++i) out->q[i] = static_cast<int8_t>(l[i]);
}

void quantize_block_q4(const float* x, BlockQ4* out) {
    // Candidates around llama.cpp's Q4_0 rule (the element of largest magnitude maps to level
    // -8): it maps to -8 - k/3 for k in [-3, 3], levels rounded, and the scale refitted by least
    // squares for those levels. The squared error left is Σx² - (Σxl)² / Σl², so the candidate
    // with the largest (Σxl)² / Σl² wins. On Gaussian weights this leaves about 11 % less squared
    // error than Q4_0's rule (tests/quant_test.cpp).
    float amax = 0.0f, max = 0.0f;
    for (size_t i = 0; i < kQuantBlock; ++i) {
        if (std::fabs(x[i]) > amax) {
            amax = std::fabs(x[i]);
            max = x[i];
        }
    }
    float l[kQuantBlock];
    float d = 0.0f;
    if (amax > 0.0f) {
        float best = -1.0f, best_id = 0.0f;
        for (int k = -3; k <= 3; ++k) {
            const float id = -(8.0f + float(k) / 3.0f) / max;
            float sxl, sll;
            q_try(x, id, -8.0f, 7.0f, &sxl, &sll, nullptr);
            const float score = sll > 0.0f ? sxl * sxl / sll : 0.0f;
            if (score > best) {
                best = score;
                best_id = id;
            }
        }
        float sxl, sll;
        q_try(x, best_id, -8.0f, 7.0f, &sxl, &sll, l);
        d = sll > 0.0f ? f16_round(sxl / sll) : 0.0f;
    } else {
        std::fill(l, l + kQuantBlock, 0.0f);
    }
    out->d = f32_to_f16(d);
    for (size_t i = 0; i < kQuantBlock / 2; ++i) {
        out->q[i] = static_cast<uint8_t>((int(l[i]) + 8) | ((int(l[i + kQuantBlock / 2]) + 8) << 4));
    }
}

}  // namespace

namespace {

// Where the layout keeps block b of row r (kernels.hpp, PanelQ8): a panel and the row in it, or a
// plain block in the tail.
struct BlockPlace {
    uint8_t* panel;  // null for a tail row
    size_t lane;
    uint8_t* plain;
};

BlockPlace place(const Matrix& w, size_t r, size_t b) {
    const size_t nb = w.cols / kQuantBlock, full = w.rows / kQuantRows * kQuantRows;
    const size_t block = weight_type_size(w.type), panel = block * kQuantRows;
    uint8_t* base = static_cast<uint8_t*>(const_cast<void*>(w.data));
    if (r < full) return {base + ((r / kQuantRows) * nb + b) * panel, r % kQuantRows, nullptr};
    return {nullptr, 0, base + full * nb * block + ((r - full) * nb + b) * block};
}

}  // namespace

BlockQ8 load_block_q8(const Matrix& w, size_t r, size_t b) {
    const BlockPlace p = place(w, r, b);
    BlockQ8 out;
    if (!p.panel) {
        std::memcpy(&out, p.plain, sizeof out);
        return out;
    }
    const PanelQ8* pan = reinterpret_cast<const PanelQ8*>(p.panel);
    out.d = pan->d[p.lane];
    for (size_t c = 0; c < kQuantBlock / 4; ++c)
        for (size_t j = 0; j < 4; ++j) out.q[4 * c + j] = pan->q[32 * c + 4 * p.lane + j];
    return out;
}

BlockQ4 load_block_q4(const Matrix& w, size_t r, size_t b) {
    const BlockPlace p = place(w, r, b);
    BlockQ4 out;
    if (!p.panel) {
        std::memcpy(&out, p.plain, sizeof out);
        return out;
    }
    const PanelQ4* pan = reinterpret_cast<const PanelQ4*>(p.panel);
    uint8_t l[kQuantBlock];  // level + 8 of each element
    for (size_t c = 0; c < kQuantBlock / 8; ++c) {
        for (size_t j = 0; j < 4; ++j) {
            const uint8_t v = pan->q[32 * c + 4 * p.lane + j];
            l[8 * c + j] = v & 15;
            l[8 * c + 4 + j] = v >> 4;
        }
    }
    out.d = pan->d[p.lane];
    for (size_t i = 0; i < kQuantBlock / 2; ++i)
        out.q[i] = static_cast<uint8_t>(l[i] | (l[i + kQuantBlock / 2] << 4));
    return out;
}

void store_block_q8(const Matrix& w, size_t r, size_t b, const BlockQ8& blk) {
    const BlockPlace p = place(w, r, b);
    if (!p.panel) {
        std::memcpy(p.plain, &blk, sizeof blk);
        return;
    }
    PanelQ8* pan = reinterpret_cast<PanelQ8*>(p.panel);
    pan->d[p.lane] = blk.d;
    for (size_t c = 0; c < kQuantBlock / 4; ++c)
        for (size_t j = 0; j < 4; ++j) pan->q[32 * c + 4 * p.lane + j] = blk.q[4 * c + j];
}

void store_block_q4(const Matrix& w, size_t r, size_t b, const BlockQ4& blk) {
    const BlockPlace p = place(w, r, b);
    if (!p.panel) {
        std::memcpy(p.plain, &blk, sizeof blk);
        return;
    }
    PanelQ4* pan = reinterpret_cast<PanelQ4*>(p.panel);
    uint8_t l[kQuantBlock];
    for (size_t i = 0; i < kQuantBlock / 2; ++i) {
        l[i] = blk.q[i] & 15;
        l[i + kQuantBlock / 2] = blk.q[i] >> 4;
    }
    pan->d[p.lane] = blk.d;
    for (size_t c = 0; c < kQuantBlock / 8; ++c)
        for (size_t j = 0; j < 4; ++j)
            pan->q[32 * c + 4 * p.lane + j] = static_cast<uint8_t>(l[8 * c + j] | (l[8 * c + 4 + j] << 4));
}

void quantize_rows_into(const Matrix& w, size_t r0, size_t r1, const float* src) {
    const size_t nb = w.cols / kQuantBlock;
    for (size_t r = r0; r < r1; ++r) {
        for (size_t b = 0; b < nb; ++b) {
            const float* x = src + (r - r0) * w.cols + b * kQuantBlock;
            if (w.type == WeightType::q8) {
                BlockQ8 blk;
                quantize_block_q8(x, &blk);
                store_block_q8(w, r, b, blk);
            } else if (w.type == WeightType::q4) {
                BlockQ4 blk;
                quantize_block_q4(x, &blk);
                store_block_q4(w, r, b, blk);
            }
        }
    }
}

void quantize_rows(WeightType t, const float* src, size_t rows, size_t cols, void* dst) {
    quantize_rows_into(Matrix{t, dst, rows, cols}, 0, rows, src);
}

void dequantize_rows(const Matrix& w, size_t r0, size_t r1, float* out) {
    table_reference().rows_to_f32(w, r0, r1, out);
}

std::shared_ptr<void> alloc_weight_memory(size_t bytes) { return alloc_large(bytes, "weights"); }

OwnedMatrix convert_matrix(const KernelTable& kt, const Matrix& w, WeightType t,
                           ThreadPool& pool) {
    if (!weight_type_fits(t, w.cols)) {
        throw Error(ErrorCode::invalid_argument,
                    std::string("a row of ") + std::to_string(w.cols) + " elements cannot be " +
                        weight_type_name(t) + " (blocks of " +
                        std::to_string(weight_type_block(t)) + ")");
    }
    OwnedMatrix out;
    out.owner = alloc_weight_memory(Matrix{t, nullptr, w.rows, w.cols}.bytes());
    out.m = convert_matrix_into(kt, w, t, pool, const_cast<void*>(out.owner.get()));
    return out;
}

Matrix convert_matrix_into(const KernelTable& kt, const Matrix& w, WeightType t, ThreadPool& pool,
                           void* memory) {
    if (!weight_type_fits(t, w.cols)) {
        throw Error(ErrorCode::invalid_argument,
                    std::string("a row of ") + std::to_string(w.cols) + " elements cannot be " +
                        weight_type_name(t) + " (blocks of " +
                        std::to_string(weight_type_block(t)) + ")");
    }
    const Matrix out{t, memory, w.rows, w.cols};
    const size_t rb = row_bytes(t, w.cols);
    uint8_t* dst = static_cast<uint8_t*>(memory);
    // About 64 KiB of f32 per step, so the widened rows stay in L2.
    const size_t step = std::max<size_t>(1, 16384 / std::max<size_t>(1, w.cols));
    pool.parallel_for(w.rows, step, [&](size_t r0, size_t r1) {
        std::vector<float> buf(step * w.cols);
        for (size_t a = r0; a < r1; a += step) {
            const size_t b = std::min(r1, a + step);
            kt.rows_to_f32(w, a, b, buf.data());
            float* f = buf.data();
            uint8_t* o = dst + a * rb;
            const size_t n = (b - a) * w.cols;
            switch (t) {
                case WeightType::f32: std::memcpy(o, f, n * sizeof(float)); break;
                case WeightType::f16:
                    for (size_t i = 0; i < n; ++i)
                        reinterpret_cast<uint16_t*>(o)[i] = f32_to_f16(f[i]);
                    break;
                case WeightType::bf16:
                    for (size_t i = 0; i < n; ++i)
                        reinterpret_cast<uint16_t*>(o)[i] = f32_to_bf16(f[i]);
                    break;
                case WeightType::q8:
                case WeightType::q4: quantize_rows_into(out, a, b, f); break;
            }
        }
    });
    return out;
}

}  // namespace stackllama::kernels
