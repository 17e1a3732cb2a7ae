#include "test_support.hpp"

#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "stackllama/generator.hpp"

namespace fs = std::filesystem;

namespace testing_support {

std::string shared_data_or_skip(const char* what) {
    std::string dir = STACKLLAMA_SHARED_DATA;
    if (fs::is_directory(dir)) return dir;
    const char* ci = std::getenv("CI");
    if (ci && std::string(ci) == "true") {
        FAIL("../shared/data is missing at " << dir << " but CI=true: data tests must run in CI ("
                                             << what << ")");
    }
    MESSAGE("SKIP: " << what << ": ../shared/data not found at " << dir
                     << " (a fresh clone has no shared data; CI has it)");
    return "";
}

std::string fixture_dir() { return STACKLLAMA_FIXTURE_DIR; }
std::string source_dir() { return STACKLLAMA_SOURCE_DIR; }
std::string python() { return STACKLLAMA_PYTHON; }
std::string cli_path() { return STACKLLAMA_CLI; }
std::string converter_path() { return STACKLLAMA_CONVERT; }
std::string tiny_model() { return STACKLLAMA_TINY_MODEL; }

std::string read_file(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    if (!f) throw std::runtime_error("cannot open " + path);
    std::ostringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

void write_file(const std::string& path, const std::string& bytes) {
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    if (!f) throw std::runtime_error("cannot write " + path);
    f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::vector<float> read_f32(const std::string& path) {
    std::string b = read_file(path);
    std::vector<float> v(b.size() / sizeof(float));
    std::memcpy(v.data(), b.data(), v.size() * sizeof(float));
    return v;
}

bool exists(const std::string& path) { return fs::exists(path); }

TempDir::TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "stackllama-test-XXXXXX").string();
    std::vector<char> buf(tmpl.begin(), tmpl.end());
    buf.push_back('\0');
    if (!mkdtemp(buf.data())) throw std::runtime_error("mkdtemp failed");
    path = buf.data();
}

TempDir::~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
}

void copy_dir(const std::string& src, const std::string& dst) {
    fs::create_directories(dst);
    fs::copy(src, dst, fs::copy_options::recursive | fs::copy_options::overwrite_existing);
}

static std::string slurp_fd(int fd) {
    std::string s;
    char buf[65536];
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n <= 0) break;
        s.append(buf, static_cast<size_t>(n));
    }
    return s;
}

ProcessResult run_process(const std::vector<std::string>& argv) {
    // stdout and stderr go to temporary files so that neither pipe can fill and block the child.
    TempDir tmp;
    std::string out_path = tmp / "out", err_path = tmp / "err";
    pid_t pid = fork();
    if (pid < 0) throw std::runtime_error("fork failed");
    if (pid == 0) {
        int o = open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
        int e = open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
        int in = open("/dev/null", O_RDONLY);
        dup2(o, 1);
        dup2(e, 2);
        dup2(in, 0);
        std::vector<char*> args;
        for (auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
        args.push_back(nullptr);
        execv(args[0], args.data());
        _exit(127);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    ProcessResult r;
    r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    int o = open(out_path.c_str(), O_RDONLY), e = open(err_path.c_str(), O_RDONLY);
    r.out = slurp_fd(o);
    r.err = slurp_fd(e);
    close(o);
    close(e);
    return r;
}

std::vector<float> all_logits(const std::shared_ptr<const stackllama::Model>& m,
                              const std::vector<int32_t>& ids,
                              const std::vector<stackllama::AdapterRef>& adapters) {
    stackllama::Generator g(m);
    for (const auto& a : adapters) g.attach(a.adapter, a.scale);
    auto lv = g.eval(ids, true);
    std::vector<float> out(lv.data, lv.data + lv.rows * lv.n_vocab);
    g.reset();
    for (int32_t id : ids) {
        auto r = g.eval({id});
        out.insert(out.end(), r.data, r.data + r.n_vocab);
    }
    return out;
}

std::vector<int32_t> some_ids(int vocab) {
    std::vector<int32_t> ids{1};
    for (int i = 0; i < 23; ++i) ids.push_back((i * 37 + 11) % vocab);
    return ids;
}

std::vector<int32_t> read_ids(const std::string& path) {
    std::istringstream in(read_file(path));
    std::vector<int32_t> ids;
    int32_t v;
    while (in >> v) ids.push_back(v);
    return ids;
}

}  // namespace testing_support
