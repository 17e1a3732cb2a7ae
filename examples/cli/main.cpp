// `stackllama`: answer a question with a LLaMA model, streaming the answer to stdout.
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "args.hpp"
#include "stackllama/stackllama.hpp"

namespace {

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
    auto model = stackllama::Model::load(o.model, mp);
    std::vector<stackllama::AdapterRef> adapters;
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
    cfg.temperature = o.temp;
    // -1: until EOS or the context is full.
    cfg.max_new_tokens = o.n_predict < 0 ? gen.n_ctx() : o.n_predict;
    if (prompt.size() > size_t(gen.n_ctx())) {
        throw stackllama::Error(stackllama::ErrorCode::out_of_range,
                                "the prompt is " + std::to_string(prompt.size()) +
                                    " tokens long but the context holds " +
                                    std::to_string(gen.n_ctx()));
    }

    const auto t0 = std::chrono::steady_clock::now();
    auto result = gen.generate(prompt, cfg, [](std::string_view piece, int32_t) {
        std::fwrite(piece.data(), 1, piece.size(), stdout);
        std::fflush(stdout);
        return true;
    });
    const double s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (o.verbose) {
        std::fprintf(stderr, "\nstackllama: %zu prompt tokens, %zu new tokens in %.3f s (%s)\n",
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
