// Matrix times a few vectors, reading each weight row once for all of them: the product batched
// decoding needs (n sequences, one new token each), where OpenBLAS's sgemm on widened tiles is
// slower than n separate matrix-vector products. A register tile of 3 rows x 4 vectors (AVX2;
// 4 x 4 with AVX-512) makes each weight load serve 4 products and each x load 3.
//
// Each (row, vector) element is a sum in its own order (one 8- or 16-lane accumulator over the
// row, then the horizontal sum), independent of how many vectors come along: a row of a batch
// gets the same value whatever the batch. It differs from the table's matvec (two accumulators)
// by float rounding only (about 1e-6 relative).
//
// Belongs in src/kernels/ as a KernelTable entry; it lives here, with per-function target
// attributes instead of per-file ISA flags, until the kernels layer takes it over. The .cpp
// includes only the kernel header, intrinsics and C headers, and keeps its helpers in an
// anonymous namespace (see src/kernels/kernels_impl.cpp for why).
#pragma once

#include <cstddef>

#include "kernels/kernels.hpp"

namespace stackllama {

// Whether matvec_multi has a kernel for this table and weight type (f32, f16 and bf16 weights
// with the avx2 or avx512 table); otherwise call kt.matvec once per vector.
bool matvec_multi_available(const kernels::KernelTable& kt, kernels::WeightType type);

// Y[i, r] = W[r, :] · X[i, :] for i < m, r in [r0, r1)   W [rows, cols], X [m, cols], Y [m, rows]
void matvec_multi(const kernels::KernelTable& kt, const kernels::Matrix& w, const float* x,
                  size_t m, float* y, size_t r0, size_t r1);

}  // namespace stackllama
