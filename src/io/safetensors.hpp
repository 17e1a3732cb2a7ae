// The safetensors format: an 8-byte little-endian header length N, N bytes of JSON describing
// each tensor ({dtype, shape, data_offsets} relative to the data section), then the data.
#pragma once

#include <string>

#include "io/tensor_set.hpp"

namespace stackllama::io {

// Maps one .safetensors file and adds its tensors to `set`. Validates the header against the
// file: every offset inside the data section, byte counts matching dtype × shape, no overflow.
// Throws Error(format) naming the file and tensor at fault.
void read_safetensors(const std::string& path, TensorSet& set);

// A checkpoint directory: `model.safetensors`, or the shards listed by
// `model.safetensors.index.json`. Error(io) when neither exists or a shard is missing.
TensorSet open_safetensors_dir(const std::string& dir);

// Largest header accepted: real headers are a few MiB at most; a bigger length is corruption.
constexpr uint64_t kMaxSafetensorsHeader = 256ull << 20;

}  // namespace stackllama::io
