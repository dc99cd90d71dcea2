// The delta rule on CPU.
//
//   u_t = S_{t-1} k_t,   S_t = S_{t-1} + β_t (v_t − u_t) k_tᵀ,   y_t = S_t q_t,   β_t = σ(beta_t)
//
// Unlike the decay rule, S_{t-1} cannot be recovered from S_t cheaply and stably (the update
// I − β k kᵀ may be singular), so the backward re-runs the forward once, keeping a checkpoint of
// the state every C steps, then walks the chunks from last to first: it recomputes the C + 1 states
// of a chunk from its checkpoint and back-propagates through them. Memory per sequence is
// (T/C + C + 1)·D·M accumulators instead of T·D·M; compute is about three forward passes.
//
// Backward of one step, with G = dS_t + dy_t q_tᵀ the total gradient reaching S_t:
//   dq_t = S_tᵀ dy_t,  r = G k_t,  e = v_t − u_t,  dv_t = β r,  ∂L/∂β = eᵀ r,
//   dk_t = β Gᵀ e − S_{t-1}ᵀ (β r),  dS_{t-1} = G − (β r) k_tᵀ
// Each row of S only meets its own v, u and dy entries, so a row is the unit of the inner loops;
// the key-side vectors (dq, dk) and ∂L/∂β are sums over rows. Tasks are whole sequences.
#include "decayfw/cpu/delta_cpu.h"

#include <algorithm>
#include <stdexcept>
#include <vector>

#include "decayfw/numeric.h"
#include "kernel_common.h"

namespace decayfw::cpu {
namespace {

using detail::at;
using detail::dispatch;
using detail::load_state;
using detail::load_vec;

// One forward step over all D rows: S ← S + β (v − S k) kᵀ, y = S q (y may be null).
template <typename Acc>
inline void step_rows(Acc* __restrict__ S, int64_t D, int64_t M, Acc beta, const Acc* v,
                      const Acc* __restrict__ k, const Acc* __restrict__ q, Acc* y) {
  for (int64_t i = 0; i < D; ++i) {
    Acc* __restrict__ row = S + i * M;
    Acc u = 0;
#pragma omp simd reduction(+ : u)
    for (int64_t m = 0; m < M; ++m) u += row[m] * k[m];
    const Acc c = beta * (v[i] - u);
    Acc acc = 0;
#pragma omp simd reduction(+ : acc)
    for (int64_t m = 0; m < M; ++m) {
      row[m] += c * k[m];
      acc += row[m] * q[m];
    }
    if (y != nullptr) y[i] = acc;
  }
}


template <typename Acc>
struct StepInputs {
  std::vector<Acc> storage;
  Acc *q, *k, *v, *y;
  StepInputs(int64_t M, int64_t D) : storage(static_cast<size_t>(2 * M + 2 * D)) {
    q = storage.data();
    k = q + M;
    v = k + M;
    y = v + D;
  }
  template <typename In, typename Ref>
  Acc load(const Ref& rq, const Ref& rk, const Ref& rv, const Ref& rbeta, int64_t b, int64_t t, int64_t h, int64_t M,
           int64_t D) {
    load_vec(at<In>(rq, b, t, h), M, q);
    load_vec(at<In>(rk, b, t, h), M, k);
    load_vec(at<In>(rv, b, t, h), D, v);
    return static_cast<Acc>(sigmoid_f32(load_as<Acc>(at<In>(rbeta, b, t, h))));
  }
};

template <typename In, typename Acc>
void forward_impl(const DeltaFwdParams& p, const Executor& ex) {
  const Dims& s = p.dims;
  const int64_t N = s.batch * s.heads, D = s.dim_v, M = s.dim_k;
  ex.run(N, [&](int64_t begin, int64_t end) {
    StepInputs<Acc> in(M, D);
    for (int64_t n = begin; n < end; ++n) {
      const int64_t b = n / s.heads, h = n % s.heads;
      Acc* S = static_cast<Acc*>(p.final_state) + n * D * M;
      load_state(p.initial_state, n * D * M, D * M, S);
      for (int64_t t = 0; t < s.seqlen; ++t) {
        const Acc beta = in.template load<In>(p.q, p.k, p.v, p.beta, b, t, h, M, D);
        step_rows(S, D, M, beta, in.v, in.k, in.q, in.y);
        In* y = at<In>(p.y, b, t, h);
        for (int64_t i = 0; i < D; ++i) store_from(y + i, in.y[i]);
      }
    }
  });
}

template <typename In, typename Acc>
void backward_impl(const DeltaBwdParams& p, const Executor& ex) {
  const Dims& s = p.dims;
  const int64_t N = s.batch * s.heads, D = s.dim_v, M = s.dim_k, T = s.seqlen;
  const int64_t C = std::max<int64_t>(1, std::min(p.chunk, T));
  const int64_t nchunks = (T + C - 1) / C;
  const int64_t DM = D * M;
  ex.run(N, [&](int64_t begin, int64_t end) {
    std::vector<Acc> checkpoints(static_cast<size_t>(nchunks * DM));
    std::vector<Acc> states(static_cast<size_t>((C + 1) * DM));  // S before each step of a chunk, + after
    std::vector<Acc> dS(static_cast<size_t>(DM));
    std::vector<Acc> G(static_cast<size_t>(DM));
    std::vector<Acc> work(static_cast<size_t>(4 * D + 2 * M));
    Acc* dy = work.data();
    Acc* r = dy + D;
    Acc* e = r + D;
    Acc* dv = e + D;
    Acc* dq = dv + D;
    Acc* dk = dq + M;
    StepInputs<Acc> in(M, D);
    for (int64_t n = begin; n < end; ++n) {
      const int64_t b = n / s.heads, h = n % s.heads;
      // Pass 1: checkpoints at the start of every chunk.
      std::vector<Acc>& S = dS;  // dS is free until pass 2; reuse it as the running state
      load_state(p.initial_state, n * DM, DM, S.data());
      for (int64_t t = 0; t < T; ++t) {
        if (t % C == 0) std::copy(S.begin(), S.end(), checkpoints.begin() + (t / C) * DM);
        const Acc beta = in.template load<In>(p.q, p.k, p.v, p.beta, b, t, h, M, D);
        step_rows(S.data(), D, M, beta, in.v, in.k, in.q, static_cast<Acc*>(nullptr));
      }
      // Pass 2: chunks backwards.
      load_state(p.grad_final_state, n * DM, DM, dS.data());
      for (int64_t c = nchunks - 1; c >= 0; --c) {
        const int64_t t0 = c * C, t1 = std::min(T, t0 + C);
        std::copy(checkpoints.begin() + c * DM, checkpoints.begin() + (c + 1) * DM, states.begin());
        for (int64_t t = t0; t < t1; ++t) {
          Acc* next = states.data() + (t - t0 + 1) * DM;
          std::copy(next - DM, next, next);
          const Acc beta = in.template load<In>(p.q, p.k, p.v, p.beta, b, t, h, M, D);
          step_rows(next, D, M, beta, in.v, in.k, in.q, static_cast<Acc*>(nullptr));
        }
        for (int64_t t = t1 - 1; t >= t0; --t) {
          const Acc* S_prev = states.data() + (t - t0) * DM;
          const Acc* S_t = S_prev + DM;
          const Acc sb = static_cast<Acc>(sigmoid_f32(load_as<Acc>(at<In>(p.beta, b, t, h))));
          in.template load<In>(p.q, p.k, p.v, p.beta, b, t, h, M, D);
          load_vec(at<In>(p.dy, b, t, h), D, dy);
          std::fill(dq, dq + M, Acc(0));
          std::fill(dk, dk + M, Acc(0));
          Acc dbeta = 0;
          for (int64_t i = 0; i < D; ++i) {
            const Acc* sp = S_prev + i * M;
            const Acc* st = S_t + i * M;
            const Acc* ds = dS.data() + i * M;
            Acc* g = G.data() + i * M;
            Acc u = 0, ri = 0;
#pragma omp simd reduction(+ : u, ri)
            for (int64_t m = 0; m < M; ++m) {
              dq[m] += dy[i] * st[m];
              g[m] = ds[m] + dy[i] * in.q[m];
              u += sp[m] * in.k[m];
              ri += g[m] * in.k[m];
            }
            e[i] = in.v[i] - u;
            r[i] = ri;
            dv[i] = sb * ri;
            dbeta += e[i] * ri;
          }
          for (int64_t i = 0; i < D; ++i) {
            const Acc* sp = S_prev + i * M;
            const Acc* g = G.data() + i * M;
            Acc* ds = dS.data() + i * M;
            const Acc be = sb * e[i], de = dv[i];
#pragma omp simd
            for (int64_t m = 0; m < M; ++m) {
              dk[m] += be * g[m] - de * sp[m];
              ds[m] = g[m] - de * in.k[m];
            }
          }
          In* dq_out = at<In>(p.dq, b, t, h);
          In* dk_out = at<In>(p.dk, b, t, h);
          In* dv_out = at<In>(p.dv, b, t, h);
          for (int64_t m = 0; m < M; ++m) {
            store_from(dq_out + m, dq[m]);
            store_from(dk_out + m, dk[m]);
          }
          for (int64_t i = 0; i < D; ++i) store_from(dv_out + i, dv[i]);
          store_from(at<In>(p.dbeta, b, t, h), dbeta * sb * (Acc(1) - sb));
        }
      }
      std::copy(dS.begin(), dS.end(), static_cast<Acc*>(p.grad_initial_state) + n * DM);
    }
  });
}

template <typename In, typename Acc>
void step_impl(const DeltaStepParams& p, const Executor& ex) {
  const int64_t N = p.batch * p.heads, D = p.dim_v, M = p.dim_k;
  ex.run(N, [&](int64_t begin, int64_t end) {
    StepInputs<Acc> in(M, D);
    for (int64_t n = begin; n < end; ++n) {
      const int64_t b = n / p.heads, h = n % p.heads;
      const Acc beta = in.template load<In>(p.q, p.k, p.v, p.beta, b, 0, h, M, D);
      step_rows(static_cast<Acc*>(p.state) + n * D * M, D, M, beta, in.v, in.k, in.q, in.y);
      In* y = at<In>(p.y, b, 0, h);
      for (int64_t i = 0; i < D; ++i) store_from(y + i, in.y[i]);
    }
  });
}


template <typename In, typename Acc>
struct Forward {
  static void run(const DeltaFwdParams& p, const Executor& ex) { forward_impl<In, Acc>(p, ex); }
};
template <typename In, typename Acc>
struct Backward {
  static void run(const DeltaBwdParams& p, const Executor& ex) { backward_impl<In, Acc>(p, ex); }
};
template <typename In, typename Acc>
struct Step {
  static void run(const DeltaStepParams& p, const Executor& ex) { step_impl<In, Acc>(p, ex); }
};

}  // namespace

void delta_forward(const DeltaFwdParams& p, const Executor& ex) { dispatch<Forward>(p.dtype, p, ex); }
void delta_backward(const DeltaBwdParams& p, const Executor& ex) { dispatch<Backward>(p.dtype, p, ex); }
void delta_step(const DeltaStepParams& p, const Executor& ex) { dispatch<Step>(p.dtype, p, ex); }

}  // namespace decayfw::cpu
