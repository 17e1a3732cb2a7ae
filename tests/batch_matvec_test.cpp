// matvec_multi (src/model/batch_matvec.*), the product of batched decoding: against a double
// reference for f32, f16 and bf16 weights, every kernel table this CPU runs, odd sizes (row and
// column tails, more than one group of vectors); and a row's value must not depend on how many
// vectors share the pass nor on the row range, so a sequence's logits do not depend on its batch.
//
// Built a second time with STACKLLAMA_TEST_BATCH_EMULATED (when SIMDe is installed): the kernel
// source is compiled here with the intrinsics emulated, so the AVX-512 path runs on any CPU.
#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "kernels/isa.hpp"
#include "kernels/kernels.hpp"

#ifdef STACKLLAMA_TEST_BATCH_EMULATED
#define STACKLLAMA_BATCH_INTRINSICS_HEADER "simde_avx512_shim.h"
#include "model/batch_matvec.cpp"
#else
#include "model/batch_matvec.hpp"
#endif

using namespace stackllama;

namespace {

struct Weights {
    kernels::WeightType type;
    std::vector<float> f32;
    std::vector<uint16_t> h;
    std::vector<double> value;  // what the kernel must see, exactly
    kernels::Matrix m;
};

Weights make_weights(kernels::WeightType type, size_t rows, size_t cols, std::mt19937& g) {
    Weights w;
    w.type = type;
    std::normal_distribution<float> nd;
    w.value.resize(rows * cols);
    if (type == kernels::WeightType::f32) {
        w.f32.resize(rows * cols);
        for (size_t i = 0; i < w.f32.size(); ++i) w.value[i] = w.f32[i] = nd(g);
        w.m = kernels::Matrix{type, w.f32.data(), rows, cols};
    } else {
        w.h.resize(rows * cols);
        for (size_t i = 0; i < w.h.size(); ++i) {
            const float v = nd(g);
            w.h[i] = type == kernels::WeightType::f16 ? kernels::f32_to_f16(v) : kernels::f32_to_bf16(v);
            w.value[i] = type == kernels::WeightType::f16 ? kernels::f16_to_f32(w.h[i])
                                                          : kernels::bf16_to_f32(w.h[i]);
        }
        w.m = kernels::Matrix{type, w.h.data(), rows, cols};
    }
    return w;
}

const kernels::WeightType kTypes[] = {kernels::WeightType::f32, kernels::WeightType::f16,
                                      kernels::WeightType::bf16};
const size_t kCols[] = {8, 64, 100, 130, 2048 + 24};
const size_t kRows[] = {1, 2, 3, 7, 16};
const size_t kVectors[] = {1, 2, 3, 4, 5, 9, 16};

template <class Multi>
void check_against_reference(const std::string& what, Multi multi) {
    std::mt19937 g(5);
    double worst = 0;
    for (kernels::WeightType t : kTypes) {
        for (size_t cols : kCols) {
            for (size_t rows : kRows) {
                Weights w = make_weights(t, rows, cols, g);
                std::vector<float> x(16 * cols);
                for (float& v : x) v = std::normal_distribution<float>()(g);
                for (size_t m : kVectors) {
                    std::vector<float> y(m * rows, std::nanf(""));
                    multi(w.m, x.data(), m, y.data(), 0, rows);
                    for (size_t k = 0; k < m; ++k) {
                        for (size_t r = 0; r < rows; ++r) {
                            double ref = 0, mag = 0;
                            for (size_t i = 0; i < cols; ++i) {
                                ref += w.value[r * cols + i] * double(x[k * cols + i]);
                                mag += std::fabs(w.value[r * cols + i] * double(x[k * cols + i]));
                            }
                            const double err = std::fabs(double(y[k * rows + r]) - ref) / (mag + 1e-30);
                            worst = std::max(worst, err);
                            INFO(what << ": type " << int(t) << ", " << rows << " x " << cols
                                      << ", vector " << k << " of " << m << ", row " << r);
                            REQUIRE(err < 1e-6);
                        }
                    }
                }
            }
        }
    }
    MESSAGE(what << ": worst error relative to sum |w x|: " << worst);
}

}  // namespace

#ifdef STACKLLAMA_TEST_BATCH_EMULATED

TEST_CASE("emulated AVX-512 and AVX2 batched products against the reference") {
    check_against_reference("avx512 (emulated)", [](const kernels::Matrix& w, const float* x,
                                                    size_t m, float* y, size_t r0, size_t r1) {
        if (w.type == kernels::WeightType::f32)
            a5_rows<false>(static_cast<const float*>(w.data), w.cols, x, m, y, w.rows, r0, r1);
        else if (w.type == kernels::WeightType::f16)
            a5_rows<false>(static_cast<const uint16_t*>(w.data), w.cols, x, m, y, w.rows, r0, r1);
        else
            a5_rows<true>(static_cast<const uint16_t*>(w.data), w.cols, x, m, y, w.rows, r0, r1);
    });
    check_against_reference("avx2 (emulated)", [](const kernels::Matrix& w, const float* x,
                                                  size_t m, float* y, size_t r0, size_t r1) {
        if (w.type == kernels::WeightType::f32)
            a2_rows<false>(static_cast<const float*>(w.data), w.cols, x, m, y, w.rows, r0, r1);
        else if (w.type == kernels::WeightType::f16)
            a2_rows<false>(static_cast<const uint16_t*>(w.data), w.cols, x, m, y, w.rows, r0, r1);
        else
            a2_rows<true>(static_cast<const uint16_t*>(w.data), w.cols, x, m, y, w.rows, r0, r1);
    });
}

#else

TEST_CASE("matvec_multi against the reference, for every kernel table this CPU runs") {
    const std::pair<kernels::Isa, const kernels::KernelTable*> tables[] = {
        {kernels::Isa::scalar, &kernels::table_scalar()},
        {kernels::Isa::avx2, &kernels::table_avx2()},
        {kernels::Isa::avx512, &kernels::table_avx512()}};
    for (const auto& [isa, kt] : tables) {
        if (!kernels::isa_supported(isa)) {
            MESSAGE("SKIP: this CPU has no " << std::string(kernels::isa_name(isa)));
            continue;
        }
        const bool batched = matvec_multi_available(*kt, kernels::WeightType::bf16);
        CHECK(batched == (isa != kernels::Isa::scalar));
        check_against_reference(kernels::isa_name(isa),
                                [kt = kt](const kernels::Matrix& w, const float* x, size_t m,
                                          float* y, size_t r0, size_t r1) {
                                    matvec_multi(*kt, w, x, m, y, r0, r1);
                                });
    }
}

TEST_CASE("a row's value does not depend on the batch size or the row range") {
    const kernels::KernelTable& kt = kernels::active();
    std::mt19937 g(9);
    for (kernels::WeightType t : kTypes) {
        Weights w = make_weights(t, 23, 272, g);
        std::vector<float> x(16 * 272);
        for (float& v : x) v = std::normal_distribution<float>()(g);
        std::vector<float> alone(23), all(16 * 23), part(16 * 23, 0.0f);
        matvec_multi(kt, w.m, x.data(), 16, all.data(), 0, 23);
        for (size_t k = 0; k < 16; ++k) {
            // Vector k alone (its own pass), and in a batch of k + 1 split into two row ranges.
            matvec_multi(kt, w.m, x.data() + k * 272, 1, alone.data(), 0, 23);
            matvec_multi(kt, w.m, x.data(), k + 1, part.data(), 0, 10);
            matvec_multi(kt, w.m, x.data(), k + 1, part.data(), 10, 23);
            INFO("type " << int(t) << ", vector " << k);
            CHECK(std::memcmp(alone.data(), all.data() + k * 23, 23 * sizeof(float)) == 0);
            CHECK(std::memcmp(part.data() + k * 23, all.data() + k * 23, 23 * sizeof(float)) == 0);
        }
    }
}

TEST_CASE("quantized weights have no batched kernel: callers go one vector at a time") {
    for (const kernels::KernelTable* kt : {&kernels::table_scalar(), &kernels::active()}) {
        CHECK_FALSE(matvec_multi_available(*kt, kernels::WeightType::q8));
        CHECK_FALSE(matvec_multi_available(*kt, kernels::WeightType::q4));
    }
}

#endif
