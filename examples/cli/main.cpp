// `stackllama`: answer a question with a LLaMA model, streaming the answer to stdout.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "args.hpp"
#include "stackllama/stackllama.hpp"

namespace {

// --best-of N: N answers sampled together with the policy (the -m model and its --lora
// adapters), ranked by the reward model (--reward-model, or the same weights with the
// --reward-lora adapters instead). The best answer goes to stdout; the ranking, with -v, to
// stderr.
int best_of(const stackllama_cli::Options& o, std::shared_ptr<const stackllama::Model> model,
            stackllama::Generator& gen, const std::vector<stackllama::AdapterRef>& policy,
            const std::string& text, stackllama::GenerationConfig cfg) {
    cfg.num_return_sequences = o.best_of;
    const auto t0 = std::chrono::steady_clock::now();
    std::vector<stackllama::ScoredAnswer> ranked;
    if (!o.reward_model.empty()) {
        stackllama::ModelParams mp;
        mp.n_threads = o.threads;
        mp.verbose = o.verbose;
        auto reward_model = stackllama::Model::load(o.reward_model, mp);
        stackllama::GeneratorParams gp;
        gp.n_ctx = std::min(gen.n_ctx(), reward_model->config().max_position_embeddings);
        stackllama::Generator rgen(reward_model, gp);
        for (const auto& l : o.reward_loras)
            rgen.attach(stackllama::Adapter::load(reward_model, l.dir), l.scale);
        ranked = stackllama::best_of_n(gen, rgen, text, cfg);
    } else {
        std::vector<stackllama::AdapterRef> reward;
        for (const auto& l : o.reward_loras)
            reward.push_back({stackllama::Adapter::load(model, l.dir), l.scale});
        ranked = stackllama::best_of_n(gen, policy, reward, text, cfg);
    }
    const double s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const std::string& best = ranked.at(0).answer.text;
    std::fwrite(best.data(), 1, best.size(), stdout);
    std::fputc('\n', stdout);
    std::fflush(stdout);
    if (o.verbose) {
        size_t tokens = 0;
        for (size_t i = 0; i < ranked.size(); ++i) {
            const auto& a = ranked[i];
            tokens += a.answer.tokens.size();
            std::string r;
            for (float v : a.reward) r += (r.empty() ? "" : ", ") + std::to_string(v);
            std::fprintf(stderr, "stackllama: #%zu: answer %zu (seed %llu), reward [%s], %zu tokens (%s)\n",
                         i + 1, a.index, static_cast<unsigned long long>(a.answer.seed), r.c_str(),
                         a.answer.tokens.size(),
                         stackllama::finish_reason_name(a.answer.finish_reason));
        }
        std::fprintf(stderr, "stackllama: best of %zu: %zu new tokens, generated and scored in %.3f s\n",
                     ranked.size(), tokens, s);
    }
    return 0;
}

int run(const stackllama_cli::Options& o) {
    const std::string text = o.raw ? o.prompt : stackllama_cli::wrap_question(o.prompt);

    if (o.tokenize) {
        auto tok = stackllama::Tokenizer::load(o.model);
        std::vector<int32_t> ids = tok.encode(text, true);
        std::string line = "[";
        for (size_t i = 0; i < ids.size(); ++i) line += (i ? ", " : "") + std::to_string(ids[i]);
        std::printf("%s]\n", line.c_str());
        return 0;
    }

    stackllama::ModelParams mp;
    mp.n_threads = o.threads;
    mp.verbose = o.verbose;
    if (!o.quantize.empty()) {
        stackllama::DType t;
        stackllama::parse_dtype_name(o.quantize, &t);
        mp.weight_type = t;
    }
    auto model = stackllama::Model::load(o.model, mp);
    std::vector<stackllama::AdapterRef> adapters;
    // A native file's adapters kept unmerged (stackllama-convert --keep-lora) apply first.
    if (!o.no_bundled_lora) {
        for (const auto& a : stackllama::bundled_adapters(model)) {
            if (o.verbose)
                std::fprintf(stderr, "stackllama: applying the file's adapter %s (scale %g)\n",
                             a.adapter->path().c_str(), double(a.scale));
            adapters.push_back(a);
        }
    }
    for (const auto& l : o.loras)
        adapters.push_back({stackllama::Adapter::load(model, l.dir), l.scale});
    if (o.lora_merge) {
        model = stackllama::merge_adapters(model, adapters);
        adapters.clear();
    }
    stackllama::GeneratorParams gp;
    gp.n_ctx = o.ctx_size;
    stackllama::Generator gen(model, gp);
    for (const auto& a : adapters) gen.attach(a.adapter, a.scale);

    std::vector<int32_t> prompt = model->tokenizer().encode(text, true);
    stackllama::GenerationConfig cfg;
    cfg.do_sample = o.temp > 0.0f;
    cfg.temperature = o.temp > 0.0f ? o.temp : 1.0f;
    cfg.top_k = o.top_k;
    cfg.top_p = o.top_p;
    cfg.min_p = o.min_p;
    cfg.repetition_penalty = o.repeat_penalty;
    if (o.seed_set) cfg.seed = o.seed;
    cfg.stop_strings = o.stops;
    if (o.ignore_eos) {
        cfg.use_model_eos = false;
        cfg.eos_token_ids.clear();
    }
    // -1: until EOS or the context is full.
    cfg.max_new_tokens = o.n_predict < 0 ? gen.n_ctx() : o.n_predict;
    if (prompt.size() > size_t(gen.n_ctx())) {
        throw stackllama::Error(stackllama::ErrorCode::out_of_range,
                                "the prompt is " + std::to_string(prompt.size()) +
                                    " tokens long but the context holds " +
                                    std::to_string(gen.n_ctx()));
    }

    if (!o.reward_loras.empty() || !o.reward_model.empty())
        return best_of(o, model, gen, adapters, text, cfg);

    const auto t0 = std::chrono::steady_clock::now();
    auto result = gen.generate(prompt, cfg, [](std::string_view piece, int32_t) {
        std::fwrite(piece.data(), 1, piece.size(), stdout);
        std::fflush(stdout);
        return true;
    });
    const double s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (o.verbose) {
        std::fprintf(stderr, "\nstackllama: %s\n", stackllama::system_info());
        std::fprintf(stderr, "stackllama: %zu prompt tokens, %zu new tokens in %.3f s (%s)\n",
                     prompt.size(), result.tokens.size(), s,
                     stackllama::finish_reason_name(result.finish_reason));
    }
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    std::vector<std::string> args(argv + 1, argv + argc);
    stackllama_cli::Options o;
    try {
        o = stackllama_cli::parse_args(args);
    } catch (const std::exception& e) {
        std::fprintf(stderr, "stackllama: %s\n", e.what());
        return 2;
    }
    if (o.help) {
        std::fputs(stackllama_cli::usage(argv[0]).c_str(), stdout);
        return 0;
    }
    try {
        return run(o);
    } catch (const stackllama::Error& e) {
        std::fprintf(stderr, "stackllama: error: %s\n", e.what());
        return 1;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "stackllama: error: %s\n", e.what());
        return 1;
    }
}
