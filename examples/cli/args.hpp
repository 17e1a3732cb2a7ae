// Command-line flags of the `stackllama` program, named as in llama.cpp.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace stackllama_cli {

struct LoraArg {
    std::string dir;
    float scale = 1.0f;
};

struct Options {
    std::string model;      // -m, --model DIR
    std::string prompt;     // -p, --prompt TEXT
    bool prompt_set = false;
    int n_predict = -1;     // -n, --n-predict N  (-1 = until EOS or the context is full)
    float temp = 0.0f;      // --temp T           (0 = greedy; > 0 samples)
    int top_k = 50;         // --top-k N          (0 = off; transformers' default 50)
    float top_p = 1.0f;     // --top-p P          (1 = off)
    float min_p = 0.0f;     // --min-p P          (0 = off)
    float repeat_penalty = 1.0f;  // --repeat-penalty F (1 = off)
    bool seed_set = false;  // --seed N           (unset: a random seed)
    uint64_t seed = 0;
    std::vector<std::string> stops;  // --stop STR (repeatable)
    bool ignore_eos = false;         // --ignore-eos
    int best_of = 1;                 // --best-of N
    std::vector<LoraArg> reward_loras;  // --reward-lora DIR (repeatable)
    std::string reward_model;           // --reward-model DIR
    bool raw = false;       // --raw              (no Question/Answer template)
    bool tokenize = false;  // --tokenize         (print the prompt's ids as JSON and exit)
    int threads = 0;        // -t, --threads N    (0 = all cores)
    std::string quantize;   // --quantize T       (q8, q4, f16, bf16, f32; empty = as stored)
    int ctx_size = 0;       // -c, --ctx-size N   (0 = the model's max_position_embeddings)
    std::vector<LoraArg> loras;  // --lora DIR, --lora-scaled DIR SCALE (repeatable)
    bool lora_merge = false;     // --lora-merge: merge at load instead of applying at run time
    bool no_bundled_lora = false;  // --no-bundled-lora: ignore a native file's kept adapters
    bool verbose = false;   // -v, --verbose
    bool help = false;      // -h, --help
};

// Throws std::invalid_argument with a message naming the flag.
Options parse_args(const std::vector<std::string>& args);
std::string usage(const std::string& program);

// The StackLLaMA prompt template.
std::string wrap_question(const std::string& question);

}  // namespace stackllama_cli
