// Entry points of the chunkwise tensor-core path (decayfw/cuda/decay_cuda.h): sizes, workspace, and
// the choice of the per-type launchers (decay_chunk_<type>.cu, kernels in decay_chunk_kernels.cuh).
// Workspace (from the caller): fp32 chunk-boundary states, (T/C + 1)·D·M floats per sequence (none
// for a fused forward whose states are not kept), and their gradients in the operand type, T/C·D·M
// elements; nothing of size T·D·M.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include "decay_chunk_configs.h"
#include "decay_chunk_launch.h"
#include "decayfw/cuda/decay_cuda.h"

namespace decayfw::cuda {
namespace {

// fn(Op{}) for the operand type of a dtype; `otherwise` for fp64 (no tensor-core path).
template <typename R, typename Fn>
R with_operand(ScalarType dtype, R otherwise, Fn&& fn) {
  switch (dtype) {
    case ScalarType::BFloat16: return fn(__nv_bfloat16{});
    case ScalarType::Float16: return fn(__half{});
    case ScalarType::Float32: return fn(float{});
    case ScalarType::Float64: break;
  }
  return otherwise;
}

}  // namespace

ChunkConfig chunk_config(ScalarType dtype, int64_t dim_k) {
  return with_operand(dtype, ChunkConfig{}, [&](auto op_tag) {
    using Op = decltype(op_tag);
    return chunk::with_compiled_config<Op>(dim_k, ChunkConfig{}, [&](auto cfg) {
      using Cfg = decltype(cfg);
      ChunkConfig c;
      c.chunk = Cfg::C;
      c.smem_bytes = cta::max_size(
          cta::max_size(chunk::ChunkSmem<Op, Cfg>(nullptr, chunk::ChunkCarve::Grad).bytes,
                        chunk::ForwardSmem<Op, Cfg>(nullptr).bytes),
          cta::max_size(chunk::ChunkSmem<Op, Cfg>(nullptr, chunk::ChunkCarve::Output).bytes,
                        chunk::ScanSmem<Op, Cfg>(nullptr, false).bytes));
      return c;
    });
  });
}

const char* chunk_unsupported_reason(const Dims& d, ScalarType dtype, size_t max_smem_per_block) {
  if (dtype == ScalarType::Float64) return "fp64 inputs (the chunk path multiplies on tensor cores)";
  const ChunkConfig c = chunk_config(dtype, d.dim_k);  // chunk 0: no configuration compiled for this M
  if (c.chunk == 0) return "M is not 16, 32, 64 or 128";
  if (d.dim_v <= 0 || d.dim_v % chunk::kRows != 0) return "D is not a multiple of 64";
  if (d.batch * d.heads * ((d.seqlen + 15) / 16) > int64_t(INT32_MAX)) return "too many chunks for one launch";
  if (c.smem_bytes > max_smem_per_block) return "the device has too little shared memory per block";
  return nullptr;
}

size_t chunk_workspace_bytes(const Dims& d, ScalarType dtype, bool backward, bool states_given) {
  const ChunkConfig c = chunk_config(dtype, d.dim_k);
  const size_t op_bytes = with_operand(dtype, size_t{0}, [](auto op_tag) { return sizeof(op_tag); });
  return c.chunk == 0 ? 0 : chunk_launch::plan_of(d, c.chunk, op_bytes, backward, states_given).bytes();
}

bool chunk_threads_supported(int threads) {
  return threads == chunk_launch::kMinThreads || threads == chunk_launch::kMaxThreads;
}
static_assert(kChunkThreads == chunk_launch::kMinThreads || kChunkThreads == chunk_launch::kMaxThreads,
              "the default thread count must be one the launchers take");

ChunkForward chunk_forward_for(const Dims& d, int sm_count) {
  const int64_t ctas = d.batch * d.heads * (d.dim_v / chunk::kRows);
  return ctas >= int64_t(sm_count) ? ChunkForward::Fused : ChunkForward::Split;
}

cudaError_t decay_forward_chunk_cuda(const DecayFwdParams& p, void* workspace, cudaStream_t stream, ChunkForward form,
                                     const ChunkTuning& tuning) {
  if (p.row_gate != GateKind::PerElement || p.col_gate != GateKind::PerElement) return cudaErrorNotSupported;
  if (!chunk_threads_supported(tuning.threads)) return cudaErrorInvalidValue;
  if (p.dims.seqlen == 0) return cudaSuccess;  // the adapter copies S0 to S_T
  return with_operand(p.dtype, cudaErrorInvalidValue, [&](auto op_tag) {
    return chunk_launch::forward<decltype(op_tag)>(p, workspace, stream, form, tuning);
  });
}

cudaError_t decay_backward_chunk_cuda(const DecayBwdParams& p, void* workspace, cudaStream_t stream,
                                      const ChunkTuning& tuning) {
  if (p.row_gate != GateKind::PerElement || p.col_gate != GateKind::PerElement) return cudaErrorNotSupported;
  if (!chunk_threads_supported(tuning.threads)) return cudaErrorInvalidValue;
  if (p.dims.seqlen == 0) return cudaSuccess;  // the adapter handles T = 0
  return with_operand(p.dtype, cudaErrorInvalidValue, [&](auto op_tag) {
    return chunk_launch::backward<decltype(op_tag)>(p, workspace, stream, tuning);
  });
}

}  // namespace decayfw::cuda
