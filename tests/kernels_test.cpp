// Every ISA's kernel table against the plain-loop reference, on awkward sizes, for each weight
// type; and the f16/bf16 conversions.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "kernels/gemm.hpp"
#include "kernels/isa.hpp"
#include "kernels/kernels.hpp"
#include "util/thread_pool.hpp"

using namespace stackllama;
using namespace stackllama::kernels;

namespace {

std::vector<const KernelTable*> supported_tables() {
    std::vector<const KernelTable*> t{&table_scalar()};
    if (isa_supported(Isa::avx2)) t.push_back(&table_avx2());
    if (isa_supported(Isa::avx512)) t.push_back(&table_avx512());
    return t;
}

struct RandomMatrix {
    std::vector<float> f32;
    std::vector<uint16_t> half;
    Matrix m;
    RandomMatrix(WeightType t, size_t rows, size_t cols, std::mt19937& rng) {
        std::normal_distribution<float> nd(0.0f, 1.0f);
        f32.resize(rows * cols);
        for (auto& v : f32) v = nd(rng);
        m.type = t;
        m.rows = rows;
        m.cols = cols;
        if (t == WeightType::f32) {
            m.data = f32.data();
        } else {
            half.resize(f32.size());
            for (size_t i = 0; i < f32.size(); ++i)
                half[i] = t == WeightType::f16 ? f32_to_f16(f32[i]) : f32_to_bf16(f32[i]);
            m.data = half.data();
        }
    }
};

std::vector<float> random_vec(size_t n, std::mt19937& rng) {
    std::normal_distribution<float> nd(0.0f, 1.0f);
    std::vector<float> v(n);
    for (auto& x : v) x = nd(rng);
    return v;
}

// Tolerance for a sum of n products of unit-variance values, summed in another order.
float tol(size_t n) { return 2e-6f * float(n) + 1e-5f; }

}  // namespace

TEST_CASE("f16 conversions are exact and round to nearest even") {
    for (uint32_t h = 0; h < 65536; ++h) {
        const float f = f16_to_f32(uint16_t(h));
        if (std::isnan(f)) continue;
        REQUIRE(f32_to_f16(f) == h);
    }
    CHECK(f16_to_f32(0x3c00) == 1.0f);
    CHECK(f16_to_f32(0x0001) == std::ldexp(1.0f, -24));  // smallest subnormal
    CHECK(f32_to_f16(65520.0f) == 0x7c00);                // rounds to infinity
    CHECK(f32_to_f16(1.0f + std::ldexp(1.0f, -11)) == 0x3c00);  // tie goes to even
    CHECK(f32_to_f16(1.0f + 3 * std::ldexp(1.0f, -11)) == 0x3c02);
    CHECK(std::isnan(f16_to_f32(f32_to_f16(NAN))));
}

TEST_CASE("bf16 conversions") {
    for (uint32_t b = 0; b < 65536; ++b) {
        const float f = bf16_to_f32(uint16_t(b));
        if (std::isnan(f)) continue;
        REQUIRE(f32_to_bf16(f) == b);
    }
    CHECK(f32_to_bf16(1.0f + std::ldexp(1.0f, -8)) == 0x3f80);  // tie to even
    CHECK(f32_to_bf16(1.0f + 3 * std::ldexp(1.0f, -8)) == 0x3f82);
}

TEST_CASE("every ISA matches the reference") {
    std::mt19937 rng(1234);
    const KernelTable& ref = table_reference();
    for (const KernelTable* kt : supported_tables()) {
        CAPTURE(kt->name);
        for (WeightType t : {WeightType::f32, WeightType::f16, WeightType::bf16}) {
            for (size_t cols : {1, 7, 15, 16, 17, 33, 64, 172, 257}) {
                CAPTURE(int(t));
                CAPTURE(cols);
                RandomMatrix w(t, 13, cols, rng);
                auto x = random_vec(cols, rng);
                std::vector<float> y(13), y_ref(13);
                kt->matvec(w.m, x.data(), y.data(), 0, 13);
                ref.matvec(w.m, x.data(), y_ref.data(), 0, 13);
                for (size_t r = 0; r < 13; ++r) CHECK(std::fabs(y[r] - y_ref[r]) <= tol(cols));

                std::vector<float> rows(5 * cols), rows_ref(5 * cols);
                kt->rows_to_f32(w.m, 3, 8, rows.data());
                ref.rows_to_f32(w.m, 3, 8, rows_ref.data());
                CHECK(std::memcmp(rows.data(), rows_ref.data(), rows.size() * 4) == 0);
            }
        }
        for (size_t n : {1, 5, 16, 31, 64, 100, 4096}) {
            CAPTURE(n);
            auto a = random_vec(n, rng), b = random_vec(n, rng), w = random_vec(n, rng);
            CHECK(std::fabs(kt->dot(a.data(), b.data(), n) - ref.dot(a.data(), b.data(), n)) <=
                  tol(n));

            auto y1 = b, y2 = b;
            kt->axpy(0.37f, a.data(), y1.data(), n);
            ref.axpy(0.37f, a.data(), y2.data(), n);
            for (size_t i = 0; i < n; ++i) CHECK(y1[i] == doctest::Approx(y2[i]).epsilon(1e-6));

            std::vector<float> n1(n), n2(n);
            kt->rmsnorm(a.data(), w.data(), n1.data(), n, 1e-5f);
            ref.rmsnorm(a.data(), w.data(), n2.data(), n, 1e-5f);
            for (size_t i = 0; i < n; ++i) CHECK(std::fabs(n1[i] - n2[i]) <= 1e-5f);

            auto g1 = a, g2 = a;
            kt->silu_mul(g1.data(), b.data(), n);
            ref.silu_mul(g2.data(), b.data(), n);
            for (size_t i = 0; i < n; ++i) CHECK(std::fabs(g1[i] - g2[i]) <= 1e-6f);

            auto s1 = a, s2 = a;
            kt->add(s1.data(), b.data(), n);
            ref.add(s2.data(), b.data(), n);
            CHECK(s1 == s2);
        }
    }
}

TEST_CASE("matmul (OpenBLAS and widened tiles) equals row-by-row matvec") {
    std::mt19937 rng(99);
    ThreadPool pool(2);
    const KernelTable& kt = active();
    std::vector<float> scratch;
    for (WeightType t : {WeightType::f32, WeightType::f16, WeightType::bf16}) {
        for (size_t m : {1, 2, 7}) {
            // Many rows so the f16/bf16 path goes through several tiles.
            RandomMatrix w(t, 5000, 67, rng);
            auto x = random_vec(m * 67, rng);
            std::vector<float> y(m * 5000), y_ref(5000);
            matmul(kt, w.m, x.data(), m, y.data(), pool, scratch);
            for (size_t i = 0; i < m; ++i) {
                table_reference().matvec(w.m, x.data() + i * 67, y_ref.data(), 0, 5000);
                for (size_t r = 0; r < 5000; ++r)
                    REQUIRE(std::fabs(y[i * 5000 + r] - y_ref[r]) <= tol(67));
            }
        }
    }
}

TEST_CASE("rope: rotate_half convention") {
    // head_dim 4: pairs (0,2) and (1,3) rotate together.
    float x[4] = {1, 2, 3, 4};
    const float c[2] = {0.5f, 1.0f}, s[2] = {0.25f, 0.0f};
    rope(x, 1, 4, c, s);
    CHECK(x[0] == doctest::Approx(1 * 0.5 - 3 * 0.25));
    CHECK(x[2] == doctest::Approx(3 * 0.5 + 1 * 0.25));
    CHECK(x[1] == doctest::Approx(2));
    CHECK(x[3] == doctest::Approx(4));
}

TEST_CASE("attend: softmax-weighted values") {
    const KernelTable& kt = active();
    // Two positions, head_dim 2; scores 0 and scale*(1) -> weights softmax(0, 1).
    const float q[2] = {1, 0}, k[4] = {0, 0, 1, 0}, v[4] = {1, 0, 0, 1};
    float scores[2], out[2];
    attend(kt, q, k, v, 2, 2, 2, 1.0f, scores, out);
    const double e = std::exp(1.0), w0 = 1 / (1 + e), w1 = e / (1 + e);
    CHECK(out[0] == doctest::Approx(w0));
    CHECK(out[1] == doctest::Approx(w1));
}

TEST_CASE("ThreadPool covers every index once") {
    ThreadPool pool(3);
    std::vector<int> hits(1000, 0);
    for (int rep = 0; rep < 50; ++rep) {
        pool.parallel_for(1000, 7, [&](size_t a, size_t b) {
            for (size_t i = a; i < b; ++i) hits[i]++;
        });
    }
    for (int h : hits) CHECK(h == 50);
}
