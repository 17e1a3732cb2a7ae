// XXH64 (Yann Collet's xxHash, 64-bit variant, seed 0): fast enough to check every tensor of a
// native file at load.
#pragma once

#include <cstddef>
#include <cstdint>

namespace stackllama {

uint64_t xxh64(const void* data, size_t size, uint64_t seed = 0);

}  // namespace stackllama
