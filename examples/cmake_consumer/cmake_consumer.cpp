// Built against the installed package with find_package(stackllama); prints the version and a
// greedy answer of 32 tokens from the model given on the command line.
#include <cstdio>
#include <stackllama/stackllama.hpp>

int main(int argc, char** argv) {
    if (argc != 2) {
        std::fprintf(stderr, "usage: %s MODEL\n", argv[0]);
        return 2;
    }
    std::fprintf(stderr, "stackllama %s (header %s)\n", stackllama::version(),
                 STACKLLAMA_VERSION_STRING);
    try {
        stackllama::ModelParams mp;
        mp.n_threads = 2;
        auto model = stackllama::Model::load(argv[1], mp);
        stackllama::Generator gen(model);
        stackllama::GenerationConfig cfg;
        cfg.max_new_tokens = 32;
        auto r = gen.generate("Question: How do I sort a dict?\n\nAnswer: ", cfg);
        std::fwrite(r.text.data(), 1, r.text.size(), stdout);
        return 0;
    } catch (const stackllama::Error& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 1;
    }
}
