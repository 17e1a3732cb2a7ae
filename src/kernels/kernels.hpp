// Numeric kernels. This layer knows matrices and vectors, not transformers.
//
// Each ISA (scalar, AVX2, AVX-512) provides a KernelTable, compiled from kernels_impl.cpp with its
// own flags; active() picks one at run time (isa.hpp). reference.cpp holds plain loops that every
// table is tested against.
#pragma once

#include <cstddef>
#include <cstdint>

namespace stackllama::kernels {

// Storage type of a weight matrix's elements. f32, f16 and bf16 store one element after another;
// q8 and q4 store blocks of kQuantBlock elements with an f16 scale, so they need a row length that
// is a multiple of kQuantBlock (weight_type_fits).
enum class WeightType : int { f32 = 0, f16 = 1, bf16 = 2, q8 = 3, q4 = 4 };

// Elements per block of the quantized types.
constexpr size_t kQuantBlock = 32;
// Query heads an attention kernel takes at once (KernelTable::attend's scratch is this many rows).
constexpr size_t kAttendGroup = 8;
// Rows interleaved in one panel of a quantized matrix.
constexpr size_t kQuantRows = 8;

// One block of one row: q8: w[i] = d · q[i], 34 bytes per 32 weights (8.5 bits), the block of
// llama.cpp's Q8_0.
struct BlockQ8 {
    uint16_t d;  // scale, f16
    int8_t q[kQuantBlock];
};
// q4: w[i] = d · ((q[i] & 15) - 8), w[i + 16] = d · ((q[i] >> 4) - 8) for i < 16. 18 bytes per
// 32 weights (4.5 bits), the block of llama.cpp's Q4_0.
struct BlockQ4 {
    uint16_t d;  // scale, f16
    uint8_t q[kQuantBlock / 2];
};
static_assert(sizeof(BlockQ8) == 34 && sizeof(BlockQ4) == 18, "blocks are packed");

// Layout of a q8/q4 matrix [rows, cols], nb = cols / 32 blocks per row. Rows come in groups of
// kQuantRows = 8; group g (rows 8g .. 8g+7, for g < rows / 8) is nb panels, panel b holding block
// b of its 8 rows interleaved so that one 32-byte load gives 4 levels of each of the 8 rows (the
// lanes of an integer dot product are rows). The last rows % 8 rows follow as plain blocks
// (BlockQ8 / BlockQ4), row after row. Sizes are those of plain blocks: bytes() = rows ·
// row_bytes(type, cols). Quantizers and kernels (quant.hpp, rows_to_f32) hide the layout.
//   PanelQ8: d[r] scale of row r; q[32c + 4r + j] = level of row r, element 4c + j  (c < 8, j < 4)
//   PanelQ4: d[r]; q[32c + 4r + j] = (l(r, 8c + j) + 8) | (l(r, 8c + 4 + j) + 8) << 4  (c < 4)
struct PanelQ8 {
    uint16_t d[kQuantRows];
    int8_t q[kQuantRows * kQuantBlock];
};
struct PanelQ4 {
    uint16_t d[kQuantRows];
    uint8_t q[kQuantRows * kQuantBlock / 2];
};
static_assert(sizeof(PanelQ8) == 8 * sizeof(BlockQ8) && sizeof(PanelQ4) == 8 * sizeof(BlockQ4),
              "panels are 8 blocks");

// Activations quantized for the int8 dot products of q8/q4 weights: x[i] ≈ d · q[i] within a
// block of 32, q in [-127, 127], d = max|x| / 127; sum = Σ q (q4 weights subtract 8 · sum).
// q4_start = {-8 · Σ q[i] over i % 4 < 2, -8 · Σ q[i] over i % 4 >= 2}: the same offset split the
// way AVX2's maddubs pairs bytes 0-1 and 2-3 of every 4, which the q4 prefill tiles start their
// int16 sums at (|Σ| <= 16 · 127, so both fit int16).
struct BlockQ8A {
    float d;
    int32_t sum;
    int16_t q4_start[2];
    int8_t q[kQuantBlock];
};

// Bytes of one storage unit: an element (f32, f16, bf16) or a block (q8, q4).
size_t weight_type_size(WeightType t);
// Elements per storage unit: 1, or kQuantBlock for q8 and q4.
size_t weight_type_block(WeightType t);
// True for the block types q8 and q4.
bool weight_type_quantized(WeightType t);
// Whether a row of `cols` elements can be stored in type t (block types need cols % 32 == 0).
bool weight_type_fits(WeightType t, size_t cols);
// Bytes of one row of `cols` elements (weight_type_fits must hold).
size_t row_bytes(WeightType t, size_t cols);
// "f32", "f16", "bf16", "q8", "q4".
const char* weight_type_name(WeightType t);

// A matrix [rows, cols] in its stored type. f32/f16/bf16: row-major, rows contiguous. q8/q4:
// panels of 8 interleaved rows, then plain rows (see PanelQ8); bytes() is the same formula.
struct Matrix {
    WeightType type = WeightType::f32;
    const void* data = nullptr;
    size_t rows = 0;
    size_t cols = 0;
    size_t bytes() const { return rows * row_bytes(type, cols); }
};

struct KernelTable {
    const char* name;
    // y[r] = W[r, :] · x[:] for r in [r0, r1)            W [rows, cols], x [cols]
    // q8/q4 weights: x is quantized to BlockQ8A first (quantize_acts) and the dot products are
    // integer, as matvec_q; gemm.hpp's matvec quantizes x once for all row ranges.
    void (*matvec)(const Matrix& w, const float* x, float* y, size_t r0, size_t r1);
    // y[i·ldy + r] = W[r, :] · X[i, :] for i < m, r in [r0, r1)
    //                                                    W [rows, cols] f32|f16|bf16, X [m, cols]
    // Each y value is bit-identical to what matvec gives for that row and vector, whatever m and
    // the range (batch-invariant); the weights are read once per block for all m vectors.
    void (*matmul_f)(const Matrix& w, const float* x, size_t m, float* y, size_t ldy, size_t r0,
                     size_t r1);
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

    // --- quantized weights (q8, q4) ---
    // xq[b] = quantize(x[32b .. 32b+32))                 x [n], xq [n / 32], n % 32 == 0
    // Every table gives bit-identical blocks (same rounding: nearest, ties to even).
    void (*quantize_acts)(const float* x, size_t n, BlockQ8A* xq);
    // y[r] = Σ_b d_w[r,b] · d_x[b] · Σ_i q_w[r,b,i] · q_x[b,i] for r in [r0, r1)
    //                                                    W [rows, cols] q8|q4, xq [cols / 32]
    // Ranges that start and end on multiples of 8 rows (or at `rows`) waste no work.
    void (*matvec_q)(const Matrix& w, const BlockQ8A* xq, float* y, size_t r0, size_t r1);
    // y[i·ldy + r] = matvec_q of X row i, for i < m, r in [r0, r1)
    //                                                    W [rows, cols] q8|q4, xq [m, cols / 32]
    // Each y value is bit-identical to what matvec_q gives for that row and vector, whatever m
    // and the range (batch-invariant); the weights are read once for all m vectors.
    void (*matmul_q)(const Matrix& w, const BlockQ8A* xq, size_t m, float* y, size_t ldy,
                     size_t r0, size_t r1);

    // Rotary embedding, Hugging Face rotate_half convention, in place on n_heads vectors:
    //   x[i]      = x[i] cos[i] - x[i + h] sin[i]
    //   x[i + h]  = x[i + h] cos[i] + x[i] sin[i]      for i < h = head_dim / 2
    void (*rope)(float* x, size_t n_heads, size_t head_dim, const float* cos, const float* sin);

    // Causal attention of n_q query heads that share one KV head, over n_kv cached positions:
    //   out_h[d] = Σ_t softmax_t(scale · q_h·k_t) v_t[d]     q_h = q + h·head_dim, out_h likewise,
    //                                                        k_t = k + t·stride, v_t likewise
    // `scores` is scratch of kAttendGroup · n_kv floats. Deterministic: the same inputs (n_q
    // included) give the same bits.
    void (*attend)(const float* q, size_t n_q, const float* k, const float* v, size_t n_kv,
                   size_t stride, size_t head_dim, float scale, float* scores, float* out);
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


}  // namespace stackllama::kernels
