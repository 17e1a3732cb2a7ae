// Writes safetensors files (the layout read by safetensors.hpp).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "io/tensor_set.hpp"

namespace stackllama::io {

struct TensorToWrite {
    std::string name;
    TensorDType dtype = TensorDType::F32;
    std::vector<int64_t> shape;
    const void* data = nullptr;  // dtype_size(dtype) · Π shape bytes
};

// Writes to `path.tmp` and renames over `path`, so a failure never leaves a half-written file
// under the final name. Error(io) naming the path on failure.
void write_safetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                       const std::map<std::string, std::string>& metadata = {{"format", "pt"}});

}  // namespace stackllama::io
