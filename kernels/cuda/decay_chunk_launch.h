// What decay_chunk.cu (the entry points) and the per-type launcher files share: the workspace
// plan and the launchers, one explicit instantiation per operand type (decay_chunk_<type>.cu).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "decayfw/cuda/decay_cuda.h"
#include "decayfw/params.h"

namespace decayfw::cuda::chunk_launch {

// Threads per CTA of every chunk kernel: kMinThreads or kMaxThreads, the caller's choice
// (cuda::kChunkThreads says why it matters).
constexpr int kMinThreads = 256;
constexpr int kMaxThreads = 512;
// grad_pass_one_phase_kernel's threads, whatever the tuning's (ChunkTuning::grad_one_phase).
constexpr int kGradOnePhaseThreads = 256;

struct WorkspacePlan {  // element counts: fp32 states; state gradients in the operand type
  int64_t states = 0, dstates = 0;
  size_t dstate_bytes = sizeof(float);  // one state-gradient element: sizeof(Op)
  size_t bytes() const { return static_cast<size_t>(states) * sizeof(float) + static_cast<size_t>(dstates) * dstate_bytes; }
};

// Chunk-boundary states, fp32 [N, chunks + 1, D, M]; the backward adds their gradients,
// [N, chunks, D, M] in the operand type (op_bytes each: ChunkArgs::dstates says why), after the
// states (a multiple of 16 bytes: D·M is), and needs no room for the states when it is given the
// forward's (states_given).
inline WorkspacePlan plan_of(const Dims& d, int C, size_t op_bytes, bool backward, bool states_given = false) {
  const int64_t N = d.batch * d.heads, chunks = (d.seqlen + C - 1) / C;
  WorkspacePlan w;
  w.dstate_bytes = op_bytes;
  if (!(backward && states_given)) w.states = N * (chunks + 1) * d.dim_v * d.dim_k;
  if (backward) w.dstates = N * chunks * d.dim_v * d.dim_k;
  return w;
}

// Op: __nv_bfloat16, __half, or float (multiplied as tf32). The dims' M must be compiled
// (decay_chunk_configs.h); T > 0; tuning.threads: kMinThreads or kMaxThreads.
template <typename Op>
cudaError_t forward(const DecayFwdParams& p, void* workspace, cudaStream_t stream, ChunkForward form,
                    const ChunkTuning& tuning);
template <typename Op>
cudaError_t backward(const DecayBwdParams& p, void* workspace, cudaStream_t stream, const ChunkTuning& tuning);

extern template cudaError_t forward<__nv_bfloat16>(const DecayFwdParams&, void*, cudaStream_t, ChunkForward,
                                                   const ChunkTuning&);
extern template cudaError_t forward<__half>(const DecayFwdParams&, void*, cudaStream_t, ChunkForward,
                                            const ChunkTuning&);
extern template cudaError_t forward<float>(const DecayFwdParams&, void*, cudaStream_t, ChunkForward,
                                           const ChunkTuning&);
extern template cudaError_t backward<__nv_bfloat16>(const DecayBwdParams&, void*, cudaStream_t, const ChunkTuning&);
extern template cudaError_t backward<__half>(const DecayBwdParams&, void*, cudaStream_t, const ChunkTuning&);
extern template cudaError_t backward<float>(const DecayBwdParams&, void*, cudaStream_t, const ChunkTuning&);

}  // namespace decayfw::cuda::chunk_launch
