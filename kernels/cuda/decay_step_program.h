// The decode step as a CTA program (cta/cta_common.h): one token, the fp32 state updated in place,
//   S ← (σ(z) σ(f)ᵀ) ⊙ S + v kᵀ,   y = S q.
// It reads and writes the state once and does 6 flops per element: pure bandwidth. So the state is
// moved in 16-byte vectors, every thread keeps many of them in flight (one CTA covers 64 rows of
// one sequence), the key side (σ(f), k, q) and the row side (σ(z), v) are staged in shared memory
// once per CTA, and y's sums over M are partial sums per 4 columns reduced in a second phase.
// Run by kernels/cuda/decay_step.cu on the GPU and by tests/cpp/test_step_program.cpp on the CPU.
#pragma once

#include <math.h>

#include <cstdint>

#include "cta/cta_common.h"

namespace decayfw::step {

struct StepArgs {  // inputs [B, H, X] with element strides for B and H; X contiguous
  int64_t B = 0, H = 0, D = 0, M = 0;
  const void *q = nullptr, *k = nullptr, *v = nullptr, *z = nullptr, *f = nullptr;
  int64_t q_sb = 0, q_sh = 0, k_sb = 0, k_sh = 0, v_sb = 0, v_sh = 0, z_sb = 0, z_sh = 0, f_sb = 0, f_sh = 0;
  void* y = nullptr;
  int64_t y_sb = 0, y_sh = 0;
  float* state = nullptr;  // [B, H, D, M] contiguous, 16-byte aligned, M % 4 == 0
};

constexpr int kRows = 64;    // state rows per CTA
constexpr int kGroups = 4;   // float4 groups of the state one index loads at once

DECAYFW_HD size_t smem_bytes(int64_t M) {  // σ(f), k, q; σ(z), v; partial sums [kRows][M/4]
  return sizeof(float) * (3 * size_t(M) + 2 * kRows + size_t(kRows) * size_t(M / 4));
}

DECAYFW_CTA float sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

// step_program(n, block): rows [block·64, block·64 + 64) of sequence n.
template <typename Cta, typename In>
DECAYFW_CTA void step_program(Cta& cta, const StepArgs& a, int64_t n, int64_t block, unsigned char* smem) {
  const int64_t b = n / a.H, h = n % a.H, M = a.M, G = M / 4, row0 = block * kRows;
  const int rows = static_cast<int>(a.D - row0 < kRows ? a.D - row0 : kRows);
  float* bs = reinterpret_cast<float*>(smem);
  float* ks = bs + M;
  float* qs = ks + M;
  float* as = qs + M;
  float* vs = as + kRows;
  float* part = vs + kRows;  // [kRows][G]
  const In* q = static_cast<const In*>(a.q) + b * a.q_sb + h * a.q_sh;
  const In* k = static_cast<const In*>(a.k) + b * a.k_sb + h * a.k_sh;
  const In* f = static_cast<const In*>(a.f) + b * a.f_sb + h * a.f_sh;
  const In* v = static_cast<const In*>(a.v) + b * a.v_sb + h * a.v_sh;
  const In* z = static_cast<const In*>(a.z) + b * a.z_sb + h * a.z_sh;
  cta.for_each(M + rows, [&](int64_t e) {
    if (e < M) {
      bs[e] = sigmoid(Cta::to_f(f[e]));
      ks[e] = Cta::to_f(k[e]);
      qs[e] = Cta::to_f(q[e]);
    } else {
      const int64_t d = e - M;
      as[d] = sigmoid(Cta::to_f(z[row0 + d]));
      vs[d] = Cta::to_f(v[row0 + d]);
    }
  });
  // The state: rows × G groups of four floats. Each index takes kGroups of them, a stride apart (so
  // a warp's accesses stay contiguous), and loads them all before computing any: one memory latency
  // per index instead of one per group (at D = 128, M = 64: one index per thread).
  float* S = a.state + (n * a.D + row0) * M;
  const int64_t groups = int64_t(rows) * G, per = (groups + kGroups - 1) / kGroups;
  cta.for_each(per, [&](int64_t e) {
    float s[kGroups][4];
    DECAYFW_UNROLL
    for (int u = 0; u < kGroups; ++u) {
      const int64_t el = e + u * per;
      if (el < groups) Cta::load4(S + (el / G) * M + (el % G) * 4, s[u]);
    }
    DECAYFW_UNROLL
    for (int u = 0; u < kGroups; ++u) {
      const int64_t el = e + u * per;
      if (el >= groups) break;
      const int64_t d = el / G, g = el % G, m = 4 * g;
      const float ad = as[d], vd = vs[d];
      float acc = 0.0f;
      for (int j = 0; j < 4; ++j) {
        s[u][j] = s[u][j] * (ad * bs[m + j]) + vd * ks[m + j];
        acc += s[u][j] * qs[m + j];
      }
      Cta::store4(S + d * M + m, s[u]);
      part[d * G + g] = acc;
    }
  });
  In* y = static_cast<In*>(a.y) + b * a.y_sb + h * a.y_sh;
  cta.for_each(rows, [&](int64_t d) {
    float acc = 0.0f;
    for (int64_t g = 0; g < G; ++g) acc += part[d * G + g];  // fixed order: deterministic
    y[row0 + d] = Cta::template from_f<In>(acc);
  });
}

}  // namespace decayfw::step
