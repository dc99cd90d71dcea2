// fairseq's transformer_lm and the decayfw plugin's decay_transformer_lm, in LibTorch.
//
// The same computation fairseq performs (embedding scale, project_in/out, sinusoidal or learned
// positions numbered from padding_idx + 1, pre/post-norm layers, adaptive input and adaptive
// softmax with tied weights, plain or shared output embeddings), batch-first, without dropout. The
// decay layers call the project's op through the dispatcher (decayfw::decay_fwd / decay_step),
// so there is no second implementation of the recurrence.
#pragma once

#include <ATen/ATen.h>

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "lm_config.h"

namespace decayfw::engine {

using TensorMap = std::map<std::string, at::Tensor>;

// Receives per-layer internals during a forward pass (the analyzer's gates and attention maps).
// Only layers/heads a consumer asks for are materialised (see analyzer/engine/observe/).
struct LayerObserver {
  virtual ~LayerObserver() = default;
  virtual bool wants(int64_t layer) const = 0;
  // Softmax attention: weights [B, H, Tq, Tk] (Tq queries at absolute positions start…start+Tq−1).
  virtual void on_attention(int64_t layer, int64_t start, const at::Tensor& weights) { (void)layer; (void)start; (void)weights; }
  // Decay: the layer's op inputs q, k [B, T, H, M], v, z [B, T, H, D], f [B, T, H, M] (z, f logits)
  // and the state before the segment [B, H, D, M] (or undefined for zeros).
  virtual void on_decay_inputs(int64_t layer, int64_t start, const at::Tensor& q, const at::Tensor& k,
                               const at::Tensor& v, const at::Tensor& z, const at::Tensor& f,
                               const at::Tensor& state) {
    (void)layer; (void)start; (void)q; (void)k; (void)v; (void)z; (void)f; (void)state;
  }
};

// Per-sequence decoding state: KV caches (attention) or fast-weight states (decay), and the number
// of tokens consumed.
struct DecodeState {
  int64_t length = 0;
  std::vector<at::Tensor> keys, values;  // attention: [B, H, capacity, hd], filled to `length`
  std::vector<at::Tensor> fw_states;     // decay: [B, H, D(+1), M] fp32
  // Bytes the state holds (KV cache up to `length`, or the fast-weight states).
  int64_t bytes() const;
};

class TransformerLm {
 public:
  // Builds the model from a state dict (names as fairseq saves them, "decoder.…") and checks every
  // tensor's shape against the config; throws std::invalid_argument naming the tensor and the
  // hyper-parameters it disagrees with.
  TransformerLm(LmConfig config, const TensorMap& state, at::Device device = at::kCPU);
  ~TransformerLm();
  TransformerLm(TransformerLm&&) noexcept;
  TransformerLm& operator=(TransformerLm&&) noexcept;

  const LmConfig& config() const { return config_; }
  int64_t parameter_count() const;
  at::Device device() const;

  // Decoder features [B, T, output_dim] of tokens [B, T] (no padding), optionally continuing from
  // `state` (which is then advanced) — the same whole-sequence pass fairseq's forward runs.
  at::Tensor features(const at::Tensor& tokens, DecodeState* state = nullptr, LayerObserver* observer = nullptr);
  // Log-probabilities [B, T, V] (adaptive softmax: fairseq's get_log_prob; else log_softmax of the
  // output projection).
  at::Tensor log_probs(const at::Tensor& features) const;
  // Logits [B, T, V] of the plain output projection; throws for adaptive-softmax models, whose
  // scores are only defined as log-probabilities.
  at::Tensor logits(const at::Tensor& features) const;
  // One token per sequence (tokens [B]) against `state`: O(1) for decay, O(context) for attention.
  // Returns features [B, output_dim].
  at::Tensor step(const at::Tensor& tokens, DecodeState& state, LayerObserver* observer = nullptr);

  DecodeState new_state(int64_t batch) const;

 private:
  struct Impl;
  LmConfig config_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace decayfw::engine
