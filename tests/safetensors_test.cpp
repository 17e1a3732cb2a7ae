// The safetensors reader on files written here byte by byte.
#include <doctest/doctest.h>

#include <cstring>
#include <nlohmann/json.hpp>

#include "io/safetensors.hpp"
#include "stackllama/error.hpp"
#include "test_support.hpp"

using namespace stackllama;
using namespace testing_support;

namespace {

std::string u64le(uint64_t v) {
    std::string s(8, '\0');
    for (int i = 0; i < 8; ++i) s[size_t(i)] = char((v >> (8 * i)) & 0xff);
    return s;
}

std::string file_with(const std::string& header, const std::string& data) {
    return u64le(header.size()) + header + data;
}

// Error message of reading `bytes` as a safetensors file, or "" when it loads.
std::string error_of(const std::string& bytes, ErrorCode* code = nullptr) {
    TempDir d;
    write_file(d / "x.safetensors", bytes);
    io::TensorSet set;
    try {
        io::read_safetensors(d / "x.safetensors", set);
    } catch (const Error& e) {
        if (code) *code = e.code();
        return e.what();
    }
    return "";
}

}  // namespace

TEST_CASE("a valid file: dtypes, shapes, data in place, metadata skipped") {
    std::string data(4 * 6 + 2 * 3, '\0');
    float f[6] = {1, 2, 3, 4, 5, 6};
    std::memcpy(&data[0], f, sizeof f);
    const std::string header =
        R"({"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},)"
        R"("b":{"dtype":"BF16","shape":[3],"data_offsets":[24,30]}})";
    TempDir d;
    write_file(d / "m.safetensors", file_with(header, data));
    io::TensorSet set;
    io::read_safetensors(d / "m.safetensors", set);
    REQUIRE(set.tensors().size() == 2);
    const io::TensorInfo* a = set.find("a");
    REQUIRE(a);
    CHECK(a->dtype == io::TensorDType::F32);
    CHECK(a->shape == std::vector<int64_t>{2, 3});
    CHECK(a->nbytes == 24);
    float back[6];
    std::memcpy(back, a->data, 24);
    CHECK(back[5] == 6.0f);
    CHECK(set.find("b")->shape_str() == "[3]");
    CHECK(!set.find("__metadata__"));
}

TEST_CASE("a zero-element tensor and an empty header are fine") {
    CHECK(error_of(file_with(R"({"e":{"dtype":"F32","shape":[0,4],"data_offsets":[0,0]}})", "")) ==
          "");
    CHECK(error_of(file_with("{}", "")) == "");
}

TEST_CASE("damaged files give errors naming the file and the tensor") {
    ErrorCode code{};
    CHECK(error_of("abc", &code).find("truncated") != std::string::npos);
    CHECK(code == ErrorCode::format);

    CHECK(error_of(u64le(1000) + "{}").find("exceeds the file size") != std::string::npos);
    CHECK(error_of(u64le(~0ull) + "{}").find("exceeds the file size") != std::string::npos);
    CHECK(error_of(file_with("{\"a\": [", "")).find("malformed JSON") != std::string::npos);
    CHECK(error_of(file_with("[1,2]", "")).find("not a JSON object") != std::string::npos);

    const std::string past =
        error_of(file_with(R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})",
                           std::string(8, '\0')));
    CHECK(past.find("tensor w") != std::string::npos);
    CHECK(past.find("past the end") != std::string::npos);
    CHECK(past.find("x.safetensors") != std::string::npos);

    const std::string count = error_of(
        file_with(R"({"w":{"dtype":"F16","shape":[4],"data_offsets":[0,16]}})", std::string(16, 0)));
    CHECK(count.find("need 8") != std::string::npos);

    CHECK(error_of(file_with(R"({"w":{"dtype":"Q4","shape":[4],"data_offsets":[0,4]}})",
                             std::string(4, 0)))
              .find("unknown dtype \"Q4\"") != std::string::npos);
    CHECK(error_of(file_with(R"({"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})",
                             std::string(4, 0)))
              .find("non-negative") != std::string::npos);
    CHECK(error_of(file_with(
                       R"({"w":{"dtype":"F32","shape":[4611686018427387904,4],"data_offsets":[0,4]}})",
                       std::string(4, 0)))
              .find("overflows") != std::string::npos);
    CHECK(error_of(file_with(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}})",
                             std::string(4, 0)))
              .find("reversed") != std::string::npos);
    CHECK(error_of(file_with(R"({"w":{"dtype":"F32","shape":[1]}})", std::string(4, 0)))
              .find("data_offsets") != std::string::npos);
    CHECK(error_of(file_with(R"({"w":{"dtype":7,"shape":[1],"data_offsets":[0,4]}})",
                             std::string(4, 0)))
              .find("dtype") != std::string::npos);
    CHECK(error_of(file_with(R"({"w":3})", "")).find("not an object") != std::string::npos);
}

TEST_CASE("a tensor present in two shards is refused") {
    TempDir d;
    const std::string f = file_with(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})",
                                    std::string(4, 0));
    write_file(d / "a.safetensors", f);
    write_file(d / "b.safetensors", f);
    io::TensorSet set;
    io::read_safetensors(d / "a.safetensors", set);
    try {
        io::read_safetensors(d / "b.safetensors", set);
        FAIL("no error");
    } catch (const Error& e) {
        CHECK(std::string(e.what()).find("appears twice") != std::string::npos);
    }
}

TEST_CASE("a directory without weights") {
    TempDir d;
    try {
        io::open_safetensors_dir(d.path);
        FAIL("no error");
    } catch (const Error& e) {
        CHECK(e.code() == ErrorCode::io);
        CHECK(std::string(e.what()).find("model.safetensors") != std::string::npos);
    }
}
