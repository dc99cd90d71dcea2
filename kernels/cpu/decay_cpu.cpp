// The decay rule on CPU.
//
//   S_t = (a_t b_tᵀ) ⊙ S_{t-1} + v_t k_tᵀ,   y_t = S_t q_t,   a_t = σ(z_t), b_t = σ(f_t)
//
// Work is split into tasks (sequence n, block of state rows). Rows are independent because the gates
// act elementwise, so a task runs all T steps on its rows with the rows held in cache. Each task
// owns whole rows of the outputs it writes, so there is no false sharing; reductions across row
// blocks (y is per row and needs none; dq, dk, df in the backward do) go through per-block partial
// buffers summed in a fixed order, which keeps results deterministic for a given thread count.
//
// The backward stores no states. Sweep 1 recomputes S_t forward and forms y_t and dq_t = S_tᵀ dy_t;
// sweep 2 runs dS backward (dS_{t-1} = dy_{t-1} q_{t-1}ᵀ + G_t ⊙ dS_t) and forms dv_t and dk_t.
// The gate gradients come from the identity (kernels/README.md):
//   ∂L/∂log a_t = Σ_{s≥t} (y_s ⊙ dy_s − v_s ⊙ dv_s) + rowsum(dS_T ⊙ S_T)
//   ∂L/∂log b_t = Σ_{s≥t} (q_s ⊙ dq_s − k_s ⊙ dk_s) + colsum(dS_T ⊙ S_T)
// so the recurrence is never reversed by dividing by gates.
//
// The additive and gated rules run through the same code with gates removed (GateKind::None: a = 1
// or b = 1, nothing read, no gradient) or one row gate shared by a head (GateKind::PerHead, whose
// gradient is the sum of the per-row gate sums, so such backward runs keep a sequence's rows in one
// task).
#include "decayfw/cpu/decay_cpu.h"

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <vector>

#include "decayfw/numeric.h"
#include "kernel_common.h"

namespace decayfw::cpu {
namespace {

// Rows per block never drop below this, so a block's rows fill whole cache lines of y and dv.
constexpr int64_t kMinRowsPerBlock = 16;

using detail::at;
using detail::dispatch;
using detail::load_state;
using detail::load_vec;
// dst = σ(sign · src): fp32 through the vectorizable exp_f32, fp64 through libm.
template <typename In, typename Acc>
inline void load_sigmoid(const In* src, int64_t n, Acc* dst, Acc sign = Acc(1)) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) dst[i] = sigmoid_f32(sign * load_as<Acc>(src + i));
}

// The two hot loops, over a block of R state rows for one time step (row i has gate a[i], value
// v[i]; b, k, q are the step's key-side vectors of length M):
//   rows_forward : S_i ← S_i ⊙ (a_i b) + v_i k;  y_i = S_i · q;  and, when g is given,
//                  dq += Σ_i g_i S_i (the backward's dq_t = S_tᵀ dy_t)
//   rows_backward: G_i = dS_i + g_i q;  dv_i = G_i · k;  dk += Σ_i v_i G_i;  dS_i ← G_i ⊙ (a_i b)
// The generic versions are the plain definitions. The float versions (M a multiple of 8) work on 4
// rows at a time so the key-side vectors and the dq/dk accumulators are loaded once per 4 rows, and
// keep dot products in vector registers, reduced once per row.
template <typename Acc>
struct GenericRowKernels {
  static void forward(Acc* __restrict__ S, int64_t R, int64_t M, const Acc* a, const Acc* v, const Acc* __restrict__ b,
                      const Acc* __restrict__ k, const Acc* __restrict__ q, Acc* y, const Acc* g, Acc* __restrict__ dq) {
    for (int64_t i = 0; i < R; ++i) {
      Acc* __restrict__ row = S + i * M;
      Acc acc = 0;
#pragma omp simd reduction(+ : acc)
      for (int64_t m = 0; m < M; ++m) {
        const Acc sv = row[m] * (a[i] * b[m]) + v[i] * k[m];
        row[m] = sv;
        acc += sv * q[m];
      }
      y[i] = acc;
      if (g != nullptr) {
#pragma omp simd
        for (int64_t m = 0; m < M; ++m) dq[m] += row[m] * g[i];
      }
    }
  }
  static void backward(Acc* __restrict__ dS, int64_t R, int64_t M, const Acc* a, const Acc* v, const Acc* __restrict__ b,
                       const Acc* __restrict__ k, const Acc* __restrict__ q, const Acc* g, Acc* dv, Acc* __restrict__ dk) {
    for (int64_t i = 0; i < R; ++i) {
      Acc* __restrict__ row = dS + i * M;
      Acc acc = 0;
#pragma omp simd reduction(+ : acc)
      for (int64_t m = 0; m < M; ++m) {
        const Acc gs = row[m] + g[i] * q[m];  // total gradient reaching S_t
        acc += gs * k[m];
        dk[m] += gs * v[i];
        row[m] = gs * (a[i] * b[m]);  // passes on to S_{t-1}
      }
      dv[i] = acc;
    }
  }
};

template <typename Acc>
struct RowKernels : GenericRowKernels<Acc> {};

typedef float float8 __attribute__((vector_size(32)));

inline float8 load8(const float* p) {
  float8 x;
  std::memcpy(&x, p, sizeof x);
  return x;
}
inline void store8(float* p, float8 x) { std::memcpy(p, &x, sizeof x); }
inline float sum8(float8 x) { return ((x[0] + x[4]) + (x[1] + x[5])) + ((x[2] + x[6]) + (x[3] + x[7])); }

template <>
struct RowKernels<float> {
  static void forward(float* __restrict__ S, int64_t R, int64_t M, const float* a, const float* v,
                      const float* __restrict__ b, const float* __restrict__ k, const float* __restrict__ q, float* y,
                      const float* g, float* __restrict__ dq) {
    if (M % 8 != 0) return GenericRowKernels<float>::forward(S, R, M, a, v, b, k, q, y, g, dq);
    int64_t i = 0;
    for (; i + 4 <= R; i += 4) {
      float* r0 = S + i * M;
      float* r1 = r0 + M;
      float* r2 = r1 + M;
      float* r3 = r2 + M;
      float8 y0 = {}, y1 = {}, y2 = {}, y3 = {};
      for (int64_t m = 0; m < M; m += 8) {
        const float8 bm = load8(b + m), km = load8(k + m), qm = load8(q + m);
        const float8 s0 = load8(r0 + m) * (a[i] * bm) + v[i] * km;
        const float8 s1 = load8(r1 + m) * (a[i + 1] * bm) + v[i + 1] * km;
        const float8 s2 = load8(r2 + m) * (a[i + 2] * bm) + v[i + 2] * km;
        const float8 s3 = load8(r3 + m) * (a[i + 3] * bm) + v[i + 3] * km;
        store8(r0 + m, s0);
        store8(r1 + m, s1);
        store8(r2 + m, s2);
        store8(r3 + m, s3);
        y0 += s0 * qm;
        y1 += s1 * qm;
        y2 += s2 * qm;
        y3 += s3 * qm;
        if (g != nullptr) store8(dq + m, load8(dq + m) + (s0 * g[i] + s1 * g[i + 1]) + (s2 * g[i + 2] + s3 * g[i + 3]));
      }
      y[i] = sum8(y0);
      y[i + 1] = sum8(y1);
      y[i + 2] = sum8(y2);
      y[i + 3] = sum8(y3);
    }
    if (i < R) GenericRowKernels<float>::forward(S + i * M, R - i, M, a + i, v + i, b, k, q, y + i, g ? g + i : nullptr, dq);
  }
  static void backward(float* __restrict__ dS, int64_t R, int64_t M, const float* a, const float* v,
                       const float* __restrict__ b, const float* __restrict__ k, const float* __restrict__ q,
                       const float* g, float* dv, float* __restrict__ dk) {
    if (M % 8 != 0) return GenericRowKernels<float>::backward(dS, R, M, a, v, b, k, q, g, dv, dk);
    int64_t i = 0;
    for (; i + 4 <= R; i += 4) {
      float* r0 = dS + i * M;
      float* r1 = r0 + M;
      float* r2 = r1 + M;
      float* r3 = r2 + M;
      float8 d0 = {}, d1 = {}, d2 = {}, d3 = {};
      for (int64_t m = 0; m < M; m += 8) {
        const float8 bm = load8(b + m), km = load8(k + m), qm = load8(q + m);
        const float8 g0 = load8(r0 + m) + g[i] * qm;
        const float8 g1 = load8(r1 + m) + g[i + 1] * qm;
        const float8 g2 = load8(r2 + m) + g[i + 2] * qm;
        const float8 g3 = load8(r3 + m) + g[i + 3] * qm;
        d0 += g0 * km;
        d1 += g1 * km;
        d2 += g2 * km;
        d3 += g3 * km;
        store8(dk + m, load8(dk + m) + (g0 * v[i] + g1 * v[i + 1]) + (g2 * v[i + 2] + g3 * v[i + 3]));
        store8(r0 + m, g0 * (a[i] * bm));
        store8(r1 + m, g1 * (a[i + 1] * bm));
        store8(r2 + m, g2 * (a[i + 2] * bm));
        store8(r3 + m, g3 * (a[i + 3] * bm));
      }
      dv[i] = sum8(d0);
      dv[i + 1] = sum8(d1);
      dv[i + 2] = sum8(d2);
      dv[i + 3] = sum8(d3);
    }
    if (i < R) GenericRowKernels<float>::backward(dS + i * M, R - i, M, a + i, v + i, b, k, q, g + i, dv + i, dk);
  }
};


struct RowBlock {
  int64_t b, h, d0, d1, blk;
};

inline RowBlock task_rows(int64_t task, int64_t heads, int64_t rows, int64_t nblk) {
  const int64_t n = task / nblk;
  const int64_t blk = task % nblk;
  const int64_t per = (rows + nblk - 1) / nblk;
  RowBlock r;
  r.b = n / heads;
  r.h = n % heads;
  r.blk = blk;
  r.d0 = std::min(rows, blk * per);
  r.d1 = std::min(rows, r.d0 + per);
  return r;
}

// ------------------------------------------------------------------------------------------------
// per-step staging: the step's inputs converted to the accumulation type, gates through σ

template <typename Acc>
struct StepBuffers {
  std::vector<Acc> storage;
  Acc *q, *k, *b;          // key side, length M
  Acc *a, *v, *g, *y, *dv;  // row side, length R (this task's rows)
  StepBuffers(int64_t M, int64_t rows) : storage(static_cast<size_t>(3 * M + 5 * rows)) {
    q = storage.data();
    k = q + M;
    b = k + M;
    a = b + M;
    v = a + rows;
    g = v + rows;
    y = g + rows;
    dv = y + rows;
  }
  template <typename In, typename Ref>
  void load_key_side(const Ref& rq, const Ref& rk, const Ref& rf, GateKind col_gate, int64_t bi, int64_t t,
                     int64_t h, int64_t M) {
    load_vec(at<In>(rq, bi, t, h), M, q);
    load_vec(at<In>(rk, bi, t, h), M, k);
    if (col_gate == GateKind::None) {
      std::fill(b, b + M, Acc(1));
    } else {
      load_sigmoid(at<In>(rf, bi, t, h), M, b);
    }
  }
  // Row gates of rows [d0, d0 + R) at (bi, t, h).
  template <typename In, typename Ref>
  void load_row_gate(const Ref& rz, GateKind row_gate, int64_t bi, int64_t t, int64_t h, int64_t d0, int64_t R) {
    switch (row_gate) {
      case GateKind::PerElement: load_sigmoid(at<In>(rz, bi, t, h) + d0, R, a); break;
      case GateKind::PerHead: std::fill(a, a + R, static_cast<Acc>(sigmoid_f32(load_as<Acc>(at<In>(rz, bi, t, h))))); break;
      case GateKind::None: std::fill(a, a + R, Acc(1)); break;
    }
  }
};

void check_col_gate(GateKind col_gate) {
  if (col_gate == GateKind::PerHead) {
    throw std::invalid_argument("decayfw: a per-head gate is supported on the row side (z) only");
  }
}

// ------------------------------------------------------------------------------------------------
// forward

template <typename In, typename Acc>
void forward_impl(const DecayFwdParams& p, const Executor& ex) {
  check_col_gate(p.col_gate);
  const Dims& s = p.dims;
  const int64_t N = s.batch * s.heads, D = s.dim_v, M = s.dim_k, T = s.seqlen;
  const int64_t nblk = row_blocks_for(N, D, ex.num_threads);
  ex.run(N * nblk, [&](int64_t begin, int64_t end) {
    StepBuffers<Acc> buf(M, (D + nblk - 1) / nblk);
    for (int64_t task = begin; task < end; ++task) {
      const RowBlock r = task_rows(task, s.heads, D, nblk);
      const int64_t R = r.d1 - r.d0;
      if (R <= 0) continue;
      const int64_t state_off = ((r.b * s.heads + r.h) * D + r.d0) * M;
      Acc* S = static_cast<Acc*>(p.final_state) + state_off;
      load_state(p.initial_state, state_off, R * M, S);
      for (int64_t t = 0; t < T; ++t) {
        buf.template load_key_side<In>(p.q, p.k, p.f, p.col_gate, r.b, t, r.h, M);
        buf.template load_row_gate<In>(p.z, p.row_gate, r.b, t, r.h, r.d0, R);
        load_vec(at<In>(p.v, r.b, t, r.h) + r.d0, R, buf.v);
        RowKernels<Acc>::forward(S, R, M, buf.a, buf.v, buf.b, buf.k, buf.q, buf.y, nullptr, nullptr);
        In* y = at<In>(p.y, r.b, t, r.h) + r.d0;
        for (int64_t i = 0; i < R; ++i) store_from(y + i, buf.y[i]);
      }
    }
  });
}

// ------------------------------------------------------------------------------------------------
// backward

template <typename In, typename Acc>
void backward_impl(const DecayBwdParams& p, const Executor& ex) {
  check_col_gate(p.col_gate);
  const Dims& s = p.dims;
  const int64_t N = s.batch * s.heads, D = s.dim_v, M = s.dim_k, T = s.seqlen;
  // A per-head row gate's gradient sums over all rows: keep them in one task.
  const int64_t nblk = p.row_gate == GateKind::PerHead ? 1 : row_blocks_for(N, D, ex.num_threads);

  // Column reductions (dq, dk and the colsum of dS_T ⊙ S_T) are summed over row blocks. With a
  // single block per sequence the task finishes them itself from thread-local buffers; with
  // several, each block writes a partial and a second pass per sequence adds them in block order.
  const bool split = nblk > 1;
  std::vector<Acc> partials;
  const int64_t part_stride = (2 * T + 1) * M;  // dq_part[T][M], dk_part[T][M], colsum[M]
  if (split) partials.assign(static_cast<size_t>(N * nblk * part_stride), Acc(0));

  // Finishes dq, dk and df for one sequence from its column sums; walks time backwards because
  // ∂L/∂log b_t is a reverse cumulative sum.
  auto finish_columns = [&](int64_t b, int64_t h, const Acc* dq_sum, const Acc* dk_sum, const Acc* col,
                            Acc* gb) {
    std::copy(col, col + M, gb);
    for (int64_t t = T - 1; t >= 0; --t) {
      const In* q = at<In>(p.q, b, t, h);
      const In* k = at<In>(p.k, b, t, h);
      In* dq = at<In>(p.dq, b, t, h);
      In* dk = at<In>(p.dk, b, t, h);
      const Acc* dqt = dq_sum + t * M;
      const Acc* dkt = dk_sum + t * M;
      for (int64_t m = 0; m < M; ++m) {
        store_from(dq + m, dqt[m]);
        store_from(dk + m, dkt[m]);
      }
      if (p.col_gate == GateKind::None) continue;
      const In* f = at<In>(p.f, b, t, h);
      In* df = at<In>(p.df, b, t, h);
      for (int64_t m = 0; m < M; ++m) {
        gb[m] += load_as<Acc>(q + m) * dqt[m] - load_as<Acc>(k + m) * dkt[m];
        store_from(df + m, gb[m] * sigmoid_f32(-load_as<Acc>(f + m)));
      }
    }
  };

  ex.run(N * nblk, [&](int64_t begin, int64_t end) {
    const int64_t rows_max = (D + nblk - 1) / nblk;
    std::vector<Acc> state(static_cast<size_t>(rows_max * M));
    std::vector<Acc> grad(static_cast<size_t>(rows_max * M));
    std::vector<Acc> ys(static_cast<size_t>(T * rows_max));  // recomputed outputs, fp32
    std::vector<Acc> local(split ? 0 : static_cast<size_t>(part_stride));
    std::vector<Acc> sums(static_cast<size_t>(M + rows_max));
    Acc* gb = sums.data();     // ∂L/∂log b running sum
    Acc* ga = gb + M;          // ∂L/∂log a running sum, per row
    StepBuffers<Acc> buf(M, rows_max);
    for (int64_t task = begin; task < end; ++task) {
      const RowBlock r = task_rows(task, s.heads, D, nblk);
      const int64_t n = r.b * s.heads + r.h;
      const int64_t R = r.d1 - r.d0;
      Acc* part = split ? partials.data() + (n * nblk + r.blk) * part_stride : local.data();
      Acc* dq_part = part;
      Acc* dk_part = part + T * M;
      Acc* col = part + 2 * T * M;
      if (!split) std::fill(local.begin(), local.end(), Acc(0));
      if (R > 0) {
        const int64_t state_off = (n * D + r.d0) * M;
        Acc* S = state.data();
        load_state(p.initial_state, state_off, R * M, S);
        // Sweep 1: recompute S_t, y_t and this block's share of dq_t = S_tᵀ dy_t.
        for (int64_t t = 0; t < T; ++t) {
          buf.template load_key_side<In>(p.q, p.k, p.f, p.col_gate, r.b, t, r.h, M);
          buf.template load_row_gate<In>(p.z, p.row_gate, r.b, t, r.h, r.d0, R);
          load_vec(at<In>(p.v, r.b, t, r.h) + r.d0, R, buf.v);
          load_vec(at<In>(p.dy, r.b, t, r.h) + r.d0, R, buf.g);
          RowKernels<Acc>::forward(S, R, M, buf.a, buf.v, buf.b, buf.k, buf.q, ys.data() + t * R, buf.g,
                                   dq_part + t * M);
        }
        // S now holds S_T. Seed the gate sums with the final-state terms.
        Acc* dS = grad.data();
        load_state(p.grad_final_state, state_off, R * M, dS);
        for (int64_t i = 0; i < R; ++i) {
          Acc rs = 0;
          for (int64_t m = 0; m < M; ++m) {
            const Acc prod = dS[i * M + m] * S[i * M + m];
            rs += prod;
            col[m] += prod;
          }
          ga[i] = rs;
        }
        // Sweep 2: dS backwards in time; dv_t, dk_t, and dz_t from the row-local gate sum.
        for (int64_t t = T - 1; t >= 0; --t) {
          buf.template load_key_side<In>(p.q, p.k, p.f, p.col_gate, r.b, t, r.h, M);
          buf.template load_row_gate<In>(p.z, p.row_gate, r.b, t, r.h, r.d0, R);
          load_vec(at<In>(p.v, r.b, t, r.h) + r.d0, R, buf.v);
          load_vec(at<In>(p.dy, r.b, t, r.h) + r.d0, R, buf.g);
          RowKernels<Acc>::backward(dS, R, M, buf.a, buf.v, buf.b, buf.k, buf.q, buf.g, buf.dv, dk_part + t * M);
          In* dv = at<In>(p.dv, r.b, t, r.h) + r.d0;
          const Acc* yt = ys.data() + t * R;
          for (int64_t i = 0; i < R; ++i) {
            ga[i] += yt[i] * buf.g[i] - buf.v[i] * buf.dv[i];
            store_from(dv + i, buf.dv[i]);
          }
          if (p.row_gate == GateKind::PerElement) {
            const In* z = at<In>(p.z, r.b, t, r.h) + r.d0;
            In* dz = at<In>(p.dz, r.b, t, r.h) + r.d0;
            for (int64_t i = 0; i < R; ++i) store_from(dz + i, ga[i] * sigmoid_f32(-load_as<Acc>(z + i)));
          } else if (p.row_gate == GateKind::PerHead) {
            Acc total = 0;
            for (int64_t i = 0; i < R; ++i) total += ga[i];
            const In* z = at<In>(p.z, r.b, t, r.h);
            store_from(at<In>(p.dz, r.b, t, r.h), total * sigmoid_f32(-load_as<Acc>(z)));
          }
        }
        Acc* dS0 = static_cast<Acc*>(p.grad_initial_state) + state_off;
        std::copy(dS, dS + R * M, dS0);
      }
      if (!split) finish_columns(r.b, r.h, dq_part, dk_part, col, gb);
    }
  });

  if (!split) return;
  ex.run(N, [&](int64_t begin, int64_t end) {
    std::vector<Acc> sums(static_cast<size_t>(part_stride));
    std::vector<Acc> gb(static_cast<size_t>(M));
    for (int64_t n = begin; n < end; ++n) {
      std::fill(sums.begin(), sums.end(), Acc(0));
      for (int64_t blk = 0; blk < nblk; ++blk) {
        const Acc* part = partials.data() + (n * nblk + blk) * part_stride;
        for (int64_t i = 0; i < part_stride; ++i) sums[i] += part[i];
      }
      finish_columns(n / s.heads, n % s.heads, sums.data(), sums.data() + T * M, sums.data() + 2 * T * M,
                     gb.data());
    }
  });
}

// ------------------------------------------------------------------------------------------------
// decode step

template <typename In, typename Acc>
void step_impl(const DecayStepParams& p, const Executor& ex) {
  check_col_gate(p.col_gate);
  const int64_t N = p.batch * p.heads, D = p.dim_v, M = p.dim_k;
  const int64_t nblk = row_blocks_for(N, D, ex.num_threads);
  ex.run(N * nblk, [&](int64_t begin, int64_t end) {
    StepBuffers<Acc> buf(M, (D + nblk - 1) / nblk);
    for (int64_t task = begin; task < end; ++task) {
      const RowBlock r = task_rows(task, p.heads, D, nblk);
      const int64_t R = r.d1 - r.d0;
      if (R <= 0) continue;
      buf.template load_key_side<In>(p.q, p.k, p.f, p.col_gate, r.b, 0, r.h, M);
      buf.template load_row_gate<In>(p.z, p.row_gate, r.b, 0, r.h, r.d0, R);
      load_vec(at<In>(p.v, r.b, 0, r.h) + r.d0, R, buf.v);
      Acc* S = static_cast<Acc*>(p.state) + ((r.b * p.heads + r.h) * D + r.d0) * M;
      RowKernels<Acc>::forward(S, R, M, buf.a, buf.v, buf.b, buf.k, buf.q, buf.y, nullptr, nullptr);
      In* y = at<In>(p.y, r.b, 0, r.h) + r.d0;
      for (int64_t i = 0; i < R; ++i) store_from(y + i, buf.y[i]);
    }
  });
}


template <typename In, typename Acc>
struct Forward {
  static void run(const DecayFwdParams& p, const Executor& ex) { forward_impl<In, Acc>(p, ex); }
};
template <typename In, typename Acc>
struct Backward {
  static void run(const DecayBwdParams& p, const Executor& ex) { backward_impl<In, Acc>(p, ex); }
};
template <typename In, typename Acc>
struct Step {
  static void run(const DecayStepParams& p, const Executor& ex) { step_impl<In, Acc>(p, ex); }
};

}  // namespace

int64_t row_blocks_for(int64_t num_sequences, int64_t rows, int threads) {
  if (threads <= 1 || num_sequences >= threads) return 1;
  const int64_t want = (threads + num_sequences - 1) / num_sequences;
  const int64_t most = std::max<int64_t>(1, rows / kMinRowsPerBlock);
  return std::max<int64_t>(1, std::min(want, most));
}

void decay_forward(const DecayFwdParams& p, const Executor& ex) { dispatch<Forward>(p.dtype, p, ex); }
void decay_backward(const DecayBwdParams& p, const Executor& ex) { dispatch<Backward>(p.dtype, p, ex); }
void decay_step(const DecayStepParams& p, const Executor& ex) { dispatch<Step>(p.dtype, p, ex); }

}  // namespace decayfw::cpu
