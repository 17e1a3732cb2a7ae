#include <chrono>

#include "io/json_file.hpp"
#include "io/mmap_file.hpp"
#include "io/safetensors.hpp"
#include "kernels/isa.hpp"
#include "model/config.hpp"
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
    }
    return "?";
}

Model::Model(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Model::~Model() = default;

std::shared_ptr<const Model> Model::load(const std::string& path, const ModelParams& params) {
    const auto t0 = std::chrono::steady_clock::now();
    if (path.empty()) throw Error(ErrorCode::invalid_argument, "model path is empty");
    if (params.n_threads < 0)
        throw Error(ErrorCode::invalid_argument,
                    "n_threads must be 0 (all cores) or positive, got " +
                        std::to_string(params.n_threads));
    if (!io::dir_exists(path)) {
        if (io::file_exists(path))
            throw Error(ErrorCode::unsupported,
                        path + " is a file; stackllama loads a Hugging Face model directory");
        throw Error(ErrorCode::io, "model directory " + path + " does not exist");
    }
    auto impl = std::make_unique<Impl>();
    impl->path = path;
    impl->n_threads = params.n_threads > 0 ? params.n_threads : ThreadPool::default_threads();

    const std::string config_path = io::join_path(path, "config.json");
    if (!io::file_exists(config_path))
        throw Error(ErrorCode::io, "missing config.json in " + path);
    impl->raw_config = io::read_json_file(config_path);
    impl->config = parse_model_config(impl->raw_config, config_path);

    impl->tensors = io::open_safetensors_dir(path);
    impl->weights = load_llama_weights(impl->tensors, impl->config);

    if (params.load_tokenizer) {
        const std::string tok_path = io::join_path(path, "tokenizer.model");
        if (!io::file_exists(tok_path)) {
            throw Error(ErrorCode::io, "missing tokenizer.model in " + path +
                                           " (load with load_tokenizer = false for weights only)");
        }
        impl->tokenizer = Tokenizer::load(path);
        if (impl->tokenizer->n_vocab() > impl->config.vocab_size) {
            throw Error(ErrorCode::format,
                        tok_path + " has " + std::to_string(impl->tokenizer->n_vocab()) +
                            " pieces but config.json's vocab_size is " +
                            std::to_string(impl->config.vocab_size));
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
