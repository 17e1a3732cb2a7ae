// Diagnostics on stderr. The library never writes to stdout.
#pragma once

#include <string>

namespace stackllama::log {

enum class Level { debug, info, warn, error };

// Messages below this level are dropped. Default: warn, or STACKLLAMA_LOG=debug|info|warn|error.
void set_level(Level level);
Level level();
void write(Level level, const std::string& message);

// Written whatever the level (asked for explicitly, e.g. a verbose flag).
void always(const std::string& message);

inline void info(const std::string& m) { write(Level::info, m); }
inline void warn(const std::string& m) { write(Level::warn, m); }
inline void debug(const std::string& m) { write(Level::debug, m); }

}  // namespace stackllama::log
