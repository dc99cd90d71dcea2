// The delta rule (Schlag et al. 2021; the paper's Eq. 6) on CPU:
//   S_t = S_{t-1} + β_t (v_t − S_{t-1} k_t) k_tᵀ,   y_t = S_t q_t,   β_t = σ(beta logit) per head and step.
// The feature map and the sum normalisation φ(x)/Σφ(x) of q and k are the layer's (decayfw.nn).
#include <ATen/ATen.h>
#include <torch/library.h>

#include <tuple>

#include "aten_executor.h"
#include "decayfw/cpu/delta_cpu.h"
#include "tensor_checks.h"

namespace decayfw::ops {
namespace {

std::tuple<at::Tensor, at::Tensor> delta_fwd_cpu(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                                 const at::Tensor& beta,
                                                 const c10::optional<at::Tensor>& initial_state) {
  constexpr const char* op = "decayfw.delta_fwd";
  const Dims d = check_inputs(op, {{"q", q, 'M'}, {"k", k, 'M'}, {"v", v, 'D'}}, true);
  check_head_scalar(op, "beta", beta, d, true, q);
  check_device(op, q, c10::DeviceType::CPU);
  if (given(initial_state)) check_state(op, "initial_state", *initial_state, d, q);
  at::Tensor y = at::empty_like(v), final_state = new_state(d, q);
  DeltaFwdParams p;
  p.dims = d;
  p.dtype = to_scalar_type(q.scalar_type());
  p.q = const_ref(q, true);
  p.k = const_ref(k, true);
  p.v = const_ref(v, true);
  p.beta = const_ref(beta, true);
  p.y = mut_ref(y, true);
  p.initial_state = data_or_null(initial_state);
  p.final_state = final_state.data_ptr();
  cpu::delta_forward(p, aten_executor(work_of(d)));
  return {y, final_state};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> delta_bwd_cpu(
    const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& beta,
    const c10::optional<at::Tensor>& initial_state, const at::Tensor& dy,
    const c10::optional<at::Tensor>& grad_final_state) {
  constexpr const char* op = "decayfw.delta_bwd";
  const Dims d = check_inputs(op, {{"q", q, 'M'}, {"k", k, 'M'}, {"v", v, 'D'}, {"dy", dy, 'D'}}, true);
  check_head_scalar(op, "beta", beta, d, true, q);
  check_device(op, q, c10::DeviceType::CPU);
  if (given(initial_state)) check_state(op, "initial_state", *initial_state, d, q);
  if (given(grad_final_state)) check_state(op, "grad_final_state", *grad_final_state, d, q);
  at::Tensor dq = at::empty_like(q), dk = at::empty_like(k), dv = at::empty_like(v), ds0 = new_state(d, q);
  at::Tensor dbeta = at::empty({d.batch, d.seqlen, d.heads}, beta.options());
  DeltaBwdParams p;
  p.dims = d;
  p.dtype = to_scalar_type(q.scalar_type());
  p.q = const_ref(q, true);
  p.k = const_ref(k, true);
  p.v = const_ref(v, true);
  p.beta = const_ref(beta, true);
  p.dy = const_ref(dy, true);
  p.dq = mut_ref(dq, true);
  p.dk = mut_ref(dk, true);
  p.dv = mut_ref(dv, true);
  p.dbeta = mut_ref(dbeta, true);
  p.initial_state = data_or_null(initial_state);
  p.grad_final_state = data_or_null(grad_final_state);
  p.grad_initial_state = ds0.data_ptr();
  cpu::delta_backward(p, aten_executor(work_of(d)));
  return {dq, dk, dv, dbeta, ds0};
}

at::Tensor delta_step_cpu(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& beta,
                          at::Tensor& state) {
  constexpr const char* op = "decayfw.delta_step";
  const Dims d = check_inputs(op, {{"q", q, 'M'}, {"k", k, 'M'}, {"v", v, 'D'}}, false);
  check_head_scalar(op, "beta", beta, d, false, q);
  check_device(op, q, c10::DeviceType::CPU);
  check_state(op, "state", state, d, q);
  at::Tensor y = at::empty_like(v);
  DeltaStepParams p;
  set_step_sizes(p, d, q);
  p.q = const_ref(q, false);
  p.k = const_ref(k, false);
  p.v = const_ref(v, false);
  p.beta = const_ref(beta, false);
  p.y = mut_ref(y, false);
  p.state = state.data_ptr();
  cpu::delta_step(p, aten_executor(work_of(d)));
  return y;
}

}  // namespace
}  // namespace decayfw::ops

TORCH_LIBRARY_IMPL(decayfw, CPU, m) {
  m.impl("delta_fwd", &decayfw::ops::delta_fwd_cpu);
  m.impl("delta_bwd", &decayfw::ops::delta_bwd_cpu);
  m.impl("delta_step", &decayfw::ops::delta_step_cpu);
}
