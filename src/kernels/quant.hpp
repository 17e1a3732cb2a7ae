// Quantizers for the block types (q8, q4) and conversion of whole weight matrices between types.
// Compiled once for baseline x86-64, so a model quantizes to the same bytes on every CPU.
#pragma once

#include <cstddef>
#include <memory>

#include "kernels/kernels.hpp"

namespace stackllama {
class ThreadPool;
}

namespace stackllama::kernels {

// dst = quantize(src)                                 src [rows, cols] f32, t q8|q4,
//                                                     dst rows · row_bytes(t, cols) bytes,
//                                                     in the panel layout of kernels.hpp
// cols % 32 == 0 (weight_type_fits). Per block of 32:
//   q8: llama.cpp Q8_0's d = max|x| / 127 and nine candidates around it, each refitted by least
//       squares for its levels; the one with least squared error is kept (never worse than Q8_0).
//   q4: seven candidate scales around llama.cpp Q4_0's d = -x[argmax |x|] / 8, each refitted
//       by least squares for its levels; the one with least squared error is kept (never worse
//       than Q4_0's rule, about 11 % less squared error on Gaussian weights).
// Deterministic; thread-safe (no state).
void quantize_rows(WeightType t, const float* src, size_t rows, size_t cols, void* dst);

// quantize_rows for rows [r0, r1) of w (q8|q4, data writable) from src [r1 - r0, cols] f32.
// Different row ranges write different bytes, so ranges may be quantized in parallel.
void quantize_rows_into(const Matrix& w, size_t r0, size_t r1, const float* src);

// One block in llama.cpp's layout (BlockQ8 / BlockQ4): block b of row r of a q8/q4 matrix,
// read from or written to wherever the panel layout keeps it (kernels.hpp, PanelQ8). For tools
// that import or export llama.cpp blocks, and for the reference kernels.
BlockQ8 load_block_q8(const Matrix& w, size_t r, size_t b);
BlockQ4 load_block_q4(const Matrix& w, size_t r, size_t b);
void store_block_q8(const Matrix& w, size_t r, size_t b, const BlockQ8& block);
void store_block_q4(const Matrix& w, size_t r, size_t b, const BlockQ4& block);

// The inverse, for tests and tools: out[r, :] = float(W[r, :]) for any type.
void dequantize_rows(const Matrix& w, size_t r0, size_t r1, float* out);

// A matrix together with the memory it lives in.
struct OwnedMatrix {
    Matrix m;
    std::shared_ptr<const void> owner;
};

// Memory for weights: util/memory.hpp's alloc_large (huge pages from 8 MiB up). Not initialised.
// Throws Error(out_of_memory).
std::shared_ptr<void> alloc_weight_memory(size_t bytes);

// W converted to type t (any of f32, f16, bf16, q8, q4), rows split across `pool`. Widens with
// kt.rows_to_f32 a few rows at a time, so the only memory allocated is the result.
// Throws Error(invalid_argument) when !weight_type_fits(t, w.cols).
OwnedMatrix convert_matrix(const KernelTable& kt, const Matrix& w, WeightType t, ThreadPool& pool);

// The same into `memory` (Matrix{t, .., w.rows, w.cols}.bytes() writable bytes, 64-byte aligned
// for the kernels' best speed), so that many matrices can share one allocation: each allocation
// of weight memory rounds up to a 2 MiB page.
Matrix convert_matrix_into(const KernelTable& kt, const Matrix& w, WeightType t, ThreadPool& pool,
                           void* memory);

}  // namespace stackllama::kernels
