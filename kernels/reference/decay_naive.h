// Readable fp64 reference of the decay rule: the definition, one loop per symbol, no tricks.
// Every fast implementation (CPU, CUDA) is tested against it. Layout: kernels/README.md.
#pragma once

#include <cmath>
#include <cstdint>
#include <vector>

namespace decayfw::reference {

// Dense [B, T, H, X] tensors in fp64 (row-major), state [B, H, D, M].
struct DecayProblem {
  int64_t B = 0, T = 0, H = 0, D = 0, M = 0;
  std::vector<double> q, k, f;  // [B, T, H, M]
  std::vector<double> v, z;     // [B, T, H, D]
  std::vector<double> s0;       // [B, H, D, M] (empty for zeros)
};

inline double sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }

// S_t = (σ(z_t) σ(f_t)ᵀ) ⊙ S_{t-1} + v_t k_tᵀ;  y_t = S_t q_t.  Returns y; writes S_T to final_state.
inline std::vector<double> decay_forward(const DecayProblem& p, std::vector<double>* final_state = nullptr) {
  const int64_t B = p.B, T = p.T, H = p.H, D = p.D, M = p.M;
  std::vector<double> y(static_cast<size_t>(B * T * H * D));
  std::vector<double> S(static_cast<size_t>(D * M));
  if (final_state) final_state->assign(static_cast<size_t>(B * H * D * M), 0.0);
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t h = 0; h < H; ++h) {
      for (int64_t i = 0; i < D * M; ++i) S[i] = p.s0.empty() ? 0.0 : p.s0[((b * H + h) * D) * M + i];
      for (int64_t t = 0; t < T; ++t) {
        const int64_t km = ((b * T + t) * H + h) * M;
        const int64_t kd = ((b * T + t) * H + h) * D;
        for (int64_t d = 0; d < D; ++d) {
          double yd = 0;
          for (int64_t m = 0; m < M; ++m) {
            double& s = S[d * M + m];
            s = sigmoid(p.z[kd + d]) * sigmoid(p.f[km + m]) * s + p.v[kd + d] * p.k[km + m];
            yd += s * p.q[km + m];
          }
          y[kd + d] = yd;
        }
      }
      if (final_state)
        for (int64_t i = 0; i < D * M; ++i) (*final_state)[((b * H + h) * D) * M + i] = S[i];
    }
  }
  return y;
}

// Gradients by backpropagation through time with every state stored: the obvious O(T·D·M) method,
// kept here only as an independent check of the state-free kernels.
struct DecayGrads {
  std::vector<double> dq, dk, dv, dz, df, ds0;
};

inline DecayGrads decay_backward(const DecayProblem& p, const std::vector<double>& dy,
                                 const std::vector<double>& dsT /* empty for zeros */) {
  const int64_t B = p.B, T = p.T, H = p.H, D = p.D, M = p.M;
  DecayGrads g;
  g.dq.assign(p.q.size(), 0.0);
  g.dk.assign(p.k.size(), 0.0);
  g.df.assign(p.f.size(), 0.0);
  g.dv.assign(p.v.size(), 0.0);
  g.dz.assign(p.z.size(), 0.0);
  g.ds0.assign(static_cast<size_t>(B * H * D * M), 0.0);
  std::vector<double> S(static_cast<size_t>((T + 1) * D * M));
  std::vector<double> dS(static_cast<size_t>(D * M));
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t h = 0; h < H; ++h) {
      const int64_t so = ((b * H + h) * D) * M;
      for (int64_t i = 0; i < D * M; ++i) S[i] = p.s0.empty() ? 0.0 : p.s0[so + i];
      for (int64_t t = 0; t < T; ++t) {
        const int64_t km = ((b * T + t) * H + h) * M, kd = ((b * T + t) * H + h) * D;
        for (int64_t d = 0; d < D; ++d)
          for (int64_t m = 0; m < M; ++m)
            S[(t + 1) * D * M + d * M + m] = sigmoid(p.z[kd + d]) * sigmoid(p.f[km + m]) * S[t * D * M + d * M + m] +
                                             p.v[kd + d] * p.k[km + m];
      }
      for (int64_t i = 0; i < D * M; ++i) dS[i] = dsT.empty() ? 0.0 : dsT[so + i];
      for (int64_t t = T - 1; t >= 0; --t) {
        const int64_t km = ((b * T + t) * H + h) * M, kd = ((b * T + t) * H + h) * D;
        const double* St = &S[(t + 1) * D * M];
        const double* Sp = &S[t * D * M];
        for (int64_t d = 0; d < D; ++d) {
          for (int64_t m = 0; m < M; ++m) {
            dS[d * M + m] += dy[kd + d] * p.q[km + m];  // y_t = S_t q_t
            g.dq[km + m] += St[d * M + m] * dy[kd + d];
          }
        }
        for (int64_t d = 0; d < D; ++d) {
          const double a = sigmoid(p.z[kd + d]);
          for (int64_t m = 0; m < M; ++m) {
            const double bm = sigmoid(p.f[km + m]);
            const double gs = dS[d * M + m];
            g.dv[kd + d] += gs * p.k[km + m];
            g.dk[km + m] += gs * p.v[kd + d];
            g.dz[kd + d] += gs * Sp[d * M + m] * bm * a * (1 - a);
            g.df[km + m] += gs * Sp[d * M + m] * a * bm * (1 - bm);
            dS[d * M + m] = gs * a * bm;
          }
        }
      }
      for (int64_t i = 0; i < D * M; ++i) g.ds0[so + i] = dS[i];
    }
  }
  return g;
}

}  // namespace decayfw::reference
