#include <chrono>

#include "io/json_file.hpp"
#include "io/mmap_file.hpp"
#include "io/native_file.hpp"
#include "io/safetensors.hpp"
#include "io/torch_bin.hpp"
#include "kernels/isa.hpp"
#include "model/config.hpp"
#include "model/convert.hpp"
#include "model/model_impl.hpp"
#include "stackllama/error.hpp"
#include "util/log.hpp"
#include "util/thread_pool.hpp"

namespace stackllama {

const char* dtype_name(DType t) noexcept {
    switch (t) {
        case DType::f32: return "f32";
        case DType::f16: return "f16";
        case DType::bf16: return "bf16";
        case DType::q8: return "q8";
        case DType::q4: return "q4";
    }
    return "?";
}

bool parse_dtype_name(const std::string& name, DType* out) noexcept {
    for (DType t : {DType::f32, DType::f16, DType::bf16, DType::q8, DType::q4}) {
        if (name == dtype_name(t)) {
            if (out) *out = t;
            return true;
        }
    }
    return false;
}

namespace {

// Small JSON files beside the weights that a saved copy should carry along.
constexpr const char* kExtraFiles[] = {"tokenizer_config.json", "special_tokens_map.json",
                                       "generation_config.json"};

void check_tokenizer_fits(const Model::Impl& impl, const std::string& origin) {
    if (impl.tokenizer && impl.tokenizer->n_vocab() > impl.config.vocab_size) {
        throw Error(ErrorCode::format,
                    origin + " has " + std::to_string(impl.tokenizer->n_vocab()) +
                        " pieces but config.json's vocab_size is " +
                        std::to_string(impl.config.vocab_size));
    }
}

void load_directory(Model::Impl& impl, const ModelParams& params) {
    const std::string& path = impl.path;
    const std::string config_path = io::join_path(path, "config.json");
    if (!io::file_exists(config_path))
        throw Error(ErrorCode::io, "missing config.json in " + path);
    impl.raw_config = io::read_json_file(config_path);
    impl.config = parse_model_config(impl.raw_config, config_path);
    impl.extra_files = io::Json::object();
    for (const char* f : kExtraFiles) {
        const std::string p = io::join_path(path, f);
        if (io::file_exists(p)) impl.extra_files[f] = io::read_json_file(p);
    }

    // safetensors first (as transformers prefers it), then PyTorch .bin checkpoints.
    const bool has_safetensors = io::file_exists(io::join_path(path, "model.safetensors")) ||
                                 io::file_exists(io::join_path(path, "model.safetensors.index.json"));
    const bool has_bin = io::file_exists(io::join_path(path, "pytorch_model.bin")) ||
                         io::file_exists(io::join_path(path, "pytorch_model.bin.index.json"));
    if (!has_safetensors && has_bin) {
        impl.tensors = io::open_torch_bin_dir(path);
    } else if (!has_safetensors) {
        throw Error(ErrorCode::io, "no weights in " + path +
                                       ": expected model.safetensors, "
                                       "model.safetensors.index.json, pytorch_model.bin or "
                                       "pytorch_model.bin.index.json");
    } else {
        impl.tensors = io::open_safetensors_dir(path);
    }
    impl.weights = load_llama_weights(impl.tensors, impl.config);

    if (params.load_tokenizer) {
        const std::string tok_path = io::join_path(path, "tokenizer.model");
        if (!io::file_exists(tok_path)) {
            throw Error(ErrorCode::io, "missing tokenizer.model in " + path +
                                           " (load with load_tokenizer = false for weights only)");
        }
        impl.tokenizer = Tokenizer::load(path);
        check_tokenizer_fits(impl, tok_path);
    }
}

void load_native_file(Model::Impl& impl, const ModelParams& params) {
    const std::string& path = impl.path;
    io::NativeReadOptions ro;
    ro.verify_checksums = params.verify_checksums;
    ro.n_threads = impl.n_threads;
    io::NativeContents nc = io::read_native(path, ro);
    impl.raw_config = nc.config;
    impl.config = parse_model_config(nc.config, path + " (config)");
    impl.extra_files = nc.extra_files.is_object() ? nc.extra_files : io::Json::object();
    for (const io::Json& a : nc.adapters) {
        BundledAdapter b;
        b.name = a["name"].get<std::string>();
        b.scale = a["scale"].get<float>();
        b.config = a["config"];
        const std::string prefix = a["prefix"].get<std::string>();
        for (const auto& [name, t] : nc.tensors.tensors()) {
            if (name.compare(0, prefix.size(), prefix) != 0) continue;
            io::TensorInfo copy = t;
            copy.name = name.substr(prefix.size());
            b.tensors.add(std::move(copy));
        }
        for (const auto& o : nc.tensors.owners()) b.tensors.keep_alive(o);
        b.tensors.origin = path + " (adapter " + b.name + ")";
        if (b.tensors.tensors().empty())
            throw Error(ErrorCode::format, path + ": adapter " + b.name + " has no tensors");
        impl.bundled.push_back(std::move(b));
    }
    impl.tensors = std::move(nc.tensors);
    impl.weights = load_llama_weights(impl.tensors, impl.config);
    if (params.load_tokenizer) {
        if (nc.tokenizer_model.empty())
            throw Error(ErrorCode::format, path + " carries no tokenizer (load with "
                                                  "load_tokenizer = false for weights only)");
        const io::Json* tc = impl.extra_files.contains("tokenizer_config.json")
                                 ? &impl.extra_files["tokenizer_config.json"]
                                 : nullptr;
        impl.tokenizer = Tokenizer::from_serialized(nc.tokenizer_model, tc ? tc->dump() : "",
                                                    path);
        check_tokenizer_fits(impl, path + " (tokenizer)");
    }
}

}  // namespace

Model::Model(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Model::~Model() = default;

std::shared_ptr<const Model> Model::load(const std::string& path, const ModelParams& params) {
    const auto t0 = std::chrono::steady_clock::now();
    if (path.empty()) throw Error(ErrorCode::invalid_argument, "model path is empty");
    if (params.n_threads < 0 || params.n_threads > kMaxThreads)
        throw Error(ErrorCode::invalid_argument,
                    "n_threads must be 0 (all cores) or 1 to " + std::to_string(kMaxThreads) +
                        ", got " + std::to_string(params.n_threads));
    if (params.weight_type && !parse_dtype_name(dtype_name(*params.weight_type), nullptr))
        throw Error(ErrorCode::invalid_argument,
                    "ModelParams.weight_type is not a known DType (" +
                        std::to_string(int(*params.weight_type)) + ")");
    auto impl = std::make_unique<Impl>();
    impl->path = path;
    impl->n_threads = params.n_threads > 0 ? params.n_threads : ThreadPool::default_threads();

    if (io::dir_exists(path)) {
        load_directory(*impl, params);
    } else if (io::file_exists(path)) {
        load_native_file(*impl, params);
    } else {
        throw Error(ErrorCode::io, "model path " + path + " does not exist");
    }
    if (params.weight_type && *params.weight_type != impl->weights.dtype) {
        const auto want = static_cast<kernels::WeightType>(*params.weight_type);
        ThreadPool pool(impl->n_threads);
        std::vector<std::string> kept;
        convert_weights(impl->weights, want, pool, &kept);
        impl->tensors = io::TensorSet();  // unmaps the files: every matrix now lives in memory
        if (!kept.empty()) {
            std::string names;
            for (size_t i = 0; i < kept.size() && i < 4; ++i) names += (i ? ", " : "") + kept[i];
            if (kept.size() > 4) names += ", ...";
            const std::string note =
                std::to_string(kept.size()) + " matrices keep their stored type because " +
                dtype_name(*params.weight_type) + " needs rows that are a multiple of 32: " + names;
            if (params.verbose) log::always(note); else log::info(note);
        }
    }

    const double ms = std::chrono::duration<double, std::milli>(
                          std::chrono::steady_clock::now() - t0).count();
    const auto& c = impl->config;
    std::string msg = "loaded " + path + ": " + std::to_string(c.num_hidden_layers) +
                      " layers, hidden " + std::to_string(c.hidden_size) + ", " +
                      std::to_string(c.num_attention_heads) + "/" +
                      std::to_string(c.num_key_value_heads) + " heads, vocab " +
                      std::to_string(c.vocab_size) + ", " + dtype_name(impl->weights.dtype) +
                      " weights, kernels " + kernels::isa_name(kernels::active_isa()) + ", " +
                      std::to_string(int(ms)) + " ms";
    if (params.verbose) {
        log::always(msg);
    } else {
        log::info(msg);
    }
    return std::shared_ptr<const Model>(new Model(std::move(impl)));
}

const ModelConfig& Model::config() const noexcept { return impl_->config; }
const std::string& Model::path() const noexcept { return impl_->path; }
int Model::n_threads() const noexcept { return impl_->n_threads; }
DType Model::weight_dtype() const noexcept { return impl_->weights.dtype; }
uint64_t Model::weight_bytes() const noexcept { return impl_->weights.matrix_bytes; }
bool Model::has_tokenizer() const noexcept { return impl_->tokenizer.has_value(); }

const Tokenizer& Model::tokenizer() const {
    if (!impl_->tokenizer)
        throw Error(ErrorCode::invalid_argument,
                    "model " + impl_->path + " was loaded without its tokenizer");
    return *impl_->tokenizer;
}

}  // namespace stackllama
