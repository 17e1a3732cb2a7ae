// The native single-file format (.sllm), documented in docs/NATIVE_FORMAT.md: a fixed header, the
// tensors (64-byte aligned, optionally zstd-compressed), then a JSON index with the model config,
// the tokenizer and every tensor's place, type and XXH64 checksum.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "io/json_file.hpp"
#include "io/tensor_set.hpp"

namespace stackllama::io {

constexpr char kNativeMagic[8] = {'S', 'L', 'L', 'M', 'O', 'D', 'E', 'L'};
constexpr uint32_t kNativeVersionMajor = 1;
constexpr uint32_t kNativeVersionMinor = 1;  // 1: adapters kept unmerged
constexpr size_t kNativeHeaderSize = 64;
constexpr size_t kNativeAlign = 64;

// True when the file starts with the native magic.
bool is_native_file(const std::string& path);

struct NativeContents {
    Json config;                 // config.json
    std::string tokenizer_model; // serialized SentencePiece model, or empty
    Json tokenizer_config;       // tokenizer_config.json, or null
    Json extra_files;            // {"generation_config.json": {...}, ...}
    // Adapters kept unmerged (minor version 1): [{"name", "scale", "config", "prefix"}], their
    // tensors in `tensors` under "<prefix><PEFT tensor name>". An array, maybe empty.
    Json adapters;
    TensorSet tensors;           // data in the map, or decompressed buffers
};

struct NativeReadOptions {
    bool verify_checksums = true;
    int n_threads = 1;
};

// Error(format) names the file and the section or tensor at fault: wrong magic, a version this
// build cannot read, a truncated file, a checksum mismatch.
NativeContents read_native(const std::string& path, const NativeReadOptions& options);

struct NativeTensor {
    std::string name;
    TensorDType dtype = TensorDType::F32;
    std::vector<int64_t> shape;
    uint64_t nbytes = 0;
    const void* data = nullptr;  // the bytes, or null and `produce` makes them when written
    std::function<std::vector<uint8_t>()> produce;
};

struct NativeWriteOptions {
    int zstd_level = 0;  // 0 = store uncompressed
    int n_threads = 1;
    std::function<void(uint64_t done, uint64_t total)> progress;  // bytes of tensor data
    Json adapters;  // the index's "adapters" list, or null for none (see NativeContents)
};

// Writes to `path.tmp` and renames, so a failed write never leaves a damaged file under `path`.
void write_native(const std::string& path, const Json& config, const std::string& tokenizer_model,
                  const Json& tokenizer_config, const Json& extra_files,
                  const std::vector<NativeTensor>& tensors, const NativeWriteOptions& options);

}  // namespace stackllama::io
