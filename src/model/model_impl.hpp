// What a loaded Model holds (internal).
#pragma once

#include <optional>
#include <string>

#include "io/tensor_set.hpp"
#include "model/weights.hpp"
#include "stackllama/model.hpp"
#include "stackllama/tokenizer.hpp"

namespace stackllama {

struct Model::Impl {
    ModelConfig config;
    std::string path;
    int n_threads = 1;
    io::TensorSet tensors;
    LlamaWeights weights;
    std::optional<Tokenizer> tokenizer;
};

}  // namespace stackllama
