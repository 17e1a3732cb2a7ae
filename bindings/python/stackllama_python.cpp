// The Python module stackllama (as stackllama._core; stackllama/__init__.py re-exports it). It
// binds the public C++ API directly: the C ABI is for ctypes and other languages.
//
// The GIL is released around every load, eval and generate. Python callbacks and signal checks
// re-acquire it. stream() runs generation on a worker thread that never touches Python and hands
// pieces over through a small bounded queue; dropping the iterator cancels and joins the worker.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>
#include <pybind11/stl/filesystem.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <exception>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <variant>
#include <vector>

#include "stackllama/stackllama.hpp"

namespace py = pybind11;
namespace sl = stackllama;
using namespace pybind11::literals;

namespace {

// --- exceptions -------------------------------------------------------------------------------

// stackllama.Error and one subclass per ErrorCode, each also deriving from the closest builtin
// (so `except ValueError` catches a bad argument). Created once at import.
std::map<int, py::object>& error_classes() {
    static auto* m = new std::map<int, py::object>();  // leaked: lives as long as the interpreter
    return *m;
}

void raise_error(const sl::Error& e) {
    auto& classes = error_classes();
    auto it = classes.find(int(e.code()));
    py::object cls = it != classes.end() ? it->second : classes.at(0);
    py::object exc = cls(py::str(e.what()));
    exc.attr("code") = int(e.code());
    PyErr_SetObject(cls.ptr(), exc.ptr());
}

py::str to_str(const std::string& s) {
    // Text from the tokenizer is whole UTF-8; "replace" only guards against a broken piece.
    PyObject* o = PyUnicode_DecodeUTF8(s.data(), Py_ssize_t(s.size()), "replace");
    if (!o) throw py::error_already_set();
    return py::reinterpret_steal<py::str>(o);
}

void set_module(py::handle cls) {
    cls.attr("__module__") = "stackllama";
}

// --- handles ----------------------------------------------------------------------------------

struct PyModel {
    std::shared_ptr<const sl::Model> model;
};

struct PyTokenizer {
    std::shared_ptr<const sl::Model> owner;  // when it is a model's tokenizer
    std::shared_ptr<const sl::Tokenizer> own;
    const sl::Tokenizer* tok = nullptr;
};

struct PyAdapter {
    std::shared_ptr<const sl::Adapter> adapter;
};

// Generation options: stackllama::GenerationConfig itself, with transformers' keyword names
// (eos_token_id for eos_token_ids). One table drives the keyword arguments, the properties,
// to_dict and repr, so a field added to the C++ struct needs one line in each function below.
using PyGenerationConfig = sl::GenerationConfig;

const char* const kConfigFields[] = {"max_new_tokens",
                                     "do_sample",
                                     "temperature",
                                     "top_k",
                                     "top_p",
                                     "min_p",
                                     "typical_p",
                                     "repetition_penalty",
                                     "presence_penalty",
                                     "frequency_penalty",
                                     "no_repeat_ngram_size",
                                     "logit_bias",
                                     "seed",
                                     "eos_token_id",
                                     "use_model_eos",
                                     "stop_strings",
                                     "num_return_sequences"};

std::string config_field_list() {
    std::string s;
    for (const char* f : kConfigFields) s += (s.empty() ? "" : ", ") + std::string(f);
    return s;
}

// "123 (int)": a value as a TypeError shows it, cut short.
std::string describe(py::handle v) {
    std::string r = py::repr(v).cast<std::string>();
    if (r.size() > 60) r = r.substr(0, 57) + "...";
    return r + " (" + py::str(v.get_type().attr("__name__")).cast<std::string>() + ")";
}

// What a field takes, for the TypeError when a value does not convert.
const char* config_field_kind(const std::string& name) {
    if (name == "do_sample" || name == "use_model_eos") return "a bool";
    if (name == "max_new_tokens" || name == "top_k" || name == "no_repeat_ngram_size" ||
        name == "num_return_sequences")
        return "an int";
    if (name == "seed") return "an int >= 0, or None";
    if (name == "logit_bias") return "a dict of token id (int) to bias (float), or None";
    if (name == "eos_token_id") return "a token id (int), a list of them, or None";
    if (name == "stop_strings") return "a str, a list of str, or None";
    return "a float";
}

void assign_config_field(PyGenerationConfig& c, const std::string& name, py::handle v) {
    if (name == "max_new_tokens")
        c.max_new_tokens = v.cast<int>();
    else if (name == "do_sample")
        c.do_sample = v.cast<bool>();
    else if (name == "temperature")
        c.temperature = v.cast<float>();
    else if (name == "top_k")
        c.top_k = v.cast<int>();
    else if (name == "top_p")
        c.top_p = v.cast<float>();
    else if (name == "min_p")
        c.min_p = v.cast<float>();
    else if (name == "typical_p")
        c.typical_p = v.cast<float>();
    else if (name == "repetition_penalty")
        c.repetition_penalty = v.cast<float>();
    else if (name == "presence_penalty")
        c.presence_penalty = v.cast<float>();
    else if (name == "frequency_penalty")
        c.frequency_penalty = v.cast<float>();
    else if (name == "no_repeat_ngram_size")
        c.no_repeat_ngram_size = v.cast<int>();
    else if (name == "logit_bias")
        c.logit_bias =
            v.is_none() ? std::map<int32_t, float>{} : v.cast<std::map<int32_t, float>>();
    else if (name == "seed")
        c.seed = v.is_none() ? std::nullopt : std::optional<uint64_t>(v.cast<uint64_t>());
    else if (name == "eos_token_id") {
        if (v.is_none())
            c.eos_token_ids.clear();
        else if (py::isinstance<py::int_>(v))
            c.eos_token_ids = {v.cast<int32_t>()};
        else
            c.eos_token_ids = v.cast<std::vector<int32_t>>();
    } else if (name == "use_model_eos")
        c.use_model_eos = v.cast<bool>();
    else if (name == "stop_strings") {
        if (v.is_none())
            c.stop_strings.clear();
        else if (py::isinstance<py::str>(v))
            c.stop_strings = {v.cast<std::string>()};
        else
            c.stop_strings = v.cast<std::vector<std::string>>();
    } else if (name == "num_return_sequences")
        c.num_return_sequences = v.cast<int>();
    else
        throw py::type_error("unexpected keyword argument '" + name +
                             "'; generation options are: " + config_field_list());
}

py::object get_config_field(const PyGenerationConfig& c, const std::string& name) {
    if (name == "max_new_tokens") return py::int_(c.max_new_tokens);
    if (name == "do_sample") return py::bool_(c.do_sample);
    if (name == "temperature") return py::float_(c.temperature);
    if (name == "top_k") return py::int_(c.top_k);
    if (name == "top_p") return py::float_(c.top_p);
    if (name == "min_p") return py::float_(c.min_p);
    if (name == "typical_p") return py::float_(c.typical_p);
    if (name == "repetition_penalty") return py::float_(c.repetition_penalty);
    if (name == "presence_penalty") return py::float_(c.presence_penalty);
    if (name == "frequency_penalty") return py::float_(c.frequency_penalty);
    if (name == "no_repeat_ngram_size") return py::int_(c.no_repeat_ngram_size);
    if (name == "logit_bias") return py::cast(c.logit_bias);
    if (name == "seed") return c.seed ? py::object(py::int_(*c.seed)) : py::object(py::none());
    if (name == "eos_token_id")
        return c.eos_token_ids.empty() ? py::object(py::none())
                                       : py::object(py::cast(c.eos_token_ids));
    if (name == "use_model_eos") return py::bool_(c.use_model_eos);
    if (name == "stop_strings") return py::cast(c.stop_strings);
    if (name == "num_return_sequences") return py::int_(c.num_return_sequences);
    throw py::attribute_error(name);
}

// pybind11's cast_error says only "Unable to cast Python instance to C++ type": the TypeError
// names the field, what it takes and what it got.
void set_config_field(PyGenerationConfig& c, const std::string& name, py::handle v) {
    try {
        assign_config_field(c, name, v);
    } catch (const py::cast_error&) {
        throw py::type_error("GenerationConfig." + name + " must be " + config_field_kind(name) +
                             ", got " + describe(v));
    }
}

// A list of token ids from Python, or a TypeError naming the argument (`what`).
std::vector<int32_t> token_ids(py::handle v, const std::string& what) {
    try {
        return v.cast<std::vector<int32_t>>();
    } catch (const py::cast_error&) {
        throw py::type_error(what + " must be str or a sequence of token ids (int32), got " +
                             describe(v));
    }
}

PyGenerationConfig make_config(const py::object& base, const py::kwargs& kwargs) {
    PyGenerationConfig c = base.is_none() ? PyGenerationConfig{} : base.cast<PyGenerationConfig>();
    for (auto item : kwargs) set_config_field(c, item.first.cast<std::string>(), item.second);
    return c;
}

// The StackLLaMA prompt template, as the CLI's (examples/cli/args.cpp).
std::string wrap_question(const std::string& q) {
    return "Question: " + q + "\n\nAnswer: ";
}

using Prompt = std::variant<std::string, std::vector<int32_t>>;

Prompt make_prompt(const py::object& prompt, bool raw) {
    if (py::isinstance<py::str>(prompt)) {
        std::string s = prompt.cast<std::string>();
        return raw ? s : wrap_question(s);
    }
    if (py::isinstance<py::bytes>(prompt))
        throw py::type_error("prompt must be str or a sequence of token ids, not bytes");
    return token_ids(prompt, "prompt");
}

struct PyGenerator;

// State shared by a stream's iterator and its worker thread.
struct StreamState {
    std::mutex mu;
    std::condition_variable cv;  // items, space, done and cancel all notify it
    std::deque<std::string> queue;
    static constexpr size_t kCapacity = 8;  // the worker waits when the reader falls behind
    bool done = false;
    bool cancel = false;
    std::exception_ptr error;
    sl::GenerationResult result;
};

struct PyGenerator {
    PyGenerator(std::shared_ptr<const sl::Model> m, const sl::GeneratorParams& p)
        : gen(std::move(m), p) {}
    sl::Generator gen;
    std::vector<std::pair<py::object, float>> attached;  // Adapter objects, for .attached
    // One user at a time: a running stream holds the generator until it ends or is dropped.
    std::atomic<bool> busy{false};
    std::atomic<bool> cancel_requested{false};

    struct Claim {
        PyGenerator* g;
        explicit Claim(PyGenerator* gen) : g(gen) {
            if (g->busy.exchange(true))
                throw py::value_error(
                    "this Generator is busy: a stream() is still running on it (exhaust, "
                    "close() or drop the stream first) or another thread is using it");
        }
        ~Claim() { g->busy.store(false); }
        Claim(const Claim&) = delete;
        Claim& operator=(const Claim&) = delete;
    };
};

// The per-token hook of generate() and generate_batch(), run without the GIL: it stops on
// cancel(), checks for Ctrl-C every 20 ms when called from the main thread, and calls the
// Python on_token callback (re-acquiring the GIL) when there is one. A Python exception (a
// KeyboardInterrupt included) stops generation and is re-raised by rethrow().
class TokenHook {
  public:
    TokenHook(PyGenerator& g, py::object on_token) : g_(g), on_token_(std::move(on_token)) {
        auto threading = py::module_::import("threading");
        on_main_ = threading.attr("main_thread")().attr("ident").cast<long long>() ==
                   threading.attr("get_ident")().cast<long long>();
        last_check_ = std::chrono::steady_clock::now();
    }

    bool token(std::string_view piece, int32_t token) {
        return hook([&] { return on_token_(to_str(std::string(piece)), token); });
    }
    bool batch_token(size_t seq, std::string_view piece, int32_t token) {
        return hook([&] { return on_token_(seq, to_str(std::string(piece)), token); });
    }
    void rethrow() {
        if (py_error_) throw std::move(*py_error_);
    }

  private:
    template <class Call>
    bool hook(Call call_python) {
        if (g_.cancel_requested.load() || py_error_) return false;
        const bool call = !on_token_.is_none();
        const auto now = std::chrono::steady_clock::now();
        const bool check = on_main_ && now - last_check_ > std::chrono::milliseconds(20);
        if (!call && !check) return true;
        py::gil_scoped_acquire acquire;
        if (check) {
            last_check_ = now;
            if (PyErr_CheckSignals() != 0) {  // Ctrl-C: KeyboardInterrupt is now set
                py_error_.emplace();
                return false;
            }
        }
        if (call) {
            try {
                py::object r = call_python();
                // Any falsy value but None stops, as Python's truth test has it.
                if (!r.is_none() && !py::bool_(r)) return false;
            } catch (py::error_already_set& e) {
                py_error_.emplace(std::move(e));
                return false;
            }
        }
        return !g_.cancel_requested.load();
    }

    PyGenerator& g_;
    py::object on_token_;
    bool on_main_ = false;
    std::chrono::steady_clock::time_point last_check_;
    std::optional<py::error_already_set> py_error_;
};

sl::GenerationResult run_generate(PyGenerator& g, const Prompt& prompt,
                                  const sl::GenerationConfig& cfg, bool reset,
                                  const py::object& on_token) {
    PyGenerator::Claim claim(&g);
    g.cancel_requested.store(false);
    TokenHook hook(g, on_token);
    auto cb = [&](std::string_view piece, int32_t token) { return hook.token(piece, token); };
    sl::GenerationResult r;
    {
        py::gil_scoped_release release;
        if (reset) g.gen.reset();
        if (auto* s = std::get_if<std::string>(&prompt))
            r = g.gen.generate(std::string_view(*s), cfg, cb);
        else
            r = g.gen.generate(std::get<std::vector<int32_t>>(prompt), cfg, cb);
    }
    hook.rethrow();
    return r;
}

std::vector<sl::GenerationResult> run_generate_batch(PyGenerator& g, const py::list& prompts,
                                                     bool raw, const sl::GenerationConfig& cfg,
                                                     const py::object& on_token) {
    std::vector<std::string> texts;
    std::vector<std::vector<int32_t>> ids;
    for (py::handle p : prompts) {
        Prompt q = make_prompt(py::reinterpret_borrow<py::object>(p), raw);
        if (auto* s = std::get_if<std::string>(&q))
            texts.push_back(std::move(*s));
        else
            ids.push_back(std::move(std::get<std::vector<int32_t>>(q)));
    }
    if (!texts.empty() && !ids.empty())
        throw py::type_error("generate_batch: prompts must be all text or all token id lists");
    PyGenerator::Claim claim(&g);
    g.cancel_requested.store(false);
    TokenHook hook(g, on_token);
    auto cb = [&](size_t seq, std::string_view piece, int32_t token) {
        return hook.batch_token(seq, piece, token);
    };
    std::vector<sl::GenerationResult> r;
    {
        py::gil_scoped_release release;
        r = texts.empty() && !ids.empty() ? g.gen.generate_batch(ids, cfg, cb)
                                          : g.gen.generate_batch(texts, cfg, cb);
    }
    hook.rethrow();
    return r;
}

std::vector<sl::AdapterRef> adapter_refs(const py::iterable& adapters);

// The iterator stream() returns.
struct PyStream {
    std::shared_ptr<StreamState> st = std::make_shared<StreamState>();
    py::object owner;  // the Python Generator: alive while the worker uses it
    PyGenerator* g = nullptr;
    std::thread worker;
    bool claimed = false;
    bool finished = false;

    void start(PyGenerator* gen, py::object gen_obj, Prompt prompt, sl::GenerationConfig cfg,
               bool reset) {
        if (gen->busy.exchange(true))
            throw py::value_error(
                "this Generator is busy: a stream() is still running on it (exhaust, close() or "
                "drop the stream first) or another thread is using it");
        g = gen;
        claimed = true;
        owner = std::move(gen_obj);
        gen->cancel_requested.store(false);
        std::shared_ptr<StreamState> s = st;
        worker = std::thread([s, gen, prompt = std::move(prompt), cfg = std::move(cfg), reset] {
            auto cb = [&](std::string_view piece, int32_t) -> bool {
                std::unique_lock<std::mutex> lk(s->mu);
                if (!piece.empty()) {
                    s->cv.wait(lk, [&] {
                        return s->cancel || gen->cancel_requested.load() ||
                               s->queue.size() < StreamState::kCapacity;
                    });
                    if (s->cancel || gen->cancel_requested.load()) return false;
                    s->queue.emplace_back(piece);
                    s->cv.notify_all();
                }
                return !(s->cancel || gen->cancel_requested.load());
            };
            sl::GenerationResult r;
            std::exception_ptr err;
            try {
                if (reset) gen->gen.reset();
                if (auto* p = std::get_if<std::string>(&prompt))
                    r = gen->gen.generate(std::string_view(*p), cfg, cb);
                else
                    r = gen->gen.generate(std::get<std::vector<int32_t>>(prompt), cfg, cb);
            } catch (...) {
                err = std::current_exception();
            }
            std::lock_guard<std::mutex> lk(s->mu);
            s->result = std::move(r);
            s->error = err;
            s->done = true;
            s->cv.notify_all();
        });
    }

    // Stops the worker (when still running), waits for it and frees the generator. Safe to call
    // more than once. The worker never takes the GIL, so joining with it held cannot deadlock.
    void stop() {
        if (worker.joinable()) {
            {
                std::lock_guard<std::mutex> lk(st->mu);
                st->cancel = true;
                st->cv.notify_all();
            }
            worker.join();
        }
        if (claimed) {
            g->busy.store(false);
            claimed = false;
        }
        finished = true;
    }

    ~PyStream() { stop(); }

    py::str next() {
        if (finished) throw py::stop_iteration();
        for (;;) {
            std::optional<std::string> item;
            bool done = false;
            {
                py::gil_scoped_release release;
                std::unique_lock<std::mutex> lk(st->mu);
                st->cv.wait_for(lk, std::chrono::milliseconds(50),
                                [&] { return !st->queue.empty() || st->done; });
                if (!st->queue.empty()) {
                    item = std::move(st->queue.front());
                    st->queue.pop_front();
                    st->cv.notify_all();
                } else {
                    done = st->done;
                }
            }
            if (item) return to_str(*item);
            if (done) {
                stop();
                if (st->error) std::rethrow_exception(st->error);
                throw py::stop_iteration();
            }
            if (PyErr_CheckSignals() != 0) {  // Ctrl-C while waiting: stop the worker, raise
                py::error_already_set e;
                stop();
                throw e;
            }
        }
    }
};

py::array_t<float> logits_array(const sl::LogitsView& lv, bool two_d) {
    if (two_d) {
        py::array_t<float> a({py::ssize_t(lv.rows), py::ssize_t(lv.n_vocab)});
        std::memcpy(a.mutable_data(), lv.data, lv.rows * lv.n_vocab * sizeof(float));
        return a;
    }
    py::array_t<float> a(py::ssize_t(lv.n_vocab));
    std::memcpy(a.mutable_data(), lv.row(lv.rows - 1), lv.n_vocab * sizeof(float));
    return a;
}

py::dict model_config_dict(const sl::ModelConfig& c) {
    py::dict d;
    d["architecture"] = c.architecture;
    d["hidden_size"] = c.hidden_size;
    d["intermediate_size"] = c.intermediate_size;
    d["num_hidden_layers"] = c.num_hidden_layers;
    d["num_attention_heads"] = c.num_attention_heads;
    d["num_key_value_heads"] = c.num_key_value_heads;
    d["head_dim"] = c.head_dim;
    d["rms_norm_eps"] = c.rms_norm_eps;
    d["rope_theta"] = c.rope_theta;
    d["vocab_size"] = c.vocab_size;
    d["max_position_embeddings"] = c.max_position_embeddings;
    d["tie_word_embeddings"] = c.tie_word_embeddings;
    d["bos_token_id"] = c.bos_token_id;
    d["eos_token_ids"] = c.eos_token_ids;
    d["pad_token_id"] = c.pad_token_id;
    d["name_or_path"] = c.name_or_path;
    d["num_labels"] = c.num_labels;
    return d;
}

py::dict adapter_config_dict(const sl::AdapterConfig& c) {
    py::dict d;
    d["peft_type"] = c.peft_type;
    d["task_type"] = c.task_type;
    d["r"] = c.r;
    d["lora_alpha"] = c.lora_alpha;
    d["use_rslora"] = c.use_rslora;
    d["fan_in_fan_out"] = c.fan_in_fan_out;
    d["bias"] = c.bias;
    d["lora_bias"] = c.lora_bias;
    d["target_modules"] = c.target_modules;
    d["target_modules_regex"] = c.target_modules_regex;
    d["modules_to_save"] = c.modules_to_save;
    d["rank_pattern"] = c.rank_pattern;
    d["alpha_pattern"] = c.alpha_pattern;
    d["layers_to_transform"] = c.layers_to_transform;
    d["base_model_name_or_path"] = c.base_model_name_or_path;
    return d;
}

std::vector<sl::AdapterRef> adapter_refs(const py::iterable& adapters) {
    std::vector<sl::AdapterRef> refs;
    for (py::handle item : adapters) {
        if (py::isinstance<PyAdapter>(item)) {
            refs.push_back({item.cast<const PyAdapter&>().adapter, 1.0f});
            continue;
        }
        // (Adapter, scale): anything else, a scale that is not a number included, is a TypeError.
        if (py::isinstance<py::tuple>(item) && py::len(item) == 2 &&
            py::isinstance<PyAdapter>(item[py::int_(0)])) {
            try {
                refs.push_back({item[py::int_(0)].cast<const PyAdapter&>().adapter,
                                item[py::int_(1)].cast<float>()});
                continue;
            } catch (const py::cast_error&) {
            }
        }
        throw py::type_error(
            "adapters: each item must be an Adapter or an (Adapter, scale) tuple, got " +
            describe(item));
    }
    return refs;
}

}  // namespace

PYBIND11_MODULE(_core, m) {
    m.doc() =
        "stackllama: LLaMA-family models with PEFT LoRA adapters on CPUs.\n\n"
        "    import stackllama\n"
        "    model = stackllama.Model(\"path/to/hf-dir\", n_threads=2)\n"
        "    gen = stackllama.Generator(model)\n"
        "    gen.attach(stackllama.Adapter(model, \"path/to/peft-adapter\"), scale=1.0)\n"
        "    print(gen.generate(\"How do I sort a dict?\", max_new_tokens=64))\n"
        "    for piece in gen.stream(\"How do I sort a dict?\", max_new_tokens=64):\n"
        "        print(piece, end=\"\")\n\n"
        "Errors raise stackllama.Error (a subclass per error code) with the C++ message.";

    // --- exceptions ---
    {
        auto& classes = error_classes();
        auto make = [&](const char* name, const char* doc, py::handle base, py::handle builtin) {
            py::tuple bases = builtin ? py::make_tuple(base, builtin) : py::make_tuple(base);
            PyObject* cls = PyErr_NewExceptionWithDoc((std::string("stackllama.") + name).c_str(),
                                                      doc, bases.ptr(), nullptr);
            if (!cls) throw py::error_already_set();
            py::object o = py::reinterpret_steal<py::object>(cls);
            m.attr(name) = o;
            return o;
        };
        py::object base = make("Error",
                               "Base of every stackllama error. `code` is the stackllama error "
                               "code (the value of the C ABI's stackllama_status).",
                               PyExc_Exception, nullptr);
        base.attr("code") = 99;
        classes[0] = base;
        classes[int(sl::ErrorCode::invalid_argument)] =
            make("InvalidArgumentError", "A bad argument value (also a ValueError).", base,
                 PyExc_ValueError);
        classes[int(sl::ErrorCode::io)] =
            make("IoError", "A file could not be opened, read or written (also an OSError).", base,
                 PyExc_OSError);
        classes[int(sl::ErrorCode::format)] =
            make("FormatError", "A file is malformed, truncated or inconsistent.", base, nullptr);
        classes[int(sl::ErrorCode::unsupported)] =
            make("UnsupportedError",
                 "A valid request stackllama does not implement (also a NotImplementedError).",
                 base, PyExc_NotImplementedError);
        classes[int(sl::ErrorCode::out_of_range)] =
            make("OutOfRangeError", "E.g. a prompt longer than the context (also a ValueError).",
                 base, PyExc_ValueError);
        classes[int(sl::ErrorCode::out_of_memory)] =
            make("OutOfMemoryError", "Memory could not be allocated (also a MemoryError).", base,
                 PyExc_MemoryError);
        classes[int(sl::ErrorCode::cancelled)] =
            make("CancelledError", "The operation was cancelled.", base, nullptr);
        classes[int(sl::ErrorCode::internal)] =
            make("InternalError", "A bug in stackllama: please report it.", base, nullptr);
        py::register_exception_translator([](std::exception_ptr p) {
            try {
                if (p) std::rethrow_exception(p);
            } catch (const sl::Error& e) {
                raise_error(e);
            }
        });
    }

    m.attr("__version__") = sl::version();
    m.def("version", &sl::version, "The version of the linked stackllama library.");

    // --- Tokenizer ---
    py::class_<PyTokenizer> tok(m, "Tokenizer", R"doc(
SentencePiece tokenizer of a LLaMA model directory (tokenizer.model + tokenizer_config.json).

Tokenizer(dir) loads one on its own; Model.tokenizer gives the model's. Immutable: may be used
from any number of threads.)doc");
    set_module(tok);
    tok.def(py::init([](const std::filesystem::path& dir) {
                auto t = std::make_shared<const sl::Tokenizer>([&] {
                    py::gil_scoped_release release;
                    return sl::Tokenizer::load(dir.string());
                }());
                PyTokenizer p;
                p.own = t;
                p.tok = t.get();
                return p;
            }),
            "dir"_a, "Loads dir/tokenizer.model, honouring dir/tokenizer_config.json.")
        .def(
            "encode",
            [](const PyTokenizer& t, const std::string& text, bool add_special) {
                return t.tok->encode(text, add_special);
            },
            "text"_a, "add_special"_a = true,
            "Text to ids; with add_special, BOS/EOS as tokenizer_config.json says.")
        .def(
            "decode",
            [](const PyTokenizer& t, const std::vector<int32_t>& ids, bool skip_special) {
                return to_str(t.tok->decode(ids, skip_special));
            },
            "ids"_a, "skip_special"_a = true,
            "Ids to text, as SentencePiece decodes them; control tokens skipped when "
            "skip_special.")
        .def(
            "id_to_piece",
            [](const PyTokenizer& t, int32_t id) { return to_str(t.tok->id_to_piece(id)); }, "id"_a,
            "The raw piece of one id (e.g. '\u2581the', '<0x0A>', '<s>').")
        .def(
            "piece_to_id",
            [](const PyTokenizer& t, const std::string& piece) {
                return t.tok->piece_to_id(piece);
            },
            "piece"_a, "The id of a piece, or -1 when it is not in the vocabulary.")
        .def_property_readonly("n_vocab", [](const PyTokenizer& t) { return t.tok->n_vocab(); })
        .def_property_readonly(
            "bos_id", [](const PyTokenizer& t) { return t.tok->bos_id(); }, "BOS id, or -1.")
        .def_property_readonly(
            "eos_id", [](const PyTokenizer& t) { return t.tok->eos_id(); }, "EOS id, or -1.")
        .def_property_readonly("unk_id", [](const PyTokenizer& t) { return t.tok->unk_id(); })
        .def_property_readonly("pad_id", [](const PyTokenizer& t) { return t.tok->pad_id(); })
        .def_property_readonly("add_bos", [](const PyTokenizer& t) { return t.tok->add_bos(); })
        .def_property_readonly("add_eos", [](const PyTokenizer& t) { return t.tok->add_eos(); })
        .def(
            "is_control", [](const PyTokenizer& t, int32_t id) { return t.tok->is_control(id); },
            "id"_a)
        .def(
            "is_byte", [](const PyTokenizer& t, int32_t id) { return t.tok->is_byte(id); }, "id"_a)
        .def("__len__", [](const PyTokenizer& t) { return t.tok->n_vocab(); });

    // --- Model ---
    py::class_<PyModel> model(m, "Model", R"doc(
A LLaMA-family causal LM: a Hugging Face directory (config.json, model.safetensors or shards,
tokenizer.model) or a native stackllama file. Weights stay memory-mapped in their stored dtype.

Immutable after load: share one Model between any number of Generators on any threads.)doc");
    set_module(model);
    model
        .def(py::init([](const std::filesystem::path& path, int n_threads, bool load_tokenizer,
                         bool verbose, bool verify_checksums,
                         const std::optional<std::string>& quantize) {
                 sl::ModelParams p;
                 p.n_threads = n_threads;
                 p.load_tokenizer = load_tokenizer;
                 p.verbose = verbose;
                 p.verify_checksums = verify_checksums;
                 if (quantize) {
                     sl::DType t;
                     if (!sl::parse_dtype_name(*quantize, &t))
                         throw py::value_error("quantize must be 'q8', 'q4', 'f16', 'bf16', "
                                               "'f32' or None, got '" + *quantize + "'");
                     p.weight_type = t;
                 }
                 py::gil_scoped_release release;
                 return PyModel{sl::Model::load(path.string(), p)};
             }),
             "path"_a, "n_threads"_a = sl::ModelParams{}.n_threads,
             "load_tokenizer"_a = sl::ModelParams{}.load_tokenizer,
             "verbose"_a = sl::ModelParams{}.verbose,
             "verify_checksums"_a = sl::ModelParams{}.verify_checksums,
             "quantize"_a = py::none(),
             "Loads a model. n_threads=0 uses every physical core. quantize='q8' or 'q4' (or "
             "'f16', 'bf16', 'f32') converts the weights at load. The GIL is released while "
             "loading.")
        .def_property_readonly("path", [](const PyModel& m) { return m.model->path(); })
        .def_property_readonly("n_threads", [](const PyModel& m) { return m.model->n_threads(); })
        .def_property_readonly("n_vocab",
                               [](const PyModel& m) { return m.model->config().vocab_size; })
        .def_property_readonly(
            "config", [](const PyModel& m) { return model_config_dict(m.model->config()); },
            "The config.json fields the forward pass uses, as a dict.")
        .def_property_readonly(
            "weight_dtype",
            [](const PyModel& m) { return sl::dtype_name(m.model->weight_dtype()); },
            "'f32', 'f16', 'bf16', 'q8' or 'q4': the type of the large matrices.")
        .def_property_readonly("weight_bytes",
                               [](const PyModel& m) { return m.model->weight_bytes(); })
        .def_property_readonly("has_tokenizer",
                               [](const PyModel& m) { return m.model->has_tokenizer(); })
        .def_property_readonly(
            "tokenizer",
            [](const PyModel& m) {
                PyTokenizer t;
                t.tok = &m.model->tokenizer();
                t.owner = m.model;
                return t;
            },
            "The model's tokenizer (raises InvalidArgumentError when loaded without one).")
        .def(
            "save_pretrained",
            [](const PyModel& m, const std::filesystem::path& dir) {
                py::gil_scoped_release release;
                m.model->save_pretrained(dir.string());
            },
            "dir"_a,
            "Writes the model as a Hugging Face directory (config, safetensors, tokenizer).")
        .def(
            "merge_adapters",
            [](const PyModel& m, const py::iterable& adapters) {
                std::vector<sl::AdapterRef> refs = adapter_refs(adapters);
                py::gil_scoped_release release;
                return PyModel{sl::merge_adapters(m.model, refs)};
            },
            "adapters"_a,
            "A new Model with the adapters merged into the weights (W += scale * s * B A, f32). "
            "adapters: Adapter objects or (Adapter, scale) pairs. This model is unchanged.")
        .def("__repr__",
             [](const PyModel& m) { return "<stackllama.Model '" + m.model->path() + "'>"; });

    // --- Adapter ---
    py::class_<PyAdapter> adapter(m, "Adapter", R"doc(
A PEFT LoRA adapter directory (adapter_config.json + adapter_model.safetensors or .bin), loaded
for one model and checked against its shapes. Attach it to Generators (unmerged, with a scale)
or merge it with Model.merge_adapters. Immutable; keeps its model alive.)doc");
    set_module(adapter);
    adapter
        .def(py::init([](const PyModel& model, const std::filesystem::path& dir) {
                 py::gil_scoped_release release;
                 return PyAdapter{sl::Adapter::load(model.model, dir.string())};
             }),
             "model"_a, "dir"_a, "Loads a PEFT LoRA adapter for `model`. The GIL is released.")
        .def_property_readonly("path", [](const PyAdapter& a) { return a.adapter->path(); })
        .def_property_readonly(
            "config", [](const PyAdapter& a) { return adapter_config_dict(a.adapter->config()); },
            "The adapter_config.json fields stackllama reads, as a dict.")
        .def_property_readonly("lora_modules",
                               [](const PyAdapter& a) { return a.adapter->lora_modules(); })
        .def_property_readonly("saved_modules",
                               [](const PyAdapter& a) { return a.adapter->saved_modules(); })
        .def("__repr__",
             [](const PyAdapter& a) { return "<stackllama.Adapter '" + a.adapter->path() + "'>"; });

    // --- GenerationConfig ---
    py::class_<PyGenerationConfig> gc(m, "GenerationConfig", R"doc(
Generation options: stackllama::GenerationConfig, named as transformers' GenerationConfig and
with its defaults (presence_penalty, frequency_penalty, logit_bias as in the OpenAI API):

  max_new_tokens        int, 128
  do_sample             bool, False (greedy; the sampling fields below are then unused)
  temperature           float, 1.0 (with do_sample, 0 = greedy)
  top_k                 int, 50 (0 = off)
  top_p                 float, 1.0 (off)
  min_p                 float, 0.0 (off)
  typical_p             float, 1.0 (off)
  repetition_penalty    float, 1.0 (off); over prompt and output tokens
  presence_penalty      float, 0.0
  frequency_penalty     float, 0.0
  no_repeat_ngram_size  int, 0 (off)
  logit_bias            dict[int, float], {}: added to a token's logit (-inf bans it)
  seed                  int or None (None: a random seed, reported in GenerationResult.seed)
  eos_token_id          int, list of ints, or None: extra ids that end generation
  use_model_eos         bool, True: the model's EOS ids end generation too
  stop_strings          str or list of str: text that ends generation (not returned)
  num_return_sequences  int, 1: sequences per prompt (generate_batch, best_of_n)

Values are checked when a generation starts (InvalidArgumentError naming the field).
Generator.generate / stream take these as keyword arguments too, overriding `config`.)doc");
    set_module(gc);
    gc.def(py::init([](const py::kwargs& kw) { return make_config(py::none(), kw); }),
           "Any of the fields as keyword arguments.");
    for (const char* f : kConfigFields) {
        const std::string name = f;
        gc.def_property(
            f, [name](const PyGenerationConfig& c) { return get_config_field(c, name); },
            [name](PyGenerationConfig& c, const py::object& v) { set_config_field(c, name, v); });
    }
    gc.def(
          "to_dict",
          [](const PyGenerationConfig& c) {
              py::dict d;
              for (const char* f : kConfigFields) d[f] = get_config_field(c, f);
              return d;
          },
          "The fields as a dict.")
        .def("__repr__", [](const PyGenerationConfig& c) {
            std::string s = "GenerationConfig(";
            bool first = true;
            for (const char* f : kConfigFields) {
                s += (first ? "" : ", ") + std::string(f) + "=" +
                     py::repr(get_config_field(c, f)).cast<std::string>();
                first = false;
            }
            return s + ")";
        });

    // --- GenerationResult ---
    py::class_<sl::GenerationResult> gr(m, "GenerationResult", "What one generation produced.");
    set_module(gr);
    gr.def_property_readonly(
          "text", [](const sl::GenerationResult& r) { return to_str(r.text); },
          "The generated text (without the EOS).")
        .def_readonly("tokens", &sl::GenerationResult::tokens,
                      "The new ids, the EOS that stopped generation included.")
        .def_property_readonly(
            "logprobs",
            [](const sl::GenerationResult& r) {
                return py::array_t<float>(py::ssize_t(r.logprobs.size()), r.logprobs.data());
            },
            "log p(token) of each new token under the model's own distribution (float32 array).")
        .def_readonly("seed", &sl::GenerationResult::seed, "The seed this sequence sampled with.")
        .def_property_readonly(
            "stop_string", [](const sl::GenerationResult& r) { return to_str(r.stop_string); },
            "The stop string that ended it (finish_reason 'stop_string'), else ''.")
        .def_property_readonly(
            "finish_reason",
            [](const sl::GenerationResult& r) { return sl::finish_reason_name(r.finish_reason); },
            "'eos', 'length', 'stop_string' or 'cancelled'.")
        .def("__repr__", [](const sl::GenerationResult& r) {
            return "<stackllama.GenerationResult " + std::to_string(r.tokens.size()) + " tokens, " +
                   sl::finish_reason_name(r.finish_reason) + ">";
        });

    // --- TokenLogProbs, ScoredAnswer ---
    py::class_<sl::TokenLogProbs> tl(m, "TokenLogProbs",
                                     "Log-probabilities of scored tokens (natural log).");
    set_module(tl);
    tl.def_readonly("tokens", &sl::TokenLogProbs::tokens, "The scored tokens.")
        .def_property_readonly(
            "logprobs",
            [](const sl::TokenLogProbs& t) {
                return py::array_t<float>(py::ssize_t(t.logprobs.size()), t.logprobs.data());
            },
            "log p(tokens[i] | all before it), a float32 array.")
        .def_readonly("sum", &sl::TokenLogProbs::sum, "The sum, accumulated in double.")
        .def("__repr__", [](const sl::TokenLogProbs& t) {
            return "<stackllama.TokenLogProbs " + std::to_string(t.tokens.size()) +
                   " tokens, sum " + std::to_string(t.sum) + ">";
        });
    py::class_<sl::ScoredAnswer> sa(m, "ScoredAnswer", "One answer of best_of_n.");
    set_module(sa);
    sa.def_readonly("answer", &sl::ScoredAnswer::answer, "The GenerationResult.")
        .def_property_readonly(
            "text", [](const sl::ScoredAnswer& a) { return to_str(a.answer.text); },
            "The answer's text.")
        .def_property_readonly(
            "reward",
            [](const sl::ScoredAnswer& a) {
                return py::array_t<float>(py::ssize_t(a.reward.size()), a.reward.data());
            },
            "The reward model's outputs (answers rank by reward[0]).")
        .def_readonly("index", &sl::ScoredAnswer::index,
                      "Place in generation order: it sampled with seed + index.")
        .def("__repr__", [](const sl::ScoredAnswer& a) {
            return "<stackllama.ScoredAnswer index " + std::to_string(a.index) + ", reward " +
                   (a.reward.empty() ? std::string("-") : std::to_string(a.reward[0])) + ">";
        });

    // --- TextStream ---
    py::class_<PyStream> ts(m, "TextStream", R"doc(
The iterator Generator.stream() returns: yields the text pieces of the answer as they are
generated. Generation runs on a worker thread a few pieces ahead of the reader. Leaving the loop
early (break, an exception, Ctrl-C) or dropping the iterator cancels the generation and frees the
Generator; close() does so explicitly. After the end, .result holds the GenerationResult.)doc");
    set_module(ts);
    ts.def("__iter__", [](py::object self) { return self; })
        .def("__next__", &PyStream::next)
        .def(
            "close",
            [](PyStream& s) {
                py::gil_scoped_release release;
                s.stop();
            },
            "Cancels the generation (if still running) and frees the Generator.")
        .def("__enter__", [](py::object self) { return self; })
        .def("__exit__",
             [](PyStream& s, py::object, py::object, py::object) {
                 py::gil_scoped_release release;
                 s.stop();
             })
        .def_property_readonly(
            "result",
            [](PyStream& s) -> py::object {
                std::lock_guard<std::mutex> lk(s.st->mu);
                if (!s.st->done || s.st->error) return py::none();
                return py::cast(s.st->result);
            },
            "The GenerationResult once the stream has ended, else None.");

    // --- Generator ---
    py::class_<sl::WorkerPool, std::shared_ptr<sl::WorkerPool>> pool(m, "WorkerPool", R"doc(
Worker threads that Generators share, so that several Generators running at once (on several
Python threads) compute on n_threads threads in all instead of n_threads each. A job of one
Generator uses every thread of the pool; jobs of Generators sharing it run one after another.

    pool = stackllama.WorkerPool(4)
    gens = [stackllama.Generator(model, pool=pool) for _ in range(8)])doc");
    set_module(pool);
    pool.def(py::init([](int n_threads) { return std::make_shared<sl::WorkerPool>(n_threads); }),
             "n_threads"_a = 0,
             "n_threads: 0 = the physical cores this process may run on, else 1 to 1024.")
        .def_property_readonly("n_threads", &sl::WorkerPool::n_threads,
                               "Threads the pool computes on, the calling thread included.")
        .def("__repr__", [](const sl::WorkerPool& p) {
            return "<stackllama.WorkerPool n_threads=" + std::to_string(p.n_threads()) + ">";
        });

    py::class_<PyGenerator> gen(m, "Generator", R"doc(
Runs a Model over one sequence: owns its KV cache and the adapters attached to it.

generate() and stream() start a new sequence by default (reset=True, as transformers'
generate does); reset=False continues after what the generator already holds. Use one
Generator per thread; many Generators may share one Model. The GIL is released while it
computes.)doc");
    set_module(gen);
    gen.def(py::init([](const PyModel& model, int n_ctx,
                        std::optional<std::shared_ptr<sl::WorkerPool>> pool) {
                sl::GeneratorParams p;
                p.n_ctx = n_ctx;
                if (pool) p.pool = *pool;
                py::gil_scoped_release release;
                return std::make_unique<PyGenerator>(model.model, p);
            }),
            "model"_a, "n_ctx"_a = sl::GeneratorParams{}.n_ctx, "pool"_a = py::none(),
            "Allocates the KV cache for n_ctx tokens (0 = the model's max_position_embeddings). "
            "pool: a WorkerPool shared with other Generators (None: threads of its own, the "
            "model's n_threads).")
        .def_property_readonly("n_ctx", [](const PyGenerator& g) { return g.gen.n_ctx(); })
        .def_property_readonly(
            "n_past", [](const PyGenerator& g) { return g.gen.n_past(); },
            "Tokens in the KV cache.")
        .def_property_readonly(
            "tokens", [](const PyGenerator& g) { return g.gen.tokens(); },
            "The ids in the KV cache.")
        .def(
            "reset",
            [](PyGenerator& g) {
                PyGenerator::Claim claim(&g);
                g.gen.reset();
            },
            "Forgets the sequence; adapters stay attached.")
        .def(
            "attach",
            [](PyGenerator& g, py::object adapter, float scale) {
                if (!py::isinstance<PyAdapter>(adapter))
                    throw py::type_error("attach: adapter must be an Adapter, got " +
                                         describe(adapter));
                PyGenerator::Claim claim(&g);
                g.gen.attach(adapter.cast<const PyAdapter&>().adapter, scale);
                g.attached.emplace_back(adapter, scale);
            },
            "adapter"_a, "scale"_a = 1.0f,
            "Applies a LoRA adapter, unmerged, with `scale` times its own scaling, from the next "
            "evaluated token on.")
        .def(
            "detach",
            [](PyGenerator& g, const PyAdapter& adapter) {
                PyGenerator::Claim claim(&g);
                g.gen.detach(*adapter.adapter);
                auto& v = g.attached;
                for (auto it = v.begin(); it != v.end(); ++it) {
                    if (it->first.cast<const PyAdapter&>().adapter == adapter.adapter) {
                        v.erase(it);
                        break;
                    }
                }
            },
            "adapter"_a, "Removes an attached adapter (InvalidArgumentError when not attached).")
        .def("detach_all",
             [](PyGenerator& g) {
                 PyGenerator::Claim claim(&g);
                 g.gen.detach_all();
                 g.attached.clear();
             })
        .def_property_readonly(
            "attached",
            [](const PyGenerator& g) {
                py::list l;
                for (const auto& [a, s] : g.attached) l.append(py::make_tuple(a, s));
                return l;
            },
            "The attached adapters as (Adapter, scale) pairs.")
        .def(
            "eval",
            [](PyGenerator& g, const std::vector<int32_t>& tokens, bool all_logits) {
                PyGenerator::Claim claim(&g);
                sl::LogitsView lv;
                {
                    py::gil_scoped_release release;
                    lv = g.gen.eval(tokens, all_logits);
                }
                return logits_array(lv, all_logits);
            },
            "tokens"_a, "all_logits"_a = false,
            "Appends tokens to the sequence and runs them through the model. Returns the logits "
            "of the last token as a float32 array [n_vocab], or with all_logits those of every "
            "token appended [len(tokens), n_vocab]. The array is a copy: the generator reuses its "
            "buffer.")
        .def(
            "generate",
            [](py::object self, const py::object& prompt, const py::object& config, bool raw,
               bool reset, const py::object& on_token, bool return_result,
               const py::kwargs& kwargs) -> py::object {
                PyGenerator& g = self.cast<PyGenerator&>();
                const PyGenerationConfig c = make_config(config, kwargs);
                sl::GenerationResult r =
                    run_generate(g, make_prompt(prompt, raw), c, reset, on_token);
                if (return_result) return py::cast(std::move(r));
                return to_str(r.text);
            },
            "prompt"_a, "config"_a = py::none(), py::kw_only(), "raw"_a = false, "reset"_a = true,
            "on_token"_a = py::none(), "return_result"_a = false, R"doc(
Generates an answer and returns its text (or, with return_result=True, a GenerationResult).

prompt: a question (wrapped as "Question: <prompt>\n\nAnswer: ", the StackLLaMA template) or,
  with raw=True, the exact text to continue; or a list of token ids (used as is).
config: a GenerationConfig; keyword arguments (max_new_tokens, do_sample, temperature, top_k,
  top_p, seed, eos_token_id, use_model_eos) override its fields.
reset: start a new sequence (default); False continues the generator's sequence.
on_token: called as on_token(piece, token_id) for every token (token -1: final text the decoder
  held back); return False to stop.
The GIL is released while generating; Ctrl-C (KeyboardInterrupt) or cancel() from another thread
stops it after the current token.)doc")
        .def(
            "stream",
            [](py::object self, const py::object& prompt, const py::object& config, bool raw,
               bool reset, const py::kwargs& kwargs) {
                PyGenerator& g = self.cast<PyGenerator&>();
                const PyGenerationConfig c = make_config(config, kwargs);
                auto s = std::make_unique<PyStream>();
                s->start(&g, self, make_prompt(prompt, raw), c, reset);
                return s;
            },
            "prompt"_a, "config"_a = py::none(), py::kw_only(), "raw"_a = false, "reset"_a = true,
            R"doc(
Like generate(), but returns an iterator (TextStream) of the text pieces as they are made:

    for piece in gen.stream("How do I sort a dict?", max_new_tokens=64):
        print(piece, end="", flush=True)

Errors (a bad option, a too-long prompt) are raised by the iteration. Dropping or closing the
iterator early cancels the generation.)doc")
        .def(
            "generate_batch",
            [](py::object self, const py::list& prompts, const py::object& config, bool raw,
               const py::object& on_token, const py::kwargs& kwargs) {
                PyGenerator& g = self.cast<PyGenerator&>();
                const PyGenerationConfig c = make_config(config, kwargs);
                return run_generate_batch(g, prompts, raw, c, on_token);
            },
            "prompts"_a, "config"_a = py::none(), py::kw_only(), "raw"_a = false,
            "on_token"_a = py::none(), R"doc(
num_return_sequences sequences for each prompt, decoded together (one forward pass per step
for all), as a list of GenerationResult: [p * n + j] is sequence j of prompt p, sampled with
seed + j (the same tokens as generate() on that prompt alone with that seed). Prompts are
questions (wrapped in the template) unless raw=True, or token id lists. on_token is called as
on_token(sequence, piece, token_id); returning False stops that sequence. Starts from, and
leaves, an empty sequence. The GIL is released; Ctrl-C and cancel() stop it.)doc")
        .def(
            "log_likelihood",
            [](PyGenerator& g, const py::object& prompt, const py::object& continuation) {
                PyGenerator::Claim claim(&g);
                if (py::isinstance<py::str>(prompt) && py::isinstance<py::str>(continuation)) {
                    const std::string p = prompt.cast<std::string>();
                    const std::string c = continuation.cast<std::string>();
                    py::gil_scoped_release release;
                    return g.gen.log_likelihood(std::string_view(p), std::string_view(c));
                }
                const auto p = token_ids(prompt, "log_likelihood: prompt");
                const auto c = token_ids(continuation, "log_likelihood: continuation");
                py::gil_scoped_release release;
                return g.gen.log_likelihood(p, c);
            },
            "prompt"_a, "continuation"_a, R"doc(
log p(continuation | prompt), per token and summed, as a TokenLogProbs. Both text (the
continuation's tokens are those of encode(prompt + continuation) past encode(prompt)'s) or both
token id lists. Starts from, and leaves, an empty sequence. The GIL is released.)doc")
        .def(
            "perplexity",
            [](PyGenerator& g, const py::object& text_or_ids) {
                PyGenerator::Claim claim(&g);
                if (py::isinstance<py::str>(text_or_ids)) {
                    const std::string t = text_or_ids.cast<std::string>();
                    py::gil_scoped_release release;
                    return g.gen.perplexity(std::string_view(t));
                }
                const auto ids = token_ids(text_or_ids, "perplexity: text");
                py::gil_scoped_release release;
                return g.gen.perplexity(ids);
            },
            "text"_a,
            "exp(-mean log p(token | tokens before)) of a text (encoded with BOS) or of ids.")
        .def(
            "reward",
            [](PyGenerator& g, const py::object& text_or_ids) {
                PyGenerator::Claim claim(&g);
                std::vector<float> r;
                if (py::isinstance<py::str>(text_or_ids)) {
                    const std::string t = text_or_ids.cast<std::string>();
                    py::gil_scoped_release release;
                    r = g.gen.reward(std::string_view(t));
                } else {
                    const auto ids = token_ids(text_or_ids, "reward: text");
                    py::gil_scoped_release release;
                    r = g.gen.reward(ids);
                }
                return py::array_t<float>(py::ssize_t(r.size()), r.data());
            },
            "text"_a, R"doc(
The reward model's score head on the last token of a text (encoded with BOS) or of ids: a
float32 array of num_labels values. The head is score.weight of a LlamaForSequenceClassification
model or the `score` module of an attached adapter; UnsupportedError when there is none.)doc")
        .def(
            "reward_batch",
            [](PyGenerator& g, const py::list& inputs) {
                PyGenerator::Claim claim(&g);
                std::vector<std::string> texts;
                std::vector<std::vector<int32_t>> ids;
                for (py::handle h : inputs) {
                    if (py::isinstance<py::str>(h))
                        texts.push_back(h.cast<std::string>());
                    else
                        ids.push_back(token_ids(h, "reward_batch: each input"));
                }
                if (!texts.empty() && !ids.empty())
                    throw py::type_error("reward_batch: inputs must be all text or all id lists");
                std::vector<std::vector<float>> rows;
                {
                    py::gil_scoped_release release;
                    rows = ids.empty() ? g.gen.reward_batch(texts) : g.gen.reward_batch(ids);
                }
                const size_t n_labels = rows.empty() ? 0 : rows[0].size();
                py::array_t<float> a({py::ssize_t(rows.size()), py::ssize_t(n_labels)});
                for (size_t i = 0; i < rows.size(); ++i)
                    std::memcpy(a.mutable_data(py::ssize_t(i)), rows[i].data(),
                                n_labels * sizeof(float));
                return a;
            },
            "inputs"_a,
            "Rewards of several texts (or id lists) run through the model together: a float32 "
            "array [len(inputs), num_labels]; each row equals reward() of that input alone, bit "
            "for bit.")
        .def(
            "best_of_n",
            [](py::object self, const std::string& prompt, const py::object& config,
               const py::object& reward_model, const py::object& policy_adapters,
               const py::object& reward_adapters, const py::kwargs& kwargs) {
                PyGenerator& g = self.cast<PyGenerator&>();
                const PyGenerationConfig c = make_config(config, kwargs);
                if (!reward_model.is_none()) {
                    if (!policy_adapters.is_none() || !reward_adapters.is_none())
                        throw py::type_error(
                            "best_of_n: give reward_model, or policy_adapters and "
                            "reward_adapters, not both");
                    PyGenerator& rm = reward_model.cast<PyGenerator&>();
                    PyGenerator::Claim claim(&g);
                    std::optional<PyGenerator::Claim> claim_rm;
                    if (&rm != &g) claim_rm.emplace(&rm);
                    py::gil_scoped_release release;
                    return sl::best_of_n(g.gen, rm.gen, prompt, c);
                }
                if (reward_adapters.is_none())
                    throw py::type_error(
                        "best_of_n needs reward_model=Generator, or reward_adapters=[...] (with "
                        "policy_adapters=[...]) to score with adapters on this generator");
                const auto policy = policy_adapters.is_none() ? std::vector<sl::AdapterRef>{}
                                                              : adapter_refs(policy_adapters);
                const auto reward = adapter_refs(reward_adapters);
                PyGenerator::Claim claim(&g);
                py::gil_scoped_release release;
                return sl::best_of_n(g.gen, policy, reward, prompt, c);
            },
            "prompt"_a, "config"_a = py::none(), py::kw_only(), "reward_model"_a = py::none(),
            "policy_adapters"_a = py::none(), "reward_adapters"_a = py::none(), R"doc(
Best-of-n: num_return_sequences answers to `prompt` (the exact text, no template), each scored
(prompt + answer) by a reward model, as a list of ScoredAnswer best first (by reward[0]; ties
keep generation order).

Either reward_model=another Generator (this one generates; the two may share a Model), or
policy_adapters / reward_adapters (Adapter or (Adapter, scale) lists) to generate and score on
this generator over one copy of the weights; the adapters attached before are restored.
The GIL is released.)doc")
        .def(
            "cancel", [](PyGenerator& g) { g.cancel_requested.store(true); },
            "Stops the generate() or stream() running on this generator after its current token "
            "(finish_reason 'cancelled'). Safe to call from any thread.");
    gen.attr("score") = gen.attr("log_likelihood");
}
