#include "io/json_file.hpp"

#include "io/mmap_file.hpp"

#include <cmath>
#include <unordered_set>
#include <vector>

namespace stackllama::io {

namespace {

// Keys from the file, for messages: control and non-ASCII bytes escaped, cut short.
std::string printable_key(const std::string& s) {
    std::string out;
    for (size_t i = 0; i < s.size() && i < 120; ++i) {
        const unsigned char c = static_cast<unsigned char>(s[i]);
        if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
            out += char(c);
        } else {
            static const char* hex = "0123456789abcdef";
            out += "\\x";
            out += hex[c >> 4];
            out += hex[c & 15];
        }
    }
    if (s.size() > 120) out += "...";
    return out;
}

}  // namespace

Json parse_json(std::string_view text, const std::string& origin, bool reject_duplicate_keys) {
    // The parser itself is iterative; the callback bounds the depth (and finds repeated keys)
    // as the document is read, before anything recursive touches the result.
    std::vector<std::unordered_set<std::string>> keys;  // one per open container
    auto check = [&](int depth, Json::parse_event_t event, Json& parsed) -> bool {
        switch (event) {
        case Json::parse_event_t::object_start:
        case Json::parse_event_t::array_start:
            if (depth >= kMaxJsonDepth) {
                throw Error(ErrorCode::format, origin + ": JSON nested deeper than " +
                                                   std::to_string(kMaxJsonDepth) +
                                                   " levels (corrupt or hostile file)");
            }
            if (reject_duplicate_keys) keys.emplace_back();
            break;
        case Json::parse_event_t::object_end:
        case Json::parse_event_t::array_end:
            if (reject_duplicate_keys && !keys.empty()) keys.pop_back();
            break;
        case Json::parse_event_t::key:
            if (reject_duplicate_keys && !keys.empty() && parsed.is_string() &&
                !keys.back().insert(parsed.get_ref<const std::string&>()).second) {
                throw Error(ErrorCode::format, origin + ": key \"" +
                                                   printable_key(parsed.get<std::string>()) +
                                                   "\" appears twice in one JSON object");
            }
            break;
        case Json::parse_event_t::value:
            break;
        }
        return true;
    };
    try {
        return Json::parse(text.begin(), text.end(), check);
    } catch (const Json::exception& e) {
        throw Error(ErrorCode::format, origin + ": malformed JSON: " + e.what());
    }
}

std::string json_excerpt(const Json& v, size_t max) {
    std::string s = v.dump(-1, ' ', false, Json::error_handler_t::replace);
    if (s.size() > max) {
        s.resize(max);
        s += "...";
    }
    return s;
}

Json read_json_file(const std::string& path) { return parse_json(read_text_file(path), path); }

namespace {
const char* type_name(const Json& v) { return v.type_name(); }
}  // namespace

JsonObject::JsonObject(const Json& j, std::string origin) : j_(j), origin_(std::move(origin)) {
    if (!j_.is_object())
        throw Error(ErrorCode::format,
                    origin_ + ": expected a JSON object at the top, found " + type_name(j_));
}

void JsonObject::fail(const char* key, const std::string& what) const {
    throw Error(ErrorCode::format, origin_ + ": field \"" + key + "\" " + what);
}

bool JsonObject::has(const char* key) const {
    auto it = j_.find(key);
    return it != j_.end() && !it->is_null();
}

const Json* JsonObject::get(const char* key) const {
    auto it = j_.find(key);
    if (it == j_.end() || it->is_null()) return nullptr;
    return &*it;
}

std::optional<int64_t> JsonObject::opt_integer(const char* key) const {
    const Json* v = get(key);
    if (!v) return std::nullopt;
    // Unsigned first: nlohmann-json's is_number_integer() is true for unsigned values too, and
    // 18446744073709551615 read as int64_t would be -1.
    if (v->is_number_unsigned()) {
        uint64_t u = v->get<uint64_t>();
        if (u > static_cast<uint64_t>(INT64_MAX)) fail(key, "is too large: " + json_excerpt(*v));
        return static_cast<int64_t>(u);
    }
    if (v->is_number_integer()) return v->get<int64_t>();
    if (v->is_number_float()) {
        // 64.0 is an integer; 1e300 or 0.5 is not (and converting it would be undefined).
        const double d = v->get<double>();
        if (d >= -9.2e18 && d <= 9.2e18 && d == std::trunc(d)) return static_cast<int64_t>(d);
    }
    fail(key,
         std::string("must be an integer, found ") + type_name(*v) + " " + json_excerpt(*v));
}

int64_t JsonObject::integer(const char* key) const {
    auto v = opt_integer(key);
    if (!v) fail(key, "is required but missing");
    return *v;
}

std::optional<double> JsonObject::opt_number(const char* key) const {
    const Json* v = get(key);
    if (!v) return std::nullopt;
    if (!v->is_number())
        fail(key, std::string("must be a number, found ") + type_name(*v) + " " + json_excerpt(*v));
    return v->get<double>();
}

double JsonObject::number(const char* key) const {
    auto v = opt_number(key);
    if (!v) fail(key, "is required but missing");
    return *v;
}

std::optional<bool> JsonObject::opt_boolean(const char* key) const {
    const Json* v = get(key);
    if (!v) return std::nullopt;
    if (!v->is_boolean())
        fail(key, std::string("must be true or false, found ") + type_name(*v) + " " +
                      json_excerpt(*v));
    return v->get<bool>();
}

std::optional<std::string> JsonObject::opt_string(const char* key) const {
    const Json* v = get(key);
    if (!v) return std::nullopt;
    if (!v->is_string())
        fail(key, std::string("must be a string, found ") + type_name(*v) + " " + json_excerpt(*v));
    return v->get<std::string>();
}

}  // namespace stackllama::io
