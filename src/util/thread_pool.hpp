// A small fixed pool for data-parallel loops. The calling thread takes part in the work, so a
// pool of n threads starts n-1 workers.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace stackllama {

// Most threads a pool (or a Model's n_threads) may ask for: far above any core count, low enough
// that a mistaken value is an error rather than thousands of threads.
constexpr int kMaxThreads = 1024;

class ThreadPool {
public:
    // Error(out_of_memory) when the system cannot start the workers.
    explicit ThreadPool(int n_threads);
    ~ThreadPool();
    ThreadPool(const ThreadPool&) = delete;
    ThreadPool& operator=(const ThreadPool&) = delete;

    int size() const { return n_threads_; }

    // Runs fn(i) for i in [0, n_tasks) across the pool and returns when all are done. Threads
    // that share the pool (Generators given one WorkerPool) may call it at once: their jobs run
    // one after another. Not reentrant: fn must not call run() on the same pool.
    void run(int n_tasks, const std::function<void(int)>& fn);

    // Splits [0, n) into contiguous ranges, at least `grain` long, up to four per thread, which
    // the threads claim in turn: one that starts late or runs slower takes fewer.
    void parallel_for(size_t n, size_t grain, const std::function<void(size_t, size_t)>& fn);

    // Physical cores this process may run on (hardware threads when the topology is unknown).
    static int default_threads();

private:
    // How long an idle worker, or the caller waiting for the last task, keeps polling before it
    // sleeps: long enough to span the gaps between the operations of a decoded token.
    static constexpr std::chrono::microseconds kSpin{2000};

    void run_job(int n_tasks, const std::function<void(int)>& fn);
    void stop_workers();
    void worker_loop();
    void work_on(uint64_t gen);
    // Polls ready() (spinning, then yielding) for up to kSpin; false if it never held.
    bool spin_until(const std::function<bool()>& ready) const;

    int n_threads_;
    std::vector<std::thread> workers_;
    std::mutex job_mu_;  // held by the caller whose job runs: one job at a time
    std::mutex mu_;      // only for sleeping and waking
    std::condition_variable start_cv_;
    std::condition_variable done_cv_;
    static constexpr int kMaxTasks = 0xffff;  // tasks per job in state_; run() slices above

    // The current job, written by run() before the generation in state_ moves on.
    std::atomic<const std::function<void(int)>*> job_{nullptr};
    // generation << 32 | task count << 16 | next task to claim: one word, so that a claim checks
    // all three at once.
    std::atomic<uint64_t> state_{0};
    std::atomic<int> tasks_done_{0};
    std::atomic<int> sleepers_{0};
    std::atomic<bool> stop_{false};
};

}  // namespace stackllama
