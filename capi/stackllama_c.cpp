// The C ABI (capi/include/stackllama/stackllama.h) over the public C++ API. A shim only: each
// function checks its arguments, calls C++, and turns exceptions into a status plus a thread-local
// message. No exception leaves this file: every body runs inside guarded() or a try/catch.
#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstring>
#include <memory>
#include <new>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "stackllama/stackllama.h"
#include "stackllama/stackllama.hpp"

namespace sl = stackllama;

// --- handles ---------------------------------------------------------------------------------

struct stackllama_model {
    std::shared_ptr<const sl::Model> model;
};

struct stackllama_adapter {
    std::shared_ptr<const sl::Adapter> adapter;
    // Generators this adapter is attached to; stackllama_adapter_free refuses while non-zero.
    std::atomic<size_t> n_attached{0};
};

struct stackllama_tokenizer {
    std::shared_ptr<const sl::Model> owner;  // set when the tokenizer is the model's own
    std::optional<sl::Tokenizer> own;        // set when loaded on its own
    const sl::Tokenizer* tok = nullptr;
};

struct stackllama_generator {
    explicit stackllama_generator(sl::Generator g) : gen(std::move(g)) {}
    sl::Generator gen;
    std::vector<stackllama_adapter*> attached;
    std::atomic<bool> running{false};
    std::atomic<bool> cancel_requested{false};
    std::string piece;  // the NUL-terminated copy of the piece handed to the callback
};

struct stackllama_pool {
    std::shared_ptr<sl::WorkerPool> pool;  // generators made with it hold it too
};

struct stackllama_result {
    sl::GenerationResult result;
    std::vector<float> reward;  // best_of_n only
    size_t index = 0;           // best_of_n: place in generation order
};

struct stackllama_logprobs {
    sl::TokenLogProbs lp;
};

namespace {

// --- status codes and the thread-local message ----------------------------------------------

static_assert(STACKLLAMA_ERROR_INVALID_ARGUMENT == int(sl::ErrorCode::invalid_argument));
static_assert(STACKLLAMA_ERROR_IO == int(sl::ErrorCode::io));
static_assert(STACKLLAMA_ERROR_FORMAT == int(sl::ErrorCode::format));
static_assert(STACKLLAMA_ERROR_UNSUPPORTED == int(sl::ErrorCode::unsupported));
static_assert(STACKLLAMA_ERROR_OUT_OF_RANGE == int(sl::ErrorCode::out_of_range));
static_assert(STACKLLAMA_ERROR_OUT_OF_MEMORY == int(sl::ErrorCode::out_of_memory));
static_assert(STACKLLAMA_ERROR_CANCELLED == int(sl::ErrorCode::cancelled));
static_assert(STACKLLAMA_ERROR_INTERNAL == int(sl::ErrorCode::internal));
static_assert(STACKLLAMA_FINISH_EOS == int(sl::FinishReason::eos));
static_assert(STACKLLAMA_FINISH_LENGTH == int(sl::FinishReason::length));
static_assert(STACKLLAMA_FINISH_STOP_STRING == int(sl::FinishReason::stop_string));
static_assert(STACKLLAMA_FINISH_CANCELLED == int(sl::FinishReason::cancelled));

thread_local std::string t_error;
thread_local const char* t_error_static = nullptr;  // used when t_error could not be allocated

stackllama_status fail(stackllama_status status, const char* message) noexcept {
    try {
        t_error = message;
        t_error_static = nullptr;
    } catch (...) {
        t_error_static = "out of memory while storing an error message";
    }
    return status;
}

// The status for the exception being handled. Call only inside a catch block.
stackllama_status translate() noexcept {
    try {
        throw;
    } catch (const sl::Error& e) {
        return fail(static_cast<stackllama_status>(e.code()), e.what());
    } catch (const std::bad_alloc&) {
        return fail(STACKLLAMA_ERROR_OUT_OF_MEMORY, "out of memory");
    } catch (const std::exception& e) {
        try {
            return fail(STACKLLAMA_ERROR_INTERNAL,
                        (std::string("internal error: ") + e.what()).c_str());
        } catch (...) {
            return fail(STACKLLAMA_ERROR_INTERNAL, "internal error");
        }
    } catch (...) {
        return fail(STACKLLAMA_ERROR_INTERNAL, "internal error: unknown exception");
    }
}

template <class F>
stackllama_status guarded(F&& body) noexcept {
    try {
        return body();
    } catch (...) {
        return translate();
    }
}

[[noreturn]] void invalid(const std::string& message) {
    throw sl::Error(sl::ErrorCode::invalid_argument, message);
}

template <class T>
void require(const T* p, const char* func, const char* name) {
    if (!p) invalid(std::string(func) + ": " + name + " is NULL");
}

// --- params structs that grow -----------------------------------------------------------------

struct FieldSpan {
    size_t offset;
    size_t size;
};
#define SL_FIELD(T, f)                                      \
    FieldSpan {                                             \
        offsetof(T, f), sizeof(static_cast<T*>(nullptr)->f) \
    }

// Every field follows the previous one without padding and the last ends the struct: then a
// caller's struct_size (sizeof of its older header's struct) always ends exactly on a field, and
// a field appended later can never sit in an older struct's tail padding.
template <class T, size_t N>
constexpr bool packed(const FieldSpan (&fields)[N]) {
    size_t end = 0;
    for (size_t i = 0; i < N; ++i) {
        if (fields[i].offset != end) return false;
        end += fields[i].size;
    }
    return end == sizeof(T);
}

// Only ever append to these tables, as to the structs.
constexpr FieldSpan kModelParamsFields[] = {
    SL_FIELD(stackllama_model_params, struct_size),
    SL_FIELD(stackllama_model_params, n_threads),
    SL_FIELD(stackllama_model_params, load_tokenizer),
    SL_FIELD(stackllama_model_params, verbose),
    SL_FIELD(stackllama_model_params, verify_checksums),
    SL_FIELD(stackllama_model_params, reserved0),
    SL_FIELD(stackllama_model_params, weight_type),
};
constexpr FieldSpan kGeneratorParamsFields[] = {
    SL_FIELD(stackllama_generator_params, struct_size),
    SL_FIELD(stackllama_generator_params, n_ctx),
    SL_FIELD(stackllama_generator_params, pool),
};
constexpr FieldSpan kGenerationParamsFields[] = {
    SL_FIELD(stackllama_generation_params, struct_size),
    SL_FIELD(stackllama_generation_params, max_new_tokens),
    SL_FIELD(stackllama_generation_params, do_sample),
    SL_FIELD(stackllama_generation_params, temperature),
    SL_FIELD(stackllama_generation_params, top_k),
    SL_FIELD(stackllama_generation_params, top_p),
    SL_FIELD(stackllama_generation_params, min_p),
    SL_FIELD(stackllama_generation_params, typical_p),
    SL_FIELD(stackllama_generation_params, repetition_penalty),
    SL_FIELD(stackllama_generation_params, presence_penalty),
    SL_FIELD(stackllama_generation_params, frequency_penalty),
    SL_FIELD(stackllama_generation_params, no_repeat_ngram_size),
    SL_FIELD(stackllama_generation_params, has_seed),
    SL_FIELD(stackllama_generation_params, num_return_sequences),
    SL_FIELD(stackllama_generation_params, seed),
    SL_FIELD(stackllama_generation_params, eos_token_ids),
    SL_FIELD(stackllama_generation_params, n_eos_token_ids),
    SL_FIELD(stackllama_generation_params, use_model_eos),
    SL_FIELD(stackllama_generation_params, reserved0),
    SL_FIELD(stackllama_generation_params, stop_strings),
    SL_FIELD(stackllama_generation_params, n_stop_strings),
    SL_FIELD(stackllama_generation_params, logit_bias_tokens),
    SL_FIELD(stackllama_generation_params, logit_bias_values),
    SL_FIELD(stackllama_generation_params, n_logit_bias),
};
static_assert(packed<stackllama_model_params>(kModelParamsFields),
              "stackllama_model_params has padding or a field missing from the table");
static_assert(packed<stackllama_generator_params>(kGeneratorParamsFields),
              "stackllama_generator_params has padding or a field missing from the table");
static_assert(packed<stackllama_generation_params>(kGenerationParamsFields),
              "stackllama_generation_params has padding or a field missing from the table");

// The defaults of each struct, whole.
stackllama_model_params model_params_defaults() {
    const sl::ModelParams d;
    stackllama_model_params p;
    std::memset(&p, 0, sizeof p);
    p.struct_size = sizeof p;
    p.n_threads = d.n_threads;
    p.load_tokenizer = d.load_tokenizer ? 1 : 0;
    p.verbose = d.verbose ? 1 : 0;
    p.verify_checksums = d.verify_checksums ? 1 : 0;
    return p;
}

stackllama_generator_params generator_params_defaults() {
    const sl::GeneratorParams d;
    stackllama_generator_params p;
    std::memset(&p, 0, sizeof p);
    p.struct_size = sizeof p;
    p.n_ctx = d.n_ctx;
    p.pool = nullptr;  // d.pool is null
    return p;
}

stackllama_generation_params generation_params_defaults() {
    const sl::GenerationConfig d;
    stackllama_generation_params p;
    std::memset(&p, 0, sizeof p);
    p.struct_size = sizeof p;
    p.max_new_tokens = d.max_new_tokens;
    p.do_sample = d.do_sample ? 1 : 0;
    p.temperature = d.temperature;
    p.top_k = d.top_k;
    p.top_p = d.top_p;
    p.min_p = d.min_p;
    p.typical_p = d.typical_p;
    p.repetition_penalty = d.repetition_penalty;
    p.presence_penalty = d.presence_penalty;
    p.frequency_penalty = d.frequency_penalty;
    p.no_repeat_ngram_size = d.no_repeat_ngram_size;
    p.has_seed = d.seed ? 1 : 0;
    p.seed = d.seed.value_or(0);
    p.num_return_sequences = d.num_return_sequences;
    p.eos_token_ids = nullptr;  // d.eos_token_ids is empty
    p.n_eos_token_ids = 0;
    p.use_model_eos = d.use_model_eos ? 1 : 0;
    p.stop_strings = nullptr;  // d.stop_strings is empty
    p.n_stop_strings = 0;
    p.logit_bias_tokens = nullptr;
    p.logit_bias_values = nullptr;
    p.n_logit_bias = 0;
    return p;
}

// Error(invalid_argument) unless `size` is the size of some version of the struct: at least
// struct_size itself, at most what this library knows, and ending on a field.
template <size_t N>
void check_struct_size(size_t size, size_t known, const FieldSpan (&fields)[N], const char* name) {
    if (size > known) {
        invalid(
            std::string(name) + ".struct_size is " + std::to_string(size) +
            " bytes but this library (stackllama " STACKLLAMA_VERSION_STRING ") knows only " +
            std::to_string(known) +
            ": the caller was built against a newer stackllama.h than the library it runs with");
    }
    bool on_field = false;
    for (const FieldSpan& f : fields) on_field = on_field || f.offset + f.size == size;
    if (!on_field) {
        invalid(std::string(name) + ".struct_size is " + std::to_string(size) +
                ", which is not the size of any version of the struct (fill it with " + name +
                "_init(&params, sizeof params) first)");
    }
}

// The caller's struct, with this library's defaults for the fields beyond its struct_size.
template <class T, size_t N>
T read_params(const T* in, const FieldSpan (&fields)[N], T (*defaults)(), const char* name) {
    T out = defaults();
    if (!in) return out;
    const size_t size = in->struct_size;
    check_struct_size(size, sizeof(T), fields, name);
    for (const FieldSpan& f : fields) {
        if (f.offset + f.size <= size)
            std::memcpy(reinterpret_cast<char*>(&out) + f.offset,
                        reinterpret_cast<const char*>(in) + f.offset, f.size);
    }
    out.struct_size = static_cast<uint32_t>(sizeof(T));
    return out;
}

// *_init: the defaults, written only as far as the caller's struct reaches.
template <class T, size_t N>
stackllama_status init_params(T* params, size_t struct_size, const FieldSpan (&fields)[N],
                              T (*defaults)(), const char* name) {
    return guarded([&] {
        if (!params) invalid(std::string(name) + "_init: params is NULL");
        check_struct_size(struct_size, sizeof(T), fields, name);
        const T d = defaults();
        std::memcpy(params, &d, struct_size);
        params->struct_size = static_cast<uint32_t>(struct_size);
        return STACKLLAMA_OK;
    });
}

void require_reserved_zero(int32_t value, const char* name) {
    if (value != 0) invalid(std::string(name) + " must be 0, got " + std::to_string(value));
}

sl::ModelParams to_cpp(const stackllama_model_params& p) {
    require_reserved_zero(p.reserved0, "stackllama_model_params.reserved0");
    sl::ModelParams mp;
    mp.n_threads = p.n_threads;
    mp.load_tokenizer = p.load_tokenizer != 0;
    mp.verbose = p.verbose != 0;
    mp.verify_checksums = p.verify_checksums != 0;
    if (p.weight_type) {
        sl::DType t;
        if (!sl::parse_dtype_name(p.weight_type, &t))
            invalid(std::string("stackllama_model_params.weight_type must be \"q8\", \"q4\", "
                                "\"f16\", \"bf16\", \"f32\" or NULL, got \"") +
                    p.weight_type + "\"");
        mp.weight_type = t;
    }
    return mp;
}

template <class T>
void require_array(const T* p, size_t n, const char* name) {
    if (n > 0 && !p)
        invalid(std::string("stackllama_generation_params.") + name + " is NULL but its count is " +
                std::to_string(n));
}

sl::GenerationConfig to_cpp(const stackllama_generation_params& p) {
    require_reserved_zero(p.reserved0, "stackllama_generation_params.reserved0");
    require_array(p.eos_token_ids, p.n_eos_token_ids, "eos_token_ids");
    require_array(p.stop_strings, p.n_stop_strings, "stop_strings");
    require_array(p.logit_bias_tokens, p.n_logit_bias, "logit_bias_tokens");
    require_array(p.logit_bias_values, p.n_logit_bias, "logit_bias_values");
    sl::GenerationConfig c;
    c.max_new_tokens = p.max_new_tokens;
    c.do_sample = p.do_sample != 0;
    c.temperature = p.temperature;
    c.top_k = p.top_k;
    c.top_p = p.top_p;
    c.min_p = p.min_p;
    c.typical_p = p.typical_p;
    c.repetition_penalty = p.repetition_penalty;
    c.presence_penalty = p.presence_penalty;
    c.frequency_penalty = p.frequency_penalty;
    c.no_repeat_ngram_size = p.no_repeat_ngram_size;
    if (p.has_seed) c.seed = p.seed;
    c.num_return_sequences = p.num_return_sequences;
    if (p.n_eos_token_ids > 0)
        c.eos_token_ids.assign(p.eos_token_ids, p.eos_token_ids + p.n_eos_token_ids);
    c.use_model_eos = p.use_model_eos != 0;
    for (size_t i = 0; i < p.n_stop_strings; ++i) {
        if (!p.stop_strings[i])
            invalid("stackllama_generation_params.stop_strings[" + std::to_string(i) + "] is NULL");
        c.stop_strings.emplace_back(p.stop_strings[i]);
    }
    for (size_t i = 0; i < p.n_logit_bias; ++i)
        c.logit_bias[p.logit_bias_tokens[i]] = p.logit_bias_values[i];
    return c;
}

sl::GenerationConfig read_generation_params(const stackllama_generation_params* params) {
    return to_cpp(read_params(params, kGenerationParamsFields, generation_params_defaults,
                              "stackllama_generation_params"));
}

// --- the size-query convention ----------------------------------------------------------------

// Copies n elements (plus a NUL when nul) into buf, or reports the size needed.
template <class T>
stackllama_status copy_out(const char* func, const T* src, size_t n, bool nul, T* buf,
                           size_t capacity, size_t* out_n) {
    const char* unit = nul                                                              ? " bytes"
                       : sizeof(T) == sizeof(float) && std::is_floating_point<T>::value ? " floats"
                                                                                        : " ids";
    require(out_n, func, "the size out-pointer");
    if (!buf && capacity > 0)
        invalid(std::string(func) + ": buffer is NULL but its capacity is " +
                std::to_string(capacity));
    const size_t needed = n + (nul ? 1 : 0);
    if (!buf) {
        *out_n = n;
        return STACKLLAMA_OK;
    }
    if (capacity < needed) {
        *out_n = n;
        const std::string msg = std::string(func) + ": the buffer holds " +
                                std::to_string(capacity) + unit + " but " + std::to_string(needed) +
                                " are needed" + (nul ? " (the text plus its NUL)" : "");
        return fail(STACKLLAMA_ERROR_BUFFER_TOO_SMALL, msg.c_str());
    }
    if (n > 0) std::memcpy(buf, src, n * sizeof(T));
    if (nul) buf[n] = T(0);
    *out_n = n;
    return STACKLLAMA_OK;
}

// --- generation -------------------------------------------------------------------------------

// Marks a generator busy for one call: a second call while one runs (from another thread, or
// from inside a callback) is refused instead of corrupting the sequence.
struct Busy {
    stackllama_generator* g;
    Busy(stackllama_generator* gen, const char* func) : g(gen) {
        if (g->running.exchange(true))
            invalid(std::string(func) +
                    ": a call is already running on this generator (one thread "
                    "at a time; not from inside its callback)");
        g->cancel_requested.store(false);  // a cancel applies to the call running when it came
    }
    ~Busy() { g->running.store(false); }
    Busy(const Busy&) = delete;
    Busy& operator=(const Busy&) = delete;
};

template <class Prompt>
stackllama_status run_generate(const char* func, stackllama_generator* g, const Prompt& prompt,
                               const stackllama_generation_params* params,
                               stackllama_token_callback on_token, void* user_data,
                               stackllama_result** out_result) {
    const sl::GenerationConfig config = read_generation_params(params);
    Busy busy(g, func);
    sl::GenerationResult r =
        g->gen.generate(prompt, config, [&](std::string_view piece, int32_t token) -> bool {
            if (g->cancel_requested.load()) return false;
            if (on_token) {
                g->piece.assign(piece.data(), piece.size());
                if (!on_token(g->piece.c_str(), g->piece.size(), token, user_data)) return false;
            }
            return !g->cancel_requested.load();
        });
    if (out_result) *out_result = new stackllama_result{std::move(r), {}, 0};
    return STACKLLAMA_OK;
}

// The first half of the size-query convention for calls that return several results: answers a
// query (results NULL) or a too-small array before any work. Returns true when the call should
// run.
bool results_fit(const char* func, size_t needed, stackllama_result** results, size_t capacity,
                 size_t* out_n, stackllama_status* status) {
    require(out_n, func, "out_n_results");
    if (!results) {
        if (capacity > 0)
            invalid(std::string(func) + ": out_results is NULL but its capacity is " +
                    std::to_string(capacity));
        *out_n = needed;
        *status = STACKLLAMA_OK;
        return false;
    }
    if (capacity < needed) {
        *out_n = needed;
        const std::string msg = std::string(func) + ": out_results holds " +
                                std::to_string(capacity) + " results but " +
                                std::to_string(needed) + " are needed";
        *status = fail(STACKLLAMA_ERROR_BUFFER_TOO_SMALL, msg.c_str());
        return false;
    }
    return true;
}

size_t sequences_per_prompt(const sl::GenerationConfig& c) {
    if (c.num_return_sequences < 1)
        invalid("stackllama_generation_params.num_return_sequences must be >= 1, got " +
                std::to_string(c.num_return_sequences));
    return size_t(c.num_return_sequences);
}

// Hands out results as new handles (all or, on failure, none).
template <class Make>
stackllama_status give_results(size_t n, stackllama_result** out, size_t* out_n, Make make) {
    std::vector<std::unique_ptr<stackllama_result>> rs;
    rs.reserve(n);
    for (size_t i = 0; i < n; ++i) rs.push_back(make(i));
    for (size_t i = 0; i < n; ++i) out[i] = rs[i].release();
    *out_n = n;
    return STACKLLAMA_OK;
}

std::vector<sl::AdapterRef> adapter_refs(const char* func, const stackllama_adapter* const* a,
                                         const float* scales, size_t n, const char* name) {
    if (n > 0 && !a) invalid(std::string(func) + ": " + name + " is NULL");
    std::vector<sl::AdapterRef> refs;
    for (size_t i = 0; i < n; ++i) {
        if (!a[i]) invalid(std::string(func) + ": " + name + "[" + std::to_string(i) + "] is NULL");
        refs.push_back({a[i]->adapter, scales ? scales[i] : 1.0f});
    }
    return refs;
}

stackllama_status give_logprobs(sl::TokenLogProbs lp, stackllama_logprobs** out) {
    *out = new stackllama_logprobs{std::move(lp)};
    return STACKLLAMA_OK;
}

template <class Run>
stackllama_status best_of_n_common(const char* func, stackllama_generator* busy_gen,
                                   const stackllama_generation_params* params,
                                   stackllama_result** out_results, size_t capacity,
                                   size_t* out_n_results, Run run) {
    const sl::GenerationConfig config = read_generation_params(params);
    stackllama_status status = STACKLLAMA_OK;
    if (!results_fit(func, sequences_per_prompt(config), out_results, capacity, out_n_results,
                     &status))
        return status;
    Busy busy(busy_gen, func);
    std::vector<sl::ScoredAnswer> answers = run(config);
    return give_results(answers.size(), out_results, out_n_results, [&](size_t i) {
        return std::unique_ptr<stackllama_result>(new stackllama_result{
            std::move(answers[i].answer), std::move(answers[i].reward), answers[i].index});
    });
}

}  // namespace

extern "C" {

// --- library ----------------------------------------------------------------------------------

const char* stackllama_version(void) {
    return STACKLLAMA_VERSION_STRING;
}

uint32_t stackllama_version_number(void) {
    return STACKLLAMA_VERSION_NUMBER;
}

const char* stackllama_system_info(void) {
    return stackllama::system_info();
}

const char* stackllama_status_name(stackllama_status status) {
    switch (status) {
        case STACKLLAMA_OK:
            return "ok";
        case STACKLLAMA_ERROR_BUFFER_TOO_SMALL:
            return "buffer too small";
        case STACKLLAMA_ERROR_INVALID_ARGUMENT:
        case STACKLLAMA_ERROR_IO:
        case STACKLLAMA_ERROR_FORMAT:
        case STACKLLAMA_ERROR_UNSUPPORTED:
        case STACKLLAMA_ERROR_OUT_OF_RANGE:
        case STACKLLAMA_ERROR_OUT_OF_MEMORY:
        case STACKLLAMA_ERROR_CANCELLED:
        case STACKLLAMA_ERROR_INTERNAL:
            return sl::error_code_name(static_cast<sl::ErrorCode>(status));
    }
    return "unknown status";
}

const char* stackllama_finish_reason_name(stackllama_finish_reason reason) {
    switch (reason) {
        case STACKLLAMA_FINISH_EOS:
        case STACKLLAMA_FINISH_LENGTH:
        case STACKLLAMA_FINISH_STOP_STRING:
        case STACKLLAMA_FINISH_CANCELLED:
            return sl::finish_reason_name(static_cast<sl::FinishReason>(reason));
    }
    return "unknown finish reason";
}

const char* stackllama_last_error(void) {
    return t_error_static ? t_error_static : t_error.c_str();
}

// --- models -----------------------------------------------------------------------------------

stackllama_status stackllama_model_params_init(stackllama_model_params* params,
                                               size_t struct_size) {
    return init_params(params, struct_size, kModelParamsFields, model_params_defaults,
                       "stackllama_model_params");
}

stackllama_status stackllama_model_load(const char* path, const stackllama_model_params* params,
                                        stackllama_model** out_model) {
    const char* const func = __func__;
    return guarded([&] {
        require(path, func, "path");
        require(out_model, func, "out_model");
        const sl::ModelParams mp = to_cpp(read_params(
            params, kModelParamsFields, model_params_defaults, "stackllama_model_params"));
        auto handle = std::make_unique<stackllama_model>();
        handle->model = sl::Model::load(path, mp);
        *out_model = handle.release();
        return STACKLLAMA_OK;
    });
}

void stackllama_model_free(stackllama_model* model) {
    delete model;
}

int32_t stackllama_model_n_vocab(const stackllama_model* m) {
    return m ? m->model->config().vocab_size : 0;
}
int32_t stackllama_model_n_ctx_train(const stackllama_model* m) {
    return m ? m->model->config().max_position_embeddings : 0;
}
int32_t stackllama_model_n_layers(const stackllama_model* m) {
    return m ? m->model->config().num_hidden_layers : 0;
}
int32_t stackllama_model_hidden_size(const stackllama_model* m) {
    return m ? m->model->config().hidden_size : 0;
}
int32_t stackllama_model_n_labels(const stackllama_model* m) {
    return m ? m->model->config().num_labels : 0;
}
int32_t stackllama_model_n_threads(const stackllama_model* m) {
    return m ? m->model->n_threads() : 0;
}
const char* stackllama_model_path(const stackllama_model* m) {
    return m ? m->model->path().c_str() : nullptr;
}
const char* stackllama_model_weight_dtype(const stackllama_model* m) {
    return m ? sl::dtype_name(m->model->weight_dtype()) : nullptr;
}
bool stackllama_model_has_tokenizer(const stackllama_model* m) {
    return m && m->model->has_tokenizer();
}

stackllama_status stackllama_model_save_pretrained(const stackllama_model* model, const char* dir) {
    const char* const func = __func__;
    return guarded([&] {
        require(model, func, "model");
        require(dir, func, "dir");
        model->model->save_pretrained(dir);
        return STACKLLAMA_OK;
    });
}

// --- adapters ---------------------------------------------------------------------------------

stackllama_status stackllama_adapter_load(const stackllama_model* model, const char* dir,
                                          stackllama_adapter** out_adapter) {
    const char* const func = __func__;
    return guarded([&] {
        require(model, func, "model");
        require(dir, func, "dir");
        require(out_adapter, func, "out_adapter");
        auto handle = std::make_unique<stackllama_adapter>();
        handle->adapter = sl::Adapter::load(model->model, dir);
        *out_adapter = handle.release();
        return STACKLLAMA_OK;
    });
}

stackllama_status stackllama_adapter_free(stackllama_adapter* adapter) {
    return guarded([&] {
        if (!adapter) return STACKLLAMA_OK;
        const size_t n = adapter->n_attached.load();
        if (n > 0) {
            invalid("stackllama_adapter_free: adapter " + adapter->adapter->path() +
                    " is still attached to " + std::to_string(n) +
                    " generator(s); detach it (stackllama_generator_detach) or free those "
                    "generators first");
        }
        delete adapter;
        return STACKLLAMA_OK;
    });
}

const char* stackllama_adapter_path(const stackllama_adapter* a) {
    return a ? a->adapter->path().c_str() : nullptr;
}
int32_t stackllama_adapter_rank(const stackllama_adapter* a) {
    return a ? a->adapter->config().r : 0;
}
float stackllama_adapter_alpha(const stackllama_adapter* a) {
    return a ? a->adapter->config().lora_alpha : 0.0f;
}
size_t stackllama_adapter_n_attached(const stackllama_adapter* a) {
    return a ? a->n_attached.load() : 0;
}

stackllama_status stackllama_model_merge_adapters(const stackllama_model* base,
                                                  const stackllama_adapter* const* adapters,
                                                  const float* scales, size_t n_adapters,
                                                  stackllama_model** out_model) {
    const char* const func = __func__;
    return guarded([&] {
        require(base, func, "base");
        require(out_model, func, "out_model");
        const std::vector<sl::AdapterRef> refs =
            adapter_refs(func, adapters, scales, n_adapters, "adapters");
        auto handle = std::make_unique<stackllama_model>();
        handle->model = sl::merge_adapters(base->model, refs);
        *out_model = handle.release();
        return STACKLLAMA_OK;
    });
}

// --- tokenizers -------------------------------------------------------------------------------

stackllama_status stackllama_tokenizer_load(const char* dir, stackllama_tokenizer** out_tokenizer) {
    const char* const func = __func__;
    return guarded([&] {
        require(dir, func, "dir");
        require(out_tokenizer, func, "out_tokenizer");
        auto handle = std::make_unique<stackllama_tokenizer>();
        handle->own.emplace(sl::Tokenizer::load(dir));
        handle->tok = &*handle->own;
        *out_tokenizer = handle.release();
        return STACKLLAMA_OK;
    });
}

stackllama_status stackllama_model_get_tokenizer(const stackllama_model* model,
                                                 stackllama_tokenizer** out_tokenizer) {
    const char* const func = __func__;
    return guarded([&] {
        require(model, func, "model");
        require(out_tokenizer, func, "out_tokenizer");
        auto handle = std::make_unique<stackllama_tokenizer>();
        handle->tok = &model->model->tokenizer();  // throws when loaded without one
        handle->owner = model->model;
        *out_tokenizer = handle.release();
        return STACKLLAMA_OK;
    });
}

void stackllama_tokenizer_free(stackllama_tokenizer* tokenizer) {
    delete tokenizer;
}

stackllama_status stackllama_tokenizer_encode(const stackllama_tokenizer* tokenizer,
                                              const char* text, bool add_special, int32_t* ids,
                                              size_t ids_capacity, size_t* out_n_ids) {
    const char* const func = __func__;
    return guarded([&] {
        require(tokenizer, func, "tokenizer");
        require(text, func, "text");
        const std::vector<int32_t> v = tokenizer->tok->encode(text, add_special);
        return copy_out(func, v.data(), v.size(), false, ids, ids_capacity, out_n_ids);
    });
}

stackllama_status stackllama_tokenizer_decode(const stackllama_tokenizer* tokenizer,
                                              const int32_t* ids, size_t n_ids, bool skip_special,
                                              char* buf, size_t buf_size, size_t* out_len) {
    const char* const func = __func__;
    return guarded([&] {
        require(tokenizer, func, "tokenizer");
        if (n_ids > 0) require(ids, func, "ids");
        const std::string text =
            tokenizer->tok->decode(std::vector<int32_t>(ids, ids + n_ids), skip_special);
        return copy_out(func, text.data(), text.size(), true, buf, buf_size, out_len);
    });
}

stackllama_status stackllama_tokenizer_id_to_piece(const stackllama_tokenizer* tokenizer,
                                                   int32_t id, char* buf, size_t buf_size,
                                                   size_t* out_len) {
    const char* const func = __func__;
    return guarded([&] {
        require(tokenizer, func, "tokenizer");
        if (id < 0 || id >= tokenizer->tok->n_vocab())
            invalid(std::string(func) + ": id " + std::to_string(id) +
                    " is outside the vocabulary [0, " + std::to_string(tokenizer->tok->n_vocab()) +
                    ")");
        const std::string piece = tokenizer->tok->id_to_piece(id);
        return copy_out(func, piece.data(), piece.size(), true, buf, buf_size, out_len);
    });
}

int32_t stackllama_tokenizer_piece_to_id(const stackllama_tokenizer* tokenizer, const char* piece) {
    if (!tokenizer || !piece) return -1;
    try {
        return tokenizer->tok->piece_to_id(piece);
    } catch (...) {
        translate();
        return -1;
    }
}

int32_t stackllama_tokenizer_n_vocab(const stackllama_tokenizer* t) {
    return t ? t->tok->n_vocab() : 0;
}
int32_t stackllama_tokenizer_bos_id(const stackllama_tokenizer* t) {
    return t ? t->tok->bos_id() : -1;
}
int32_t stackllama_tokenizer_eos_id(const stackllama_tokenizer* t) {
    return t ? t->tok->eos_id() : -1;
}
int32_t stackllama_tokenizer_unk_id(const stackllama_tokenizer* t) {
    return t ? t->tok->unk_id() : -1;
}
int32_t stackllama_tokenizer_pad_id(const stackllama_tokenizer* t) {
    return t ? t->tok->pad_id() : -1;
}

// --- worker pools -----------------------------------------------------------------------------

stackllama_status stackllama_pool_create(int32_t n_threads, stackllama_pool** out_pool) {
    const char* const func = __func__;
    return guarded([&] {
        require(out_pool, func, "out_pool");
        auto pool = std::make_shared<sl::WorkerPool>(n_threads);
        *out_pool = new stackllama_pool{std::move(pool)};
        return STACKLLAMA_OK;
    });
}

void stackllama_pool_free(stackllama_pool* pool) { delete pool; }

int32_t stackllama_pool_n_threads(const stackllama_pool* pool) {
    return pool ? pool->pool->n_threads() : 0;
}

// --- generators -------------------------------------------------------------------------------

stackllama_status stackllama_generator_params_init(stackllama_generator_params* params,
                                                   size_t struct_size) {
    return init_params(params, struct_size, kGeneratorParamsFields, generator_params_defaults,
                       "stackllama_generator_params");
}

stackllama_status stackllama_generator_create(const stackllama_model* model,
                                              const stackllama_generator_params* params,
                                              stackllama_generator** out_generator) {
    const char* const func = __func__;
    return guarded([&] {
        require(model, func, "model");
        require(out_generator, func, "out_generator");
        const stackllama_generator_params p =
            read_params(params, kGeneratorParamsFields, generator_params_defaults,
                        "stackllama_generator_params");
        sl::GeneratorParams gp;
        gp.n_ctx = p.n_ctx;
        if (p.pool) gp.pool = p.pool->pool;
        *out_generator = new stackllama_generator(sl::Generator(model->model, gp));
        return STACKLLAMA_OK;
    });
}

void stackllama_generator_free(stackllama_generator* generator) {
    if (!generator) return;
    for (stackllama_adapter* a : generator->attached) a->n_attached.fetch_sub(1);
    delete generator;
}

int32_t stackllama_generator_n_ctx(const stackllama_generator* g) {
    return g ? g->gen.n_ctx() : 0;
}
int32_t stackllama_generator_n_past(const stackllama_generator* g) {
    return g ? g->gen.n_past() : 0;
}

stackllama_status stackllama_generator_tokens(const stackllama_generator* generator, int32_t* ids,
                                              size_t ids_capacity, size_t* out_n_ids) {
    const char* const func = __func__;
    return guarded([&] {
        require(generator, func, "generator");
        const std::vector<int32_t>& v = generator->gen.tokens();
        return copy_out(func, v.data(), v.size(), false, ids, ids_capacity, out_n_ids);
    });
}

stackllama_status stackllama_generator_reset(stackllama_generator* generator) {
    const char* const func = __func__;
    return guarded([&] {
        require(generator, func, "generator");
        Busy busy(generator, func);
        generator->gen.reset();
        return STACKLLAMA_OK;
    });
}

stackllama_status stackllama_generator_save_session(const stackllama_generator* generator,
                                                    const char* path) {
    const char* const func = __func__;
    return guarded([&] {
        require(generator, func, "generator");
        require(path, func, "path");
        generator->gen.save_session(path);
        return STACKLLAMA_OK;
    });
}

stackllama_status stackllama_generator_load_session(stackllama_generator* generator,
                                                    const char* path) {
    const char* const func = __func__;
    return guarded([&] {
        require(generator, func, "generator");
        require(path, func, "path");
        Busy busy(generator, func);
        generator->gen.load_session(path);
        return STACKLLAMA_OK;
    });
}

stackllama_status stackllama_generator_attach(stackllama_generator* generator,
                                              stackllama_adapter* adapter, float scale) {
    const char* const func = __func__;
    return guarded([&] {
        require(generator, func, "generator");
        require(adapter, func, "adapter");
        Busy busy(generator, func);
        generator->attached.reserve(generator->attached.size() + 1);  // no throw after attach
        generator->gen.attach(adapter->adapter, scale);
        generator->attached.push_back(adapter);
        adapter->n_attached.fetch_add(1);
        return STACKLLAMA_OK;
    });
}

stackllama_status stackllama_generator_detach(stackllama_generator* generator,
                                              stackllama_adapter* adapter) {
    const char* const func = __func__;
    return guarded([&] {
        require(generator, func, "generator");
        require(adapter, func, "adapter");
        Busy busy(generator, func);
        generator->gen.detach(*adapter->adapter);  // Error(invalid_argument) when not attached
        auto& v = generator->attached;
        auto it = std::find(v.begin(), v.end(), adapter);
        if (it != v.end()) {
            v.erase(it);
            adapter->n_attached.fetch_sub(1);
        }
        return STACKLLAMA_OK;
    });
}

stackllama_status stackllama_generator_detach_all(stackllama_generator* generator) {
    const char* const func = __func__;
    return guarded([&] {
        require(generator, func, "generator");
        Busy busy(generator, func);
        generator->gen.detach_all();
        for (stackllama_adapter* a : generator->attached) a->n_attached.fetch_sub(1);
        generator->attached.clear();
        return STACKLLAMA_OK;
    });
}

size_t stackllama_generator_n_attached(const stackllama_generator* g) {
    return g ? g->attached.size() : 0;
}

stackllama_status stackllama_generator_eval(stackllama_generator* generator, const int32_t* ids,
                                            size_t n_ids, bool all_logits, const float** out_logits,
                                            size_t* out_n_rows) {
    const char* const func = __func__;
    return guarded([&] {
        require(generator, func, "generator");
        require(out_logits, func, "out_logits");
        if (n_ids > 0) require(ids, func, "ids");
        Busy busy(generator, func);
        const sl::LogitsView lv =
            generator->gen.eval(std::vector<int32_t>(ids, ids + n_ids), all_logits);
        *out_logits = lv.data;
        if (out_n_rows) *out_n_rows = lv.rows;
        return STACKLLAMA_OK;
    });
}

stackllama_status stackllama_generation_params_init(stackllama_generation_params* params,
                                                    size_t struct_size) {
    return init_params(params, struct_size, kGenerationParamsFields, generation_params_defaults,
                       "stackllama_generation_params");
}

stackllama_status stackllama_generator_generate(stackllama_generator* generator, const char* prompt,
                                                const stackllama_generation_params* params,
                                                stackllama_token_callback on_token, void* user_data,
                                                stackllama_result** out_result) {
    const char* const func = __func__;
    return guarded([&] {
        require(generator, func, "generator");
        require(prompt, func, "prompt");
        return run_generate(func, generator, std::string_view(prompt), params, on_token, user_data,
                            out_result);
    });
}

stackllama_status stackllama_generator_generate_tokens(stackllama_generator* generator,
                                                       const int32_t* prompt, size_t n_prompt,
                                                       const stackllama_generation_params* params,
                                                       stackllama_token_callback on_token,
                                                       void* user_data,
                                                       stackllama_result** out_result) {
    const char* const func = __func__;
    return guarded([&] {
        require(generator, func, "generator");
        if (n_prompt > 0) require(prompt, func, "prompt");
        return run_generate(func, generator, std::vector<int32_t>(prompt, prompt + n_prompt),
                            params, on_token, user_data, out_result);
    });
}

void stackllama_generator_cancel(stackllama_generator* generator) {
    if (generator && generator->running.load()) generator->cancel_requested.store(true);
}

stackllama_status stackllama_generator_generate_batch(
    stackllama_generator* generator, const char* const* prompts, size_t n_prompts,
    const stackllama_generation_params* params, stackllama_batch_token_callback on_token,
    void* user_data, stackllama_result** out_results, size_t capacity, size_t* out_n_results) {
    const char* const func = __func__;
    return guarded([&] {
        require(generator, func, "generator");
        if (n_prompts > 0) require(prompts, func, "prompts");
        const sl::GenerationConfig config = read_generation_params(params);
        stackllama_status status = STACKLLAMA_OK;
        if (!results_fit(func, n_prompts * sequences_per_prompt(config), out_results, capacity,
                         out_n_results, &status))
            return status;
        std::vector<std::string> texts;
        for (size_t i = 0; i < n_prompts; ++i) {
            if (!prompts[i])
                invalid(std::string(func) + ": prompts[" + std::to_string(i) + "] is NULL");
            texts.emplace_back(prompts[i]);
        }
        stackllama_generator* g = generator;
        Busy busy(g, func);
        std::vector<sl::GenerationResult> rs = g->gen.generate_batch(
            texts, config, [&](size_t seq, std::string_view piece, int32_t token) -> bool {
                if (g->cancel_requested.load()) return false;
                if (on_token) {
                    g->piece.assign(piece.data(), piece.size());
                    if (!on_token(seq, g->piece.c_str(), g->piece.size(), token, user_data))
                        return false;
                }
                return !g->cancel_requested.load();
            });
        return give_results(rs.size(), out_results, out_n_results, [&](size_t i) {
            return std::unique_ptr<stackllama_result>(
                new stackllama_result{std::move(rs[i]), {}, i});
        });
    });
}

// --- scoring and rewards ----------------------------------------------------------------------

stackllama_status stackllama_generator_log_likelihood(stackllama_generator* generator,
                                                      const char* prompt, const char* continuation,
                                                      stackllama_logprobs** out_logprobs) {
    const char* const func = __func__;
    return guarded([&] {
        require(generator, func, "generator");
        require(prompt, func, "prompt");
        require(continuation, func, "continuation");
        require(out_logprobs, func, "out_logprobs");
        Busy busy(generator, func);
        return give_logprobs(
            generator->gen.log_likelihood(std::string_view(prompt), std::string_view(continuation)),
            out_logprobs);
    });
}

stackllama_status stackllama_generator_log_likelihood_tokens(stackllama_generator* generator,
                                                             const int32_t* prompt, size_t n_prompt,
                                                             const int32_t* continuation,
                                                             size_t n_continuation,
                                                             stackllama_logprobs** out_logprobs) {
    const char* const func = __func__;
    return guarded([&] {
        require(generator, func, "generator");
        if (n_prompt > 0) require(prompt, func, "prompt");
        if (n_continuation > 0) require(continuation, func, "continuation");
        require(out_logprobs, func, "out_logprobs");
        Busy busy(generator, func);
        return give_logprobs(generator->gen.log_likelihood(
                                 std::vector<int32_t>(prompt, prompt + n_prompt),
                                 std::vector<int32_t>(continuation, continuation + n_continuation)),
                             out_logprobs);
    });
}

void stackllama_logprobs_free(stackllama_logprobs* logprobs) {
    delete logprobs;
}
size_t stackllama_logprobs_n_tokens(const stackllama_logprobs* l) {
    return l ? l->lp.tokens.size() : 0;
}
const int32_t* stackllama_logprobs_tokens(const stackllama_logprobs* l) {
    return l ? l->lp.tokens.data() : nullptr;
}
const float* stackllama_logprobs_values(const stackllama_logprobs* l) {
    return l ? l->lp.logprobs.data() : nullptr;
}
double stackllama_logprobs_sum(const stackllama_logprobs* l) {
    return l ? l->lp.sum : 0.0;
}

stackllama_status stackllama_generator_perplexity(stackllama_generator* generator, const char* text,
                                                  double* out_perplexity) {
    const char* const func = __func__;
    return guarded([&] {
        require(generator, func, "generator");
        require(text, func, "text");
        require(out_perplexity, func, "out_perplexity");
        Busy busy(generator, func);
        *out_perplexity = generator->gen.perplexity(std::string_view(text));
        return STACKLLAMA_OK;
    });
}

stackllama_status stackllama_generator_perplexity_tokens(stackllama_generator* generator,
                                                         const int32_t* ids, size_t n_ids,
                                                         double* out_perplexity) {
    const char* const func = __func__;
    return guarded([&] {
        require(generator, func, "generator");
        if (n_ids > 0) require(ids, func, "ids");
        require(out_perplexity, func, "out_perplexity");
        Busy busy(generator, func);
        *out_perplexity = generator->gen.perplexity(std::vector<int32_t>(ids, ids + n_ids));
        return STACKLLAMA_OK;
    });
}

stackllama_status stackllama_generator_reward(stackllama_generator* generator, const char* text,
                                              float* values, size_t capacity,
                                              size_t* out_n_values) {
    const char* const func = __func__;
    return guarded([&] {
        require(generator, func, "generator");
        require(text, func, "text");
        require(out_n_values, func, "out_n_values");
        Busy busy(generator, func);
        const std::vector<float> r = generator->gen.reward(std::string_view(text));
        return copy_out(func, r.data(), r.size(), false, values, capacity, out_n_values);
    });
}

stackllama_status stackllama_generator_reward_tokens(stackllama_generator* generator,
                                                     const int32_t* ids, size_t n_ids,
                                                     float* values, size_t capacity,
                                                     size_t* out_n_values) {
    const char* const func = __func__;
    return guarded([&] {
        require(generator, func, "generator");
        if (n_ids > 0) require(ids, func, "ids");
        require(out_n_values, func, "out_n_values");
        Busy busy(generator, func);
        const std::vector<float> r = generator->gen.reward(std::vector<int32_t>(ids, ids + n_ids));
        return copy_out(func, r.data(), r.size(), false, values, capacity, out_n_values);
    });
}

stackllama_status stackllama_generator_reward_batch(stackllama_generator* generator,
                                                    const char* const* texts, size_t n_texts,
                                                    float* values, size_t capacity,
                                                    size_t* out_n_labels) {
    const char* const func = __func__;
    return guarded([&] {
        require(generator, func, "generator");
        if (n_texts > 0) require(texts, func, "texts");
        require(out_n_labels, func, "out_n_labels");
        std::vector<std::string> v;
        for (size_t i = 0; i < n_texts; ++i) {
            if (!texts[i])
                invalid(std::string(func) + ": texts[" + std::to_string(i) + "] is NULL");
            v.emplace_back(texts[i]);
        }
        Busy busy(generator, func);
        const std::vector<std::vector<float>> rows = generator->gen.reward_batch(v);
        const size_t n_labels = rows.empty() ? 0 : rows[0].size();
        std::vector<float> flat;
        flat.reserve(rows.size() * n_labels);
        for (const auto& row : rows) flat.insert(flat.end(), row.begin(), row.end());
        size_t n_floats = 0;
        const stackllama_status st =
            copy_out(func, flat.data(), flat.size(), false, values, capacity, &n_floats);
        *out_n_labels = n_labels;
        return st;
    });
}

stackllama_status stackllama_generator_best_of_n(stackllama_generator* policy,
                                                 stackllama_generator* reward_model,
                                                 const char* prompt,
                                                 const stackllama_generation_params* params,
                                                 stackllama_result** out_results, size_t capacity,
                                                 size_t* out_n_results) {
    const char* const func = __func__;
    return guarded([&] {
        require(policy, func, "policy");
        require(reward_model, func, "reward_model");
        require(prompt, func, "prompt");
        std::optional<Busy> second;
        if (reward_model != policy) second.emplace(reward_model, func);
        return best_of_n_common(func, policy, params, out_results, capacity, out_n_results,
                                [&](const sl::GenerationConfig& c) {
                                    return sl::best_of_n(policy->gen, reward_model->gen,
                                                         std::string_view(prompt), c);
                                });
    });
}

stackllama_status stackllama_generator_best_of_n_adapters(
    stackllama_generator* generator, const stackllama_adapter* const* policy_adapters,
    const float* policy_scales, size_t n_policy, const stackllama_adapter* const* reward_adapters,
    const float* reward_scales, size_t n_reward, const char* prompt,
    const stackllama_generation_params* params, stackllama_result** out_results, size_t capacity,
    size_t* out_n_results) {
    const char* const func = __func__;
    return guarded([&] {
        require(generator, func, "generator");
        require(prompt, func, "prompt");
        const auto policy =
            adapter_refs(func, policy_adapters, policy_scales, n_policy, "policy_adapters");
        const auto reward =
            adapter_refs(func, reward_adapters, reward_scales, n_reward, "reward_adapters");
        return best_of_n_common(func, generator, params, out_results, capacity, out_n_results,
                                [&](const sl::GenerationConfig& c) {
                                    return sl::best_of_n(generator->gen, policy, reward,
                                                         std::string_view(prompt), c);
                                });
    });
}

// --- results ----------------------------------------------------------------------------------

void stackllama_result_free(stackllama_result* result) {
    delete result;
}

const char* stackllama_result_text(const stackllama_result* r) {
    return r ? r->result.text.c_str() : "";
}
size_t stackllama_result_text_len(const stackllama_result* r) {
    return r ? r->result.text.size() : 0;
}
const int32_t* stackllama_result_tokens(const stackllama_result* r) {
    return r ? r->result.tokens.data() : nullptr;
}
size_t stackllama_result_n_tokens(const stackllama_result* r) {
    return r ? r->result.tokens.size() : 0;
}
stackllama_finish_reason stackllama_result_finish_reason(const stackllama_result* r) {
    return r ? static_cast<stackllama_finish_reason>(r->result.finish_reason)
             : STACKLLAMA_FINISH_LENGTH;
}
const float* stackllama_result_logprobs(const stackllama_result* r) {
    return r ? r->result.logprobs.data() : nullptr;
}
uint64_t stackllama_result_seed(const stackllama_result* r) {
    return r ? r->result.seed : 0;
}
const char* stackllama_result_stop_string(const stackllama_result* r) {
    return r ? r->result.stop_string.c_str() : "";
}
const float* stackllama_result_reward(const stackllama_result* r, size_t* out_n_values) {
    if (out_n_values) *out_n_values = r ? r->reward.size() : 0;
    return r && !r->reward.empty() ? r->reward.data() : nullptr;
}
size_t stackllama_result_index(const stackllama_result* r) {
    return r ? r->index : 0;
}

}  // extern "C"
