// Opens fairseq checkpoint files natively: the zip format of torch >= 1.6 (through LibTorch's own
// archive reader, caffe2::serialize::PyTorchStreamReader) and the legacy format of older torch
// (magic, protocol and system-info pickles, the object pickle, the storage-key list, then each
// storage as an int64 element count and raw little-endian data). The pickles go through the safe
// pickle machine (pickle_machine.h), so nothing in the file is executed.
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <map>
#include <string>

#include "model/lm_config.h"
#include "pickle_value.h"

namespace decayfw::engine {

struct CheckpointError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct Checkpoint {
  std::string path;
  std::string format;                       // "zip" or "legacy"
  pickle::ValuePtr root;                    // the whole saved object, tensors materialised
  std::map<std::string, at::Tensor> model;  // root["model"]: the state dict (tied weights share storage)
  Fields hparams;                           // cfg.model (or args) flattened to name → text
  std::string hparams_source;               // "cfg.model" or "args"
  int64_t num_storages = 0;
  int64_t storage_bytes = 0;

  // fairseq's decoder.version buffer (≤ 2: written before the final layer norm existed).
  int64_t decoder_version() const;
};

// Any torch.save file: the saved object with its tensors materialised (no fairseq interpretation).
struct TorchFile {
  std::string format;  // "zip" or "legacy"
  pickle::ValuePtr root;
  int64_t num_storages = 0;
  int64_t storage_bytes = 0;
};
TorchFile read_torch_file(const std::string& path);
TorchFile read_torch_bytes(const std::string& name, const uint8_t* data, size_t size);

// Reads a checkpoint file; throws CheckpointError naming the file and what is wrong (missing,
// empty, truncated, not a torch file, malformed pickle, code-running pickle, tensors out of their
// storage, no "model" state dict).
Checkpoint read_checkpoint(const std::string& path);

// The same from memory (the legacy format, or a zip) — used by the fuzzer and tests.
Checkpoint read_checkpoint_bytes(const std::string& name, const uint8_t* data, size_t size);

}  // namespace decayfw::engine
