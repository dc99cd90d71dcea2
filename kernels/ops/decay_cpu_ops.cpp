// CPU implementations of the decay-rule ops: prepare the arguments (decay_op_args.h), run the
// kernels on PyTorch's intra-op thread pool.
#include <ATen/ATen.h>
#include <torch/library.h>

#include <tuple>

#include "aten_executor.h"
#include "decay_op_args.h"
#include "decayfw/cpu/decay_cpu.h"

namespace decayfw::ops {
namespace {

std::tuple<at::Tensor, at::Tensor> decay_fwd_cpu(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                                 const at::Tensor& z, const at::Tensor& f,
                                                 const c10::optional<at::Tensor>& initial_state) {
  DecayFwdCall c = prepare_decay_fwd(c10::DeviceType::CPU, q, k, v, z, f, initial_state);
  cpu::decay_forward(c.params, aten_executor(work_of(c.params.dims)));
  return {c.y, c.final_state};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> decay_bwd_cpu(
    const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& z, const at::Tensor& f,
    const c10::optional<at::Tensor>& initial_state, const at::Tensor& dy,
    const c10::optional<at::Tensor>& grad_final_state) {
  DecayBwdCall c = prepare_decay_bwd(c10::DeviceType::CPU, q, k, v, z, f, initial_state, dy, grad_final_state);
  cpu::decay_backward(c.params, aten_executor(work_of(c.params.dims)));
  return {c.dq, c.dk, c.dv, c.dz, c.df, c.grad_initial_state};
}

at::Tensor decay_step_cpu(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& z,
                          const at::Tensor& f, at::Tensor& state) {
  DecayStepCall c = prepare_decay_step(c10::DeviceType::CPU, q, k, v, z, f, state);
  cpu::decay_step(c.params, aten_executor(c.params.batch * c.params.heads * c.params.dim_v * c.params.dim_k));
  return c.y;
}

}  // namespace
}  // namespace decayfw::ops

TORCH_LIBRARY_IMPL(decayfw, CPU, m) {
  m.impl("decay_fwd", &decayfw::ops::decay_fwd_cpu);
  m.impl("decay_bwd", &decayfw::ops::decay_bwd_cpu);
  m.impl("decay_step", &decayfw::ops::decay_step_cpu);
}
