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
// m == 1 is matvec. Otherwise the rows are split across the pool: f32/f16/bf16 weights go to
// kt.matmul_f, q8/q4 to kt.matmul_q on X quantized row by row. Either way each Y row is
// bit-identical to matvec of that X row (batch-invariant).
void matmul(const KernelTable& kt, const Matrix& w, const float* x, size_t m, float* y,
            ThreadPool& pool);

// Y_j[m, rows_j] = X[m, cols] · W_j^T for j < n: several matrices of one input (q/k/v,
// gate/up), each Y_j bit-identical to matmul(kt, *w[j], x, m, y[j], pool). When they share a
// dispatch (shares_dispatch), X is quantized once (q8/q4) and the rows of all n matrices are split
// across the pool in one dispatch (per chunk of vectors), so a small matrix does not pay a fork
// and join of its own; otherwise one matmul per matrix.
void matmul_shared_input(const KernelTable& kt, const Matrix* const* w, float* const* y,
                         size_t n, const float* x, size_t m, ThreadPool& pool);

// Whether matmul_shared_input runs these n matrices in one dispatch: one row length, and all
// q8/q4 or none.
bool shares_dispatch(const Matrix* const* w, size_t n);

// Y[i, :] += scale · B · (A · X[i, :])          A [r, cols] f32, B [rows, r] f32, X [m, cols]
// The low-rank update of a LoRA adapter, never forming B·A; each row's update is what it would
// be alone (batch-invariant). `tmp` is scratch (m · (r + rows) floats).
void matmul_add_low_rank(const KernelTable& kt, const Matrix& a, const Matrix& b, float scale,
                         const float* x, size_t m, float* y, ThreadPool& pool,
                         std::vector<float>& tmp);

// Sets OpenBLAS's own thread count (process-wide).
void set_blas_threads(int n);

}  // namespace stackllama::kernels
