// What a WorkerPool holds (internal): the ThreadPool the Generators given it run their jobs on.
#pragma once

#include "stackllama/worker_pool.hpp"
#include "util/thread_pool.hpp"

namespace stackllama {

struct WorkerPool::Impl {
    explicit Impl(int n_threads) : pool(n_threads) {}
    ThreadPool pool;
};

}  // namespace stackllama
