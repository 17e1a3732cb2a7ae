// libFuzzer target: a PEFT adapter directory through Adapter::load: adapter_config.json (the
// input) and adapter_model.safetensors, against a tiny base model written at start-up. Covers the
// config fields, PEFT's target rules with regexes from the file (target_modules as a string,
// rank_pattern, alpha_pattern), key parsing, shape checks and the f32 widening; a loaded adapter
// is then attached to a Generator and run for three tokens.
//
// The weights: when the input is a JSON object with "__tensors__": {name: {"dtype", "shape",
// "fill"}} (or name: shape), those tensors are written (at most 65536 elements in all; "fill" a
// number, "nan" or "inf"); otherwise lora_A / lora_B for q_proj and v_proj of both layers, with
// the config's r when it is a small positive integer.
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <nlohmann/json.hpp>
#include <vector>

#include "fuzz_model.hpp"
#include "fuzz_support.hpp"
#include "io/safetensors_writer.hpp"
#include "stackllama/adapter.hpp"
#include "stackllama/generator.hpp"
#include "stackllama/model.hpp"

using namespace stackllama;
using fuzz::kHeadDim;
using fuzz::kHeads;
using fuzz::kHidden;
using fuzz::kKvHeads;
using fuzz::kLayers;
using nlohmann::json;

namespace {

bool parse_dtype_name(const std::string& s, io::TensorDType* t) { return io::parse_dtype(s, t); }

// The tensors to write for this input.
struct Weights {
    std::vector<io::TensorToWrite> list;
    std::vector<std::vector<uint8_t>> bytes;
};

void fill(std::vector<uint8_t>& b, io::TensorDType dt, size_t n, double value) {
    const size_t es = io::dtype_size(dt);
    b.assign(n * es, 0);
    for (size_t i = 0; i < n; ++i) {
        const float f = std::isnan(value) || std::isinf(value)
                            ? float(value)
                            : float(value) * float(int((i * 2654435761u) % 17) - 8) / 8.0f;
        uint32_t u;
        std::memcpy(&u, &f, 4);
        if (dt == io::TensorDType::F32) {
            std::memcpy(&b[i * 4], &f, 4);
        } else if (dt == io::TensorDType::BF16 || dt == io::TensorDType::F16) {
            const uint16_t h = uint16_t(u >> 16);  // bf16 bits; as f16 they are just other values
            std::memcpy(&b[i * 2], &h, 2);
        } else {
            for (size_t k = 0; k < es; ++k) b[i * es + k] = uint8_t(u >> (8 * (k % 4)));
        }
    }
}

Weights weights_for(std::string_view text) {
    Weights w;
    json j = json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
    w.bytes.reserve(256);
    auto add = [&](const std::string& name, io::TensorDType dt, std::vector<int64_t> shape,
                   double value) {
        size_t n = 1;
        for (int64_t d : shape) n *= size_t(d);
        w.bytes.emplace_back();
        fill(w.bytes.back(), dt, n, value);
        w.list.push_back({name, dt, std::move(shape), w.bytes.back().data()});
    };
    if (j.is_object() && j.contains("__tensors__") && j["__tensors__"].is_object()) {
        size_t total = 0;
        for (auto it = j["__tensors__"].begin(); it != j["__tensors__"].end(); ++it) {
            if (w.list.size() >= 200) break;
            const json& e = it.value();
            const json* shape_j = e.is_array() ? &e
                                  : e.is_object() && e.contains("shape") ? &e["shape"]
                                                                          : nullptr;
            if (!shape_j || !shape_j->is_array() || shape_j->size() > 4) continue;
            std::vector<int64_t> shape;
            size_t n = 1;
            bool good = true;
            for (const json& d : *shape_j) {
                if (!d.is_number_integer() || d.get<int64_t>() < 0 || d.get<int64_t>() > 4096) {
                    good = false;
                    break;
                }
                shape.push_back(d.get<int64_t>());
                n *= size_t(d.get<int64_t>());
            }
            if (!good || total + n > 65536) continue;
            total += n;
            io::TensorDType dt = io::TensorDType::F32;
            double value = 0.05;
            if (e.is_object()) {
                if (e.contains("dtype") && e["dtype"].is_string())
                    parse_dtype_name(e["dtype"].get<std::string>(), &dt);
                if (e.contains("fill")) {
                    const json& f = e["fill"];
                    if (f.is_number()) value = f.get<double>();
                    if (f == "nan") value = std::numeric_limits<double>::quiet_NaN();
                    if (f == "inf") value = std::numeric_limits<double>::infinity();
                }
            }
            add(it.key(), dt, std::move(shape), value);
        }
        return w;
    }
    int r = 8;
    if (j.is_object() && j.contains("r") && j["r"].is_number_integer()) {
        const int64_t v = j["r"].get<int64_t>();
        if (v >= 1 && v <= 64) r = int(v);
    }
    for (int l = 0; l < kLayers; ++l) {
        const std::string p = "base_model.model.model.layers." + std::to_string(l) + ".self_attn.";
        add(p + "q_proj.lora_A.weight", io::TensorDType::F32, {r, kHidden}, 0.05);
        add(p + "q_proj.lora_B.weight", io::TensorDType::F32, {kHeads * kHeadDim, r}, 0.05);
        add(p + "v_proj.lora_A.weight", io::TensorDType::F32, {r, kHidden}, 0.05);
        add(p + "v_proj.lora_B.weight", io::TensorDType::F32, {kKvHeads * kHeadDim, r}, 0.05);
    }
    return w;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::shared_ptr<const Model> model = fuzz::tiny_model();
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    const std::string dir = fuzz::scratch_path("adapter");
    std::filesystem::create_directories(dir);
    fuzz::write_file(dir + "/adapter_config.json", text);
    const Weights w = weights_for(text);
    io::write_safetensors(dir + "/adapter_model.safetensors", w.list);

    std::shared_ptr<const Adapter> adapter;
    if (!fuzz::expect_ok_or_error([&] { adapter = Adapter::load(model, dir); })) return 0;
    FUZZ_CHECK(adapter != nullptr, "load returned an adapter");
    FUZZ_CHECK(adapter->config().r >= 1, "r positive");
    fuzz::expect_ok_or_error([&] {
        GeneratorParams gp;
        gp.n_ctx = 8;
        Generator g(model, gp);
        g.attach(adapter, 0.5f);
        g.eval({1, 5, 9});
        g.detach_all();
        g.eval({3});
    });
    return 0;
}
