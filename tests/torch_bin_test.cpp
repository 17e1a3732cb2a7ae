// The torch.save (.bin) reader: real checkpoints written by Debian's torch, compared value by
// value with what Python wrote, and hostile files (forbidden globals, pickle bombs, damaged zips)
// that must fail with an error naming the fault, never execute anything nor read out of bounds.
#include <doctest/doctest.h>

#include <cstring>
#include <nlohmann/json.hpp>

#include "io/pickle.hpp"
#include "io/torch_bin.hpp"
#include "io/zip_reader.hpp"
#include "stackllama/error.hpp"
#include "test_support.hpp"

using namespace stackllama;
using namespace testing_support;

namespace {

// Runs tests/torch_bin/make_bin_fixtures.py once into a temporary folder.
const std::string& fixtures() {
    static TempDir dir;
    static const bool written = [] {
        const ProcessResult r =
            run_process({python(), source_dir() + "/tests/torch_bin/make_bin_fixtures.py",
                         dir.path});
        if (r.exit_code != 0) {
            FAIL("make_bin_fixtures.py failed (" << r.exit_code << "): " << r.out << r.err);
        }
        return true;
    }();
    (void)written;
    return dir.path;
}

std::string fx(const std::string& rel) { return fixtures() + "/" + rel; }

const nlohmann::json& expected() {
    static const nlohmann::json j = nlohmann::json::parse(read_file(fx("expected.json")));
    return j;
}

float half_to_float(uint16_t h) {
    const uint32_t sign = uint32_t(h >> 15) << 31;
    uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
    if (exp == 0 && man == 0) {
        bits = sign;
    } else if (exp == 0) {  // subnormal: normalise
        exp = 113;
        while (!(man & 0x400)) {
            man <<= 1;
            --exp;
        }
        bits = sign | (exp << 23) | ((man & 0x3ff) << 13);
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | (man << 13);
    } else {
        bits = sign | ((exp + 112) << 23) | (man << 13);
    }
    float f;
    std::memcpy(&f, &bits, 4);
    return f;
}

std::vector<float> values_of(const io::TensorInfo& t) {
    std::vector<float> out(t.numel());
    for (size_t i = 0; i < out.size(); ++i) {
        if (t.dtype == io::TensorDType::F32) {
            std::memcpy(&out[i], t.data + 4 * i, 4);
        } else {
            uint16_t h;
            std::memcpy(&h, t.data + 2 * i, 2);
            if (t.dtype == io::TensorDType::F16) {
                out[i] = half_to_float(h);
            } else {
                const uint32_t bits = uint32_t(h) << 16;
                std::memcpy(&out[i], &bits, 4);
            }
        }
    }
    return out;
}

// Every tensor Python recorded under `key`, and no other, with its dtype, shape and values.
void check_expected(const io::TensorSet& set, const std::string& key) {
    INFO("fixture " << key);
    REQUIRE(expected().contains(key));
    const nlohmann::json& e = expected()[key];
    CHECK(set.tensors().size() == e.size());
    for (auto it = e.begin(); it != e.end(); ++it) {
        INFO("tensor " << it.key());
        const io::TensorInfo* t = set.find(it.key());
        REQUIRE(t);
        CHECK(io::dtype_str(t->dtype) == it.value()["dtype"].get<std::string>());
        CHECK(t->shape == it.value()["shape"].get<std::vector<int64_t>>());
        CHECK(t->nbytes == t->numel() * io::dtype_size(t->dtype));
        const std::vector<float> got = values_of(*t);
        const std::vector<double> want = it.value()["values"].get<std::vector<double>>();
        REQUIRE(got.size() == want.size());
        size_t mismatches = 0;
        for (size_t i = 0; i < got.size(); ++i) mismatches += got[i] != float(want[i]);
        CHECK(mismatches == 0);
    }
}

io::TensorSet load(const std::string& path) {
    io::TensorSet set;
    io::read_torch_bin(path, set);
    return set;
}

// The message of reading `path`, or "" when it loads.
std::string error_of(const std::string& path, ErrorCode* code = nullptr) {
    try {
        load(path);
    } catch (const Error& e) {
        if (code) *code = e.code();
        return e.what();
    }
    return "";
}

bool has(const std::string& s, const std::string& part) {
    return s.find(part) != std::string::npos;
}

// Bytes from hex pairs separated by spaces: "80 02 7d".
std::string hx(const char* hex) {
    std::string out;
    for (const char* p = hex; *p;) {
        if (*p == ' ') {
            ++p;
            continue;
        }
        out += char(std::stoi(std::string(p, 2), nullptr, 16));
        p += 2;
    }
    return out;
}

// --- a ZIP writer for archives torch would not produce: ZIP64 records, damaged fields ---
std::string le(uint64_t v, int n) {
    std::string s(size_t(n), '\0');
    for (int i = 0; i < n; ++i) s[size_t(i)] = char((v >> (8 * i)) & 0xff);
    return s;
}

using Files = std::vector<std::pair<std::string, std::string>>;

std::string build_zip(const Files& files, bool zip64) {
    const uint64_t sat = 0xffffffffu;
    std::string out, central;
    for (const auto& [name, data] : files) {
        const uint64_t off = out.size(), n = data.size();
        const uint32_t crc = io::crc32(reinterpret_cast<const uint8_t*>(data.data()), data.size());
        const std::string lextra = zip64 ? le(1, 2) + le(16, 2) + le(n, 8) + le(n, 8) : "";
        out += le(0x04034b50, 4) + le(45, 2) + le(0, 2) + le(0, 2) + le(0, 4) + le(crc, 4) +
               le(zip64 ? sat : n, 4) + le(zip64 ? sat : n, 4) + le(name.size(), 2) +
               le(lextra.size(), 2) + name + lextra + data;
        const std::string cextra =
            zip64 ? le(1, 2) + le(24, 2) + le(n, 8) + le(n, 8) + le(off, 8) : "";
        central += le(0x02014b50, 4) + le(45, 2) + le(45, 2) + le(0, 2) + le(0, 2) + le(0, 4) +
                   le(crc, 4) + le(zip64 ? sat : n, 4) + le(zip64 ? sat : n, 4) +
                   le(name.size(), 2) + le(cextra.size(), 2) + le(0, 2) + le(0, 2) + le(0, 2) +
                   le(0, 4) + le(zip64 ? sat : off, 4) + name + cextra;
    }
    const uint64_t cd_off = out.size(), count = files.size();
    out += central;
    if (zip64) {
        const uint64_t end64 = out.size();
        out += le(0x06064b50, 4) + le(44, 8) + le(45, 2) + le(45, 2) + le(0, 4) + le(0, 4) +
               le(count, 8) + le(count, 8) + le(central.size(), 8) + le(cd_off, 8);
        out += le(0x07064b50, 4) + le(0, 4) + le(end64, 8) + le(1, 4);
        out += le(0x06054b50, 4) + le(0, 2) + le(0, 2) + le(0xffff, 2) + le(0xffff, 2) +
               le(sat, 4) + le(sat, 4) + le(0, 2);
    } else {
        out += le(0x06054b50, 4) + le(0, 2) + le(0, 2) + le(count, 2) + le(count, 2) +
               le(central.size(), 4) + le(cd_off, 4) + le(0, 2);
    }
    return out;
}

// The entries of a real torch.save file, to repack.
Files entries_of(const std::string& path) {
    const std::string bytes = read_file(path);
    io::ZipReader zip(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), path);
    Files files;
    for (const io::ZipEntry& e : zip.entries()) {
        const uint8_t* p = zip.stored_data(e);
        files.emplace_back(e.name, std::string(reinterpret_cast<const char*>(p),
                                               size_t(e.uncompressed_size)));
    }
    return files;
}

std::string zip_error(const std::string& bytes, ErrorCode* code = nullptr) {
    try {
        io::ZipReader zip(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), "t.zip");
        for (const io::ZipEntry& e : zip.entries()) zip.verify_crc(e);
    } catch (const Error& e) {
        if (code) *code = e.code();
        return e.what();
    }
    return "";
}

// --- pickles built by hand ---
std::string pickle_error(const std::string& bytes, ErrorCode* code = nullptr,
                         std::vector<std::string> allowed = {}) {
    io::PickleOptions opt;
    opt.origin = "p.pkl";
    opt.allowed_globals = std::move(allowed);
    try {
        io::read_pickle(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), opt);
    } catch (const Error& e) {
        if (code) *code = e.code();
        return e.what();
    }
    return "";
}

io::Pickle pickle_of(const std::string& bytes, std::vector<std::string> allowed = {}) {
    io::PickleOptions opt;
    opt.origin = "p.pkl";
    opt.allowed_globals = std::move(allowed);
    return io::read_pickle(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), opt);
}

}  // namespace

TEST_CASE("torch.save state dicts load with the values Python wrote") {
    for (const char* key :
         {"f32/pytorch_model.bin", "f16/pytorch_model.bin", "bf16/pytorch_model.bin",
          "ordered/pytorch_model.bin", "views/pytorch_model.bin", "param/pytorch_model.bin",
          "proto4/pytorch_model.bin", "proto5/pytorch_model.bin", "crafted/from_type.bin"}) {
        const io::TensorSet set = load(fx(key));
        check_expected(set, key);
        for (const auto& [name, t] : set.tensors()) CHECK(t.file == fx(key));
    }
}

TEST_CASE("0-d and empty tensors") {
    const io::TensorSet set = load(fx("f32/pytorch_model.bin"));
    const io::TensorInfo* s = set.find("scalar");
    REQUIRE(s);
    CHECK(s->shape.empty());
    CHECK(s->nbytes == 4);
    CHECK(values_of(*s) == std::vector<float>{2.5f});
    const io::TensorInfo* e = set.find("empty");
    REQUIRE(e);
    CHECK(e->shape == std::vector<int64_t>{0, 4});
    CHECK(e->nbytes == 0);
}

TEST_CASE("views share the mapped storage; non-contiguous ones are copied") {
    const io::TensorSet set = load(fx("views/pytorch_model.bin"));
    const uint8_t* base = set.find("base")->data;
    const uint64_t base_bytes = 6 * 8 * 4;
    CHECK(set.find("row2")->data == base + 16 * 4);
    CHECK(set.find("rows1to3")->data == base + 8 * 4);
    CHECK(set.find("flat_tail")->data == base + 5 * 4);
    CHECK(set.find("unit_dims")->data == base + (3 * 8 + 2) * 4);
    for (const char* copied : {"transposed", "cols", "stepped", "single_col"}) {
        INFO(copied);
        const uint8_t* p = set.find(copied)->data;
        CHECK((p < base || p >= base + base_bytes));
    }
    CHECK(set.find("transposed")->shape == std::vector<int64_t>{8, 6});
    CHECK(set.find("broadcast")->shape == std::vector<int64_t>{3, 4});
    // The copies outlive every other handle: the set owns them.
    io::TensorSet moved = load(fx("views/pytorch_model.bin"));
    io::TensorSet kept = std::move(moved);
    check_expected(kept, "views/pytorch_model.bin");
}

TEST_CASE("a sharded checkpoint and its index; single-file directories") {
    const io::TensorSet set = io::open_torch_bin_dir(fx("sharded"));
    check_expected(set, "sharded");
    CHECK(has(set.origin, "pytorch_model.bin.index.json"));
    CHECK(has(set.find("w3")->file, "pytorch_model-00002-of-00002.bin"));

    const io::TensorSet single = io::open_torch_bin_dir(fx("f16"));
    check_expected(single, "f16/pytorch_model.bin");
    CHECK(has(single.origin, "f16/pytorch_model.bin"));
}

TEST_CASE("directory errors: no weights, a missing shard, an index naming absent tensors") {
    TempDir d;
    try {
        io::open_torch_bin_dir(d.path);
        FAIL("no error");
    } catch (const Error& e) {
        CHECK(e.code() == ErrorCode::io);
        CHECK(has(e.what(), "pytorch_model.bin"));
    }

    copy_dir(fx("sharded"), d / "s");
    std::remove((d / "s/pytorch_model-00002-of-00002.bin").c_str());
    try {
        io::open_torch_bin_dir(d / "s");
        FAIL("no error");
    } catch (const Error& e) {
        CHECK(e.code() == ErrorCode::io);
        CHECK(has(e.what(), "pytorch_model-00002-of-00002.bin"));
    }

    copy_dir(fx("sharded"), d / "t");
    write_file(d / "t/pytorch_model.bin.index.json",
               R"({"weight_map":{"w1":"pytorch_model-00001-of-00002.bin",)"
               R"("ghost":"pytorch_model-00001-of-00002.bin"}})");
    try {
        io::open_torch_bin_dir(d / "t");
        FAIL("no error");
    } catch (const Error& e) {
        CHECK(e.code() == ErrorCode::format);
        CHECK(has(e.what(), "ghost"));
    }

    write_file(d / "t/pytorch_model.bin.index.json", R"({"weight_map":{"w1":"../x.bin"}})");
    CHECK_THROWS_AS(io::open_torch_bin_dir(d / "t"), Error);
}

TEST_CASE("valid files stackllama refuses: legacy format, other dtypes, not a state dict") {
    ErrorCode code{};
    std::string m = error_of(fx("legacy/pytorch_model.bin"), &code);
    CHECK(code == ErrorCode::unsupported);
    CHECK(has(m, "legacy"));
    CHECK(has(m, "legacy/pytorch_model.bin"));

    m = error_of(fx("refused/int64.bin"), &code);
    CHECK(code == ErrorCode::unsupported);
    CHECK(has(m, "tensor ids"));
    CHECK(has(m, "torch.LongStorage"));

    m = error_of(fx("refused/bare_tensor.bin"), &code);
    CHECK(code == ErrorCode::unsupported);
    CHECK(has(m, "not a state dict"));

    m = error_of(fx("refused/nested_dict.bin"), &code);
    CHECK(code == ErrorCode::unsupported);
    CHECK(has(m, "tensor nested"));
}

TEST_CASE("forbidden globals are refused by name and never executed") {
    const std::pair<const char*, const char*> cases[] = {
        {"hostile/os_system.bin", "forbidden global os.system"},
        {"hostile/posix_system.bin", "forbidden global posix.system"},
        {"hostile/builtins_eval.bin", "forbidden global __builtin__.eval"},
    };
    for (const auto& c : cases) {
        INFO(c.first);
        ErrorCode code{};
        const std::string m = error_of(fx(c.first), &code);
        CHECK(code == ErrorCode::unsupported);
        CHECK(has(m, c.second));
        CHECK(has(m, c.first));
        CHECK(has(m, "archive/data.pkl"));
    }
    CHECK(!exists(fx("hostile/MARKER")));
}

TEST_CASE("hostile files fail with an error naming the fault") {
    struct Case {
        const char* file;
        ErrorCode code;
        std::vector<const char*> parts;
    };
    const Case cases[] = {
        {"hostile/short_storage.bin", ErrorCode::format, {"tensor w", "shorter than the tensor"}},
        {"hostile/short_entry.bin", ErrorCode::format, {"tensor w", "declares 100", "16 bytes"}},
        {"hostile/offset_past.bin", ErrorCode::format, {"tensor w", "storage offset 3"}},
        {"hostile/compressed.bin", ErrorCode::unsupported, {"archive/data/0", "compressed"}},
        {"hostile/missing_storage.bin", ErrorCode::format, {"tensor w", "archive/data/7"}},
        {"hostile/unknown_opcode.bin", ErrorCode::format, {"unknown pickle opcode 0xff",
                                                           "offset 5"}},
        {"hostile/deep_nesting.bin", ErrorCode::format, {"nested deeper than 1000"}},
        {"hostile/mark_bomb.bin", ErrorCode::format, {"stack deeper than"}},
        {"hostile/huge_memo.bin", ErrorCode::format, {"memo index 4294967280", "limit"}},
        {"hostile/undefined_memo.bin", ErrorCode::format, {"memo index 7 is not defined"}},
        {"hostile/string_bomb.bin", ErrorCode::format, {"truncated pickle"}},
        {"hostile/no_stop.bin", ErrorCode::format, {"no STOP"}},
        {"hostile/not_a_pickle_zip.bin", ErrorCode::format, {"data.pkl"}},
    };
    for (const Case& c : cases) {
        INFO(c.file);
        ErrorCode code{};
        const std::string m = error_of(fx(c.file), &code);
        INFO(m);
        CHECK(code == c.code);
        CHECK(has(m, c.file));
        for (const char* part : c.parts) CHECK(has(m, part));
    }
}

TEST_CASE("a truncated checkpoint fails at every cut point") {
    const std::string bytes = read_file(fx("views/pytorch_model.bin"));
    TempDir d;
    const std::string path = d / "cut.bin";
    for (size_t cut = 0; cut < bytes.size(); ++cut) {
        write_file(path, bytes.substr(0, cut));
        ErrorCode code{};
        const std::string m = error_of(path, &code);
        INFO("cut at " << cut << ": " << m);
        REQUIRE(!m.empty());
        CHECK(code == ErrorCode::format);
        CHECK(has(m, "cut.bin"));
    }
}

TEST_CASE("random byte damage gives an error or a load, never a bad read") {
    const std::string good = read_file(fx("views/pytorch_model.bin"));
    TempDir d;
    const std::string path = d / "damaged.bin";
    uint64_t rng = 0x9e3779b97f4a7c15ull;
    auto next = [&rng] {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        return rng;
    };
    size_t errors = 0;
    for (int i = 0; i < 1500; ++i) {
        std::string bytes = good;
        const int flips = 1 + int(next() % 4);
        for (int f = 0; f < flips; ++f) bytes[next() % bytes.size()] = char(next() & 0xff);
        write_file(path, bytes);
        try {
            const io::TensorSet set = load(path);
            for (const auto& [name, t] : set.tensors()) {
                volatile uint8_t sink = 0;
                for (uint64_t b = 0; b < t.nbytes; ++b) sink = sink ^ t.data[b];  // ASan checks
            }
        } catch (const Error& e) {
            ++errors;
            CHECK(has(e.what(), "damaged.bin"));
        }
    }
    CHECK(errors > 0);
}

TEST_CASE("random damage to the pickle (with a valid CRC) gives an error or a load") {
    Files files = entries_of(fx("views/pytorch_model.bin"));
    size_t pkl = 0;
    while (files[pkl].first.find("data.pkl") == std::string::npos) ++pkl;
    const std::string good = files[pkl].second;
    TempDir d;
    const std::string path = d / "pickled.bin";
    uint64_t rng = 0x2545f4914f6cdd1dull;
    auto next = [&rng] {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        return rng;
    };
    size_t errors = 0, loads = 0;
    for (int i = 0; i < 1500; ++i) {
        std::string bytes = good;
        const int flips = 1 + int(next() % 3);
        for (int f = 0; f < flips; ++f) {
            const size_t at = next() % bytes.size();
            // Mostly small integers (shapes, strides, offsets, memo indices), sometimes anything.
            bytes[at] = (next() & 1) ? char(next() & 0xff) : char(next() % 16);
        }
        files[pkl].second = bytes;
        write_file(path, build_zip(files, i % 2 == 0));
        try {
            const io::TensorSet set = load(path);
            ++loads;
            for (const auto& [name, t] : set.tensors()) {
                volatile uint8_t sink = 0;
                for (uint64_t b = 0; b < t.nbytes; ++b) sink = sink ^ t.data[b];  // ASan checks
            }
        } catch (const Error& e) {
            ++errors;
            CHECK(has(e.what(), "pickled.bin"));
        }
    }
    CHECK(errors > 0);
    MESSAGE("damaged pickles: " << errors << " refused, " << loads << " loaded");
}

TEST_CASE("ZIP64 archives load; their damaged records are refused") {
    const Files files = entries_of(fx("f32/pytorch_model.bin"));
    TempDir d;
    write_file(d / "z64.bin", build_zip(files, true));
    check_expected(load(d / "z64.bin"), "f32/pytorch_model.bin");
    write_file(d / "z32.bin", build_zip(files, false));
    check_expected(load(d / "z32.bin"), "f32/pytorch_model.bin");

    const std::string z = build_zip({{"a/data.pkl", "x"}}, true);
    // Layout from the end: EOCD (22), locator (20), ZIP64 EOCD (56).
    const size_t locator = z.size() - 22 - 20, end64 = locator - 56;
    ErrorCode code{};

    std::string bad = z;
    bad.replace(locator + 8, 8, le(z.size(), 8));  // ZIP64 record offset past the locator
    CHECK(has(zip_error(bad, &code), "ZIP64 end-of-central-directory offset"));
    CHECK(code == ErrorCode::format);

    bad = z;
    bad.replace(end64 + 48, 8, le(1ull << 62, 8));  // central directory offset
    CHECK(has(zip_error(bad, &code), "central directory"));
    CHECK(code == ErrorCode::format);

    bad = z;
    bad.replace(end64 + 32, 8, le(1ull << 40, 8));  // entry count
    bad.replace(end64 + 24, 8, le(1ull << 40, 8));
    CHECK(has(zip_error(bad, &code), "claims 1099511627776 entries"));

    // Saturated 32-bit fields without the ZIP64 extra field that should carry them.
    const std::string plain = build_zip({{"a/data.pkl", "x"}}, false);
    const size_t cd = plain.size() - 22 - (46 + 10);
    bad = plain;
    bad.replace(cd + 20, 4, le(0xffffffffu, 4));
    bad.replace(cd + 24, 4, le(0xffffffffu, 4));
    CHECK(has(zip_error(bad, &code), "no ZIP64 extra field"));
    CHECK(has(zip_error(bad), "zip entry \"a/data.pkl\""));
}

TEST_CASE("zip records that lie are refused, naming the entry") {
    const std::string z = build_zip({{"a/data.pkl", "hello"}, {"a/data/0", "abcd"}}, false);
    const size_t cd2 = z.size() - 22 - (46 + 8);  // second central entry, name "a/data/0"
    ErrorCode code{};

    CHECK(zip_error(z) == "");

    std::string bad = z;
    bad.replace(cd2 + 20, 4, le(1000, 4));  // compressed and uncompressed size
    bad.replace(cd2 + 24, 4, le(1000, 4));
    std::string m = zip_error(bad, &code);
    CHECK(code == ErrorCode::format);
    CHECK(has(m, "zip entry \"a/data/0\""));
    CHECK(has(m, "overlap the central directory"));

    bad = z;
    bad.replace(cd2 + 42, 4, le(0x7fffffff, 4));  // local header offset
    CHECK(has(zip_error(bad), "local header offset"));

    bad = z;
    bad.replace(cd2 + 42, 4, le(1, 4));
    CHECK(has(zip_error(bad), "no local header"));

    bad = z;
    bad.replace(cd2 + 8, 2, le(1, 2));  // encrypted
    CHECK(has(zip_error(bad, &code), "encrypted"));
    CHECK(code == ErrorCode::unsupported);

    bad = z;
    bad.replace(cd2 + 16, 4, le(0, 4));  // CRC
    CHECK(has(zip_error(bad), "CRC-32 mismatch"));

    bad = z;
    bad.replace(cd2 + 28, 2, le(60000, 2));  // name length past the directory
    CHECK(has(zip_error(bad), "runs past the end of the directory"));

    const std::string dup = build_zip({{"a/x", "1"}, {"a/x", "2"}}, false);
    CHECK(has(zip_error(dup), "appears twice"));

    // A comment after the end record is allowed; garbage that is not one is not.
    std::string commented = z;
    commented.replace(commented.size() - 2, 2, le(3, 2));
    commented += "abc";
    CHECK(zip_error(commented) == "");
    CHECK(has(zip_error(z + "x"), "no zip end-of-central-directory record"));
    CHECK(has(zip_error(""), "too short"));
}

TEST_CASE("pickle reader: values, memo aliasing, dict keys") {
    // {'a': [...], 'a': 7 (replaces), 300: 'xx', 'big': -2**40, 'self': <the dict>}
    const std::string p =
        hx("80 02 7d 71 00 28") + "X" + le(1, 4) + "a" +
        hx("5d 71 01 28 4b 01 4a fe ff ff ff 47 40 0c 00 00 00 00 00 00 88 4e 43 02") + "xy" +
        "e" + "X" + le(1, 4) + "a" + hx("4b 07") + hx("4d 2c 01 8c 02") + "xx" + "X" +
        le(3, 4) + "big" + hx("8a 06 00 00 00 00 00 ff") + "X" + le(4, 4) + "self" +
        hx("68 00") + "u.";
    const io::Pickle pk = pickle_of(p);
    const io::PyValue& root = pk.at(pk.root);
    REQUIRE(root.kind == io::PyKind::Dict);
    REQUIRE(root.items.size() == 2 * 4);  // 'a' replaced, not duplicated
    CHECK(pk.at(root.items[0]).s == "a");
    CHECK(pk.at(root.items[1]).i == 7);
    CHECK(pk.at(root.items[2]).i == 300);
    CHECK(pk.at(root.items[3]).s == "xx");
    CHECK(pk.at(root.items[5]).i == -(int64_t(1) << 40));
    CHECK(root.items[7] == pk.root);  // the dict itself, by reference: a cycle
    CHECK(pk.describe(root.items[0]) == "str 'a'");
    CHECK(pk.describe(pk.root) == "dict of 4 items");

    const io::Pickle l = pickle_of(
        hx("80 02 5d 28 4b 01 4a fe ff ff ff 47 40 0c 00 00 00 00 00 00 88 4e 43 02") + "xye.");
    const io::PyValue& list = l.at(l.root);
    REQUIRE(list.items.size() == 6);
    CHECK(l.at(list.items[0]).i == 1);
    CHECK(l.at(list.items[1]).i == -2);
    CHECK(l.at(list.items[2]).f == 3.5);
    CHECK(l.at(list.items[3]).kind == io::PyKind::Bool);
    CHECK(l.at(list.items[4]).kind == io::PyKind::None);
    CHECK(l.at(list.items[5]).s == "xy");

    // A list containing itself through the memo: fine to read and to free.
    const io::Pickle cyc = pickle_of(hx("80 02 5d 71 00 68 00 61 2e"));
    CHECK(cyc.at(cyc.root).items[0] == cyc.root);
}

TEST_CASE("pickle reader: REDUCE, BUILD and BINPERSID are recorded, not run") {
    const std::vector<std::string> allowed = {"m.f", "collections.OrderedDict"};
    const io::Pickle pk = pickle_of(hx("80 02") + "cm\nf\n" + hx("4b 01 85 52") + "}b" + "X" +
                                        le(1, 4) + "kQ" + hx("86 2e"),
                                    allowed);
    const io::PyValue& t = pk.at(pk.root);
    REQUIRE(t.kind == io::PyKind::Tuple);
    const io::PyValue& call = pk.at(t.items[0]);
    REQUIRE(call.kind == io::PyKind::Call);
    CHECK(pk.at(call.items[0]).s == "m.f");
    CHECK(pk.at(call.items[1]).items.size() == 1);
    CHECK(pk.at(call.items[2]).kind == io::PyKind::Dict);  // BUILD state
    CHECK(pk.at(t.items[1]).kind == io::PyKind::PersistentId);
    CHECK(pk.describe(t.items[0]) == "call of m.f");

    const io::Pickle od = pickle_of(hx("80 02") + "ccollections\nOrderedDict\n)R.", allowed);
    CHECK(od.at(od.root).kind == io::PyKind::Dict);
    // The same name is refused when the caller does not allow it.
    CHECK(has(pickle_error(hx("80 02") + "ccollections\nOrderedDict\n)R."),
              "forbidden global collections.OrderedDict"));
}

TEST_CASE("pickle reader: malformed input and bombs") {
    struct Case {
        std::string bytes;
        const char* part;  // nullptr: reads fine
        ErrorCode code;
    };
    const ErrorCode F = ErrorCode::format, U = ErrorCode::unsupported;
    const Case cases[] = {
        {hx("80 02") + "cos\nsystem\n.", "forbidden global os.system at offset 2", U},
        {hx("80 04 8c 02") + "os" + hx("8c 06") + "system" + hx("93 2e"),
         "forbidden global os.system", U},
        {hx("80 02") + "c" + std::string(300, 'a') + "\nb\n.", "GLOBAL module", F},
        {hx("80 02") + "cos\nsys", "GLOBAL name", F},
        {hx("80 02 4b 01 4b 02 93 2e"), "STACK_GLOBAL of a non-string", F},
        {hx("80 06 2e"), "pickle protocol 6", U},
        {hx("80 02 52 2e"), "stack underflow", F},
        {hx("80 02 4e 28 52 2e"), "stack underflow", F},  // pops never cross a MARK
        {hx("80 02 4e 28 30 2e"), nullptr, F},              // POP right after MARK drops it
        {hx("80 02 4e 74 2e"), "no MARK", F},
        {hx("80 02 4e 4e 52 2e"), "call of a None", F},
        {hx("80 02 5d 4e 61 2e"), nullptr, F},
        {hx("80 02 4e 4e 61 2e"), "APPEND(S) on a None", F},
        {hx("80 02 4e 28 65 2e"), "APPENDS on a None", F},
        {hx("80 02 5d 4e 4e 73 2e"), "SETITEM(S) on a list", F},
        {hx("80 02 7d 28 4e 75 2e"), "odd number", F},
        {hx("80 02 5d 4e 62 2e"), "BUILD on a list", F},
        {hx("80 02 8a 09 00 00 00 00 00 00 00 00 01 2e"), "wider than 64 bits", U},
        {hx("80 02 8b ff ff ff ff 2e"), "wider than 64 bits", U},
        {hx("80 02 8a 02 ff 7f 2e"), nullptr, F},
        {hx("80 02 58 ff ff ff 7f 2e"), "truncated pickle", F},
        {hx("80 02 8d ff ff ff ff ff ff ff ff 2e"), "truncated pickle", F},
        {hx("80 02 95 ff ff ff ff ff ff ff ff 2e"), "FRAME", F},
        {hx("80 02 4a 01"), "truncated pickle", F},
        {hx("80 02 69"), "INST", U},
        {hx("80 02 49 31 0a 2e"), "opcode INT (0x49)", U},
        {hx("80 02 fe"), "unknown pickle opcode 0xfe at offset 2", F},
        {hx("80 02 4e 71 05 68 06 2e"), "memo index 6 is not defined", F},
        {hx("80 02 4e 72 ff ff ff ff 2e"), "memo index 4294967295 exceeds", F},
        {hx("80 02 4e 6a ff ff ff ff 2e"), "memo index 4294967295 is not defined", F},
        {hx("80 02"), "no STOP", F},
        {"", "no STOP", F},
        {hx("80 02") + std::string(70000, ']') + ".", "stack deeper than 65536", F},
        {hx("80 02") + std::string(2000, ']') + std::string(1999, 'a') + ".",
         "nested deeper than 1000", F},
        {hx("80 02") + std::string(999, ']') + std::string(998, 'a') + ".", nullptr, F},
        {hx("80 02 7d 71 00") + std::string(2000, 'h'), "memo index 104 is not defined", F},
    };
    for (const Case& c : cases) {
        INFO("case " << (&c - cases));
        ErrorCode code{};
        const std::string m = pickle_error(c.bytes, &code);
        INFO(m);
        if (!c.part) {
            CHECK(m.empty());
            continue;
        }
        CHECK(has(m, c.part));
        CHECK(has(m, "p.pkl"));
        CHECK(code == c.code);
    }

    // Self-nesting through the memo grows the recorded depth until the limit stops it.
    std::string grow = hx("80 02 5d 71 00");
    for (int i = 0; i < 1100; ++i) grow += hx("68 00 61");
    CHECK(has(pickle_error(grow + "."), "nested deeper than 1000"));

    // Objects limit, with a small bound so the test stays quick.
    io::PickleOptions opt;
    opt.origin = "p.pkl";
    opt.limits.max_objects = 100;
    const std::string many = hx("80 02 5d") + [] {
        std::string s;
        for (int i = 0; i < 200; ++i) s += hx("4e 61");
        return s;
    }() + ".";
    try {
        io::read_pickle(reinterpret_cast<const uint8_t*>(many.data()), many.size(), opt);
        FAIL("no error");
    } catch (const Error& e) {
        CHECK(has(e.what(), "more than 100 objects"));
    }
    opt.limits = io::PickleLimits{};
    opt.limits.max_container = 10;
    try {
        io::read_pickle(reinterpret_cast<const uint8_t*>(many.data()), many.size(), opt);
        FAIL("no error");
    } catch (const Error& e) {
        CHECK(has(e.what(), "list with more than 10 items"));
    }
}
