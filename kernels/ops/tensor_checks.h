// Argument validation shared by every device's adapter. Errors name the op, the argument and the
// expected shape, so a user reading a Python traceback knows which tensor to fix.
#pragma once

#include <ATen/ATen.h>

#include <string>
#include <vector>

#include "decayfw/params.h"

namespace decayfw::ops {

struct NamedTensor {
  const char* name;
  const at::Tensor& tensor;
  char last;  // 'M' (key side) or 'D' (value side)
};

// Validates q, k, f ([B, T, H, M]) and v, z ([B, T, H, D]) of a sequence op (rank 4) or a step
// (rank 3, no T). Returns the sizes.
Dims check_inputs(const char* op, const std::vector<NamedTensor>& inputs, bool has_time);

// Validates an optional state argument: [B, H, D, M], contiguous, on the inputs' device, fp32
// (fp64 when the inputs are fp64).
void check_state(const char* op, const char* name, const at::Tensor& state, const Dims& dims,
                 const at::Tensor& like);

// Validates a per-head scalar input (a gate or write-strength logit): [B, T, H] for a sequence op,
// [B, H] for a step; the inputs' dtype and device; any strides.
void check_head_scalar(const char* op, const char* name, const at::Tensor& t, const Dims& dims, bool has_time,
                       const at::Tensor& like);

// Every tensor argument of a device's kernel must live on that device.
void check_device(const char* op, const at::Tensor& t, c10::DeviceType device);

inline bool given(const c10::optional<at::Tensor>& t) { return t.has_value() && t->defined(); }

// An optional state argument as the kernels take it: its data, or null for zeros.
inline const void* data_or_null(const c10::optional<at::Tensor>& t) { return given(t) ? t->data_ptr() : nullptr; }


// The chunk-boundary states a backward may reuse (decay_fwd_train's third output). Null when absent
// or empty (the backward recomputes them) and when this call does not run the chunk path (chunk = 0:
// they are a cache, and any path gives the same gradients). Otherwise it must be
// [B, H, ceil(T / chunk) + 1, D, M], fp32, contiguous, on the inputs' device.
const at::Tensor* chunk_states_or_null(const char* op, const c10::optional<at::Tensor>& states, const Dims& dims,
                                       int64_t chunk, const at::Tensor& like);

// A new, uninitialised state [B, H, D, M] of the state dtype for inputs like `like`.
at::Tensor new_state(const Dims& d, const at::Tensor& like);

// The dtype a state must have for inputs of this dtype.
at::ScalarType state_dtype_for(at::ScalarType input);

ScalarType to_scalar_type(at::ScalarType t);

ConstSeqRef const_ref(const at::Tensor& t, bool has_time);
SeqRef mut_ref(at::Tensor& t, bool has_time);

// The sizes and input dtype of a decode-step params struct (DecayStepParams, DeltaStepParams).
template <typename StepParams>
void set_step_sizes(StepParams& p, const Dims& d, const at::Tensor& q) {
  p.batch = d.batch;
  p.heads = d.heads;
  p.dim_v = d.dim_v;
  p.dim_k = d.dim_k;
  p.dtype = to_scalar_type(q.scalar_type());
}

}  // namespace decayfw::ops
