// The decay rule on CUDA: launchers taking the plain params structs (no framework types), enqueued
// on the caller's stream with no host synchronisation. Scratch memory for the backward is passed
// in by the caller (the ATen adapter allocates it from PyTorch's caching allocator).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>

#include "decayfw/params.h"

namespace decayfw::cuda {

// Rows of the state handled by one CTA; the backward keeps per-tile partial sums of dq and dk.
int row_tiles(int64_t dim_v);

// Bytes of scratch decay_backward_cuda needs: per row tile, fp32 (fp64 for fp64 inputs) partial
// column sums of dq and dk, and the recomputed outputs y: O(T·(M·D/32 + D)) per sequence.
size_t decay_backward_workspace_bytes(const Dims& dims, ScalarType dtype);

cudaError_t decay_forward_cuda(const DecayFwdParams& p, cudaStream_t stream);
cudaError_t decay_backward_cuda(const DecayBwdParams& p, void* workspace, cudaStream_t stream);
cudaError_t decay_step_cuda(const DecayStepParams& p, cudaStream_t stream);

// ---- the vectorised decode step (decay_step.cu; program in kernels/cuda/decay_step_program.h):
// 16-byte state accesses, key and row sides staged once per CTA. fp32/fp16/bf16 inputs, fp32 state,
// M a multiple of 4 up to 256, state 16-byte aligned; null when it can run, else why not.
const char* vector_step_unsupported_reason(const DecayStepParams& p);
cudaError_t decay_step_vector_cuda(const DecayStepParams& p, cudaStream_t stream);

// ---- the chunkwise tensor-core path (kernels/cuda/decay_chunk*.cu; algorithm in decay_chunk_program.h)
// bf16/fp16 inputs multiply on tensor cores as themselves, fp32 inputs as tf32; states, sums and
// gates are fp32. Sizes: M in {16, 32, 64, 128}, D a multiple of 64; anything else runs recurrent.

struct ChunkConfig {
  int chunk = 0;          // tokens per chunk (0: no compiled configuration)
  size_t smem_bytes = 0;  // the largest shared-memory block of its kernels
};
ChunkConfig chunk_config(ScalarType dtype, int64_t dim_k);

// Why the chunk path cannot run these sizes on a device with this much opt-in shared memory per
// block, or null when it can.
const char* chunk_unsupported_reason(const Dims& dims, ScalarType dtype, size_t max_smem_per_block);

// Workspace in bytes: the chunk-boundary states, N·(T/C + 1)·D·M floats (forward); the backward adds
// their gradients, N·(T/C)·D·M elements of the input type, and needs only those when it is given the
// forward's states (states_given).
size_t chunk_workspace_bytes(const Dims& dims, ScalarType dtype, bool backward, bool states_given = false);

// The forward's workspace holds the chunk-boundary states [B, H, T/C + 1, D, M] when it returns; a
// caller that keeps it can pass it to the backward as DecayBwdParams::chunk_states, which then
// skips recomputing them (one serial pass fewer, N·(T/C + 1)·D·M fp32 held in between).
cudaError_t decay_forward_chunk_cuda(const DecayFwdParams& p, void* workspace, cudaStream_t stream);
cudaError_t decay_backward_chunk_cuda(const DecayBwdParams& p, void* workspace, cudaStream_t stream);

}  // namespace decayfw::cuda
