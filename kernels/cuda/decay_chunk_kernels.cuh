// The chunkwise path's kernels and their launchers, templated on the operand type. Each operand
// type is compiled in its own translation unit (decay_chunk_bf16.cu, _fp16.cu, _tf32.cu) so nvcc
// runs them in parallel; decay_chunk.cu picks one by dtype.
//
// Forward, split: state_pass (serial over chunks per sequence and row tile), then output_pass
// (parallel over chunks and row tiles); its workspace is the chunk-boundary states, which the caller
// may keep. Forward, fused: forward_pass alone (serial, state_pass's grid), writing the states only
// when given room for them.
// Backward: state_pass again unless it is given the forward's states (p.chunk_states), then
// dstate_pass (serial, backwards) and grad_pass (parallel over chunks).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "cta/device_cta.cuh"
#include "decay_chunk_configs.h"
#include "decay_chunk_launch.h"

namespace decayfw::cuda::chunk_launch {
namespace {

using chunk::ChunkArgs;
using cta::DeviceCta;

// Compiled for up to kMaxThreads per CTA and launched with the caller's count (cuda::kChunkThreads): the
// state passes for two CTAs per multiprocessor (at most 64 registers), the others for one (their shared
// memory allows no second; without the 1, ptxas 13.0 caps them at 64 registers and spills).
template <typename Op, typename Cfg>
__global__ void __launch_bounds__(kMaxThreads, 2) state_pass_kernel(ChunkArgs a) {
  extern __shared__ __align__(128) unsigned char smem[];
  DeviceCta cta;
  chunk::state_pass<DeviceCta, Op, Cfg>(cta, a, blockIdx.x, blockIdx.y, smem);
}

template <typename Op, typename Cfg>
__global__ void __launch_bounds__(kMaxThreads, 1) output_pass_kernel(ChunkArgs a) {
  extern __shared__ __align__(128) unsigned char smem[];
  DeviceCta cta;
  const int64_t x = blockIdx.x;  // chunk-major within a sequence: n = x / chunks
  chunk::output_pass<DeviceCta, Op, Cfg>(cta, a, x / a.chunks, x % a.chunks, smem);
}

template <typename Op, typename Cfg>
__global__ void __launch_bounds__(kMaxThreads, 1) forward_pass_kernel(ChunkArgs a) {
  extern __shared__ __align__(128) unsigned char smem[];
  DeviceCta cta;
  chunk::forward_pass<DeviceCta, Op, Cfg>(cta, a, blockIdx.x, blockIdx.y, smem);
}

template <typename Op, typename Cfg>
__global__ void __launch_bounds__(kMaxThreads, 2) dstate_pass_kernel(ChunkArgs a) {
  extern __shared__ __align__(128) unsigned char smem[];
  DeviceCta cta;
  chunk::dstate_pass<DeviceCta, Op, Cfg>(cta, a, blockIdx.x, blockIdx.y, smem);
}

template <typename Op, typename Cfg>
__global__ void __launch_bounds__(kMaxThreads, 1) grad_pass_kernel(ChunkArgs a) {
  extern __shared__ __align__(128) unsigned char smem[];
  DeviceCta cta;
  const int64_t x = blockIdx.x;
  chunk::grad_pass<DeviceCta, Op, Cfg>(cta, a, x / a.chunks, x % a.chunks, smem);
}

// grad_pass with the chunk form's four chains in one phase (ChunkTuning::grad_one_phase; 16-bit operands), at
// kGradOnePhaseThreads: their registers fit there (255), where under 512 threads' 128 ptxas spills.
template <typename Op, typename Cfg>
__global__ void __launch_bounds__(kGradOnePhaseThreads, 1) grad_pass_one_phase_kernel(ChunkArgs a) {
  extern __shared__ __align__(128) unsigned char smem[];
  DeviceCta cta;
  const int64_t x = blockIdx.x;
  chunk::grad_pass<DeviceCta, Op, Cfg, true>(cta, a, x / a.chunks, x % a.chunks, smem);
}

// Launches one program kernel with its threads and shared memory (opted in above 48 KB).
template <typename Kernel>
cudaError_t launch(Kernel kernel, dim3 grid, int threads, size_t smem, cudaStream_t stream, const ChunkArgs& a) {
  cudaError_t err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem));
  if (err != cudaSuccess) return err;
  kernel<<<grid, threads, smem, stream>>>(a);
  return cudaGetLastError();
}

chunk::SeqIn view(const ConstSeqRef& r) { return {r.data, r.stride_b, r.stride_t, r.stride_h}; }
chunk::SeqOut view(const SeqRef& r) { return {r.data, r.stride_b, r.stride_t, r.stride_h}; }

// Every fp32 buffer the programs move in 16-byte accesses (states, workspace) must be aligned; the
// ATen adapter guarantees it, and a launch that would fault on a misaligned access is refused.
bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

ChunkArgs args_of(const Dims& d, int C, const ChunkTuning& tuning) {
  ChunkArgs a;
  const ChunkDiagonal diagonal = tuning.diagonal;
  a.diagonal = diagonal == ChunkDiagonal::TensorCores ? chunk::DiagonalForm::Tensor
               : diagonal == ChunkDiagonal::Chunk     ? chunk::DiagonalForm::Chunk
               : diagonal == ChunkDiagonal::Factored  ? chunk::DiagonalForm::Factored
                                                      : chunk::DiagonalForm::Elementwise;
  a.chain_products = tuning.chain_products;
  a.B = d.batch, a.T = d.seqlen, a.H = d.heads, a.D = d.dim_v, a.M = d.dim_k;
  a.chunks = (d.seqlen + C - 1) / C;
  a.tiles = d.dim_v / chunk::kRows;
  return a;
}

}  // namespace

template <typename Op>
cudaError_t forward(const DecayFwdParams& p, void* workspace, cudaStream_t stream, ChunkForward form,
                    const ChunkTuning& tuning) {
  const int threads = tuning.threads;
  return chunk::with_compiled_config<Op>(p.dims.dim_k, cudaErrorInvalidValue, [&](auto cfg) {
    using Cfg = decltype(cfg);
    if (!aligned16(p.initial_state) || !aligned16(p.final_state) || !aligned16(workspace)) return cudaErrorMisalignedAddress;
    ChunkArgs a = args_of(p.dims, Cfg::C, tuning);
    a.q = view(p.q), a.k = view(p.k), a.v = view(p.v), a.z = view(p.z), a.f = view(p.f);
    a.y = view(p.y);
    a.s0 = static_cast<const float*>(p.initial_state);
    a.final_state = static_cast<float*>(p.final_state);
    a.states = static_cast<float*>(workspace);
    a.vector_loads = chunk::inputs_allow_vector_loads(a, sizeof(Op));
    const unsigned N = static_cast<unsigned>(a.B * a.H), tiles = static_cast<unsigned>(a.tiles);
    if (form == ChunkForward::Fused)  // a null workspace: the states are not kept, nor written
      return launch(forward_pass_kernel<Op, Cfg>, dim3(N, tiles), threads, chunk::ForwardSmem<Op, Cfg>(nullptr).bytes,
                    stream, a);
    if (workspace == nullptr) return cudaErrorInvalidValue;  // output_pass reads the states
    cudaError_t err = launch(state_pass_kernel<Op, Cfg>, dim3(N, tiles), threads,
                             chunk::ScanSmem<Op, Cfg>(nullptr, false).bytes, stream, a);
    if (err != cudaSuccess) return err;
    return launch(output_pass_kernel<Op, Cfg>, dim3(static_cast<unsigned>(a.B * a.H * a.chunks)), threads,
                  chunk::ChunkSmem<Op, Cfg>(nullptr, chunk::ChunkCarve::Output).bytes, stream, a);
  });
}

template <typename Op>
cudaError_t backward(const DecayBwdParams& p, void* workspace, cudaStream_t stream, const ChunkTuning& tuning) {
  const int threads = tuning.threads;
  return chunk::with_compiled_config<Op>(p.dims.dim_k, cudaErrorInvalidValue, [&](auto cfg) {
    using Cfg = decltype(cfg);
    if (!aligned16(p.initial_state) || !aligned16(p.grad_final_state) || !aligned16(p.grad_initial_state) ||
        !aligned16(p.chunk_states) || !aligned16(workspace)) {
      return cudaErrorMisalignedAddress;
    }
    ChunkArgs a = args_of(p.dims, Cfg::C, tuning);
    a.q = view(p.q), a.k = view(p.k), a.v = view(p.v), a.z = view(p.z), a.f = view(p.f), a.dy = view(p.dy);
    a.dq = view(p.dq), a.dk = view(p.dk), a.dv = view(p.dv), a.dz = view(p.dz), a.df = view(p.df);
    a.s0 = static_cast<const float*>(p.initial_state);
    a.dsT = static_cast<const float*>(p.grad_final_state);
    a.ds0 = static_cast<float*>(p.grad_initial_state);
    a.vector_loads = chunk::inputs_allow_vector_loads(a, sizeof(Op));
    const bool reuse = p.chunk_states != nullptr;
    const WorkspacePlan w = plan_of(p.dims, Cfg::C, sizeof(Op), true, reuse);
    float* ws = static_cast<float*>(workspace);
    // The backward's passes only read the states; state_pass, which writes them, is skipped.
    a.states = reuse ? const_cast<float*>(static_cast<const float*>(p.chunk_states)) : ws;
    a.dstates = ws + w.states;  // Op elements from here
    const unsigned N = static_cast<unsigned>(a.B * a.H), tiles = static_cast<unsigned>(a.tiles);
    const size_t scan = chunk::ScanSmem<Op, Cfg>(nullptr, false).bytes;
    cudaError_t err =
        reuse ? cudaSuccess : launch(state_pass_kernel<Op, Cfg>, dim3(N, tiles), threads, scan, stream, a);
    if (err == cudaSuccess) err = launch(dstate_pass_kernel<Op, Cfg>, dim3(N, tiles), threads, scan, stream, a);
    const dim3 grid(static_cast<unsigned>(a.B * a.H * a.chunks));
    const size_t grad = chunk::ChunkSmem<Op, Cfg>(nullptr, chunk::ChunkCarve::Grad).bytes;
    if (err != cudaSuccess) return err;
    if constexpr (sizeof(Op) == 2) {  // (fp16 takes no chunk form: there only the thread count changes)
      if (tuning.grad_one_phase)
        return launch(grad_pass_one_phase_kernel<Op, Cfg>, grid, kGradOnePhaseThreads, grad, stream, a);
    }
    return launch(grad_pass_kernel<Op, Cfg>, grid, threads, grad, stream, a);
  });
}

}  // namespace decayfw::cuda::chunk_launch
