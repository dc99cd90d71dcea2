#include "pickle_machine.h"

#include <cstdio>
#include <cstring>
#include <unordered_map>

#include "pickle_calls.h"
#include "pickle_text.h"

namespace decayfw::engine::pickle {
namespace {

using Kind = Value::Kind;

const char* opcode_name(uint8_t op) {
  switch (op) {
    case 0x80: return "PROTO";       case 0x95: return "FRAME";        case '.': return "STOP";
    case '(': return "MARK";         case '0': return "POP";           case '1': return "POP_MARK";
    case '2': return "DUP";          case 'N': return "NONE";          case 0x88: return "NEWTRUE";
    case 0x89: return "NEWFALSE";    case 'J': return "BININT";        case 'K': return "BININT1";
    case 'M': return "BININT2";      case 0x8a: return "LONG1";        case 0x8b: return "LONG4";
    case 'I': return "INT";          case 'L': return "LONG";          case 'G': return "BINFLOAT";
    case 'F': return "FLOAT";        case 0x8c: return "SHORT_BINUNICODE"; case 'X': return "BINUNICODE";
    case 0x8d: return "BINUNICODE8"; case 'V': return "UNICODE";       case 'T': return "BINSTRING";
    case 'U': return "SHORT_BINSTRING"; case 'S': return "STRING";     case 'C': return "SHORT_BINBYTES";
    case 'B': return "BINBYTES";     case 0x8e: return "BINBYTES8";    case 0x96: return "BYTEARRAY8";
    case ')': return "EMPTY_TUPLE";  case 't': return "TUPLE";         case 0x85: return "TUPLE1";
    case 0x86: return "TUPLE2";      case 0x87: return "TUPLE3";       case ']': return "EMPTY_LIST";
    case 'l': return "LIST";         case '}': return "EMPTY_DICT";    case 'd': return "DICT";
    case 0x8f: return "EMPTY_SET";   case 0x90: return "ADDITEMS";     case 0x91: return "FROZENSET";
    case 'a': return "APPEND";       case 'e': return "APPENDS";       case 's': return "SETITEM";
    case 'u': return "SETITEMS";     case 'p': return "PUT";           case 'q': return "BINPUT";
    case 'r': return "LONG_BINPUT";  case 0x94: return "MEMOIZE";      case 'g': return "GET";
    case 'h': return "BINGET";       case 'j': return "LONG_BINGET";   case 'c': return "GLOBAL";
    case 0x93: return "STACK_GLOBAL"; case 'R': return "REDUCE";       case 0x81: return "NEWOBJ";
    case 0x92: return "NEWOBJ_EX";   case 'i': return "INST";          case 'o': return "OBJ";
    case 'b': return "BUILD";        case 'Q': return "BINPERSID";     case 'P': return "PERSID";
    case 0x82: return "EXT1";        case 0x83: return "EXT2";         case 0x84: return "EXT4";
    case 0x97: return "NEXT_BUFFER"; case 0x98: return "READONLY_BUFFER";
    default: return "unknown opcode";
  }
}

class Machine {
 public:
  Machine(const uint8_t* data, size_t size, size_t offset, const Limits& limits)
      : p_(data), size_(size), pos_(offset), limits_(limits) {}

  ValuePtr run();
  size_t position() const { return pos_; }
  // Rejects results with cycles or nesting deeper than the limit (iteratively: the walk itself
  // must not overflow the stack on what it is checking).
  void check_tree(const ValuePtr& root);
  // Empties every mutable container this pickle built, which breaks any reference cycle a hostile
  // pickle made (shared_ptr cycles would otherwise never be freed).
  void drop_containers() {
    for (auto& c : containers_) c->drop_children();
    containers_.clear();
  }

 private:
  const uint8_t* p_;
  size_t size_, pos_;
  Limits limits_;
  std::vector<ValuePtr> stack_;
  std::vector<size_t> marks_;
  std::unordered_map<uint64_t, ValuePtr> memo_;
  std::vector<ValuePtr> containers_;  // lists, dicts, objects: the only values that can close a cycle
  size_t copied_ = 0;                 // see Limits::max_copied
  // torch.storage._load_from_bytes results by their bytes value (kept alive here, so the key stays valid)
  std::unordered_map<const Value*, std::pair<ValuePtr, ValuePtr>> nested_storages_;
  size_t op_pos_ = 0;
  uint8_t op_ = 0;

  [[noreturn]] void fail(const std::string& what) const {
    char buf[96];
    std::snprintf(buf, sizeof buf, " (%s, opcode 0x%02x at byte %zu)", opcode_name(op_), op_, op_pos_);
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
    if (n > limits_.max_string) fail("text argument of " + std::to_string(n) + " bytes exceeds the limit");
    std::string s(reinterpret_cast<const char*>(p_ + pos_), n);
    pos_ += n + 1;
    return s;
  }
  void push(ValuePtr v) {
    if (stack_.size() >= limits_.max_items) fail("stack too large");
    if (v->is(Kind::List) || v->is(Kind::Dict) || v->is(Kind::Object)) containers_.push_back(v);
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
  uint64_t memo_key_text() {
    const std::string s = read_line();
    uint64_t key = 0;
    if (!parse_memo_key(s, key)) fail("bad memo key '" + s.substr(0, 40) + "'");
    return key;
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
  static ValuePtr boolean(bool b) {
    auto v = Value::make(Kind::Bool);
    v->boolean = b;
    return v;
  }
  static ValuePtr tuple(std::vector<ValuePtr> items) {
    auto v = Value::make(Kind::Tuple);
    v->items = std::move(items);
    return v;
  }
  static ValuePtr global(const std::string& module, const std::string& name) {
    auto g = Value::make(Kind::Global);
    g->module = module;
    g->name = name;
    return g;
  }
  void add_items(const ValuePtr& container, std::vector<ValuePtr> items) {
    if (container->is(Kind::List) || container->is(Kind::Object)) {  // Object: e.g. a list subclass
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
  std::string text_unicode(const std::string& raw) {
    std::string s;
    if (!decode_raw_unicode_escape(raw, s)) fail("bad raw-unicode-escape text");
    return s;
  }
  void charge_copy(size_t units) {
    copied_ += units;
    if (copied_ > limits_.max_copied) fail("the pickle copies more than " + std::to_string(limits_.max_copied) +
                                           " values (a memory bomb)");
  }
  ValuePtr call(const ValuePtr& callable, const ValuePtr& args) {
    // A nested storage copies its bytes once per bytes value, however often it is called on them.
    const bool nested_storage = callable->is(Kind::Global) && callable->module == "torch.storage" &&
                                callable->name == "_load_from_bytes" && args->is(Kind::Tuple) && args->items.size() == 1;
    if (nested_storage) {
      auto it = nested_storages_.find(args->items[0].get());
      if (it != nested_storages_.end()) return it->second.second;
    }
    ValuePtr v;
    try {
      v = interpret_call(callable, args);
    } catch (const PickleError& e) {
      fail(e.what());
    }
    if (v != args && (args->items.empty() || v != args->items[0])) {  // a new value: what did it copy?
      charge_copy(v->items.size() + 2 * v->entries.size() + v->text.size() / 8);
    }
    if (nested_storage) nested_storages_[args->items[0].get()] = {args->items[0], v};
    return v;
  }
  ValuePtr persistent(const ValuePtr& pid);
  ValuePtr long_bytes(uint64_t n);
  void step();
};

// Persistent ids are torch's storages: ('storage', StorageClass, key, location, numel[, view]).
ValuePtr Machine::persistent(const ValuePtr& pid) {
  if (!pid->is(Kind::Tuple) || pid->items.size() < 5 || !pid->items[0]->is(Kind::String) ||
      pid->items[0]->text != "storage") {
    fail("unsupported persistent id " + pid->describe());
  }
  const ValuePtr& cls = pid->items[1];
  if (!cls->is(Kind::Global)) fail("storage type must be a class, got " + cls->describe());
  auto s = Value::make(Kind::Storage);
  try {
    s->tensor.dtype = storage_dtype(cls->name);
  } catch (const PickleError& e) {
    fail(e.what());
  }
  if (!pid->items[2]->is(Kind::String)) fail("storage key must be a string");
  s->tensor.storage_key = pid->items[2]->text;
  if (!pid->items[4]->is(Kind::Int)) fail("storage size must be an integer");
  s->tensor.storage_numel = pid->items[4]->integer;
  if (s->tensor.storage_numel < 0) fail("negative storage size");
  if (pid->items.size() > 5 && !pid->items[5]->is(Kind::None)) fail("legacy storage views are not supported");
  return s;
}

// LONG1 / LONG4: n little-endian two's-complement bytes.
ValuePtr Machine::long_bytes(uint64_t n) {
  if (n > 8) fail("integer of " + std::to_string(n) + " bytes does not fit 64 bits");
  need(static_cast<size_t>(n));
  uint64_t v = 0;
  for (uint64_t i = 0; i < n; ++i) v |= uint64_t(p_[pos_ + i]) << (8 * i);
  if (n > 0 && n < 8 && (p_[pos_ + n - 1] & 0x80)) v |= ~uint64_t(0) << (8 * n);  // sign-extend
  pos_ += static_cast<size_t>(n);
  return integer(static_cast<int64_t>(v));
}

ValuePtr Machine::run() {
  while (true) {
    op_pos_ = pos_;
    need(1);
    op_ = p_[pos_];
    if (op_ == '.') {  // STOP
      ++pos_;
      if (stack_.size() != 1 || !marks_.empty()) fail("STOP with " + std::to_string(stack_.size()) + " values on the stack");
      return stack_.back();
    }
    step();
  }
}

void Machine::step() {
  ++pos_;
  switch (op_) {
    case 0x80: read_uint(1); break;                               // PROTO (any version is read alike)
    case 0x95: read_uint(8); break;                               // FRAME (framing is only a hint)
    case '(':                                                     // MARK
      if (marks_.size() >= limits_.max_depth) fail("nesting deeper than the limit");
      marks_.push_back(stack_.size());
      break;
    case '0': pop(); break;                                       // POP
    case '1': pop_mark(); break;                                  // POP_MARK
    case '2': push(top()); break;                                 // DUP
    case 'N': push(Value::make(Kind::None)); break;
    case 0x88: case 0x89: push(boolean(op_ == 0x88)); break;      // NEWTRUE, NEWFALSE
    case 'J': push(integer(static_cast<int32_t>(read_uint(4)))); break;   // BININT
    case 'K': push(integer(static_cast<int64_t>(read_uint(1)))); break;   // BININT1
    case 'M': push(integer(static_cast<int64_t>(read_uint(2)))); break;   // BININT2
    case 0x8a: push(long_bytes(read_uint(1))); break;             // LONG1
    case 0x8b: push(long_bytes(read_uint(4))); break;             // LONG4
    case 'I': case 'L': {                                         // INT, LONG (text)
      const std::string s = read_line();
      if (op_ == 'I' && (s == "00" || s == "01")) {               // protocol 0 booleans
        push(boolean(s == "01"));
        break;
      }
      int64_t v = 0;
      if (!parse_decimal_int(s, v)) fail("bad or too large integer '" + s.substr(0, 40) + "'");
      push(integer(v));
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
      if (!parse_float_text(s, v->real)) fail("bad float '" + s.substr(0, 40) + "'");
      push(v);
      break;
    }
    case 0x8c: push(str(read_bytes(read_uint(1)))); break;        // SHORT_BINUNICODE
    case 'X': push(str(read_bytes(read_uint(4)))); break;         // BINUNICODE
    case 0x8d: push(str(read_bytes(read_uint(8)))); break;        // BINUNICODE8
    case 'V': push(str(text_unicode(read_line()))); break;        // UNICODE (raw-unicode-escape)
    case 'T': push(str(read_bytes(read_uint(4)))); break;         // BINSTRING (Python 2 str)
    case 'U': push(str(read_bytes(read_uint(1)))); break;         // SHORT_BINSTRING
    case 'S': {                                                   // STRING (quoted repr)
      const std::string s = read_line();
      std::string out;
      if (!decode_quoted_string(s, out)) fail("bad quoted string");
      push(str(std::move(out)));
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
    case 'p': { const uint64_t k = memo_key_text(); memo_put(k, top()); break; }       // PUT
    case 'q': memo_put(read_uint(1), top()); break;               // BINPUT
    case 'r': memo_put(read_uint(4), top()); break;               // LONG_BINPUT
    case 0x94: memo_put(memo_.size(), top()); break;              // MEMOIZE
    case 'g': push(memo_get(memo_key_text())); break;             // GET
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
    case 'b': {                                                   // BUILD (__setstate__, never called)
      auto state = pop();
      ValuePtr& obj = top();
      if (obj->is(Kind::Object) || obj->is(Kind::Dict)) {
        // Dicts: the attributes of a dict subclass instance, e.g. a state dict's _metadata; they are
        // not items, and are kept apart from them
        obj->state = state;
      } else if (obj->is(Kind::Global)) {
        fail("BUILD on the class " + obj->module + "." + obj->name + " (would set class attributes)");
      }  // tensors and others: the state (e.g. a Parameter's requires_grad) is not needed
      break;
    }
    case 'Q': { auto pid = pop(); push(persistent(pid)); break; } // BINPERSID
    case 'P': fail("text persistent ids are not used by torch checkpoints");
    case 0x82: case 0x83: case 0x84: fail("extension registry codes (EXT1/2/4) are not supported");
    case 0x97: case 0x98: fail("out-of-band buffers (protocol 5) are not supported");
    default: fail("unknown opcode");
  }
}

void Machine::check_tree(const ValuePtr& root) {
  enum : uint8_t { kOpen = 1, kDone = 2 };
  std::unordered_map<const Value*, uint8_t> seen;
  std::vector<std::pair<const Value*, size_t>> path{{root.get(), 0}};  // node, next child
  seen[root.get()] = kOpen;
  while (!path.empty()) {
    auto& [node, next] = path.back();
    if (next == node->child_count()) {
      seen[node] = kDone;
      path.pop_back();
      continue;
    }
    const Value* c = node->child(next++).get();
    if (c == nullptr) continue;
    uint8_t& mark = seen[c];
    if (mark == kOpen) fail("the pickle builds a self-referencing structure");
    if (mark == kDone) continue;
    if (path.size() >= limits_.max_depth) fail("values nested deeper than the limit of " + std::to_string(limits_.max_depth));
    mark = kOpen;
    path.emplace_back(c, 0);
  }
}

}  // namespace

ValuePtr read_pickle(const uint8_t* data, size_t size, size_t& offset, const Limits& limits) {
  if (data == nullptr || offset >= size) throw PickleError("pickle: no data (empty or truncated file)");
  Machine m(data, size, offset, limits);
  try {
    ValuePtr v = m.run();
    m.check_tree(v);
    offset = m.position();
    return v;
  } catch (...) {
    m.drop_containers();
    throw;
  }
}

}  // namespace decayfw::engine::pickle
