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
void matvec(const KernelTable& kt, const Matrix& w, const float* x, float* y, ThreadPool& pool);

// Y[i, r] = X[i, :] · W[r, :]                   W [rows, cols], X [m, cols], Y [m, rows]
// f32 weights go straight to OpenBLAS sgemm; f16/bf16 weights are widened a tile of rows at a time
// into `scratch` and multiplied by sgemm. m == 1 uses matvec.
void matmul(const KernelTable& kt, const Matrix& w, const float* x, size_t m, float* y,
            ThreadPool& pool, std::vector<float>& scratch);

// Y[i, :] += scale · B · (A · X[i, :])          A [r, cols] f32, B [rows, r] f32, X [m, cols]
// The low-rank update of a LoRA adapter, never forming B·A. `tmp` is scratch (m·r floats).
void matmul_add_low_rank(const KernelTable& kt, const Matrix& a, const Matrix& b, float scale,
                         const float* x, size_t m, float* y, ThreadPool& pool,
                         std::vector<float>& tmp);

// Sets OpenBLAS's own thread count (process-wide).
void set_blas_threads(int n);

}  // namespace stackllama::kernels
