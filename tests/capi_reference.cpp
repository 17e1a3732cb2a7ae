// CTest fixture step: what the C++ API computes for one prompt, which every other layer (C ABI,
// Python module, ctypes, Node) must reproduce exactly.
//
//   capi_reference MODEL_DIR FIXTURE_DIR OUT_DIR
//
// FIXTURE_DIR holds adapter/ and rm_adapter/ (tests/capi_fixture.py). Settings (the layer tests
// use the same): n_threads 2, max_new_tokens 32, the prompt in OUT/prompt.txt, adapter/ attached
// with scale 0.75 (and merged with the same scale). Files written:
//   <case>.tokens, <case>.text   generated ids (space-separated) and text, for case in
//                                {base, adapter, merged} (greedy) and sampled (do_sample,
//                                temperature 0.9, top_k 100, top_p 0.95, seed 42)
//   <case>.logits.f32            logits of every prompt token (fresh generator, one eval),
//                                float32 LE, for base, adapter, merged
//   base.logprobs.f32            the greedy base tokens' log-probabilities
//   reward.f32                   reward of prompt + base text with rm_adapter/ attached
//   best_of_n.txt                best_of_n(policy adapter 0.75, reward rm_adapter, the prompt,
//                                do_sample, temperature 0.9, seed 42, 3 sequences, 16 tokens):
//                                one line per answer, best first: "index reward0 token token ..."
//   prompt.txt, prompt.ids       the prompt and its ids (with BOS)
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "stackllama/stackllama.hpp"

namespace {

constexpr const char* kPrompt = "Question: How do I sort a dict?\n\nAnswer: ";
constexpr int kThreads = 2;
constexpr int kMaxNewTokens = 32;
constexpr float kAdapterScale = 0.75f;

void write(const std::string& path, const std::string& bytes) {
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    f.write(bytes.data(), std::streamsize(bytes.size()));
    if (!f) throw std::runtime_error("cannot write " + path);
}

template <class T>
std::string raw_bytes(const std::vector<T>& v) {
    return std::string(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
}

std::string ids_text(const std::vector<int32_t>& ids) {
    std::string s;
    for (size_t i = 0; i < ids.size(); ++i) s += (i ? " " : "") + std::to_string(ids[i]);
    return s + "\n";
}

stackllama::GenerationResult run_case(const std::string& out, const std::string& name,
                                      const std::shared_ptr<const stackllama::Model>& model,
                                      const std::shared_ptr<const stackllama::Adapter>& adapter,
                                      const stackllama::GenerationConfig& cfg, bool logits) {
    if (logits) {
        const std::vector<int32_t> ids = model->tokenizer().encode(kPrompt, true);
        stackllama::Generator gen(model);
        if (adapter) gen.attach(adapter, kAdapterScale);
        const stackllama::LogitsView lv = gen.eval(ids, true);
        write(out + "/" + name + ".logits.f32", std::string(reinterpret_cast<const char*>(lv.data),
                                                            lv.rows * lv.n_vocab * sizeof(float)));
    }
    stackllama::Generator gen(model);
    if (adapter) gen.attach(adapter, kAdapterScale);
    stackllama::GenerationResult r = gen.generate(std::string_view(kPrompt), cfg);
    write(out + "/" + name + ".tokens", ids_text(r.tokens));
    write(out + "/" + name + ".text", r.text);
    std::printf("%s: %zu tokens (%s)\n", name.c_str(), r.tokens.size(),
                stackllama::finish_reason_name(r.finish_reason));
    return r;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 4) {
        std::fprintf(stderr, "usage: %s MODEL_DIR FIXTURE_DIR OUT_DIR\n", argv[0]);
        return 2;
    }
    try {
        const std::string fixtures = argv[2], out = argv[3];
        std::filesystem::create_directories(out);
        stackllama::ModelParams mp;
        mp.n_threads = kThreads;
        auto model = stackllama::Model::load(argv[1], mp);
        auto adapter = stackllama::Adapter::load(model, fixtures + "/adapter");
        auto rm_adapter = stackllama::Adapter::load(model, fixtures + "/rm_adapter");
        write(out + "/prompt.txt", kPrompt);
        write(out + "/prompt.ids", ids_text(model->tokenizer().encode(kPrompt, true)));

        stackllama::GenerationConfig greedy;
        greedy.max_new_tokens = kMaxNewTokens;
        const auto base = run_case(out, "base", model, nullptr, greedy, true);
        write(out + "/base.logprobs.f32", raw_bytes(base.logprobs));
        const auto with_adapter = run_case(out, "adapter", model, adapter, greedy, true);
        auto merged = stackllama::merge_adapters(model, {{adapter, kAdapterScale}});
        run_case(out, "merged", merged, nullptr, greedy, true);

        stackllama::GenerationConfig sampled = greedy;
        sampled.do_sample = true;
        sampled.temperature = 0.9f;
        sampled.top_k = 100;
        sampled.top_p = 0.95f;
        sampled.seed = 42;
        run_case(out, "sampled", model, nullptr, sampled, false);

        {
            stackllama::Generator gen(model);
            gen.attach(rm_adapter, 1.0f);
            write(out + "/reward.f32", raw_bytes(gen.reward(kPrompt + base.text)));
        }
        {
            stackllama::Generator gen(model);
            stackllama::GenerationConfig cfg;
            cfg.do_sample = true;
            cfg.temperature = 0.9f;
            cfg.seed = 42;
            cfg.num_return_sequences = 3;
            cfg.max_new_tokens = 16;
            const auto answers = stackllama::best_of_n(gen, {{adapter, kAdapterScale}},
                                                       {{rm_adapter, 1.0f}}, kPrompt, cfg);
            std::string lines;
            for (const auto& a : answers) {
                char reward[64];
                std::snprintf(reward, sizeof reward, "%.9g", double(a.reward.at(0)));
                lines += std::to_string(a.index) + " " + reward + " " + ids_text(a.answer.tokens);
            }
            write(out + "/best_of_n.txt", lines);
        }
        if (base.tokens == with_adapter.tokens) {
            std::fprintf(stderr,
                         "capi_reference: the adapter does not change the greedy output; "
                         "the layer tests would not show that adapters work\n");
            return 1;
        }
        return 0;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "capi_reference: %s\n", e.what());
        return 1;
    }
}
