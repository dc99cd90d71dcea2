// Launchers of the chunkwise tensor-core path: the CTA programs of decay_chunk_program.h run by
// DeviceCta. Forward: state_pass (serial over chunks per sequence and row tile), then output_pass
// (parallel over chunks and row tiles). Backward: state_pass again (states are recomputed, never
// saved by the forward), dstate_pass (serial, backwards), grad_pass (parallel over chunks).
// Workspace (from the caller): fp32 chunk-boundary states and state gradients, (2·T/C + 1)·D·M
// floats per sequence; nothing of size T·D·M.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "cta/device_cta.cuh"
#include "decay_chunk_program.h"
#include "decayfw/cuda/decay_cuda.h"

namespace decayfw::cuda {
namespace {

using cta::DeviceCta;
using chunk::ChunkArgs;
constexpr int kThreads = 256;

template <typename Op, typename Cfg>
__global__ void __launch_bounds__(kThreads) state_pass_kernel(ChunkArgs a) {
  extern __shared__ __align__(128) unsigned char smem[];
  DeviceCta cta;
  chunk::state_pass<DeviceCta, Op, Cfg>(cta, a, blockIdx.x, blockIdx.y, smem);
}

template <typename Op, typename Cfg>
__global__ void __launch_bounds__(kThreads) output_pass_kernel(ChunkArgs a) {
  extern __shared__ __align__(128) unsigned char smem[];
  DeviceCta cta;
  const int64_t x = blockIdx.x;  // chunk-major within a sequence: n = x / chunks
  chunk::output_pass<DeviceCta, Op, Cfg>(cta, a, x / a.chunks, x % a.chunks, blockIdx.y, smem);
}

template <typename Op, typename Cfg>
__global__ void __launch_bounds__(kThreads) dstate_pass_kernel(ChunkArgs a) {
  extern __shared__ __align__(128) unsigned char smem[];
  DeviceCta cta;
  chunk::dstate_pass<DeviceCta, Op, Cfg>(cta, a, blockIdx.x, blockIdx.y, smem);
}

template <typename Op, typename Cfg>
__global__ void __launch_bounds__(kThreads) grad_pass_kernel(ChunkArgs a) {
  extern __shared__ __align__(128) unsigned char smem[];
  DeviceCta cta;
  const int64_t x = blockIdx.x;
  chunk::grad_pass<DeviceCta, Op, Cfg>(cta, a, x / a.chunks, x % a.chunks, smem);
}

// Launches one program kernel with its shared memory (opted in above 48 KB).
template <typename Kernel>
cudaError_t launch(Kernel kernel, dim3 grid, size_t smem, cudaStream_t stream, const ChunkArgs& a) {
  cudaError_t err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem));
  if (err != cudaSuccess) return err;
  kernel<<<grid, kThreads, smem, stream>>>(a);
  return cudaGetLastError();
}

// The configurations compiled: the chunk size per (M, operand width) is the largest that fits a
// Hopper SM's 227 KB of shared memory in the gradient pass (see chunk_config()).
template <typename Fn>
cudaError_t dispatch_config(ScalarType dtype, int64_t M, Fn&& fn) {
  auto with = [&](auto op_tag, auto m_tag, auto c_tag) {
    using Op = decltype(op_tag);
    return fn(Op{}, chunk::Config<decltype(m_tag)::value, decltype(c_tag)::value, Op>{});
  };
  using I16 = std::integral_constant<int, 16>;
  using I32 = std::integral_constant<int, 32>;
  using I64 = std::integral_constant<int, 64>;
  using I128 = std::integral_constant<int, 128>;
  auto half_width = [&](auto op_tag) -> cudaError_t {
    switch (M) {
      case 16: return with(op_tag, I16{}, I64{});
      case 32: return with(op_tag, I32{}, I64{});
      case 64: return with(op_tag, I64{}, I64{});
      case 128: return with(op_tag, I128{}, I32{});
    }
    return cudaErrorInvalidValue;
  };
  switch (dtype) {
    case ScalarType::BFloat16: return half_width(__nv_bfloat16{});
    case ScalarType::Float16: return half_width(__half{});
    case ScalarType::Float32:
      switch (M) {
        case 16: return with(float{}, I16{}, I64{});
        case 32: return with(float{}, I32{}, I32{});
        case 64: return with(float{}, I64{}, I32{});
        case 128: return with(float{}, I128{}, I16{});
      }
      return cudaErrorInvalidValue;
    case ScalarType::Float64: break;
  }
  return cudaErrorInvalidValue;
}

chunk::SeqIn view(const ConstSeqRef& r) { return {r.data, r.stride_b, r.stride_t, r.stride_h}; }
chunk::SeqOut view(const SeqRef& r) { return {r.data, r.stride_b, r.stride_t, r.stride_h}; }

ChunkArgs args_of(const Dims& d, int C) {
  ChunkArgs a;
  a.B = d.batch, a.T = d.seqlen, a.H = d.heads, a.D = d.dim_v, a.M = d.dim_k;
  a.chunks = (d.seqlen + C - 1) / C;
  a.tiles = d.dim_v / chunk::kRows;
  return a;
}

struct WorkspacePlan {  // fp32 element counts
  int64_t states = 0, dstates = 0;
  size_t bytes() const { return static_cast<size_t>(states + dstates) * sizeof(float); }
};

WorkspacePlan plan_of(const Dims& d, int C, bool backward) {
  const int64_t N = d.batch * d.heads, chunks = (d.seqlen + C - 1) / C;
  WorkspacePlan w;
  w.states = N * (chunks + 1) * d.dim_v * d.dim_k;
  if (backward) w.dstates = N * chunks * d.dim_v * d.dim_k;
  return w;
}

}  // namespace

ChunkConfig chunk_config(ScalarType dtype, int64_t dim_k) {
  ChunkConfig c;
  dispatch_config(dtype, dim_k, [&](auto op_tag, auto cfg) {
    using Op = decltype(op_tag);
    using Cfg = decltype(cfg);
    c.chunk = Cfg::C;
    c.smem_bytes = cta::max_size(chunk::ChunkSmem<Op, Cfg>(nullptr, true).bytes,
                                 cta::max_size(chunk::ChunkSmem<Op, Cfg>(nullptr, false).bytes,
                                               chunk::ScanSmem<Op, Cfg>(nullptr, false).bytes));
    return cudaSuccess;
  });
  return c;
}

const char* chunk_unsupported_reason(const Dims& d, ScalarType dtype, size_t max_smem_per_block) {
  if (dtype == ScalarType::Float64) return "fp64 inputs (the chunk path multiplies on tensor cores)";
  if (!(d.dim_k == 16 || d.dim_k == 32 || d.dim_k == 64 || d.dim_k == 128)) return "M is not 16, 32, 64 or 128";
  if (d.dim_v <= 0 || d.dim_v % chunk::kRows != 0) return "D is not a multiple of 64";
  if (d.batch * d.heads * ((d.seqlen + 15) / 16) > int64_t(INT32_MAX)) return "too many chunks for one launch";
  const ChunkConfig c = chunk_config(dtype, d.dim_k);
  if (c.smem_bytes > max_smem_per_block) return "the device has too little shared memory per block";
  return nullptr;
}

size_t chunk_workspace_bytes(const Dims& d, ScalarType dtype, bool backward) {
  const ChunkConfig c = chunk_config(dtype, d.dim_k);
  return c.chunk == 0 ? 0 : plan_of(d, c.chunk, backward).bytes();
}

cudaError_t decay_forward_chunk_cuda(const DecayFwdParams& p, void* workspace, cudaStream_t stream) {
  if (p.row_gate != GateKind::PerElement || p.col_gate != GateKind::PerElement) return cudaErrorNotSupported;
  if (p.dims.seqlen == 0) return cudaSuccess;  // the adapter copies S0 to S_T
  return dispatch_config(p.dtype, p.dims.dim_k, [&](auto op_tag, auto cfg) {
    using Op = decltype(op_tag);
    using Cfg = decltype(cfg);
    ChunkArgs a = args_of(p.dims, Cfg::C);
    a.q = view(p.q), a.k = view(p.k), a.v = view(p.v), a.z = view(p.z), a.f = view(p.f);
    a.y = view(p.y);
    a.s0 = static_cast<const float*>(p.initial_state);
    a.final_state = static_cast<float*>(p.final_state);
    a.states = static_cast<float*>(workspace);
    const unsigned N = static_cast<unsigned>(a.B * a.H), tiles = static_cast<unsigned>(a.tiles);
    cudaError_t err = launch(state_pass_kernel<Op, Cfg>, dim3(N, tiles), chunk::ScanSmem<Op, Cfg>(nullptr, false).bytes,
                             stream, a);
    if (err != cudaSuccess) return err;
    return launch(output_pass_kernel<Op, Cfg>, dim3(static_cast<unsigned>(a.B * a.H * a.chunks), tiles),
                  chunk::ChunkSmem<Op, Cfg>(nullptr, false).bytes, stream, a);
  });
}

cudaError_t decay_backward_chunk_cuda(const DecayBwdParams& p, void* workspace, cudaStream_t stream) {
  if (p.row_gate != GateKind::PerElement || p.col_gate != GateKind::PerElement) return cudaErrorNotSupported;
  if (p.dims.seqlen == 0) return cudaSuccess;  // the adapter handles T = 0
  return dispatch_config(p.dtype, p.dims.dim_k, [&](auto op_tag, auto cfg) {
    using Op = decltype(op_tag);
    using Cfg = decltype(cfg);
    ChunkArgs a = args_of(p.dims, Cfg::C);
    a.q = view(p.q), a.k = view(p.k), a.v = view(p.v), a.z = view(p.z), a.f = view(p.f), a.dy = view(p.dy);
    a.dq = view(p.dq), a.dk = view(p.dk), a.dv = view(p.dv), a.dz = view(p.dz), a.df = view(p.df);
    a.s0 = static_cast<const float*>(p.initial_state);
    a.dsT = static_cast<const float*>(p.grad_final_state);
    a.ds0 = static_cast<float*>(p.grad_initial_state);
    const WorkspacePlan w = plan_of(p.dims, Cfg::C, true);
    float* ws = static_cast<float*>(workspace);
    a.states = ws;
    a.dstates = ws + w.states;
    const unsigned N = static_cast<unsigned>(a.B * a.H), tiles = static_cast<unsigned>(a.tiles);
    const size_t scan = chunk::ScanSmem<Op, Cfg>(nullptr, false).bytes;
    cudaError_t err = launch(state_pass_kernel<Op, Cfg>, dim3(N, tiles), scan, stream, a);
    if (err == cudaSuccess) err = launch(dstate_pass_kernel<Op, Cfg>, dim3(N, tiles), scan, stream, a);
    if (err == cudaSuccess)
      err = launch(grad_pass_kernel<Op, Cfg>, dim3(static_cast<unsigned>(a.B * a.H * a.chunks)),
                   chunk::ChunkSmem<Op, Cfg>(nullptr, true).bytes, stream, a);
    return err;
  });
}

}  // namespace decayfw::cuda
