// The decay rule on CUDA, recurrent form: forward, two-sweep backward (no stored states) and the
// decode step. Math as in kernels/cpu/decay_cpu.cpp; see kernels/README.md.
//
// Mapping. A CTA owns one sequence n and a tile of kRowsPerCta state rows; each warp owns
// kRowsPerWarp rows and each lane kEpl columns of them (m = lane + 32·j), so the state lives in
// registers for all T steps. y_d and dv_d reduce over M inside a warp (shuffles); dq and dk reduce
// over rows, first across the CTA's warps in shared memory, then across row tiles through fp32
// partial buffers summed in a fixed order by a finishing kernel (deterministic, no atomics).
// Gates are logits; σ runs in fp32 (fp64 for fp64 inputs). All offsets are 64-bit.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <type_traits>

#include "decayfw/cuda/decay_cuda.h"

namespace decayfw::cuda {
namespace {

constexpr int kWarp = 32;
constexpr int kRowsPerWarp = 4;
constexpr int kWarpsPerCta = 8;
constexpr int kRowsPerCta = kRowsPerWarp * kWarpsPerCta;

template <typename T> struct AccOf { using type = float; };
template <> struct AccOf<double> { using type = double; };

__device__ __forceinline__ float to_acc(float x) { return x; }
__device__ __forceinline__ double to_acc(double x) { return x; }
__device__ __forceinline__ float to_acc(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_acc(__nv_bfloat16 x) { return __bfloat162float(x); }

template <typename T> __device__ __forceinline__ T from_acc(float x);
template <> __device__ __forceinline__ float from_acc<float>(float x) { return x; }
template <> __device__ __forceinline__ __half from_acc<__half>(float x) { return __float2half_rn(x); }
template <> __device__ __forceinline__ __nv_bfloat16 from_acc<__nv_bfloat16>(float x) { return __float2bfloat16_rn(x); }
template <typename T> __device__ __forceinline__ T from_acc(double x) { return static_cast<T>(x); }

__device__ __forceinline__ float sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }
__device__ __forceinline__ double sigmoid(double x) { return 1.0 / (1.0 + exp(-x)); }

template <typename Acc>
__device__ __forceinline__ Acc warp_sum(Acc x) {
#pragma unroll
  for (int o = kWarp / 2; o > 0; o /= 2) x += __shfl_xor_sync(0xffffffffu, x, o);
  return x;
}

struct Seq {  // a [B, T, H, X] view with element strides
  const void* p;
  int64_t sb, st, sh;
};
struct MutSeq {
  void* p;
  int64_t sb, st, sh;
};

template <typename T>
__device__ __forceinline__ const T* ptr(const Seq& s, int64_t b, int64_t t, int64_t h) {
  return static_cast<const T*>(s.p) + b * s.sb + t * s.st + h * s.sh;
}
template <typename T>
__device__ __forceinline__ T* ptr(const MutSeq& s, int64_t b, int64_t t, int64_t h) {
  return static_cast<T*>(s.p) + b * s.sb + t * s.st + h * s.sh;
}

struct FwdArgs {
  int64_t T, H, D, M;
  Seq q, k, v, z, f;
  MutSeq y;
  const void* s0;  // [N, D, M] Acc or null
  void* sT;        // [N, D, M] Acc (may alias s0: each thread reads its elements before writing)
};

// One step's inputs for one warp, loaded a step ahead of their use: the recurrence is a serial chain
// over T, so hiding global-memory latency behind the previous step's arithmetic is what sets speed.
template <typename In, int kEpl, bool kGrad>
struct StepInputs {
  In q[kEpl], k[kEpl], f[kEpl];
  In z[kRowsPerWarp], v[kRowsPerWarp], g[kGrad ? kRowsPerWarp : 1];

  __device__ __forceinline__ void load(const Seq& sq, const Seq& sk, const Seq& sf, const Seq& sz, const Seq& sv,
                                       const Seq* sg, int64_t b, int64_t t, int64_t h, int lane, int64_t row0,
                                       int64_t M, int64_t D) {
    const In* pq = ptr<In>(sq, b, t, h);
    const In* pk = ptr<In>(sk, b, t, h);
    const In* pf = ptr<In>(sf, b, t, h);
    const In* pz = ptr<In>(sz, b, t, h);
    const In* pv = ptr<In>(sv, b, t, h);
#pragma unroll
    for (int j = 0; j < kEpl; ++j) {
      const int64_t m = lane + kWarp * j;
      const bool ok = m < M;
      q[j] = ok ? pq[m] : In(0);
      k[j] = ok ? pk[m] : In(0);
      f[j] = ok ? pf[m] : In(0);
    }
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r) {
      const int64_t d = row0 + r;
      const bool ok = d < D;
      z[r] = ok ? pz[d] : In(0);
      v[r] = ok ? pv[d] : In(0);
      if constexpr (kGrad) g[r] = ok ? ptr<In>(*sg, b, t, h)[d] : In(0);
    }
  }
};

// The key side of a step in the accumulation type: q, k and b = σ(f) per lane (zero on padded lanes,
// which keeps their state zero).
template <typename In, typename Acc, int kEpl, bool kGrad>
__device__ __forceinline__ void key_side(const StepInputs<In, kEpl, kGrad>& in, int lane, int64_t M, Acc* qv,
                                         Acc* kv, Acc* bv) {
#pragma unroll
  for (int j = 0; j < kEpl; ++j) {
    const bool ok = lane + kWarp * j < M;
    qv[j] = to_acc(in.q[j]);
    kv[j] = to_acc(in.k[j]);
    bv[j] = ok ? sigmoid(to_acc(in.f[j])) : Acc(0);
  }
}

// A warp's rows of an [N, D, M] Acc state (sequence n) to and from its registers: lane `lane` holds the elements
// m = lane + 32·j of rows row0 + r. Outside D×M, and everywhere for a null src, the registers hold zeros (padded
// lanes and rows keep a zero state); nothing is stored there.
template <typename Acc, int kEpl>
__device__ __forceinline__ void load_warp_state(Acc (&S)[kRowsPerWarp][kEpl], const void* src, int64_t n, int64_t row0,
                                                int lane, int64_t D, int64_t M) {
  const Acc* S0 = static_cast<const Acc*>(src);
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r)
#pragma unroll
    for (int j = 0; j < kEpl; ++j) {
      const int64_t d = row0 + r, m = lane + kWarp * j;
      S[r][j] = (S0 != nullptr && d < D && m < M) ? S0[(n * D + d) * M + m] : Acc(0);
    }
}
template <typename Acc, int kEpl>
__device__ __forceinline__ void store_warp_state(const Acc (&S)[kRowsPerWarp][kEpl], void* dst, int64_t n, int64_t row0,
                                                 int lane, int64_t D, int64_t M) {
  Acc* out = static_cast<Acc*>(dst);
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r)
#pragma unroll
    for (int j = 0; j < kEpl; ++j) {
      const int64_t d = row0 + r, m = lane + kWarp * j;
      if (d < D && m < M) out[(n * D + d) * M + m] = S[r][j];
    }
}

// ------------------------------------------------------------------------------------------------
// forward (and, with T = 1 and sT = s0, the decode step)

template <typename In, int kEpl>
__global__ void __launch_bounds__(kWarp* kWarpsPerCta) forward_kernel(FwdArgs a) {
  using Acc = typename AccOf<In>::type;
  const int64_t n = blockIdx.x, b = n / a.H, h = n % a.H;
  const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  const int64_t row0 = int64_t(blockIdx.y) * kRowsPerCta + warp * kRowsPerWarp;
  const int64_t M = a.M, D = a.D;
  Acc S[kRowsPerWarp][kEpl];
  load_warp_state(S, a.s0, n, row0, lane, D, M);
  StepInputs<In, kEpl, false> cur, nxt;
  if (a.T > 0) cur.load(a.q, a.k, a.f, a.z, a.v, nullptr, b, 0, h, lane, row0, M, D);
  for (int64_t t = 0; t < a.T; ++t) {
    if (t + 1 < a.T) nxt.load(a.q, a.k, a.f, a.z, a.v, nullptr, b, t + 1, h, lane, row0, M, D);
    Acc qv[kEpl], kv[kEpl], bv[kEpl];
    key_side(cur, lane, M, qv, kv, bv);
    In* y = ptr<In>(a.y, b, t, h);
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r) {
      const int64_t d = row0 + r;
      const Acc ad = sigmoid(to_acc(cur.z[r]));
      const Acc vd = to_acc(cur.v[r]);
      Acc acc = 0;
#pragma unroll
      for (int j = 0; j < kEpl; ++j) {
        S[r][j] = S[r][j] * (ad * bv[j]) + vd * kv[j];
        acc += S[r][j] * qv[j];
      }
      acc = warp_sum(acc);
      if (lane == 0 && d < D) y[d] = from_acc<In>(acc);
    }
    cur = nxt;
  }
  store_warp_state(S, a.sT, n, row0, lane, D, M);
}

// ------------------------------------------------------------------------------------------------
// backward

struct BwdArgs {
  int64_t N, T, H, D, M, tiles;
  Seq q, k, v, z, f, dy;
  MutSeq dv, dz;
  const void* s0;   // [N, D, M] or null
  const void* dsT;  // [N, D, M] or null
  void* ds0;        // [N, D, M]
  // workspace (Acc): dq_part, dk_part [tiles][N][T][M]; col_part [tiles][N][M]; ybuf [N][T][D]
  void* dq_part;
  void* dk_part;
  void* col_part;
  void* ybuf;
};

// Sums the CTA's warps' columns x (each lane's m = lane + 32·j, as the state's) and writes them to out[m] (m < M),
// through sm[warp][m].
template <typename Acc, int kEpl>
__device__ __forceinline__ void cta_column_sum(const Acc (&x)[kEpl], Acc* sm, int64_t M, Acc* out) {
  const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
#pragma unroll
  for (int j = 0; j < kEpl; ++j) {
    const int64_t m = lane + kWarp * j;
    if (m < M) sm[warp * M + m] = x[j];
  }
  __syncthreads();
  for (int64_t m = threadIdx.x; m < M; m += blockDim.x) {
    Acc s = 0;
    for (int w = 0; w < kWarpsPerCta; ++w) s += sm[w * M + m];
    out[m] = s;
  }
  __syncthreads();
}

template <typename In, int kEpl>
__global__ void __launch_bounds__(kWarp* kWarpsPerCta) backward_rows_kernel(BwdArgs a) {
  using Acc = typename AccOf<In>::type;
  extern __shared__ unsigned char smem_raw[];
  Acc* sm = reinterpret_cast<Acc*>(smem_raw);  // [kWarpsPerCta][M]
  const int64_t n = blockIdx.x, tile = blockIdx.y, b = n / a.H, h = n % a.H;
  const int warp = threadIdx.x / kWarp, lane = threadIdx.x % kWarp;
  const int64_t row0 = tile * kRowsPerCta + warp * kRowsPerWarp;
  const int64_t M = a.M, D = a.D, T = a.T, N = a.N;
  Acc* dq_part = static_cast<Acc*>(a.dq_part) + (tile * N + n) * T * M;
  Acc* dk_part = static_cast<Acc*>(a.dk_part) + (tile * N + n) * T * M;
  Acc* col_part = static_cast<Acc*>(a.col_part) + (tile * N + n) * M;
  Acc* ybuf = static_cast<Acc*>(a.ybuf) + n * T * D;

  Acc S[kRowsPerWarp][kEpl];
  load_warp_state(S, a.s0, n, row0, lane, D, M);

  // Sweep 1: recompute S_t; y_t (kept in fp32) and this tile's share of dq_t = S_tᵀ dy_t.
  StepInputs<In, kEpl, true> cur, nxt;
  cur.load(a.q, a.k, a.f, a.z, a.v, &a.dy, b, 0, h, lane, row0, M, D);
  for (int64_t t = 0; t < T; ++t) {
    if (t + 1 < T) nxt.load(a.q, a.k, a.f, a.z, a.v, &a.dy, b, t + 1, h, lane, row0, M, D);
    Acc qv[kEpl], kv[kEpl], bv[kEpl], dq[kEpl] = {};
    key_side(cur, lane, M, qv, kv, bv);
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r) {
      const int64_t d = row0 + r;
      const Acc ad = sigmoid(to_acc(cur.z[r]));
      const Acc vd = to_acc(cur.v[r]);
      const Acc g = to_acc(cur.g[r]);
      Acc acc = 0;
#pragma unroll
      for (int j = 0; j < kEpl; ++j) {
        S[r][j] = S[r][j] * (ad * bv[j]) + vd * kv[j];
        acc += S[r][j] * qv[j];
        dq[j] += S[r][j] * g;
      }
      acc = warp_sum(acc);
      if (lane == 0 && d < D) ybuf[t * D + d] = acc;
    }
    cta_column_sum(dq, sm, M, dq_part + t * M);
    cur = nxt;
  }

  // S holds S_T. Seed: dS = dS_T; row sums (per row) and column sums (per tile) of dS_T ⊙ S_T.
  Acc dS[kRowsPerWarp][kEpl];
  Acc ga[kRowsPerWarp];
  load_warp_state(dS, a.dsT, n, row0, lane, D, M);
  Acc col[kEpl];
#pragma unroll
  for (int j = 0; j < kEpl; ++j) col[j] = 0;
#pragma unroll
  for (int r = 0; r < kRowsPerWarp; ++r) {
    Acc rs = 0;
#pragma unroll
    for (int j = 0; j < kEpl; ++j) {
      rs += dS[r][j] * S[r][j];
      col[j] += dS[r][j] * S[r][j];
    }
    ga[r] = warp_sum(rs);
  }
  cta_column_sum(col, sm, M, col_part);

  // Sweep 2: dS backwards; dv_t (warp reduction), this tile's dk_t, and dz_t from the row sums.
  cur.load(a.q, a.k, a.f, a.z, a.v, &a.dy, b, T - 1, h, lane, row0, M, D);
  for (int64_t t = T - 1; t >= 0; --t) {
    if (t > 0) nxt.load(a.q, a.k, a.f, a.z, a.v, &a.dy, b, t - 1, h, lane, row0, M, D);
    In* dv = ptr<In>(a.dv, b, t, h);
    In* dz = ptr<In>(a.dz, b, t, h);
    Acc qv[kEpl], kv[kEpl], bv[kEpl], dk[kEpl] = {};
    key_side(cur, lane, M, qv, kv, bv);
#pragma unroll
    for (int r = 0; r < kRowsPerWarp; ++r) {
      const int64_t d = row0 + r;
      const bool ok = d < D;
      const Acc zl = to_acc(cur.z[r]);
      const Acc ad = sigmoid(zl);
      const Acc vd = to_acc(cur.v[r]);
      const Acc g = to_acc(cur.g[r]);
      Acc acc = 0;
#pragma unroll
      for (int j = 0; j < kEpl; ++j) {
        const Acc gs = dS[r][j] + g * qv[j];  // total gradient reaching S_t
        acc += gs * kv[j];
        dk[j] += gs * vd;
        dS[r][j] = gs * (ad * bv[j]);  // passes on to S_{t-1}
      }
      acc = warp_sum(acc);
      if (ok) {
        ga[r] += ybuf[t * D + d] * g - vd * acc;
        if (lane == 0) {
          dv[d] = from_acc<In>(acc);
          dz[d] = from_acc<In>(ga[r] * sigmoid(-zl));
        }
      }
    }
    cta_column_sum(dk, sm, M, dk_part + t * M);
    cur = nxt;
  }
  store_warp_state(dS, a.ds0, n, row0, lane, D, M);
}

// dq, dk and df of one (sequence, column): sums the tiles' partials in tile order and walks time
// backwards for ∂L/∂log b_t = Σ_{s≥t}(q_s dq_s − k_s dk_s) + colsum(dS_T ⊙ S_T).
struct FinishArgs {
  int64_t N, T, H, M, tiles;
  Seq q, k, f;
  MutSeq dq, dk, df;
  const void* dq_part;
  const void* dk_part;
  const void* col_part;
};

template <typename In>
__global__ void finish_columns_kernel(FinishArgs a) {
  using Acc = typename AccOf<In>::type;
  const int64_t n = blockIdx.x, b = n / a.H, h = n % a.H;
  const int64_t M = a.M, T = a.T, N = a.N;
  const Acc* dqp = static_cast<const Acc*>(a.dq_part);
  const Acc* dkp = static_cast<const Acc*>(a.dk_part);
  const Acc* colp = static_cast<const Acc*>(a.col_part);
  for (int64_t m = threadIdx.x; m < M; m += blockDim.x) {
    Acc gb = 0;
    for (int64_t tile = 0; tile < a.tiles; ++tile) gb += colp[(tile * N + n) * M + m];
    for (int64_t t = T - 1; t >= 0; --t) {
      Acc dq = 0, dk = 0;
      for (int64_t tile = 0; tile < a.tiles; ++tile) {
        const int64_t off = ((tile * N + n) * T + t) * M + m;
        dq += dqp[off];
        dk += dkp[off];
      }
      const Acc qm = to_acc(ptr<In>(a.q, b, t, h)[m]);
      const Acc km = to_acc(ptr<In>(a.k, b, t, h)[m]);
      const Acc fm = to_acc(ptr<In>(a.f, b, t, h)[m]);
      gb += qm * dq - km * dk;
      ptr<In>(a.dq, b, t, h)[m] = from_acc<In>(dq);
      ptr<In>(a.dk, b, t, h)[m] = from_acc<In>(dk);
      ptr<In>(a.df, b, t, h)[m] = from_acc<In>(gb * sigmoid(-fm));
    }
  }
}

// ------------------------------------------------------------------------------------------------
// launch

Seq seq(const ConstSeqRef& r) { return {r.data, r.stride_b, r.stride_t, r.stride_h}; }
MutSeq seq(const SeqRef& r) { return {r.data, r.stride_b, r.stride_t, r.stride_h}; }

template <typename Fn>
cudaError_t dispatch_epl(int64_t M, Fn&& fn) {
  if (M <= 32) return fn(std::integral_constant<int, 1>{});
  if (M <= 64) return fn(std::integral_constant<int, 2>{});
  if (M <= 128) return fn(std::integral_constant<int, 4>{});
  if (M <= 256) return fn(std::integral_constant<int, 8>{});
  return cudaErrorInvalidValue;  // the adapter rejects M > 256 with a message first
}

template <typename Fn>
cudaError_t dispatch_type(ScalarType t, Fn&& fn) {
  switch (t) {
    case ScalarType::Float32: return fn(float{});
    case ScalarType::Float64: return fn(double{});
    case ScalarType::Float16: return fn(__half{});
    case ScalarType::BFloat16: return fn(__nv_bfloat16{});
  }
  return cudaErrorInvalidValue;
}

size_t acc_size(ScalarType t) { return t == ScalarType::Float64 ? sizeof(double) : sizeof(float); }

}  // namespace

int row_tiles(int64_t dim_v) { return static_cast<int>((dim_v + kRowsPerCta - 1) / kRowsPerCta); }

size_t decay_backward_workspace_bytes(const Dims& d, ScalarType dtype) {
  const int64_t N = d.batch * d.heads, tiles = row_tiles(d.dim_v);
  const int64_t elems = 2 * tiles * N * d.seqlen * d.dim_k + tiles * N * d.dim_k + N * d.seqlen * d.dim_v;
  return static_cast<size_t>(elems) * acc_size(dtype);
}

// The CUDA kernels implement the decay rule's two per-element gates only; the additive and gated
// rules reach the GPU through the decay op with unit gates (bindings/python/decayfw/rules.py).
inline bool both_gates_per_element(GateKind row, GateKind col) {
  return row == GateKind::PerElement && col == GateKind::PerElement;
}

cudaError_t decay_forward_cuda(const DecayFwdParams& p, cudaStream_t stream) {
  if (!both_gates_per_element(p.row_gate, p.col_gate)) return cudaErrorNotSupported;
  FwdArgs a{p.dims.seqlen, p.dims.heads, p.dims.dim_v, p.dims.dim_k, seq(p.q), seq(p.k), seq(p.v), seq(p.z),
            seq(p.f), seq(p.y), p.initial_state, p.final_state};
  const dim3 grid(static_cast<unsigned>(p.dims.batch * p.dims.heads), static_cast<unsigned>(row_tiles(p.dims.dim_v)));
  return dispatch_type(p.dtype, [&](auto tag) {
    using In = decltype(tag);
    return dispatch_epl(p.dims.dim_k, [&](auto epl) {
      forward_kernel<In, decltype(epl)::value><<<grid, kWarp * kWarpsPerCta, 0, stream>>>(a);
      return cudaGetLastError();
    });
  });
}

cudaError_t decay_step_cuda(const DecayStepParams& p, cudaStream_t stream) {
  if (!both_gates_per_element(p.row_gate, p.col_gate)) return cudaErrorNotSupported;
  DecayFwdParams f;
  f.dims = {p.batch, 1, p.heads, p.dim_v, p.dim_k};
  f.dtype = p.dtype;
  f.q = p.q;
  f.k = p.k;
  f.v = p.v;
  f.z = p.z;
  f.f = p.f;
  f.y = p.y;
  f.initial_state = p.state;  // read then written by the same thread: in place is safe
  f.final_state = p.state;
  return decay_forward_cuda(f, stream);
}

cudaError_t decay_backward_cuda(const DecayBwdParams& p, void* workspace, cudaStream_t stream) {
  if (!both_gates_per_element(p.row_gate, p.col_gate)) return cudaErrorNotSupported;
  const Dims& d = p.dims;
  const int64_t N = d.batch * d.heads, tiles = row_tiles(d.dim_v);
  const size_t es = acc_size(p.dtype);
  char* ws = static_cast<char*>(workspace);
  void* dq_part = ws;
  void* dk_part = ws + es * tiles * N * d.seqlen * d.dim_k;
  void* col_part = ws + es * 2 * tiles * N * d.seqlen * d.dim_k;
  void* ybuf = ws + es * (2 * tiles * N * d.seqlen * d.dim_k + tiles * N * d.dim_k);
  BwdArgs a{N, d.seqlen, d.heads, d.dim_v, d.dim_k, tiles, seq(p.q), seq(p.k), seq(p.v), seq(p.z), seq(p.f),
            seq(p.dy), seq(p.dv), seq(p.dz), p.initial_state, p.grad_final_state, p.grad_initial_state,
            dq_part, dk_part, col_part, ybuf};
  FinishArgs fa{N, d.seqlen, d.heads, d.dim_k, tiles, seq(p.q), seq(p.k), seq(p.f), seq(p.dq), seq(p.dk), seq(p.df),
                dq_part, dk_part, col_part};
  const dim3 grid(static_cast<unsigned>(N), static_cast<unsigned>(tiles));
  const size_t smem = es * kWarpsPerCta * d.dim_k;
  return dispatch_type(p.dtype, [&](auto tag) {
    using In = decltype(tag);
    cudaError_t err = dispatch_epl(d.dim_k, [&](auto epl) {
      backward_rows_kernel<In, decltype(epl)::value><<<grid, kWarp * kWarpsPerCta, smem, stream>>>(a);
      return cudaGetLastError();
    });
    if (err != cudaSuccess) return err;
    const unsigned threads = static_cast<unsigned>(d.dim_k < 256 ? ((d.dim_k + 31) / 32) * 32 : 256);
    finish_columns_kernel<In><<<static_cast<unsigned>(N), threads, 0, stream>>>(fa);
    return cudaGetLastError();
  });
}

}  // namespace decayfw::cuda
