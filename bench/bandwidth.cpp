#include "bandwidth.hpp"

#include <emmintrin.h>

#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <vector>

#include "kernels/quant.hpp"
#include "util/thread_pool.hpp"

namespace stackllama_bench {

namespace {

// Sums four quarters of [p, p + n) side by side: four sequential streams, four independent
// chains (SSE2 is enough to outrun DRAM on one core).
uint64_t read_all(const uint8_t* p, size_t n) {
    __m128i a = _mm_setzero_si128(), b = a, c = a, d = a;
    const size_t q = n / 4 / 64 * 64;
    for (size_t i = 0; i < q; i += 32) {
        a = _mm_add_epi64(a, _mm_load_si128(reinterpret_cast<const __m128i*>(p + i)));
        b = _mm_add_epi64(b, _mm_load_si128(reinterpret_cast<const __m128i*>(p + q + i)));
        c = _mm_add_epi64(c, _mm_load_si128(reinterpret_cast<const __m128i*>(p + 2 * q + i)));
        d = _mm_add_epi64(d, _mm_load_si128(reinterpret_cast<const __m128i*>(p + 3 * q + i)));
        a = _mm_add_epi64(a, _mm_load_si128(reinterpret_cast<const __m128i*>(p + i + 16)));
        b = _mm_add_epi64(b, _mm_load_si128(reinterpret_cast<const __m128i*>(p + q + i + 16)));
        c = _mm_add_epi64(c, _mm_load_si128(reinterpret_cast<const __m128i*>(p + 2 * q + i + 16)));
        d = _mm_add_epi64(d, _mm_load_si128(reinterpret_cast<const __m128i*>(p + 3 * q + i + 16)));
    }
    a = _mm_add_epi64(_mm_add_epi64(a, b), _mm_add_epi64(c, d));
    uint64_t out[2];
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out), a);
    return out[0] + out[1];
}

}  // namespace

Stamp now() {
    timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    const double cpu = double(t.tv_sec) + 1e-9 * double(t.tv_nsec);
    const double wall =
        std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
    return {wall, cpu};
}

Bandwidth read_bandwidth(int n_threads, size_t bytes, int reps) {
    n_threads = std::max(1, n_threads);
    bytes = std::max<size_t>(bytes, size_t(64) << 20) / 64 * 64;
    std::shared_ptr<void> mem = stackllama::kernels::alloc_weight_memory(bytes);
    uint8_t* buf = static_cast<uint8_t*>(mem.get());
    for (size_t i = 0; i < bytes; i += 4096) buf[i] = uint8_t(i >> 12);  // touch every page
    stackllama::ThreadPool pool(n_threads);
    const size_t part = bytes / size_t(n_threads) / 64 * 64;
    std::vector<uint64_t> sink(size_t(n_threads) * 8);  // one cache line per thread
    std::vector<double> gbs, cpu_gbs;
    for (int r = -1; r < std::max(1, reps); ++r) {
        const Stamp t0 = now();
        pool.run(n_threads, [&](int t) { sink[size_t(t) * 8] += read_all(buf + size_t(t) * part, part); });
        const Stamp t1 = now();
        if (r >= 0) {
            const double total = double(part) * n_threads;
            gbs.push_back(total / (t1.wall - t0.wall) / 1e9);
            cpu_gbs.push_back(total / ((t1.cpu - t0.cpu) / n_threads) / 1e9);
        }
    }
    volatile uint64_t keep = 0;
    for (uint64_t v : sink) keep = keep + v;
    std::sort(gbs.begin(), gbs.end());
    std::sort(cpu_gbs.begin(), cpu_gbs.end());
    return {gbs[gbs.size() / 2], gbs.back(), cpu_gbs[cpu_gbs.size() / 2]};
}

double read_bandwidth_gbs(int n_threads) { return read_bandwidth(n_threads).median_gbs; }

}  // namespace stackllama_bench
