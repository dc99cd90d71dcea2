// The decay ops' arguments, prepared once for every device: validation (errors name the argument
// and the expected shape), output allocation (outputs take the strides of their inputs) and the
// params struct the kernels read. Device adapters only add the device check and the launch.
#pragma once

#include <ATen/ATen.h>

#include "decayfw/params.h"

namespace decayfw::ops {

struct DecayFwdCall {
  DecayFwdParams params;
  at::Tensor y, final_state;
};

struct DecayBwdCall {
  DecayBwdParams params;
  at::Tensor dq, dk, dv, dz, df, grad_initial_state;
};

struct DecayStepCall {
  DecayStepParams params;
  at::Tensor y;
};

DecayFwdCall prepare_decay_fwd(c10::DeviceType device, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                               const at::Tensor& z, const at::Tensor& f,
                               const c10::optional<at::Tensor>& initial_state);

DecayBwdCall prepare_decay_bwd(c10::DeviceType device, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                               const at::Tensor& z, const at::Tensor& f,
                               const c10::optional<at::Tensor>& initial_state, const at::Tensor& dy,
                               const c10::optional<at::Tensor>& grad_final_state);

#ifdef DECAYFW_WITH_CUDA
// The chunk size the CUDA op runs these sizes with on this device now, 0 for its recurrent path
// (decay_cuda_ops.cpp; the same choice decay_fwd and decay_bwd make).
int64_t cuda_chunk_size(const char* op, const Dims& dims, ScalarType dtype, c10::DeviceIndex device);
#endif

DecayStepCall prepare_decay_step(c10::DeviceType device, const at::Tensor& q, const at::Tensor& k,
                                 const at::Tensor& v, const at::Tensor& z, const at::Tensor& f, at::Tensor& state);

}  // namespace decayfw::ops
