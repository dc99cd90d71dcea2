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

using Grads = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>;

inline Grads decay_bwd(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& z,
                       const at::Tensor& f, const c10::optional<at::Tensor>& s0, const at::Tensor& dy,
                       const c10::optional<at::Tensor>& dsT) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("decayfw::decay_bwd", "")
                       .typed<Grads(const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                    const at::Tensor&, const c10::optional<at::Tensor>&, const at::Tensor&,
                                    const c10::optional<at::Tensor>&)>();
  return op.call(q, k, v, z, f, s0, dy, dsT);
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
