#include "args.hpp"

#include <cmath>
#include <stdexcept>

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
        throw std::invalid_argument(flag + " expects an integer, got \"" + v + "\"");
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
        } else if (a == "-t" || a == "--threads") {
            o.threads = to_int(a, value());
            if (o.threads < 0) throw std::invalid_argument("--threads must be >= 0");
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
           "      --temp T          temperature; 0 = greedy (default 0)\n"
           "      --tokenize        print the ids that would be fed to the model (BOS rules\n"
           "                        applied, template unless --raw) as a JSON array, and exit;\n"
           "                        loads only the tokenizer files\n"
           "      --lora DIR        apply a PEFT LoRA adapter directory (repeatable)\n"
           "      --lora-scaled DIR S  apply an adapter with its scale multiplied by S\n"
           "      --lora-merge      merge the adapters into the weights at load instead of\n"
           "                        applying them at run time\n"
           "  -t, --threads N       threads (default: all cores)\n"
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
