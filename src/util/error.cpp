#include "stackllama/error.hpp"

namespace stackllama {

const char* error_code_name(ErrorCode code) noexcept {
    switch (code) {
        case ErrorCode::invalid_argument: return "invalid argument";
        case ErrorCode::io: return "I/O error";
        case ErrorCode::format: return "malformed file";
        case ErrorCode::unsupported: return "unsupported";
        case ErrorCode::out_of_range: return "out of range";
        case ErrorCode::out_of_memory: return "out of memory";
        case ErrorCode::cancelled: return "cancelled";
        case ErrorCode::internal: return "internal error";
    }
    return "unknown error";
}

Error::Error(ErrorCode code, const std::string& message) : std::runtime_error(message), code_(code) {}

}  // namespace stackllama
