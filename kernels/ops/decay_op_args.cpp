#include "decay_op_args.h"

#include <c10/util/Exception.h>

#include "tensor_checks.h"

namespace decayfw::ops {
namespace {

// The sequence inputs shared by the forward and backward params structs.
template <typename Params>
void set_sequence_inputs(Params& p, const Dims& d, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                         const at::Tensor& z, const at::Tensor& f) {
  p.dims = d;
  p.dtype = to_scalar_type(q.scalar_type());
  p.q = const_ref(q, true);
  p.k = const_ref(k, true);
  p.v = const_ref(v, true);
  p.z = const_ref(z, true);
  p.f = const_ref(f, true);
}

}  // namespace

DecayFwdCall prepare_decay_fwd(c10::DeviceType device, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                               const at::Tensor& z, const at::Tensor& f,
                               const c10::optional<at::Tensor>& initial_state) {
  constexpr const char* op = "decayfw.decay_fwd";
  const Dims d = check_inputs(op, {{"q", q, 'M'}, {"k", k, 'M'}, {"v", v, 'D'}, {"z", z, 'D'}, {"f", f, 'M'}}, true);
  check_device(op, q, device);
  if (given(initial_state)) check_state(op, "initial_state", *initial_state, d, q);
  DecayFwdCall c{{}, at::empty_like(v), new_state(d, q)};
  DecayFwdParams& p = c.params;
  set_sequence_inputs(p, d, q, k, v, z, f);
  p.y = mut_ref(c.y, true);
  p.initial_state = data_or_null(initial_state);
  p.final_state = c.final_state.data_ptr();
  return c;
}

DecayBwdCall prepare_decay_bwd(c10::DeviceType device, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                               const at::Tensor& z, const at::Tensor& f,
                               const c10::optional<at::Tensor>& initial_state, const at::Tensor& dy,
                               const c10::optional<at::Tensor>& grad_final_state) {
  constexpr const char* op = "decayfw.decay_bwd";
  const Dims d = check_inputs(
      op, {{"q", q, 'M'}, {"k", k, 'M'}, {"v", v, 'D'}, {"z", z, 'D'}, {"f", f, 'M'}, {"dy", dy, 'D'}}, true);
  check_device(op, q, device);
  if (given(initial_state)) check_state(op, "initial_state", *initial_state, d, q);
  if (given(grad_final_state)) check_state(op, "grad_final_state", *grad_final_state, d, q);
  DecayBwdCall c{{}, at::empty_like(q), at::empty_like(k), at::empty_like(v), at::empty_like(z), at::empty_like(f),
                 new_state(d, q)};
  DecayBwdParams& p = c.params;
  set_sequence_inputs(p, d, q, k, v, z, f);
  p.dy = const_ref(dy, true);
  p.dq = mut_ref(c.dq, true);
  p.dk = mut_ref(c.dk, true);
  p.dv = mut_ref(c.dv, true);
  p.dz = mut_ref(c.dz, true);
  p.df = mut_ref(c.df, true);
  p.initial_state = data_or_null(initial_state);
  p.grad_final_state = data_or_null(grad_final_state);
  p.grad_initial_state = c.grad_initial_state.data_ptr();
  return c;
}

DecayStepCall prepare_decay_step(c10::DeviceType device, const at::Tensor& q, const at::Tensor& k,
                                 const at::Tensor& v, const at::Tensor& z, const at::Tensor& f, at::Tensor& state) {
  constexpr const char* op = "decayfw.decay_step";
  const Dims d = check_inputs(op, {{"q", q, 'M'}, {"k", k, 'M'}, {"v", v, 'D'}, {"z", z, 'D'}, {"f", f, 'M'}}, false);
  check_device(op, q, device);
  check_state(op, "state", state, d, q);
  DecayStepCall c{{}, at::empty_like(v)};
  DecayStepParams& p = c.params;
  set_step_sizes(p, d, q);
  p.q = const_ref(q, false);
  p.k = const_ref(k, false);
  p.v = const_ref(v, false);
  p.z = const_ref(z, false);
  p.f = const_ref(f, false);
  p.y = mut_ref(c.y, false);
  p.state = state.data_ptr();
  return c;
}

}  // namespace decayfw::ops
