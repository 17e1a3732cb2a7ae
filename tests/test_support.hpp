// Shared helpers for the doctest executables: where the data is, temporary folders, running a
// process and reading files.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "stackllama/adapter.hpp"
#include "stackllama/model.hpp"

namespace testing_support {

// ../shared/data beside the source tree, or "" when absent. When absent, prints a SKIP line
// naming `what`; under CI (CI=true) a missing ../shared is a failure, not a skip.
std::string shared_data_or_skip(const char* what);

// Build-tree folder where CTest fixture steps write generated models and references.
std::string fixture_dir();
std::string source_dir();
std::string python();
std::string cli_path();
std::string converter_path();  // stackllama-convert
// The build's default model (random weights, own tokenizer), or "" when not built.
std::string tiny_model();

std::string read_file(const std::string& path);
void write_file(const std::string& path, const std::string& bytes);
std::vector<float> read_f32(const std::string& path);
bool exists(const std::string& path);

// A fresh folder removed with its contents on destruction.
struct TempDir {
    TempDir();
    ~TempDir();
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    std::string path;
    std::string operator/(const std::string& name) const { return path + "/" + name; }
};

// Copies a directory tree (files only) from src to dst.
void copy_dir(const std::string& src, const std::string& dst);

struct ProcessResult {
    int exit_code = -1;
    std::string out;
    std::string err;
};
// Runs argv without a shell; captures stdout and stderr.
ProcessResult run_process(const std::vector<std::string>& argv);

// Logits of `ids` run as one prefill (every position), then of the same ids decoded one by one,
// with `adapters` attached: both paths of the forward pass, concatenated.
std::vector<float> all_logits(const std::shared_ptr<const stackllama::Model>& m,
                              const std::vector<int32_t>& ids,
                              const std::vector<stackllama::AdapterRef>& adapters = {});
// BOS and 23 ids spread over [0, vocab).
std::vector<int32_t> some_ids(int vocab);
// Whitespace-separated ids from a text file (stories260K's expected_greedy_200_ids.txt).
std::vector<int32_t> read_ids(const std::string& path);

}  // namespace testing_support
