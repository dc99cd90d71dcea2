// Records what a model does inside, for the analyzer and `decayfw gates`: for the decay layers and
// heads asked for, per token, σ(z_t) (row gates, D), σ(f_t) (column gates, M), the state's
// Frobenius norm ‖S_t‖ and the implied attention map — how much token j contributes to output t:
//     y_t = Σ_{j≤t} (A_{j,t} ⊙ v_j) (k_jᵀ (B_{j,t} ⊙ q_t)),  A_{j,t} = Π_{s=j+1..t} σ(z_s), B likewise with σ(f)
// (decay rule with the elementwise gates of the paper), reported as ‖contribution_{t,j}‖ normalised
// over j; for softmax-attention models the attention weights. Memory is bounded: only the
// requested layers and heads are kept, and maps only for the first `max_map_tokens` tokens.
#pragma once

#include <ATen/ATen.h>

#include <map>
#include <set>
#include <utility>

#include "model/transformer_lm.h"

namespace decayfw::engine {

// CPU tensors whatever the model's device.
struct HeadRecord {
  at::Tensor sigma_z;      // [T, D] decay: row gates σ(z_t)
  at::Tensor sigma_f;      // [T, M] decay: column gates σ(f_t)
  at::Tensor state_norm;   // [T]    decay: ‖S_t‖_F after token t
  at::Tensor map;          // [Tm, Tm] decay: implied attention (rows sum to 1); attention: its weights
};

class GateRecorder : public LayerObserver {
 public:
  // Empty sets mean "all".
  GateRecorder(std::set<int64_t> layers, std::set<int64_t> heads, int64_t max_map_tokens = 1024);

  bool wants(int64_t layer) const override;
  void on_attention(int64_t layer, int64_t start, const at::Tensor& weights) override;
  void on_decay_inputs(int64_t layer, int64_t start, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                       const at::Tensor& z, const at::Tensor& f, const at::Tensor& state) override;

  // (layer, head) → record, for the first sequence of the batch.
  const std::map<std::pair<int64_t, int64_t>, HeadRecord>& records() const { return records_; }

 private:
  std::set<int64_t> layers_, heads_;
  int64_t max_map_tokens_;
  std::map<std::pair<int64_t, int64_t>, HeadRecord> records_;
  bool head_wanted(int64_t h) const { return heads_.empty() || heads_.count(h); }
};

// The memory half-life of every state element, −ln 2 / ln G, from the gate product G = σ(z)σ(f)ᵀ
// averaged over tokens in log space: [D, M] tokens (inf where the gate is 1).
at::Tensor half_life(const HeadRecord& r);

// The share of (16-token block, channel) pairs whose gates σ [T, X] decay by more than e^-40 inside the
// block (−Σ log σ over its last 15 tokens > 40; blocks from token 0, the last one padded with gates
// of 1): the diagonal blocks the CUDA chunk kernels take per element in fp32 instead of on tensor
// cores (kernels/cuda/chunk/loading.h, "wide" columns). 0 for an empty record.
double per_element_block_share(const at::Tensor& sigma, int64_t block = 16, double bound = 40.0);

// The share of (chunk, row tile) pairs that the CUDA chunk form takes whole (one tensor-core product over the chunk,
// no sub-chunks, Tiles::chunk_narrow): every column gate σ(f) [T, M] and every row gate σ(z) [T, D] of the tile's
// `tile_rows` rows decays by at most e^-bound over the chunk (−Σ log σ over its `chunk` tokens ≤ bound; chunks from
// token 0, the last one padded with gates of 1). The CUDA kernels' chunk is 64 tokens for M ≤ 64 and 32 above
// (decay_chunk_configs.h), their row tile 64 rows. The rest of the chunks run per 16-token sub-chunk. 0 for an
// empty record.
double whole_chunk_share(const at::Tensor& sigma_z, const at::Tensor& sigma_f, int64_t chunk = 64,
                         int64_t tile_rows = 64, double bound = 40.0);

}  // namespace decayfw::engine
