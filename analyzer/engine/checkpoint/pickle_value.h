// Values a checkpoint's pickle can hold, built without executing anything.
//
// Plain Python values map to their kinds; a tensor is a reference into a storage (materialised
// after the storages are read); any other class instance is an Object recording its class as
// (module, name), its constructor arguments and its state, so argparse.Namespace args, omegaconf
// containers and numpy scalars are all readable without running their code.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace decayfw::engine::pickle {

// A malformed, hostile or unsupported pickle.
struct PickleError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct Value;
using ValuePtr = std::shared_ptr<Value>;

// A tensor as the pickle describes it: a view of storage `key`.
struct TensorRef {
  std::string storage_key;
  at::ScalarType dtype = at::kFloat;
  int64_t storage_numel = 0;  // elements the pickle says the storage has
  int64_t offset = 0;
  std::vector<int64_t> sizes, strides;
  // torch.storage._load_from_bytes (tensors written by plain pickle): the storage as a nested
  // legacy torch.save file, read by the checkpoint reader; dtype and numel come from it.
  std::shared_ptr<const std::string> serialized;
};

struct Value {
  enum class Kind { None, Bool, Int, Float, String, Bytes, List, Tuple, Dict, Global, Object, Storage, Tensor, Mark };
  Kind kind = Kind::None;
  bool boolean = false;
  int64_t integer = 0;
  double real = 0;
  std::string text;                                   // String (UTF-8), Bytes
  std::vector<ValuePtr> items;                        // List, Tuple; Object: constructor args
  std::vector<std::pair<ValuePtr, ValuePtr>> entries; // Dict (insertion order)
  std::string module, name;                           // Global, Object: the class
  ValuePtr state;                                     // Object, Dict: what BUILD set (attributes)
  TensorRef tensor;                                   // Storage (dtype, key, numel) and Tensor
  at::Tensor data;                                    // Tensor, once materialised

  Value() = default;
  Value(const Value&) = default;
  Value& operator=(const Value&) = default;
  // Releases children without recursion: a hostile pickle can nest values a million deep, and
  // the default member-wise destruction would overflow the stack.
  ~Value();

  static ValuePtr make(Kind k) {
    auto v = std::make_shared<Value>();
    v->kind = k;
    return v;
  }
  bool is(Kind k) const { return kind == k; }
  // Dict lookup by string key; null when absent or not a dict.
  ValuePtr get(const std::string& key) const;
  // Object or Dict attribute: Namespace fields live in the Object's state dict.
  ValuePtr attr(const std::string& key) const;
  // Short, single-line description for error messages and `decayfw inspect`.
  std::string describe(size_t max_len = 80) const;
  // Scalars as text the way Python's str() prints them (True/False/None, ints, floats, strings);
  // lists as "a,b,c". Empty for containers that are not lists of scalars. Stops after about
  // max_len characters, so shared or deeply nested lists cannot make it run away.
  std::string scalar_text(size_t max_len = 1 << 16) const;

  // Children in a fixed order (items, then dict keys and values, then state), for tree walks.
  size_t child_count() const { return items.size() + 2 * entries.size() + (state ? 1 : 0); }
  const ValuePtr& child(size_t i) const;
  // Empties this value's containers (used to break reference cycles of a rejected pickle).
  void drop_children();
};

const char* kind_name(Value::Kind k);

}  // namespace decayfw::engine::pickle
