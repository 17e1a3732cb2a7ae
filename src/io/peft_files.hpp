// The files of a PEFT adapter directory, as bytes and tensors (what they mean is src/adapter/).
#pragma once

#include <string>

#include "io/tensor_set.hpp"

namespace stackllama::io {

// A PEFT directory's adapter_model.safetensors or, when absent, adapter_model.bin (the data
// memory-mapped or decoded). Error(io) naming the directory when neither is there.
TensorSet open_adapter_weights(const std::string& dir);

}  // namespace stackllama::io
