#include "kernels/gemm.hpp"

#include <cblas.h>

#include <algorithm>

#include "util/thread_pool.hpp"

namespace stackllama::kernels {

void matvec(const KernelTable& kt, const Matrix& w, const float* x, float* y, ThreadPool& pool) {
    // Below ~64K multiply-adds a second thread costs more than it saves.
    const size_t grain = std::max<size_t>(1, 65536 / std::max<size_t>(1, w.cols));
    pool.parallel_for(w.rows, grain, [&](size_t r0, size_t r1) { kt.matvec(w, x, y, r0, r1); });
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
