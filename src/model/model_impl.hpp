// What a loaded Model holds (internal).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "io/json_file.hpp"
#include "io/tensor_set.hpp"
#include "model/weights.hpp"
#include "stackllama/model.hpp"
#include "stackllama/tokenizer.hpp"

namespace stackllama {

// An adapter a native file carries unmerged: its config and PEFT-named tensors (the data in the
// file's map), made into an Adapter by bundled_adapters().
struct BundledAdapter {
    std::string name;
    float scale = 1.0f;
    io::Json config;
    io::TensorSet tensors;
};

struct Model::Impl {
    ModelConfig config;
    io::Json raw_config;   // config.json as read, for saving
    io::Json extra_files;  // {"tokenizer_config.json": {...}, ...} as read, for saving
    std::string path;
    int n_threads = 1;
    io::TensorSet tensors;
    LlamaWeights weights;
    std::optional<Tokenizer> tokenizer;
    std::vector<BundledAdapter> bundled;
};

}  // namespace stackllama
