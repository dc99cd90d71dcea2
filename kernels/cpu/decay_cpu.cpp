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
#include "decayfw/cpu/decay_cpu.h"

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <vector>

#include "decayfw/numeric.h"

namespace decayfw::cpu {
namespace {

// Rows per block never drop below this, so a block's rows fill whole cache lines of y and dv.
constexpr int64_t kMinRowsPerBlock = 16;

template <typename T>
inline const T* at(const ConstSeqRef& r, int64_t b, int64_t t, int64_t h) {
  return static_cast<const T*>(r.data) + b * r.stride_b + t * r.stride_t + h * r.stride_h;
}
template <typename T>
inline T* at(const SeqRef& r, int64_t b, int64_t t, int64_t h) {
  return static_cast<T*>(r.data) + b * r.stride_b + t * r.stride_t + h * r.stride_h;
}

template <typename In, typename Acc>
inline void load_vec(const In* src, int64_t n, Acc* dst) {
  for (int64_t i = 0; i < n; ++i) dst[i] = load_as<Acc>(src + i);
}
template <typename In, typename Acc>
inline void load_sigmoid(const In* src, int64_t n, Acc* dst) {
  for (int64_t i = 0; i < n; ++i) dst[i] = sigmoid<Acc>(load_as<Acc>(src + i));
}

// One row of the state update, the hot loop of every pass:
//   row ← row ⊙ (a·b) + v_d·k,  returns row · q.
// The float version keeps 8 partial sums in a vector register and reduces them once per row; an
// OpenMP simd reduction would spill them through memory on every row.
template <typename Acc>
inline Acc update_row(Acc* __restrict__ row, Acc a, Acc vd, const Acc* __restrict__ b, const Acc* __restrict__ k,
                      const Acc* __restrict__ q, int64_t M) {
  Acc acc = 0;
#pragma omp simd reduction(+ : acc)
  for (int64_t m = 0; m < M; ++m) {
    const Acc sv = row[m] * (a * b[m]) + vd * k[m];
    row[m] = sv;
    acc += sv * q[m];
  }
  return acc;
}

typedef float float8 __attribute__((vector_size(32)));

inline float8 load8(const float* p) {
  float8 v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline void store8(float* p, float8 v) { std::memcpy(p, &v, sizeof v); }
inline float sum8(float8 v) { return ((v[0] + v[4]) + (v[1] + v[5])) + ((v[2] + v[6]) + (v[3] + v[7])); }

template <>
inline float update_row<float>(float* __restrict__ row, float a, float vd, const float* __restrict__ b,
                               const float* __restrict__ k, const float* __restrict__ q, int64_t M) {
  if (M % 8 != 0) {
    float acc = 0;
#pragma omp simd reduction(+ : acc)
    for (int64_t m = 0; m < M; ++m) {
      const float sv = row[m] * (a * b[m]) + vd * k[m];
      row[m] = sv;
      acc += sv * q[m];
    }
    return acc;
  }
  float8 acc = {0, 0, 0, 0, 0, 0, 0, 0};
  for (int64_t m = 0; m < M; m += 8) {
    const float8 sv = load8(row + m) * (a * load8(b + m)) + vd * load8(k + m);
    store8(row + m, sv);
    acc += sv * load8(q + m);
  }
  return sum8(acc);
}

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
// forward

template <typename In, typename Acc>
void forward_impl(const DecayFwdParams& p, const Executor& ex) {
  const Dims& s = p.dims;
  const int64_t N = s.batch * s.heads, D = s.dim_v, M = s.dim_k, T = s.seqlen;
  const int64_t nblk = row_blocks_for(N, D, ex.num_threads);
  ex.run(N * nblk, [&](int64_t begin, int64_t end) {
    std::vector<Acc> buf(3 * M);
    Acc* qb = buf.data();
    Acc* kb = qb + M;
    Acc* bb = kb + M;
    for (int64_t task = begin; task < end; ++task) {
      const RowBlock r = task_rows(task, s.heads, D, nblk);
      if (r.d0 >= r.d1) continue;
      const int64_t state_off = ((r.b * s.heads + r.h) * D) * M;
      Acc* S = static_cast<Acc*>(p.final_state) + state_off;
      if (p.initial_state != nullptr) {
        const Acc* S0 = static_cast<const Acc*>(p.initial_state) + state_off;
        std::copy(S0 + r.d0 * M, S0 + r.d1 * M, S + r.d0 * M);
      } else {
        std::fill(S + r.d0 * M, S + r.d1 * M, Acc(0));
      }
      for (int64_t t = 0; t < T; ++t) {
        load_vec(at<In>(p.q, r.b, t, r.h), M, qb);
        load_vec(at<In>(p.k, r.b, t, r.h), M, kb);
        load_sigmoid(at<In>(p.f, r.b, t, r.h), M, bb);
        const In* z = at<In>(p.z, r.b, t, r.h);
        const In* v = at<In>(p.v, r.b, t, r.h);
        In* y = at<In>(p.y, r.b, t, r.h);
        for (int64_t d = r.d0; d < r.d1; ++d) {
          const Acc a = sigmoid<Acc>(load_as<Acc>(z + d));
          const Acc vd = load_as<Acc>(v + d);
          store_from(y + d, update_row(S + d * M, a, vd, bb, kb, qb, M));
        }
      }
    }
  });
}

// ------------------------------------------------------------------------------------------------
// backward

template <typename In, typename Acc>
void backward_impl(const DecayBwdParams& p, const Executor& ex) {
  const Dims& s = p.dims;
  const int64_t N = s.batch * s.heads, D = s.dim_v, M = s.dim_k, T = s.seqlen;
  const int64_t nblk = row_blocks_for(N, D, ex.num_threads);

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
      const In* f = at<In>(p.f, b, t, h);
      In* dq = at<In>(p.dq, b, t, h);
      In* dk = at<In>(p.dk, b, t, h);
      In* df = at<In>(p.df, b, t, h);
      const Acc* dqt = dq_sum + t * M;
      const Acc* dkt = dk_sum + t * M;
      for (int64_t m = 0; m < M; ++m) {
        gb[m] += load_as<Acc>(q + m) * dqt[m] - load_as<Acc>(k + m) * dkt[m];
        store_from(dq + m, dqt[m]);
        store_from(dk + m, dkt[m]);
        store_from(df + m, gb[m] * sigmoid<Acc>(-load_as<Acc>(f + m)));
      }
    }
  };

  ex.run(N * nblk, [&](int64_t begin, int64_t end) {
    const int64_t rows_max = (D + nblk - 1) / nblk;
    std::vector<Acc> state(static_cast<size_t>(rows_max * M));
    std::vector<Acc> grad(static_cast<size_t>(rows_max * M));
    std::vector<Acc> ys(static_cast<size_t>(T * rows_max));  // recomputed outputs, fp32
    std::vector<Acc> local(split ? 0 : static_cast<size_t>(part_stride));
    std::vector<Acc> vecs(static_cast<size_t>(4 * M + 2 * rows_max));
    Acc* qb = vecs.data();
    Acc* kb = qb + M;
    Acc* bb = kb + M;
    Acc* gb = bb + M;
    Acc* dyb = gb + M;
    Acc* ga = dyb + rows_max;
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
        if (p.initial_state != nullptr) {
          const Acc* S0 = static_cast<const Acc*>(p.initial_state) + state_off;
          std::copy(S0, S0 + R * M, S);
        } else {
          std::fill(S, S + R * M, Acc(0));
        }
        // Sweep 1: recompute S_t, y_t and this block's share of dq_t = S_tᵀ dy_t.
        for (int64_t t = 0; t < T; ++t) {
          load_vec(at<In>(p.q, r.b, t, r.h), M, qb);
          load_vec(at<In>(p.k, r.b, t, r.h), M, kb);
          load_sigmoid(at<In>(p.f, r.b, t, r.h), M, bb);
          const In* z = at<In>(p.z, r.b, t, r.h) + r.d0;
          const In* v = at<In>(p.v, r.b, t, r.h) + r.d0;
          const In* dy = at<In>(p.dy, r.b, t, r.h) + r.d0;
          Acc* __restrict__ dqt = dq_part + t * M;
          Acc* yt = ys.data() + t * R;
          for (int64_t i = 0; i < R; ++i) {
            const Acc a = sigmoid<Acc>(load_as<Acc>(z + i));
            const Acc vd = load_as<Acc>(v + i);
            const Acc g = load_as<Acc>(dy + i);
            Acc* __restrict__ row = S + i * M;
            Acc acc = 0;
#pragma omp simd reduction(+ : acc)
            for (int64_t m = 0; m < M; ++m) {
              const Acc sv = row[m] * (a * bb[m]) + vd * kb[m];
              row[m] = sv;
              acc += sv * qb[m];
              dqt[m] += sv * g;
            }
            yt[i] = acc;
          }
        }
        // S now holds S_T. Seed the gate sums with the final-state terms.
        Acc* dS = grad.data();
        if (p.grad_final_state != nullptr) {
          const Acc* dST = static_cast<const Acc*>(p.grad_final_state) + state_off;
          std::copy(dST, dST + R * M, dS);
        } else {
          std::fill(dS, dS + R * M, Acc(0));
        }
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
          load_vec(at<In>(p.q, r.b, t, r.h), M, qb);
          load_vec(at<In>(p.k, r.b, t, r.h), M, kb);
          load_sigmoid(at<In>(p.f, r.b, t, r.h), M, bb);
          const In* z = at<In>(p.z, r.b, t, r.h) + r.d0;
          const In* v = at<In>(p.v, r.b, t, r.h) + r.d0;
          load_vec(at<In>(p.dy, r.b, t, r.h) + r.d0, R, dyb);
          In* dv = at<In>(p.dv, r.b, t, r.h) + r.d0;
          In* dz = at<In>(p.dz, r.b, t, r.h) + r.d0;
          Acc* __restrict__ dkt = dk_part + t * M;
          const Acc* yt = ys.data() + t * R;
          for (int64_t i = 0; i < R; ++i) {
            const Acc zl = load_as<Acc>(z + i);
            const Acc a = sigmoid<Acc>(zl);
            const Acc vd = load_as<Acc>(v + i);
            const Acc g = dyb[i];
            Acc* __restrict__ row = dS + i * M;
            Acc acc = 0;
#pragma omp simd reduction(+ : acc)
            for (int64_t m = 0; m < M; ++m) {
              const Acc gs = row[m] + g * qb[m];  // total gradient reaching S_t
              acc += gs * kb[m];
              dkt[m] += gs * vd;
              row[m] = gs * (a * bb[m]);  // passes to S_{t-1}
            }
            ga[i] += yt[i] * g - vd * acc;
            store_from(dv + i, acc);
            store_from(dz + i, ga[i] * sigmoid<Acc>(-zl));
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
  const int64_t N = p.batch * p.heads, D = p.dim_v, M = p.dim_k;
  const int64_t nblk = row_blocks_for(N, D, ex.num_threads);
  ex.run(N * nblk, [&](int64_t begin, int64_t end) {
    std::vector<Acc> buf(3 * M);
    Acc* qb = buf.data();
    Acc* kb = qb + M;
    Acc* bb = kb + M;
    for (int64_t task = begin; task < end; ++task) {
      const RowBlock r = task_rows(task, p.heads, D, nblk);
      if (r.d0 >= r.d1) continue;
      load_vec(at<In>(p.q, r.b, 0, r.h), M, qb);
      load_vec(at<In>(p.k, r.b, 0, r.h), M, kb);
      load_sigmoid(at<In>(p.f, r.b, 0, r.h), M, bb);
      const In* z = at<In>(p.z, r.b, 0, r.h);
      const In* v = at<In>(p.v, r.b, 0, r.h);
      In* y = at<In>(p.y, r.b, 0, r.h);
      Acc* S = static_cast<Acc*>(p.state) + ((r.b * p.heads + r.h) * D) * M;
      for (int64_t d = r.d0; d < r.d1; ++d) {
        const Acc a = sigmoid<Acc>(load_as<Acc>(z + d));
        const Acc vd = load_as<Acc>(v + d);
        store_from(y + d, update_row(S + d * M, a, vd, bb, kb, qb, M));
      }
    }
  });
}

template <template <typename, typename> class Fn, typename P>
void dispatch(ScalarType dtype, const P& p, const Executor& ex) {
  switch (dtype) {
    case ScalarType::Float32: Fn<float, float>::run(p, ex); return;
    case ScalarType::Float64: Fn<double, double>::run(p, ex); return;
    case ScalarType::Float16: Fn<Float16, float>::run(p, ex); return;
    case ScalarType::BFloat16: Fn<BFloat16, float>::run(p, ex); return;
  }
  throw std::invalid_argument("decayfw: unsupported dtype");
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
