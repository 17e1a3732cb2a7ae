// The `stackllama` program as a user runs it: only generated text on stdout, exit codes.
#include <doctest/doctest.h>

#include "test_support.hpp"

using namespace testing_support;

TEST_CASE("cli: stories260K greedy output is llama2.c's expected text") {
    const std::string data = shared_data_or_skip("CLI golden output");
    if (data.empty()) return;
    const std::string dir = data + "/stories260K-hf";
    auto r = run_process({cli_path(), "-m", dir, "--raw", "-p", "", "-n", "200", "--temp", "0"});
    INFO(r.err);
    CHECK(r.exit_code == 0);
    CHECK(r.out == read_file(dir + "/expected_greedy_200.txt"));
}

TEST_CASE("cli: --tokenize prints the ids as one JSON array, BOS included") {
    const std::string data = shared_data_or_skip("CLI tokenize");
    if (data.empty()) return;
    const std::string dir = data + "/llama-tokenizer";
    auto r = run_process({cli_path(), "-m", dir, "--tokenize", "--raw", "-p", "Hello world"});
    INFO(r.err);
    CHECK(r.exit_code == 0);
    CHECK(r.out == "[1, 15043, 3186]\n");
    auto empty = run_process({cli_path(), "-m", dir, "--tokenize", "--raw", "-p", ""});
    CHECK(empty.out == "[1]\n");
    // Without --raw the prompt is wrapped in the StackLLaMA template.
    auto q = run_process({cli_path(), "-m", dir, "--tokenize", "-p", "Hi"});
    CHECK(q.exit_code == 0);
    CHECK(q.out.rfind("[1, 894, 29901", 0) == 0);  // "Question:"
}

TEST_CASE("cli: the question template and -n") {
    const std::string data = shared_data_or_skip("CLI question");
    if (data.empty()) return;
    const std::string dir = data + "/stories260K-hf";
    auto r = run_process({cli_path(), "-m", dir, "-p", "Who is Lily?", "-n", "5"});
    INFO(r.err);
    CHECK(r.exit_code == 0);
    CHECK(!r.out.empty());
    CHECK(r.out.find("Question:") == std::string::npos);  // the prompt is not echoed
}

TEST_CASE("cli: errors go to stderr with an exit status") {
    auto missing = run_process({cli_path(), "-m", "/nonexistent/model", "-p", "x"});
    CHECK(missing.exit_code == 1);
    CHECK(missing.out.empty());
    CHECK(missing.err.find("/nonexistent/model") != std::string::npos);

    auto usage = run_process({cli_path(), "-p", "x"});
    CHECK(usage.exit_code == 2);
    CHECK(usage.err.find("--model") != std::string::npos);

    auto bad_n = run_process({cli_path(), "-m", "x", "-n", "ten"});
    CHECK(bad_n.exit_code == 2);
    CHECK(bad_n.err.find("-n") != std::string::npos);

    // Below -1 (llama.cpp's "until EOS"), the message gives the range rather than "an integer".
    auto negative_n = run_process({cli_path(), "-m", "x", "-n", "-5"});
    CHECK(negative_n.exit_code == 2);
    CHECK(negative_n.err.find("-n expects an integer from -1 to 1000000000, got \"-5\"") !=
          std::string::npos);

    auto help = run_process({cli_path(), "--help"});
    CHECK(help.exit_code == 0);
    CHECK(help.out.find("--n-predict") != std::string::npos);
}

TEST_CASE("cli: a prompt longer than the context is refused") {
    const std::string data = shared_data_or_skip("CLI long prompt");
    if (data.empty()) return;
    const std::string dir = data + "/stories260K-hf";
    std::string long_prompt;
    for (int i = 0; i < 100; ++i) long_prompt += "Once upon a time ";
    auto r = run_process({cli_path(), "-m", dir, "--raw", "-p", long_prompt, "-c", "32"});
    CHECK(r.exit_code == 1);
    CHECK(r.out.empty());
    CHECK(r.err.find("context") != std::string::npos);
}

TEST_CASE("cli: the quick start's default model answers a question") {
    const std::string dir = tiny_model();
    if (dir.empty()) {
        MESSAGE("SKIP: built with STACKLLAMA_BUILD_TINY_MODEL=OFF");
        return;
    }
    auto r = run_process({cli_path(), "-m", dir, "-p", "How do I reverse a list in Python?", "-n",
                          "24", "-t", "2"});
    INFO(r.err);
    CHECK(r.exit_code == 0);
    CHECK(!r.out.empty());
    // Greedy decoding is deterministic: the same command prints the same text.
    auto again = run_process({cli_path(), "-m", dir, "-p", "How do I reverse a list in Python?",
                              "-n", "24", "-t", "1"});
    CHECK(again.out == r.out);
}

TEST_CASE("cli: --lora, --lora-scaled and --lora-merge") {
    const std::string dir = tiny_model();
    if (dir.empty()) {
        MESSAGE("SKIP: built with STACKLLAMA_BUILD_TINY_MODEL=OFF");
        return;
    }
    TempDir t;
    auto made = run_process({python(), source_dir() + "/tools/make_peft_adapter.py", t / "qv",
                             "--base", dir, "--target-modules", "q_proj,v_proj", "-r", "16",
                             "--lora-alpha", "32", "--strength", "2.0"});
    INFO(made.err);
    REQUIRE(made.exit_code == 0);
    const std::vector<std::string> base{cli_path(), "-m", dir, "-p", "What is a LoRA adapter?",
                                        "-n", "16"};
    auto with = [&](std::vector<std::string> extra) {
        std::vector<std::string> argv = base;
        argv.insert(argv.end(), extra.begin(), extra.end());
        return run_process(argv);
    };
    auto plain = with({});
    auto attached = with({"--lora", t / "qv"});
    auto merged = with({"--lora", t / "qv", "--lora-merge"});
    auto zero = with({"--lora-scaled", t / "qv", "0"});
    INFO(attached.err);
    CHECK(attached.exit_code == 0);
    CHECK(merged.exit_code == 0);
    CHECK(attached.out != plain.out);     // the adapter changes the answer
    CHECK(merged.out == attached.out);    // merging gives the same greedy answer
    CHECK(zero.out == plain.out);         // scale 0 is the base model
    auto missing = with({"--lora", t / "nope"});
    CHECK(missing.exit_code == 1);
    CHECK(missing.err.find("nope") != std::string::npos);
    auto lonely = run_process({cli_path(), "-m", dir, "--lora-merge"});
    CHECK(lonely.exit_code == 2);
}
