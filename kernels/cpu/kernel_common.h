// Helpers shared by the CPU kernels of every rule: element access into the [B, T, H, X] views of
// params.h, loads into the accumulation type, optional states, and the dtype dispatch (inputs in
// fp32/fp64/fp16/bf16, accumulation in fp32, fp64 for fp64).
#pragma once

#include <algorithm>
#include <cstdint>
#include <stdexcept>

#include "decayfw/cpu/executor.h"
#include "decayfw/numeric.h"
#include "decayfw/params.h"

namespace decayfw::cpu::detail {

template <typename T>
inline const T* at(const ConstSeqRef& r, int64_t b, int64_t t, int64_t h) {
  return static_cast<const T*>(r.data) + b * r.stride_b + t * r.stride_t + h * r.stride_h;
}
template <typename T>
inline T* at(const SeqRef& r, int64_t b, int64_t t, int64_t h) {
  return static_cast<T*>(r.data) + b * r.stride_b + t * r.stride_t + h * r.stride_h;
}

template <typename In, typename Acc>
inline void load_vec(const In* src, int64_t n, Acc* dst) {
  for (int64_t i = 0; i < n; ++i) dst[i] = load_as<Acc>(src + i);
}

// Copies `count` state values starting at `offset` of an optional [B, H, D, M] state, or zeros.
template <typename Acc>
inline void load_state(const void* state, int64_t offset, int64_t count, Acc* dst) {
  if (state != nullptr) {
    const Acc* src = static_cast<const Acc*>(state) + offset;
    std::copy(src, src + count, dst);
  } else {
    std::fill(dst, dst + count, Acc(0));
  }
}

// Runs Fn<In, Acc>::run(p, ex) for the params' input dtype.
template <template <typename, typename> class Fn, typename P>
void dispatch(ScalarType dtype, const P& p, const Executor& ex) {
  switch (dtype) {
    case ScalarType::Float32: Fn<float, float>::run(p, ex); return;
    case ScalarType::Float64: Fn<double, double>::run(p, ex); return;
    case ScalarType::Float16: Fn<Float16, float>::run(p, ex); return;
    case ScalarType::BFloat16: Fn<BFloat16, float>::run(p, ex); return;
  }
  throw std::invalid_argument("decayfw: unsupported dtype");
}

}  // namespace decayfw::cpu::detail
