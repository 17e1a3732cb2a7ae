#include "util/worker_pool_impl.hpp"

#include <string>

#include "stackllama/error.hpp"

namespace stackllama {

namespace {

int checked_threads(int n_threads) {
    if (n_threads < 0 || n_threads > kMaxThreads) {
        throw Error(ErrorCode::invalid_argument,
                    "WorkerPool n_threads must be 0 (all cores) or 1 to " +
                        std::to_string(kMaxThreads) + ", got " + std::to_string(n_threads));
    }
    return n_threads > 0 ? n_threads : ThreadPool::default_threads();
}

}  // namespace

WorkerPool::WorkerPool(int n_threads) : impl_(std::make_unique<Impl>(checked_threads(n_threads))) {}

WorkerPool::~WorkerPool() = default;

int WorkerPool::n_threads() const noexcept { return impl_->pool.size(); }

}  // namespace stackllama
