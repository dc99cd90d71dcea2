// CPU implementations of the decay-rule ops: prepare the arguments (decay_op_args.h), run the
// kernels on PyTorch's intra-op thread pool.
#include <ATen/ATen.h>
#include <torch/library.h>

#include <tuple>

#include "aten_executor.h"
#include "decay_op_args.h"
#include "decayfw/cpu/decay_cpu.h"
#include "tensor_checks.h"

namespace decayfw::ops {
namespace {

std::tuple<at::Tensor, at::Tensor> decay_fwd_cpu(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                                 const at::Tensor& z, const at::Tensor& f,
                                                 const c10::optional<at::Tensor>& initial_state) {
  DecayFwdCall c = prepare_decay_fwd(c10::DeviceType::CPU, q, k, v, z, f, initial_state);
  cpu::decay_forward(c.params, aten_executor(work_of(c.params.dims)));
  return {c.y, c.final_state};
}

// The CPU backward recomputes everything in one fused pass per sequence, so the training forward
// keeps nothing beyond decay_fwd's outputs.
std::tuple<at::Tensor, at::Tensor, at::Tensor> decay_fwd_train_cpu(const at::Tensor& q, const at::Tensor& k,
                                                                   const at::Tensor& v, const at::Tensor& z,
                                                                   const at::Tensor& f,
                                                                   const c10::optional<at::Tensor>& initial_state) {
  auto [y, final_state] = decay_fwd_cpu(q, k, v, z, f, initial_state);
  return {y, final_state, at::empty({0}, q.options().dtype(at::kFloat))};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> decay_bwd_cpu(
    const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& z, const at::Tensor& f,
    const c10::optional<at::Tensor>& initial_state, const at::Tensor& dy,
    const c10::optional<at::Tensor>& grad_final_state, const c10::optional<at::Tensor>& chunk_states) {
  DecayBwdCall c = prepare_decay_bwd(c10::DeviceType::CPU, q, k, v, z, f, initial_state, dy, grad_final_state);
  chunk_states_or_null("decayfw.decay_bwd", chunk_states, c.params.dims, 0, q);  // validated, not used
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
  m.impl("decay_fwd_train", &decayfw::ops::decay_fwd_train_cpu);
  m.impl("decay_bwd", &decayfw::ops::decay_bwd_cpu);
  m.impl("decay_step", &decayfw::ops::decay_step_cpu);
}
