#include "io/safetensors_writer.hpp"

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "io/json_file.hpp"
#include "stackllama/error.hpp"

namespace stackllama::io {

void write_safetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                       const std::map<std::string, std::string>& metadata) {
    Json header = Json::object();
    if (!metadata.empty()) header["__metadata__"] = metadata;
    uint64_t offset = 0;
    std::vector<uint64_t> sizes;
    for (const auto& t : tensors) {
        uint64_t n = dtype_size(t.dtype);
        for (int64_t d : t.shape) n *= static_cast<uint64_t>(d);
        header[t.name] = {{"dtype", dtype_str(t.dtype)},
                          {"shape", t.shape},
                          {"data_offsets", {offset, offset + n}}};
        offset += n;
        sizes.push_back(n);
    }
    std::string text = header.dump();
    text.append((8 - text.size() % 8) % 8, ' ');  // data starts 8-byte aligned

    const std::string tmp = path + ".tmp";
    FILE* f = std::fopen(tmp.c_str(), "wb");
    if (!f) throw Error(ErrorCode::io, "cannot write " + tmp + ": " + std::strerror(errno));
    bool ok = true;
    uint8_t len[8];
    for (int i = 0; i < 8; ++i) len[i] = uint8_t((uint64_t(text.size()) >> (8 * i)) & 0xff);
    ok = ok && std::fwrite(len, 1, 8, f) == 8;
    ok = ok && std::fwrite(text.data(), 1, text.size(), f) == text.size();
    for (size_t i = 0; ok && i < tensors.size(); ++i)
        ok = std::fwrite(tensors[i].data, 1, sizes[i], f) == sizes[i];
    ok = (std::fclose(f) == 0) && ok;
    if (!ok || std::rename(tmp.c_str(), path.c_str()) != 0) {
        const int err = errno;
        std::remove(tmp.c_str());
        throw Error(ErrorCode::io, "cannot write " + path + ": " + std::strerror(err));
    }
}

}  // namespace stackllama::io
