// Every ISA's kernel table against the plain-loop reference, on awkward sizes, for each weight
// type (f32, f16, bf16 and the quantized q8, q4); and the f16/bf16 conversions.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "kernels/gemm.hpp"
#include "kernels/isa.hpp"
#include "kernels/kernels.hpp"
#include "kernels/quant.hpp"
#include "util/thread_pool.hpp"

using namespace stackllama;
using namespace stackllama::kernels;

#ifdef STACKLLAMA_TEST_AVX512_EMULATED
namespace stackllama::kernels {
const KernelTable& table_avx512_emulated();
}
#endif

namespace {

std::vector<const KernelTable*> supported_tables() {
    std::vector<const KernelTable*> t{&table_scalar()};
    if (isa_supported(Isa::avx2)) t.push_back(&table_avx2());
    if (isa_supported(Isa::avx512)) t.push_back(&table_avx512());
#ifdef STACKLLAMA_TEST_AVX512_EMULATED
    // The AVX-512 kernels compiled against SIMDe's portable intrinsics (tests/CMakeLists.txt), so
    // their logic is tested on machines without AVX-512 too.
    t.push_back(&table_avx512_emulated());
#endif
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

TEST_CASE("matmul_f: batch-invariant, every ISA, against the reference") {
    std::mt19937 rng(98);
    const KernelTable& ref = table_reference();
    for (const KernelTable* kt : supported_tables()) {
        const std::string isa = kt->name;
        CAPTURE(isa);
        for (WeightType t : {WeightType::f32, WeightType::f16, WeightType::bf16}) {
            const std::string type = weight_type_name(t);
            CAPTURE(type);
            // Rows that end mid-tile; row lengths below one SIMD chunk, with a tail, across the
            // 512-element passes, and empty; enough rows (at 64 columns) for several row blocks.
            const std::pair<size_t, size_t> shapes[] = {{1, 7},   {13, 1},    {13, 17},
                                                        {7, 172}, {11, 600},  {5, 1100},
                                                        {290, 64}, {4, 0}};
            for (const auto& [rows, cols] : shapes) {
                CAPTURE(rows);
                CAPTURE(cols);
                RandomMatrix w(t, rows, cols, rng);
                for (size_t m : {1, 2, 3, 4, 5, 7, 9}) {  // every tile width, and several tiles
                    CAPTURE(m);
                    auto x = random_vec(m * cols, rng);
                    const size_t ldy = rows + 3;
                    std::vector<float> y(m * ldy, -7.0f), y_ref(m * ldy, -7.0f);
                    kt->matmul_f(w.m, x.data(), m, y.data(), ldy, 0, rows);
                    ref.matmul_f(w.m, x.data(), m, y_ref.data(), ldy, 0, rows);
                    size_t differ = 0, far = 0;
                    for (size_t i = 0; i < m; ++i) {
                        std::vector<float> one(rows);
                        kt->matvec(w.m, x.data() + i * cols, one.data(), 0, rows);
                        for (size_t r = 0; r < rows; ++r) {
                            differ += y[i * ldy + r] != one[r];  // the lone product's bits
                            far += !(std::fabs(y[i * ldy + r] - y_ref[i * ldy + r]) <= tol(cols));
                        }
                        for (size_t r = rows; r < ldy; ++r) CHECK(y[i * ldy + r] == -7.0f);
                    }
                    CHECK(differ == 0);
                    CHECK(far == 0);
                    // A range writes only its rows, with the same values.
                    if (rows < 3) continue;
                    const size_t r0 = 1, r1 = rows - 1;
                    std::vector<float> part(m * ldy, -7.0f);
                    kt->matmul_f(w.m, x.data(), m, part.data(), ldy, r0, r1);
                    size_t wrong = 0;
                    for (size_t i = 0; i < m; ++i)
                        for (size_t r = 0; r < ldy; ++r)
                            wrong += part[i * ldy + r] != (r >= r0 && r < r1 ? y[i * ldy + r] : -7.0f);
                    CHECK(wrong == 0);
                }
            }
        }
    }
}

TEST_CASE("matmul with float weights: each row as its lone matvec, across threads") {
    std::mt19937 rng(99);
    ThreadPool pool(2);
    for (const KernelTable* kt : supported_tables()) {
        CAPTURE(kt->name);
        for (WeightType t : {WeightType::f32, WeightType::f16, WeightType::bf16}) {
            for (size_t m : {1, 2, 7, 20}) {
                CAPTURE(m);
                RandomMatrix w(t, 1001, 67, rng);
                auto x = random_vec(m * 67, rng);
                std::vector<float> y(m * 1001), one(1001), y_ref(1001);
                matmul(*kt, w.m, x.data(), m, y.data(), pool);
                for (size_t i = 0; i < m; ++i) {
                    matvec(*kt, w.m, x.data() + i * 67, one.data(), pool);
                    table_reference().matvec(w.m, x.data() + i * 67, y_ref.data(), 0, 1001);
                    for (size_t r = 0; r < 1001; ++r) {
                        REQUIRE(y[i * 1001 + r] == one[r]);
                        REQUIRE(std::fabs(one[r] - y_ref[r]) <= tol(67));
                    }
                }
            }
        }
    }
}

TEST_CASE("rope: rotate_half convention, every ISA against the reference") {
    for (const KernelTable* kt : supported_tables()) {
        CAPTURE(kt->name);
        // head_dim 4: pairs (0,2) and (1,3) rotate together.
        float x[4] = {1, 2, 3, 4};
        const float c[2] = {0.5f, 1.0f}, s[2] = {0.25f, 0.0f};
        kt->rope(x, 1, 4, c, s);
        CHECK(x[0] == doctest::Approx(1 * 0.5 - 3 * 0.25));
        CHECK(x[2] == doctest::Approx(3 * 0.5 + 1 * 0.25));
        CHECK(x[1] == doctest::Approx(2));
        CHECK(x[3] == doctest::Approx(4));
    }
    // Two float products and a sum, against the reference's double: within 2 ulp of the larger
    // product.
    std::mt19937 rng(8);
    for (const KernelTable* kt : supported_tables()) {
        CAPTURE(kt->name);
        for (size_t hd : {2, 8, 64, 128, 96}) {
            CAPTURE(hd);
            auto x = random_vec(5 * hd, rng), c = random_vec(hd / 2, rng), s = random_vec(hd / 2, rng);
            auto y = x, y_ref = x;
            kt->rope(y.data(), 5, hd, c.data(), s.data());
            table_reference().rope(y_ref.data(), 5, hd, c.data(), s.data());
            for (size_t i = 0; i < y.size(); ++i) {
                const size_t h = i / hd * hd, j = i % hd, p = j % (hd / 2);
                const double mag = std::fabs(x[h + p] * c[p]) + std::fabs(x[h + p + hd / 2] * s[p]) +
                                   std::fabs(x[h + p + hd / 2] * c[p]) + std::fabs(x[h + p] * s[p]);
                CHECK(std::fabs(y[i] - y_ref[i]) <= 2.5e-7 * mag);
            }
        }
    }
}

TEST_CASE("attend: softmax-weighted values") {
    // Two positions, head_dim 2; scores 0 and scale*(1) -> weights softmax(0, 1).
    const float q[2] = {1, 0}, k[4] = {0, 0, 1, 0}, v[4] = {1, 0, 0, 1};
    const double e = std::exp(1.0), w0 = 1 / (1 + e), w1 = e / (1 + e);
    for (const KernelTable* kt : supported_tables()) {
        CAPTURE(kt->name);
        float scores[2 * kAttendGroup], out[2];
        kt->attend(q, 1, k, v, 2, 2, 2, 1.0f, scores, out);
        CHECK(out[0] == doctest::Approx(w0));
        CHECK(out[1] == doctest::Approx(w1));
    }
}

TEST_CASE("attend: every ISA against the double-precision reference") {
    // |out - ref| ≤ 1e-5 · max_t |v_t| + 1e-6: the float score sums, exp within 2 ulp and the
    // float weighted sum all stay far inside it.
    std::mt19937 rng(5);
    const KernelTable& ref = table_reference();
    for (const KernelTable* kt : supported_tables()) {
        CAPTURE(kt->name);
        // n_q: one head (multi-head attention), a group of GQA heads, and more than one block of
        // kAttendGroup.
        for (size_t n_q : {1, 2, 5, 8, 11}) {
            for (size_t hd : {8, 24, 64, 80, 128, 6}) {
                for (size_t n_kv : {1, 3, 4, 5, 9, 17, 200}) {
                    CAPTURE(n_q);
                    CAPTURE(hd);
                    CAPTURE(n_kv);
                    const size_t stride = hd + 8;  // rows need not be contiguous
                    auto q = random_vec(n_q * hd, rng), k = random_vec(n_kv * stride, rng);
                    auto v = random_vec(n_kv * stride, rng);
                    // Scores of a few units, as scaled q·k are, so the softmax is not flat.
                    const float scale = 2.0f / std::sqrt(float(hd));
                    std::vector<float> scores(kAttendGroup * n_kv), out(n_q * hd, -1.0f), o_ref(n_q * hd);
                    kt->attend(q.data(), n_q, k.data(), v.data(), n_kv, stride, hd, scale,
                               scores.data(), out.data());
                    ref.attend(q.data(), n_q, k.data(), v.data(), n_kv, stride, hd, scale,
                               scores.data(), o_ref.data());
                    float vmax = 0.0f;
                    for (float x : v) vmax = std::max(vmax, std::fabs(x));
                    for (size_t i = 0; i < n_q * hd; ++i)
                        CHECK(std::fabs(out[i] - o_ref[i]) <= 1e-5f * vmax + 1e-6f);
                    // Deterministic: the same call gives the same bits.
                    std::vector<float> again(n_q * hd);
                    kt->attend(q.data(), n_q, k.data(), v.data(), n_kv, stride, hd, scale,
                               scores.data(), again.data());
                    CHECK(std::memcmp(again.data(), out.data(), again.size() * sizeof(float)) == 0);
                }
            }
        }
        // Scores far apart (one position dominates; the others' weights underflow) and a NaN
        // query, alone and in a group.
        for (size_t n_q : {1, 3}) {
            const size_t hd = 64, n_kv = 12;
            std::vector<float> q(n_q * hd, 0.0f), k(n_kv * hd, 0.0f), v(n_kv * hd);
            std::vector<float> scores(kAttendGroup * n_kv), out(n_q * hd);
            for (size_t t = 0; t < n_kv; ++t)
                for (size_t i = 0; i < hd; ++i) v[t * hd + i] = float(t);
            for (size_t h = 0; h < n_q; ++h) q[h * hd] = 1.0f;
            for (size_t t = 0; t < n_kv; ++t) k[t * hd] = t == 7 ? 500.0f : -500.0f;
            kt->attend(q.data(), n_q, k.data(), v.data(), n_kv, hd, hd, 1.0f, scores.data(), out.data());
            for (size_t i = 0; i < n_q * hd; ++i) CHECK(out[i] == doctest::Approx(7.0f));
            q[0] = std::nanf("");
            kt->attend(q.data(), n_q, k.data(), v.data(), n_kv, hd, hd, 1.0f, scores.data(), out.data());
            CHECK(std::isnan(out[0]));  // a NaN query shows, never a plausible number
            if (n_q > 1) CHECK(out[hd] == doctest::Approx(7.0f));  // and stays in its own head
        }
    }
}

TEST_CASE("silu_mul: every ISA within 3 ulp-scale of the reference over the whole range") {
    // The SIMD tables use their own exp (exp8, 2 ulp); inputs from -100 to 100 cross both of its
    // clamps (below -87.3 and above 88).
    const KernelTable& ref = table_reference();
    std::vector<float> g, u;
    for (float x = -100.0f; x <= 100.0f; x += 0.0137f) {
        g.push_back(x);
        u.push_back(1.0f - 0.001f * x);
    }
    for (const KernelTable* kt : supported_tables()) {
        CAPTURE(kt->name);
        auto a = g, b = g;
        kt->silu_mul(a.data(), u.data(), a.size());
        ref.silu_mul(b.data(), u.data(), b.size());
        for (size_t i = 0; i < a.size(); ++i) {
            CAPTURE(g[i]);
            CHECK(std::fabs(a[i] - b[i]) <= 4e-7f * std::fabs(b[i]) + 1e-30f);
        }
    }
}

// --- quantized weights (q8, q4) ---------------------------------------------------------------------
//
// Tolerances. The ISA tables compute Σ_b d_w[b]·d_x[b]·dot_b with dot_b an exact integer; only the
// float additions are ordered differently from the reference (which sums in double), so
//   |kt - ref_q| ≤ (nb + 8) · 2^-23 · Σ_i |w_i · x̂_i|        (x̂ = dequantized activations)
// Against the dequantize-then-f32 product (x not quantized) the activation rounding adds at most
// half a step per element:
//   |kt - ref| ≤ Σ_b (d_x[b] / 2) · Σ_{i in b} |w_i|  +  the bound above.

namespace {

struct QuantMatrix {
    std::vector<float> f32;     // the source
    std::vector<uint8_t> data;  // the blocks
    std::vector<float> deq;     // dequantized by the reference
    Matrix m;
    QuantMatrix(WeightType t, size_t rows, size_t cols, std::mt19937& rng) {
        std::normal_distribution<float> nd(0.0f, 1.0f);
        f32.resize(rows * cols);
        for (auto& v : f32) v = nd(rng);
        // A few rows with an outlier and an all-zero block, as real weights have.
        if (rows > 2) {
            f32[cols + 3] = 40.0f;
            for (size_t c = 0; c < kQuantBlock; ++c) f32[2 * cols + c] = 0.0f;
        }
        data.resize(rows * row_bytes(t, cols));
        quantize_rows(t, f32.data(), rows, cols, data.data());
        m = Matrix{t, data.data(), rows, cols};
        deq.resize(rows * cols);
        table_reference().rows_to_f32(m, 0, rows, deq.data());
    }
};

std::vector<float> dequantize_acts(const std::vector<BlockQ8A>& xq) {
    std::vector<float> x(xq.size() * kQuantBlock);
    for (size_t b = 0; b < xq.size(); ++b)
        for (size_t i = 0; i < kQuantBlock; ++i) x[b * kQuantBlock + i] = xq[b].d * xq[b].q[i];
    return x;
}

// Bounds for row r (see above).
struct QuantBounds {
    double order, act;
};
QuantBounds quant_bounds(const QuantMatrix& w, size_t r, const std::vector<BlockQ8A>& xq) {
    const size_t n = w.m.cols, nb = n / kQuantBlock;
    const std::vector<float> xd = dequantize_acts(xq);
    double s = 0.0, a = 0.0;
    for (size_t c = 0; c < n; ++c) {
        s += std::fabs(double(w.deq[r * n + c]) * xd[c]);
        a += std::fabs(double(w.deq[r * n + c])) * xq[c / kQuantBlock].d * 0.5;
    }
    const double order = double(nb + 8) * std::ldexp(1.0, -23) * s + 1e-30;
    return {order, a + order + 1e-6};
}

}  // namespace

TEST_CASE("quantized weights: every ISA against the reference") {
    std::mt19937 rng(4321);
    const KernelTable& ref = table_reference();
    for (const KernelTable* kt : supported_tables()) {
        CAPTURE(kt->name);
        for (WeightType t : {WeightType::q8, WeightType::q4}) {
            for (size_t cols : {32, 64, 96, 288, 4096}) {
                CAPTURE(weight_type_name(t));
                CAPTURE(cols);
                const size_t rows = 13;  // groups of four rows and a tail
                QuantMatrix w(t, rows, cols, rng);
                auto x = random_vec(cols, rng);
                x[1] = 0.0f;
                if (cols >= 64) {
                    for (size_t i = 32; i < 64; ++i) x[i] = 0.0f;  // an all-zero block
                }

                // Dequantization is exact in every table.
                std::vector<float> rows_kt(5 * cols);
                kt->rows_to_f32(w.m, 3, 8, rows_kt.data());
                CHECK(std::memcmp(rows_kt.data(), w.deq.data() + 3 * cols, rows_kt.size() * 4) == 0);

                // Activation blocks are bit-identical in every table.
                const size_t nb = cols / kQuantBlock;
                std::vector<BlockQ8A> xq(nb), xq_ref(nb);
                kt->quantize_acts(x.data(), cols, xq.data());
                ref.quantize_acts(x.data(), cols, xq_ref.data());
                CHECK(std::memcmp(xq.data(), xq_ref.data(), nb * sizeof(BlockQ8A)) == 0);

                std::vector<float> y(rows), y_q(rows), y_ref_q(rows), y_ref(rows);
                kt->matvec_q(w.m, xq.data(), y_q.data(), 0, rows);
                kt->matvec(w.m, x.data(), y.data(), 0, rows);
                ref.matvec_q(w.m, xq_ref.data(), y_ref_q.data(), 0, rows);
                ref.matvec(w.m, x.data(), y_ref.data(), 0, rows);
                for (size_t r = 0; r < rows; ++r) {
                    CAPTURE(r);
                    const QuantBounds b = quant_bounds(w, r, xq_ref);
                    CHECK(y_q[r] == y[r]);  // matvec is quantize_acts + matvec_q
                    CHECK(std::fabs(double(y_q[r]) - y_ref_q[r]) <= b.order);
                    CHECK(std::fabs(double(y[r]) - y_ref[r]) <= b.act);
                }
                // A row range that starts inside a group of four gives the same values.
                std::vector<float> y_part(rows, -1.0f);
                kt->matvec_q(w.m, xq.data(), y_part.data(), 5, 11);
                for (size_t r = 5; r < 11; ++r) CHECK(std::fabs(y_part[r] - y_q[r]) <= 1e-5f * (1 + std::fabs(y_q[r])));
            }
        }
    }
}

TEST_CASE("activation quantization rounds ties to even and keeps zero blocks zero") {
    // max|x| = 127 makes the step exactly 1, so x·127/max = x and the halves are ties.
    std::vector<float> x(64, 0.0f);
    const float v[] = {127.0f, 2.5f, -3.5f, 0.5f, -0.5f, 1.5f, -126.5f, 3.49f};
    std::memcpy(x.data(), v, sizeof v);
    const int8_t want[] = {127, 2, -4, 0, 0, 2, -126, 3};
    for (const KernelTable* kt : supported_tables()) {
        CAPTURE(kt->name);
        BlockQ8A xq[2];
        kt->quantize_acts(x.data(), 64, xq);
        CHECK(xq[0].d == 1.0f);
        for (size_t i = 0; i < 8; ++i) CHECK(int(xq[0].q[i]) == int(want[i]));
        int sum = 0;
        for (size_t i = 0; i < 8; ++i) sum += want[i];
        CHECK(xq[0].sum == sum);
        // The q4 tiles' pair: elements 0, 1, 4, 5 and 2, 3, 6, 7 (i % 4 < 2 and the others).
        CHECK(xq[0].q4_start[0] == -8 * (127 + 2 + 0 + 2));
        CHECK(xq[0].q4_start[1] == -8 * (-4 + 0 - 126 + 3));
        CHECK(xq[1].d == 0.0f);
        CHECK(xq[1].sum == 0);
        for (size_t i = 0; i < kQuantBlock; ++i) CHECK(xq[1].q[i] == 0);
    }
}

TEST_CASE("matmul and matvec with quantized weights (threads)") {
    std::mt19937 rng(77);
    ThreadPool pool(2);
    const KernelTable& kt = active();
    for (WeightType t : {WeightType::q8, WeightType::q4}) {
        CAPTURE(weight_type_name(t));
        QuantMatrix w(t, 3001, 96, rng);
        for (size_t m : {1, 2, 7}) {
            CAPTURE(m);
            auto x = random_vec(m * 96, rng);
            std::vector<float> y(m * 3001), y_ref(3001);
            matmul(kt, w.m, x.data(), m, y.data(), pool);
            for (size_t i = 0; i < m; ++i) {
                std::vector<BlockQ8A> xq(3);
                table_reference().quantize_acts(x.data() + i * 96, 96, xq.data());
                table_reference().matvec(w.m, x.data() + i * 96, y_ref.data(), 0, 3001);
                for (size_t r = 0; r < 3001; ++r) {
                    // x quantized, whatever m: within the activation bound of the dequantized
                    // product.
                    REQUIRE(std::fabs(double(y[i * 3001 + r]) - y_ref[r]) <=
                            quant_bounds(w, r, xq).act);
                }
            }
        }
    }
}

TEST_CASE("matmul_q: batch-invariant, every ISA, against the reference") {
    std::mt19937 rng(91);
    const KernelTable& ref = table_reference();
    for (const KernelTable* kt : supported_tables()) {
        CAPTURE(kt->name);
        for (WeightType t : {WeightType::q8, WeightType::q4}) {
            CAPTURE(weight_type_name(t));
            const size_t rows = 37, cols = 128, nb = cols / kQuantBlock;
            QuantMatrix w(t, rows, cols, rng);
            for (size_t m : {1, 2, 3, 4, 5, 6, 7, 13}) {  // every tile width, and several tiles
                CAPTURE(m);
                auto x = random_vec(m * cols, rng);
                std::vector<BlockQ8A> xq(m * nb);
                for (size_t i = 0; i < m; ++i)
                    kt->quantize_acts(x.data() + i * cols, cols, xq.data() + i * nb);
                const size_t ldy = rows + 3;
                std::vector<float> y(m * ldy, -7.0f), y_ref(m * ldy, -7.0f);
                kt->matmul_q(w.m, xq.data(), m, y.data(), ldy, 0, rows);
                ref.matmul_q(w.m, xq.data(), m, y_ref.data(), ldy, 0, rows);
                for (size_t i = 0; i < m; ++i) {
                    std::vector<float> one(rows);
                    kt->matvec_q(w.m, xq.data() + i * nb, one.data(), 0, rows);
                    std::vector<BlockQ8A> xi(xq.begin() + i * nb, xq.begin() + (i + 1) * nb);
                    for (size_t r = 0; r < rows; ++r) {
                        CAPTURE(r);
                        CHECK(y[i * ldy + r] == one[r]);  // bit-identical to the lone product
                        CHECK(std::fabs(double(y[i * ldy + r]) - y_ref[i * ldy + r]) <=
                              quant_bounds(w, r, xi).order);
                    }
                    for (size_t r = rows; r < ldy; ++r) CHECK(y[i * ldy + r] == -7.0f);  // untouched
                }
                // A range inside panels writes only its rows, with the same values.
                std::vector<float> part(m * ldy, -7.0f);
                kt->matmul_q(w.m, xq.data(), m, part.data(), ldy, 3, 29);
                for (size_t i = 0; i < m; ++i) {
                    for (size_t r = 0; r < ldy; ++r) {
                        const bool in = r >= 3 && r < 29;
                        CHECK(part[i * ldy + r] == (in ? y[i * ldy + r] : -7.0f));
                    }
                }
            }
        }
    }
}

TEST_CASE("matmul with quantized weights: each row as its lone matvec, across threads") {
    std::mt19937 rng(92);
    ThreadPool pool(2);
    for (const KernelTable* kt : supported_tables()) {
        CAPTURE(kt->name);
        for (WeightType t : {WeightType::q8, WeightType::q4}) {
            QuantMatrix w(t, 1003, 256, rng);
            const size_t m = 6;
            auto x = random_vec(m * 256, rng);
            std::vector<float> y(m * 1003), one(1003);
            matmul(*kt, w.m, x.data(), m, y.data(), pool);
            for (size_t i = 0; i < m; ++i) {
                matvec(*kt, w.m, x.data() + i * 256, one.data(), pool);
                for (size_t r = 0; r < 1003; ++r) REQUIRE(y[i * 1003 + r] == one[r]);
            }
        }
    }
}

TEST_CASE("matmul_shared_input: each output as its own matmul, in one dispatch or not") {
    std::mt19937 rng(93);
    ThreadPool pool(2);
    const size_t cols = 256;
    // Row counts that end mid-panel, a single panel, and a group larger than one dispatch takes.
    const size_t rows[] = {1003, 256, 17, 8, 40, 3, 64, 9, 200};
    for (const KernelTable* kt : supported_tables()) {
        CAPTURE(kt->name);
        // All q8/q4 (mixed), all f16/f32 (mixed), and quantized beside f32 (one matmul each).
        const std::vector<std::vector<WeightType>> mixes = {
            {WeightType::q4, WeightType::q8, WeightType::q4},
            {WeightType::q8, WeightType::q4, WeightType::q4, WeightType::q8, WeightType::q4,
             WeightType::q4, WeightType::q8, WeightType::q4, WeightType::q4},
            {WeightType::f16, WeightType::f32},
            {WeightType::q4, WeightType::f32}};
        for (const auto& types : mixes) {
            std::vector<QuantMatrix> qm;
            std::vector<RandomMatrix> fm;
            qm.reserve(types.size());
            fm.reserve(types.size());
            std::vector<const Matrix*> ws;
            for (size_t j = 0; j < types.size(); ++j) {
                if (weight_type_quantized(types[j])) {
                    qm.emplace_back(types[j], rows[j], cols, rng);
                    ws.push_back(&qm.back().m);
                } else {
                    fm.emplace_back(types[j], rows[j], cols, rng);
                    ws.push_back(&fm.back().m);
                }
            }
            for (size_t m : {size_t(1), size_t(5), size_t(70)}) {
                CAPTURE(types.size());
                CAPTURE(m);
                auto x = random_vec(m * cols, rng);
                std::vector<std::vector<float>> ys(ws.size()), alone(ws.size());
                std::vector<float*> yp;
                for (size_t j = 0; j < ws.size(); ++j) {
                    ys[j].assign(m * ws[j]->rows, -7.0f);
                    alone[j].resize(m * ws[j]->rows);
                    yp.push_back(ys[j].data());
                    matmul(*kt, *ws[j], x.data(), m, alone[j].data(), pool);
                }
                matmul_shared_input(*kt, ws.data(), yp.data(), ws.size(), x.data(), m, pool);
                for (size_t j = 0; j < ws.size(); ++j) {
                    CAPTURE(j);
                    size_t differ = 0;
                    for (size_t i = 0; i < ys[j].size(); ++i) differ += ys[j][i] != alone[j][i];
                    REQUIRE(differ == 0);
                }
            }
        }
    }
}
