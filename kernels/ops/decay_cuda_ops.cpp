// CUDA implementations of the decay-rule ops: validate, fill the params struct, launch on
// PyTorch's current stream (no host synchronisation), scratch from PyTorch's caching allocator.
// Built only when the LibTorch found has CUDA.
#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <tuple>

#include "decayfw/cuda/decay_cuda.h"
#include "tensor_checks.h"

namespace decayfw::ops {
namespace {

constexpr int64_t kMaxKeyDim = 256;  // the register-resident recurrent kernels' limit

void check_cuda(const char* op, const at::Tensor& t, const Dims& d) {
  TORCH_CHECK(t.is_cuda(), op, ": the CUDA kernel got a tensor on ", t.device());
  TORCH_CHECK(d.dim_k <= kMaxKeyDim, op, ": key dimension M = ", d.dim_k, " is larger than the CUDA kernels' limit of ",
              kMaxKeyDim, "; use M <= ", kMaxKeyDim);
  TORCH_CHECK(d.batch * d.heads <= int64_t(INT32_MAX), op, ": B*H = ", d.batch * d.heads, " sequences is too many");
}

void check_launch(const char* op, cudaError_t err) {
  TORCH_CHECK(err == cudaSuccess, op, ": CUDA launch failed: ", cudaGetErrorString(err));
}

std::tuple<at::Tensor, at::Tensor> decay_fwd_cuda(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                                  const at::Tensor& z, const at::Tensor& f,
                                                  const c10::optional<at::Tensor>& initial_state) {
  constexpr const char* op = "decayfw.decay_fwd";
  const Dims d = check_inputs(op, {{"q", q, 'M'}, {"k", k, 'M'}, {"v", v, 'D'}, {"z", z, 'D'}, {"f", f, 'M'}}, true);
  check_cuda(op, q, d);
  const bool has_s0 = initial_state.has_value() && initial_state->defined();
  if (has_s0) check_state(op, "initial_state", *initial_state, d, q);
  const c10::cuda::CUDAGuard guard(q.device());
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
  check_launch(op, cuda::decay_forward_cuda(p, at::cuda::getCurrentCUDAStream()));
  return {y, sT};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> decay_bwd_cuda(
    const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& z, const at::Tensor& f,
    const c10::optional<at::Tensor>& initial_state, const at::Tensor& dy,
    const c10::optional<at::Tensor>& grad_final_state) {
  constexpr const char* op = "decayfw.decay_bwd";
  const Dims d = check_inputs(
      op, {{"q", q, 'M'}, {"k", k, 'M'}, {"v", v, 'D'}, {"z", z, 'D'}, {"f", f, 'M'}, {"dy", dy, 'D'}}, true);
  check_cuda(op, q, d);
  const bool has_s0 = initial_state.has_value() && initial_state->defined();
  const bool has_dst = grad_final_state.has_value() && grad_final_state->defined();
  if (has_s0) check_state(op, "initial_state", *initial_state, d, q);
  if (has_dst) check_state(op, "grad_final_state", *grad_final_state, d, q);
  const c10::cuda::CUDAGuard guard(q.device());
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
  const size_t bytes = cuda::decay_backward_workspace_bytes(d, p.dtype);
  at::Tensor workspace = at::empty({static_cast<int64_t>(bytes)}, q.options().dtype(at::kByte));
  check_launch(op, cuda::decay_backward_cuda(p, workspace.data_ptr(), at::cuda::getCurrentCUDAStream()));
  return {dq, dk, dv, dz, df, ds0};
}

at::Tensor decay_step_cuda(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& z,
                           const at::Tensor& f, at::Tensor& state) {
  constexpr const char* op = "decayfw.decay_step";
  const Dims d = check_inputs(op, {{"q", q, 'M'}, {"k", k, 'M'}, {"v", v, 'D'}, {"z", z, 'D'}, {"f", f, 'M'}}, false);
  check_cuda(op, q, d);
  check_state(op, "state", state, d, q);
  const c10::cuda::CUDAGuard guard(q.device());
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
  check_launch(op, cuda::decay_step_cuda(p, at::cuda::getCurrentCUDAStream()));
  return y;
}

}  // namespace
}  // namespace decayfw::ops

TORCH_LIBRARY_IMPL(decayfw, CUDA, m) {
  m.impl("decay_fwd", &decayfw::ops::decay_fwd_cuda);
  m.impl("decay_bwd", &decayfw::ops::decay_bwd_cuda);
  m.impl("decay_step", &decayfw::ops::decay_step_cuda);
}
