#include "io/pickle.hpp"

#include <algorithm>
#include <cstring>
#include <unordered_map>
#include <unordered_set>

#include "stackllama/error.hpp"

namespace stackllama::io {

namespace {

// Opcodes (Lib/pickletools.py). Only the binary ones torch.save emits are implemented; the
// others are recognised so that the message can say "not supported" rather than "unknown".
enum Op : uint8_t {
    MARK = '(', STOP = '.', POP = '0', POP_MARK = '1', DUP = '2', FLOAT = 'F', INT = 'I',
    BININT = 'J', BININT1 = 'K', LONG = 'L', BININT2 = 'M', NONE = 'N', PERSID = 'P',
    BINPERSID = 'Q', REDUCE = 'R', STRING = 'S', BINSTRING = 'T', SHORT_BINSTRING = 'U',
    UNICODE = 'V', BINUNICODE = 'X', APPEND = 'a', BUILD = 'b', GLOBAL = 'c', DICT = 'd',
    EMPTY_DICT = '}', APPENDS = 'e', GET = 'g', BINGET = 'h', INST = 'i', LONG_BINGET = 'j',
    LIST = 'l', EMPTY_LIST = ']', OBJ = 'o', PUT = 'p', BINPUT = 'q', LONG_BINPUT = 'r',
    SETITEM = 's', TUPLE = 't', EMPTY_TUPLE = ')', SETITEMS = 'u', BINFLOAT = 'G',
    PROTO = 0x80, NEWOBJ = 0x81, EXT1 = 0x82, EXT2 = 0x83, EXT4 = 0x84, TUPLE1 = 0x85,
    TUPLE2 = 0x86, TUPLE3 = 0x87, NEWTRUE = 0x88, NEWFALSE = 0x89, LONG1 = 0x8a, LONG4 = 0x8b,
    BINBYTES = 'B', SHORT_BINBYTES = 'C', SHORT_BINUNICODE = 0x8c, BINUNICODE8 = 0x8d,
    BINBYTES8 = 0x8e, EMPTY_SET = 0x8f, ADDITEMS = 0x90, FROZENSET = 0x91, NEWOBJ_EX = 0x92,
    STACK_GLOBAL = 0x93, MEMOIZE = 0x94, FRAME = 0x95, BYTEARRAY8 = 0x96, NEXT_BUFFER = 0x97,
    READONLY_BUFFER = 0x98,
};

const char* unsupported_op_name(uint8_t op) {
    switch (op) {
        case FLOAT: return "FLOAT";
        case INT: return "INT";
        case LONG: return "LONG";
        case PERSID: return "PERSID";
        case STRING: return "STRING";
        case UNICODE: return "UNICODE";
        case GET: return "GET";
        case PUT: return "PUT";
        case INST: return "INST";
        case OBJ: return "OBJ";
        case EXT1: return "EXT1";
        case EXT2: return "EXT2";
        case EXT4: return "EXT4";
        case EMPTY_SET: return "EMPTY_SET";
        case ADDITEMS: return "ADDITEMS";
        case FROZENSET: return "FROZENSET";
        case BYTEARRAY8: return "BYTEARRAY8";
        case NEXT_BUFFER: return "NEXT_BUFFER";
        case READONLY_BUFFER: return "READONLY_BUFFER";
        default: return nullptr;
    }
}

std::string hex_byte(uint8_t b) {
    static const char* hex = "0123456789abcdef";
    return std::string("0x") + hex[b >> 4] + hex[b & 15];
}

// Text from the file, escaped and cut short for messages.
std::string printable(const std::string& s, size_t max = 80) {
    std::string out;
    for (size_t i = 0; i < s.size() && i < max; ++i) {
        const unsigned char c = static_cast<unsigned char>(s[i]);
        if (c >= 0x20 && c < 0x7f && c != '\'' && c != '\\') {
            out += char(c);
        } else {
            out += "\\x" + hex_byte(c).substr(2);
        }
    }
    if (s.size() > max) out += "...";
    return out;
}

class Reader {
public:
    Reader(const uint8_t* data, size_t size, const PickleOptions& options)
        : data_(data), size_(size), opt_(options),
          allowed_(options.allowed_globals.begin(), options.allowed_globals.end()) {}

    Pickle run();

private:
    const uint8_t* data_;
    size_t size_;
    const PickleOptions& opt_;
    std::unordered_set<std::string> allowed_;
    size_t pos_ = 0;
    size_t op_pos_ = 0;  // offset of the opcode being executed, for messages
    Pickle out_;
    std::vector<size_t> stack_;
    std::vector<size_t> marks_;
    std::unordered_map<size_t, size_t> memo_;
    // Per dict: encoded hashable key -> index of its pair, so that a repeated key replaces.
    std::unordered_map<size_t, std::unordered_map<std::string, size_t>> dict_keys_;

    [[noreturn]] void fail(const std::string& what) const {
        throw Error(ErrorCode::format, opt_.origin + ": " + what + " at offset " +
                                           std::to_string(op_pos_));
    }
    [[noreturn]] void refuse(const std::string& what) const {
        throw Error(ErrorCode::unsupported, opt_.origin + ": " + what + " at offset " +
                                                std::to_string(op_pos_));
    }

    // --- reading operands, never past the end ---
    const uint8_t* take(uint64_t n, const char* what) {
        if (n > size_ - pos_) {
            fail(std::string("truncated pickle: ") + what + " needs " + std::to_string(n) +
                 " bytes, " + std::to_string(size_ - pos_) + " left");
        }
        const uint8_t* p = data_ + pos_;
        pos_ += static_cast<size_t>(n);
        return p;
    }
    uint64_t uint_le(size_t n, const char* what) {
        const uint8_t* p = take(n, what);
        uint64_t v = 0;
        for (size_t i = n; i-- > 0;) v = (v << 8) | p[i];
        return v;
    }
    std::string bytes(uint64_t n, const char* what) {
        const uint8_t* p = take(n, what);
        return std::string(reinterpret_cast<const char*>(p), static_cast<size_t>(n));
    }
    std::string line(const char* what) {
        const size_t limit = std::min(size_ - pos_, opt_.limits.max_global_name + 1);
        const void* nl = std::memchr(data_ + pos_, '\n', limit);
        if (!nl) {
            fail(std::string(what) + " is not a newline-terminated name of at most " +
                 std::to_string(opt_.limits.max_global_name) + " bytes");
        }
        const size_t n = static_cast<size_t>(static_cast<const uint8_t*>(nl) - (data_ + pos_));
        std::string s(reinterpret_cast<const char*>(data_ + pos_), n);
        pos_ += n + 1;
        return s;
    }

    // --- values ---
    size_t make(PyKind kind) {
        if (out_.values.size() >= opt_.limits.max_objects)
            fail("more than " + std::to_string(opt_.limits.max_objects) + " objects (limit)");
        out_.values.emplace_back();
        out_.values.back().kind = kind;
        return out_.values.size() - 1;
    }
    PyValue& v(size_t id) { return out_.values[id]; }

    // Records that `child` now sits inside `container`. Depth is tracked as containers fill;
    // nothing here recurses over values, the limit protects whoever walks the result.
    void nest(size_t container, size_t child) {
        const uint32_t d = v(child).depth;
        if (size_t(d) + 1 > opt_.limits.max_depth) {
            fail("containers nested deeper than " + std::to_string(opt_.limits.max_depth) +
                 " (limit)");
        }
        v(container).depth = std::max(v(container).depth, d + 1);
    }
    void grow(size_t container, size_t child) {
        if (v(container).items.size() >= opt_.limits.max_container) {
            fail(std::string(py_kind_name(v(container).kind)) + " with more than " +
                 std::to_string(opt_.limits.max_container) + " items (limit)");
        }
        nest(container, child);
        v(container).items.push_back(child);
    }

    // --- the stack: pops never cross the innermost MARK ---
    size_t fence() const { return marks_.empty() ? 0 : marks_.back(); }
    void push(size_t id) {
        if (stack_.size() + marks_.size() >= opt_.limits.max_stack)
            fail("stack deeper than " + std::to_string(opt_.limits.max_stack) + " (limit)");
        stack_.push_back(id);
    }
    size_t pop() {
        if (stack_.size() <= fence()) fail("stack underflow");
        const size_t id = stack_.back();
        stack_.pop_back();
        return id;
    }
    size_t top() {
        if (stack_.size() <= fence()) fail("stack underflow");
        return stack_.back();
    }
    std::vector<size_t> pop_mark() {
        if (marks_.empty()) fail("no MARK to pop to");
        const size_t m = marks_.back();
        marks_.pop_back();
        std::vector<size_t> items(stack_.begin() + std::ptrdiff_t(m), stack_.end());
        stack_.resize(m);
        return items;
    }

    size_t new_int(int64_t value) {
        const size_t id = make(PyKind::Int);
        v(id).i = value;
        return id;
    }
    size_t new_string(PyKind kind, std::string s) {
        const size_t id = make(kind);
        v(id).s = std::move(s);
        return id;
    }
    // A str or bytes operand: its length in `len_bytes` little-endian bytes, then the bytes.
    size_t text(PyKind kind, size_t len_bytes) {
        const uint64_t n = uint_le(len_bytes, "length");
        return new_string(kind, bytes(n, kind == PyKind::Str ? "str" : "bytes"));
    }
    size_t new_sequence(PyKind kind, const std::vector<size_t>& items) {
        const size_t id = make(kind);
        for (size_t item : items) grow(id, item);
        return id;
    }

    void set_item(size_t dict, size_t key, size_t value) {
        if (v(dict).kind != PyKind::Dict)
            fail("SETITEM(S) on a " + std::string(py_kind_name(v(dict).kind)) + ", not a dict");
        // Python replaces the value of an equal key; equality is known here for the hashable
        // scalars, which are the only keys torch.save writes.
        std::string k;
        const PyValue& kv = v(key);
        switch (kv.kind) {
            case PyKind::None: k = "n"; break;
            case PyKind::Bool:
            case PyKind::Int: k = "i" + std::to_string(kv.i); break;
            case PyKind::Str: k = "s" + kv.s; break;
            case PyKind::Bytes: k = "b" + kv.s; break;
            default: break;
        }
        if (!k.empty()) {
            auto& index = dict_keys_[dict];
            auto it = index.find(k);
            if (it != index.end()) {
                nest(dict, value);
                v(dict).items[2 * it->second + 1] = value;
                return;
            }
            index.emplace(std::move(k), v(dict).items.size() / 2);
        }
        grow(dict, key);
        grow(dict, value);
    }

    void append(size_t list, size_t value) {
        if (v(list).kind != PyKind::List)
            fail("APPEND(S) on a " + std::string(py_kind_name(v(list).kind)) + ", not a list");
        grow(list, value);
    }

    void put(uint64_t index) {
        if (index >= opt_.limits.max_memo_index) {
            fail("memo index " + std::to_string(index) + " exceeds the limit of " +
                 std::to_string(opt_.limits.max_memo_index));
        }
        memo_[static_cast<size_t>(index)] = top();
    }
    void get(uint64_t index) {
        auto it = index < opt_.limits.max_memo_index ? memo_.find(static_cast<size_t>(index))
                                                      : memo_.end();
        if (it == memo_.end()) fail("memo index " + std::to_string(index) + " is not defined");
        push(it->second);
    }

    void global(const std::string& module, const std::string& name) {
        const std::string full = module + "." + name;
        if (!allowed_.count(full)) {
            throw Error(ErrorCode::unsupported,
                        opt_.origin + ": forbidden global " + printable(full, 200) +
                            " at offset " + std::to_string(op_pos_) +
                            " (only the PyTorch tensor-rebuilding globals are accepted; nothing "
                            "in the pickle is executed)");
        }
        push(new_string(PyKind::Global, full));
    }

    // REDUCE / NEWOBJ: records callable(*args); nothing is called.
    void call(size_t callable, size_t args) {
        const PyValue& c = v(callable);
        if (c.kind != PyKind::Global)
            fail("call of a " + std::string(py_kind_name(c.kind)) + ", not of a global");
        if (v(args).kind != PyKind::Tuple)
            fail("arguments of " + c.s + " are a " + py_kind_name(v(args).kind) + ", not a tuple");
        if (c.s == "collections.OrderedDict") {
            // OrderedDict() is the state dict itself; its items follow as SETITEMS.
            if (!v(args).items.empty()) fail("collections.OrderedDict called with arguments");
            push(make(PyKind::Dict));
            return;
        }
        const size_t id = make(PyKind::Call);
        grow(id, callable);
        grow(id, args);
        v(id).items.push_back(Pickle::npos);  // no BUILD state yet
        push(id);
    }

    void build(size_t target, size_t state) {
        const PyKind kind = v(target).kind;
        if (kind == PyKind::Dict) return;  // OrderedDict attributes (state_dict()._metadata)
        if (kind != PyKind::Call) fail("BUILD on a " + std::string(py_kind_name(kind)));
        nest(target, state);
        v(target).items[2] = state;
    }

    int64_t long_value(uint64_t n) {
        if (n > 8) refuse("integer of " + std::to_string(n) + " bytes (wider than 64 bits)");
        const uint8_t* p = take(n, "LONG");
        if (n == 0) return 0;
        uint64_t u = 0;
        for (size_t i = size_t(n); i-- > 0;) u = (u << 8) | p[i];
        if (n < 8 && (p[n - 1] & 0x80)) u |= ~uint64_t(0) << (8 * n);  // sign-extend
        int64_t s;
        std::memcpy(&s, &u, sizeof s);
        return s;
    }
};

Pickle Reader::run() {
    while (pos_ < size_) {
        op_pos_ = pos_;
        const uint8_t op = data_[pos_++];
        switch (op) {
            case PROTO: {
                const uint64_t proto = uint_le(1, "PROTO");
                if (proto > 5) refuse("pickle protocol " + std::to_string(proto));
                break;
            }
            case FRAME: {
                const uint64_t n = uint_le(8, "FRAME");
                if (n > size_ - pos_)
                    fail("FRAME of " + std::to_string(n) + " bytes runs past the end");
                break;
            }
            case STOP: {
                out_.root = pop();
                return std::move(out_);
            }
            case MARK:
                if (stack_.size() + marks_.size() >= opt_.limits.max_stack)
                    fail("stack deeper than " + std::to_string(opt_.limits.max_stack) + " (limit)");
                marks_.push_back(stack_.size());
                break;
            case POP:
                // As in Python: POP right after a MARK discards the mark.
                if (!marks_.empty() && stack_.size() == marks_.back()) {
                    marks_.pop_back();
                } else {
                    pop();
                }
                break;
            case POP_MARK: pop_mark(); break;
            case DUP: push(top()); break;

            case NONE: push(make(PyKind::None)); break;
            case NEWTRUE:
            case NEWFALSE: {
                const size_t id = make(PyKind::Bool);
                v(id).i = op == NEWTRUE;
                push(id);
                break;
            }
            case BININT: {
                const uint32_t u = static_cast<uint32_t>(uint_le(4, "BININT"));
                int32_t s;
                std::memcpy(&s, &u, sizeof s);
                push(new_int(s));
                break;
            }
            case BININT1: push(new_int(int64_t(uint_le(1, "BININT1")))); break;
            case BININT2: push(new_int(int64_t(uint_le(2, "BININT2")))); break;
            case LONG1: push(new_int(long_value(uint_le(1, "LONG1")))); break;
            case LONG4: push(new_int(long_value(uint_le(4, "LONG4")))); break;
            case BINFLOAT: {
                const uint8_t* p = take(8, "BINFLOAT");
                uint64_t u = 0;
                for (int i = 0; i < 8; ++i) u = (u << 8) | p[i];  // big-endian
                const size_t id = make(PyKind::Float);
                std::memcpy(&v(id).f, &u, sizeof u);
                push(id);
                break;
            }

            case SHORT_BINUNICODE: push(text(PyKind::Str, 1)); break;
            case BINUNICODE: push(text(PyKind::Str, 4)); break;
            case BINUNICODE8: push(text(PyKind::Str, 8)); break;
            case SHORT_BINSTRING: push(text(PyKind::Str, 1)); break;
            case BINSTRING: {
                const uint32_t u = static_cast<uint32_t>(uint_le(4, "len"));
                if (u & 0x80000000u) fail("BINSTRING with a negative length");
                push(new_string(PyKind::Str, bytes(u, "str")));
                break;
            }
            case SHORT_BINBYTES: push(text(PyKind::Bytes, 1)); break;
            case BINBYTES: push(text(PyKind::Bytes, 4)); break;
            case BINBYTES8: push(text(PyKind::Bytes, 8)); break;

            case EMPTY_TUPLE: push(make(PyKind::Tuple)); break;
            case EMPTY_LIST: push(make(PyKind::List)); break;
            case EMPTY_DICT: push(make(PyKind::Dict)); break;
            case TUPLE: push(new_sequence(PyKind::Tuple, pop_mark())); break;
            case TUPLE1:
            case TUPLE2:
            case TUPLE3: {
                std::vector<size_t> items(size_t(op - TUPLE1 + 1));
                for (size_t i = items.size(); i-- > 0;) items[i] = pop();
                push(new_sequence(PyKind::Tuple, items));
                break;
            }
            case LIST: push(new_sequence(PyKind::List, pop_mark())); break;
            case DICT: {
                const std::vector<size_t> items = pop_mark();
                if (items.size() % 2) fail("DICT with an odd number of items");
                const size_t id = make(PyKind::Dict);
                for (size_t i = 0; i < items.size(); i += 2) set_item(id, items[i], items[i + 1]);
                push(id);
                break;
            }
            case APPEND: {
                const size_t value = pop();
                append(top(), value);
                break;
            }
            case APPENDS: {
                const std::vector<size_t> items = pop_mark();
                const size_t list = top();
                if (v(list).kind != PyKind::List)
                    fail("APPENDS on a " + std::string(py_kind_name(v(list).kind)) +
                         ", not a list");
                for (size_t item : items) append(list, item);
                break;
            }
            case SETITEM: {
                const size_t value = pop();
                const size_t key = pop();
                set_item(top(), key, value);
                break;
            }
            case SETITEMS: {
                const std::vector<size_t> items = pop_mark();
                if (items.size() % 2) fail("SETITEMS with an odd number of items");
                const size_t dict = top();
                if (v(dict).kind != PyKind::Dict)
                    fail("SETITEMS on a " + std::string(py_kind_name(v(dict).kind)) +
                         ", not a dict");
                for (size_t i = 0; i < items.size(); i += 2) set_item(dict, items[i], items[i + 1]);
                break;
            }

            case BINPUT: put(uint_le(1, "BINPUT")); break;
            case LONG_BINPUT: put(uint_le(4, "LONG_BINPUT")); break;
            case MEMOIZE: put(memo_.size()); break;
            case BINGET: get(uint_le(1, "BINGET")); break;
            case LONG_BINGET: get(uint_le(4, "LONG_BINGET")); break;

            case GLOBAL: {
                const std::string module = line("GLOBAL module");
                const std::string name = line("GLOBAL name");
                global(module, name);
                break;
            }
            case STACK_GLOBAL: {
                const size_t name = pop(), module = pop();
                if (v(module).kind != PyKind::Str || v(name).kind != PyKind::Str)
                    fail("STACK_GLOBAL of a non-string module or name");
                if (v(module).s.size() > opt_.limits.max_global_name ||
                    v(name).s.size() > opt_.limits.max_global_name)
                    fail("STACK_GLOBAL name longer than " +
                         std::to_string(opt_.limits.max_global_name) + " bytes");
                const std::string m = v(module).s, n = v(name).s;  // copies: make() may reallocate
                global(m, n);
                break;
            }
            case REDUCE:
            case NEWOBJ: {
                const size_t args = pop();
                const size_t callable = pop();
                call(callable, args);
                break;
            }
            case NEWOBJ_EX: {
                const size_t kwargs = pop(), args = pop(), cls = pop();
                if (v(kwargs).kind != PyKind::Dict || !v(kwargs).items.empty())
                    refuse("NEWOBJ_EX with keyword arguments");
                call(cls, args);
                break;
            }
            case BUILD: {
                const size_t state = pop();
                build(top(), state);
                break;
            }
            case BINPERSID: {
                const size_t pid = pop();
                const size_t id = make(PyKind::PersistentId);
                grow(id, pid);
                push(id);
                break;
            }

            default:
                if (const char* name = unsupported_op_name(op)) {
                    refuse(std::string("pickle opcode ") + name + " (" + hex_byte(op) +
                           ") is not supported (torch.save does not write it)");
                }
                fail("unknown pickle opcode " + hex_byte(op));
        }
    }
    op_pos_ = pos_;
    fail("truncated pickle: no STOP opcode");
}

}  // namespace

const char* py_kind_name(PyKind kind) {
    switch (kind) {
        case PyKind::None: return "None";
        case PyKind::Bool: return "bool";
        case PyKind::Int: return "int";
        case PyKind::Float: return "float";
        case PyKind::Str: return "str";
        case PyKind::Bytes: return "bytes";
        case PyKind::Tuple: return "tuple";
        case PyKind::List: return "list";
        case PyKind::Dict: return "dict";
        case PyKind::Global: return "global";
        case PyKind::Call: return "call";
        case PyKind::PersistentId: return "persistent id";
    }
    return "?";
}

std::string Pickle::describe(size_t id) const {
    if (id >= values.size()) return "nothing";
    const PyValue& x = values[id];
    switch (x.kind) {
        case PyKind::None: return "None";
        case PyKind::Bool: return x.i ? "True" : "False";
        case PyKind::Int: return "int " + std::to_string(x.i);
        case PyKind::Float: return "float " + std::to_string(x.f);
        case PyKind::Str: return "str '" + printable(x.s) + "'";
        case PyKind::Bytes: return "bytes of length " + std::to_string(x.s.size());
        case PyKind::Tuple:
        case PyKind::List: return std::string(py_kind_name(x.kind)) + " of " +
                                  std::to_string(x.items.size()) + " items";
        case PyKind::Dict: return "dict of " + std::to_string(x.items.size() / 2) + " items";
        case PyKind::Global: return "global " + x.s;
        case PyKind::Call: {
            const size_t c = x.items[0];
            return "call of " + (c < values.size() ? values[c].s : std::string("?"));
        }
        case PyKind::PersistentId: return "persistent id";
    }
    return "?";
}

Pickle read_pickle(const uint8_t* data, size_t size, const PickleOptions& options) {
    Reader r(data, size, options);
    return r.run();
}

}  // namespace stackllama::io
