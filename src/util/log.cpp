#include "util/log.hpp"

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>

namespace stackllama::log {
namespace {

Level initial_level() {
    const char* env = std::getenv("STACKLLAMA_LOG");
    if (!env) return Level::warn;
    if (!std::strcmp(env, "debug")) return Level::debug;
    if (!std::strcmp(env, "info")) return Level::info;
    if (!std::strcmp(env, "error")) return Level::error;
    return Level::warn;
}

std::atomic<Level>& current() {
    static std::atomic<Level> level{initial_level()};
    return level;
}

}  // namespace

void set_level(Level l) { current().store(l); }
Level level() { return current().load(); }

namespace {
void emit(Level l, const std::string& message) {
    static std::mutex mu;  // keeps lines from different threads whole
    static const char* names[] = {"debug", "info", "warning", "error"};
    std::lock_guard<std::mutex> lock(mu);
    std::fprintf(stderr, "stackllama: %s: %s\n", names[static_cast<int>(l)], message.c_str());
}
}  // namespace

void write(Level l, const std::string& message) {
    if (l >= current().load()) emit(l, message);
}

void always(const std::string& message) { emit(Level::info, message); }

}  // namespace stackllama::log
