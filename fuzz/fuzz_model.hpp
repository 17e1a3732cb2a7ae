// A tiny random LLaMA model for the fuzz targets that need one (adapters, KV sessions): written
// once per process into the scratch folder and loaded weights-only.
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "fuzz_support.hpp"
#include "io/safetensors_writer.hpp"
#include "stackllama/model.hpp"

namespace fuzz {

// hidden 16, 2 layers, 4 heads / 2 KV heads (head_dim 4), ffn 24, vocab 32.
constexpr int kHidden = 16, kLayers = 2, kHeads = 4, kKvHeads = 2, kHeadDim = 4, kFfn = 24,
              kVocab = 32;

inline std::shared_ptr<const stackllama::Model> tiny_model() {
    static const std::shared_ptr<const stackllama::Model> model = [] {
        const std::string dir = scratch_path("base-model");
        std::filesystem::create_directories(dir);
        const nlohmann::json config = {{"architectures", {"LlamaForCausalLM"}},
                                       {"hidden_size", kHidden},
                                       {"intermediate_size", kFfn},
                                       {"num_hidden_layers", kLayers},
                                       {"num_attention_heads", kHeads},
                                       {"num_key_value_heads", kKvHeads},
                                       {"vocab_size", kVocab},
                                       {"max_position_embeddings", 64},
                                       {"bos_token_id", 1},
                                       {"eos_token_id", 2}};
        write_file(dir + "/config.json", config.dump());
        static std::vector<std::vector<float>> store;  // the weights' bytes, never moved
        std::vector<stackllama::io::TensorToWrite> ts;
        auto add = [&](const std::string& name, std::vector<int64_t> shape) {
            size_t n = 1;
            for (int64_t d : shape) n *= size_t(d);
            std::vector<float> v(n);
            for (size_t i = 0; i < n; ++i)
                v[i] = float((i * 7919 + name.size() * 31) % 200) / 1000.0f - 0.1f;
            store.push_back(std::move(v));
            ts.push_back({name, stackllama::io::TensorDType::F32, shape, store.back().data()});
        };
        store.reserve(64);
        add("model.embed_tokens.weight", {kVocab, kHidden});
        for (int l = 0; l < kLayers; ++l) {
            const std::string p = "model.layers." + std::to_string(l) + ".";
            add(p + "input_layernorm.weight", {kHidden});
            add(p + "post_attention_layernorm.weight", {kHidden});
            add(p + "self_attn.q_proj.weight", {kHeads * kHeadDim, kHidden});
            add(p + "self_attn.k_proj.weight", {kKvHeads * kHeadDim, kHidden});
            add(p + "self_attn.v_proj.weight", {kKvHeads * kHeadDim, kHidden});
            add(p + "self_attn.o_proj.weight", {kHidden, kHeads * kHeadDim});
            add(p + "mlp.gate_proj.weight", {kFfn, kHidden});
            add(p + "mlp.up_proj.weight", {kFfn, kHidden});
            add(p + "mlp.down_proj.weight", {kHidden, kFfn});
        }
        add("model.norm.weight", {kHidden});
        add("lm_head.weight", {kVocab, kHidden});
        stackllama::io::write_safetensors(dir + "/model.safetensors", ts);
        stackllama::ModelParams p;
        p.load_tokenizer = false;
        p.n_threads = 1;
        return stackllama::Model::load(dir, p);
    }();
    return model;
}

}  // namespace fuzz
