#include "random_model.hpp"

#include <algorithm>
#include <cstring>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "kernels/quant.hpp"
#include "model/convert.hpp"
#include "model/model_impl.hpp"
#include "util/thread_pool.hpp"

namespace stackllama_bench {

using namespace stackllama;
using kernels::WeightType;
using json = nlohmann::ordered_json;

const Shape kShapes[2] = {
    {"1b", "llama 1B (TinyLlama, random)", 2048, 22, 32, 4, 5632, 32000, 1e-5f},
    {"7b", "llama 7B (LLaMA-1, random)", 4096, 32, 32, 32, 11008, 32000, 1e-6f},
};

const Shape& shape_by_name(const std::string& key) {
    for (const Shape& sh : kShapes)
        if (key == sh.key) return sh;
    throw std::invalid_argument("unknown shape " + key + " (1b or 7b)");
}

Rng::Rng(uint64_t seed, uint64_t stream) {
    uint64_t z = seed * 0x9E3779B97F4A7C15ull + stream + 0x632BE59BD9B4E019ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    s = (z ^ (z >> 31)) | 1;
}

uint64_t Rng::next() {
    s ^= s >> 12;
    s ^= s << 25;
    s ^= s >> 27;
    return s * 0x2545F4914F6CDD1Dull;
}

float Rng::normalish(float sd) {
    const uint64_t u = next();
    const double sum = double(u & 0xffff) + double((u >> 16) & 0xffff) +
                       double((u >> 32) & 0xffff) + double(u >> 48);
    constexpr double kMean = 4 * 65535.0 / 2, kSd = 37837.2;  // sqrt(4 (65536² - 1) / 12)
    return float((sum - kMean) * (sd / kSd));
}

ModelConfig shape_config(const Shape& sh) {
    ModelConfig c;
    c.architecture = "LlamaForCausalLM";
    c.hidden_size = sh.hidden;
    c.intermediate_size = sh.ffn;
    c.num_hidden_layers = sh.layers;
    c.num_attention_heads = sh.heads;
    c.num_key_value_heads = sh.kv_heads;
    c.head_dim = sh.hidden / sh.heads;
    c.rms_norm_eps = sh.rms_norm_eps;
    c.rope_theta = 10000.0f;
    c.vocab_size = sh.vocab;
    c.max_position_embeddings = 2048;
    c.tie_word_embeddings = false;
    c.bos_token_id = 1;
    c.eos_token_ids = {2};
    c.name_or_path = std::string("random-") + sh.key;
    return c;
}

// The weights of a config with every matrix of type t, shapes set and no memory yet.
LlamaWeights shaped_weights(const ModelConfig& c, WeightType t) {
    const size_t hidden = size_t(c.hidden_size), ffn = size_t(c.intermediate_size);
    const size_t q_dim = size_t(c.num_attention_heads) * size_t(c.head_dim);
    const size_t kv_dim = size_t(c.num_key_value_heads) * size_t(c.head_dim);
    LlamaWeights w;
    w.embed = {t, nullptr, size_t(c.vocab_size), hidden};
    w.layers.resize(size_t(c.num_hidden_layers));
    for (LayerWeights& L : w.layers) {
        L.attn_norm.assign(hidden, 1.0f);
        L.ffn_norm.assign(hidden, 1.0f);
        L.wq = {t, nullptr, q_dim, hidden};
        L.wk = {t, nullptr, kv_dim, hidden};
        L.wv = {t, nullptr, kv_dim, hidden};
        L.wo = {t, nullptr, hidden, q_dim};
        L.w_gate = {t, nullptr, ffn, hidden};
        L.w_up = {t, nullptr, ffn, hidden};
        L.w_down = {t, nullptr, hidden, ffn};
    }
    w.final_norm.assign(hidden, 1.0f);
    w.lm_head = {t, nullptr, size_t(c.vocab_size), hidden};
    w.dtype = static_cast<DType>(t);
    return w;
}

namespace {
// --- --------------------------------------------------------------------




// config.json as a checkpoint of this shape would have it (sessions hash it; saving copies it).
json shape_raw_config(const ModelConfig& c) {
    return json{{"architectures", {c.architecture}},
                {"model_type", "llama"},
                {"hidden_size", c.hidden_size},
                {"intermediate_size", c.intermediate_size},
                {"num_hidden_layers", c.num_hidden_layers},
                {"num_attention_heads", c.num_attention_heads},
                {"num_key_value_heads", c.num_key_value_heads},
                {"rms_norm_eps", c.rms_norm_eps},
                {"rope_theta", c.rope_theta},
                {"vocab_size", c.vocab_size},
                {"max_position_embeddings", c.max_position_embeddings},
                {"tie_word_embeddings", c.tie_word_embeddings},
                {"bos_token_id", c.bos_token_id},
                {"eos_token_id", c.eos_token_ids[0]},
                {"hidden_act", "silu"},
                {"_name_or_path", c.name_or_path}};
}



// Matrices go one after another in one allocation, 64-byte aligned: one 2 MiB-rounded allocation
// per matrix would add up to 2 MiB of resident huge page to each (~150 MB for TinyLlama).
size_t arena_offset(size_t bytes) { return (bytes + 63) / 64 * 64; }

size_t arena_bytes(const LlamaWeights& w) {
    size_t n = 0;
    for (const kernels::Matrix* m : all_matrices(w)) n += arena_offset(m->bytes());
    return n;
}

// Fills m (at dst) with random weights of standard deviation about 0.02, as LLaMA's init;
// deterministic for a seed, whatever the number of threads.
// q8/q4: random levels under a fixed f16 scale (0.02/64 and 0.02/4 give that deviation) are
// written as blocks directly rather than quantizing billions of floats: the speed of the kernels
// does not depend on the values, and building a 7B model takes seconds instead of minutes.
void fill_random(const kernels::Matrix& m, uint8_t* dst, uint64_t seed, ThreadPool& pool) {
    const size_t cols = m.cols;
    if (kernels::weight_type_quantized(m.type)) {
        const size_t nb = cols / kernels::kQuantBlock;
        const uint16_t d8 = kernels::f32_to_f16(0.02f / 64), d4 = kernels::f32_to_f16(0.02f / 4);
        // Eight rows share their panels: whole groups per task, so no two threads write one line.
        const size_t groups = (m.rows + kernels::kQuantRows - 1) / kernels::kQuantRows;
        pool.parallel_for(groups, 1, [&](size_t g0, size_t g1) {
            const size_t r1 = std::min(m.rows, g1 * kernels::kQuantRows);
            for (size_t r = g0 * kernels::kQuantRows; r < r1; ++r) {
                Rng rng(seed, r);
                for (size_t b = 0; b < nb; ++b) {
                    if (m.type == WeightType::q8) {
                        kernels::BlockQ8 blk;
                        blk.d = d8;
                        for (size_t i = 0; i < kernels::kQuantBlock; i += 8) {
                            const uint64_t u = rng.next();
                            std::memcpy(blk.q + i, &u, 8);
                        }
                        // The levels are symmetric, [-127, 127], as the quantizer makes them.
                        for (int8_t& q : blk.q) q = std::max<int8_t>(q, -127);
                        kernels::store_block_q8(m, r, b, blk);
                    } else {
                        kernels::BlockQ4 blk;
                        blk.d = d4;
                        const uint64_t u0 = rng.next(), u1 = rng.next();
                        std::memcpy(blk.q, &u0, 8);
                        std::memcpy(blk.q + 8, &u1, 8);
                        kernels::store_block_q4(m, r, b, blk);
                    }
                }
            }
        });
        return;
    }
    // f32/f16/bf16: values from a table of 65536 draws, indexed by 16 random bits, so that one
    // draw gives four weights and f16 rounding (slow in software) runs 65536 times, not billions.
    std::vector<uint32_t> table(65536);  // bit patterns in m.type
    Rng trng(seed, ~uint64_t(0));
    for (uint32_t& v : table) {
        const float f = trng.normalish(0.02f);
        if (m.type == WeightType::f32) std::memcpy(&v, &f, 4);
        else if (m.type == WeightType::f16) v = kernels::f32_to_f16(f);
        else v = kernels::f32_to_bf16(f);
    }
    const size_t es = kernels::weight_type_size(m.type);
    pool.parallel_for(m.rows, 1, [&](size_t r0, size_t r1) {
        for (size_t r = r0; r < r1; ++r) {
            Rng rng(seed, r);
            uint8_t* row = dst + r * cols * es;
            uint64_t u = 0;
            for (size_t i = 0; i < cols; ++i) {
                if (i % 4 == 0) u = rng.next();
                const uint32_t v = table[(u >> (16 * (i % 4))) & 0xffff];
                if (es == 4) {
                    std::memcpy(row + 4 * i, &v, 4);
                } else {
                    const uint16_t h = uint16_t(v);
                    std::memcpy(row + 2 * i, &h, 2);
                }
            }
        }
    });
}

}  // namespace

std::shared_ptr<const Model> build_random_model(const Shape& sh, WeightType t, int threads) {
    auto impl = std::make_unique<Model::Impl>();
    impl->config = shape_config(sh);
    impl->raw_config = shape_raw_config(impl->config);
    impl->extra_files = json::object();
    impl->path = std::string("(random ") + sh.key + ")";
    impl->n_threads = threads;
    LlamaWeights& w = impl->weights;
    w = shaped_weights(impl->config, t);
    std::shared_ptr<void> arena = kernels::alloc_weight_memory(arena_bytes(w));
    uint8_t* p = static_cast<uint8_t*>(arena.get());
    ThreadPool pool(threads);
    uint64_t seed = 1;
    for (kernels::Matrix* m : all_matrices(w)) {
        if (m->rows == 0) continue;  // no score head: its data stays null
        m->data = p;
        fill_random(*m, p, seed++, pool);
        p += arena_offset(m->bytes());
    }
    w.owners.push_back(std::move(arena));
    w.matrix_bytes = weight_bytes_per_token(w);
    return std::make_shared<const Model>(std::move(impl));
}

}  // namespace stackllama_bench
