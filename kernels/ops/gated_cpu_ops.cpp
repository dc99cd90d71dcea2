// The gated rule (Peng et al. 2021, RFA-gate; the paper's Eq. 5) on CPU:
//   S_t = g_t S_{t-1} + (1 − g_t) v_t k_tᵀ,   y_t = S_t q_t,   g_t = σ(g logit), one per head and step.
// It runs the decay kernel with one row gate per head (GateKind::PerHead) and no column gate, on
// values pre-scaled by (1 − g_t); the scaling's gradient is added here. Eq. 5's normaliser
// z_t = g_t z_{t-1} + (1 − g_t) k_t is the same recurrence on a value of ones, which the layer
// appends to v (decayfw.nn), so this op needs no second state.
#include <ATen/ATen.h>
#include <torch/library.h>

#include <tuple>

#include "aten_executor.h"
#include "decayfw/cpu/decay_cpu.h"
#include "tensor_checks.h"

namespace decayfw::ops {
namespace {

at::ScalarType acc_type(const at::Tensor& t) { return t.scalar_type() == at::kDouble ? at::kDouble : at::kFloat; }

// v ⊙ (1 − σ(g)) in the inputs' dtype, computed in the accumulation type.
at::Tensor scaled_values(const at::Tensor& v, const at::Tensor& g) {
  const auto acc = acc_type(v);
  return (v.to(acc) * (1 - at::sigmoid(g.to(acc))).unsqueeze(-1)).to(v.scalar_type());
}

template <typename Params>
void set_gated(Params& p, const at::Tensor& q, const at::Tensor& k, const at::Tensor& vw,
               const at::Tensor& g, bool has_time) {
  p.dtype = to_scalar_type(q.scalar_type());
  p.row_gate = GateKind::PerHead;
  p.col_gate = GateKind::None;
  p.q = const_ref(q, has_time);
  p.k = const_ref(k, has_time);
  p.v = const_ref(vw, has_time);
  p.z = const_ref(g, has_time);
}

std::tuple<at::Tensor, at::Tensor> gated_fwd_cpu(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                                 const at::Tensor& g, const c10::optional<at::Tensor>& initial_state) {
  constexpr const char* op = "decayfw.gated_fwd";
  const Dims d = check_inputs(op, {{"q", q, 'M'}, {"k", k, 'M'}, {"v", v, 'D'}}, true);
  check_head_scalar(op, "g", g, d, true, q);
  check_device(op, q, c10::DeviceType::CPU);
  if (given(initial_state)) check_state(op, "initial_state", *initial_state, d, q);
  const at::Tensor vw = scaled_values(v, g);
  at::Tensor y = at::empty_like(v), final_state = new_state(d, q);
  DecayFwdParams p;
  p.dims = d;
  set_gated(p, q, k, vw, g, true);
  p.y = mut_ref(y, true);
  p.initial_state = data_or_null(initial_state);
  p.final_state = final_state.data_ptr();
  cpu::decay_forward(p, aten_executor(work_of(d)));
  return {y, final_state};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> gated_bwd_cpu(
    const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& g,
    const c10::optional<at::Tensor>& initial_state, const at::Tensor& dy,
    const c10::optional<at::Tensor>& grad_final_state) {
  constexpr const char* op = "decayfw.gated_bwd";
  const Dims d = check_inputs(op, {{"q", q, 'M'}, {"k", k, 'M'}, {"v", v, 'D'}, {"dy", dy, 'D'}}, true);
  check_head_scalar(op, "g", g, d, true, q);
  check_device(op, q, c10::DeviceType::CPU);
  if (given(initial_state)) check_state(op, "initial_state", *initial_state, d, q);
  if (given(grad_final_state)) check_state(op, "grad_final_state", *grad_final_state, d, q);
  const at::Tensor vw = scaled_values(v, g);
  at::Tensor dq = at::empty_like(q), dk = at::empty_like(k), dvw = at::empty_like(vw), ds0 = new_state(d, q);
  at::Tensor dg_decay = at::empty({d.batch, d.seqlen, d.heads}, g.options());  // through the row gate
  DecayBwdParams p;
  p.dims = d;
  set_gated(p, q, k, vw, g, true);
  p.dy = const_ref(dy, true);
  p.dq = mut_ref(dq, true);
  p.dk = mut_ref(dk, true);
  p.dv = mut_ref(dvw, true);
  p.dz = mut_ref(dg_decay, true);
  p.initial_state = data_or_null(initial_state);
  p.grad_final_state = data_or_null(grad_final_state);
  p.grad_initial_state = ds0.data_ptr();
  cpu::decay_backward(p, aten_executor(work_of(d)));
  // Through the write scale w = 1 − σ(g): dv = w·dvw, ∂L/∂g += −σ(g)(1 − σ(g)) Σ_d v_d dvw_d.
  const auto acc = acc_type(v);
  const at::Tensor sg = at::sigmoid(g.to(acc));
  const at::Tensor dvw_acc = dvw.to(acc);
  at::Tensor dv = (dvw_acc * (1 - sg).unsqueeze(-1)).to(v.scalar_type());
  at::Tensor dg = (dg_decay.to(acc) - sg * (1 - sg) * (dvw_acc * v.to(acc)).sum(-1)).to(g.scalar_type());
  return {dq, dk, dv, dg, ds0};
}

at::Tensor gated_step_cpu(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& g,
                          at::Tensor& state) {
  constexpr const char* op = "decayfw.gated_step";
  const Dims d = check_inputs(op, {{"q", q, 'M'}, {"k", k, 'M'}, {"v", v, 'D'}}, false);
  check_head_scalar(op, "g", g, d, false, q);
  check_device(op, q, c10::DeviceType::CPU);
  check_state(op, "state", state, d, q);
  const at::Tensor vw = scaled_values(v, g);
  at::Tensor y = at::empty_like(v);
  DecayStepParams p;
  set_step_sizes(p, d, q);  // set_gated sets the dtype again, the same
  set_gated(p, q, k, vw, g, false);
  p.y = mut_ref(y, false);
  p.state = state.data_ptr();
  cpu::decay_step(p, aten_executor(work_of(d)));
  return y;
}

}  // namespace
}  // namespace decayfw::ops

TORCH_LIBRARY_IMPL(decayfw, CPU, m) {
  m.impl("gated_fwd", &decayfw::ops::gated_fwd_cpu);
  m.impl("gated_bwd", &decayfw::ops::gated_bwd_cpu);
  m.impl("gated_step", &decayfw::ops::gated_step_cpu);
}
