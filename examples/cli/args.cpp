#include "args.hpp"

#include <cmath>
#include <stdexcept>

#include "stackllama/model.hpp"

namespace stackllama_cli {

namespace {

int to_int(const std::string& flag, const std::string& v) {
    size_t pos = 0;
    long long x = 0;
    try {
        x = std::stoll(v, &pos);
    } catch (const std::exception&) {
        pos = 0;
    }
    if (pos != v.size() || v.empty() || x < -1 || x > 1000000000)
        throw std::invalid_argument(flag + " expects an integer from -1 to 1000000000, got \"" + v +
                                    "\"");
    return static_cast<int>(x);
}

float to_float(const std::string& flag, const std::string& v) {
    size_t pos = 0;
    float x = 0;
    try {
        x = std::stof(v, &pos);
    } catch (const std::exception&) {
        pos = 0;
    }
    if (pos != v.size() || v.empty() || !std::isfinite(x))
        throw std::invalid_argument(flag + " expects a number, got \"" + v + "\"");
    return x;
}

uint64_t to_u64(const std::string& flag, const std::string& v) {
    size_t pos = 0;
    unsigned long long x = 0;
    try {
        x = std::stoull(v, &pos);
    } catch (const std::exception&) {
        pos = 0;
    }
    if (pos != v.size() || v.empty() || v[0] == '-' || v[0] == '+')
        throw std::invalid_argument(flag + " expects a non-negative integer, got \"" + v + "\"");
    return static_cast<uint64_t>(x);
}

std::string str(float x) {
    std::string s = std::to_string(x);
    while (s.size() > 1 && s.back() == '0') s.pop_back();
    if (!s.empty() && s.back() == '.') s.pop_back();
    return s;
}

}  // namespace

Options parse_args(const std::vector<std::string>& args) {
    Options o;
    for (size_t i = 0; i < args.size(); ++i) {
        const std::string& a = args[i];
        auto value = [&]() -> const std::string& {
            if (i + 1 >= args.size()) throw std::invalid_argument(a + " needs a value");
            return args[++i];
        };
        if (a == "-m" || a == "--model") {
            o.model = value();
        } else if (a == "-p" || a == "--prompt") {
            o.prompt = value();
            o.prompt_set = true;
        } else if (a == "-n" || a == "--n-predict") {
            o.n_predict = to_int(a, value());
        } else if (a == "--temp") {
            o.temp = to_float(a, value());
            if (o.temp < 0) throw std::invalid_argument("--temp must be >= 0, got " + args[i]);
        } else if (a == "--top-k") {
            o.top_k = to_int(a, value());
            if (o.top_k < 0) throw std::invalid_argument("--top-k must be >= 0 (0 = off)");
        } else if (a == "--top-p") {
            o.top_p = to_float(a, value());
            if (!(o.top_p > 0.0f && o.top_p <= 1.0f))
                throw std::invalid_argument("--top-p must be in (0, 1], got " + str(o.top_p));
        } else if (a == "--min-p") {
            o.min_p = to_float(a, value());
            if (!(o.min_p >= 0.0f && o.min_p <= 1.0f))
                throw std::invalid_argument("--min-p must be in [0, 1], got " + str(o.min_p));
        } else if (a == "--repeat-penalty") {
            o.repeat_penalty = to_float(a, value());
            if (!(o.repeat_penalty > 0.0f))
                throw std::invalid_argument("--repeat-penalty must be > 0 (1 = off), got " +
                                            str(o.repeat_penalty));
        } else if (a == "--seed") {
            o.seed = to_u64(a, value());
            o.seed_set = true;
        } else if (a == "--stop") {
            o.stops.push_back(value());
            if (o.stops.back().empty()) throw std::invalid_argument("--stop needs a non-empty text");
        } else if (a == "--ignore-eos") {
            o.ignore_eos = true;
        } else if (a == "--best-of") {
            o.best_of = to_int(a, value());
            if (o.best_of < 1) throw std::invalid_argument("--best-of must be >= 1");
        } else if (a == "--reward-lora") {
            o.reward_loras.push_back({value(), 1.0f});
        } else if (a == "--reward-model") {
            o.reward_model = value();
        } else if (a == "-t" || a == "--threads") {
            o.threads = to_int(a, value());
            if (o.threads < 0) throw std::invalid_argument("--threads must be >= 0");
        } else if (a == "--quantize") {
            o.quantize = value();
            if (!stackllama::parse_dtype_name(o.quantize, nullptr))
                throw std::invalid_argument("--quantize must be q8, q4, f16, bf16 or f32, got " +
                                            o.quantize);
        } else if (a == "-c" || a == "--ctx-size") {
            o.ctx_size = to_int(a, value());
            if (o.ctx_size < 0) throw std::invalid_argument("--ctx-size must be >= 0");
        } else if (a == "--lora") {
            o.loras.push_back({value(), 1.0f});
        } else if (a == "--lora-scaled") {
            std::string dir = value();
            o.loras.push_back({dir, to_float(a, value())});
        } else if (a == "--lora-merge") {
            o.lora_merge = true;
        } else if (a == "--no-bundled-lora") {
            o.no_bundled_lora = true;
        } else if (a == "--raw") {
            o.raw = true;
        } else if (a == "--tokenize") {
            o.tokenize = true;
        } else if (a == "-v" || a == "--verbose") {
            o.verbose = true;
        } else if (a == "-h" || a == "--help") {
            o.help = true;
        } else {
            throw std::invalid_argument("unknown argument " + a + " (see --help)");
        }
    }
    if (!o.help && o.model.empty()) throw std::invalid_argument("-m/--model DIR is required");
    if (o.lora_merge && o.loras.empty())
        throw std::invalid_argument("--lora-merge needs at least one --lora or --lora-scaled");
    const bool reward = !o.reward_loras.empty() || !o.reward_model.empty();
    if (o.best_of > 1 && !reward)
        throw std::invalid_argument("--best-of " + std::to_string(o.best_of) +
                                    " needs a reward model: --reward-lora DIR (an adapter with a "
                                    "score head) and/or --reward-model DIR");
    if (reward && o.best_of > 1 && o.temp <= 0.0f)
        throw std::invalid_argument("--best-of " + std::to_string(o.best_of) +
                                    " needs sampling: give --temp T > 0 (greedy answers would "
                                    "all be the same)");
    if (o.lora_merge && !o.reward_loras.empty() && o.reward_model.empty())
        throw std::invalid_argument("--lora-merge cannot be combined with --reward-lora on the "
                                    "same model (the reward adapter must see the base weights); "
                                    "drop --lora-merge or give --reward-model DIR");
    if (reward && o.tokenize)
        throw std::invalid_argument("--tokenize cannot be combined with --best-of / --reward-*");
    return o;
}

std::string usage(const std::string& program) {
    return "usage: " + program + " -m DIR [options]\n"
           "\n"
           "Answers a question with a LLaMA model in Hugging Face layout. Only the generated\n"
           "text goes to stdout; diagnostics go to stderr.\n"
           "\n"
           "  -m, --model DIR       model directory (config.json, *.safetensors, tokenizer.model)\n"
           "  -p, --prompt TEXT     the question (default: empty)\n"
           "      --raw             feed the prompt as is; without it the prompt is wrapped as\n"
           "                        \"Question: TEXT\\n\\nAnswer: \"\n"
           "  -n, --n-predict N     new tokens to generate (default -1: until EOS or the context\n"
           "                        is full)\n"
           "      --temp T          temperature; 0 = greedy (default 0); > 0 samples\n"
           "      --top-k N         sample from the N most likely tokens; 0 = off (default 50)\n"
           "      --top-p P         nucleus sampling: the smallest set of tokens with mass P;\n"
           "                        1 = off (default 1)\n"
           "      --min-p P         drop tokens less likely than P x the top token; 0 = off\n"
           "      --repeat-penalty F  CTRL repetition penalty over prompt and output; 1 = off\n"
           "      --seed N          sampling seed (default: random); the same seed gives the\n"
           "                        same text on any machine\n"
           "      --stop STR        stop before the text STR (repeatable; not printed)\n"
           "      --ignore-eos      do not stop at the end-of-sequence token\n"
           "      --best-of N       sample N answers together and print the one the reward\n"
           "                        model scores highest (needs --temp > 0 and a reward model)\n"
           "      --reward-lora DIR reward adapter (PEFT SEQ_CLS with a score head), applied\n"
           "                        to the reward model (repeatable)\n"
           "      --reward-model DIR  reward model directory (LlamaForSequenceClassification,\n"
           "                        or a base for --reward-lora); default: the -m model\n"
           "      --tokenize        print the ids that would be fed to the model (BOS rules\n"
           "                        applied, template unless --raw) as a JSON array, and exit;\n"
           "                        loads only the tokenizer files\n"
           "      --lora DIR        apply a PEFT LoRA adapter directory (repeatable)\n"
           "      --lora-scaled DIR S  apply an adapter with its scale multiplied by S\n"
           "      --lora-merge      merge the adapters into the weights at load instead of\n"
           "                        applying them at run time\n"
           "      --no-bundled-lora do not apply the adapters a native file carries unmerged\n"
           "                        (stackllama-convert --keep-lora; applied by default)\n"
           "      --quantize T      convert the weights at load: q8 (8.5 bits per weight),\n"
           "                        q4 (4.5 bits), or f16, bf16, f32 (default: as stored)\n"
           "  -t, --threads N       threads (default: the physical cores)\n"
           "  -c, --ctx-size N      context length (default: the model's maximum)\n"
           "  -v, --verbose         print load and speed figures on stderr\n"
           "  -h, --help            this text\n"
           "\n"
           "Exit status: 0 success, 1 error (message on stderr), 2 bad arguments.\n";
}

std::string wrap_question(const std::string& question) {
    return "Question: " + question + "\n\nAnswer: ";
}

}  // namespace stackllama_cli
