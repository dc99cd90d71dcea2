// CPU implementations of the decay-rule ops: validate, fill the params struct, run the kernel on
// PyTorch's intra-op thread pool.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <tuple>

#include "decayfw/cpu/decay_cpu.h"
#include "tensor_checks.h"

namespace decayfw::ops {
namespace {

cpu::Executor aten_executor() {
  cpu::Executor ex;
  ex.num_threads = at::get_num_threads();
  ex.parallel_for = [](int64_t n, const std::function<void(int64_t, int64_t)>& body) {
    at::parallel_for(0, n, 1, body);
  };
  return ex;
}

void check_cpu(const char* op, const at::Tensor& t) {
  TORCH_CHECK(t.device().is_cpu(), op, ": the CPU kernel got a tensor on ", t.device());
}

std::tuple<at::Tensor, at::Tensor> decay_fwd_cpu(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                                 const at::Tensor& z, const at::Tensor& f,
                                                 const c10::optional<at::Tensor>& initial_state) {
  constexpr const char* op = "decayfw.decay_fwd";
  const Dims d = check_inputs(op, {{"q", q, 'M'}, {"k", k, 'M'}, {"v", v, 'D'}, {"z", z, 'D'}, {"f", f, 'M'}}, true);
  check_cpu(op, q);
  const bool has_s0 = initial_state.has_value() && initial_state->defined();
  if (has_s0) check_state(op, "initial_state", *initial_state, d, q);
  at::Tensor y = at::empty_like(v);
  at::Tensor sT = at::empty({d.batch, d.heads, d.dim_v, d.dim_k}, q.options().dtype(state_dtype_for(q.scalar_type())));
  DecayFwdParams p;
  p.dims = d;
  p.dtype = to_scalar_type(q.scalar_type());
  p.q = const_ref(q, true);
  p.k = const_ref(k, true);
  p.v = const_ref(v, true);
  p.z = const_ref(z, true);
  p.f = const_ref(f, true);
  p.y = mut_ref(y, true);
  p.initial_state = has_s0 ? initial_state->data_ptr() : nullptr;
  p.final_state = sT.data_ptr();
  cpu::decay_forward(p, aten_executor());
  return {y, sT};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> decay_bwd_cpu(
    const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& z, const at::Tensor& f,
    const c10::optional<at::Tensor>& initial_state, const at::Tensor& dy,
    const c10::optional<at::Tensor>& grad_final_state) {
  constexpr const char* op = "decayfw.decay_bwd";
  const Dims d = check_inputs(
      op, {{"q", q, 'M'}, {"k", k, 'M'}, {"v", v, 'D'}, {"z", z, 'D'}, {"f", f, 'M'}, {"dy", dy, 'D'}}, true);
  check_cpu(op, q);
  const bool has_s0 = initial_state.has_value() && initial_state->defined();
  const bool has_dst = grad_final_state.has_value() && grad_final_state->defined();
  if (has_s0) check_state(op, "initial_state", *initial_state, d, q);
  if (has_dst) check_state(op, "grad_final_state", *grad_final_state, d, q);
  at::Tensor dq = at::empty_like(q), dk = at::empty_like(k), dv = at::empty_like(v), dz = at::empty_like(z),
             df = at::empty_like(f);
  at::Tensor ds0 =
      at::empty({d.batch, d.heads, d.dim_v, d.dim_k}, q.options().dtype(state_dtype_for(q.scalar_type())));
  DecayBwdParams p;
  p.dims = d;
  p.dtype = to_scalar_type(q.scalar_type());
  p.q = const_ref(q, true);
  p.k = const_ref(k, true);
  p.v = const_ref(v, true);
  p.z = const_ref(z, true);
  p.f = const_ref(f, true);
  p.dy = const_ref(dy, true);
  p.dq = mut_ref(dq, true);
  p.dk = mut_ref(dk, true);
  p.dv = mut_ref(dv, true);
  p.dz = mut_ref(dz, true);
  p.df = mut_ref(df, true);
  p.initial_state = has_s0 ? initial_state->data_ptr() : nullptr;
  p.grad_final_state = has_dst ? grad_final_state->data_ptr() : nullptr;
  p.grad_initial_state = ds0.data_ptr();
  cpu::decay_backward(p, aten_executor());
  return {dq, dk, dv, dz, df, ds0};
}

at::Tensor decay_step_cpu(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& z,
                          const at::Tensor& f, at::Tensor& state) {
  constexpr const char* op = "decayfw.decay_step";
  const Dims d = check_inputs(op, {{"q", q, 'M'}, {"k", k, 'M'}, {"v", v, 'D'}, {"z", z, 'D'}, {"f", f, 'M'}}, false);
  check_cpu(op, q);
  check_state(op, "state", state, d, q);
  at::Tensor y = at::empty_like(v);
  DecayStepParams p;
  p.batch = d.batch;
  p.heads = d.heads;
  p.dim_v = d.dim_v;
  p.dim_k = d.dim_k;
  p.dtype = to_scalar_type(q.scalar_type());
  p.q = const_ref(q, false);
  p.k = const_ref(k, false);
  p.v = const_ref(v, false);
  p.z = const_ref(z, false);
  p.f = const_ref(f, false);
  p.y = mut_ref(y, false);
  p.state = state.data_ptr();
  cpu::decay_step(p, aten_executor());
  return y;
}

}  // namespace
}  // namespace decayfw::ops

TORCH_LIBRARY_IMPL(decayfw, CPU, m) {
  m.impl("decay_fwd", &decayfw::ops::decay_fwd_cpu);
  m.impl("decay_bwd", &decayfw::ops::decay_bwd_cpu);
  m.impl("decay_step", &decayfw::ops::decay_step_cpu);
}
