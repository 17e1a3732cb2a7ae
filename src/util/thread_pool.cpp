#include "util/thread_pool.hpp"

#include <sched.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <set>
#include <string>
#include <system_error>
#include <utility>

#include "stackllama/error.hpp"

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
    try {
        for (int i = 1; i < n_threads_; ++i) workers_.emplace_back([this] { worker_loop(); });
    } catch (const std::system_error& e) {
        stop_workers();  // the destructor will not run: join the ones started
        throw Error(ErrorCode::out_of_memory, "could not start worker thread " +
                                                  std::to_string(workers_.size() + 1) + " of " +
                                                  std::to_string(n_threads_ - 1) + ": " + e.what());
    }
}

ThreadPool::~ThreadPool() { stop_workers(); }

void ThreadPool::stop_workers() {
    {
        std::lock_guard<std::mutex> lock(mu_);
        stop_.store(true);
    }
    start_cv_.notify_all();
    for (auto& t : workers_) t.join();
    workers_.clear();
}

bool ThreadPool::spin_until(const std::function<bool()>& ready) const {
    // Pause-spin first (a wake-up through the kernel costs ~8 µs here, as long as a whole
    // 2048-row matrix-vector product of TinyLlama), then yield, so that a pool sharing its cores
    // with other threads hands them the CPU; give up after kSpin.
    const auto start = std::chrono::steady_clock::now();
    for (unsigned i = 0;; ++i) {
        if (ready()) return true;
        if (i < 1024) {
#if defined(__x86_64__) || defined(__i386__)
            __builtin_ia32_pause();
#endif
            continue;
        }
        if ((i & 63) == 0 && std::chrono::steady_clock::now() - start > kSpin) return false;
        std::this_thread::yield();
    }
}

void ThreadPool::work_on(uint64_t gen) {
    // A task is claimed by advancing the state (generation, task count, next task) of the job
    // this thread saw. The count travels in the same word as the generation, so a late worker
    // never claims a task of a job that has finished or judges one by the next job's count: its
    // exchange fails once the state has moved on. While a claimed task runs its job cannot
    // finish, so job_ stays valid.
    uint64_t s = state_.load(std::memory_order_acquire);
    for (;;) {
        const uint64_t next = s & 0xffffu, n = (s >> 16) & 0xffffu;
        if ((s >> 32) != gen || next >= n) return;
        if (!state_.compare_exchange_weak(s, s + 1, std::memory_order_acq_rel)) continue;
        (*job_.load(std::memory_order_acquire))(static_cast<int>(next));
        if (tasks_done_.fetch_add(1, std::memory_order_acq_rel) + 1 == static_cast<int>(n)) {
            std::lock_guard<std::mutex> lock(mu_);  // pairs with run()'s wait: no lost wake-up
            done_cv_.notify_all();
        }
        s = state_.load(std::memory_order_acquire);
    }
}

void ThreadPool::worker_loop() {
    uint64_t seen = 0;
    for (;;) {
        auto fresh = [&] { return stop_.load() || (state_.load() >> 32) != seen; };
        if (!spin_until(fresh)) {
            std::unique_lock<std::mutex> lock(mu_);
            sleepers_.fetch_add(1);
            start_cv_.wait(lock, fresh);
            sleepers_.fetch_sub(1);
        }
        if (stop_.load()) return;
        seen = state_.load(std::memory_order_acquire) >> 32;
        work_on(seen);
    }
}

void ThreadPool::run(int n_tasks, const std::function<void(int)>& fn) {
    if (n_tasks <= 0) return;
    // Callers sharing the pool take turns, so a shared pool of n computes on n threads in all.
    std::lock_guard<std::mutex> turn(job_mu_);
    if (n_threads_ == 1 || n_tasks == 1) {
        for (int i = 0; i < n_tasks; ++i) fn(i);
        return;
    }
    if (n_tasks <= kMaxTasks) {
        run_job(n_tasks, fn);
        return;
    }
    // The state word counts tasks in 16 bits: run in slices.
    for (int first = 0; first < n_tasks; first += kMaxTasks) {
        run_job(std::min(kMaxTasks, n_tasks - first), [&](int i) { fn(first + i); });
    }
}

void ThreadPool::run_job(int n_tasks, const std::function<void(int)>& fn) {
    job_.store(&fn, std::memory_order_release);
    tasks_done_.store(0);
    // Publishes the job: a worker that sees the new generation sees job_ (release/acquire).
    const uint64_t gen = (state_.load() >> 32) + 1;
    state_.store(gen << 32 | static_cast<uint64_t>(n_tasks) << 16);
    if (sleepers_.load() > 0) {
        std::lock_guard<std::mutex> lock(mu_);
        start_cv_.notify_all();
    }
    work_on(gen);
    auto done = [&] { return tasks_done_.load(std::memory_order_acquire) == n_tasks; };
    if (!spin_until(done)) {
        std::unique_lock<std::mutex> lock(mu_);
        done_cv_.wait(lock, done);
    }
}

void ThreadPool::parallel_for(size_t n, size_t grain,
                              const std::function<void(size_t, size_t)>& fn) {
    if (n == 0) return;
    grain = std::max<size_t>(grain, 1);
    size_t max_tasks = (n + grain - 1) / grain;
    // Four ranges per thread: 1.1B decode moves 2-3 points more of the read bandwidth than with
    // one range per thread (bench/stackllama_bench, side by side).
    size_t n_tasks = std::min<size_t>(max_tasks, static_cast<size_t>(n_threads_) * 4);
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
