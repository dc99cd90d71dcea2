#include "pickle_calls.h"

#include <cstring>
#include <set>
#include <unordered_map>

namespace decayfw::engine::pickle {
namespace {

using Kind = Value::Kind;

[[noreturn]] void bad(const std::string& what) { throw PickleError(what); }

int64_t as_int(const ValuePtr& v, const std::string& what) {
  if (v->is(Kind::Int)) return v->integer;
  if (v->is(Kind::Bool)) return v->boolean ? 1 : 0;
  bad(what + " must be an integer, got " + kind_name(v->kind));
}

std::vector<int64_t> int_tuple(const ValuePtr& v, const std::string& what) {
  if (!v->is(Kind::Tuple) && !v->is(Kind::List)) bad(what + " must be a tuple, got " + kind_name(v->kind));
  std::vector<int64_t> out;
  for (const auto& i : v->items) out.push_back(as_int(i, what));
  return out;
}

ValuePtr make_tuple(std::vector<ValuePtr> items) {
  auto t = Value::make(Kind::Tuple);
  t->items = std::move(items);
  return t;
}

ValuePtr make_bytes(std::string b) {
  auto v = Value::make(Kind::Bytes);
  v->text = std::move(b);
  return v;
}

// UTF-8 text whose code points are all < 256 → those bytes (how protocols 0–2 encode `bytes`:
// _codecs.encode(latin-1 text, 'latin1')).
std::string utf8_to_latin1(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      out += static_cast<char>(c);
    } else if ((c == 0xc2 || c == 0xc3) && i + 1 < s.size()) {
      out += static_cast<char>(((c & 0x03) << 6) | (static_cast<unsigned char>(s[++i]) & 0x3f));
    } else {
      bad("_codecs.encode: text is not latin-1");
    }
  }
  return out;
}

// torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks[, metadata])
ValuePtr rebuild_tensor(const std::string& fn, const std::vector<ValuePtr>& a) {
  if (a.size() < 4 || !a[0]->is(Kind::Storage)) bad(fn + ": expected (storage, offset, size, stride, ...)");
  auto t = Value::make(Kind::Tensor);
  t->tensor = a[0]->tensor;
  t->tensor.offset = as_int(a[1], "storage offset");
  t->tensor.sizes = int_tuple(a[2], "tensor size");
  t->tensor.strides = int_tuple(a[3], "tensor stride");
  if (t->tensor.sizes.size() != t->tensor.strides.size()) bad(fn + ": tensor size and stride have different ranks");
  return t;
}

// numpy.core.multiarray.scalar(dtype, bytes): fairseq keeps numpy numbers in extra_state/metrics.
// dtype is recorded as Object numpy.dtype with args ('f8', False, True) and state (3, '<', ...).
ValuePtr numpy_scalar(const std::vector<ValuePtr>& a) {
  if (a.size() < 2 || !a[0]->is(Kind::Object) || a[0]->name != "dtype" || a[0]->items.empty() ||
      !a[0]->items[0]->is(Kind::String) || !a[1]->is(Kind::Bytes)) {
    return nullptr;
  }
  const std::string& code = a[0]->items[0]->text;
  const ValuePtr& st = a[0]->state;
  const bool little = !st || !st->is(Kind::Tuple) || st->items.size() < 2 || !st->items[1]->is(Kind::String) ||
                      st->items[1]->text != ">";
  const std::string& b = a[1]->text;
  if (!little || code.size() != 2 || code[1] < '1' || code[1] > '8' || b.size() != static_cast<size_t>(code[1] - '0')) {
    return nullptr;
  }
  uint64_t bits = 0;
  std::memcpy(&bits, b.data(), b.size());  // x86/ARM: little-endian, like the data
  switch (code[0]) {
    case 'f': {
      auto v = Value::make(Kind::Float);
      if (b.size() == 8) std::memcpy(&v->real, &bits, 8);
      else if (b.size() == 4) { float f; std::memcpy(&f, &bits, 4); v->real = f; }
      else return nullptr;
      return v;
    }
    case 'i': case 'u': {
      if (b.size() != 1 && b.size() != 2 && b.size() != 4 && b.size() != 8) return nullptr;
      auto v = Value::make(Kind::Int);
      const int shift = 64 - 8 * static_cast<int>(b.size());
      v->integer = code[0] == 'i' ? static_cast<int64_t>(bits << shift) >> shift : static_cast<int64_t>(bits);
      return v;
    }
    case 'b': {
      if (b.size() != 1) return nullptr;
      auto v = Value::make(Kind::Bool);
      v->boolean = bits != 0;
      return v;
    }
    default: return nullptr;
  }
}

ValuePtr record(const std::string& module, const std::string& name, std::vector<ValuePtr> args) {
  auto o = Value::make(Kind::Object);
  o->module = module;
  o->name = name;
  o->items = std::move(args);
  return o;
}

}  // namespace

std::string canonical_module(const std::string& module) {
  if (module == "__builtin__") return "builtins";
  if (module == "copy_reg") return "copyreg";
  return module;
}

bool is_code_execution(const std::string& module_name, const std::string& name) {
  static const std::set<std::string> modules = {
      "os", "posix", "nt", "subprocess", "_posixsubprocess", "sys", "shutil", "socket", "importlib", "pickle",
      "_pickle", "marshal", "ctypes", "pty", "runpy", "code", "codeop", "webbrowser", "commands", "popen2",
      "multiprocessing", "signal", "tempfile", "pathlib", "io", "_io", "pdb", "bdb", "timeit", "platform",
      "asyncio", "threading", "_thread", "urllib", "http", "ftplib", "smtplib", "telnetlib", "zipimport"};
  static const std::set<std::string> builtins = {
      "eval", "exec", "execfile", "compile", "open", "file", "getattr", "setattr", "delattr", "__import__",
      "globals", "locals", "vars", "input", "breakpoint", "exit", "quit", "help", "memoryview", "type",
      "object", "classmethod", "staticmethod", "property", "super", "apply", "reload", "__loader__"};
  // operator.attrgetter/methodcaller and functools.partial are the usual gadgets to reach methods.
  static const std::set<std::string> gadgets = {"operator.attrgetter", "operator.methodcaller",
                                                "functools.partial", "torch.load", "torch.hub.load"};
  const std::string module = canonical_module(module_name);
  const std::string top = module.substr(0, module.find('.'));
  if (modules.count(top)) return true;
  if (module == "builtins" && builtins.count(name)) return true;
  return gadgets.count(module + "." + name) > 0;
}

ValuePtr interpret_call(const ValuePtr& callable, const ValuePtr& args) {
  if (!args->is(Kind::Tuple)) bad(std::string("call arguments must be a tuple, got ") + kind_name(args->kind));
  const auto& a = args->items;
  if (!callable->is(Kind::Global)) {  // e.g. calling the result of another call: record it
    return record(callable->module, callable->name.empty() ? "<call>" : callable->name, a);
  }
  const std::string m = canonical_module(callable->module);
  const std::string& n = callable->name;
  if (is_code_execution(m, n)) {
    bad("refusing to run " + callable->module + "." + n +
        " from the file: it tries to execute code, so it is not a model checkpoint");
  }
  if (m == "torch._utils" && (n == "_rebuild_tensor_v2" || n == "_rebuild_tensor")) return rebuild_tensor(n, a);
  if (m == "torch._utils" && (n == "_rebuild_parameter" || n == "_rebuild_parameter_with_state")) {
    if (a.empty() || !a[0]->is(Kind::Tensor)) bad(n + ": expected a tensor");
    return a[0];
  }
  if (m == "torch.storage" && n == "_load_from_bytes") {
    if (a.size() != 1 || !a[0]->is(Kind::Bytes)) bad("_load_from_bytes: expected one bytes argument");
    auto s = Value::make(Kind::Storage);
    s->tensor.storage_key = "<nested torch.save>";
    s->tensor.serialized = std::make_shared<const std::string>(a[0]->text);
    return s;
  }
  if ((m == "collections" && n == "OrderedDict") || (m == "builtins" && n == "dict")) {
    auto d = Value::make(Kind::Dict);
    if (!a.empty() && (a[0]->is(Kind::List) || a[0]->is(Kind::Tuple))) {
      for (const auto& pair : a[0]->items) {
        if (pair->is(Kind::Tuple) && pair->items.size() == 2) d->entries.emplace_back(pair->items[0], pair->items[1]);
      }
    } else if (!a.empty() && a[0]->is(Kind::Dict)) {
      d->entries = a[0]->entries;
    }
    return d;
  }
  if ((m == "torch" && n == "Size") || (m == "builtins" && n == "tuple")) {
    if (!a.empty() && a[0]->is(Kind::Tuple)) return a[0];  // immutable: shared, not copied
    return make_tuple(a.empty() ? std::vector<ValuePtr>{} : a[0]->items);
  }
  if (m == "builtins" && (n == "set" || n == "frozenset" || n == "list")) {
    auto l = Value::make(Kind::List);
    if (!a.empty()) l->items = a[0]->items;
    return l;
  }
  if (m == "builtins" && (n == "bytes" || n == "bytearray")) {  // bytes() / bytearray(b'...')
    if (a.empty()) return make_bytes("");
    if (a[0]->is(Kind::Bytes)) return a[0];
    if (a[0]->is(Kind::String)) return make_bytes(utf8_to_latin1(a[0]->text));  // bytearray(text, 'latin-1')
  }
  if (m == "_codecs" && n == "encode" && !a.empty() && a[0]->is(Kind::String)) {
    const bool latin1 = a.size() < 2 || (a[1]->is(Kind::String) && (a[1]->text == "latin1" || a[1]->text == "latin-1"));
    return make_bytes(latin1 ? utf8_to_latin1(a[0]->text) : a[0]->text);
  }
  // Protocols 0 and 1 build instances as copyreg._reconstructor(cls, base, state); record the class.
  if (m == "copyreg" && n == "_reconstructor" && !a.empty() && a[0]->is(Kind::Global)) {
    return record(a[0]->module, a[0]->name, {});
  }
  if ((m == "numpy.core.multiarray" || m == "numpy._core.multiarray") && n == "scalar") {
    if (ValuePtr v = numpy_scalar(a)) return v;
  }
  return record(m, n, a);
}

at::ScalarType storage_dtype(const std::string& c) {
  static const std::unordered_map<std::string, at::ScalarType> types = {
      {"FloatStorage", at::kFloat},   {"DoubleStorage", at::kDouble}, {"HalfStorage", at::kHalf},
      {"BFloat16Storage", at::kBFloat16}, {"LongStorage", at::kLong}, {"IntStorage", at::kInt},
      {"ShortStorage", at::kShort},   {"CharStorage", at::kChar},     {"ByteStorage", at::kByte},
      {"BoolStorage", at::kBool},     {"ComplexFloatStorage", at::kComplexFloat},
      {"ComplexDoubleStorage", at::kComplexDouble}, {"UntypedStorage", at::kByte}};
  auto it = types.find(c);
  if (it == types.end()) throw PickleError("unknown storage type '" + c + "'");
  return it->second;
}

}  // namespace decayfw::engine::pickle
