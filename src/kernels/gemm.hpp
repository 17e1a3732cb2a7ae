// Matrix products over weight matrices in their stored type, parallel over a ThreadPool.
#pragma once

#include <cstddef>
#include <vector>

#include "kernels/kernels.hpp"

namespace stackllama {
class ThreadPool;
}

namespace stackllama::kernels {

// y[r] = W[r, :] · x                            W [rows, cols], x [cols], y [rows]
// q8/q4 weights: x is quantized to int8 blocks once (kt.quantize_acts), rows split on panels.
void matvec(const KernelTable& kt, const Matrix& w, const float* x, float* y, ThreadPool& pool);

// Y[i, r] = X[i, :] · W[r, :]                   W [rows, cols], X [m, cols], Y [m, rows]
// f32 weights go straight to OpenBLAS sgemm; f16/bf16 weights are widened a tile of rows at a time
// into `scratch` and multiplied by sgemm. m == 1 uses matvec. q8/q4 weights with
// matmul_uses_int8: X quantized row by row and kt.matmul_q, each Y row bit-identical to matvec of
// that X row (batch-invariant); otherwise widened tiles and sgemm like f16.
void matmul(const KernelTable& kt, const Matrix& w, const float* x, size_t m, float* y,
            ThreadPool& pool, std::vector<float>& scratch);

// Y_j[m, rows_j] = X[m, cols] · W_j^T for j < n: several matrices of one input (q/k/v,
// gate/up), each Y_j bit-identical to matmul(kt, *w[j], x, m, y[j], ...). When the products take
// the integer path (all q8/q4) or are matrix-vector (m == 1), X is quantized once and the rows of
// all n matrices are split across the pool in one dispatch (per chunk of vectors), so a small
// matrix does not pay a fork and join of its own; otherwise one matmul per matrix.
void matmul_shared_input(const KernelTable& kt, const Matrix* const* w, float* const* y,
                         size_t n, const float* x, size_t m, ThreadPool& pool,
                         std::vector<float>& scratch);

// Whether matmul_shared_input runs these n matrices in one dispatch: one row length, and all
// q8/q4 (any m) or none (m == 1).
bool shares_dispatch(const Matrix* const* w, size_t n, size_t m);

// The widening path of matmul for any type: tiles of W widened to f32 with kt.rows_to_f32 into
// `scratch`, multiplied by OpenBLAS sgemm.
void matmul_widened(const KernelTable& kt, const Matrix& w, const float* x, size_t m, float* y,
                    ThreadPool& pool, std::vector<float>& scratch);

// Whether matmul(kt, w, x, m, ...) takes the integer path: q8/q4 weights and m > 1. On AVX2 (Zen 2)
// it beats widened tiles + sgemm at every m measured (16..512): q4 ~2x, q8 ~1.4x
// (bench/kernel_bench); VNNI (AVX-512) widens the gap.
bool matmul_uses_int8(const KernelTable& kt, const Matrix& w, size_t m);

// Y[i, :] += scale · B · (A · X[i, :])          A [r, cols] f32, B [rows, r] f32, X [m, cols]
// The low-rank update of a LoRA adapter, never forming B·A. `tmp` is scratch (m·r floats).
void matmul_add_low_rank(const KernelTable& kt, const Matrix& a, const Matrix& b, float scale,
                         const float* x, size_t m, float* y, ThreadPool& pool,
                         std::vector<float>& tmp);

// Sets OpenBLAS's own thread count (process-wide).
void set_blas_threads(int n);

}  // namespace stackllama::kernels
