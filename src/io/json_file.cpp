#include "io/json_file.hpp"

#include "io/mmap_file.hpp"

namespace stackllama::io {

Json parse_json(std::string_view text, const std::string& origin) {
    try {
        return Json::parse(text.begin(), text.end());
    } catch (const Json::exception& e) {
        throw Error(ErrorCode::format, origin + ": malformed JSON: " + e.what());
    }
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
    if (v->is_number_integer()) return v->get<int64_t>();
    if (v->is_number_unsigned()) {
        uint64_t u = v->get<uint64_t>();
        if (u > static_cast<uint64_t>(INT64_MAX)) fail(key, "is too large: " + v->dump());
        return static_cast<int64_t>(u);
    }
    if (v->is_number_float()) {
        double d = v->get<double>();
        if (d == static_cast<double>(static_cast<int64_t>(d))) return static_cast<int64_t>(d);
    }
    fail(key, std::string("must be an integer, found ") + type_name(*v) + " " + v->dump());
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
        fail(key, std::string("must be a number, found ") + type_name(*v) + " " + v->dump());
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
        fail(key, std::string("must be true or false, found ") + type_name(*v) + " " + v->dump());
    return v->get<bool>();
}

std::optional<std::string> JsonObject::opt_string(const char* key) const {
    const Json* v = get(key);
    if (!v) return std::nullopt;
    if (!v->is_string())
        fail(key, std::string("must be a string, found ") + type_name(*v) + " " + v->dump());
    return v->get<std::string>();
}

}  // namespace stackllama::io
