// One Model shared by many Generators on many threads (include/stackllama/model.hpp: "a Model is
// immutable after load and may be shared by any number of Generators on any threads").
//
// Every job (its own adapters with their own scales, its own prompt, greedy or seeded sampling)
// is first run alone, one after another, to record its tokens and the logits of every step; the
// same jobs are then run by 8 Generators on 8 threads at once, several rounds each, and must give
// the same tokens and bit-identical logits. A second test has one generator attach and detach
// adapters in a loop while another, on the same model and adapters, runs a fixed job: the latter
// never sees a difference. The same 8 threads again with every Generator on one shared WorkerPool,
// and a count of the process's threads: Generators given a pool start none of their own. Run under
// ThreadSanitizer by the tsan preset (CMakePresets.json).
//
// Material: the adapter fixtures (<fixtures>/adapters, tests/reference/make_adapter_fixtures.py)
// when present, else the gqa_f32 model fixture with adapters written by tools/make_peft_adapter.py
// into a temporary folder.
#include <doctest/doctest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "stackllama/adapter.hpp"
#include "stackllama/error.hpp"
#include "stackllama/generator.hpp"
#include "stackllama/model.hpp"
#include "stackllama/worker_pool.hpp"
#include "test_support.hpp"

namespace fs = std::filesystem;
using stackllama::Adapter;
using stackllama::GenerationConfig;
using stackllama::Generator;
using stackllama::GeneratorParams;
using stackllama::Model;

namespace {

constexpr int kThreads = 8;
constexpr int kRounds = 3;         // each thread runs its job this many times
constexpr int kGreedySteps = 10;   // tokens decoded one eval() at a time
constexpr int kGenerateTokens = 6; // then generate() continues

struct Material {
    std::shared_ptr<testing_support::TempDir> tmp;  // holds generated adapters, if any
    std::string base;
    std::vector<std::string> adapter_dirs;  // at least 4, all fitting `base`
    std::string origin;
};

Material find_material() {
    Material m;
    const std::string fx = testing_support::fixture_dir() + "/adapters";
    const std::vector<std::string> names = {"qv_r16",   "all7_r4",     "rslora",
                                            "patterns", "mts_lm_head", "layers_1"};
    bool all = fs::is_regular_file(fx + "/fixture.json") &&
               fs::is_regular_file(fx + "/base/config.json");
    for (const auto& n : names) all = all && fs::is_directory(fx + "/adapters/" + n);
    if (all) {
        m.base = fx + "/base";
        for (const auto& n : names) m.adapter_dirs.push_back(fx + "/adapters/" + n);
        m.origin = "adapter fixtures in " + fx;
        return m;
    }
    m.base = testing_support::fixture_dir() + "/models/gqa_f32";
    REQUIRE_MESSAGE(fs::is_regular_file(m.base + "/config.json"),
                    "fixture checkpoint " << m.base << " is missing: run the CTest fixture step "
                                          << "fixtures_models");
    m.tmp = std::make_shared<testing_support::TempDir>();
    const std::string tool = testing_support::source_dir() + "/tools/make_peft_adapter.py";
    struct Spec {
        const char* name;
        std::vector<std::string> args;
    };
    const std::vector<Spec> specs = {
        {"qv_r16", {"--target-modules", "q_proj,v_proj", "-r", "16", "--lora-alpha", "32"}},
        {"all7_r4",
         {"--target-modules", "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj", "-r",
          "4", "--lora-alpha", "8"}},
        {"rslora", {"--target-modules", "k_proj,o_proj,down_proj", "-r", "9", "--lora-alpha", "6",
                    "--use-rslora", "--dtype", "bf16"}},
        {"mts_lm_head", {"--target-modules", "v_proj", "-r", "2", "--modules-to-save", "lm_head"}},
    };
    int seed = 1;
    for (const Spec& s : specs) {
        const std::string out = *m.tmp / s.name;
        std::vector<std::string> argv = {testing_support::python(), tool, "--base", m.base,
                                         "--seed", std::to_string(seed++)};
        argv.insert(argv.end(), s.args.begin(), s.args.end());
        argv.push_back(out);
        const auto r = testing_support::run_process(argv);
        REQUIRE_MESSAGE(r.exit_code == 0, "make_peft_adapter.py " << s.name << " failed:\n"
                                                                  << r.out << r.err);
        m.adapter_dirs.push_back(out);
    }
    m.origin = "gqa_f32 with adapters from tools/make_peft_adapter.py";
    return m;
}

// What one job does: which adapters (index into the loaded list) at which scale, which prompt,
// and whether generate() samples (with its own seed) or is greedy.
struct Job {
    std::vector<std::pair<size_t, float>> adapters;
    std::vector<int32_t> prompt;
    bool sample = false;
    uint64_t seed = 0;
};

// What a job produced: every token and the logits of every evaluated position.
struct Trace {
    std::vector<int32_t> tokens;
    std::vector<float> logits;
};

std::vector<Job> make_jobs(size_t n_adapters, int vocab) {
    std::vector<Job> jobs(kThreads);
    for (int i = 0; i < kThreads; ++i) {
        Job& j = jobs[size_t(i)];
        j.prompt.push_back(1);  // BOS
        for (int k = 0; k < 5 + 3 * i; ++k) j.prompt.push_back(int32_t((i * 37 + k * 11 + 3) % vocab));
        j.sample = i % 2 == 1;
        j.seed = 1000 + uint64_t(i);
    }
    const auto a = [&](size_t k) { return k % n_adapters; };
    // job 0: the base model alone; the others mix adapters and scales, some shared.
    jobs[1].adapters = {{a(0), 1.0f}};
    jobs[2].adapters = {{a(1), 0.5f}};
    jobs[3].adapters = {{a(0), 0.75f}, {a(1), 1.25f}};
    jobs[4].adapters = {{a(2), 1.0f}};
    jobs[5].adapters = {{a(3), -0.5f}};
    jobs[6].adapters = {{a(2), 2.0f}, {a(0), 0.25f}};
    jobs[7].adapters = {{a(3), 1.0f}, {a(1), 0.3f}};
    return jobs;
}

GenerationConfig generation_config(const Job& job) {
    GenerationConfig cfg;
    cfg.max_new_tokens = kGenerateTokens;
    cfg.use_model_eos = false;  // a fixed number of tokens
    if (job.sample) {
        cfg.do_sample = true;
        cfg.temperature = 0.9f;
        cfg.top_k = 40;
        cfg.seed = job.seed;
    }
    return cfg;
}

// Runs `job` on `g` (which must hold no sequence and no adapters): attach, prefill with all
// logits, greedy steps through eval(), then generate(); detaches at the end.
Trace run_job(Generator& g, const Job& job,
              const std::vector<std::shared_ptr<const Adapter>>& adapters) {
    for (const auto& [k, scale] : job.adapters) g.attach(adapters[k], scale);
    Trace t;
    auto lv = g.eval(job.prompt, /*all_logits=*/true);
    t.logits.insert(t.logits.end(), lv.data, lv.data + lv.rows * lv.n_vocab);
    for (int s = 0; s < kGreedySteps; ++s) {
        const float* row = lv.row(lv.rows - 1);
        const int32_t next = int32_t(std::max_element(row, row + lv.n_vocab) - row);
        t.tokens.push_back(next);
        lv = g.eval({next});
        t.logits.insert(t.logits.end(), lv.data, lv.data + lv.n_vocab);
    }
    const auto r = g.generate(std::vector<int32_t>{}, generation_config(job));
    t.tokens.insert(t.tokens.end(), r.tokens.begin(), r.tokens.end());
    g.detach_all();
    g.reset();
    return t;
}

// "" when equal, else where they first differ.
std::string compare(const Trace& want, const Trace& got) {
    if (want.tokens != got.tokens) {
        size_t i = 0;
        while (i < want.tokens.size() && i < got.tokens.size() && want.tokens[i] == got.tokens[i])
            ++i;
        return "tokens differ from index " + std::to_string(i);
    }
    if (want.logits.size() != got.logits.size()) return "different numbers of logits";
    for (size_t i = 0; i < want.logits.size(); ++i) {
        if (std::memcmp(&want.logits[i], &got.logits[i], sizeof(float)) != 0) {
            return "logit " + std::to_string(i) + " of " + std::to_string(want.logits.size()) +
                   " is " + std::to_string(got.logits[i]) + " instead of " +
                   std::to_string(want.logits[i]) + " (the first difference)";
        }
    }
    return "";
}

struct Loaded {
    Material material;
    std::shared_ptr<const Model> model;
    std::vector<std::shared_ptr<const Adapter>> adapters;
};

// The model once, and the adapters loaded on one thread each, at the same time.
Loaded load_all() {
    Loaded l;
    l.material = find_material();
    MESSAGE("material: " << l.material.origin);
    stackllama::ModelParams p;
    p.load_tokenizer = false;
    p.n_threads = 2;  // each Generator has a pool of 2 (its caller and one worker)
    l.model = Model::load(l.material.base, p);
    l.adapters.resize(l.material.adapter_dirs.size());
    std::vector<std::string> errors(l.adapters.size());
    std::vector<std::thread> threads;
    for (size_t i = 0; i < l.adapters.size(); ++i) {
        threads.emplace_back([&, i] {
            try {
                l.adapters[i] = Adapter::load(l.model, l.material.adapter_dirs[i]);
            } catch (const std::exception& e) {
                errors[i] = e.what();
            }
        });
    }
    for (auto& t : threads) t.join();
    for (size_t i = 0; i < errors.size(); ++i)
        REQUIRE_MESSAGE(errors[i].empty(), l.material.adapter_dirs[i] << ": " << errors[i]);
    return l;
}

// Each job on its own thread kRounds times, all at once, against `want`; with `pool`, every
// thread's Generator computes on that one shared pool.
void check_concurrent(const Loaded& l, const std::vector<Job>& jobs, const std::vector<Trace>& want,
                      const std::shared_ptr<stackllama::WorkerPool>& pool) {
    GeneratorParams params;
    params.pool = pool;
    // Each thread makes its own Generator and runs its job kRounds times, with an adapter attached
    // and detached in between (on that thread's generator only).
    std::vector<std::vector<std::string>> failures(jobs.size());
    std::atomic<int> ready{0};
    std::vector<std::thread> threads;
    for (size_t i = 0; i < jobs.size(); ++i) {
        threads.emplace_back([&, i] {
            try {
                Generator g(l.model, params);
                ready.fetch_add(1);
                while (ready.load() < int(jobs.size())) std::this_thread::yield();
                for (int round = 0; round < kRounds; ++round) {
                    const Trace got = run_job(g, jobs[i], l.adapters);
                    const std::string diff = compare(want[i], got);
                    if (!diff.empty())
                        failures[i].push_back("round " + std::to_string(round) + ": " + diff);
                    // Churn between rounds: attach, evaluate, detach.
                    g.attach(l.adapters[(i + size_t(round)) % l.adapters.size()], 0.5f);
                    g.eval({1, 2, 3});
                    g.detach_all();
                    g.reset();
                }
            } catch (const std::exception& e) {
                failures[i].push_back(std::string("threw: ") + e.what());
            }
        });
    }
    for (auto& t : threads) t.join();
    for (size_t i = 0; i < jobs.size(); ++i) {
        std::string all;
        for (const auto& f : failures[i]) all += "\n  " + f;
        CHECK_MESSAGE(failures[i].empty(), "job " << i << " on its own thread:" << all);
    }
}

// The reference: each job alone, one after another, on a fresh Generator.
std::vector<Trace> sequential_traces(const Loaded& l, const std::vector<Job>& jobs) {
    std::vector<Trace> want;
    for (const Job& job : jobs) {
        Generator g(l.model);
        want.push_back(run_job(g, job, l.adapters));
    }
    return want;
}

}  // namespace

TEST_CASE("8 generators on 8 threads give the tokens and logits of the same runs done in turn") {
    Loaded l = load_all();
    const int vocab = l.model->config().vocab_size;
    const std::vector<Job> jobs = make_jobs(l.adapters.size(), vocab);
    const std::vector<Trace> want = sequential_traces(l, jobs);
    // The adapters do change the output (else this test would prove little).
    for (size_t i = 1; i < jobs.size(); ++i)
        CHECK_MESSAGE(!compare(want[0], want[i]).empty(), "job " << i << " equals the base job");
    check_concurrent(l, jobs, want, nullptr);
    MESSAGE(jobs.size() << " jobs x " << kRounds << " rounds on " << jobs.size()
                        << " threads matched the sequential runs bit for bit");
}

TEST_CASE("8 generators on 8 threads sharing one WorkerPool give the same tokens and logits") {
    Loaded l = load_all();
    const std::vector<Job> jobs = make_jobs(l.adapters.size(), l.model->config().vocab_size);
    const std::vector<Trace> want = sequential_traces(l, jobs);
    // As many threads as each Generator would own, so OpenBLAS runs with the same count.
    auto pool = std::make_shared<stackllama::WorkerPool>(l.model->n_threads());
    check_concurrent(l, jobs, want, pool);
    CHECK(pool.use_count() == 1);  // the Generators are gone and no longer hold it
    MESSAGE(jobs.size() << " jobs x " << kRounds << " rounds on one pool of " << pool->n_threads()
                        << " threads matched the sequential runs bit for bit");
}

TEST_CASE("attaching and detaching on one generator never changes another's output") {
    Loaded l = load_all();
    const int vocab = l.model->config().vocab_size;
    const std::vector<Job> jobs = make_jobs(l.adapters.size(), vocab);
    const Job& fixed = jobs[3];  // two adapters, shared with the churning generator

    Generator ref_gen(l.model);
    const Trace want = run_job(ref_gen, fixed, l.adapters);

    SUBCASE("interleaved on one thread") {
        Generator a(l.model), b(l.model);
        for (const auto& [k, scale] : fixed.adapters) b.attach(l.adapters[k], scale);
        Trace got;
        auto lv = b.eval(fixed.prompt, true);
        got.logits.assign(lv.data, lv.data + lv.rows * lv.n_vocab);
        for (int s = 0; s < kGreedySteps; ++s) {
            // Between every step of b, a changes its own adapters and runs.
            a.attach(l.adapters[size_t(s) % l.adapters.size()], float(s) - 3.0f);
            if (s % 3 == 0) a.attach(l.adapters[(size_t(s) + 1) % l.adapters.size()], 2.0f);
            a.eval({int32_t(s % vocab)});
            if (s % 2) a.detach(*l.adapters[size_t(s) % l.adapters.size()]);
            else a.detach_all();
            const float* row = lv.row(lv.rows - 1);
            const int32_t next = int32_t(std::max_element(row, row + lv.n_vocab) - row);
            got.tokens.push_back(next);
            lv = b.eval({next});
            got.logits.insert(got.logits.end(), lv.data, lv.data + lv.n_vocab);
            a.detach_all();
            a.reset();
        }
        const auto r = b.generate(std::vector<int32_t>{}, generation_config(fixed));
        got.tokens.insert(got.tokens.end(), r.tokens.begin(), r.tokens.end());
        const std::string diff = compare(want, got);
        CHECK_MESSAGE(diff.empty(), diff);
    }

    SUBCASE("concurrently on two threads") {
        std::atomic<bool> stop{false};
        std::atomic<int> churned{0};
        std::string churn_error;
        std::thread churn([&] {
            try {
                Generator a(l.model);
                for (uint64_t n = 0; !stop.load(); ++n, churned.fetch_add(1)) {
                    for (size_t k = 0; k < l.adapters.size(); ++k) {
                        a.attach(l.adapters[k], float(n % 5) - 2.0f);
                        a.eval({int32_t((n + k) % size_t(vocab))});
                    }
                    a.detach(*l.adapters[n % l.adapters.size()]);
                    a.eval({1});
                    a.detach_all();
                    a.reset();
                }
            } catch (const std::exception& e) {
                churn_error = e.what();
            }
        });
        std::vector<std::string> diffs;
        {
            // At least 4 rounds, and on until the other thread has churned 20 times.
            Generator b(l.model);
            for (int round = 0; round < 4 || (churned.load() < 20 && round < 400); ++round) {
                const std::string diff = compare(want, run_job(b, fixed, l.adapters));
                if (!diff.empty()) diffs.push_back("round " + std::to_string(round) + ": " + diff);
            }
        }
        stop = true;
        churn.join();
        CHECK_MESSAGE(churn_error.empty(), "the churning generator threw: " << churn_error);
        std::string all;
        for (const auto& d : diffs) all += "\n  " + d;
        CHECK_MESSAGE(diffs.empty(), "the fixed job changed while another generator churned:"
                                         << all);
    }
}

namespace {

// Threads of this process (Linux /proc/self/status), 0 where it cannot be read.
int process_threads() {
    std::ifstream status("/proc/self/status");
    std::string key;
    while (status >> key) {
        if (key == "Threads:") {
            int n = 0;
            status >> n;
            return n;
        }
        status.ignore(1 << 16, '\n');
    }
    return 0;
}

}  // namespace

TEST_CASE("Generators given one WorkerPool start no threads of their own") {
    Loaded l = load_all();
    if (process_threads() == 0) {
        MESSAGE("SKIP: /proc/self/status cannot be read here");
        return;
    }
    // OpenBLAS starts threads (up to the largest count a Generator asked for) once and keeps
    // them: a first Generator on a pool as large as any below makes that count, before anything
    // is counted.
    {
        GeneratorParams warm_params;
        const int most = std::max(3, l.model->n_threads());
        warm_params.pool = std::make_shared<stackllama::WorkerPool>(most);
        Generator warm(l.model, warm_params);
    }
    const int before = process_threads();
    auto pool = std::make_shared<stackllama::WorkerPool>(3);
    CHECK(pool->n_threads() == 3);
    CHECK(process_threads() == before + 2);  // the caller is the third
    GeneratorParams params;
    params.pool = pool;
    std::vector<std::unique_ptr<Generator>> shared;
    for (int i = 0; i < 4; ++i) shared.push_back(std::make_unique<Generator>(l.model, params));
    CHECK(process_threads() == before + 2);
    // A Generator without a pool makes its own: the model's n_threads, less the caller.
    Generator own(l.model);
    CHECK(process_threads() == before + 2 + (l.model->n_threads() - 1));
    shared.clear();
    params.pool.reset();
    CHECK(pool.use_count() == 1);
    pool.reset();  // the last holder gone: its workers are joined
    CHECK(process_threads() == before + (l.model->n_threads() - 1));
}
