#include "io/zip_reader.hpp"

#include <array>
#include <cstring>

#include "stackllama/error.hpp"

namespace stackllama::io {

namespace {

constexpr uint32_t kLocalSig = 0x04034b50;
constexpr uint32_t kCentralSig = 0x02014b50;
constexpr uint32_t kEndSig = 0x06054b50;
constexpr uint32_t kEnd64Sig = 0x06064b50;
constexpr uint32_t kLocator64Sig = 0x07064b50;
constexpr size_t kEndSize = 22, kLocator64Size = 20, kEnd64Size = 56;
constexpr size_t kCentralSize = 46, kLocalSize = 30;
constexpr uint16_t kZip64ExtraId = 0x0001;

uint16_t rd16(const uint8_t* p) { return uint16_t(p[0] | (p[1] << 8)); }
uint32_t rd32(const uint8_t* p) {
    return uint32_t(p[0]) | (uint32_t(p[1]) << 8) | (uint32_t(p[2]) << 16) | (uint32_t(p[3]) << 24);
}
uint64_t rd64(const uint8_t* p) { return uint64_t(rd32(p)) | (uint64_t(rd32(p + 4)) << 32); }

// Entry names come from the file: show them with control and non-ASCII bytes escaped, cut short.
std::string printable(const std::string& s) {
    std::string out;
    for (size_t i = 0; i < s.size() && i < 200; ++i) {
        const unsigned char c = static_cast<unsigned char>(s[i]);
        if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
            out += char(c);
        } else {
            static const char* hex = "0123456789abcdef";
            out += "\\x";
            out += hex[c >> 4];
            out += hex[c & 15];
        }
    }
    if (s.size() > 200) out += "...";
    return out;
}

[[noreturn]] void bad(const std::string& path, const std::string& what) {
    throw Error(ErrorCode::format, path + ": " + what);
}

std::string entry_label(const std::string& name) { return "zip entry \"" + printable(name) + "\""; }

std::array<uint32_t, 256> make_crc_table() {
    std::array<uint32_t, 256> t{};
    for (uint32_t i = 0; i < 256; ++i) {
        uint32_t c = i;
        for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        t[i] = c;
    }
    return t;
}

// Where the central directory is, from the (ZIP64) end-of-central-directory record.
struct DirectoryLocation {
    uint64_t entries = 0;
    uint64_t offset = 0;
    uint64_t size = 0;
    uint64_t limit = 0;  // the directory must end at or before this offset (its end record)
};

DirectoryLocation find_directory(const uint8_t* data, size_t size, const std::string& path) {
    if (size < kEndSize) {
        bad(path, "truncated or not a zip archive: " + std::to_string(size) +
                      " bytes, too short for the end-of-central-directory record");
    }
    // The end record is the last thing in the file, followed only by its comment (at most 64 KiB).
    // Requiring the comment length to reach exactly the end of the file rejects signature bytes
    // that happen to appear inside the comment or inside tensor data.
    const size_t lowest = size - kEndSize > 0xffff ? size - kEndSize - 0xffff : 0;
    size_t pos = size - kEndSize;
    bool found = false;
    for (;;) {
        if (rd32(data + pos) == kEndSig && pos + kEndSize + rd16(data + pos + 20) == size) {
            found = true;
            break;
        }
        if (pos == lowest) break;
        --pos;
    }
    if (!found) {
        bad(path, "no zip end-of-central-directory record: the file is truncated or not a zip "
                  "archive");
    }
    const uint8_t* e = data + pos;
    DirectoryLocation loc;
    uint32_t disk = rd16(e + 4), cd_disk = rd16(e + 6);
    uint64_t disk_entries = rd16(e + 8);
    loc.entries = rd16(e + 10);
    loc.size = rd32(e + 12);
    loc.offset = rd32(e + 16);
    loc.limit = pos;

    if (pos >= kLocator64Size && rd32(e - kLocator64Size) == kLocator64Sig) {
        const uint8_t* l = e - kLocator64Size;
        const uint64_t end64 = rd64(l + 8);
        if (rd32(l + 4) != 0 || rd32(l + 16) > 1)
            throw Error(ErrorCode::unsupported,
                        path + ": multi-disk zip archives are not supported");
        if (end64 > pos - kLocator64Size || pos - kLocator64Size - end64 < kEnd64Size) {
            bad(path, "ZIP64 end-of-central-directory offset " + std::to_string(end64) +
                          " does not leave room for the record before its locator (truncated or "
                          "corrupt archive)");
        }
        const uint8_t* z = data + end64;
        if (rd32(z) != kEnd64Sig) {
            bad(path, "no ZIP64 end-of-central-directory record at offset " +
                          std::to_string(end64) + " (corrupt archive)");
        }
        disk = rd32(z + 16);
        cd_disk = rd32(z + 20);
        disk_entries = rd64(z + 24);
        loc.entries = rd64(z + 32);
        loc.size = rd64(z + 40);
        loc.offset = rd64(z + 48);
        loc.limit = end64;
    }
    if (disk != 0 || cd_disk != 0 || disk_entries != loc.entries)
        throw Error(ErrorCode::unsupported, path + ": multi-disk zip archives are not supported");
    if (loc.offset > loc.limit || loc.size > loc.limit - loc.offset) {
        bad(path, "central directory (offset " + std::to_string(loc.offset) + ", " +
                      std::to_string(loc.size) + " bytes) runs past its end record at " +
                      std::to_string(loc.limit) + " (truncated or corrupt archive)");
    }
    if (loc.entries > kMaxZipEntries || loc.entries > loc.size / kCentralSize) {
        bad(path, "central directory claims " + std::to_string(loc.entries) + " entries in " +
                      std::to_string(loc.size) + " bytes (corrupt archive)");
    }
    return loc;
}

// Replaces saturated 32-bit fields with their values from the ZIP64 extra field.
void apply_zip64_extra(const uint8_t* extra, size_t len, ZipEntry& e, bool need_usize,
                       bool need_csize, bool need_offset, const std::string& path) {
    size_t p = 0;
    while (p + 4 <= len) {
        const uint16_t id = rd16(extra + p), n = rd16(extra + p + 2);
        if (n > len - p - 4) bad(path, entry_label(e.name) + ": extra field runs past its end");
        if (id == kZip64ExtraId) {
            const uint8_t* f = extra + p + 4;
            size_t left = n;
            auto take = [&](uint64_t& out, const char* what) {
                if (left < 8) {
                    bad(path, entry_label(e.name) + ": ZIP64 extra field lacks the " +
                                  std::string(what));
                }
                out = rd64(f);
                f += 8;
                left -= 8;
            };
            if (need_usize) take(e.uncompressed_size, "uncompressed size");
            if (need_csize) take(e.compressed_size, "compressed size");
            if (need_offset) take(e.local_header_offset, "local header offset");
            return;
        }
        p += 4 + size_t(n);
    }
    if (need_usize || need_csize || need_offset)
        bad(path, entry_label(e.name) + ": 32-bit sizes are saturated but there is no ZIP64 extra "
                                        "field");
}

}  // namespace

uint32_t crc32(const uint8_t* data, size_t size, uint32_t crc) {
    static const std::array<uint32_t, 256> table = make_crc_table();
    crc = ~crc;
    for (size_t i = 0; i < size; ++i) crc = table[(crc ^ data[i]) & 0xff] ^ (crc >> 8);
    return ~crc;
}

ZipReader::ZipReader(const uint8_t* data, size_t size, std::string path)
    : data_(data), size_(size), path_(std::move(path)) {
    const DirectoryLocation loc = find_directory(data_, size_, path_);
    const uint8_t* cd = data_ + loc.offset;
    const uint64_t cd_size = loc.size;
    uint64_t p = 0;
    entries_.reserve(static_cast<size_t>(loc.entries));
    for (uint64_t i = 0; i < loc.entries; ++i) {
        if (cd_size - p < kCentralSize || rd32(cd + p) != kCentralSig) {
            bad(path_, "central directory entry " + std::to_string(i) + " of " +
                           std::to_string(loc.entries) + " is missing or damaged");
        }
        const uint8_t* h = cd + p;
        const size_t name_len = rd16(h + 28), extra_len = rd16(h + 30), comment_len = rd16(h + 32);
        if (cd_size - p - kCentralSize < uint64_t(name_len) + extra_len + comment_len) {
            bad(path_, "central directory entry " + std::to_string(i) +
                           " runs past the end of the directory");
        }
        ZipEntry e;
        e.name.assign(reinterpret_cast<const char*>(h + kCentralSize), name_len);
        e.flags = rd16(h + 8);
        e.method = rd16(h + 10);
        e.crc32 = rd32(h + 16);
        e.compressed_size = rd32(h + 20);
        e.uncompressed_size = rd32(h + 24);
        e.local_header_offset = rd32(h + 42);
        const uint32_t sat = 0xffffffffu;
        apply_zip64_extra(h + kCentralSize + name_len, extra_len, e, e.uncompressed_size == sat,
                          e.compressed_size == sat, e.local_header_offset == sat, path_);
        if (rd16(h + 34) != 0 && rd16(h + 34) != 0xffff)
            throw Error(ErrorCode::unsupported,
                        path_ + ": multi-disk zip archives are not supported");
        if (e.flags & 1) {
            throw Error(ErrorCode::unsupported,
                        path_ + ": " + entry_label(e.name) + " is encrypted");
        }
        p += kCentralSize + name_len + extra_len + comment_len;

        // The local header repeats the name and may carry its own extra field (torch.save pads
        // with one so that data is aligned); the data follows it. All of it must lie before the
        // central directory.
        const std::string label = entry_label(e.name);
        const uint64_t end = loc.offset;
        if (e.local_header_offset > end || end - e.local_header_offset < kLocalSize) {
            bad(path_, label + ": local header offset " + std::to_string(e.local_header_offset) +
                           " is not before the central directory at " + std::to_string(end) +
                           " (truncated or corrupt archive)");
        }
        const uint8_t* lh = data_ + e.local_header_offset;
        if (rd32(lh) != kLocalSig)
            bad(path_, label + ": no local header at offset " +
                           std::to_string(e.local_header_offset));
        const uint64_t lname = rd16(lh + 26), lextra = rd16(lh + 28);
        e.data_offset = e.local_header_offset + kLocalSize + lname + lextra;
        if (e.data_offset > end)
            bad(path_, label + ": local header runs into the central directory");
        if (lname != name_len || std::memcmp(lh + kLocalSize, e.name.data(), name_len) != 0)
            bad(path_, label + ": local header names a different entry");
        if (e.compressed_size > end - e.data_offset) {
            bad(path_, label + ": " + std::to_string(e.compressed_size) +
                           " bytes of data at offset " + std::to_string(e.data_offset) +
                           " overlap the central directory at " + std::to_string(end) +
                           " (truncated or corrupt archive)");
        }
        if (e.method == 0 && e.compressed_size != e.uncompressed_size) {
            bad(path_, label + ": stored entry has " + std::to_string(e.compressed_size) +
                           " bytes but records an uncompressed size of " +
                           std::to_string(e.uncompressed_size));
        }
        if (!by_name_.emplace(e.name, entries_.size()).second)
            bad(path_, label + " appears twice in the central directory");
        entries_.push_back(std::move(e));
    }
}

const ZipEntry* ZipReader::find(const std::string& name) const {
    auto it = by_name_.find(name);
    return it == by_name_.end() ? nullptr : &entries_[it->second];
}

const uint8_t* ZipReader::stored_data(const ZipEntry& entry) const {
    if (entry.method != 0) {
        throw Error(ErrorCode::unsupported,
                    path_ + ": " + entry_label(entry.name) + " is compressed (method " +
                        std::to_string(entry.method) +
                        "); only stored entries are read, as torch.save writes them");
    }
    return data_ + entry.data_offset;
}

void ZipReader::verify_crc(const ZipEntry& entry) const {
    const uint8_t* p = stored_data(entry);
    const uint32_t got = crc32(p, static_cast<size_t>(entry.compressed_size));
    if (got != entry.crc32) {
        bad(path_, entry_label(entry.name) + ": CRC-32 mismatch (the archive is corrupt)");
    }
}

}  // namespace stackllama::io
