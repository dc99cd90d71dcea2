#include "pickle_machine.h"

#include <cstring>
#include <set>
#include <unordered_map>

namespace decayfw::engine::pickle {
namespace {

using Kind = Value::Kind;

// Calls a checkpoint has no business making. They are never executed anyway; refusing them tells
// the user the file is hostile instead of returning a half-read object.
bool is_code_execution(const std::string& module, const std::string& name) {
  static const std::set<std::string> modules = {"os", "posix", "nt", "subprocess", "sys", "shutil", "socket",
                                                "importlib", "pickle", "_pickle", "marshal", "ctypes", "pty",
                                                "runpy", "code", "codeop", "webbrowser", "commands", "popen2",
                                                "multiprocessing", "signal", "tempfile", "pathlib", "io", "_io"};
  static const std::set<std::string> builtins = {"eval", "exec", "compile", "open", "getattr", "setattr", "delattr",
                                                 "__import__", "globals", "locals", "vars", "input", "breakpoint",
                                                 "exit", "quit", "help", "memoryview", "type", "object",
                                                 "classmethod", "staticmethod", "property", "super"};
  const std::string top = module.substr(0, module.find('.'));
  if (modules.count(top)) return true;
  if ((module == "builtins" || module == "__builtin__") && builtins.count(name)) return true;
  return false;
}

class Machine {
 public:
  Machine(const uint8_t* data, size_t size, size_t offset, const Limits& limits)
      : p_(data), size_(size), pos_(offset), limits_(limits) {}

  ValuePtr run();
  size_t position() const { return pos_; }

 private:
  const uint8_t* p_;
  size_t size_, pos_;
  Limits limits_;
  std::vector<ValuePtr> stack_;
  std::vector<size_t> marks_;
  std::unordered_map<uint64_t, ValuePtr> memo_;
  size_t op_pos_ = 0;
  uint8_t op_ = 0;

  [[noreturn]] void fail(const std::string& what) const {
    char buf[64];
    std::snprintf(buf, sizeof buf, " (opcode 0x%02x at byte %zu)", op_, op_pos_);
    throw PickleError("pickle: " + what + buf);
  }
  void need(size_t n) const {
    if (n > size_ - pos_) fail("truncated: needs " + std::to_string(n) + " more bytes, " + std::to_string(size_ - pos_) + " left");
  }
  uint64_t read_uint(size_t n) {
    need(n);
    uint64_t v = 0;
    for (size_t i = 0; i < n; ++i) v |= uint64_t(p_[pos_ + i]) << (8 * i);
    pos_ += n;
    return v;
  }
  std::string read_bytes(uint64_t n) {
    if (n > limits_.max_string) fail("string of " + std::to_string(n) + " bytes exceeds the limit");
    need(static_cast<size_t>(n));
    std::string s(reinterpret_cast<const char*>(p_ + pos_), static_cast<size_t>(n));
    pos_ += static_cast<size_t>(n);
    return s;
  }
  std::string read_line() {
    const void* nl = std::memchr(p_ + pos_, '\n', size_ - pos_);
    if (nl == nullptr) fail("truncated: unterminated text argument");
    const size_t n = static_cast<const uint8_t*>(nl) - (p_ + pos_);
    std::string s(reinterpret_cast<const char*>(p_ + pos_), n);
    pos_ += n + 1;
    return s;
  }
  void push(ValuePtr v) {
    if (stack_.size() >= limits_.max_items) fail("stack too large");
    stack_.push_back(std::move(v));
  }
  ValuePtr pop() {
    if (stack_.empty() || (!marks_.empty() && stack_.size() <= marks_.back())) fail("stack underflow");
    ValuePtr v = std::move(stack_.back());
    stack_.pop_back();
    return v;
  }
  ValuePtr& top() {
    if (stack_.empty() || (!marks_.empty() && stack_.size() <= marks_.back())) fail("stack underflow");
    return stack_.back();
  }
  std::vector<ValuePtr> pop_mark() {
    if (marks_.empty()) fail("no MARK on the stack");
    const size_t m = marks_.back();
    marks_.pop_back();
    std::vector<ValuePtr> items(std::make_move_iterator(stack_.begin() + static_cast<std::ptrdiff_t>(m)),
                                std::make_move_iterator(stack_.end()));
    stack_.resize(m);
    return items;
  }
  void memo_put(uint64_t key, ValuePtr v) {
    if (memo_.size() >= limits_.max_memo && !memo_.count(key)) fail("memo too large");
    memo_[key] = std::move(v);
  }
  ValuePtr memo_get(uint64_t key) {
    auto it = memo_.find(key);
    if (it == memo_.end()) fail("memo key " + std::to_string(key) + " was never stored");
    return it->second;
  }
  static ValuePtr str(std::string s, Kind k = Kind::String) {
    auto v = Value::make(k);
    v->text = std::move(s);
    return v;
  }
  static ValuePtr integer(int64_t i) {
    auto v = Value::make(Kind::Int);
    v->integer = i;
    return v;
  }
  ValuePtr tuple(std::vector<ValuePtr> items) {
    auto v = Value::make(Kind::Tuple);
    v->items = std::move(items);
    return v;
  }
  void add_items(const ValuePtr& container, std::vector<ValuePtr> items) {
    if (container->is(Kind::List) || container->is(Kind::Object)) {  // Object: e.g. a set subclass
      for (auto& i : items) container->items.push_back(std::move(i));
      return;
    }
    fail("APPEND to a " + std::string(kind_name(container->kind)));
  }
  void set_items(const ValuePtr& container, std::vector<ValuePtr> kv) {
    if (kv.size() % 2) fail("SETITEMS with an odd number of items");
    if (!container->is(Kind::Dict)) {
      if (container->is(Kind::Object)) {  // a dict subclass recorded as an Object: keep its items in state
        if (!container->state) container->state = Value::make(Kind::Dict);
        return set_items(container->state, std::move(kv));
      }
      fail("SETITEM on a " + std::string(kind_name(container->kind)));
    }
    // Python semantics: a repeated key overrides; lookups (Value::get) take the last entry.
    for (size_t i = 0; i < kv.size(); i += 2) container->entries.emplace_back(kv[i], kv[i + 1]);
  }
  ValuePtr global(const std::string& module, const std::string& name) {
    auto g = Value::make(Kind::Global);
    g->module = module;
    g->name = name;
    return g;
  }
  ValuePtr call(const ValuePtr& callable, const ValuePtr& args);
  ValuePtr persistent(const ValuePtr& pid);
  static int64_t as_int(const ValuePtr& v, const char* what);
  std::vector<int64_t> int_tuple(const ValuePtr& v, const char* what);
};

int64_t Machine::as_int(const ValuePtr& v, const char* what) {
  if (v->is(Kind::Int)) return v->integer;
  if (v->is(Kind::Bool)) return v->boolean ? 1 : 0;
  throw PickleError(std::string("pickle: ") + what + " must be an integer, got " + kind_name(v->kind));
}

std::vector<int64_t> Machine::int_tuple(const ValuePtr& v, const char* what) {
  if (!v->is(Kind::Tuple) && !v->is(Kind::List)) fail(std::string(what) + " must be a tuple");
  std::vector<int64_t> out;
  for (const auto& i : v->items) out.push_back(as_int(i, what));
  return out;
}

// Persistent ids are torch's storages: ('storage', StorageClass, key, location, numel[, view]).
ValuePtr Machine::persistent(const ValuePtr& pid) {
  if (!pid->is(Kind::Tuple) || pid->items.size() < 5 || !pid->items[0]->is(Kind::String) ||
      pid->items[0]->text != "storage") {
    fail("unsupported persistent id " + pid->describe());
  }
  const ValuePtr& cls = pid->items[1];
  auto s = Value::make(Kind::Storage);
  if (cls->is(Kind::Global)) {
    s->tensor.dtype = storage_dtype(cls->name);
  } else {
    fail("storage type must be a class, got " + cls->describe());
  }
  if (!pid->items[2]->is(Kind::String)) fail("storage key must be a string");
  s->tensor.storage_key = pid->items[2]->text;
  s->tensor.storage_numel = as_int(pid->items[4], "storage size");
  if (s->tensor.storage_numel < 0) fail("negative storage size");
  if (pid->items.size() > 5 && !pid->items[5]->is(Kind::None)) {
    fail("legacy storage views are not supported");
  }
  return s;
}

ValuePtr Machine::call(const ValuePtr& callable, const ValuePtr& args) {
  if (!callable->is(Kind::Global)) {
    auto o = Value::make(Kind::Object);  // e.g. calling the result of another call: record it
    o->module = callable->module;
    o->name = callable->name.empty() ? "<call>" : callable->name;
    o->items = args->items;
    return o;
  }
  const std::string& m = callable->module;
  const std::string& n = callable->name;
  if (is_code_execution(m, n)) {
    throw PickleError("pickle: refusing to run " + m + "." + n +
                      " from the file: it tries to execute code, so it is not a model checkpoint");
  }
  if (!args->is(Kind::Tuple)) fail("call arguments must be a tuple");
  const auto& a = args->items;
  if (m == "torch._utils" && (n == "_rebuild_tensor_v2" || n == "_rebuild_tensor")) {
    if (a.size() < 4 || !a[0]->is(Kind::Storage)) fail(n + ": expected (storage, offset, size, stride, ...)");
    auto t = Value::make(Kind::Tensor);
    t->tensor = a[0]->tensor;
    t->tensor.offset = as_int(a[1], "storage offset");
    t->tensor.sizes = int_tuple(a[2], "size");
    t->tensor.strides = int_tuple(a[3], "stride");
    if (t->tensor.sizes.size() != t->tensor.strides.size()) fail("tensor size and stride have different ranks");
    return t;
  }
  if (m == "torch._utils" && (n == "_rebuild_parameter" || n == "_rebuild_parameter_with_state")) {
    if (a.empty() || !a[0]->is(Kind::Tensor)) fail(n + ": expected a tensor");
    return a[0];
  }
  if (m == "collections" && n == "OrderedDict") {
    auto d = Value::make(Kind::Dict);
    if (!a.empty() && (a[0]->is(Kind::List) || a[0]->is(Kind::Tuple))) {
      for (const auto& pair : a[0]->items) {
        if (pair->is(Kind::Tuple) && pair->items.size() == 2) d->entries.emplace_back(pair->items[0], pair->items[1]);
      }
    }
    return d;
  }
  if ((m == "torch" && n == "Size") || (m == "builtins" && (n == "tuple"))) {
    return tuple(a.empty() ? std::vector<ValuePtr>{} : a[0]->items);
  }
  if (m == "builtins" && (n == "set" || n == "frozenset" || n == "list")) {
    auto l = Value::make(Kind::List);
    if (!a.empty()) l->items = a[0]->items;
    return l;
  }
  auto o = Value::make(Kind::Object);
  o->module = m;
  o->name = n;
  o->items = a;
  return o;
}

ValuePtr Machine::run() {
  while (true) {
    op_pos_ = pos_;
    need(1);
    op_ = p_[pos_++];
    if (stack_.size() > limits_.max_items) fail("too many items");
    switch (op_) {
      case 0x80: read_uint(1); break;                               // PROTO
      case 0x95: read_uint(8); break;                               // FRAME (framing is only a hint)
      case '.': {                                                   // STOP
        if (stack_.size() != 1 || !marks_.empty()) fail("STOP with " + std::to_string(stack_.size()) + " values on the stack");
        return stack_.back();
      }
      case '(':                                                     // MARK
        if (marks_.size() >= limits_.max_depth) fail("nesting deeper than the limit");
        marks_.push_back(stack_.size());
        break;
      case '0': pop(); break;                                       // POP
      case '1': pop_mark(); break;                                  // POP_MARK
      case '2': push(top()); break;                                 // DUP
      case 'N': push(Value::make(Kind::None)); break;
      case 0x88: case 0x89: {                                       // NEWTRUE, NEWFALSE
        auto v = Value::make(Kind::Bool);
        v->boolean = op_ == 0x88;
        push(v);
        break;
      }
      case 'J': push(integer(static_cast<int32_t>(read_uint(4)))); break;   // BININT
      case 'K': push(integer(static_cast<int64_t>(read_uint(1)))); break;   // BININT1
      case 'M': push(integer(static_cast<int64_t>(read_uint(2)))); break;   // BININT2
      case 0x8a: case 0x8b: {                                       // LONG1, LONG4
        const uint64_t n = read_uint(op_ == 0x8a ? 1 : 4);
        if (n > 8) fail("integer of " + std::to_string(n) + " bytes does not fit 64 bits");
        need(static_cast<size_t>(n));
        uint64_t v = 0;
        for (uint64_t i = 0; i < n; ++i) v |= uint64_t(p_[pos_ + i]) << (8 * i);
        if (n > 0 && n < 8 && (p_[pos_ + n - 1] & 0x80)) v |= ~uint64_t(0) << (8 * n);  // sign-extend
        pos_ += static_cast<size_t>(n);
        push(integer(static_cast<int64_t>(v)));
        break;
      }
      case 'I': case 'L': {                                         // INT, LONG (text)
        std::string s = read_line();
        if (!s.empty() && s.back() == 'L') s.pop_back();
        if (s == "00" || s == "01") {
          auto v = Value::make(Kind::Bool);
          v->boolean = s == "01";
          push(v);
          break;
        }
        try {
          push(integer(std::stoll(s)));
        } catch (const std::exception&) {
          fail("bad integer '" + s + "'");
        }
        break;
      }
      case 'G': {                                                   // BINFLOAT (big-endian)
        need(8);
        uint64_t bits = 0;
        for (int i = 0; i < 8; ++i) bits = (bits << 8) | p_[pos_ + i];
        pos_ += 8;
        auto v = Value::make(Kind::Float);
        std::memcpy(&v->real, &bits, 8);
        push(v);
        break;
      }
      case 'F': {                                                   // FLOAT (text)
        const std::string s = read_line();
        auto v = Value::make(Kind::Float);
        try {
          v->real = std::stod(s);
        } catch (const std::exception&) {
          fail("bad float '" + s + "'");
        }
        push(v);
        break;
      }
      case 0x8c: push(str(read_bytes(read_uint(1)))); break;        // SHORT_BINUNICODE
      case 'X': push(str(read_bytes(read_uint(4)))); break;         // BINUNICODE
      case 0x8d: push(str(read_bytes(read_uint(8)))); break;        // BINUNICODE8
      case 'V': push(str(read_line())); break;                      // UNICODE (raw-unicode-escape; kept as is)
      case 'T': push(str(read_bytes(read_uint(4)))); break;         // BINSTRING
      case 'U': push(str(read_bytes(read_uint(1)))); break;         // SHORT_BINSTRING
      case 'S': {                                                   // STRING (quoted repr)
        std::string s = read_line();
        if (s.size() >= 2 && (s.front() == '\'' || s.front() == '"') && s.back() == s.front()) s = s.substr(1, s.size() - 2);
        push(str(s));
        break;
      }
      case 'C': push(str(read_bytes(read_uint(1)), Kind::Bytes)); break;   // SHORT_BINBYTES
      case 'B': push(str(read_bytes(read_uint(4)), Kind::Bytes)); break;   // BINBYTES
      case 0x8e: case 0x96: push(str(read_bytes(read_uint(8)), Kind::Bytes)); break;  // BINBYTES8, BYTEARRAY8
      case ')': push(tuple({})); break;                             // EMPTY_TUPLE
      case 't': push(tuple(pop_mark())); break;                     // TUPLE
      case 0x85: { auto a = pop(); push(tuple({a})); break; }       // TUPLE1
      case 0x86: { auto b = pop(); auto a = pop(); push(tuple({a, b})); break; }
      case 0x87: { auto c = pop(); auto b = pop(); auto a = pop(); push(tuple({a, b, c})); break; }
      case ']': push(Value::make(Kind::List)); break;               // EMPTY_LIST
      case 'l': { auto l = Value::make(Kind::List); l->items = pop_mark(); push(l); break; }
      case '}': push(Value::make(Kind::Dict)); break;               // EMPTY_DICT
      case 'd': { auto d = Value::make(Kind::Dict); set_items(d, pop_mark()); push(d); break; }
      case 0x8f: push(Value::make(Kind::List)); break;              // EMPTY_SET (as a list)
      case 0x90: { auto items = pop_mark(); add_items(top(), std::move(items)); break; }  // ADDITEMS
      case 0x91: { auto l = Value::make(Kind::List); l->items = pop_mark(); push(l); break; }  // FROZENSET
      case 'a': { auto v = pop(); add_items(top(), {v}); break; }   // APPEND
      case 'e': { auto items = pop_mark(); add_items(top(), std::move(items)); break; }  // APPENDS
      case 's': { auto v = pop(); auto k = pop(); set_items(top(), {k, v}); break; }     // SETITEM
      case 'u': { auto items = pop_mark(); set_items(top(), std::move(items)); break; }  // SETITEMS
      case 'p': {                                                   // PUT (text)
        const std::string s = read_line();
        try {
          memo_put(std::stoull(s), top());
        } catch (const std::invalid_argument&) {
          fail("bad memo key '" + s + "'");
        }
        break;
      }
      case 'q': memo_put(read_uint(1), top()); break;               // BINPUT
      case 'r': memo_put(read_uint(4), top()); break;               // LONG_BINPUT
      case 0x94: memo_put(memo_.size(), top()); break;              // MEMOIZE
      case 'g': {                                                   // GET (text)
        const std::string s = read_line();
        try {
          push(memo_get(std::stoull(s)));
        } catch (const std::invalid_argument&) {
          fail("bad memo key '" + s + "'");
        }
        break;
      }
      case 'h': push(memo_get(read_uint(1))); break;                // BINGET
      case 'j': push(memo_get(read_uint(4))); break;                // LONG_BINGET
      case 'c': {                                                   // GLOBAL
        std::string module = read_line();
        std::string name = read_line();
        push(global(module, name));
        break;
      }
      case 0x93: {                                                  // STACK_GLOBAL
        auto name = pop();
        auto module = pop();
        if (!module->is(Kind::String) || !name->is(Kind::String)) fail("STACK_GLOBAL needs two strings");
        push(global(module->text, name->text));
        break;
      }
      case 'R': { auto args = pop(); auto fn = pop(); push(call(fn, args)); break; }    // REDUCE
      case 0x81: { auto args = pop(); auto cls = pop(); push(call(cls, args)); break; }  // NEWOBJ
      case 0x92: { pop(); auto args = pop(); auto cls = pop(); push(call(cls, args)); break; }  // NEWOBJ_EX
      case 'i': {                                                   // INST
        std::string module = read_line();
        std::string name = read_line();
        push(call(global(module, name), tuple(pop_mark())));
        break;
      }
      case 'o': {                                                   // OBJ
        auto items = pop_mark();
        if (items.empty()) fail("OBJ without a class");
        ValuePtr cls = items.front();
        items.erase(items.begin());
        push(call(cls, tuple(std::move(items))));
        break;
      }
      case 'b': {                                                   // BUILD
        auto state = pop();
        ValuePtr& obj = top();
        if (obj->is(Kind::Object)) {
          obj->state = state;
        } else if (obj->is(Kind::Dict) && state->is(Kind::Dict)) {
          for (auto& e : state->entries) obj->entries.push_back(e);
        }  // tensors and others: the state (e.g. a Parameter's requires_grad) is not needed
        break;
      }
      case 'Q': { auto pid = pop(); push(persistent(pid)); break; } // BINPERSID
      case 'P': fail("text persistent ids are not used by torch checkpoints");
      case 0x82: case 0x83: case 0x84: fail("extension registry codes (EXT1/2/4) are not supported");
      default: fail("unknown opcode");
    }
  }
}

}  // namespace

ValuePtr read_pickle(const uint8_t* data, size_t size, size_t& offset, const Limits& limits) {
  if (data == nullptr || offset >= size) throw PickleError("pickle: no data (empty or truncated file)");
  Machine m(data, size, offset, limits);
  ValuePtr v = m.run();
  offset = m.position();
  return v;
}

at::ScalarType storage_dtype(const std::string& c) {
  static const std::unordered_map<std::string, at::ScalarType> types = {
      {"FloatStorage", at::kFloat},   {"DoubleStorage", at::kDouble}, {"HalfStorage", at::kHalf},
      {"BFloat16Storage", at::kBFloat16}, {"LongStorage", at::kLong}, {"IntStorage", at::kInt},
      {"ShortStorage", at::kShort},   {"CharStorage", at::kChar},     {"ByteStorage", at::kByte},
      {"BoolStorage", at::kBool},     {"ComplexFloatStorage", at::kComplexFloat},
      {"ComplexDoubleStorage", at::kComplexDouble}};
  auto it = types.find(c);
  if (it == types.end()) throw PickleError("pickle: unknown storage type '" + c + "'");
  return it->second;
}

const char* kind_name(Value::Kind k) {
  switch (k) {
    case Kind::None: return "None";
    case Kind::Bool: return "bool";
    case Kind::Int: return "int";
    case Kind::Float: return "float";
    case Kind::String: return "str";
    case Kind::Bytes: return "bytes";
    case Kind::List: return "list";
    case Kind::Tuple: return "tuple";
    case Kind::Dict: return "dict";
    case Kind::Global: return "class";
    case Kind::Object: return "object";
    case Kind::Storage: return "storage";
    case Kind::Tensor: return "tensor";
    case Kind::Mark: return "mark";
  }
  return "?";
}

ValuePtr Value::get(const std::string& key) const {
  if (kind != Kind::Dict) return nullptr;
  for (auto it = entries.rbegin(); it != entries.rend(); ++it) {
    if (it->first->kind == Kind::String && it->first->text == key) return it->second;
  }
  return nullptr;
}

ValuePtr Value::attr(const std::string& key) const {
  if (kind == Kind::Dict) return get(key);
  if (kind == Kind::Object && state) return state->get(key);
  return nullptr;
}

std::string Value::scalar_text() const {
  switch (kind) {
    case Kind::None: return "None";
    case Kind::Bool: return boolean ? "True" : "False";
    case Kind::Int: return std::to_string(integer);
    case Kind::Float: {
      char buf[64];
      std::snprintf(buf, sizeof buf, "%.17g", real);
      return buf;
    }
    case Kind::String: return text;
    case Kind::List:
    case Kind::Tuple: {
      std::string s;
      for (const auto& i : items) {
        const std::string t = i->scalar_text();
        if (t.empty() && !i->is(Kind::String)) return "";
        s += (s.empty() ? "" : ",") + t;
      }
      return s;
    }
    default: return "";
  }
}

std::string Value::describe(size_t max_len) const {
  std::string s;
  switch (kind) {
    case Kind::Global: s = "class " + module + "." + name; break;
    case Kind::Object: s = module + "." + name + " object"; break;
    case Kind::Tensor: {
      s = std::string(c10::toString(tensor.dtype)) + " tensor [";
      for (size_t i = 0; i < tensor.sizes.size(); ++i) s += (i ? ", " : "") + std::to_string(tensor.sizes[i]);
      s += "]";
      break;
    }
    case Kind::Dict: s = "dict of " + std::to_string(entries.size()); break;
    case Kind::List: case Kind::Tuple: {
      s = scalar_text();
      if (s.empty()) s = std::string(kind_name(kind)) + " of " + std::to_string(items.size());
      break;
    }
    case Kind::Bytes: s = "bytes of " + std::to_string(text.size()); break;
    default: s = scalar_text();
  }
  if (s.size() > max_len) s = s.substr(0, max_len) + "…";
  return s;
}

}  // namespace decayfw::engine::pickle
