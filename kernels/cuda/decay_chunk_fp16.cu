// The chunkwise path's kernels for fp16 operands. One translation unit per operand type,
// so nvcc compiles them in parallel; the kernels are in decay_chunk_kernels.cuh.
#include "decay_chunk_kernels.cuh"

namespace decayfw::cuda::chunk_launch {
template cudaError_t forward<__half>(const DecayFwdParams&, void*, cudaStream_t, ChunkForward, const ChunkTuning&);
template cudaError_t backward<__half>(const DecayBwdParams&, void*, cudaStream_t, const ChunkTuning&);
}  // namespace decayfw::cuda::chunk_launch
