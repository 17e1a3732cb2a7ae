#include "stackllama/version.hpp"

namespace stackllama {

const char* version() noexcept { return STACKLLAMA_VERSION_STRING; }

}  // namespace stackllama
