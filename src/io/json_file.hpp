// JSON files (config.json, tokenizer_config.json, safetensors headers) through nlohmann-json, with
// errors that name the file and the field.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

#include "stackllama/error.hpp"

namespace stackllama::io {

using Json = nlohmann::json;

// Deepest nesting of arrays and objects accepted. Real configs and headers nest 4 levels at most;
// a bound keeps the recursive parts of nlohmann-json (dump, copy, compare) off the end of the stack
// whatever a hostile file holds.
constexpr int kMaxJsonDepth = 128;

// Parses text; Error(format) naming `origin` and the byte position on malformed JSON, and on
// nesting deeper than kMaxJsonDepth. With reject_duplicate_keys, an object that names a key twice
// is Error(format) naming the key (nlohmann-json would keep the last value silently).
Json parse_json(std::string_view text, const std::string& origin,
                bool reject_duplicate_keys = false);

// A JSON value for an error message: compact, cut to about `max` bytes.
std::string json_excerpt(const Json& v, size_t max = 120);
// Reads and parses a file; Error(io) when it cannot be read.
Json read_json_file(const std::string& path);

// Typed access to the fields of one JSON object, naming the file and field in every error.
class JsonObject {
public:
    JsonObject(const Json& j, std::string origin);

    bool has(const char* key) const;  // present and not null
    const Json* get(const char* key) const;

    int64_t integer(const char* key) const;                       // required
    std::optional<int64_t> opt_integer(const char* key) const;    // null or absent -> nullopt
    double number(const char* key) const;
    std::optional<double> opt_number(const char* key) const;
    std::optional<bool> opt_boolean(const char* key) const;
    std::optional<std::string> opt_string(const char* key) const;

    [[noreturn]] void fail(const char* key, const std::string& what) const;
    const std::string& origin() const { return origin_; }

private:
    const Json& j_;
    std::string origin_;
};

}  // namespace stackllama::io
