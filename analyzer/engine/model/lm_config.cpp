#include "lm_config.h"

#include <stdexcept>

namespace decayfw::engine {
namespace {

struct Reader {
  const Fields& f;
  bool has(const std::string& k) const {
    auto it = f.find(k);
    return it != f.end() && it->second != "None" && !it->second.empty();
  }
  std::string text(const std::string& k, const std::string& fallback) const { return has(k) ? f.at(k) : fallback; }
  int64_t integer(const std::string& k, int64_t fallback) const {
    if (!has(k)) return fallback;
    try {
      size_t used = 0;
      const int64_t v = std::stoll(f.at(k), &used);
      if (used != f.at(k).size()) throw std::invalid_argument("trailing text");
      return v;
    } catch (const std::exception&) {
      throw std::invalid_argument("checkpoint hyper-parameter '" + k + "' must be an integer, got '" + f.at(k) + "'");
    }
  }
  double real(const std::string& k, double fallback) const {
    if (!has(k)) return fallback;
    try {
      return std::stod(f.at(k));
    } catch (const std::exception&) {
      throw std::invalid_argument("checkpoint hyper-parameter '" + k + "' must be a number, got '" + f.at(k) + "'");
    }
  }
  bool flag(const std::string& k, bool fallback) const {
    if (!has(k)) return fallback;
    const std::string& v = f.at(k);
    if (v == "True" || v == "true" || v == "1") return true;
    if (v == "False" || v == "false" || v == "0") return false;
    throw std::invalid_argument("checkpoint hyper-parameter '" + k + "' must be a boolean, got '" + v + "'");
  }
  // fairseq's comma-separated cutoff lists ("20000,60000"), possibly as a Python list "[20000, 60000]".
  std::vector<int64_t> int_list(const std::string& k) const {
    std::vector<int64_t> out;
    if (!has(k)) return out;
    std::string cur;
    for (char c : f.at(k) + ",") {
      if (c >= '0' && c <= '9') {
        cur += c;
      } else if (c == ',' ) {
        if (!cur.empty()) out.push_back(std::stoll(cur));
        cur.clear();
      } else if (c != ' ' && c != '[' && c != ']' && c != '(' && c != ')') {
        throw std::invalid_argument("checkpoint hyper-parameter '" + k + "' must be a list of integers, got '" +
                                    f.at(k) + "'");
      }
    }
    return out;
  }
};

}  // namespace

std::string LmConfig::feature_map() const {
  if (fw_feature_map != "auto") return fw_feature_map;
  return key_dim() == head_dim() ? "none" : "linear";
}

LmConfig LmConfig::from_fields(const Fields& fields, int64_t vocab_size) {
  Reader r{fields};
  LmConfig c;
  c.arch = r.text("_name", r.text("arch", ""));
  // fairseq registers archs under the model's name; the model family decides the layer type.
  c.decay = c.arch.rfind("decay_transformer_lm", 0) == 0 || r.has("fw_key_dim");
  if (!c.decay && c.arch.rfind("transformer_lm", 0) != 0) {
    throw std::invalid_argument("checkpoint arch '" + c.arch +
                                "' is not supported: the engine runs fairseq's transformer_lm family and the "
                                "decayfw plugin's decay_transformer_lm family");
  }
  c.vocab_size = vocab_size;
  c.layers = r.integer("decoder_layers", 6);
  c.embed_dim = r.integer("decoder_embed_dim", 512);
  c.input_dim = r.integer("decoder_input_dim", c.embed_dim);
  c.output_dim = r.integer("decoder_output_dim", c.embed_dim);
  c.ffn_dim = r.integer("decoder_ffn_embed_dim", 2048);
  c.heads = r.integer("decoder_attention_heads", 8);
  c.normalize_before = r.flag("decoder_normalize_before", false);
  c.final_layer_norm = c.normalize_before && !r.flag("no_decoder_final_norm", false);
  c.learned_positions = r.flag("decoder_learned_pos", false);
  c.no_positions = r.flag("no_token_positional_embeddings", false);
  c.layernorm_embedding = r.flag("layernorm_embedding", false);
  c.scale_embedding = !r.flag("no_scale_embedding", false);
  c.max_target_positions = r.integer("max_target_positions", r.integer("tokens_per_sample", 1024));
  c.activation = r.text("activation_fn", "relu");
  c.adaptive_input = r.flag("adaptive_input", false);
  c.adaptive_input_cutoff = r.int_list("adaptive_input_cutoff");
  c.adaptive_input_factor = r.real("adaptive_input_factor", 4);
  c.adaptive_softmax_cutoff = r.int_list("adaptive_softmax_cutoff");
  c.adaptive_softmax_factor = r.real("adaptive_softmax_factor", 4);
  c.tie_adaptive_weights = r.flag("tie_adaptive_weights", false);
  c.tie_adaptive_proj = r.flag("tie_adaptive_proj", false);
  c.share_input_output_embed = r.flag("share_decoder_input_output_embed", false);
  if (r.flag("character_embeddings", false)) {
    throw std::invalid_argument("checkpoint uses character_embeddings, which the engine does not support");
  }
  for (const char* k : {"scale_attn", "scale_fc", "scale_heads", "scale_resids"}) {
    if (r.flag(k, false)) throw std::invalid_argument(std::string("checkpoint uses ") + k + ", which the engine does not support");
  }
  if (c.decay) {
    c.fw_rule = r.text("fw_rule", "decay");
    c.fw_key_dim = r.integer("fw_key_dim", 0);
    c.fw_feature_map = r.text("fw_feature_map", "auto");
    c.fw_normalization = r.text("fw_normalization", "none");
    c.scale_queries = !r.flag("fw_no_query_scaling", false);
    if (c.fw_rule != "decay") {
      throw std::invalid_argument("checkpoint has fw_rule '" + c.fw_rule +
                                  "'; the engine runs the decay rule (the others are ablation baselines, "
                                  "run them with fairseq)");
    }
    if (c.fw_normalization != "none" && c.fw_normalization != "attention") {
      throw std::invalid_argument("checkpoint has fw_normalization '" + c.fw_normalization +
                                  "', not one of none, attention");
    }
  }
  if (c.layers <= 0 || c.embed_dim <= 0 || c.heads <= 0 || c.ffn_dim <= 0) {
    throw std::invalid_argument("checkpoint hyper-parameters decoder_layers, decoder_embed_dim, "
                                "decoder_attention_heads and decoder_ffn_embed_dim must be positive");
  }
  if (c.embed_dim % c.heads != 0) {
    throw std::invalid_argument("checkpoint: decoder_embed_dim (" + std::to_string(c.embed_dim) +
                                ") is not divisible by decoder_attention_heads (" + std::to_string(c.heads) + ")");
  }
  for (const char* act : {"relu", "gelu", "gelu_accurate", "gelu_fast", "tanh", "linear"}) {
    if (c.activation == act) return c;
  }
  throw std::invalid_argument("checkpoint activation_fn '" + c.activation + "' is not supported");
}

std::string LmConfig::summary() const {
  std::string s = arch + ": " + std::to_string(layers) + " layers, dim " + std::to_string(embed_dim) + ", " +
                  std::to_string(heads) + " heads (head dim " + std::to_string(head_dim()) + "), ffn " +
                  std::to_string(ffn_dim) + ", vocab " + std::to_string(vocab_size);
  if (decay) {
    s += ", decay D = " + std::to_string(head_dim()) + " M = " + std::to_string(key_dim()) + " (feature map " +
         feature_map() + ", normalization " + fw_normalization + ")";
  }
  s += normalize_before ? ", pre-norm" : ", post-norm";
  s += learned_positions ? ", learned positions" : (no_positions ? ", no positions" : ", sinusoidal positions");
  if (adaptive_input) s += ", adaptive input";
  if (!adaptive_softmax_cutoff.empty()) s += ", adaptive softmax";
  return s;
}

}  // namespace decayfw::engine
