// Command-line flags of the `stackllama` program, named as in llama.cpp.
#pragma once

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
    float temp = 0.0f;      // --temp T           (0 = greedy)
    bool raw = false;       // --raw              (no Question/Answer template)
    bool tokenize = false;  // --tokenize         (print the prompt's ids as JSON and exit)
    int threads = 0;        // -t, --threads N    (0 = all cores)
    int ctx_size = 0;       // -c, --ctx-size N   (0 = the model's max_position_embeddings)
    std::vector<LoraArg> loras;  // --lora DIR, --lora-scaled DIR SCALE (repeatable)
    bool lora_merge = false;     // --lora-merge: merge at load instead of applying at run time
    bool verbose = false;   // -v, --verbose
    bool help = false;      // -h, --help
};

// Throws std::invalid_argument with a message naming the flag.
Options parse_args(const std::vector<std::string>& args);
std::string usage(const std::string& program);

// The StackLLaMA prompt template.
std::string wrap_question(const std::string& question);

}  // namespace stackllama_cli
