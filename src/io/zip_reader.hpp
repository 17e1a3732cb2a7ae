// A read-only ZIP reader over bytes already in memory (a mapped file), enough for the archives
// torch.save writes: the central directory (ZIP64 when needed) and STORED entries read in place.
// Every offset and size is checked against the buffer before it is used, whatever the bytes say.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace stackllama::io {

struct ZipEntry {
    std::string name;
    uint16_t method = 0;          // 0 = stored; anything else is compressed
    uint16_t flags = 0;
    uint32_t crc32 = 0;
    uint64_t compressed_size = 0;
    uint64_t uncompressed_size = 0;
    uint64_t local_header_offset = 0;
    uint64_t data_offset = 0;     // first byte of the entry's data, from its local header
};

class ZipReader {
public:
    // Parses the central directory and every local header of `size` bytes at `data`, which the
    // caller keeps alive. `path` names the archive in messages. Error(format) naming the entry at
    // fault for truncated or inconsistent archives; Error(unsupported) for multi-disk or
    // encrypted archives.
    ZipReader(const uint8_t* data, size_t size, std::string path);

    const std::vector<ZipEntry>& entries() const { return entries_; }
    const ZipEntry* find(const std::string& name) const;
    const std::string& path() const { return path_; }

    // The bytes of a STORED entry, in place. Error(unsupported) naming the entry when it is
    // compressed.
    const uint8_t* stored_data(const ZipEntry& entry) const;
    // Error(format) naming the entry when its bytes do not match the recorded CRC-32.
    void verify_crc(const ZipEntry& entry) const;

private:
    const uint8_t* data_;
    size_t size_;
    std::string path_;
    std::vector<ZipEntry> entries_;
    std::map<std::string, size_t> by_name_;
};

uint32_t crc32(const uint8_t* data, size_t size, uint32_t crc = 0);

// Bounds on what a plausible archive holds; more is treated as corruption.
constexpr uint64_t kMaxZipEntries = 1u << 20;

}  // namespace stackllama::io
