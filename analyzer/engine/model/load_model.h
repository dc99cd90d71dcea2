// A checkpoint + dictionary → a ready TransformerLm: the one entry point the CLI, the analyzer and
// the tests use.
#pragma once

#include <memory>
#include <string>

#include "checkpoint/checkpoint_reader.h"
#include "model/transformer_lm.h"
#include "text/dictionary.h"

namespace decayfw::engine {

struct LoadedModel {
  std::string checkpoint_path, dictionary_path, format, hparams_source;
  Dictionary dictionary;
  std::unique_ptr<TransformerLm> model;
};

// dict.txt is taken from `dictionary_path`, else found beside the checkpoint or in its parent
// folder (fairseq's layout: DATA/dict.txt and checkpoints under DATA/../save). Throws
// std::runtime_error / std::invalid_argument with the reason (file, tensor, hyper-parameter).
// `as_attention`: build a decay checkpoint as softmax attention of the same shape (its q/k/v/out
// weights, no gates) — the attention twin the analyzer races a decay model against when no base is
// loaded (for speed and memory; its outputs are not a trained model's).
LoadedModel load_model(const std::string& checkpoint_path, const std::string& dictionary_path = "",
                       at::Device device = at::kCPU, bool as_attention = false);
// The same from a checkpoint already read (e.g. by `decayfw inspect`, which also lists its tensors).
LoadedModel load_model(const Checkpoint& checkpoint, const std::string& dictionary_path = "",
                       at::Device device = at::kCPU, bool as_attention = false);

// Where load_model looks for dict.txt when none is given; empty when not found.
std::string find_dictionary(const std::string& checkpoint_path);

}  // namespace decayfw::engine
