// Best-of-n throughput: n sampled answers decoded together (generate_batch: one forward pass per
// step over n rows, the weights read once for all) against the same n answers generated one
// after another (generate, seeds seed .. seed + n - 1). Both produce the same tokens; the bench
// checks that, then prints tokens/s of each (medians over interleaved repetitions) and the ratio.
//
//   best_of_bench MODEL_DIR [-b N] [-n NEW_TOKENS] [-p PROMPT_TOKENS] [-t THREADS] [-r REPS]
//                 [--lora DIR]
//
// A 1B-shaped model (TinyLlama: hidden 2048, 22 layers, 32 heads, 4 KV heads, ffn 5632, vocab
// 32000) with random bf16 weights, outside the repository:
//   tools/make_llama_fixture.py /tmp/tinyllama-bf16 --hidden 2048 --layers 22 --heads 32
//       --kv-heads 4 --ffn 5632 --vocab 32000 --dtype bf16 --max-pos 2048   (one command line)
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "stackllama/stackllama.hpp"

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
    return std::chrono::duration<double>(Clock::now() - t0).count();
}

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 2) {
        std::fprintf(stderr,
                     "usage: %s MODEL_DIR [-b N] [-n NEW] [-p PROMPT] [-t THREADS] [-r REPS] "
                     "[--lora DIR]\n",
                     argv[0]);
        return 2;
    }
    const std::string model_dir = argv[1];
    int n_seq = 4, n_new = 32, n_prompt = 16, threads = 0, reps = 3;
    std::string lora;
    for (int i = 2; i + 1 < argc; i += 2) {
        const std::string a = argv[i];
        if (a == "-b") n_seq = std::atoi(argv[i + 1]);
        else if (a == "-n") n_new = std::atoi(argv[i + 1]);
        else if (a == "-p") n_prompt = std::atoi(argv[i + 1]);
        else if (a == "-t") threads = std::atoi(argv[i + 1]);
        else if (a == "-r") reps = std::atoi(argv[i + 1]);
        else if (a == "--lora") lora = argv[i + 1];
        else {
            std::fprintf(stderr, "unknown argument %s\n", a.c_str());
            return 2;
        }
    }
    try {
        stackllama::ModelParams mp;
        mp.n_threads = threads;
        mp.load_tokenizer = false;
        auto model = stackllama::Model::load(model_dir, mp);
        const int vocab = model->config().vocab_size;
        stackllama::GeneratorParams gp;
        gp.n_ctx = std::min(model->config().max_position_embeddings, n_prompt + n_new + 8);
        stackllama::Generator gen(model, gp);
        if (!lora.empty()) gen.attach(stackllama::Adapter::load(model, lora));

        std::vector<int32_t> prompt(size_t(n_prompt), 1);
        for (int i = 1; i < n_prompt; ++i) prompt[size_t(i)] = 1 + (i * 7919) % (vocab - 1);
        stackllama::GenerationConfig cfg;  // StackLLaMA's demo settings, without EOS
        cfg.do_sample = true;
        cfg.temperature = 0.9f;
        cfg.top_k = 100;
        cfg.top_p = 0.95f;
        cfg.seed = 42;
        cfg.max_new_tokens = n_new;
        cfg.use_model_eos = false;

        const auto batched = [&](std::vector<std::vector<int32_t>>* tokens) {
            stackllama::GenerationConfig c = cfg;
            c.num_return_sequences = n_seq;
            const auto t0 = Clock::now();
            auto rs = gen.generate_batch({prompt}, c);
            const double s = seconds_since(t0);
            size_t n = 0;
            for (auto& r : rs) {
                n += r.tokens.size();
                if (tokens) tokens->push_back(r.tokens);
            }
            return double(n) / s;
        };
        const auto sequential = [&](std::vector<std::vector<int32_t>>* tokens) {
            const auto t0 = Clock::now();
            size_t n = 0;
            for (int j = 0; j < n_seq; ++j) {
                stackllama::GenerationConfig c = cfg;
                c.seed = *cfg.seed + uint64_t(j);
                gen.reset();
                auto r = gen.generate(prompt, c);
                n += r.tokens.size();
                if (tokens) tokens->push_back(r.tokens);
            }
            const double s = seconds_since(t0);
            gen.reset();
            return double(n) / s;
        };

        // Warm-up (page cache, pools) and the check that both ways give the same tokens.
        std::vector<std::vector<int32_t>> tb, ts;
        batched(&tb);
        sequential(&ts);
        const bool same = tb == ts;
        std::vector<double> b, s;
        for (int r = 0; r < reps; ++r) {
            s.push_back(sequential(nullptr));
            b.push_back(batched(nullptr));
        }
        std::printf("model %s: %s weights, %.3f GB read per step, %d threads\n",
                    model_dir.c_str(), stackllama::dtype_name(model->weight_dtype()),
                    double(model->weight_bytes()) / 1e9, model->n_threads());
        std::printf("best-of-%d, prompt %d tokens, %d new tokens each, %d reps (medians)\n", n_seq,
                    n_prompt, n_new, reps);
        std::printf("  %d sequential generate():   %8.2f tok/s\n", n_seq, median(s));
        std::printf("  one generate_batch() of %d: %8.2f tok/s\n", n_seq, median(b));
        std::printf("  speed-up: %.2fx; same tokens both ways: %s\n", median(b) / median(s),
                    same ? "yes" : "NO");
        return same ? 0 : 1;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "best_of_bench: %s\n", e.what());
        return 1;
    }
}
