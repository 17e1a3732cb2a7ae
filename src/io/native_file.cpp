#include "io/native_file.hpp"

#include <zstd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "io/mmap_file.hpp"
#include "stackllama/error.hpp"
#include "util/checksum.hpp"
#include "util/memory.hpp"
#include "util/thread_pool.hpp"

namespace stackllama::io {

namespace {

void put_u32(uint8_t* p, uint32_t v) {
    for (int i = 0; i < 4; ++i) p[i] = uint8_t(v >> (8 * i));
}
void put_u64(uint8_t* p, uint64_t v) {
    for (int i = 0; i < 8; ++i) p[i] = uint8_t(v >> (8 * i));
}
uint32_t get_u32(const uint8_t* p) {
    uint32_t v = 0;
    for (int i = 3; i >= 0; --i) v = (v << 8) | p[i];
    return v;
}
uint64_t get_u64(const uint8_t* p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
    return v;
}

std::string hex(uint64_t v) {
    char buf[17];
    std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
    return buf;
}

[[noreturn]] void bad(const std::string& path, const std::string& what) {
    throw Error(ErrorCode::format, path + ": " + what);
}

// Optional index fields, type-checked: the index is untrusted bytes, and a field of the wrong
// JSON type must be a format error, not an exception from the JSON library.
uint64_t field_u64(const Json& e, const char* key, uint64_t otherwise, const std::string& path,
                   const std::string& what) {
    if (!e.contains(key)) return otherwise;
    if (!e[key].is_number_unsigned())
        bad(path, what + ": \"" + key + "\" is " + e[key].dump() + ", not an unsigned integer");
    return e[key].get<uint64_t>();
}
std::string field_str(const Json& e, const char* key, const std::string& otherwise,
                      const std::string& path, const std::string& what) {
    if (!e.contains(key)) return otherwise;
    if (!e[key].is_string())
        bad(path, what + ": \"" + key + "\" is " + e[key].dump() + ", not a string");
    return e[key].get<std::string>();
}

// Header layout (little-endian, 64 bytes):
//   0  magic "SLLMODEL"      8  u32 version major     12 u32 version minor
//   16 u64 index offset      24 u64 index size        32 u64 index XXH64
//   40 u64 file size         48 u64 header XXH64 (of bytes 0..47)   56 reserved
struct Header {
    uint32_t major = 0, minor = 0;
    uint64_t index_offset = 0, index_size = 0, index_hash = 0, file_size = 0;
};

class Writer {
public:
    explicit Writer(const std::string& path) : path_(path), f_(std::fopen(path.c_str(), "wb")) {
        if (!f_) throw Error(ErrorCode::io, "cannot write " + path + ": " + std::strerror(errno));
    }
    ~Writer() {
        if (f_) std::fclose(f_);
    }
    void write(const void* p, size_t n) {
        if (n && std::fwrite(p, 1, n, f_) != n)
            throw Error(ErrorCode::io, "cannot write " + path_ + ": " + std::strerror(errno));
        pos_ += n;
    }
    void pad_to(size_t align) {
        static const uint8_t zeros[kNativeAlign] = {};
        write(zeros, (align - pos_ % align) % align);
    }
    void rewrite_header(const uint8_t* h) {
        if (std::fseek(f_, 0, SEEK_SET) != 0 || std::fwrite(h, 1, kNativeHeaderSize, f_) !=
                                                    kNativeHeaderSize)
            throw Error(ErrorCode::io, "cannot write " + path_ + ": " + std::strerror(errno));
    }
    void close() {
        FILE* f = f_;
        f_ = nullptr;
        if (std::fclose(f) != 0)
            throw Error(ErrorCode::io, "cannot write " + path_ + ": " + std::strerror(errno));
    }
    uint64_t pos() const { return pos_; }

private:
    std::string path_;
    FILE* f_;
    uint64_t pos_ = 0;
};

}  // namespace

bool is_native_file(const std::string& path) {
    FILE* f = std::fopen(path.c_str(), "rb");
    if (!f) return false;
    char magic[8] = {};
    const bool ok = std::fread(magic, 1, 8, f) == 8 && std::memcmp(magic, kNativeMagic, 8) == 0;
    std::fclose(f);
    return ok;
}

void write_native(const std::string& path, const Json& config, const std::string& tokenizer_model,
                  const Json& tokenizer_config, const Json& extra_files,
                  const std::vector<NativeTensor>& tensors, const NativeWriteOptions& opt) {
    const std::string tmp = path + ".tmp";
    try {
        Writer w(tmp);
        uint8_t header[kNativeHeaderSize] = {};
        w.write(header, sizeof header);  // rewritten at the end

        Json index;
        index["format"] = "stackllama";
        index["version"] = {kNativeVersionMajor, kNativeVersionMinor};
        index["config"] = config;
        index["tokenizer_config"] = tokenizer_config;
        index["extra_files"] = extra_files;
        if (opt.adapters.is_array() && !opt.adapters.empty()) index["adapters"] = opt.adapters;
        if (!tokenizer_model.empty()) {
            w.pad_to(kNativeAlign);
            index["tokenizer_model"] = {{"offset", w.pos()},
                                        {"size", tokenizer_model.size()},
                                        {"xxh64", hex(xxh64(tokenizer_model.data(),
                                                            tokenizer_model.size()))}};
            w.write(tokenizer_model.data(), tokenizer_model.size());
        }

        uint64_t total = 0, done = 0;
        for (const auto& t : tensors) total += t.nbytes;
        Json entries = Json::array();
        std::vector<char> packed;
        for (const auto& t : tensors) {
            w.pad_to(kNativeAlign);
            Json e = {{"name", t.name},
                      {"dtype", dtype_str(t.dtype)},
                      {"shape", t.shape},
                      {"offset", w.pos()},
                      {"raw_size", t.nbytes}};
            std::vector<uint8_t> produced;
            if (!t.data) {
                produced = t.produce();
                if (produced.size() != t.nbytes)
                    throw Error(ErrorCode::internal, "tensor " + t.name + ": produced " +
                                                         std::to_string(produced.size()) +
                                                         " bytes, expected " +
                                                         std::to_string(t.nbytes));
            }
            const void* src = t.data ? t.data : produced.data();
            const void* bytes = src;
            uint64_t size = t.nbytes;
            if (opt.zstd_level > 0 && t.nbytes >= 4096) {
                packed.resize(ZSTD_compressBound(t.nbytes));
                ZSTD_CCtx* cctx = ZSTD_createCCtx();
                ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, opt.zstd_level);
                ZSTD_CCtx_setParameter(cctx, ZSTD_c_nbWorkers, std::max(0, opt.n_threads));
                const size_t n = ZSTD_compress2(cctx, packed.data(), packed.size(), src, t.nbytes);
                ZSTD_freeCCtx(cctx);
                if (ZSTD_isError(n))
                    throw Error(ErrorCode::internal, "zstd compression of " + t.name +
                                                         " failed: " + ZSTD_getErrorName(n));
                if (n < t.nbytes) {  // store compressed only where it pays
                    bytes = packed.data();
                    size = n;
                    e["compression"] = "zstd";
                }
            }
            e["size"] = size;
            e["xxh64"] = hex(xxh64(bytes, size));
            w.write(bytes, size);
            entries.push_back(std::move(e));
            done += t.nbytes;
            if (opt.progress) opt.progress(done, total);
        }
        index["tensors"] = std::move(entries);

        const std::string text = index.dump();
        w.pad_to(kNativeAlign);
        const uint64_t index_offset = w.pos();
        w.write(text.data(), text.size());
        const uint64_t file_size = w.pos();

        std::memcpy(header, kNativeMagic, 8);
        put_u32(header + 8, kNativeVersionMajor);
        put_u32(header + 12, kNativeVersionMinor);
        put_u64(header + 16, index_offset);
        put_u64(header + 24, text.size());
        put_u64(header + 32, xxh64(text.data(), text.size()));
        put_u64(header + 40, file_size);
        put_u64(header + 48, xxh64(header, 48));
        w.rewrite_header(header);
        w.close();
    } catch (...) {
        std::remove(tmp.c_str());
        throw;
    }
    if (std::rename(tmp.c_str(), path.c_str()) != 0) {
        const int err = errno;
        std::remove(tmp.c_str());
        throw Error(ErrorCode::io, "cannot write " + path + ": " + std::strerror(err));
    }
}

NativeContents read_native(const std::string& path, const NativeReadOptions& opt) {
    auto file = MappedFile::open(path);
    const uint8_t* base = file->data();
    const uint64_t size = file->size();
    if (size < kNativeHeaderSize)
        bad(path, "truncated: " + std::to_string(size) + " bytes, shorter than the 64-byte header");
    if (std::memcmp(base, kNativeMagic, 8) != 0)
        bad(path, "wrong magic: not a stackllama native file (expected \"SLLMODEL\")");
    // The header checksum comes first: a damaged header is damage, not a future version.
    if (get_u64(base + 48) != xxh64(base, 48)) bad(path, "header checksum mismatch (damaged header)");
    Header h;
    h.major = get_u32(base + 8);
    h.minor = get_u32(base + 12);
    if (h.major != kNativeVersionMajor) {
        throw Error(ErrorCode::unsupported,
                    path + ": native format version " + std::to_string(h.major) + "." +
                        std::to_string(h.minor) + "; this build reads version " +
                        std::to_string(kNativeVersionMajor) + ".x (convert the model again)");
    }
    h.index_offset = get_u64(base + 16);
    h.index_size = get_u64(base + 24);
    h.index_hash = get_u64(base + 32);
    h.file_size = get_u64(base + 40);
    if (h.file_size != size) {
        bad(path, "the header says the file has " + std::to_string(h.file_size) +
                      " bytes but it has " + std::to_string(size) + " (truncated or appended to)");
    }
    if (h.index_offset > size || h.index_size > size - h.index_offset)
        bad(path, "index section lies outside the file");
    const char* index_text = reinterpret_cast<const char*>(base + h.index_offset);
    if (xxh64(index_text, h.index_size) != h.index_hash)
        bad(path, "index section checksum mismatch (damaged index)");
    Json index = parse_json(std::string_view(index_text, h.index_size), path + " (index)");
    if (!index.is_object() || !index.contains("tensors") || !index["tensors"].is_array())
        bad(path, "index section has no tensor list");

    NativeContents out;
    out.config = index.value("config", Json());
    out.tokenizer_config = index.value("tokenizer_config", Json());
    out.extra_files = index.value("extra_files", Json::object());
    if (!out.config.is_object()) bad(path, "index section has no config object");
    if (!out.extra_files.is_object()) bad(path, "index section: extra_files is not an object");
    out.adapters = index.value("adapters", Json::array());
    if (!out.adapters.is_array()) bad(path, "index section: adapters is not a list");
    for (const Json& a : out.adapters) {
        if (!a.is_object() || !a.contains("name") || !a["name"].is_string() ||
            !a.contains("prefix") || !a["prefix"].is_string() || !a.contains("scale") ||
            !a["scale"].is_number() || !a.contains("config") || !a["config"].is_object())
            bad(path, "index section: an adapter entry lacks name, prefix, scale or config: " +
                          a.dump().substr(0, 200));
    }

    // A range of the file, checked to lie inside it and before the index.
    auto section = [&](const Json& e, const std::string& what) -> std::pair<uint64_t, uint64_t> {
        if (!e.is_object() || !e.contains("offset") || !e.contains("size") ||
            !e["offset"].is_number_unsigned() || !e["size"].is_number_unsigned())
            bad(path, what + ": index entry lacks offset/size");
        const uint64_t off = e["offset"].get<uint64_t>(), n = e["size"].get<uint64_t>();
        if (off < kNativeHeaderSize || off > h.index_offset || n > h.index_offset - off)
            bad(path, what + ": bytes [" + std::to_string(off) + ", +" + std::to_string(n) +
                          ") lie outside the data section");
        return {off, n};
    };
    auto check = [&](const Json& e, const void* p, uint64_t n, const std::string& what) {
        const std::string want = field_str(e, "xxh64", std::string(), path, what);
        if (hex(xxh64(p, n)) != want)
            bad(path, what + ": checksum mismatch (the data is damaged)");
    };

    if (index.contains("tokenizer_model") && !index["tokenizer_model"].is_null()) {
        const Json& e = index["tokenizer_model"];
        auto [off, n] = section(e, "tokenizer model");
        check(e, base + off, n, "tokenizer model");
        out.tokenizer_model.assign(reinterpret_cast<const char*>(base + off), n);
    }

    const Json& list = index["tensors"];
    std::vector<TensorInfo> infos(list.size());
    for (size_t i = 0; i < list.size(); ++i) {
        const Json& e = list[i];
        TensorInfo& t = infos[i];
        if (!e.is_object() || !e.contains("name") || !e["name"].is_string())
            bad(path, "tensor entry " + std::to_string(i) + " has no name");
        t.name = e["name"].get<std::string>();
        t.file = path;
        const std::string what = "tensor " + t.name;
        if (!e.contains("dtype") || !e["dtype"].is_string() ||
            !parse_dtype(e["dtype"].get<std::string>(), &t.dtype, /*block_types=*/true))
            bad(path, what + ": unknown dtype " + e.value("dtype", Json()).dump());
        if (!e.contains("shape") || !e["shape"].is_array()) bad(path, what + ": no shape");
        uint64_t numel = 1;
        for (const auto& d : e["shape"]) {
            if (!d.is_number_unsigned() || d.get<uint64_t>() > (uint64_t(1) << 40))
                bad(path, what + ": bad shape " + e["shape"].dump());
            // Checked before multiplying: a product of dimensions must not wrap around.
            const uint64_t dim = d.get<uint64_t>();
            if (dim && numel > (uint64_t(1) << 42) / dim) bad(path, what + ": shape overflows");
            numel *= dim;
            t.shape.push_back(int64_t(d.get<uint64_t>()));
        }
        t.nbytes = field_u64(e, "raw_size", 0, path, what);
        if (dtype_is_block(t.dtype) && tensor_nbytes(t.dtype, t.shape) == 0)
            bad(path, what + ": shape " + t.shape_str() + " cannot hold " + dtype_str(t.dtype) +
                          " blocks (2-D, a row length that is a multiple of 32)");
        if (t.nbytes != tensor_nbytes(t.dtype, t.shape))
            bad(path, what + ": raw_size " + std::to_string(t.nbytes) + " does not match dtype " +
                          dtype_str(t.dtype) + " and shape " + t.shape_str());
        auto [off, n] = section(e, what);
        const std::string comp = field_str(e, "compression", "none", path, what);
        if (comp == "none") {
            if (n != t.nbytes) bad(path, what + ": stored size differs from raw_size");
            if (off % kNativeAlign != 0) bad(path, what + ": data is not 64-byte aligned");
            t.data = base + off;
        } else if (comp != "zstd") {
            throw Error(ErrorCode::unsupported, path + ": " + what + ": compression \"" + comp +
                                                    "\" is not supported");
        }
    }

    // Compressed tensors decompress into one allocation (huge pages, no zero-filling first).
    std::vector<size_t> unpacked_at(list.size(), 0);
    size_t unpacked_bytes = 0;
    for (size_t i = 0; i < infos.size(); ++i) {
        if (infos[i].data) continue;
        unpacked_at[i] = unpacked_bytes;
        unpacked_bytes += (infos[i].nbytes + kNativeAlign - 1) / kNativeAlign * kNativeAlign;
    }
    std::shared_ptr<void> unpacked;
    if (unpacked_bytes) unpacked = alloc_large(unpacked_bytes, "decompressed tensors");

    // Checksums and decompression, in parallel across tensors.
    ThreadPool pool(std::max(1, opt.n_threads));
    std::vector<std::string> errors(list.size());
    std::atomic<size_t> next{0};
    pool.run(pool.size(), [&](int) {
        for (size_t i = next++; i < list.size(); i = next++) {
            const Json& e = list[i];
            TensorInfo& t = infos[i];
            const uint64_t off = e["offset"].get<uint64_t>(), n = e["size"].get<uint64_t>();
            try {
                if (opt.verify_checksums || !t.data) check(e, base + off, n, "tensor " + t.name);
                if (!t.data) {
                    uint8_t* p = static_cast<uint8_t*>(unpacked.get()) + unpacked_at[i];
                    const size_t got = ZSTD_decompress(p, t.nbytes, base + off, n);
                    if (ZSTD_isError(got) || got != t.nbytes)
                        bad(path, "tensor " + t.name + ": zstd data does not decompress to " +
                                      std::to_string(t.nbytes) + " bytes");
                    t.data = p;
                }
            } catch (const std::exception& ex) {
                errors[i] = ex.what();
            }
        }
    });
    for (const auto& err : errors)
        if (!err.empty()) throw Error(ErrorCode::format, err);
    for (size_t i = 0; i < infos.size(); ++i) out.tensors.add(std::move(infos[i]));
    if (unpacked) out.tensors.keep_alive(unpacked);
    out.tensors.keep_alive(file);
    out.tensors.origin = path;
    return out;
}

}  // namespace stackllama::io
