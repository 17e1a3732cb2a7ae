// Reward models: LlamaForSequenceClassification directories and causal bases with a SEQ_CLS LoRA
// adapter that saves `score`, against the float64 PyTorch reference (tests/reference/
// reward_ref.py, written by the CTest fixture step fixtures_generate into <fixtures>/generate).
#include <doctest/doctest.h>

#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "stackllama/stackllama.hpp"
#include "test_support.hpp"

namespace fs = std::filesystem;
using nlohmann::json;
using namespace stackllama;

namespace {

constexpr double kTolerance = 1e-4;

std::string dir() { return testing_support::fixture_dir() + "/generate"; }

json cases() {
    const std::string path = dir() + "/rewards.json";
    REQUIRE_MESSAGE(fs::exists(path), "missing " << path << " (run the fixtures_generate step)");
    return json::parse(testing_support::read_file(path)).at("cases");
}

std::shared_ptr<const Model> load(const std::string& name) {
    ModelParams p;
    p.load_tokenizer = false;
    return Model::load(dir() + "/" + name, p);
}

std::string error_of(const std::function<void()>& f, ErrorCode want) {
    try {
        f();
    } catch (const Error& e) {
        CHECK_MESSAGE(e.code() == want, "code " << error_code_name(e.code()) << ": " << e.what());
        return e.what();
    }
    FAIL("no error thrown");
    return "";
}

bool contains(const std::string& s, const std::string& what) {
    return s.find(what) != std::string::npos;
}

}  // namespace

TEST_CASE("reward of random SEQ_CLS fixtures equals the PyTorch reference") {
    int n_cases = 0;
    for (const json& c : cases()) {
        const std::string name = c.at("name");
        INFO("case " << name);
        auto model = load(c.at("model"));
        Generator gen(model);
        for (const json& a : c.at("adapters"))
            gen.attach(Adapter::load(model, dir() + "/" + a.at("dir").get<std::string>()),
                       a.at("scale").get<float>());
        const size_t labels = c.at("labels");
        if (c.at("adapters").empty()) {
            CHECK(model->config().architecture == "LlamaForSequenceClassification");
            CHECK(model->config().num_labels == int(labels));
        } else {
            CHECK(model->config().num_labels == 0);  // a causal base; the head is the adapter's
        }
        const auto inputs = c.at("inputs").get<std::vector<std::vector<int32_t>>>();
        const auto want = c.at("rewards").get<std::vector<std::vector<double>>>();
        std::vector<std::vector<float>> one_by_one;
        for (size_t i = 0; i < inputs.size(); ++i) {
            INFO("input " << i << " (" << inputs[i].size() << " tokens)");
            const std::vector<float> r = gen.reward(inputs[i]);
            REQUIRE(r.size() == labels);
            for (size_t k = 0; k < labels; ++k) {
                INFO("label " << k << ": stackllama " << r[k] << ", reference " << want[i][k]);
                CHECK(std::fabs(double(r[k]) - want[i][k]) <= kTolerance);
            }
            one_by_one.push_back(r);
        }
        // A batch (several inputs in one forward pass, each with its own cache) gives the same,
        // bit for bit.
        const auto batch = gen.reward_batch(inputs);
        REQUIRE(batch.size() == inputs.size());
        for (size_t i = 0; i < inputs.size(); ++i)
            for (size_t k = 0; k < labels; ++k)
                CHECK(batch[i][k] == one_by_one[i][k]);
        // In another order, and with repeats.
        std::vector<std::vector<int32_t>> shuffled = {inputs[3], inputs[0], inputs[3], inputs[2]};
        const auto again = gen.reward_batch(shuffled);
        for (size_t k = 0; k < labels; ++k) {
            CHECK(again[0][k] == one_by_one[3][k]);
            CHECK(again[1][k] == one_by_one[0][k]);
            CHECK(again[2][k] == one_by_one[3][k]);
            CHECK(again[3][k] == one_by_one[2][k]);
        }
        // reward() leaves the generator reset.
        CHECK(gen.n_past() == 0);
        ++n_cases;
    }
    CHECK(n_cases == 3);
}

TEST_CASE("reward_batch of more inputs than share one pass") {
    json c = cases().at(0);
    auto model = load(c.at("model"));
    Generator gen(model);
    const auto inputs = c.at("inputs").get<std::vector<std::vector<int32_t>>>();
    std::vector<std::vector<int32_t>> many;
    for (int rep = 0; rep < 5; ++rep)
        for (const auto& in : inputs) many.push_back(in);  // 20 inputs, several groups
    const auto got = gen.reward_batch(many);
    REQUIRE(got.size() == many.size());
    for (size_t i = 0; i < many.size(); ++i)
        CHECK(got[i][0] == got[i % inputs.size()][0]);
}

TEST_CASE("a SEQ_CLS adapter without its score tensor is refused, never given a random head") {
    auto base = load("base");
    Generator gen(base);
    auto noscore = Adapter::load(base, dir() + "/rm_adapter_noscore");
    CHECK(noscore->config().task_type == "SEQ_CLS");
    gen.attach(noscore);
    const std::vector<int32_t> ids = {1, 5, 9, 12};
    const std::string m = error_of([&] { gen.reward(ids); }, ErrorCode::format);
    CHECK(contains(m, "rm_adapter_noscore"));
    CHECK(contains(m, "score"));
    CHECK(contains(m, "SEQ_CLS"));
    // Generation with it attached still works (its LoRA applies to a causal base).
    GenerationConfig gc;
    gc.max_new_tokens = 2;
    CHECK_NOTHROW(gen.generate(ids, gc));
    // Next to the complete reward adapter it is still refused: it is attached without its head.
    gen.reset();
    gen.attach(Adapter::load(base, dir() + "/rm_adapter"));
    error_of([&] { gen.reward(ids); }, ErrorCode::format);
    gen.detach(*noscore);
    CHECK_NOTHROW(gen.reward(ids));
}

TEST_CASE("no score head at all: Error(unsupported) naming what to load") {
    auto base = load("base");
    Generator gen(base);
    const std::string m = error_of([&] { gen.reward({1, 2, 3}); }, ErrorCode::unsupported);
    CHECK(contains(m, "score"));
    CHECK(contains(m, "LlamaForSequenceClassification"));
    // A CAUSAL_LM adapter does not provide one.
    gen.attach(Adapter::load(base, dir() + "/policy_adapter"));
    error_of([&] { gen.reward({1, 2, 3}); }, ErrorCode::unsupported);
}

TEST_CASE("a reward model has no LM head: generation and eval are refused") {
    auto model = load("seqcls_f32");
    Generator gen(model);
    GenerationConfig gc;
    const std::string m = error_of([&] { gen.generate({1, 2}, gc); }, ErrorCode::unsupported);
    CHECK(contains(m, "LlamaForSequenceClassification"));
    CHECK(contains(m, "reward"));
    error_of([&] { gen.eval({1, 2}); }, ErrorCode::unsupported);
    error_of([&] { gen.log_likelihood({1}, {2}); }, ErrorCode::unsupported);
    error_of([&] { gen.generate_batch(std::vector<std::vector<int32_t>>{{1, 2}}, gc); }, ErrorCode::unsupported);
    CHECK_NOTHROW(gen.reward({1, 2}));
}

TEST_CASE("reward inputs are checked") {
    auto model = load("seqcls_f32");
    GeneratorParams gp;
    gp.n_ctx = 16;
    Generator gen(model, gp);
    error_of([&] { gen.reward(std::vector<int32_t>{}); }, ErrorCode::invalid_argument);
    const std::string m = error_of([&] { gen.reward({1, 100000}); }, ErrorCode::invalid_argument);
    CHECK(contains(m, "100000"));
    error_of([&] { gen.reward(std::vector<int32_t>(17, 3)); }, ErrorCode::out_of_range);
    const std::string b = error_of([&] { gen.reward_batch(std::vector<std::vector<int32_t>>{{1, 2}, {}}); },
                                   ErrorCode::invalid_argument);
    CHECK(contains(b, "input 1"));
}

TEST_CASE("LlamaForSequenceClassification config.json: num_labels, id2label, score.weight") {
    testing_support::TempDir tmp;
    const std::string src = dir() + "/seqcls_bf16_3";
    auto edit = [&](const std::function<void(json&)>& f) {
        const std::string d = tmp / ("m" + std::to_string(rand()));
        testing_support::copy_dir(src, d);
        json j = json::parse(testing_support::read_file(d + "/config.json"));
        f(j);
        testing_support::write_file(d + "/config.json", j.dump(2));
        return d;
    };
    ModelParams p;
    p.load_tokenizer = false;
    CHECK(Model::load(src, p)->config().num_labels == 3);
    {
        // num_labels stored alongside a matching id2label is fine.
        const std::string d = edit([](json& j) { j["num_labels"] = 3; });
        CHECK(Model::load(d, p)->config().num_labels == 3);
    }
    {
        const std::string d = edit([](json& j) { j["num_labels"] = 2; });
        const std::string m = error_of([&] { Model::load(d, p); }, ErrorCode::format);
        CHECK(contains(m, "num_labels"));
        CHECK(contains(m, "id2label"));
    }
    {
        // Without id2label, num_labels decides; a score of another size does not fit.
        const std::string d = edit([](json& j) {
            j.erase("id2label");
            j.erase("label2id");
            j["num_labels"] = 5;
        });
        const std::string m = error_of([&] { Model::load(d, p); }, ErrorCode::format);
        CHECK(contains(m, "score.weight"));
        CHECK(contains(m, "[3, 64]"));
    }
    {
        // Neither: transformers' default of two labels.
        const std::string d = edit([](json& j) {
            j.erase("id2label");
            j.erase("label2id");
        });
        const std::string m = error_of([&] { Model::load(d, p); }, ErrorCode::format);
        CHECK(contains(m, "[2, 64]"));
    }
    {
        // A causal checkpoint's tensors under a SEQ_CLS config: no score.weight.
        const std::string d = tmp / "causal_as_seqcls";
        testing_support::copy_dir(dir() + "/base", d);
        json j = json::parse(testing_support::read_file(d + "/config.json"));
        j["architectures"] = {"LlamaForSequenceClassification"};
        j["id2label"] = {{"0", "LABEL_0"}};
        testing_support::write_file(d + "/config.json", j.dump(2));
        const std::string m = error_of([&] { Model::load(d, p); }, ErrorCode::format);
        CHECK(contains(m, "missing tensor score.weight"));
        CHECK(contains(m, "LlamaForSequenceClassification"));
    }
}

TEST_CASE("a reward model saved (Hugging Face directory, native file) gives the same rewards") {
    auto model = load("seqcls_f32");
    const std::vector<int32_t> ids = {1, 5, 9, 2, 7};
    const std::vector<float> want = Generator(model).reward(ids);
    const fs::path tmp = fs::temp_directory_path() / ("sl_reward_save_" + std::to_string(::getpid()));
    fs::remove_all(tmp);
    ModelParams p;
    p.load_tokenizer = false;

    model->save_pretrained((tmp / "hf").string());
    auto hf = Model::load((tmp / "hf").string(), p);
    CHECK(hf->config().num_labels == model->config().num_labels);
    CHECK(Generator(hf).reward(ids) == want);  // the same f32 weights: bit for bit

    model->save_native((tmp / "rm.sllm").string());
    auto native = Model::load((tmp / "rm.sllm").string(), p);
    CHECK(Generator(native).reward(ids) == want);

    NativeSaveOptions q;
    q.convert = true;
    q.type = DType::q8;
    model->save_native((tmp / "rm_q8.sllm").string(), q);
    const std::vector<float> got = Generator(Model::load((tmp / "rm_q8.sllm").string(), p)).reward(ids);
    REQUIRE(got.size() == want.size());
    for (size_t i = 0; i < got.size(); ++i) CHECK(got[i] == doctest::Approx(want[i]).epsilon(0.05).scale(1.0));
    fs::remove_all(tmp);
}
