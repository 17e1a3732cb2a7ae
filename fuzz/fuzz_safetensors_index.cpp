// libFuzzer target: model.safetensors.index.json through io::open_safetensors_dir, the loader of
// sharded checkpoints. The folder holds three real shards (tensors a, b | c | d) and one damaged
// file; the input is the index, so the fuzzer decides which shards are read and which tensor
// each is said to hold. The index can only name files inside the folder.
#include <vector>

#include "fuzz_support.hpp"
#include "io/safetensors.hpp"
#include "io/safetensors_writer.hpp"

using namespace stackllama;

namespace {

const std::string& model_dir() {
    static const std::string dir = [] {
        const std::string d = fuzz::scratch_path("index-model");
        std::filesystem::create_directories(d);
        static const float f[6] = {1, 2, 3, 4, 5, 6};
        static const uint16_t h[4] = {0x3c00, 0x4000, 0x4200, 0x4400};
        io::write_safetensors(d + "/model-00001-of-00003.safetensors",
                              {{"a", io::TensorDType::F32, {2, 3}, f},
                               {"b", io::TensorDType::F16, {4}, h}});
        io::write_safetensors(d + "/model-00002-of-00003.safetensors",
                              {{"c", io::TensorDType::BF16, {2, 2}, h}});
        io::write_safetensors(d + "/model-00003-of-00003.safetensors",
                              {{"d", io::TensorDType::F32, {0, 5}, f}}, {});
        fuzz::write_file(d + "/damaged.safetensors",  // a header length past the end
                         std::string("\x10\0\0\0\0\0\0\0{\"x\":1}", 15));
        return d;
    }();
    return dir;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string& dir = model_dir();
    fuzz::write_file(dir + "/model.safetensors.index.json",
                     std::string_view(reinterpret_cast<const char*>(data), size));
    io::TensorSet set;
    if (!fuzz::expect_ok_or_error([&] { set = io::open_safetensors_dir(dir); })) return 0;
    // Only the four real tensors exist; each shard at most once.
    FUZZ_CHECK(set.tensors().size() <= 4, "at most the tensors of the three shards");
    for (const auto& [name, t] : set.tensors()) {
        FUZZ_CHECK(name == "a" || name == "b" || name == "c" || name == "d", "unknown " + name);
        FUZZ_CHECK(t.nbytes == t.numel() * io::dtype_size(t.dtype), "nbytes of " + name);
    }
    return 0;
}
