// Worker threads that Generators may share.
//
// By default every Generator owns a pool of its model's n_threads, so a host that runs several
// Generators at once (a server answering several requests) would run n_threads each and
// oversubscribe its cores. Give them one WorkerPool instead (GeneratorParams::pool): they then
// compute on its threads only. A job of one Generator (a matrix product, a layer's attention) uses
// every thread of the pool; jobs of Generators sharing it run one after another, so each still
// goes at full width when the others are between jobs. The thread that calls into a Generator
// works on its jobs too: a pool of n threads starts n - 1 workers.
//
// Thread-safety: any number of Generators on any threads may share one pool. It is kept alive by
// the Generators that use it.  (since 0.2)
#pragma once

#include <memory>

#include "stackllama/export.hpp"

namespace stackllama {

class STACKLLAMA_API WorkerPool {
public:
    // n_threads: 0 = the physical cores this process may run on; at most 1024.
    // Error(invalid_argument) for a negative or larger count.
    explicit WorkerPool(int n_threads = 0);
    ~WorkerPool();
    WorkerPool(const WorkerPool&) = delete;
    WorkerPool& operator=(const WorkerPool&) = delete;

    int n_threads() const noexcept;

    struct Impl;
    Impl& impl() const noexcept { return *impl_; }

private:
    std::unique_ptr<Impl> impl_;
};

}  // namespace stackllama
