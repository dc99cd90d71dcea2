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

}  // namespace decayfw::cuda
