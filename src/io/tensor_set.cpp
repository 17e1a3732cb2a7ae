#include "io/tensor_set.hpp"

#include <sstream>

#include "stackllama/error.hpp"

namespace stackllama::io {

namespace {

struct DTypeName {
    TensorDType t;
    const char* name;
    size_t size;
};
constexpr DTypeName kDTypes[] = {
    {TensorDType::F32, "F32", 4},      {TensorDType::F16, "F16", 2},
    {TensorDType::BF16, "BF16", 2},    {TensorDType::F64, "F64", 8},
    {TensorDType::I64, "I64", 8},      {TensorDType::I32, "I32", 4},
    {TensorDType::I16, "I16", 2},      {TensorDType::I8, "I8", 1},
    {TensorDType::U8, "U8", 1},        {TensorDType::BOOL, "BOOL", 1},
    {TensorDType::F8_E4M3, "F8_E4M3", 1}, {TensorDType::F8_E5M2, "F8_E5M2", 1},
    {TensorDType::Q8, "Q8", 34},       {TensorDType::Q4, "Q4", 18},
};
constexpr uint64_t kBlock = 32;

}  // namespace

const char* dtype_str(TensorDType t) {
    for (const auto& d : kDTypes)
        if (d.t == t) return d.name;
    return "?";
}

size_t dtype_size(TensorDType t) {
    for (const auto& d : kDTypes)
        if (d.t == t) return d.size;
    return 0;
}

bool dtype_is_block(TensorDType t) { return t == TensorDType::Q8 || t == TensorDType::Q4; }

uint64_t tensor_nbytes(TensorDType t, const std::vector<int64_t>& shape) {
    const uint64_t limit = uint64_t(1) << 62;
    if (dtype_is_block(t)) {
        if (shape.size() != 2 || shape[0] < 0 || shape[1] < 0 || uint64_t(shape[1]) % kBlock != 0)
            return 0;
        const uint64_t rows = uint64_t(shape[0]), blocks = uint64_t(shape[1]) / kBlock;
        if (blocks && rows > limit / blocks / dtype_size(t)) return 0;
        return rows * blocks * dtype_size(t);
    }
    uint64_t n = dtype_size(t);
    for (int64_t d : shape) {
        if (d < 0) return 0;
        if (d && n > limit / uint64_t(d)) return 0;
        n *= uint64_t(d);
    }
    return n;
}

bool parse_dtype(const std::string& s, TensorDType* out, bool block_types) {
    for (const auto& d : kDTypes) {
        if (s == d.name && (block_types || !dtype_is_block(d.t))) {
            *out = d.t;
            return true;
        }
    }
    return false;
}

uint64_t TensorInfo::numel() const {
    uint64_t n = 1;
    for (int64_t d : shape) n *= static_cast<uint64_t>(d);
    return n;
}

std::string TensorInfo::shape_str() const {
    std::ostringstream s;
    s << '[';
    for (size_t i = 0; i < shape.size(); ++i) s << (i ? ", " : "") << shape[i];
    s << ']';
    return s.str();
}

const TensorInfo* TensorSet::find(const std::string& name) const {
    auto it = tensors_.find(name);
    return it == tensors_.end() ? nullptr : &it->second;
}

void TensorSet::add(TensorInfo info) {
    auto it = tensors_.find(info.name);
    if (it != tensors_.end()) {
        throw Error(ErrorCode::format, "tensor " + info.name + " appears twice: in " +
                                           it->second.file + " and in " + info.file);
    }
    std::string key = info.name;
    tensors_.emplace(std::move(key), std::move(info));
}

}  // namespace stackllama::io
