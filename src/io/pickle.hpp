// A pickle *reader* for the data torch.save writes (protocols 2 to 5). It never executes
// anything: GLOBAL resolves only names on the caller's allow-list (others are refused by name),
// and REDUCE / NEWOBJ / BUILD / BINPERSID only record what would be called, for the caller to
// interpret. Objects live in one arena and refer to each other by index, so hostile pickles
// (cycles through the memo, deep nesting) cannot leak or overflow the stack when freed.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace stackllama::io {

enum class PyKind : uint8_t {
    None,
    Bool,
    Int,
    Float,
    Str,           // BINUNICODE and friends, and protocol-2 BINSTRING
    Bytes,
    Tuple,
    List,
    Dict,          // also collections.OrderedDict(); insertion-ordered, later keys replace values
    Global,        // an allow-listed "module.name"
    Call,          // callable(*args), with the state of a later BUILD: items = {callable, args,
                   // state or Pickle::npos}
    PersistentId,  // BINPERSID: items = {pid}
};
const char* py_kind_name(PyKind kind);

struct PyValue {
    PyKind kind = PyKind::None;
    uint32_t depth = 0;        // nesting depth, bounded by PickleLimits::max_depth
    int64_t i = 0;             // Int, and Bool as 0 / 1
    double f = 0;              // Float
    std::string s;             // Str, Bytes (raw bytes), Global ("module.name")
    std::vector<size_t> items; // Tuple / List elements; Dict key, value, key, value...; see above
};

struct Pickle {
    static constexpr size_t npos = SIZE_MAX;
    std::vector<PyValue> values;  // the arena; ids index it
    size_t root = npos;

    const PyValue& at(size_t id) const { return values.at(id); }
    // A short description for messages ("int 3", "str 'abc'", "global os.path.join", "tuple of
    // 4 items"); never recursive.
    std::string describe(size_t id) const;
};

// Bounds against pickle bombs; torch.save output of any real checkpoint stays far below them.
struct PickleLimits {
    size_t max_memo_index = 1u << 22;
    size_t max_stack = 1u << 16;        // values on the stack plus open MARKs
    size_t max_depth = 1000;            // containers nested in containers
    size_t max_container = 1u << 24;    // items in one tuple, list or dict
    size_t max_objects = 1u << 21;      // values created in all (~80 bytes each)
    size_t max_global_name = 256;       // bytes in a GLOBAL's module or name
};

struct PickleOptions {
    std::string origin;                        // names the pickle in every message
    std::vector<std::string> allowed_globals;  // "module.name"; every other global is refused
    PickleLimits limits;
};

// Reads one pickle from `size` bytes at `data`. Error(format) naming the origin and byte offset
// for malformed or truncated input, unknown opcodes and exceeded limits; Error(unsupported)
// naming it for a global not on the allow-list ("forbidden global os.system") and for opcodes
// torch.save never writes.
Pickle read_pickle(const uint8_t* data, size_t size, const PickleOptions& options);

}  // namespace stackllama::io
