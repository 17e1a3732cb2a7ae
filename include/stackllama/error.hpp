// One error type for the whole C++ API: every failure throws stackllama::Error with a code and a
// message naming the file, tensor, field or value at fault.
#pragma once

#include <stdexcept>
#include <string>

#include "stackllama/export.hpp"

namespace stackllama {

// Values are pinned: the C ABI returns them as status codes.
enum class ErrorCode : int {
    invalid_argument = 1,  // a caller passed a bad value (null, out of range, bad sampling value)
    io = 2,                // a file could not be opened, read or mapped
    format = 3,            // a file is malformed, truncated or inconsistent
    unsupported = 4,       // a valid file asks for something stackllama does not do
    out_of_range = 5,      // e.g. a prompt longer than the context
    out_of_memory = 6,
    cancelled = 7,
    internal = 99,
};

STACKLLAMA_API const char* error_code_name(ErrorCode code) noexcept;

class STACKLLAMA_API Error : public std::runtime_error {
public:
    Error(ErrorCode code, const std::string& message);
    ErrorCode code() const noexcept { return code_; }

private:
    ErrorCode code_;
};

}  // namespace stackllama
