// KV sessions: a Generator's state (tokens, KV cache, the pending token and last logits) saved to
// a zstd-compressed file and restored into another Generator of the same model and adapters.
//
// File: "SLLMSESS", u32 version, u32 0, u64 payload size, u64 XXH64 of the compressed payload,
// then one zstd frame holding: u64 meta size, meta JSON, logits [n_vocab] f32, then K and V for
// every layer and kv head, positions [0, n_past) × head_dim f32.
#include <zstd.h>

#include <cstdio>
#include <cstring>

#include "adapter/adapter_impl.hpp"
#include "generate/generator_impl.hpp"
#include "io/json_file.hpp"
#include "io/mmap_file.hpp"
#include "model/model_impl.hpp"
#include "stackllama/error.hpp"
#include "util/checksum.hpp"

namespace stackllama {

namespace {

constexpr char kMagic[8] = {'S', 'L', 'L', 'M', 'S', 'E', 'S', 'S'};
constexpr uint32_t kVersion = 1;
constexpr size_t kHeader = 32;

std::string hex(uint64_t v) {
    char b[17];
    std::snprintf(b, sizeof b, "%016llx", static_cast<unsigned long long>(v));
    return b;
}

// Identifies the model's weights without reading them all: the config, the storage and the
// bytes of the small tensors that differ between any two trained models.
std::string model_fingerprint(const Model& m) {
    const Model::Impl& mi = m.impl();
    uint64_t h = xxh64(mi.raw_config.dump().data(), mi.raw_config.dump().size());
    const LlamaWeights& w = mi.weights;
    h ^= xxh64(w.final_norm.data(), w.final_norm.size() * sizeof(float), 1);
    for (const auto& L : w.layers) h ^= xxh64(L.attn_norm.data(), L.attn_norm.size() * 4, h);
    const size_t row = w.embed.bytes() / std::max<size_t>(1, w.embed.rows);
    h ^= xxh64(w.embed.data, std::min(w.embed.bytes(), row * 4), 2);
    h ^= m.weight_bytes();
    return hex(h);
}

io::Json adapters_json(const std::vector<AdapterRef>& adapters) {
    io::Json out = io::Json::array();
    for (const AdapterRef& r : adapters) {
        const Adapter::Impl& a = r.adapter->impl();
        uint64_t h = 0;
        for (const LoraModule& lm : a.loras) {
            h = xxh64(lm.a.data(), lm.a.size() * 4, h);
            h = xxh64(lm.b.data(), lm.b.size() * 4, h);
        }
        for (const auto& [name, sm] : a.saved) h = xxh64(sm.data.data(), sm.data.size() * 4, h);
        out.push_back({{"path", a.path}, {"scale", r.scale}, {"fingerprint", hex(h)}});
    }
    return out;
}

void put_u64(std::string& s, uint64_t v) {
    for (int i = 0; i < 8; ++i) s.push_back(char((v >> (8 * i)) & 0xff));
}
uint64_t get_u64(const uint8_t* p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
    return v;
}

}  // namespace

void Generator::save_session(const std::string& path) const {
    const Impl& g = *impl_;
    const ModelConfig& c = g.model->config();
    const size_t n_past = g.tokens.size(), hd = size_t(c.head_dim);
    io::Json meta = {{"model", model_fingerprint(*g.model)},
                     {"adapters", adapters_json(g.adapters)},
                     {"tokens", g.tokens},
                     {"pending", g.pending ? io::Json(*g.pending) : io::Json()},
                     {"n_vocab", c.vocab_size},
                     {"has_logits", g.logits.size() >= size_t(c.vocab_size)}};
    const std::string meta_text = meta.dump();

    std::string raw;
    put_u64(raw, meta_text.size());
    raw += meta_text;
    if (meta["has_logits"].get<bool>())
        raw.append(reinterpret_cast<const char*>(g.logits.data()), size_t(c.vocab_size) * 4);
    for (const auto* cache : {&g.state.k_cache, &g.state.v_cache}) {
        for (int l = 0; l < c.num_hidden_layers; ++l)
            for (int h = 0; h < c.num_key_value_heads; ++h)
                raw.append(reinterpret_cast<const char*>(cache->data() + g.state.kv_offset(c, l, h)),
                           n_past * hd * sizeof(float));
    }

    std::string packed(ZSTD_compressBound(raw.size()), '\0');
    const size_t n = ZSTD_compress(packed.data(), packed.size(), raw.data(), raw.size(), 3);
    if (ZSTD_isError(n))
        throw Error(ErrorCode::internal, std::string("session compression failed: ") +
                                             ZSTD_getErrorName(n));
    packed.resize(n);
    std::string file(kMagic, 8);
    for (int i = 0; i < 4; ++i) file.push_back(char((kVersion >> (8 * i)) & 0xff));
    file.append(4, '\0');
    put_u64(file, raw.size());
    put_u64(file, xxh64(packed.data(), packed.size()));
    file += packed;

    const std::string tmp = path + ".tmp";
    FILE* f = std::fopen(tmp.c_str(), "wb");
    if (!f) throw Error(ErrorCode::io, "cannot write session " + path);
    const bool ok = std::fwrite(file.data(), 1, file.size(), f) == file.size();
    if (std::fclose(f) != 0 || !ok || std::rename(tmp.c_str(), path.c_str()) != 0) {
        std::remove(tmp.c_str());
        throw Error(ErrorCode::io, "cannot write session " + path);
    }
}

void Generator::load_session(const std::string& path) {
    Impl& g = *impl_;
    const ModelConfig& c = g.model->config();
    auto file = io::MappedFile::open(path);
    const uint8_t* p = file->data();
    const size_t size = file->size();
    auto bad = [&](const std::string& what) {
        throw Error(ErrorCode::format, "session " + path + ": " + what);
    };
    if (size < kHeader) bad("truncated (" + std::to_string(size) + " bytes)");
    if (std::memcmp(p, kMagic, 8) != 0) bad("wrong magic: not a stackllama session file");
    const uint32_t version = uint32_t(p[8]) | uint32_t(p[9]) << 8 | uint32_t(p[10]) << 16 |
                             uint32_t(p[11]) << 24;
    if (version != kVersion)
        throw Error(ErrorCode::unsupported, "session " + path + ": version " +
                                                std::to_string(version) + "; this build reads " +
                                                std::to_string(kVersion));
    const uint64_t raw_size = get_u64(p + 16);
    if (xxh64(p + kHeader, size - kHeader) != get_u64(p + 24))
        bad("checksum mismatch (the file is damaged or truncated)");
    // No session of this generator's model and context can be larger than this: refuse a file
    // claiming more before allocating anything.
    const uint64_t most = 2ull * uint64_t(c.num_hidden_layers) * uint64_t(c.num_key_value_heads) *
                              uint64_t(g.n_ctx) * uint64_t(c.head_dim) * 4 +
                          uint64_t(c.vocab_size) * 4 + uint64_t(g.n_ctx) * 16 + (1u << 20);
    if (raw_size > most)
        bad("payload of " + std::to_string(raw_size) + " bytes is larger than any session of "
            "this model and context (" + std::to_string(most) + ")");
    const unsigned long long frame = ZSTD_getFrameContentSize(p + kHeader, size - kHeader);
    if (frame != raw_size) bad("payload size does not match");
    std::string raw(raw_size, '\0');
    const size_t got = ZSTD_decompress(raw.data(), raw.size(), p + kHeader, size - kHeader);
    if (ZSTD_isError(got) || got != raw_size) bad("payload does not decompress");

    const uint8_t* r = reinterpret_cast<const uint8_t*>(raw.data());
    // raw_size < 8 first: raw_size - 8 would wrap around.
    if (raw_size < 8) bad("payload of " + std::to_string(raw_size) + " bytes has no metadata size");
    const uint64_t meta_size = get_u64(r);
    if (meta_size > raw_size - 8) bad("metadata lies outside the payload");
    io::Json meta = io::parse_json(std::string_view(raw.data() + 8, meta_size), path);
    if (!meta.is_object() || !meta.contains("model") || !meta["model"].is_string() ||
        !meta.contains("adapters") || !meta["adapters"].is_array() || !meta.contains("tokens") ||
        !meta["tokens"].is_array())
        bad("metadata is not a session description");
    for (const auto& t : meta["tokens"]) {
        if (!t.is_number_integer() || t.get<int64_t>() < 0 || t.get<int64_t>() >= c.vocab_size)
            bad("metadata holds a token id outside the vocabulary");
    }

    if (meta.value("model", std::string()) != model_fingerprint(*g.model))
        throw Error(ErrorCode::invalid_argument,
                    "session " + path + " was saved with another model than " + g.model->path());
    const io::Json mine = adapters_json(g.adapters);
    if (meta.value("adapters", io::Json::array()) != mine) {
        throw Error(ErrorCode::invalid_argument,
                    "session " + path + " was saved with adapters " + meta["adapters"].dump() +
                        " but this generator has " + mine.dump() +
                        "; attach the same adapters with the same scales first");
    }
    std::vector<int32_t> tokens = meta.value("tokens", std::vector<int32_t>());
    const size_t n_past = tokens.size(), hd = size_t(c.head_dim);
    if (n_past > size_t(g.n_ctx))
        throw Error(ErrorCode::out_of_range,
                    "session " + path + " holds " + std::to_string(n_past) +
                        " tokens but this generator's context is " + std::to_string(g.n_ctx));
    const bool has_logits = meta.contains("has_logits") && meta["has_logits"].is_boolean() &&
                            meta["has_logits"].get<bool>();
    const size_t kv_bytes = 2 * size_t(c.num_hidden_layers) * size_t(c.num_key_value_heads) *
                            n_past * hd * sizeof(float);
    const size_t want = 8 + meta_size + (has_logits ? size_t(c.vocab_size) * 4 : 0) + kv_bytes;
    if (want != raw_size) bad("payload holds " + std::to_string(raw_size) + " bytes, expected " +
                              std::to_string(want));

    // Everything checked: now replace the state.
    g.reset_all();
    const uint8_t* q = r + 8 + meta_size;
    if (has_logits) {
        g.logits.resize(size_t(c.vocab_size));
        std::memcpy(g.logits.data(), q, size_t(c.vocab_size) * 4);
        q += size_t(c.vocab_size) * 4;
    }
    for (auto* cache : {&g.state.k_cache, &g.state.v_cache}) {
        for (int l = 0; l < c.num_hidden_layers; ++l)
            for (int h = 0; h < c.num_key_value_heads; ++h) {
                std::memcpy(cache->data() + g.state.kv_offset(c, l, h), q, n_past * hd * 4);
                q += n_past * hd * 4;
            }
    }
    g.tokens = std::move(tokens);
    if (meta.contains("pending") && meta["pending"].is_number_integer())
        g.pending = meta["pending"].get<int32_t>();
}

}  // namespace stackllama
