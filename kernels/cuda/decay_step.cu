// Launcher of the vectorised decode step (decay_step_program.h): one CTA per (sequence, 64 rows).
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "cta/device_cta.cuh"
#include "decay_step_program.h"
#include "decayfw/cuda/decay_cuda.h"

namespace decayfw::cuda {
namespace {

constexpr int kStepThreads = 256;

template <typename In>
__global__ void __launch_bounds__(kStepThreads) step_kernel(step::StepArgs a) {
  extern __shared__ __align__(16) unsigned char smem[];
  cta::DeviceCta cta;
  step::step_program<cta::DeviceCta, In>(cta, a, blockIdx.x, blockIdx.y, smem);
}

}  // namespace

const char* vector_step_unsupported_reason(const DecayStepParams& p) {
  if (p.dtype == ScalarType::Float64) return "fp64 state";
  if (p.row_gate != GateKind::PerElement || p.col_gate != GateKind::PerElement) return "not the decay rule's gates";
  if (p.dim_k % 4 != 0 || p.dim_k > 256) return "M is not a multiple of 4 up to 256";
  if (reinterpret_cast<uintptr_t>(p.state) % 16 != 0) return "the state is not 16-byte aligned";
  if (p.batch * p.heads > int64_t(INT32_MAX)) return "too many sequences for one launch";
  return nullptr;
}

cudaError_t decay_step_vector_cuda(const DecayStepParams& p, cudaStream_t stream) {
  if (vector_step_unsupported_reason(p) != nullptr) return cudaErrorNotSupported;
  step::StepArgs a;
  a.B = p.batch, a.H = p.heads, a.D = p.dim_v, a.M = p.dim_k;
  a.q = p.q.data, a.q_sb = p.q.stride_b, a.q_sh = p.q.stride_h;
  a.k = p.k.data, a.k_sb = p.k.stride_b, a.k_sh = p.k.stride_h;
  a.v = p.v.data, a.v_sb = p.v.stride_b, a.v_sh = p.v.stride_h;
  a.z = p.z.data, a.z_sb = p.z.stride_b, a.z_sh = p.z.stride_h;
  a.f = p.f.data, a.f_sb = p.f.stride_b, a.f_sh = p.f.stride_h;
  a.y = p.y.data, a.y_sb = p.y.stride_b, a.y_sh = p.y.stride_h;
  a.state = static_cast<float*>(p.state);
  if (a.B * a.H == 0 || a.D == 0) return cudaSuccess;
  const dim3 grid(static_cast<unsigned>(a.B * a.H), static_cast<unsigned>((a.D + step::kRows - 1) / step::kRows));
  const size_t smem = step::smem_bytes(a.M);
  switch (p.dtype) {
    case ScalarType::Float32: step_kernel<float><<<grid, kStepThreads, smem, stream>>>(a); break;
    case ScalarType::Float16: step_kernel<__half><<<grid, kStepThreads, smem, stream>>>(a); break;
    case ScalarType::BFloat16: step_kernel<__nv_bfloat16><<<grid, kStepThreads, smem, stream>>>(a); break;
    case ScalarType::Float64: return cudaErrorNotSupported;
  }
  return cudaGetLastError();
}

}  // namespace decayfw::cuda
