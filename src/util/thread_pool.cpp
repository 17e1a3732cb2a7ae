#include "util/thread_pool.hpp"

#include <sched.h>

#include <algorithm>
#include <fstream>
#include <set>
#include <string>
#include <utility>

namespace stackllama {

namespace {

// Physical cores among the CPUs this process may run on: distinct (package, core) pairs from
// sysfs. Two hardware threads of one core share its vector units, so a second thread per core
// adds contention, not arithmetic, to these kernels. 0 when the topology cannot be read.
int physical_cores() {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof set, &set) != 0) return 0;
    std::set<std::pair<long, long>> cores;
    for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
        if (!CPU_ISSET(cpu, &set)) continue;
        const std::string dir = "/sys/devices/system/cpu/cpu" + std::to_string(cpu) + "/topology/";
        long package = -1, core = -1;
        std::ifstream(dir + "physical_package_id") >> package;
        std::ifstream(dir + "core_id") >> core;
        if (package < 0 || core < 0) return 0;
        cores.insert({package, core});
    }
    return static_cast<int>(cores.size());
}

}  // namespace

int ThreadPool::default_threads() {
    static const int n = [] {
        const int cores = physical_cores();
        if (cores > 0) return cores;
        const unsigned logical = std::thread::hardware_concurrency();
        return logical == 0 ? 1 : static_cast<int>(logical);
    }();
    return n;
}

ThreadPool::ThreadPool(int n_threads) : n_threads_(std::max(1, n_threads)) {
    for (int i = 1; i < n_threads_; ++i) workers_.emplace_back([this] { worker_loop(); });
}

ThreadPool::~ThreadPool() {
    {
        std::lock_guard<std::mutex> lock(mu_);
        stop_ = true;
    }
    start_cv_.notify_all();
    for (auto& t : workers_) t.join();
}

void ThreadPool::work_on_current() {
    // Tasks are claimed one by one under the lock; they are coarse (a range of rows), so the lock
    // is not contended.
    std::unique_lock<std::mutex> lock(mu_);
    while (job_ && next_task_ < n_tasks_) {
        int task = next_task_++;
        const auto* job = job_;
        lock.unlock();
        (*job)(task);
        lock.lock();
        if (++tasks_done_ == n_tasks_) done_cv_.notify_all();
    }
}

void ThreadPool::worker_loop() {
    unsigned seen = 0;
    for (;;) {
        {
            std::unique_lock<std::mutex> lock(mu_);
            start_cv_.wait(lock, [&] { return stop_ || generation_ != seen; });
            if (stop_) return;
            seen = generation_;
        }
        work_on_current();
    }
}

void ThreadPool::run(int n_tasks, const std::function<void(int)>& fn) {
    if (n_tasks <= 0) return;
    if (n_threads_ == 1 || n_tasks == 1) {
        for (int i = 0; i < n_tasks; ++i) fn(i);
        return;
    }
    {
        std::lock_guard<std::mutex> lock(mu_);
        job_ = &fn;
        n_tasks_ = n_tasks;
        next_task_ = 0;
        tasks_done_ = 0;
        ++generation_;
    }
    start_cv_.notify_all();
    work_on_current();
    std::unique_lock<std::mutex> lock(mu_);
    done_cv_.wait(lock, [&] { return tasks_done_ == n_tasks_; });
    job_ = nullptr;
}

void ThreadPool::parallel_for(size_t n, size_t grain,
                              const std::function<void(size_t, size_t)>& fn) {
    if (n == 0) return;
    grain = std::max<size_t>(grain, 1);
    size_t max_tasks = (n + grain - 1) / grain;
    size_t n_tasks = std::min<size_t>(max_tasks, static_cast<size_t>(n_threads_));
    if (n_tasks <= 1) {
        fn(0, n);
        return;
    }
    size_t chunk = (n + n_tasks - 1) / n_tasks;
    run(static_cast<int>(n_tasks), [&](int t) {
        size_t begin = static_cast<size_t>(t) * chunk;
        size_t end = std::min(n, begin + chunk);
        if (begin < end) fn(begin, end);
    });
}

}  // namespace stackllama
