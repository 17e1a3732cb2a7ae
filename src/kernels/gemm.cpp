#include "kernels/gemm.hpp"

#include <cblas.h>

#include <algorithm>
#include <functional>

#include "util/thread_pool.hpp"

namespace stackllama::kernels {

namespace {

// Quantizes m rows of activations into the thread's scratch (reused: decoding allocates nothing).
const BlockQ8A* quantize_rows_of_x(const KernelTable& kt, const float* x, size_t m, size_t cols) {
    thread_local std::vector<BlockQ8A> xq;
    const size_t nb = cols / kQuantBlock;
    if (xq.size() < m * nb) xq.resize(m * nb);
    for (size_t i = 0; i < m; ++i) kt.quantize_acts(x + i * cols, cols, xq.data() + i * nb);
    return xq.data();
}

// Splits the rows of a q8/q4 matrix on panel boundaries (8 rows), so no panel is computed twice.
void parallel_panels(ThreadPool& pool, size_t rows, size_t work_per_row,
                     const std::function<void(size_t, size_t)>& fn) {
    const size_t groups = (rows + kQuantRows - 1) / kQuantRows;
    const size_t grain = std::max<size_t>(1, 65536 / std::max<size_t>(1, work_per_row * kQuantRows));
    pool.parallel_for(groups, grain, [&](size_t g0, size_t g1) {
        fn(g0 * kQuantRows, std::min(rows, g1 * kQuantRows));
    });
}

}  // namespace

void matvec(const KernelTable& kt, const Matrix& w, const float* x, float* y, ThreadPool& pool) {
    if (weight_type_quantized(w.type)) {
        // x is quantized once for all row ranges.
        const BlockQ8A* xq = quantize_rows_of_x(kt, x, 1, w.cols);
        parallel_panels(pool, w.rows, w.cols,
                        [&](size_t r0, size_t r1) { kt.matvec_q(w, xq, y, r0, r1); });
        return;
    }
    // Below ~64K multiply-adds a second thread costs more than it saves.
    const size_t grain = std::max<size_t>(1, 65536 / std::max<size_t>(1, w.cols));
    pool.parallel_for(w.rows, grain, [&](size_t r0, size_t r1) { kt.matvec(w, x, y, r0, r1); });
}

bool matmul_uses_int8(const KernelTable& kt, const Matrix& w, size_t m) {
    (void)kt;  // every table has matmul_q; kept for a per-ISA choice
    return weight_type_quantized(w.type) && m > 1;
}

void matmul(const KernelTable& kt, const Matrix& w, const float* x, size_t m, float* y,
            ThreadPool& pool, std::vector<float>& scratch) {
    if (m == 1) {
        matvec(kt, w, x, y, pool);
        return;
    }
    const int M = static_cast<int>(m), N = static_cast<int>(w.rows), K = static_cast<int>(w.cols);
    if (w.type == WeightType::f32) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, x, K,
                    static_cast<const float*>(w.data), K, 0.0f, y, N);
        return;
    }
    if (matmul_uses_int8(kt, w, m)) {
        // Integer products of quantized activations, the weights read once per chunk of vectors;
        // a chunk's activations (64 · cols bytes) stay in L2 while the panels stream past.
        const BlockQ8A* xq = quantize_rows_of_x(kt, x, m, w.cols);
        const size_t nb = w.cols / kQuantBlock, chunk = 64;
        for (size_t t0 = 0; t0 < m; t0 += chunk) {
            const size_t n = std::min(chunk, m - t0);
            parallel_panels(pool, w.rows, w.cols * n, [&](size_t r0, size_t r1) {
                kt.matmul_q(w, xq + t0 * nb, n, y + t0 * w.rows, w.rows, r0, r1);
            });
        }
        return;
    }
    matmul_widened(kt, w, x, m, y, pool, scratch);
}

void matmul_widened(const KernelTable& kt, const Matrix& w, const float* x, size_t m, float* y,
                    ThreadPool& pool, std::vector<float>& scratch) {
    const int M = static_cast<int>(m), N = static_cast<int>(w.rows), K = static_cast<int>(w.cols);
    // Widen a tile of about 1 MiB of f32 weights at a time: it stays in L2 while sgemm uses it.
    const size_t tile_rows = std::max<size_t>(16, (size_t(1) << 18) / std::max<size_t>(1, w.cols));
    if (scratch.size() < tile_rows * w.cols) scratch.resize(tile_rows * w.cols);
    for (size_t r0 = 0; r0 < w.rows; r0 += tile_rows) {
        const size_t r1 = std::min(w.rows, r0 + tile_rows);
        float* tile = scratch.data();
        pool.parallel_for(r1 - r0, 64, [&](size_t a, size_t b) {
            kt.rows_to_f32(w, r0 + a, r0 + b, tile + a * w.cols);
        });
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, static_cast<int>(r1 - r0), K,
                    1.0f, x, K, tile, K, 0.0f, y + r0, N);
    }
}

void matmul_add_low_rank(const KernelTable& kt, const Matrix& a, const Matrix& b, float scale,
                         const float* x, size_t m, float* y, ThreadPool& pool,
                         std::vector<float>& tmp) {
    const size_t r = a.rows, rows = b.rows;
    if (tmp.size() < m * r) tmp.resize(m * r);
    std::vector<float> unused;
    matmul(kt, a, x, m, tmp.data(), pool, unused);  // a is f32: no widening scratch needed
    const float* bm = static_cast<const float*>(b.data);
    if (m == 1) {
        const float* t = tmp.data();
        const size_t grain = std::max<size_t>(1, 65536 / std::max<size_t>(1, r));
        pool.parallel_for(rows, grain, [&](size_t r0, size_t r1) {
            for (size_t o = r0; o < r1; ++o) y[o] += scale * kt.dot(bm + o * r, t, r);
        });
        return;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(m),
                static_cast<int>(rows), static_cast<int>(r), scale, tmp.data(),
                static_cast<int>(r), bm, static_cast<int>(r), 1.0f, y, static_cast<int>(rows));
}

void set_blas_threads(int n) { openblas_set_num_threads(std::max(1, n)); }

}  // namespace stackllama::kernels
