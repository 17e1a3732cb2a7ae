// Decode and prefill speed of a model, without and with LoRA adapters attached (unmerged), runs
// interleaved so that both see the same machine state. Prints medians and the overhead.
//
//   decode_bench MODEL_DIR [--lora DIR]... [-p PROMPT_TOKENS] [-n NEW_TOKENS] [-t THREADS]
//                [-r REPS]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "bandwidth.hpp"
#include "stackllama/stackllama.hpp"

namespace {

using Clock = std::chrono::steady_clock;

struct Run {
    double prefill_tps;
    double decode_tps;
};

Run timed_run(stackllama::Generator& gen, const std::vector<int32_t>& prompt, int n_new,
              int vocab) {
    gen.reset();
    const auto t0 = Clock::now();
    auto lv = gen.eval(prompt);
    const auto t1 = Clock::now();
    int32_t tok = 0;
    for (int i = 0; i < n_new; ++i) {
        // Greedy on the logits, as generation does; the ids stay in range.
        const float* row = lv.row(0);
        tok = int32_t(std::max_element(row, row + vocab) - row);
        lv = gen.eval({tok});
    }
    const auto t2 = Clock::now();
    return {prompt.size() / std::chrono::duration<double>(t1 - t0).count(),
            n_new / std::chrono::duration<double>(t2 - t1).count()};
}

double median(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: %s MODEL_DIR [--lora DIR]... [-p N] [-n N] [-t N] [-r N]\n",
                     argv[0]);
        return 2;
    }
    std::string model_dir = argv[1];
    std::vector<std::string> loras;
    int n_prompt = 128, n_new = 64, threads = 0, reps = 3;
    for (int i = 2; i + 1 < argc; i += 2) {
        std::string a = argv[i];
        if (a == "--lora") loras.push_back(argv[i + 1]);
        else if (a == "-p") n_prompt = std::atoi(argv[i + 1]);
        else if (a == "-n") n_new = std::atoi(argv[i + 1]);
        else if (a == "-t") threads = std::atoi(argv[i + 1]);
        else if (a == "-r") reps = std::atoi(argv[i + 1]);
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
        gp.n_ctx = std::min(model->config().max_position_embeddings, n_prompt + n_new + 1);
        stackllama::Generator base(model, gp), adapted(model, gp);
        for (const auto& d : loras) adapted.attach(stackllama::Adapter::load(model, d));

        std::vector<int32_t> prompt(static_cast<size_t>(n_prompt), 0);
        for (int i = 0; i < n_prompt; ++i) prompt[size_t(i)] = 1 + (i * 7919) % (vocab - 1);

        timed_run(base, prompt, 4, vocab);  // warm the page cache and the pools
        if (!loras.empty()) timed_run(adapted, prompt, 4, vocab);
        std::vector<double> bp, bd, ap, ad;
        for (int r = 0; r < reps; ++r) {
            Run b = timed_run(base, prompt, n_new, vocab);
            bp.push_back(b.prefill_tps);
            bd.push_back(b.decode_tps);
            if (!loras.empty()) {
                Run a = timed_run(adapted, prompt, n_new, vocab);
                ap.push_back(a.prefill_tps);
                ad.push_back(a.decode_tps);
            }
        }
        const double gbs = stackllama_bench::read_bandwidth_gbs(model->n_threads());
        const double weight_gb = double(model->weight_bytes()) / 1e9;
        std::printf("model %s: %s weights, %.3f GB read per token, %d threads\n",
                    model_dir.c_str(), stackllama::dtype_name(model->weight_dtype()), weight_gb,
                    model->n_threads());
        std::printf("memory read bandwidth (same run): %.1f GB/s -> decode ceiling %.1f tok/s\n",
                    gbs, gbs / weight_gb);
        std::printf("%-14s %14s %14s %16s\n", "", "prefill tok/s", "decode tok/s",
                    "weights GB/s");
        std::printf("%-14s %14.1f %14.2f %16.1f\n", "base", median(bp), median(bd),
                    median(bd) * weight_gb);
        if (!loras.empty()) {
            std::printf("%-14s %14.1f %14.2f %16.1f\n", "with adapters", median(ap), median(ad),
                        median(ad) * weight_gb);
            std::printf("unmerged adapter overhead per decoded token: %.1f %%\n",
                        100.0 * (median(bd) / median(ad) - 1.0));
        }
    } catch (const std::exception& e) {
        std::fprintf(stderr, "decode_bench: %s\n", e.what());
        return 1;
    }
    return 0;
}
