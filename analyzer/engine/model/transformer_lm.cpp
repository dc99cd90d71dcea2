#include "transformer_lm.h"

#include "decayfw/dispatcher_ops.h"
#include "model/device.h"

#include <cmath>
#include <stdexcept>
#include <tuple>

namespace decayfw::engine {
namespace {

std::string shape_str(at::IntArrayRef s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

// Takes tensors out of a state dict with the shape the config implies, as fp32 on the device.
class Weights {
 public:
  Weights(const TensorMap& state, at::Device device) : state_(state), device_(device) {}

  bool has(const std::string& name) const { return state_.count(name) > 0; }

  at::Tensor get(const std::string& name, std::vector<int64_t> shape, const std::string& why) {
    auto it = state_.find(name);
    if (it == state_.end()) {
      throw std::invalid_argument("checkpoint has no tensor '" + name + "' (expected " + shape_str(shape) + " from " +
                                  why + ")");
    }
    if (it->second.sizes() != at::IntArrayRef(shape)) {
      throw std::invalid_argument("checkpoint tensor '" + name + "' has shape " + shape_str(it->second.sizes()) +
                                  " but the hyper-parameters (" + why + ") imply " + shape_str(shape));
    }
    at::Tensor t = it->second.to(device_, at::kFloat).contiguous();
    count_ += t.numel();
    return t;
  }
  // The first of several names present (tied weights may be saved under either).
  at::Tensor get_any(const std::vector<std::string>& names, std::vector<int64_t> shape, const std::string& why) {
    for (const auto& n : names) {
      if (has(n)) return get(n, shape, why);
    }
    return get(names.front(), shape, why);
  }
  at::Tensor optional(const std::string& name, std::vector<int64_t> shape, const std::string& why) {
    return has(name) ? get(name, shape, why) : at::Tensor();
  }
  int64_t count() const { return count_; }

 private:
  const TensorMap& state_;
  at::Device device_;
  int64_t count_ = 0;
};

struct Linear {
  at::Tensor w, b;
  at::Tensor operator()(const at::Tensor& x) const { return at::linear(x, w, b); }
};

struct LayerNorm {
  at::Tensor w, b;
  at::Tensor operator()(const at::Tensor& x) const { return at::layer_norm(x, {w.size(0)}, w, b, 1e-5); }
};

Linear linear(Weights& W, const std::string& prefix, int64_t in, int64_t out, const std::string& why,
              bool bias = true) {
  Linear l;
  l.w = W.get(prefix + ".weight", {out, in}, why);
  if (bias) l.b = W.get(prefix + ".bias", {out}, why);
  return l;
}

LayerNorm layer_norm(Weights& W, const std::string& prefix, int64_t dim, const std::string& why) {
  return {W.get(prefix + ".weight", {dim}, why), W.get(prefix + ".bias", {dim}, why)};
}

at::Tensor activate(const std::string& fn, const at::Tensor& x) {
  if (fn == "relu") return at::relu(x);
  if (fn == "gelu") return at::gelu(x);
  if (fn == "gelu_accurate" || fn == "gelu_fast") {
    return 0.5 * x * (1 + at::tanh(std::sqrt(2 / M_PI) * (x + 0.044715 * at::pow(x, 3))));
  }
  if (fn == "tanh") return at::tanh(x);
  return x;  // linear
}

// fairseq's SinusoidalPositionalEmbedding.get_embedding, row p = position p (padding row zero).
at::Tensor sinusoidal_table(int64_t rows, int64_t dim, int64_t padding_idx, at::Device device) {
  const int64_t half = dim / 2;
  const double scale = std::log(10000.0) / static_cast<double>(half - 1);
  at::Tensor freq = at::exp(at::arange(half, at::kFloat) * static_cast<float>(-scale));
  at::Tensor emb = at::arange(rows, at::kFloat).unsqueeze(1) * freq.unsqueeze(0);
  emb = at::cat({at::sin(emb), at::cos(emb)}, 1).view({rows, -1});
  if (dim % 2 == 1) emb = at::cat({emb, at::zeros({rows, 1})}, 1);
  emb[padding_idx].zero_();
  return emb.to(device);
}

using dispatcher::decay_fwd;  // the project's op, through the dispatcher (libdecayfw_ops)
using dispatcher::decay_step;

constexpr double kCarryLogit = 50.0;  // σ = 1 exactly in fp32: the normaliser row has no row gate

}  // namespace

struct TransformerLm::Impl {
  const LmConfig& c;
  at::Device device;
  int64_t params = 0;
  // embeddings
  at::Tensor embed;                                  // plain: [V, input_dim]
  std::vector<at::Tensor> band_emb, band_proj;       // adaptive input: per band [size, dim], [embed_dim, dim]
  std::vector<int64_t> input_cutoff;
  Linear project_in, project_out;
  at::Tensor positions;                              // sinusoidal table or learned weight
  LayerNorm layernorm_embedding, final_norm;
  // layers
  struct Layer {
    Linear q, k, v, out, fc1, fc2, gate_z, gate_f;
    LayerNorm attn_norm, ffn_norm;
    at::Tensor phi_w, phi_b;  // decay feature map [H, M, hd], [H, M]
  };
  std::vector<Layer> layers;
  // output
  at::Tensor out_proj;                               // plain [V, output_dim]
  std::vector<int64_t> softmax_cutoff;
  at::Tensor head_word, head_word_pre, head_class, head_full;
  std::vector<at::Tensor> tail_proj, tail_out;
  bool tail_proj_transposed = false;

  Impl(const LmConfig& config, const TensorMap& state, at::Device dev) : c(config), device(dev) {
    if (c.decay) {  // before any weight is copied: a clear refusal, not a dispatcher error at the first token
      check_op_on_device("decay_fwd", device);
      check_op_on_device("decay_step", device);
    }
    Weights W(state, device);
    const int64_t C = c.embed_dim, V = c.vocab_size;
    // -- embeddings
    if (c.adaptive_input) {
      input_cutoff = c.adaptive_input_cutoff;
      if (input_cutoff.empty()) throw std::invalid_argument("checkpoint: adaptive_input without adaptive_input_cutoff");
      if (V > input_cutoff.back()) input_cutoff.push_back(V);
      if (V != input_cutoff.back()) {
        throw std::invalid_argument("checkpoint: adaptive_input_cutoff " + shape_str(c.adaptive_input_cutoff) +
                                    " exceeds the dictionary size " + std::to_string(V));
      }
      for (size_t i = 0; i < input_cutoff.size(); ++i) {
        const int64_t prev = i ? input_cutoff[i - 1] : 0;
        const int64_t dim = static_cast<int64_t>(std::floor(c.input_dim / std::pow(c.adaptive_input_factor, i)));
        const std::string p = "decoder.embed_tokens.embeddings." + std::to_string(i);
        const std::string why = "adaptive input band " + std::to_string(i);
        band_emb.push_back(W.get(p + ".0.weight", {input_cutoff[i] - prev, dim}, why));
        band_proj.push_back(W.get(p + ".1.weight", {C, dim}, why));
      }
    } else {
      embed = W.get("decoder.embed_tokens.weight", {V, c.input_dim}, "dictionary size, decoder_input_dim");
    }
    const int64_t emb_out = c.adaptive_input ? C : c.input_dim;
    if (emb_out != C) project_in = linear(W, "decoder.project_in_dim", emb_out, C, "decoder_input_dim != embed_dim", false);
    if (!c.no_positions) {
      if (c.learned_positions) {
        const int64_t rows = c.max_target_positions + c.padding_idx + 1;
        positions = W.get("decoder.embed_positions.weight", {rows, C}, "max_target_positions, decoder_learned_pos");
      } else {
        positions = sinusoidal_table(c.max_target_positions + c.padding_idx + 1, C, c.padding_idx, device);
      }
    }
    if (c.layernorm_embedding) layernorm_embedding = layer_norm(W, "decoder.layernorm_embedding", C, "layernorm_embedding");
    // -- layers
    const int64_t H = c.heads, hd = c.head_dim(), M = c.key_dim();
    for (int64_t i = 0; i < c.layers; ++i) {
      const std::string p = "decoder.layers." + std::to_string(i) + ".";
      const std::string why = "decoder_embed_dim " + std::to_string(C);
      Layer L;
      L.q = linear(W, p + "self_attn.q_proj", C, C, why);
      L.k = linear(W, p + "self_attn.k_proj", C, C, why);
      L.v = linear(W, p + "self_attn.v_proj", C, C, why);
      L.out = linear(W, p + "self_attn.out_proj", C, C, why);
      L.attn_norm = layer_norm(W, p + "self_attn_layer_norm", C, why);
      L.fc1 = linear(W, p + "fc1", C, c.ffn_dim, "decoder_ffn_embed_dim " + std::to_string(c.ffn_dim));
      L.fc2 = linear(W, p + "fc2", c.ffn_dim, C, "decoder_ffn_embed_dim " + std::to_string(c.ffn_dim));
      L.ffn_norm = layer_norm(W, p + "final_layer_norm", C, why);
      if (c.decay) {
        const std::string dwhy = "heads " + std::to_string(H) + ", D " + std::to_string(hd) + ", M " + std::to_string(M);
        L.gate_z = linear(W, p + "self_attn.gate_z", C, H * hd, dwhy);
        L.gate_f = linear(W, p + "self_attn.gate_f", C, H * M, dwhy);
        if (c.feature_map() != "none") {
          L.phi_w = W.get(p + "self_attn.phi_weight", {H, M, hd}, dwhy + ", feature map " + c.feature_map());
          L.phi_b = W.get(p + "self_attn.phi_bias", {H, M}, dwhy + ", feature map " + c.feature_map());
        } else if (M != hd) {
          throw std::invalid_argument("checkpoint: fw_feature_map none needs fw_key_dim == head dim");
        }
      }
      layers.push_back(std::move(L));
    }
    if (c.final_layer_norm) {
      if (W.has("decoder.layer_norm.weight")) {
        final_norm = layer_norm(W, "decoder.layer_norm", C, "decoder_normalize_before");
      }
    }
    const int64_t O = c.output_dim;
    if (O != C) project_out = linear(W, "decoder.project_out_dim", C, O, "decoder_output_dim != embed_dim", false);
    // -- output
    if (!c.adaptive_softmax_cutoff.empty()) {
      build_adaptive_softmax(W, O);
    } else if (c.share_input_output_embed) {
      out_proj = W.get_any({"decoder.output_projection.weight", "decoder.embed_tokens.weight"}, {V, O},
                           "share_decoder_input_output_embed");
    } else {
      out_proj = W.get_any({"decoder.output_projection.weight", "decoder.embed_out"}, {V, O}, "dictionary size");
    }
    params = W.count();
  }

  void build_adaptive_softmax(Weights& W, int64_t in) {
    const int64_t V = c.vocab_size;
    softmax_cutoff = c.adaptive_softmax_cutoff;
    if (V > softmax_cutoff.back()) softmax_cutoff.push_back(V);
    if (V != softmax_cutoff.back()) {
      throw std::invalid_argument("checkpoint: adaptive_softmax_cutoff exceeds the dictionary size " + std::to_string(V));
    }
    const int64_t tails = static_cast<int64_t>(softmax_cutoff.size()) - 1;
    const std::string p = "decoder.adaptive_softmax.";
    const bool tied = c.tie_adaptive_weights && c.adaptive_input;
    if (tied) {
      const int64_t emb_dim = band_emb[0].size(1);
      if (in != emb_dim) {
        head_word_pre = W.get(p + "head.word_proj.0.weight", {emb_dim, in}, "tied adaptive softmax head");
        head_word = W.get_any({p + "head.word_proj.1.weight", "decoder.embed_tokens.embeddings.0.0.weight"},
                              {softmax_cutoff[0], emb_dim}, "tied adaptive softmax head");
      } else {
        head_word = W.get_any({p + "head.word_proj.weight", "decoder.embed_tokens.embeddings.0.0.weight"},
                              {softmax_cutoff[0], emb_dim}, "tied adaptive softmax head");
      }
      head_class = W.get(p + "head.class_proj.weight", {tails, in}, "adaptive softmax tails");
    } else {
      head_full = W.get(p + "head.weight", {softmax_cutoff[0] + tails, in}, "adaptive_softmax_cutoff");
    }
    tail_proj_transposed = tied && c.tie_adaptive_proj;
    for (int64_t i = 0; i < tails; ++i) {
      const std::string t = p + "tail." + std::to_string(i) + ".";
      const std::string band = "decoder.embed_tokens.embeddings." + std::to_string(i + 1) + ".";
      const std::string why = "adaptive softmax tail " + std::to_string(i);
      const int64_t osz = softmax_cutoff[i + 1] - softmax_cutoff[i];
      if (tied) {
        const int64_t dim = band_emb.at(i + 1).size(1);
        if (tail_proj_transposed) {
          tail_proj.push_back(W.get_any({t + "0.weight", band + "1.weight"}, {c.embed_dim, dim}, why));
        } else {
          tail_proj.push_back(W.get(t + "0.weight", {dim, c.embed_dim}, why));
        }
        tail_out.push_back(W.get_any({t + "2.weight", band + "0.weight"}, {osz, dim}, why));
      } else {
        const int64_t dim = static_cast<int64_t>(std::floor(in / std::pow(c.adaptive_softmax_factor, i + 1)));
        tail_proj.push_back(W.get(t + "0.weight", {dim, in}, why));
        tail_out.push_back(W.get(t + "2.weight", {osz, dim}, why));
      }
    }
  }

  at::Tensor embed_tokens(const at::Tensor& tokens) const {
    if (!c.adaptive_input) return at::embedding(embed, tokens);
    at::Tensor out = at::zeros({tokens.size(0), tokens.size(1), c.embed_dim}, embed_options());
    if (!device.is_cpu()) {
      // No host round trip per band (mask.any().item() and masked_select synchronise a GPU): every
      // band embeds every token (ids clamped into the band) and a select keeps the band's rows.
      for (size_t i = 0; i < input_cutoff.size(); ++i) {
        const int64_t prev = i ? input_cutoff[i - 1] : 0;
        at::Tensor mask = (tokens >= prev) & (tokens < input_cutoff[i]);
        at::Tensor ids = (tokens - prev).clamp(0, input_cutoff[i] - prev - 1);
        at::Tensor e = at::linear(at::embedding(band_emb[i], ids), band_proj[i]);
        out = at::where(mask.unsqueeze(-1), e, out);
      }
      return out;
    }
    for (size_t i = 0; i < input_cutoff.size(); ++i) {
      const int64_t prev = i ? input_cutoff[i - 1] : 0;
      at::Tensor mask = (tokens >= prev) & (tokens < input_cutoff[i]);
      if (!mask.any().item<bool>()) continue;
      at::Tensor ids = tokens.masked_select(mask) - prev;
      at::Tensor e = at::linear(at::embedding(band_emb[i], ids), band_proj[i]);
      out.masked_scatter_(mask.unsqueeze(-1), e);
    }
    return out;
  }
  at::TensorOptions embed_options() const { return at::TensorOptions().dtype(at::kFloat).device(device); }

  at::Tensor position_rows(int64_t start, int64_t count) {
    // fairseq numbers positions from padding_idx + 1; the sinusoidal table grows on demand.
    const int64_t last = c.padding_idx + start + count;
    if (!c.learned_positions && last >= positions.size(0)) {
      positions = sinusoidal_table(std::max(last + 1, 2 * positions.size(0)), c.embed_dim, c.padding_idx, device);
    }
    if (last >= positions.size(0)) {
      throw std::invalid_argument("sequence of " + std::to_string(start + count) +
                                  " tokens exceeds the model's learned positions (max_target_positions " +
                                  std::to_string(c.max_target_positions) + ")");
    }
    return positions.narrow(0, c.padding_idx + 1 + start, count);
  }

  at::Tensor attention(const Layer& L, int64_t li, const at::Tensor& x, DecodeState* st, LayerObserver* obs) {
    const int64_t B = x.size(0), T = x.size(1), H = c.heads, hd = c.head_dim();
    const double scaling = 1.0 / std::sqrt(static_cast<double>(hd));
    at::Tensor q = (L.q(x) * scaling).view({B, T, H, hd}).transpose(1, 2);
    at::Tensor k = L.k(x).view({B, T, H, hd}).transpose(1, 2);
    at::Tensor v = L.v(x).view({B, T, H, hd}).transpose(1, 2);
    int64_t P = 0;
    if (st != nullptr) {
      P = st->length;
      at::Tensor& kc = st->keys[li];
      at::Tensor& vc = st->values[li];
      if (!kc.defined() || kc.size(2) < P + T) {  // grow by doubling: amortised O(1) per token
        const int64_t cap = std::max<int64_t>({16, P + T, kc.defined() ? 2 * kc.size(2) : 0});
        at::Tensor nk = at::empty({B, H, cap, hd}, k.options()), nv = at::empty({B, H, cap, hd}, v.options());
        if (P > 0) {
          nk.narrow(2, 0, P).copy_(kc.narrow(2, 0, P));
          nv.narrow(2, 0, P).copy_(vc.narrow(2, 0, P));
        }
        kc = nk;
        vc = nv;
      }
      kc.narrow(2, P, T).copy_(k);
      vc.narrow(2, P, T).copy_(v);
      k = kc.narrow(2, 0, P + T);
      v = vc.narrow(2, 0, P + T);
    }
    at::Tensor scores = at::matmul(q, k.transpose(-1, -2));  // [B, H, T, P + T]
    if (T > 1) {
      at::Tensor future = at::ones({T, P + T}, at::TensorOptions().dtype(at::kBool).device(device)).triu(P + 1);
      scores = scores.masked_fill(future, -std::numeric_limits<float>::infinity());
    }
    at::Tensor w = at::softmax(scores, -1);
    if (obs != nullptr && obs->wants(li)) obs->on_attention(li, P, w);
    at::Tensor y = at::matmul(w, v).transpose(1, 2).reshape({B, T, H * hd});
    return L.out(y);
  }

  at::Tensor phi(const Layer& L, const at::Tensor& t) const {  // [B, T, H, hd] → [B, T, H, M]
    if (!L.phi_w.defined()) return t;
    at::Tensor out = at::einsum("bthd,hmd->bthm", {t, L.phi_w}) + L.phi_b;
    return c.feature_map() == "relu" ? at::relu(out) : out;
  }

  at::Tensor decay(const Layer& L, int64_t li, const at::Tensor& x, DecodeState* st, LayerObserver* obs) {
    const int64_t B = x.size(0), T = x.size(1), H = c.heads, hd = c.head_dim(), M = c.key_dim();
    const double scaling = c.scale_queries ? 1.0 / std::sqrt(static_cast<double>(hd)) : 1.0;
    at::Tensor q = phi(L, (L.q(x) * scaling).view({B, T, H, hd}));
    at::Tensor k = phi(L, L.k(x).view({B, T, H, hd}));
    at::Tensor v = L.v(x).view({B, T, H, hd});
    at::Tensor z = L.gate_z(x).view({B, T, H, hd});
    at::Tensor f = L.gate_f(x).view({B, T, H, M});
    const bool norm = c.fw_normalization == "attention";
    if (norm) {  // the normaliser is a value channel of ones whose row has no row gate
      v = at::cat({v, at::ones({B, T, H, 1}, v.options())}, -1);
      z = at::cat({z, at::full({B, T, H, 1}, kCarryLogit, z.options())}, -1);
    }
    at::Tensor state = st != nullptr ? st->fw_states[li] : at::Tensor();
    if (obs != nullptr && obs->wants(li)) obs->on_decay_inputs(li, st ? st->length : 0, q, k, v, z, f, state);
    at::Tensor y;
    if (st != nullptr && T == 1) {
      if (!state.defined()) state = at::zeros({B, H, v.size(-1), M}, x.options());
      y = decay_step(q.select(1, 0), k.select(1, 0), v.select(1, 0).contiguous(), z.select(1, 0).contiguous(),
                     f.select(1, 0), state).unsqueeze(1);
      st->fw_states[li] = state;
    } else {
      c10::optional<at::Tensor> s0;
      if (state.defined()) s0 = state;
      at::Tensor sT;
      std::tie(y, sT) = decay_fwd(q.contiguous(), k.contiguous(), v.contiguous(), z.contiguous(), f.contiguous(), s0);
      if (st != nullptr) st->fw_states[li] = sT;
    }
    if (norm) y = y.narrow(-1, 0, hd) / y.narrow(-1, hd, 1).clamp_min(1e-6);
    return L.out(y.reshape({B, T, H * hd}));
  }

  at::Tensor features(const at::Tensor& tokens_in, DecodeState* st, LayerObserver* obs) {
    // ids are checked on the host (where callers build them) before they go to the device: no
    // device round trip per call
    const at::Tensor host = tokens_in.to(at::kCPU, at::kLong);
    if (host.dim() != 2) throw std::invalid_argument("tokens must be [B, T], got " + shape_str(host.sizes()));
    if (host.numel() > 0 && (host.min().item<int64_t>() < 0 || host.max().item<int64_t>() >= c.vocab_size)) {
      throw std::invalid_argument("token ids must lie in [0, " + std::to_string(c.vocab_size) + ")");
    }
    const at::Tensor tokens = host.to(device);
    const int64_t start = st != nullptr ? st->length : 0, T = tokens.size(1);
    at::Tensor x = embed_tokens(tokens);
    if (c.scale_embedding) x = x * std::sqrt(static_cast<double>(c.embed_dim));
    if (project_in.w.defined()) x = project_in(x);
    if (positions.defined()) x = x + position_rows(start, T).unsqueeze(0);
    if (layernorm_embedding.w.defined()) x = layernorm_embedding(x);
    for (size_t i = 0; i < layers.size(); ++i) {
      const Layer& L = layers[i];
      const int64_t li = static_cast<int64_t>(i);
      at::Tensor r = x;
      at::Tensor h = c.normalize_before ? L.attn_norm(x) : x;
      h = c.decay ? decay(L, li, h, st, obs) : attention(L, li, h, st, obs);
      x = r + h;
      if (!c.normalize_before) x = L.attn_norm(x);
      r = x;
      h = c.normalize_before ? L.ffn_norm(x) : x;
      h = L.fc2(activate(c.activation, L.fc1(h)));
      x = r + h;
      if (!c.normalize_before) x = L.ffn_norm(x);
    }
    if (final_norm.w.defined()) x = final_norm(x);
    if (project_out.w.defined()) x = project_out(x);
    if (st != nullptr) st->length += T;
    return x;
  }

  at::Tensor log_probs(const at::Tensor& feat) const {
    if (softmax_cutoff.empty()) return at::log_softmax(at::linear(feat, out_proj), -1);
    const auto sizes = feat.sizes().vec();
    at::Tensor x = feat.reshape({-1, feat.size(-1)});
    at::Tensor head;
    if (head_full.defined()) {
      head = at::linear(x, head_full);
    } else {
      at::Tensor xw = head_word_pre.defined() ? at::linear(x, head_word_pre) : x;
      head = at::cat({at::linear(xw, head_word), at::linear(x, head_class)}, -1);
    }
    at::Tensor head_lp = at::log_softmax(head, -1);
    std::vector<at::Tensor> parts = {head_lp.narrow(-1, 0, softmax_cutoff[0])};
    for (size_t i = 0; i < tail_proj.size(); ++i) {
      at::Tensor h = tail_proj_transposed ? at::matmul(x, tail_proj[i]) : at::linear(x, tail_proj[i]);
      at::Tensor lp = at::log_softmax(at::linear(h, tail_out[i]), -1);
      parts.push_back(lp + head_lp.narrow(-1, softmax_cutoff[0] + static_cast<int64_t>(i), 1));
    }
    std::vector<int64_t> out_shape(sizes.begin(), sizes.end() - 1);
    out_shape.push_back(c.vocab_size);
    return at::cat(parts, -1).view(out_shape);
  }
};

int64_t DecodeState::bytes() const {
  int64_t total = 0;
  for (size_t i = 0; i < keys.size(); ++i) {
    if (keys[i].defined()) {
      const int64_t per_token = keys[i].size(0) * keys[i].size(1) * keys[i].size(3) * keys[i].element_size();
      total += 2 * per_token * length;
    }
  }
  for (const auto& s : fw_states) {
    if (s.defined()) total += s.numel() * s.element_size();
  }
  return total;
}

TransformerLm::TransformerLm(LmConfig config, const TensorMap& state, at::Device device)
    : config_(std::move(config)), impl_(std::make_unique<Impl>(config_, state, device)) {}
TransformerLm::~TransformerLm() = default;
TransformerLm::TransformerLm(TransformerLm&& o) noexcept : config_(std::move(o.config_)), impl_(std::move(o.impl_)) {}
TransformerLm& TransformerLm::operator=(TransformerLm&& o) noexcept {
  config_ = std::move(o.config_);
  impl_ = std::move(o.impl_);
  return *this;
}

int64_t TransformerLm::parameter_count() const { return impl_->params; }
at::Device TransformerLm::device() const { return impl_->device; }

at::Tensor TransformerLm::features(const at::Tensor& tokens, DecodeState* state, LayerObserver* observer) {
  at::NoGradGuard no_grad;
  return impl_->features(tokens, state, observer);
}

at::Tensor TransformerLm::log_probs(const at::Tensor& features) const {
  at::NoGradGuard no_grad;
  return impl_->log_probs(features);
}

at::Tensor TransformerLm::logits(const at::Tensor& features) const {
  if (!impl_->softmax_cutoff.empty()) {
    throw std::logic_error("logits: this model has an adaptive softmax; use log_probs");
  }
  at::NoGradGuard no_grad;
  return at::linear(features, impl_->out_proj);
}

at::Tensor TransformerLm::step(const at::Tensor& tokens, DecodeState& state, LayerObserver* observer) {
  if (tokens.dim() != 1) throw std::invalid_argument("step: tokens must be [B], got " + shape_str(tokens.sizes()));
  at::NoGradGuard no_grad;
  return impl_->features(tokens.unsqueeze(1), &state, observer).select(1, 0);
}

DecodeState TransformerLm::new_state(int64_t batch) const {
  (void)batch;
  DecodeState s;
  s.keys.resize(config_.layers);
  s.values.resize(config_.layers);
  s.fw_states.resize(config_.layers);
  return s;
}

}  // namespace decayfw::engine
