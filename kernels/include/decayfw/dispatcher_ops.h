// Typed handles of the decayfw ops in PyTorch's dispatcher, for C++ callers (the analyzer engine,
// the C++ tests): the same ops torch.ops.decayfw.* reaches, on whichever device the tensors live.
// The library that registers them (libdecayfw_ops) must be linked or loaded.
#pragma once

#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>

#include <tuple>

namespace decayfw::dispatcher {

inline std::tuple<at::Tensor, at::Tensor> decay_fwd(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                                    const at::Tensor& z, const at::Tensor& f,
                                                    const c10::optional<at::Tensor>& s0 = c10::nullopt) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("decayfw::decay_fwd", "")
                       .typed<std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&,
                                                                 const at::Tensor&, const at::Tensor&,
                                                                 const at::Tensor&, const c10::optional<at::Tensor>&)>();
  return op.call(q, k, v, z, f, s0);
}

// decay_fwd plus the chunk states its backward can reuse (empty off the CUDA chunk path).
inline std::tuple<at::Tensor, at::Tensor, at::Tensor> decay_fwd_train(const at::Tensor& q, const at::Tensor& k,
                                                                      const at::Tensor& v, const at::Tensor& z,
                                                                      const at::Tensor& f,
                                                                      const c10::optional<at::Tensor>& s0 = c10::nullopt) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("decayfw::decay_fwd_train", "")
                       .typed<std::tuple<at::Tensor, at::Tensor, at::Tensor>(
                           const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
                           const at::Tensor&, const c10::optional<at::Tensor>&)>();
  return op.call(q, k, v, z, f, s0);
}

using Grads = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>;

inline Grads decay_bwd(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& z,
                       const at::Tensor& f, const c10::optional<at::Tensor>& s0, const at::Tensor& dy,
                       const c10::optional<at::Tensor>& dsT,
                       const c10::optional<at::Tensor>& chunk_states = c10::nullopt) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("decayfw::decay_bwd", "")
                       .typed<Grads(const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                    const at::Tensor&, const c10::optional<at::Tensor>&, const at::Tensor&,
                                    const c10::optional<at::Tensor>&, const c10::optional<at::Tensor>&)>();
  return op.call(q, k, v, z, f, s0, dy, dsT, chunk_states);
}

// Tokens per chunk decay_fwd/decay_bwd would use for these sizes on `device` now; 0: no chunk path.
inline int64_t decay_chunk_size(int64_t batch, int64_t seqlen, int64_t heads, int64_t dim_v, int64_t dim_k,
                                at::ScalarType dtype, c10::Device device) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("decayfw::decay_chunk_size", "")
                       .typed<int64_t(int64_t, int64_t, int64_t, int64_t, int64_t, at::ScalarType, c10::Device)>();
  return op.call(batch, seqlen, heads, dim_v, dim_k, dtype, device);
}

inline at::Tensor decay_step(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& z,
                             const at::Tensor& f, at::Tensor& state) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("decayfw::decay_step", "")
                       .typed<at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                         const at::Tensor&, at::Tensor&)>();
  return op.call(q, k, v, z, f, state);
}

}  // namespace decayfw::dispatcher
