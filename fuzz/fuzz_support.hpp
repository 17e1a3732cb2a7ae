// Shared by the libFuzzer targets: a scratch folder for the files the parsers read, and the rule
// every target enforces. The parsers take paths (they map files), so each input is written to a
// file first; /dev/shm keeps that cheap.
//
// The rule: a parser of untrusted bytes either succeeds with results that satisfy its documented
// invariants, or throws stackllama::Error with a known code and a non-empty message. Anything else
// (another exception type, a crash, a sanitizer report, a hang) is a bug and aborts the fuzzer.
#pragma once

#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <typeinfo>

#include "stackllama/error.hpp"

namespace fuzz {

// A per-process folder, removed at exit. (The path is leaked on purpose: the exit handler runs
// after static destructors of objects constructed later.)
inline const std::string& scratch_dir() {
    static const std::string* dir = [] {
        namespace fs = std::filesystem;
        const fs::path base = fs::is_directory("/dev/shm") ? fs::path("/dev/shm")
                                                           : fs::temp_directory_path();
        const fs::path d = base / ("stackllama-fuzz-" + std::to_string(::getpid()));
        fs::create_directories(d);
        auto* s = new std::string(d.string());
        std::atexit([] {
            std::error_code ec;
            std::filesystem::remove_all(scratch_dir(), ec);
        });
        return s;
    }();
    return *dir;
}

inline std::string scratch_path(const std::string& name) { return scratch_dir() + "/" + name; }

inline void write_file(const std::string& path, std::string_view bytes) {
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    if (!f) {
        std::fprintf(stderr, "fuzz harness: cannot write %s\n", path.c_str());
        std::abort();
    }
}

inline std::string read_file(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    if (!f) {
        std::fprintf(stderr, "fuzz harness: cannot read %s\n", path.c_str());
        std::abort();
    }
    return std::string(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
}

[[noreturn]] inline void harness_failure(const char* what, const std::string& detail) {
    std::fprintf(stderr, "\n*** fuzz invariant broken: %s: %s\n", what, detail.c_str());
    std::fflush(stderr);
    std::abort();
}

#define FUZZ_CHECK(cond, detail)                                          \
    do {                                                                  \
        if (!(cond)) ::fuzz::harness_failure(#cond, (detail));            \
    } while (0)

// With STACKLLAMA_FUZZ_TOLERATE_FOREIGN_EXCEPTIONS=1, an exception that is not
// stackllama::Error (a known, reported bug being fixed elsewhere) is printed the first few times
// instead of aborting, so that a long run can look for memory errors behind it.
inline bool tolerate_foreign_exceptions() {
    static const bool on = [] {
        const char* v = std::getenv("STACKLLAMA_FUZZ_TOLERATE_FOREIGN_EXCEPTIONS");
        return v && *v && *v != '0';
    }();
    return on;
}

// Runs f; a stackllama::Error is the expected way to refuse an input. Returns true when f
// returned normally.
template <class F>
bool expect_ok_or_error(F&& f) {
    try {
        f();
        return true;
    } catch (const stackllama::Error& e) {
        const int code = static_cast<int>(e.code());
        FUZZ_CHECK((code >= 1 && code <= 7) || code == 99,
                   "unknown ErrorCode " + std::to_string(code));
        FUZZ_CHECK(e.what() != nullptr && e.what()[0] != '\0', "empty error message");
        return false;
    } catch (const std::exception& e) {
        const std::string what = std::string(typeid(e).name()) + ": " + e.what();
        if (!tolerate_foreign_exceptions())
            harness_failure("an exception that is not stackllama::Error escaped", what);
        static int shown = 0;
        if (shown++ < 5)
            std::fprintf(stderr, "\n*** tolerated foreign exception: %s\n", what.c_str());
        return false;
    } catch (...) {
        harness_failure("a non-std exception escaped", "");
    }
}

}  // namespace fuzz
