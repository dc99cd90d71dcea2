#include "pickle_value.h"

#include <cstdio>

namespace decayfw::engine::pickle {
namespace {

using Kind = Value::Kind;

void take_children(Value& v, std::vector<ValuePtr>& out) {
  for (auto& i : v.items) out.push_back(std::move(i));
  v.items.clear();
  for (auto& e : v.entries) {
    out.push_back(std::move(e.first));
    out.push_back(std::move(e.second));
  }
  v.entries.clear();
  if (v.state) out.push_back(std::move(v.state));
}

// Appends v's text to out; false when v is not a scalar (or a list of scalars). Nesting is capped
// at a few levels (hyper-parameters are flat lists), output at about max_len characters.
bool append_scalar_text(const Value& v, std::string& out, size_t max_len, int depth) {
  switch (v.kind) {
    case Kind::None: out += "None"; return true;
    case Kind::Bool: out += v.boolean ? "True" : "False"; return true;
    case Kind::Int: out += std::to_string(v.integer); return true;
    case Kind::Float: {
      char buf[64];
      std::snprintf(buf, sizeof buf, "%.17g", v.real);
      out += buf;
      return true;
    }
    case Kind::String: out.append(v.text, 0, max_len); return true;
    case Kind::List:
    case Kind::Tuple: {
      if (v.items.empty() || depth >= 8) return false;
      for (size_t i = 0; i < v.items.size(); ++i) {
        if (out.size() > max_len) {
          out += "…";
          return true;
        }
        if (i) out += ",";
        if (!append_scalar_text(*v.items[i], out, max_len, depth + 1)) return false;
      }
      return true;
    }
    default: return false;
  }
}

}  // namespace

Value::~Value() {
  std::vector<ValuePtr> pending;
  take_children(*this, pending);
  while (!pending.empty()) {
    ValuePtr v = std::move(pending.back());
    pending.pop_back();
    if (v && v.use_count() == 1) take_children(*v, pending);
  }  // each value is destroyed here, already without children
}

const ValuePtr& Value::child(size_t i) const {
  if (i < items.size()) return items[i];
  i -= items.size();
  if (i < 2 * entries.size()) return i % 2 ? entries[i / 2].second : entries[i / 2].first;
  return state;
}

void Value::drop_children() {
  std::vector<ValuePtr> dropped;
  take_children(*this, dropped);
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
  for (auto it = entries.rbegin(); it != entries.rend(); ++it) {  // the last of repeated keys wins
    if (it->first->kind == Kind::String && it->first->text == key) return it->second;
  }
  return nullptr;
}

ValuePtr Value::attr(const std::string& key) const {
  if (kind == Kind::Dict) return get(key);
  if (kind == Kind::Object && state) return state->get(key);
  return nullptr;
}

std::string Value::scalar_text(size_t max_len) const {
  std::string s;
  if (!append_scalar_text(*this, s, max_len, 0)) return "";
  return s;
}

std::string Value::describe(size_t max_len) const {
  std::string s;
  switch (kind) {
    case Kind::Global: s = "class " + module + "." + name; break;
    case Kind::Object: s = module + "." + name + " object"; break;
    case Kind::Tensor: {
      s = std::string(c10::toString(tensor.dtype)) + " tensor [";
      for (size_t i = 0; i < tensor.sizes.size() && s.size() <= max_len; ++i) {
        s += (i ? ", " : "") + std::to_string(tensor.sizes[i]);
      }
      s += "]";
      break;
    }
    case Kind::Dict: s = "dict of " + std::to_string(entries.size()); break;
    case Kind::List: case Kind::Tuple: {
      s = scalar_text(max_len);
      if (s.empty()) s = std::string(kind_name(kind)) + " of " + std::to_string(items.size());
      break;
    }
    case Kind::Bytes: s = "bytes of " + std::to_string(text.size()); break;
    default: s = scalar_text(max_len);
  }
  if (s.size() > max_len) s = s.substr(0, max_len) + "…";
  return s;
}

}  // namespace decayfw::engine::pickle
