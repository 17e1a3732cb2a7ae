// The block quantizers (q8, q4): storage size, error bounds against the f32 source, q4 at least
// as close as llama.cpp's Q4_0 rule block by block, and whole-matrix conversion.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "kernels/kernels.hpp"
#include "kernels/quant.hpp"
#include "stackllama/error.hpp"
#include "util/thread_pool.hpp"

using namespace stackllama;
using namespace stackllama::kernels;

namespace {

std::vector<float> gaussian(size_t n, std::mt19937& rng, float sd = 1.0f) {
    std::normal_distribution<float> nd(0.0f, sd);
    std::vector<float> v(n);
    for (auto& x : v) x = nd(rng);
    return v;
}

// llama.cpp's quantize_row_q4_0_reference, for comparison: d = max / -8, q = trunc(x / d + 8.5).
double q4_0_block_sse(const float* x) {
    float amax = 0.0f, max = 0.0f;
    for (size_t i = 0; i < kQuantBlock; ++i) {
        if (std::fabs(x[i]) > amax) {
            amax = std::fabs(x[i]);
            max = x[i];
        }
    }
    const float d = max / -8.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
    const float ds = f16_to_f32(f32_to_f16(d));
    double sse = 0.0;
    for (size_t i = 0; i < kQuantBlock; ++i) {
        const int q = std::min(15, int(x[i] * id + 8.5f));
        const double r = double(x[i]) - double(ds) * (q - 8);
        sse += r * r;
    }
    return sse;
}

// Squared error of one block under llama.cpp's Q8_0 rule (d = max|x| / 127, stored as f16).
double q8_0_block_sse(const float* x) {
    float amax = 0.0f;
    for (size_t i = 0; i < kQuantBlock; ++i) amax = std::max(amax, std::fabs(x[i]));
    const float d = f16_to_f32(f32_to_f16(amax / 127.0f)), id = d > 0.0f ? 1.0f / d : 0.0f;
    double sse = 0.0;
    for (size_t i = 0; i < kQuantBlock; ++i) {
        const float q = std::min(127.0f, std::max(-127.0f, std::nearbyint(x[i] * id)));
        const double r = double(x[i]) - double(d) * q;
        sse += r * r;
    }
    return sse;
}

}  // namespace

TEST_CASE("block types: sizes and fit") {
    CHECK(row_bytes(WeightType::q8, 4096) * 8.0 / 4096 == 8.5);
    CHECK(row_bytes(WeightType::q4, 4096) * 8.0 / 4096 == 4.5);
    CHECK(row_bytes(WeightType::f16, 172) == 344);
    CHECK(weight_type_fits(WeightType::q4, 4096));
    CHECK_FALSE(weight_type_fits(WeightType::q4, 172));  // stories260K's ffn
    CHECK_FALSE(weight_type_fits(WeightType::q8, 48));
    CHECK(weight_type_fits(WeightType::bf16, 172));
    CHECK(Matrix{WeightType::q8, nullptr, 10, 64}.bytes() == 10 * 2 * 34);
    CHECK(Matrix{WeightType::f32, nullptr, 10, 64}.bytes() == 10 * 64 * 4);
    CHECK(weight_type_quantized(WeightType::q4));
    CHECK_FALSE(weight_type_quantized(WeightType::bf16));
    CHECK(std::string(weight_type_name(WeightType::q8)) == "q8");
}

TEST_CASE("q8: each weight within a step of its source, never worse than Q8_0, block by block") {
    std::mt19937 rng(5);
    const size_t rows = 64, cols = 256;
    auto w = gaussian(rows * cols, rng, 0.02f);
    w[7] = 3.0f;                                          // an outlier sets its block's step
    std::fill(w.begin() + 64, w.begin() + 96, 0.0f);      // a zero block
    std::vector<BlockQ8> q(rows * cols / kQuantBlock);
    quantize_rows(WeightType::q8, w.data(), rows, cols, q.data());
    const Matrix m{WeightType::q8, q.data(), rows, cols};
    std::vector<float> deq(rows * cols);
    dequantize_rows(m, 0, rows, deq.data());
    double sse = 0.0, sse_q8_0 = 0.0, ss = 0.0;
    for (size_t b = 0; b < q.size(); ++b) {
        const float* x = w.data() + b * kQuantBlock;
        float amax = 0.0f;
        for (size_t j = 0; j < kQuantBlock; ++j) amax = std::max(amax, std::fabs(x[j]));
        double e = 0.0;
        for (size_t j = 0; j < kQuantBlock; ++j) {
            const size_t i = b * kQuantBlock + j;
            CHECK(std::abs(int(load_block_q8(m, i / cols, i % cols / kQuantBlock).q[j])) <= 127);
            // One step of the coarsest candidate scale (max|x| / 125).
            CHECK(std::fabs(double(deq[i]) - x[j]) <= amax / 125.0 + 1e-12);
            e += (double(deq[i]) - x[j]) * (double(deq[i]) - x[j]);
            ss += double(x[j]) * x[j];
        }
        const double e0 = q8_0_block_sse(x);
        REQUIRE(e <= e0 * (1 + 1e-4) + 1e-12);
        sse += e;
        sse_q8_0 += e0;
    }
    for (size_t i = 64; i < 96; ++i) CHECK(deq[i] == 0.0f);
    MESSAGE("q8 relative RMS error on N(0, 0.02) weights: " << std::sqrt(sse / ss)
                                                            << " (llama.cpp Q8_0 rule: "
                                                            << std::sqrt(sse_q8_0 / ss) << ")");
    CHECK(std::sqrt(sse / ss) < 0.02);
    CHECK(sse < 0.99 * sse_q8_0);  // about 2 % less here
}

TEST_CASE("q4: levels in range, and never worse than llama.cpp's Q4_0 rule, block by block") {
    std::mt19937 rng(6);
    const size_t rows = 256, cols = 512;
    auto w = gaussian(rows * cols, rng, 0.02f);
    for (size_t i = 0; i < 64; ++i) w[size_t(rng() % w.size())] *= 10.0f;  // outliers
    std::fill(w.begin() + 64, w.begin() + 96, 0.0f);                        // a zero block
    std::vector<BlockQ4> q(rows * cols / kQuantBlock);
    quantize_rows(WeightType::q4, w.data(), rows, cols, q.data());
    std::vector<float> deq(rows * cols);
    dequantize_rows(Matrix{WeightType::q4, q.data(), rows, cols}, 0, rows, deq.data());
    double sse = 0.0, sse_q4_0 = 0.0, ss = 0.0;
    int better = 0;
    for (size_t b = 0; b < q.size(); ++b) {
        double e = 0.0;
        for (size_t i = 0; i < kQuantBlock; ++i) {
            const size_t k = b * kQuantBlock + i;
            e += (double(deq[k]) - w[k]) * (double(deq[k]) - w[k]);
            ss += double(w[k]) * w[k];
        }
        const double e0 = q4_0_block_sse(w.data() + b * kQuantBlock);
        REQUIRE(e <= e0 * (1 + 1e-4) + 1e-12);
        better += e < e0 * (1 - 1e-6);
        sse += e;
        sse_q4_0 += e0;
    }
    for (size_t i = 64; i < 96; ++i) CHECK(deq[i] == 0.0f);
    MESSAGE("q4 relative RMS error: " << std::sqrt(sse / ss) << " (llama.cpp Q4_0 rule: "
                                      << std::sqrt(sse_q4_0 / ss) << "); better in " << better
                                      << " of " << q.size() << " blocks");
    CHECK(sse < 0.93 * sse_q4_0);  // about 9.5 % less here
}

TEST_CASE("panel layout: blocks round-trip through load/store, tail rows stay plain") {
    std::mt19937 rng(8);
    for (size_t rows : {1, 7, 8, 13, 16, 21}) {
        CAPTURE(rows);
        const size_t cols = 96, nb = 3;
        auto w = gaussian(rows * cols, rng);
        for (WeightType t : {WeightType::q8, WeightType::q4}) {
            std::vector<uint8_t> data(rows * row_bytes(t, cols));
            const Matrix m{t, data.data(), rows, cols};
            quantize_rows(t, w.data(), rows, cols, data.data());
            std::vector<uint8_t> again(data.size());
            const Matrix m2{t, again.data(), rows, cols};
            for (size_t r = 0; r < rows; ++r) {
                for (size_t b = 0; b < nb; ++b) {
                    if (t == WeightType::q8) store_block_q8(m2, r, b, load_block_q8(m, r, b));
                    else store_block_q4(m2, r, b, load_block_q4(m, r, b));
                }
            }
            CHECK(again == data);
            // The last rows % 8 rows are plain llama.cpp blocks at the end.
            const size_t full = rows / 8 * 8, bs = weight_type_size(t);
            for (size_t r = full; r < rows; ++r) {
                const uint8_t* plain = data.data() + full * nb * bs + (r - full) * nb * bs;
                if (t == WeightType::q8) {
                    const BlockQ8 b = load_block_q8(m, r, 1);
                    CHECK(std::memcmp(plain + bs, &b, bs) == 0);
                } else {
                    const BlockQ4 b = load_block_q4(m, r, 1);
                    CHECK(std::memcmp(plain + bs, &b, bs) == 0);
                }
            }
        }
    }
}

TEST_CASE("convert_matrix: f16 source to every type, in parallel, as quantize_rows does") {
    std::mt19937 rng(7);
    ThreadPool pool(2);
    const size_t rows = 301, cols = 96;
    auto f = gaussian(rows * cols, rng);
    std::vector<uint16_t> h(f.size());
    for (size_t i = 0; i < f.size(); ++i) h[i] = f32_to_f16(f[i]);
    std::vector<float> widened(f.size());
    for (size_t i = 0; i < f.size(); ++i) widened[i] = f16_to_f32(h[i]);
    const Matrix src{WeightType::f16, h.data(), rows, cols};
    for (WeightType t : {WeightType::f32, WeightType::f16, WeightType::bf16, WeightType::q8,
                         WeightType::q4}) {
        CAPTURE(weight_type_name(t));
        OwnedMatrix o = convert_matrix(active(), src, t, pool);
        CHECK(o.m.type == t);
        CHECK(o.m.rows == rows);
        CHECK(o.m.cols == cols);
        CHECK(reinterpret_cast<uintptr_t>(o.m.data) % 64 == 0);
        std::vector<uint8_t> want(o.m.bytes());
        if (weight_type_quantized(t)) {
            quantize_rows(t, widened.data(), rows, cols, want.data());
        } else {
            for (size_t i = 0; i < f.size(); ++i) {
                if (t == WeightType::f32) std::memcpy(want.data() + 4 * i, &widened[i], 4);
                const uint16_t v = t == WeightType::f16 ? h[i] : f32_to_bf16(widened[i]);
                if (t != WeightType::f32) std::memcpy(want.data() + 2 * i, &v, 2);
            }
        }
        CHECK(std::memcmp(o.m.data, want.data(), want.size()) == 0);
    }
    CHECK_THROWS_AS(convert_matrix(active(), Matrix{WeightType::f32, f.data(), 2, 172},
                                   WeightType::q4, pool),
                    Error);
}
