// Numeric kernels. This layer knows matrices and vectors, not transformers.
//
// Each ISA (scalar, AVX2, AVX-512) provides a KernelTable, compiled from kernels_impl.cpp with its
// own flags; active() picks one at run time (isa.hpp). reference.cpp holds plain loops that every
// table is tested against.
#pragma once

#include <cstddef>
#include <cstdint>

namespace stackllama::kernels {

// Storage type of a weight matrix's elements.
enum class WeightType : int { f32 = 0, f16 = 1, bf16 = 2 };

size_t weight_type_size(WeightType t);

// A row-major matrix [rows, cols] in its stored type; rows are contiguous (stride = cols).
struct Matrix {
    WeightType type = WeightType::f32;
    const void* data = nullptr;
    size_t rows = 0;
    size_t cols = 0;
    size_t bytes() const { return rows * cols * weight_type_size(type); }
};

struct KernelTable {
    const char* name;
    // y[r] = W[r, :] · x[:] for r in [r0, r1)            W [rows, cols], x [cols]
    void (*matvec)(const Matrix& w, const float* x, float* y, size_t r0, size_t r1);
    // out[(r - r0) * cols + c] = float(W[r, c]) for r in [r0, r1)
    void (*rows_to_f32)(const Matrix& w, size_t r0, size_t r1, float* out);
    // Σ a[i] b[i]                                        a, b [n]
    float (*dot)(const float* a, const float* b, size_t n);
    // y[i] += a · x[i]                                   x, y [n]
    void (*axpy)(float a, const float* x, float* y, size_t n);
    // y[i] = x[i] / sqrt(mean(x²) + eps) · w[i]          x, w, y [n]; y may alias x
    void (*rmsnorm)(const float* x, const float* w, float* y, size_t n, float eps);
    // gate[i] = silu(gate[i]) · up[i]                    gate, up [n]
    void (*silu_mul)(float* gate, const float* up, size_t n);
    // y[i] += x[i]                                       x, y [n]
    void (*add)(float* y, const float* x, size_t n);
};

// Per-ISA tables (kernels_impl.cpp) and the plain-loop reference (reference.cpp).
const KernelTable& table_scalar();
const KernelTable& table_avx2();
const KernelTable& table_avx512();
const KernelTable& table_reference();

// The table chosen for this CPU (or forced by STACKLLAMA_ISA).
const KernelTable& active();

// Scalar conversions, exact (round-to-nearest-even where narrowing).
float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);
// Out of line on purpose: an inline function in this header would also be compiled with AVX-512
// flags in kernels_impl.cpp, and the linker could pick that copy for every caller.
float bf16_to_f32(uint16_t b);
uint16_t f32_to_bf16(float f);

// Rotary embedding, Hugging Face rotate_half convention, in place on n_heads vectors of head_dim:
//   x[i]      = x[i] cos[i] - x[i + h] sin[i]
//   x[i + h]  = x[i + h] cos[i] + x[i] sin[i]      for i < h = head_dim / 2
void rope(float* x, size_t n_heads, size_t head_dim, const float* cos, const float* sin);

// Causal attention of one query head over n_kv cached positions:
//   out[d] = Σ_t softmax_t(scale · q·k_t) v_t[d]     q [head_dim], k_t = k + t·stride, v likewise
// `scores` is scratch of n_kv floats.
void attend(const KernelTable& kt, const float* q, const float* k, const float* v, size_t n_kv,
            size_t stride, size_t head_dim, float scale, float* scores, float* out);

}  // namespace stackllama::kernels
