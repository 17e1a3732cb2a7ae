// A small fixed pool for data-parallel loops. The calling thread takes part in the work, so a
// pool of n threads starts n-1 workers.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace stackllama {

class ThreadPool {
public:
    explicit ThreadPool(int n_threads);
    ~ThreadPool();
    ThreadPool(const ThreadPool&) = delete;
    ThreadPool& operator=(const ThreadPool&) = delete;

    int size() const { return n_threads_; }

    // Runs fn(i) for i in [0, n_tasks) across the pool and returns when all are done. Not
    // reentrant: fn must not call run() on the same pool.
    void run(int n_tasks, const std::function<void(int)>& fn);

    // Splits [0, n) into contiguous ranges, at least `grain` long, one or a few per thread.
    void parallel_for(size_t n, size_t grain, const std::function<void(size_t, size_t)>& fn);

    // Physical cores this process may run on (hardware threads when the topology is unknown).
    static int default_threads();

private:
    void worker_loop();
    void work_on_current();

    int n_threads_;
    std::vector<std::thread> workers_;
    std::mutex mu_;
    std::condition_variable start_cv_;
    std::condition_variable done_cv_;
    const std::function<void(int)>* job_ = nullptr;
    int n_tasks_ = 0;
    int next_task_ = 0;
    int tasks_done_ = 0;
    unsigned generation_ = 0;
    bool stop_ = false;
};

}  // namespace stackllama
