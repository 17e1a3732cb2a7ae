#include "io/safetensors.hpp"

#include <algorithm>
#include <cstring>
#include <set>
#include <sstream>

#include "io/json_file.hpp"
#include "io/mmap_file.hpp"
#include "stackllama/error.hpp"

namespace stackllama::io {

namespace {

[[noreturn]] void bad(const std::string& path, const std::string& what) {
    throw Error(ErrorCode::format, path + ": " + what);
}

uint64_t read_u64_le(const uint8_t* p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
    return v;
}

}  // namespace


void read_safetensors(const std::string& path, TensorSet& set) {
    auto file = MappedFile::open(path);
    const size_t size = file->size();
    if (size < 8) {
        bad(path, "truncated: " + std::to_string(size) +
                      " bytes, but a safetensors file starts with an 8-byte header length");
    }
    const uint64_t header_len = read_u64_le(file->data());
    if (header_len > size - 8) {
        bad(path, "header length " + std::to_string(header_len) + " exceeds the file size " +
                      std::to_string(size) + " (truncated or not a safetensors file)");
    }
    if (header_len > kMaxSafetensorsHeader) {
        bad(path, "header length " + std::to_string(header_len) + " is implausibly large");
    }
    const uint8_t* data_start = file->data() + 8 + header_len;
    const uint64_t data_size = size - 8 - header_len;

    std::string_view header_text(reinterpret_cast<const char*>(file->data() + 8), header_len);
    // A name given twice would leave nlohmann-json keeping the last entry silently: refused.
    Json header = parse_json(header_text, path + " (safetensors header)",
                             /*reject_duplicate_keys=*/true);
    if (!header.is_object()) bad(path, "safetensors header is not a JSON object");

    // Every entry is checked before any is added, so a failure leaves `set` unchanged.
    std::vector<TensorInfo> found;
    struct Span {
        uint64_t begin, end;
        const std::string* name;
    };
    std::vector<Span> spans;

    for (auto it = header.begin(); it != header.end(); ++it) {
        const std::string& name = it.key();
        if (name == "__metadata__") continue;
        const Json& e = it.value();
        const std::string where = "tensor " + name;
        if (!e.is_object()) bad(path, where + ": header entry is not an object");
        auto dt = e.find("dtype");
        auto sh = e.find("shape");
        auto off = e.find("data_offsets");
        if (dt == e.end() || !dt->is_string()) bad(path, where + ": missing or non-string dtype");
        if (sh == e.end() || !sh->is_array()) bad(path, where + ": missing or non-array shape");
        if (off == e.end() || !off->is_array() || off->size() != 2)
            bad(path, where + ": data_offsets must be an array of two integers");

        TensorInfo info;
        info.name = name;
        info.file = path;
        if (!parse_dtype(dt->get<std::string>(), &info.dtype))
            bad(path, where + ": unknown dtype \"" + dt->get<std::string>() + "\"");

        uint64_t numel = 1;
        for (const Json& d : *sh) {
            if (!d.is_number_unsigned() && !(d.is_number_integer() && d.get<int64_t>() >= 0))
                bad(path, where + ": shape " + sh->dump() + " has a dimension that is not a "
                                  "non-negative integer");
            uint64_t v = d.get<uint64_t>();
            if (v > (uint64_t(1) << 40) || (v != 0 && numel > UINT64_MAX / 16 / v))
                bad(path, where + ": shape " + sh->dump() + " overflows");
            numel *= v;
            info.shape.push_back(static_cast<int64_t>(v));
        }
        for (const Json& o : *off) {
            if (!o.is_number_unsigned() && !(o.is_number_integer() && o.get<int64_t>() >= 0))
                bad(path, where + ": data_offsets " + off->dump() + " are not non-negative integers");
        }
        const uint64_t begin = (*off)[0].get<uint64_t>(), end = (*off)[1].get<uint64_t>();
        if (begin > end) bad(path, where + ": data_offsets " + off->dump() + " are reversed");
        if (end > data_size) {
            bad(path, where + ": data_offsets " + off->dump() + " run past the end of the data (" +
                          std::to_string(data_size) + " bytes; the file is truncated or corrupt)");
        }
        const uint64_t expect = numel * dtype_size(info.dtype);
        if (end - begin != expect) {
            bad(path, where + ": " + std::to_string(end - begin) + " bytes for dtype " +
                          dtype_str(info.dtype) + " and shape " + info.shape_str() + ", which need " +
                          std::to_string(expect));
        }
        info.data = data_start + begin;
        info.nbytes = end - begin;
        found.push_back(std::move(info));
    }
    // Two tensors sharing bytes is corruption (the safetensors library refuses it too); empty
    // tensors occupy nothing.
    for (const TensorInfo& t : found) {
        if (t.nbytes == 0) continue;
        const uint64_t begin = uint64_t(t.data - data_start);
        spans.push_back({begin, begin + t.nbytes, &t.name});
    }
    std::sort(spans.begin(), spans.end(),
              [](const Span& a, const Span& b) { return a.begin < b.begin; });
    for (size_t i = 1; i < spans.size(); ++i) {
        if (spans[i].begin < spans[i - 1].end) {
            bad(path, "tensor " + *spans[i].name + ": data_offsets [" +
                          std::to_string(spans[i].begin) + ", " + std::to_string(spans[i].end) +
                          "] overlap those of tensor " + *spans[i - 1].name + " [" +
                          std::to_string(spans[i - 1].begin) + ", " +
                          std::to_string(spans[i - 1].end) + "]");
        }
    }
    // The map first: a failing add() (a name already in the set) leaves nothing dangling.
    set.keep_alive(file);
    for (TensorInfo& t : found) set.add(std::move(t));
}

TensorSet open_safetensors_dir(const std::string& dir) {
    TensorSet set;
    const std::string single = join_path(dir, "model.safetensors");
    const std::string index = join_path(dir, "model.safetensors.index.json");
    if (file_exists(index)) {
        Json j = parse_json(read_text_file(index), index, /*reject_duplicate_keys=*/true);
        if (!j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object())
            throw Error(ErrorCode::format, index + ": missing the \"weight_map\" object");
        std::set<std::string> shards;
        std::map<std::string, std::string> expected;  // tensor -> shard
        for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
            if (!it.value().is_string())
                throw Error(ErrorCode::format,
                            index + ": weight_map entry for " + it.key() + " is not a file name");
            std::string shard = it.value().get<std::string>();
            if (shard.find('/') != std::string::npos || shard == "..")
                throw Error(ErrorCode::format,
                            index + ": shard name \"" + shard + "\" must be a file in " + dir);
            shards.insert(shard);
            expected[it.key()] = shard;
        }
        for (const auto& shard : shards) {
            const std::string p = join_path(dir, shard);
            if (!file_exists(p))
                throw Error(ErrorCode::io, "shard " + p + " listed in " + index + " is missing");
            read_safetensors(p, set);
        }
        for (const auto& [name, shard] : expected) {
            const TensorInfo* t = set.find(name);
            if (!t || t->file != join_path(dir, shard))
                throw Error(ErrorCode::format, index + " maps tensor " + name + " to " + shard +
                                                   ", but that shard does not contain it");
        }
        set.origin = index;
    } else if (file_exists(single)) {
        read_safetensors(single, set);
        set.origin = single;
    } else {
        throw Error(ErrorCode::io, "no weights in " + dir +
                                       ": expected model.safetensors or "
                                       "model.safetensors.index.json");
    }
    return set;
}

}  // namespace stackllama::io
