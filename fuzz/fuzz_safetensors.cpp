// libFuzzer target: one .safetensors file (8-byte header length, JSON header, data) through
// io::read_safetensors, the reader behind every model and adapter load.
//
// On success every tensor must lie inside the mapped file, with nbytes = numel x dtype size, and
// its bytes are read (a tensor reaching past the map faults; one that merely looks inside is
// checked explicitly, since mapped memory is not tracked by ASan).
#include <cstring>
#include <memory>

#include "fuzz_support.hpp"
#include "io/mmap_file.hpp"
#include "io/safetensors.hpp"

using namespace stackllama;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string path = fuzz::scratch_path("input.safetensors");
    fuzz::write_file(path, std::string_view(reinterpret_cast<const char*>(data), size));

    io::TensorSet set;
    const bool ok = fuzz::expect_ok_or_error([&] { io::read_safetensors(path, set); });
    if (!ok) return 0;

    FUZZ_CHECK(set.owners().size() == 1, "a successful read keeps exactly its file alive");
    const auto file = std::static_pointer_cast<const io::MappedFile>(set.owners()[0]);
    FUZZ_CHECK(file->size() == size, "the map covers the whole file");
    const uint8_t* begin = file->data();
    const uint8_t* end = begin + file->size();
    volatile uint8_t sink = 0;
    for (const auto& [name, t] : set.tensors()) {
        FUZZ_CHECK(name == t.name, "map key and tensor name agree: " + name);
        FUZZ_CHECK(t.nbytes == t.numel() * io::dtype_size(t.dtype),
                   "nbytes of " + name + " = numel x dtype size");
        if (t.nbytes == 0) continue;
        FUZZ_CHECK(t.data >= begin + 8 && t.data <= end && t.nbytes <= uint64_t(end - t.data),
                   "tensor " + name + " lies inside the file");
        for (uint64_t i = 0; i < t.nbytes; i += 4096) sink = sink ^ t.data[i];
        sink = sink ^ t.data[t.nbytes - 1];
    }
    (void)sink;
    return 0;
}
