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

// Matrices one dispatch may cover; more are taken in groups of this many.
constexpr size_t kMaxShared = 8;

// Runs fn(j, u0, u1) on units [u0, u1) of matrix j, where matrix j < n has units[j] units (rows
// or panels), the units of all n split across the pool as one range.
void parallel_units(ThreadPool& pool, const size_t* units, size_t n, size_t grain,
                    const std::function<void(size_t, size_t, size_t)>& fn) {
    size_t total = 0;
    for (size_t j = 0; j < n; ++j) total += units[j];
    pool.parallel_for(total, grain, [&](size_t a, size_t b) {
        size_t first = 0;
        for (size_t j = 0; j < n && a < b; first += units[j], ++j) {
            const size_t end = first + units[j];
            if (a >= end) continue;
            const size_t stop = std::min(b, end);
            fn(j, a - first, stop - first);
            a = stop;
        }
    });
}

// Y_j = X · W_j^T for n <= kMaxShared matrices that shares_dispatch accepts.
void products(const KernelTable& kt, const Matrix* const* w, float* const* y, size_t n,
              const float* x, size_t m, ThreadPool& pool) {
    const size_t cols = w[0]->cols;
    size_t units[kMaxShared];
    if (!weight_type_quantized(w[0]->type)) {
        for (size_t j = 0; j < n; ++j) units[j] = w[j]->rows;
        // Below ~64K multiply-adds a second thread costs more than it saves.
        const size_t grain = std::max<size_t>(1, 65536 / std::max<size_t>(1, cols * m));
        parallel_units(pool, units, n, grain, [&](size_t j, size_t r0, size_t r1) {
            if (m == 1) {
                kt.matvec(*w[j], x, y[j], r0, r1);
            } else {
                kt.matmul_f(*w[j], x, m, y[j], w[j]->rows, r0, r1);
            }
        });
        return;
    }
    // Integer products of quantized activations (x quantized once for every matrix), the weights
    // read once per chunk of vectors; a chunk's activations (64 · cols bytes) stay in L2 while
    // the panels stream past. Rows are split on panel boundaries (8 rows): no panel is computed
    // twice.
    const BlockQ8A* xq = quantize_rows_of_x(kt, x, m, cols);
    for (size_t j = 0; j < n; ++j) units[j] = (w[j]->rows + kQuantRows - 1) / kQuantRows;
    const size_t nb = cols / kQuantBlock, chunk = 64;
    for (size_t t0 = 0; t0 < m; t0 += chunk) {
        const size_t v = std::min(chunk, m - t0);
        const size_t grain = std::max<size_t>(1, 65536 / std::max<size_t>(1, cols * v * kQuantRows));
        parallel_units(pool, units, n, grain, [&](size_t j, size_t g0, size_t g1) {
            const Matrix& wj = *w[j];
            const size_t r0 = g0 * kQuantRows, r1 = std::min(wj.rows, g1 * kQuantRows);
            if (m == 1) {
                kt.matvec_q(wj, xq, y[j], r0, r1);
            } else {
                kt.matmul_q(wj, xq + t0 * nb, v, y[j] + t0 * wj.rows, wj.rows, r0, r1);
            }
        });
    }
}

}  // namespace

void matvec(const KernelTable& kt, const Matrix& w, const float* x, float* y, ThreadPool& pool) {
    const Matrix* ws[1] = {&w};
    float* ys[1] = {y};
    products(kt, ws, ys, 1, x, 1, pool);
}

void matmul(const KernelTable& kt, const Matrix& w, const float* x, size_t m, float* y,
            ThreadPool& pool) {
    const Matrix* ws[1] = {&w};
    float* ys[1] = {y};
    products(kt, ws, ys, 1, x, m, pool);
}

bool shares_dispatch(const Matrix* const* w, size_t n) {
    size_t quantized = 0;
    for (size_t j = 0; j < n; ++j) {
        if (w[j]->cols != w[0]->cols) return false;
        quantized += weight_type_quantized(w[j]->type) ? 1 : 0;
    }
    return quantized == n || quantized == 0;
}

void matmul_shared_input(const KernelTable& kt, const Matrix* const* w, float* const* y,
                         size_t n, const float* x, size_t m, ThreadPool& pool) {
    if (n == 0 || m == 0) return;
    if (!shares_dispatch(w, n)) {
        for (size_t j = 0; j < n; ++j) matmul(kt, *w[j], x, m, y[j], pool);
        return;
    }
    for (size_t j0 = 0; j0 < n; j0 += kMaxShared) {
        products(kt, w + j0, y + j0, std::min(kMaxShared, n - j0), x, m, pool);
    }
}

void matmul_add_low_rank(const KernelTable& kt, const Matrix& a, const Matrix& b, float scale,
                         const float* x, size_t m, float* y, ThreadPool& pool,
                         std::vector<float>& tmp) {
    const size_t r = a.rows, rows = b.rows;
    if (tmp.size() < m * (r + rows)) tmp.resize(m * (r + rows));
    float* ax = tmp.data();       // [m, r]    X · A^T
    float* bax = ax + m * r;      // [m, rows] (X · A^T) · B^T
    // Two batch-invariant products and a per-row axpy: a row's update is the same in any batch.
    matmul(kt, a, x, m, ax, pool);
    matmul(kt, b, ax, m, bax, pool);
    for (size_t i = 0; i < m; ++i) kt.axpy(scale, bax + i * rows, y + i * rows, rows);
}

void set_blas_threads(int n) { openblas_set_num_threads(std::max(1, n)); }

}  // namespace stackllama::kernels
