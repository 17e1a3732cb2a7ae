// The thread pool (src/util/thread_pool.hpp): every task of every job runs exactly once, whether
// the workers are spinning between jobs or asleep, with more threads than cores, and with several
// pools driven from several threads at once. Run under ThreadSanitizer by the tsan preset.
#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <mutex>
#include <thread>
#include <vector>

#include "util/thread_pool.hpp"

using stackllama::ThreadPool;

namespace {

// Runs `jobs` jobs of 1..9 tasks on `pool`, each task a little work, and checks every task of
// every job ran once and no task of one job ran during another.
void check_jobs(ThreadPool& pool, int jobs) {
    std::vector<std::atomic<int>> hits(9);
    for (int j = 0; j < jobs; ++j) {
        const int n = 1 + j % 9;
        for (auto& h : hits) h.store(0);
        pool.run(n, [&](int i) {
            volatile double s = 0;
            for (int k = 0; k < 200 * (i + 1); ++k) s = s + k;
            hits[static_cast<size_t>(i)].fetch_add(1);
        });
        for (int i = 0; i < 9; ++i) REQUIRE(hits[static_cast<size_t>(i)].load() == (i < n ? 1 : 0));
    }
}

}  // namespace

TEST_CASE("thread pool: every task of every job runs once") {
    for (int threads : {1, 2, 3, 8}) {  // 8 is more threads than this machine's cores
        CAPTURE(threads);
        ThreadPool pool(threads);
        check_jobs(pool, 3000);
    }
}

TEST_CASE("thread pool: jobs after the workers have gone to sleep") {
    ThreadPool pool(3);
    for (int round = 0; round < 4; ++round) {
        check_jobs(pool, 20);
        // Longer than the pool's spin: the workers sleep and must be woken.
        std::this_thread::sleep_for(std::chrono::milliseconds(15));
    }
}

TEST_CASE("thread pool: parallel_for covers the range once") {
    ThreadPool pool(2);
    for (size_t n : {0, 1, 2, 5, 64, 1001}) {
        for (size_t grain : {1, 3, 100, 5000}) {
            CAPTURE(n);
            CAPTURE(grain);
            std::vector<std::atomic<int>> seen(n);
            for (auto& s : seen) s.store(0);
            pool.parallel_for(n, grain, [&](size_t a, size_t b) {
                REQUIRE(a < b);
                REQUIRE(b <= n);
                for (size_t i = a; i < b; ++i) seen[i].fetch_add(1);
            });
            for (size_t i = 0; i < n; ++i) CHECK(seen[i].load() == 1);
        }
    }
}

TEST_CASE("thread pool: several pools on several threads at once") {
    std::vector<std::thread> drivers;
    std::atomic<int> failures{0};
    for (int d = 0; d < 4; ++d) {
        drivers.emplace_back([&] {
            ThreadPool pool(2);
            std::atomic<long> sum{0};
            for (int j = 0; j < 500; ++j) {
                sum.store(0);
                pool.parallel_for(100, 1, [&](size_t a, size_t b) {
                    for (size_t i = a; i < b; ++i) sum.fetch_add(static_cast<long>(i));
                });
                if (sum.load() != 4950) failures.fetch_add(1);
            }
        });
    }
    for (auto& t : drivers) t.join();
    CHECK(failures.load() == 0);
}

TEST_CASE("thread pool: destroyed while its workers spin, and while they sleep") {
    for (int wait_ms : {0, 15}) {
        ThreadPool pool(4);
        check_jobs(pool, 10);
        std::this_thread::sleep_for(std::chrono::milliseconds(wait_ms));
    }  // the destructor must stop and join the workers either way
}

TEST_CASE("thread pool: a job of more tasks than one state word counts") {
    ThreadPool pool(2);
    const int n = 70000;  // above the 16-bit task count: run() slices it
    std::vector<std::atomic<int>> hits(n);
    for (auto& h : hits) h.store(0);
    pool.run(n, [&](int i) { hits[static_cast<size_t>(i)].fetch_add(1); });
    int wrong = 0;
    for (int i = 0; i < n; ++i) wrong += hits[static_cast<size_t>(i)].load() != 1;
    CHECK(wrong == 0);
}

TEST_CASE("thread pool: one pool driven from several threads at once takes their jobs in turn") {
    for (int threads : {1, 2, 3}) {
        CAPTURE(threads);
        ThreadPool pool(threads);
        std::atomic<int> overlaps{0}, failures{0};
        std::mutex mu;  // guards active_job and active_tasks
        int active_job = -1, active_tasks = 0;
        const auto enter = [&](int job) {
            std::lock_guard<std::mutex> lock(mu);
            if (active_tasks > 0 && active_job != job) overlaps.fetch_add(1);
            active_job = job;
            ++active_tasks;
        };
        const auto leave = [&] {
            std::lock_guard<std::mutex> lock(mu);
            --active_tasks;
        };
        std::vector<std::thread> drivers;
        for (int d = 0; d < 4; ++d) {
            drivers.emplace_back([&, d] {
                for (int j = 0; j < 300; ++j) {
                    const size_t n = 50 + size_t(d) * 7 + size_t(j % 13);
                    std::vector<std::atomic<int>> seen(n);
                    for (auto& s : seen) s.store(0);
                    // A job's tasks never overlap another caller's job.
                    const int job = d * 1000 + j;
                    pool.run(int(n), [&](int i) {
                        enter(job);
                        volatile double w = 0;
                        for (int k = 0; k < 300; ++k) w = w + k;
                        seen[size_t(i)].fetch_add(1);
                        leave();
                    });
                    for (auto& s : seen) failures.fetch_add(s.load() != 1);
                    pool.parallel_for(n, 3, [&](size_t a, size_t b) {
                        for (size_t i = a; i < b; ++i) seen[i].fetch_add(1);
                    });
                    for (auto& s : seen) failures.fetch_add(s.load() != 2);
                }
            });
        }
        for (auto& t : drivers) t.join();
        CHECK(failures.load() == 0);
        CHECK(overlaps.load() == 0);
    }
}
