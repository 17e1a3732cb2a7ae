#include "util/memory.hpp"

#include <sys/mman.h>

#include <algorithm>
#include <cstdlib>
#include <string>

#include "stackllama/error.hpp"

namespace stackllama {

std::shared_ptr<void> alloc_large(size_t bytes, const char* what) {
    const size_t huge = size_t(2) << 20;
    // Below a few huge pages the rounding would cost more than the pages save.
    const bool use_huge = bytes >= 4 * huge;
    const size_t align = use_huge ? huge : 64;
    const size_t size = std::max<size_t>(align, (bytes + align - 1) / align * align);
    void* p = nullptr;
    if (posix_memalign(&p, align, size) != 0 || !p) {
        throw Error(ErrorCode::out_of_memory,
                    "cannot allocate " + std::to_string(bytes >> 20) + " MiB for " + what);
    }
#ifdef MADV_HUGEPAGE
    if (use_huge) madvise(p, size, MADV_HUGEPAGE);  // advice only: without THP, ordinary pages
#endif
    return std::shared_ptr<void>(p, [](void* q) { std::free(q); });
}

}  // namespace stackllama
