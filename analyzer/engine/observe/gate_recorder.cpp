#include "observe/gate_recorder.h"

#include <algorithm>
#include <cmath>

namespace decayfw::engine {

GateRecorder::GateRecorder(std::set<int64_t> layers, std::set<int64_t> heads, int64_t max_map_tokens)
    : layers_(std::move(layers)), heads_(std::move(heads)), max_map_tokens_(max_map_tokens) {}

bool GateRecorder::wants(int64_t layer) const { return layers_.empty() || layers_.count(layer); }

void GateRecorder::on_attention(int64_t layer, int64_t start, const at::Tensor& weights) {
  if (start != 0) return;  // maps are recorded for whole-text passes
  const int64_t T = std::min<int64_t>(weights.size(2), max_map_tokens_);
  for (int64_t h = 0; h < weights.size(1); ++h) {
    if (!head_wanted(h)) continue;
    records_[{layer, h}].map = weights[0][h].narrow(0, 0, T).narrow(1, 0, T).to(at::kCPU, at::kFloat).clone();
  }
}

void GateRecorder::on_decay_inputs(int64_t layer, int64_t start, const at::Tensor& q, const at::Tensor& k,
                                   const at::Tensor& v, const at::Tensor& z, const at::Tensor& f,
                                   const at::Tensor& state) {
  if (start != 0) return;
  const int64_t T = q.size(1), H = q.size(2), D = std::min(v.size(3), z.size(3));
  for (int64_t h = 0; h < H; ++h) {
    if (!head_wanted(h)) continue;
    HeadRecord& r = records_[{layer, h}];
    // First sequence of the batch; a normaliser channel (attention normalisation) is dropped. The
    // analysis runs on the host in fp64 whatever the model's device (records are CPU tensors).
    at::Tensor qh = q[0].select(1, h).to(at::kCPU, at::kDouble), kh = k[0].select(1, h).to(at::kCPU, at::kDouble);
    at::Tensor vh = v[0].select(1, h).narrow(1, 0, D).to(at::kCPU, at::kDouble);
    at::Tensor la = at::log_sigmoid(z[0].select(1, h).narrow(1, 0, D).to(at::kCPU, at::kDouble));  // [T, D]
    at::Tensor lb = at::log_sigmoid(f[0].select(1, h).to(at::kCPU, at::kDouble));                  // [T, M]
    r.sigma_z = la.exp().to(at::kFloat);
    r.sigma_f = lb.exp().to(at::kFloat);
    // ‖S_t‖ by running the recurrence on this head (fp64; D·M per token)
    at::Tensor S = state.defined() ? state[0][h].narrow(0, 0, D).to(at::kCPU, at::kDouble).clone()
                                   : at::zeros({D, kh.size(1)}, at::kDouble);
    std::vector<double> norms(static_cast<size_t>(T));
    for (int64_t t = 0; t < T; ++t) {
      S = S * at::outer(r.sigma_z[t].to(at::kDouble), r.sigma_f[t].to(at::kDouble)) + at::outer(vh[t], kh[t]);
      norms[static_cast<size_t>(t)] = S.norm().item<double>();
    }
    r.state_norm = at::tensor(norms, at::kDouble).to(at::kFloat);
    // implied attention for the first Tm tokens: cumulative log gates make every product a difference
    const int64_t Tm = std::min(T, max_map_tokens_);
    at::Tensor LA = la.narrow(0, 0, Tm).cumsum(0), LB = lb.narrow(0, 0, Tm).cumsum(0);  // [Tm, X]
    at::Tensor map = at::zeros({Tm, Tm}, at::kDouble);
    for (int64_t t = 0; t < Tm; ++t) {
      at::Tensor A = (LA[t].unsqueeze(0) - LA.narrow(0, 0, t + 1)).exp();  // [t+1, D]: Π_{s=j+1..t} a_s
      at::Tensor B = (LB[t].unsqueeze(0) - LB.narrow(0, 0, t + 1)).exp();  // [t+1, M]
      at::Tensor w = (kh.narrow(0, 0, t + 1) * B * qh[t].unsqueeze(0)).sum(1);  // [t+1]
      at::Tensor contrib = (A * vh.narrow(0, 0, t + 1)).norm(2, 1) * w.abs();   // ‖(A ⊙ v_j) w_tj‖
      const double total = contrib.sum().item<double>();
      if (total > 0) map[t].narrow(0, 0, t + 1).copy_(contrib / total);
    }
    r.map = map.to(at::kFloat);
  }
}

at::Tensor half_life(const HeadRecord& r) {
  at::Tensor la = at::log(r.sigma_z.to(at::kDouble).clamp_min(1e-300)).mean(0);  // [D]
  at::Tensor lb = at::log(r.sigma_f.to(at::kDouble).clamp_min(1e-300)).mean(0);  // [M]
  at::Tensor lg = la.unsqueeze(1) + lb.unsqueeze(0);                              // ln G, [D, M]
  return (-std::log(2.0) / lg).to(at::kFloat);  // lg = 0 → inf
}

namespace {
// log σ [T, X] in blocks of `block` tokens from token 0: [blocks, block, X], the last block padded with gates of 1
// (log 1 = 0).
at::Tensor blocked_log_gates(const at::Tensor& sigma, int64_t block) {
  const int64_t T = sigma.size(0), X = sigma.size(1), blocks = (T + block - 1) / block;
  at::Tensor lg = at::zeros({blocks * block, X}, at::kDouble);
  lg.narrow(0, 0, T).copy_(at::log(sigma.to(at::kDouble).clamp_min(1e-300)));
  return lg.view({blocks, block, X});
}
}  // namespace

double per_element_block_share(const at::Tensor& sigma, int64_t block, double bound) {
  if (!sigma.defined() || sigma.numel() == 0) return 0.0;
  // a block's span: its first token's own gate cancels (the kernels' B_r − B_{r+15})
  at::Tensor span = -blocked_log_gates(sigma, block).narrow(1, 1, block - 1).sum(1);  // [blocks, X]
  return (span > bound).to(at::kDouble).mean().item<double>();
}

double whole_chunk_share(const at::Tensor& sigma_z, const at::Tensor& sigma_f, int64_t chunk, int64_t tile_rows,
                         double bound) {
  if (!sigma_z.defined() || !sigma_f.defined() || sigma_z.numel() == 0 || sigma_f.numel() == 0) return 0.0;
  TORCH_CHECK(chunk > 0 && tile_rows > 0, "whole_chunk_share: chunk and tile_rows must be positive");
  TORCH_CHECK(sigma_z.size(0) == sigma_f.size(0), "whole_chunk_share: σ(z) has ", sigma_z.size(0), " tokens and σ(f) ",
              sigma_f.size(0));
  // a chunk's span sums all of its tokens: the kernels' sums start from the chunk's start state
  at::Tensor keys = std::get<0>((-blocked_log_gates(sigma_f, chunk).sum(1)).max(1)) <= bound;  // [chunks]
  at::Tensor rows = -blocked_log_gates(sigma_z, chunk).sum(1);                                 // [chunks, D]
  const int64_t D = rows.size(1), tiles = (D + tile_rows - 1) / tile_rows;
  int64_t whole = 0;
  for (int64_t i = 0; i < tiles; ++i) {
    const int64_t r0 = i * tile_rows, n = std::min(tile_rows, D - r0);
    at::Tensor tile = std::get<0>(rows.narrow(1, r0, n).max(1)) <= bound;
    whole += (tile & keys).sum().item<int64_t>();
  }
  return double(whole) / double(tiles * rows.size(0));
}

}  // namespace decayfw::engine
