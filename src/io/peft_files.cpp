#include "io/peft_files.hpp"

#include "io/mmap_file.hpp"
#include "io/safetensors.hpp"
#include "io/torch_bin.hpp"
#include "stackllama/error.hpp"

namespace stackllama::io {

TensorSet open_adapter_weights(const std::string& dir) {
    TensorSet set;
    const std::string st = join_path(dir, "adapter_model.safetensors");
    const std::string bin = join_path(dir, "adapter_model.bin");
    if (file_exists(st)) {
        read_safetensors(st, set);
        set.origin = st;
    } else if (file_exists(bin)) {
        read_torch_bin(bin, set);
        set.origin = bin;
    } else {
        throw Error(ErrorCode::io, "no adapter weights in " + dir +
                                       ": expected adapter_model.safetensors or "
                                       "adapter_model.bin");
    }
    return set;
}

}  // namespace stackllama::io
