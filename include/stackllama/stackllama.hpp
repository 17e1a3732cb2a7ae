// stackllama: LLaMA-family models with PEFT LoRA adapters on CPUs.
//
//   #include <stackllama/stackllama.hpp>
//
//   auto model = stackllama::Model::load("path/to/hf-dir");        // mmap, stored dtype
//   stackllama::Generator gen(model);                             // owns a KV cache
//   stackllama::GenerationConfig cfg;
//   cfg.max_new_tokens = 64;                                      // greedy by default
//   auto result = gen.generate("Question: What is RoPE?\n\nAnswer: ", cfg,
//       [](std::string_view piece, int32_t) { fputs(std::string(piece).c_str(), stdout); return true; });
//
// Errors are thrown as stackllama::Error (see error.hpp).
#pragma once

#include "stackllama/adapter.hpp"
#include "stackllama/error.hpp"
#include "stackllama/generator.hpp"
#include "stackllama/model.hpp"
#include "stackllama/tokenizer.hpp"
#include "stackllama/version.hpp"
#include "stackllama/worker_pool.hpp"
