// libFuzzer target: a torch.save checkpoint (ZIP archive + pickle) through io::read_torch_bin,
// which reads PyTorch .bin weights and PEFT adapter_model.bin files. Covers the ZIP reader, the
// pickle reader (nothing is ever executed) and the tensor rebuilding on top of them.
//
// On success every tensor must lie inside the mapped file or inside a buffer the set owns
// (non-contiguous views are gathered into one), and all of its bytes are read.
//
// The reader checks data.pkl's CRC-32 before parsing it, which no mutation survives; so, before
// writing the input, the harness recomputes the CRC-32 of every entry it can locate (a mangled
// archive is left as it is). CRC mismatches themselves are covered by
// tests/bad_input_corpus_test.cpp.
#include <cstring>
#include <memory>
#include <vector>

#include "fuzz_support.hpp"
#include "io/mmap_file.hpp"
#include "io/torch_bin.hpp"
#include "io/zip_reader.hpp"

using namespace stackllama;

namespace {

uint16_t rd16(const uint8_t* p) { return uint16_t(p[0] | (p[1] << 8)); }
uint32_t rd32(const uint8_t* p) {
    return uint32_t(p[0]) | (uint32_t(p[1]) << 8) | (uint32_t(p[2]) << 16) |
           (uint32_t(p[3]) << 24);
}
void wr32(uint8_t* p, uint32_t v) {
    for (int i = 0; i < 4; ++i) p[i] = uint8_t(v >> (8 * i));
}

// Sets the recorded CRC-32 of every (32-bit, in-bounds) entry to that of its bytes.
void fix_crcs(std::string& zip) {
    uint8_t* d = reinterpret_cast<uint8_t*>(zip.data());
    const size_t n = zip.size();
    if (n < 22) return;
    size_t eocd = n - 22;
    const size_t lowest = eocd > 0xffff ? eocd - 0xffff : 0;
    while (rd32(d + eocd) != 0x06054b50) {
        if (eocd == lowest) return;
        --eocd;
    }
    const uint64_t entries = rd16(d + eocd + 10), cd_size = rd32(d + eocd + 12),
                   cd_off = rd32(d + eocd + 16);
    if (cd_off > n || cd_size > n - cd_off) return;
    uint64_t p = cd_off;
    for (uint64_t i = 0; i < entries && p + 46 <= cd_off + cd_size; ++i) {
        uint8_t* c = d + p;
        if (rd32(c) != 0x02014b50) return;
        const uint64_t csize = rd32(c + 20), local = rd32(c + 42);
        const uint64_t name_len = rd16(c + 28), extra = rd16(c + 30), comment = rd16(c + 32);
        p += 46 + name_len + extra + comment;
        if (local + 30 > n || rd32(d + local) != 0x04034b50) continue;
        const uint64_t data = local + 30 + rd16(d + local + 26) + rd16(d + local + 28);
        if (data > n || csize > n - data) continue;
        const uint32_t crc = io::crc32(d + data, size_t(csize));
        wr32(c + 16, crc);
        wr32(d + local + 14, crc);
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string path = fuzz::scratch_path("input.bin");
    std::string bytes(reinterpret_cast<const char*>(data), size);
    fix_crcs(bytes);
    fuzz::write_file(path, bytes);

    io::TensorSet set;
    if (!fuzz::expect_ok_or_error([&] { io::read_torch_bin(path, set); })) return 0;

    // read_torch_bin keeps the mapped file first, then one byte vector per gathered view.
    FUZZ_CHECK(!set.owners().empty(), "the file is kept alive");
    const auto file = std::static_pointer_cast<const io::MappedFile>(set.owners()[0]);
    FUZZ_CHECK(file->size() == size, "the map covers the whole file");
    struct Range {
        const uint8_t* begin;
        const uint8_t* end;
    };
    std::vector<Range> ranges{{file->data(), file->data() + file->size()}};
    for (size_t i = 1; i < set.owners().size(); ++i) {
        const auto buf = std::static_pointer_cast<const std::vector<uint8_t>>(set.owners()[i]);
        ranges.push_back({buf->data(), buf->data() + buf->size()});
    }
    volatile uint8_t sink = 0;
    for (const auto& [name, t] : set.tensors()) {
        FUZZ_CHECK(t.nbytes == t.numel() * io::dtype_size(t.dtype), "nbytes of " + name);
        if (t.nbytes == 0) continue;
        bool inside = false;
        for (const Range& r : ranges)
            inside = inside || (t.data >= r.begin && t.data <= r.end &&
                                t.nbytes <= uint64_t(r.end - t.data));
        FUZZ_CHECK(inside, "tensor " + name + " lies inside the file or an owned buffer");
        for (uint64_t i = 0; i < t.nbytes; i += 4096) sink = sink ^ t.data[i];
        sink = sink ^ t.data[t.nbytes - 1];
    }
    (void)sink;
    return 0;
}
