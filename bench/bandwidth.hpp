// Memory read bandwidth, measured in the same run as a benchmark so that every decode figure can
// be printed beside the bandwidth the machine had at that moment (it drifts: on the reference
// machine 31-34 GB/s most of the time, 50-58 GB/s for minutes at a time).
#pragma once

#include <cstddef>

namespace stackllama_bench {

struct Bandwidth {
    double median_gbs = 0;  // GB/s = 1e9 bytes per second, wall clock
    double best_gbs = 0;
    // Bytes over the CPU time the threads got (process CPU time / threads), median: what the
    // machine gives when other processes compete for the cores.
    double cpu_gbs = 0;
};

// Seconds of wall clock and of this process's CPU time (all threads).
struct Stamp {
    double wall, cpu;
};
Stamp now();

// n_threads threads each read their own contiguous part of one buffer of `bytes` (far larger than
// the last-level cache; 2 MiB-aligned and advised for transparent huge pages, as quantized weights
// are) as four sequential streams (one stream per thread reads ~20 % slower on Zen 2), `reps`
// times after one warm-up pass. The buffer is allocated and filled once per call.
Bandwidth read_bandwidth(int n_threads, size_t bytes = size_t(512) << 20, int reps = 5);

// read_bandwidth(n_threads).median_gbs.
double read_bandwidth_gbs(int n_threads);

}  // namespace stackllama_bench
