// Hyper-parameters of a fairseq language model, read from a checkpoint's `cfg.model` or `args`.
//
// The reader flattens either source into name → text (fairseq's own field names, e.g.
// "decoder_embed_dim" → "1024"); LmConfig::from_fields applies fairseq's defaults for the named arch
// and rejects what the engine cannot run, naming the field. Shapes are verified later against the
// tensors (TransformerLm::load), so a config that disagrees with its weights is reported clearly.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace decayfw::engine {

using Fields = std::map<std::string, std::string>;

struct LmConfig {
  std::string arch;           // registered model name: "transformer_lm" or "decay_transformer_lm"
  bool decay = false;         // self-attention replaced by decaying fast weights
  int64_t vocab_size = 0;     // len(dictionary), padded like Dictionary.finalize
  int64_t padding_idx = 1;
  int64_t layers = 0;
  int64_t embed_dim = 0;      // decoder_embed_dim
  int64_t input_dim = 0;      // decoder_input_dim (embedding width before project_in_dim)
  int64_t output_dim = 0;     // decoder_output_dim (features before project_out_dim)
  int64_t ffn_dim = 0;
  int64_t heads = 0;
  bool normalize_before = false;
  bool final_layer_norm = false;  // derived: normalize_before && !no_decoder_final_norm (and decoder.version > 2)
  bool learned_positions = false;
  bool no_positions = false;
  bool layernorm_embedding = false;
  bool scale_embedding = true;
  int64_t max_target_positions = 1024;
  std::string activation = "relu";
  bool adaptive_input = false;
  std::vector<int64_t> adaptive_input_cutoff;
  double adaptive_input_factor = 4;
  std::vector<int64_t> adaptive_softmax_cutoff;  // empty: plain output projection
  double adaptive_softmax_factor = 4;
  bool tie_adaptive_weights = false;
  bool tie_adaptive_proj = false;
  bool share_input_output_embed = false;
  // decay layers (the plugin's fw_* fields)
  std::string fw_rule = "decay";
  int64_t fw_key_dim = 0;          // M (0 → head dim)
  std::string fw_feature_map = "auto";
  std::string fw_normalization = "none";
  bool scale_queries = true;

  int64_t head_dim() const { return embed_dim / heads; }
  int64_t key_dim() const { return fw_key_dim > 0 ? fw_key_dim : head_dim(); }
  std::string feature_map() const;  // "auto" resolved

  // `fields`: flattened cfg.model or args. Throws std::invalid_argument naming the field.
  static LmConfig from_fields(const Fields& fields, int64_t vocab_size);
  std::string summary() const;
};

}  // namespace decayfw::engine
