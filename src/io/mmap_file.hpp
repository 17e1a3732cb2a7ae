// A read-only memory map of a whole file. Weights are used in place from the map, never copied.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace stackllama::io {

class MappedFile {
public:
    // Throws Error(io) naming the path when the file cannot be opened or mapped.
    static std::shared_ptr<MappedFile> open(const std::string& path);
    ~MappedFile();
    MappedFile(const MappedFile&) = delete;
    MappedFile& operator=(const MappedFile&) = delete;

    const uint8_t* data() const { return data_; }
    size_t size() const { return size_; }
    const std::string& path() const { return path_; }

private:
    MappedFile() = default;
    const uint8_t* data_ = nullptr;
    size_t size_ = 0;
    std::string path_;
};

bool file_exists(const std::string& path);
bool dir_exists(const std::string& path);
std::string join_path(const std::string& dir, const std::string& name);
// Reads a whole (small) file; Error(io) naming the path on failure.
std::string read_text_file(const std::string& path);

}  // namespace stackllama::io
