// The additive rule (Katharopoulos et al. 2020) on CPU: S_t = S_{t-1} + v_t k_tᵀ, y_t = S_t q_t.
// It is the decay kernel with both gates removed (GateKind::None), so it shares its threading,
// numerics and stateless backward. Feature maps and attention normalisation are the layer's.
#include <ATen/ATen.h>
#include <torch/library.h>

#include <tuple>

#include "aten_executor.h"
#include "decayfw/cpu/decay_cpu.h"
#include "tensor_checks.h"

namespace decayfw::ops {
namespace {

template <typename Params>
void set_ungated(Params& p, const Dims& d, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v) {
  p.dims = d;
  p.dtype = to_scalar_type(q.scalar_type());
  p.row_gate = GateKind::None;
  p.col_gate = GateKind::None;
  p.q = const_ref(q, true);
  p.k = const_ref(k, true);
  p.v = const_ref(v, true);
}

std::tuple<at::Tensor, at::Tensor> add_fwd_cpu(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                               const c10::optional<at::Tensor>& initial_state) {
  constexpr const char* op = "decayfw.add_fwd";
  const Dims d = check_inputs(op, {{"q", q, 'M'}, {"k", k, 'M'}, {"v", v, 'D'}}, true);
  check_device(op, q, c10::DeviceType::CPU);
  if (given(initial_state)) check_state(op, "initial_state", *initial_state, d, q);
  at::Tensor y = at::empty_like(v), final_state = new_state(d, q);
  DecayFwdParams p;
  set_ungated(p, d, q, k, v);
  p.y = mut_ref(y, true);
  p.initial_state = data_or_null(initial_state);
  p.final_state = final_state.data_ptr();
  cpu::decay_forward(p, aten_executor(work_of(d)));
  return {y, final_state};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> add_bwd_cpu(
    const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const c10::optional<at::Tensor>& initial_state,
    const at::Tensor& dy, const c10::optional<at::Tensor>& grad_final_state) {
  constexpr const char* op = "decayfw.add_bwd";
  const Dims d = check_inputs(op, {{"q", q, 'M'}, {"k", k, 'M'}, {"v", v, 'D'}, {"dy", dy, 'D'}}, true);
  check_device(op, q, c10::DeviceType::CPU);
  if (given(initial_state)) check_state(op, "initial_state", *initial_state, d, q);
  if (given(grad_final_state)) check_state(op, "grad_final_state", *grad_final_state, d, q);
  at::Tensor dq = at::empty_like(q), dk = at::empty_like(k), dv = at::empty_like(v), ds0 = new_state(d, q);
  DecayBwdParams p;
  set_ungated(p, d, q, k, v);
  p.dy = const_ref(dy, true);
  p.dq = mut_ref(dq, true);
  p.dk = mut_ref(dk, true);
  p.dv = mut_ref(dv, true);
  p.initial_state = data_or_null(initial_state);
  p.grad_final_state = data_or_null(grad_final_state);
  p.grad_initial_state = ds0.data_ptr();
  cpu::decay_backward(p, aten_executor(work_of(d)));
  return {dq, dk, dv, ds0};
}

at::Tensor add_step_cpu(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, at::Tensor& state) {
  constexpr const char* op = "decayfw.add_step";
  const Dims d = check_inputs(op, {{"q", q, 'M'}, {"k", k, 'M'}, {"v", v, 'D'}}, false);
  check_device(op, q, c10::DeviceType::CPU);
  check_state(op, "state", state, d, q);
  at::Tensor y = at::empty_like(v);
  DecayStepParams p;
  set_step_sizes(p, d, q);
  p.row_gate = GateKind::None;
  p.col_gate = GateKind::None;
  p.q = const_ref(q, false);
  p.k = const_ref(k, false);
  p.v = const_ref(v, false);
  p.y = mut_ref(y, false);
  p.state = state.data_ptr();
  cpu::decay_step(p, aten_executor(work_of(d)));
  return y;
}

}  // namespace
}  // namespace decayfw::ops

TORCH_LIBRARY_IMPL(decayfw, CPU, m) {
  m.impl("add_fwd", &decayfw::ops::add_fwd_cpu);
  m.impl("add_bwd", &decayfw::ops::add_bwd_cpu);
  m.impl("add_step", &decayfw::ops::add_step_cpu);
}
