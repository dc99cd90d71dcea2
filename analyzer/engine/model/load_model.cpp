#include "model/load_model.h"

#include <filesystem>
#include <stdexcept>

namespace decayfw::engine {

namespace fs = std::filesystem;

namespace {

// The renames fairseq's upgrade_state_dict_named applies to old checkpoints: packed q/k/v
// (in_proj_weight/bias), numbered layer norms, embed_out.
void upgrade_state_dict(TensorMap& sd, int64_t layers) {
  for (int64_t i = 0; i < layers; ++i) {
    const std::string p = "decoder.layers." + std::to_string(i) + ".";
    for (const char* part : {"weight", "bias"}) {
      const std::string packed = p + "self_attn.in_proj_" + part;
      auto it = sd.find(packed);
      if (it != sd.end() && it->second.size(0) % 3 == 0) {
        auto chunks = it->second.chunk(3, 0);
        sd[p + "self_attn.q_proj." + part] = chunks[0];
        sd[p + "self_attn.k_proj." + part] = chunks[1];
        sd[p + "self_attn.v_proj." + part] = chunks[2];
        sd.erase(it);
      }
      const char* norms[][2] = {{"0", "self_attn_layer_norm"}, {"1", "encoder_attn_layer_norm"}, {"2", "final_layer_norm"}};
      for (const auto& n : norms) {
        auto old = sd.find(p + "layer_norms." + n[0] + "." + part);
        if (old != sd.end()) {
          sd[p + n[1] + "." + part] = old->second;
          sd.erase(old);
        }
      }
    }
  }
  auto out = sd.find("decoder.embed_out");
  if (out != sd.end() && !sd.count("decoder.output_projection.weight")) sd["decoder.output_projection.weight"] = out->second;
}

}  // namespace

std::string find_dictionary(const std::string& checkpoint_path) {
  const fs::path dir = fs::absolute(fs::path(checkpoint_path)).parent_path();
  for (const fs::path& p : {dir / "dict.txt", dir.parent_path() / "dict.txt", dir / "data-bin" / "dict.txt",
                            dir.parent_path() / "data-bin" / "dict.txt"}) {
    if (fs::is_regular_file(p)) return p.string();
  }
  return "";
}

LoadedModel load_model(const std::string& checkpoint_path, const std::string& dictionary_path, at::Device device,
                       bool as_attention) {
  if (!fs::is_regular_file(checkpoint_path)) {
    throw std::runtime_error("cannot open checkpoint '" + checkpoint_path + "' (" +
                             (fs::exists(checkpoint_path) ? "not a regular file" : "no such file") + ")");
  }
  // first: a file that is no checkpoint says so (before any complaint about its dictionary)
  return load_model(read_checkpoint(checkpoint_path), dictionary_path, device, as_attention);
}

LoadedModel load_model(const Checkpoint& ck, const std::string& dictionary_path, at::Device device,
                       bool as_attention) {
  const std::string& checkpoint_path = ck.path;
  LoadedModel m;
  m.checkpoint_path = checkpoint_path;
  m.dictionary_path = dictionary_path.empty() ? find_dictionary(checkpoint_path) : dictionary_path;
  if (m.dictionary_path.empty()) {
    throw std::runtime_error("no dict.txt beside '" + checkpoint_path + "' or in its parent folder; pass the "
                             "dictionary the model was trained with (--dict)");
  }
  m.dictionary = Dictionary::load(m.dictionary_path);
  m.format = ck.format;
  m.hparams_source = ck.hparams_source;
  if (ck.hparams.empty()) {
    throw std::invalid_argument("checkpoint '" + checkpoint_path + "' has neither cfg.model nor args: cannot tell "
                                "which model it is");
  }
  LmConfig cfg = LmConfig::from_fields(ck.hparams, m.dictionary.size());
  if (ck.decoder_version() <= 2) cfg.final_layer_norm = false;  // as fairseq's upgrade_state_dict_named
  if (as_attention && cfg.decay) {
    cfg.decay = false;
    cfg.arch = "transformer_lm (attention twin of " + cfg.arch + ")";
  }
  TensorMap state = ck.model;  // tensor handles only; the upgrade renames keys, not data
  upgrade_state_dict(state, cfg.layers);
  try {
    m.model = std::make_unique<TransformerLm>(cfg, state, device);
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(std::string(e.what()) + " [checkpoint '" + checkpoint_path + "', dictionary '" +
                                m.dictionary_path + "' with " + std::to_string(m.dictionary.size()) + " symbols]");
  }
  return m;
}

}  // namespace decayfw::engine
