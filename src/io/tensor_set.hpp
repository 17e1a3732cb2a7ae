// A named collection of tensors from one or more files (safetensors shards, later torch .bin),
// each still in its file's bytes. Format readers fill it; the model takes tensors from it.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace stackllama::io {

// Element types as the safetensors header spells them, and stackllama's block types Q8 and Q4
// (native files only): 2-D, rows of cols / 32 blocks of 34 / 18 bytes in the panel layout of
// kernels/kernels.hpp.
enum class TensorDType { F32, F16, BF16, F64, I64, I32, I16, I8, U8, BOOL, F8_E4M3, F8_E5M2, Q8, Q4 };
const char* dtype_str(TensorDType t);
// Bytes of one element, or of one block of 32 for Q8 and Q4.
size_t dtype_size(TensorDType t);
bool dtype_is_block(TensorDType t);
// Names the safetensors spelling; block_types also accepts "Q8" and "Q4".
bool parse_dtype(const std::string& s, TensorDType* out, bool block_types = false);
// Bytes of a tensor of this dtype and shape; 0 when a block type's shape is not [rows, cols] with
// cols a multiple of 32, or when the count overflows 2^62.
uint64_t tensor_nbytes(TensorDType t, const std::vector<int64_t>& shape);

struct TensorInfo {
    std::string name;
    TensorDType dtype = TensorDType::F32;
    std::vector<int64_t> shape;
    const uint8_t* data = nullptr;  // into a mapped file (kept alive by the TensorSet)
    uint64_t nbytes = 0;
    std::string file;               // the file it came from, for messages
    uint64_t numel() const;
    std::string shape_str() const;  // "[4096, 11008]"
};

class TensorSet {
public:
    const TensorInfo* find(const std::string& name) const;
    const std::map<std::string, TensorInfo>& tensors() const { return tensors_; }
    // Error(format) naming both files when the name is already present.
    void add(TensorInfo info);
    void keep_alive(std::shared_ptr<const void> owner) { owners_.push_back(std::move(owner)); }
    const std::vector<std::shared_ptr<const void>>& owners() const { return owners_; }
    // Where the tensors came from: a file, or a directory and its index.
    std::string origin;

private:
    std::map<std::string, TensorInfo> tensors_;
    std::vector<std::shared_ptr<const void>> owners_;
};

}  // namespace stackllama::io
