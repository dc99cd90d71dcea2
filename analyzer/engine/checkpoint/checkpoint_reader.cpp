#include "checkpoint_reader.h"

#include <caffe2/serialize/inline_container.h>
#include <caffe2/serialize/read_adapter_interface.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <unordered_map>
#include <unordered_set>

#include "pickle_machine.h"
#include "zip_directory.h"

namespace decayfw::engine {
namespace {

using pickle::Value;
using pickle::ValuePtr;
using Kind = Value::Kind;

// torch's legacy format starts with a pickle of the magic number 0x1950a86a20f9469cfc6c, in the
// protocol torch.save was given: PROTO n, maybe a FRAME, then LONG1 (protocol ≥ 2) or the text
// LONG of protocols 0/1, then STOP. Returns the offset after it, or 0 when the data does not start so.
size_t legacy_magic_end(const uint8_t* d, size_t n) {
  static const uint8_t kLong1[] = {0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19};
  static const char kText[] = "L119547037146038801333356L\n";
  const size_t text_len = sizeof kText - 1;
  size_t pos = 0;
  if (n >= 2 && d[0] == 0x80) pos = 2;
  if (pos < n && d[pos] == 0x95) pos += 9;
  if (pos + sizeof kLong1 <= n && std::memcmp(d + pos, kLong1, sizeof kLong1) == 0) {
    pos += sizeof kLong1;
  } else if (pos + text_len <= n && std::memcmp(d + pos, kText, text_len) == 0) {
    pos += text_len;
  } else {
    return 0;
  }
  return pos < n && d[pos] == '.' ? pos + 1 : 0;
}

using StorageLoader = std::function<at::Tensor(const pickle::TensorRef&)>;

bool mul_overflows(int64_t a, int64_t b, int64_t* out) { return __builtin_mul_overflow(a, b, out); }

// Replaces every Tensor reference in the tree by its data (a view of its storage).
void materialise(const ValuePtr& v, const StorageLoader& load, std::unordered_map<const Value*, bool>& seen,
                 int depth = 0) {
  if (!v || seen.count(v.get())) return;
  if (depth > 10000) throw CheckpointError("nesting too deep");
  seen[v.get()] = true;
  if (v->is(Kind::Storage)) {  // a storage saved as such (torch.save(storage), nested storages)
    v->data = load(v->tensor);
    return;
  }
  if (v->is(Kind::Tensor)) {
    const auto& r = v->tensor;
    at::Tensor storage = load(r);
    int64_t extent = 0;  // index of the last element + 1
    bool empty = false;
    for (size_t i = 0; i < r.sizes.size(); ++i) {
      if (r.sizes[i] < 0 || r.strides[i] < 0) throw CheckpointError("tensor with a negative size or stride");
      if (r.sizes[i] == 0) empty = true;
    }
    if (r.offset < 0) throw CheckpointError("tensor with a negative storage offset");
    if (!empty) {
      extent = r.offset + 1;
      for (size_t i = 0; i < r.sizes.size(); ++i) {
        int64_t span = 0;
        if (mul_overflows(r.sizes[i] - 1, r.strides[i], &span) || __builtin_add_overflow(extent, span, &extent)) {
          throw CheckpointError("tensor shape overflows");
        }
      }
      if (extent > storage.numel()) {
        throw CheckpointError("tensor [offset " + std::to_string(r.offset) + ", " + v->describe() + "] reaches element " +
                              std::to_string(extent) + " of storage '" + r.storage_key + "' which has " +
                              std::to_string(storage.numel()));
      }
    }
    v->data = empty ? at::empty(r.sizes, storage.options()) : storage.as_strided(r.sizes, r.strides, r.offset);
    return;
  }
  for (const auto& i : v->items) materialise(i, load, seen, depth + 1);
  for (const auto& e : v->entries) {
    materialise(e.first, load, seen, depth + 1);
    materialise(e.second, load, seen, depth + 1);
  }
  materialise(v->state, load, seen, depth + 1);
}

// omegaconf containers pickled as objects keep their values in `_content` / `_val`.
ValuePtr plain(const ValuePtr& v) {
  if (!v || !v->is(Kind::Object) || v->module.rfind("omegaconf", 0) != 0 || !v->state) return v;
  if (auto c = v->state->get("_content")) return plain(c);
  if (auto c = v->state->get("_val")) return plain(c);
  return v;
}

void flatten_fields(const ValuePtr& fields, Fields& out) {
  const ValuePtr d = plain(fields);
  const std::vector<std::pair<ValuePtr, ValuePtr>>* entries = nullptr;
  if (d->is(Kind::Dict)) entries = &d->entries;
  if (d->is(Kind::Object) && d->state && d->state->is(Kind::Dict)) entries = &d->state->entries;
  if (entries == nullptr) return;
  for (const auto& e : *entries) {
    if (!e.first->is(Kind::String)) continue;
    const ValuePtr val = plain(e.second);
    const std::string t = val->scalar_text();
    if (!t.empty() || val->is(Kind::String)) out[e.first->text] = t;
  }
}

Checkpoint interpret(TorchFile f, const std::string& name) {
  Checkpoint c;
  c.path = name;
  c.format = f.format;
  c.root = f.root;
  c.num_storages = f.num_storages;
  c.storage_bytes = f.storage_bytes;
  if (!c.root->is(Kind::Dict)) {
    throw CheckpointError("the file holds a " + c.root->describe() + ", not a fairseq checkpoint (a dict with 'model')");
  }
  ValuePtr model = plain(c.root->get("model"));
  if (!model || !model->is(Kind::Dict)) {
    throw CheckpointError("no 'model' state dict (top-level keys: " + [&] {
      std::string k;
      for (const auto& e : c.root->entries) k += (k.empty() ? "" : ", ") + e.first->scalar_text();
      return k;
    }() + ")");
  }
  for (const auto& e : model->entries) {
    if (e.first->is(Kind::String) && e.second->is(Kind::Tensor)) c.model[e.first->text] = e.second->data;
  }
  ValuePtr cfg = plain(c.root->get("cfg"));
  ValuePtr model_cfg = cfg ? plain(cfg->attr("model")) : nullptr;
  if (model_cfg && !model_cfg->is(Kind::None)) {
    flatten_fields(model_cfg, c.hparams);
    c.hparams_source = "cfg.model";
    // fields fairseq keeps outside cfg.model that the model reads
    if (auto task = cfg->attr("task")) {
      Fields t;
      flatten_fields(task, t);
      for (const char* k : {"tokens_per_sample", "max_target_positions"}) {
        if (t.count(k) && !c.hparams.count(k)) c.hparams[k] = t[k];
      }
    }
  } else if (ValuePtr args = c.root->get("args"); args && !args->is(Kind::None)) {
    flatten_fields(args, c.hparams);
    c.hparams_source = "args";
  }
  return c;
}

std::string read_file(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) throw CheckpointError("'" + path + "' is a directory, not a checkpoint file");
  std::ifstream in(path, std::ios::binary);
  if (!in) throw CheckpointError("cannot open '" + path + "' (missing or unreadable)");
  in.seekg(0, std::ios::end);
  const std::streamoff size = in.tellg();
  if (size < 0) throw CheckpointError("'" + path + "' is not a regular file");
  in.seekg(0);
  std::string bytes(static_cast<size_t>(size), '\0');  // one read: checkpoints can be gigabytes
  if (!in.read(bytes.data(), size)) throw CheckpointError("cannot read '" + path + "'");
  return bytes;
}

at::Tensor storage_from_bytes(const pickle::TensorRef& r, const void* data, size_t bytes) {
  const size_t es = c10::elementSize(r.dtype);
  if (r.storage_numel < 0 || static_cast<uint64_t>(r.storage_numel) > bytes / es ||
      bytes != static_cast<size_t>(r.storage_numel) * es) {
    throw CheckpointError("storage '" + r.storage_key + "' holds " + std::to_string(bytes) + " bytes, the pickle says " +
                          std::to_string(r.storage_numel) + " × " + std::to_string(es));
  }
  at::Tensor t = at::empty({r.storage_numel}, at::TensorOptions().dtype(r.dtype));
  if (bytes) std::memcpy(t.data_ptr(), data, bytes);
  return t;
}

TorchFile read_torch_format(const uint8_t* data, size_t size, bool allow_nested);

// Materialises the tensors. Storages of tensors that plain pickle wrote (torch.storage._load_from_bytes)
// are nested legacy torch.save files of one storage: each is read once (tensors sharing it stay
// shared) and may not nest further.
TorchFile finish(TorchFile f, const StorageLoader& load, bool allow_nested) {
  std::unordered_map<const std::string*, at::Tensor> nested;
  const StorageLoader load_any = [&](const pickle::TensorRef& r) -> at::Tensor {
    if (!r.serialized) return load(r);
    if (!allow_nested) throw CheckpointError("a storage nested inside a nested storage (torch.storage._load_from_bytes)");
    auto it = nested.find(r.serialized.get());
    if (it != nested.end()) return it->second;
    const auto* bytes = reinterpret_cast<const uint8_t*>(r.serialized->data());
    TorchFile inner = read_torch_format(bytes, r.serialized->size(), false);
    if (!inner.root->is(Kind::Storage) || !inner.root->data.defined()) {
      throw CheckpointError("torch.storage._load_from_bytes: the nested file holds a " + inner.root->describe() +
                            ", not a storage");
    }
    return nested[r.serialized.get()] = inner.root->data;
  };
  std::unordered_map<const Value*, bool> seen;
  materialise(f.root, load_any, seen);
  return f;
}

TorchFile read_legacy(const uint8_t* data, size_t size, size_t pos, bool allow_nested) {
  pickle::read_pickle(data, size, pos);                    // protocol version
  ValuePtr sys_info = pickle::read_pickle(data, size, pos);
  if (auto le = sys_info->get("little_endian"); le && le->is(Kind::Bool) && !le->boolean) {
    throw CheckpointError("big-endian legacy checkpoints are not supported");
  }
  TorchFile c;
  c.format = "legacy";
  c.root = pickle::read_pickle(data, size, pos);
  ValuePtr keys = pickle::read_pickle(data, size, pos);
  if (!keys->is(Kind::List)) throw CheckpointError("legacy format: the storage key list is missing");
  // Storages follow in key order, each as an int64 element count and the raw data; the element
  // size comes from the storage's type recorded in the object pickle.
  std::unordered_map<std::string, at::ScalarType> types;
  std::unordered_set<const Value*> seen;  // shared values are visited once (no exponential walks)
  std::function<void(const ValuePtr&)> collect = [&](const ValuePtr& v) {
    if (!v || !seen.insert(v.get()).second) return;
    if (v->is(Kind::Tensor) || v->is(Kind::Storage)) types[v->tensor.storage_key] = v->tensor.dtype;
    for (size_t i = 0; i < v->child_count(); ++i) collect(v->child(i));
  };
  collect(c.root);  // the pickle machine bounds the depth
  std::unordered_map<std::string, at::Tensor> storages;
  for (const auto& k : keys->items) {
    if (!k->is(Kind::String)) throw CheckpointError("legacy format: a storage key is not a string");
    if (size - pos < 8) throw CheckpointError("truncated: storage '" + k->text + "' is missing");
    int64_t numel = 0;
    std::memcpy(&numel, data + pos, 8);
    pos += 8;
    auto t = types.find(k->text);
    const at::ScalarType dt = t == types.end() ? at::kByte : t->second;
    const size_t es = c10::elementSize(dt);
    if (numel < 0 || static_cast<uint64_t>(numel) > (size - pos) / es) {
      throw CheckpointError("truncated: storage '" + k->text + "' claims " + std::to_string(numel) +
                            " elements, the file has " + std::to_string(size - pos) + " bytes left");
    }
    pickle::TensorRef r;
    r.storage_key = k->text;
    r.dtype = dt;
    r.storage_numel = numel;
    storages[k->text] = storage_from_bytes(r, data + pos, static_cast<size_t>(numel) * es);
    pos += static_cast<size_t>(numel) * es;
    c.num_storages += 1;
    c.storage_bytes += numel * static_cast<int64_t>(es);
  }
  return finish(std::move(c), [&](const pickle::TensorRef& r) {
    auto it = storages.find(r.storage_key);
    if (it == storages.end()) throw CheckpointError("storage '" + r.storage_key + "' is not in the file");
    if (it->second.scalar_type() != r.dtype) it->second = it->second.view(r.dtype);
    return it->second;
  }, allow_nested);
}

// LibTorch's archive reader over a memory buffer.
class BufferAdapter : public caffe2::serialize::ReadAdapterInterface {
 public:
  BufferAdapter(const uint8_t* data, size_t size) : data_(data), size_(size) {}
  size_t size() const override { return size_; }
  size_t read(uint64_t pos, void* buf, size_t n, const char* what = "") const override {
    (void)what;
    if (pos >= size_ || n == 0 || buf == nullptr) return 0;  // empty records come with a null buffer
    const size_t k = std::min<size_t>(n, size_ - pos);
    std::memcpy(buf, data_ + pos, k);
    return k;
  }

 private:
  const uint8_t* data_;
  size_t size_;
};

TorchFile read_zip(const uint8_t* data, size_t size, bool allow_nested) {
  std::vector<ZipRecord> records;
  if (read_zip_directory(data, size, records)) {
    if (const ZipRecord* r = implausible_zip_record(records, size)) {
      throw CheckpointError("zip record '" + r->name + "' claims " + std::to_string(r->uncompressed) +
                            " bytes, more than the " + std::to_string(size) + "-byte file can hold (corrupted)");
    }
  }
  std::unique_ptr<caffe2::serialize::PyTorchStreamReader> reader;
  try {
    reader = std::make_unique<caffe2::serialize::PyTorchStreamReader>(std::make_shared<BufferAdapter>(data, size));
  } catch (const c10::Error& e) {
    throw CheckpointError(std::string("not a readable torch zip archive (") + e.what_without_backtrace() + ")");
  }
  if (!reader->hasRecord("data.pkl")) throw CheckpointError("zip archive without data.pkl: not a torch.save file");
  TorchFile c;
  c.format = "zip";
  std::string pkl;
  try {
    auto rec = reader->getRecord("data.pkl");
    pkl.assign(static_cast<const char*>(std::get<0>(rec).get()), std::get<1>(rec));
  } catch (const c10::Error& e) {
    throw CheckpointError(std::string("data.pkl unreadable (") + e.what_without_backtrace() + ")");
  }
  size_t pos = 0;
  try {
    c.root = pickle::read_pickle(reinterpret_cast<const uint8_t*>(pkl.data()), pkl.size(), pos);
  } catch (const pickle::PickleError& e) {
    throw CheckpointError(std::string("data.pkl: ") + e.what());
  }
  std::unordered_map<std::string, at::Tensor> storages;
  TorchFile out = finish(std::move(c), [&](const pickle::TensorRef& r) {
    auto it = storages.find(r.storage_key);
    if (it != storages.end()) return it->second.scalar_type() == r.dtype ? it->second : it->second.view(r.dtype);
    const std::string record = "data/" + r.storage_key;
    if (r.storage_key.find('/') != std::string::npos || !reader->hasRecord(record)) {
      throw CheckpointError("storage '" + r.storage_key + "' is not in the archive");
    }
    at::Tensor t;
    try {
      auto rec = reader->getRecord(record);
      t = storage_from_bytes(r, std::get<0>(rec).get(), std::get<1>(rec));
    } catch (const c10::Error& e) {
      throw CheckpointError("storage '" + r.storage_key + "' unreadable (" + e.what_without_backtrace() + ")");
    }
    storages[r.storage_key] = t;
    return t;
  }, allow_nested);
  for (const auto& kv : storages) {
    out.num_storages += 1;
    out.storage_bytes += kv.second.numel() * kv.second.element_size();
  }
  return out;
}

}  // namespace

int64_t Checkpoint::decoder_version() const {
  auto it = model.find("decoder.version");
  if (it == model.end() || it->second.numel() == 0) return 1;  // fairseq's default when absent
  return static_cast<int64_t>(it->second.to(at::kDouble).flatten()[0].item<double>());
}

namespace {

TorchFile read_torch_format(const uint8_t* data, size_t size, bool allow_nested) {
  if (size == 0) throw CheckpointError("the file is empty");
  if (size >= 4 && std::memcmp(data, "PK\x03\x04", 4) == 0) return read_zip(data, size, allow_nested);
  if (const size_t magic_end = legacy_magic_end(data, size)) return read_legacy(data, size, magic_end, allow_nested);
  if (size > 262 && std::memcmp(data + 257, "ustar", 5) == 0) {
    throw CheckpointError("a tar archive (torch < 0.4 format) is not supported; re-save it with torch.save");
  }
  throw CheckpointError("not a torch checkpoint (neither the zip format nor the legacy pickle format)");
}

}  // namespace

TorchFile read_torch_bytes(const std::string& name, const uint8_t* data, size_t size) {
  try {
    return read_torch_format(data, size, true);
  } catch (const CheckpointError& e) {
    throw CheckpointError("'" + name + "': " + e.what());
  } catch (const pickle::PickleError& e) {
    throw CheckpointError("'" + name + "': " + e.what());
  } catch (const c10::Error& e) {
    throw CheckpointError("'" + name + "': " + e.what_without_backtrace());
  } catch (const std::bad_alloc&) {
    throw CheckpointError("'" + name + "': out of memory while reading (sizes in the file are implausible)");
  }
}

TorchFile read_torch_file(const std::string& path) {
  const std::string bytes = read_file(path);
  return read_torch_bytes(path, reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
}

Checkpoint read_checkpoint_bytes(const std::string& name, const uint8_t* data, size_t size) {
  TorchFile f = read_torch_bytes(name, data, size);
  try {
    return interpret(std::move(f), name);
  } catch (const CheckpointError& e) {
    throw CheckpointError("checkpoint '" + name + "': " + e.what());
  }
}

Checkpoint read_checkpoint(const std::string& path) {
  const std::string bytes = read_file(path);
  return read_checkpoint_bytes(path, reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
}

}  // namespace decayfw::engine
