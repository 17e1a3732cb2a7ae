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

// Parses text; Error(format) naming `origin` and the byte position on malformed JSON.
Json parse_json(std::string_view text, const std::string& origin);
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
