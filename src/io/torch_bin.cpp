#include "io/torch_bin.hpp"

#include <cstring>
#include <map>
#include <memory>
#include <set>

#include "io/json_file.hpp"
#include "io/mmap_file.hpp"
#include "io/pickle.hpp"
#include "io/zip_reader.hpp"
#include "stackllama/error.hpp"

namespace stackllama::io {

namespace {

constexpr const char* kRebuildTensor = "torch._utils._rebuild_tensor_v2";
constexpr const char* kRebuildParameter = "torch._utils._rebuild_parameter";
constexpr const char* kRebuildParameterState = "torch._utils._rebuild_parameter_with_state";
constexpr const char* kRebuildFromType = "torch._tensor._rebuild_from_type_v2";

// Tensor classes _rebuild_from_type_v2 may name: a plain tensor with Python attributes set, or a
// Parameter. Their state (the attributes) is ignored.
constexpr const char* kTensorTypes[] = {"torch._tensor.Tensor", "torch.Tensor",
                                        "torch.nn.parameter.Parameter"};

struct StorageType {
    const char* global;
    const char* torch_dtype;
    bool supported;
    TensorDType dtype;
};
// Every typed storage torch.save names. The unsupported ones are still allowed as globals so that
// the error can name the tensor and its type instead of refusing the global; their `dtype` is
// never used.
constexpr StorageType kStorageTypes[] = {
    {"torch.FloatStorage", "float32", true, TensorDType::F32},
    {"torch.HalfStorage", "float16", true, TensorDType::F16},
    {"torch.BFloat16Storage", "bfloat16", true, TensorDType::BF16},
    {"torch.DoubleStorage", "float64", false, TensorDType::F64},
    {"torch.LongStorage", "int64", false, TensorDType::I64},
    {"torch.IntStorage", "int32", false, TensorDType::I32},
    {"torch.ShortStorage", "int16", false, TensorDType::I16},
    {"torch.CharStorage", "int8", false, TensorDType::I8},
    {"torch.ByteStorage", "uint8", false, TensorDType::U8},
    {"torch.BoolStorage", "bool", false, TensorDType::BOOL},
    {"torch.ComplexFloatStorage", "complex64", false, TensorDType::F32},
    {"torch.ComplexDoubleStorage", "complex128", false, TensorDType::F64},
};

std::vector<std::string> allowed_globals() {
    std::vector<std::string> g = {"collections.OrderedDict", kRebuildTensor, kRebuildParameter,
                                  kRebuildParameterState, kRebuildFromType};
    for (const char* t : kTensorTypes) g.push_back(t);
    for (const auto& s : kStorageTypes) g.push_back(s.global);
    return g;
}

// Dimensions and strides beyond these are corruption, and keep the arithmetic below in range.
constexpr int64_t kMaxDim = int64_t(1) << 40;
constexpr size_t kMaxRank = 64;

struct Storage {
    const StorageType* type = nullptr;
    const uint8_t* data = nullptr;
    uint64_t numel = 0;
};

class Loader {
public:
    Loader(const std::string& path, const MappedFile& file, const ZipReader& zip,
           std::string prefix, const Pickle& pk)
        : path_(path), file_(file), zip_(zip), prefix_(std::move(prefix)), pk_(pk) {}

    // The tensor `id` as `name`, its bytes in place or in a new buffer appended to `owned`.
    TensorInfo tensor(const std::string& name, size_t id,
                      std::vector<std::shared_ptr<std::vector<uint8_t>>>& owned);

private:
    const std::string& path_;
    const MappedFile& file_;
    const ZipReader& zip_;
    const std::string prefix_;
    const Pickle& pk_;
    std::map<std::string, Storage> storages_;

    [[noreturn]] void bad(const std::string& name, const std::string& what) const {
        throw Error(ErrorCode::format, path_ + ": tensor " + name + ": " + what);
    }
    [[noreturn]] void refuse(const std::string& name, const std::string& what) const {
        throw Error(ErrorCode::unsupported, path_ + ": tensor " + name + ": " + what);
    }

    const PyValue& at(size_t id) const { return pk_.at(id); }
    int64_t integer(const std::string& name, size_t id, const char* what) const {
        if (at(id).kind != PyKind::Int)
            bad(name, std::string(what) + " is " + pk_.describe(id) + ", not an int");
        return at(id).i;
    }
    std::vector<int64_t> int_tuple(const std::string& name, size_t id, const char* what) const {
        const PyValue& t = at(id);
        if (t.kind != PyKind::Tuple)
            bad(name, std::string(what) + " is " + pk_.describe(id) + ", not a tuple");
        if (t.items.size() > kMaxRank)
            bad(name, std::string(what) + " has " + std::to_string(t.items.size()) + " dimensions");
        std::vector<int64_t> out;
        for (size_t item : t.items) {
            const int64_t x = integer(name, item, what);
            if (x < 0 || x > kMaxDim)
                bad(name, std::string(what) + " holds " + std::to_string(x) + ", out of range");
            out.push_back(x);
        }
        return out;
    }
    // The arguments of the tensor-rebuilding call `id`, following the Parameter and subclass
    // wrappers torch.save may put around _rebuild_tensor_v2.
    const PyValue& rebuild_args(const std::string& name, size_t id) const;
    const Storage& storage(const std::string& name, size_t pid);
};

const PyValue& Loader::rebuild_args(const std::string& name, size_t id) const {
    std::string func;
    size_t args = Pickle::npos;
    if (at(id).kind == PyKind::Call) {
        func = at(at(id).items[0]).s;
        args = at(id).items[1];
    }
    // Bounded: each wrapper is peeled once, a pickle cannot make this loop forever.
    for (int hops = 0; hops < 4 && args != Pickle::npos; ++hops) {
        const std::vector<size_t>& a = at(args).items;
        if (func == kRebuildTensor) return at(args);
        if (func == kRebuildParameter || func == kRebuildParameterState) {
            if (a.empty() || at(a[0]).kind != PyKind::Call)
                bad(name, "parameter without a tensor: " + pk_.describe(a.empty() ? id : a[0]));
            func = at(at(a[0]).items[0]).s;
            args = at(a[0]).items[1];
        } else if (func == kRebuildFromType) {
            if (a.size() < 3 || at(a[0]).kind != PyKind::Global ||
                at(a[1]).kind != PyKind::Global || at(a[2]).kind != PyKind::Tuple)
                bad(name, "malformed " + std::string(kRebuildFromType) + " arguments");
            bool known = false;
            for (const char* t : kTensorTypes) known = known || at(a[1]).s == t;
            if (!known) refuse(name, "tensor subclass " + at(a[1]).s + " is not supported");
            func = at(a[0]).s;
            args = a[2];
        } else {
            break;
        }
    }
    refuse(name, "the value is " + pk_.describe(id) + ", not a tensor");
}

const Storage& Loader::storage(const std::string& name, size_t pid_id) {
    const PyValue& pid = at(pid_id);
    // ('storage', StorageType, key, location, numel)
    if (pid.kind != PyKind::PersistentId || at(pid.items[0]).kind != PyKind::Tuple)
        bad(name, "storage is " + pk_.describe(pid_id) + ", not a persistent storage id");
    const std::vector<size_t>& t = at(pid.items[0]).items;
    if (t.size() != 5 || at(t[0]).kind != PyKind::Str || at(t[0]).s != "storage" ||
        at(t[1]).kind != PyKind::Global || at(t[2]).kind != PyKind::Str ||
        at(t[3]).kind != PyKind::Str || at(t[4]).kind != PyKind::Int || at(t[4]).i < 0) {
        bad(name, "malformed storage id (expected ('storage', type, key, location, numel))");
    }
    const StorageType* type = nullptr;
    for (const auto& s : kStorageTypes)
        if (at(t[1]).s == s.global) type = &s;
    if (!type) bad(name, "storage type " + at(t[1]).s + " is not a storage class");
    if (!type->supported) {
        refuse(name, "storage type " + std::string(type->global) + " (" + type->torch_dtype +
                         "); stackllama reads float32, float16 and bfloat16 tensors");
    }
    const std::string& key = at(t[2]).s;
    const uint64_t numel = static_cast<uint64_t>(at(t[4]).i);

    auto it = storages_.find(key);
    if (it != storages_.end()) {
        // Shared storage: every view must agree on what it is.
        if (it->second.type != type || it->second.numel != numel)
            bad(name, "storage " + key + " is described differently by another tensor");
        return it->second;
    }
    const std::string entry_name = prefix_ + "data/" + key;
    const ZipEntry* entry = zip_.find(entry_name);
    if (!entry) bad(name, "storage " + key + " has no zip entry " + entry_name);
    const uint64_t esize = dtype_size(type->dtype);
    if (numel > UINT64_MAX / esize || entry->uncompressed_size != numel * esize) {
        bad(name, "storage " + key + " declares " + std::to_string(numel) + " " +
                      type->torch_dtype + " elements but its entry " + entry_name + " holds " +
                      std::to_string(entry->uncompressed_size) + " bytes");
    }
    Storage s;
    s.type = type;
    s.data = zip_.stored_data(*entry);
    s.numel = numel;
    return storages_.emplace(key, s).first->second;
}

TensorInfo Loader::tensor(const std::string& name, size_t id,
                          std::vector<std::shared_ptr<std::vector<uint8_t>>>& owned) {
    // _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad, backward_hooks[,
    // metadata])
    const std::vector<size_t>& a = rebuild_args(name, id).items;
    if (a.size() < 4) bad(name, std::string(kRebuildTensor) + " with fewer than 4 arguments");
    const Storage& st = storage(name, a[0]);
    const int64_t offset = integer(name, a[1], "storage offset");
    const std::vector<int64_t> size = int_tuple(name, a[2], "size");
    const std::vector<int64_t> stride = int_tuple(name, a[3], "stride");
    if (offset < 0) bad(name, "negative storage offset " + std::to_string(offset));
    if (size.size() != stride.size()) {
        bad(name, "size has " + std::to_string(size.size()) + " dimensions but stride has " +
                      std::to_string(stride.size()));
    }

    TensorInfo info;
    info.name = name;
    info.file = path_;
    info.dtype = st.type->dtype;
    info.shape = size;
    const uint64_t esize = dtype_size(info.dtype);

    uint64_t numel = 1;
    for (int64_t d : size) {
        if (__builtin_mul_overflow(numel, uint64_t(d), &numel) || numel > (UINT64_MAX >> 4))
            bad(name, "shape " + info.shape_str() + " overflows");
    }
    if (numel == 0) {
        info.data = st.data;
        info.nbytes = 0;
        return info;
    }
    // The last element the view reaches, in elements from the storage's start.
    uint64_t last = static_cast<uint64_t>(offset);
    bool overflow = false;
    for (size_t i = 0; i < size.size(); ++i) {
        uint64_t span = 0;
        overflow |= __builtin_mul_overflow(uint64_t(size[i] - 1), uint64_t(stride[i]), &span);
        overflow |= __builtin_add_overflow(last, span, &last);
    }
    if (overflow || last >= st.numel) {
        bad(name, "shape " + info.shape_str() + " at storage offset " + std::to_string(offset) +
                      " reaches past the end of its storage of " + std::to_string(st.numel) +
                      " elements (the storage is shorter than the tensor)");
    }

    bool contiguous = true;
    uint64_t expect = 1;
    for (size_t i = size.size(); i-- > 0;) {
        if (size[i] != 1 && uint64_t(stride[i]) != expect) contiguous = false;
        expect *= uint64_t(size[i]);
    }
    info.nbytes = numel * esize;
    if (contiguous) {
        info.data = st.data + uint64_t(offset) * esize;
        return info;
    }

    // A view (a transposed weight, a slice with steps): gather it into row-major order. Stride-0
    // broadcasts can describe more bytes than the file holds; those are refused, not allocated.
    if (info.nbytes > file_.size()) {
        refuse(name, "a broadcast view of " + std::to_string(info.nbytes) +
                         " bytes, larger than the file; not materialised");
    }
    auto buf = std::make_shared<std::vector<uint8_t>>(static_cast<size_t>(info.nbytes));
    const size_t rank = size.size();
    std::vector<int64_t> idx(rank, 0);
    const uint8_t* src_base = st.data + uint64_t(offset) * esize;
    uint8_t* dst = buf->data();
    const int64_t inner = size[rank - 1], inner_stride = stride[rank - 1];
    for (uint64_t done = 0; done < numel; done += uint64_t(inner)) {
        uint64_t off = 0;
        for (size_t d = 0; d + 1 < rank; ++d) off += uint64_t(idx[d]) * uint64_t(stride[d]);
        // Every element read lies at or before `last`, checked above.
        const uint8_t* src = src_base + off * esize;
        const uint64_t step = uint64_t(inner_stride);
        if (esize == 4) {
            for (uint64_t j = 0; j < uint64_t(inner); ++j, dst += 4)
                std::memcpy(dst, src + j * step * 4, 4);
        } else {
            for (uint64_t j = 0; j < uint64_t(inner); ++j, dst += 2)
                std::memcpy(dst, src + j * step * 2, 2);
        }
        for (size_t d = rank - 1; d-- > 0;) {  // odometer over the outer dimensions
            if (++idx[d] < size[d]) break;
            idx[d] = 0;
        }
    }
    info.data = buf->data();
    owned.push_back(std::move(buf));
    return info;
}

// The archive folder: the one `<folder>/data.pkl` in the zip (torch names it after the file).
const ZipEntry& find_pickle(const ZipReader& zip, const std::string& path, std::string* prefix) {
    const ZipEntry* found = nullptr;
    for (const ZipEntry& e : zip.entries()) {
        const size_t slash = e.name.find('/');
        if (slash == std::string::npos || e.name.compare(slash, std::string::npos, "/data.pkl"))
            continue;
        if (found) {
            throw Error(ErrorCode::format,
                        path + ": more than one data.pkl in the archive (" + found->name +
                            ", " + e.name + ")");
        }
        found = &e;
        *prefix = e.name.substr(0, slash + 1);
    }
    if (!found) {
        throw Error(ErrorCode::format, path + ": no <archive>/data.pkl entry: the zip archive "
                                              "is not a torch.save checkpoint");
    }
    return *found;
}

}  // namespace

void read_torch_bin(const std::string& path, TensorSet& set) {
    auto file = MappedFile::open(path);
    const uint8_t* d = file->data();
    const size_t size = file->size();
    // torch.save before PyTorch 1.6 (and _use_new_zipfile_serialization=False) wrote a bare
    // pickle stream starting with the PROTO opcode; tensors then sit after the pickles.
    // Older still (before PyTorch 0.4) it was a tar archive.
    const bool tar = size >= 262 && std::memcmp(d + 257, "ustar", 5) == 0;
    if ((size >= 2 && d[0] == 0x80 && d[1] <= 5) || tar) {
        throw Error(ErrorCode::unsupported,
                    path + ": legacy (pre-1.6, non-zip) torch.save format is not supported; "
                           "re-save it with a newer PyTorch or convert it to safetensors");
    }
    ZipReader zip(d, size, path);
    std::string prefix;
    const ZipEntry& pkl = find_pickle(zip, path, &prefix);
    if (const ZipEntry* order = zip.find(prefix + "byteorder")) {
        const uint8_t* b = zip.stored_data(*order);
        if (std::string(reinterpret_cast<const char*>(b), size_t(order->uncompressed_size)) !=
            "little") {
            throw Error(ErrorCode::unsupported,
                        path + ": the checkpoint was written big-endian (" + order->name + ")");
        }
    }
    zip.verify_crc(pkl);

    PickleOptions opt;
    opt.origin = path + ": " + pkl.name;
    opt.allowed_globals = allowed_globals();
    const Pickle pk = read_pickle(zip.stored_data(pkl), static_cast<size_t>(pkl.uncompressed_size),
                                  opt);
    const PyValue& root = pk.at(pk.root);
    if (root.kind != PyKind::Dict) {
        throw Error(ErrorCode::unsupported,
                    path + ": the checkpoint holds " + pk.describe(pk.root) +
                        ", not a state dict (a dict of tensor name -> tensor)");
    }

    Loader loader(path, *file, zip, prefix, pk);
    std::vector<TensorInfo> tensors;
    std::vector<std::shared_ptr<std::vector<uint8_t>>> owned;
    for (size_t i = 0; i + 1 < root.items.size(); i += 2) {
        const PyValue& key = pk.at(root.items[i]);
        if (key.kind != PyKind::Str) {
            throw Error(ErrorCode::format, path + ": state dict key " +
                                               pk.describe(root.items[i]) + " is not a string");
        }
        tensors.push_back(loader.tensor(key.s, root.items[i + 1], owned));
    }
    // Owners first: a failing add() leaves no tensor pointing into freed memory.
    set.keep_alive(file);
    for (auto& b : owned) set.keep_alive(b);
    for (auto& t : tensors) set.add(std::move(t));
}

TensorSet open_torch_bin_dir(const std::string& dir) {
    TensorSet set;
    const std::string single = join_path(dir, "pytorch_model.bin");
    const std::string index = join_path(dir, "pytorch_model.bin.index.json");
    if (file_exists(index)) {
        Json j = read_json_file(index);
        if (!j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object())
            throw Error(ErrorCode::format, index + ": missing the \"weight_map\" object");
        std::set<std::string> shards;
        std::map<std::string, std::string> expected;  // tensor -> shard
        for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
            if (!it.value().is_string())
                throw Error(ErrorCode::format,
                            index + ": weight_map entry for " + it.key() + " is not a file name");
            std::string shard = it.value().get<std::string>();
            if (shard.find('/') != std::string::npos || shard == "..")
                throw Error(ErrorCode::format,
                            index + ": shard name \"" + shard + "\" must be a file in " + dir);
            shards.insert(shard);
            expected[it.key()] = shard;
        }
        for (const auto& shard : shards) {
            const std::string p = join_path(dir, shard);
            if (!file_exists(p))
                throw Error(ErrorCode::io, "shard " + p + " listed in " + index + " is missing");
            read_torch_bin(p, set);
        }
        for (const auto& [name, shard] : expected) {
            if (!set.find(name))
                throw Error(ErrorCode::format, index + " maps tensor " + name + " to " + shard +
                                                   ", but that shard does not contain it");
        }
        set.origin = index;
    } else if (file_exists(single)) {
        read_torch_bin(single, set);
        set.origin = single;
    } else {
        throw Error(ErrorCode::io, "no weights in " + dir +
                                       ": expected pytorch_model.bin or "
                                       "pytorch_model.bin.index.json");
    }
    return set;
}

}  // namespace stackllama::io
