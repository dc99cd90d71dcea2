// The CPU kernels' threads come from PyTorch's intra-op pool, so every op honours
// torch.set_num_threads and shares threads with the rest of the model.
#pragma once

#include <ATen/Parallel.h>

#include "decayfw/cpu/executor.h"
#include "decayfw/params.h"

namespace decayfw::ops {

// Below this many state-element updates a call runs on the calling thread: waking the pool costs
// more than the work (a decode step of a small model), and OpenMP threads left spinning after a
// parallel region steal the cores from the BLAS threads of the next matmul.
constexpr int64_t kMinParallelWork = int64_t(1) << 18;

inline cpu::Executor aten_executor(int64_t work = kMinParallelWork) {
  cpu::Executor ex;
  ex.num_threads = work < kMinParallelWork ? 1 : at::get_num_threads();
  ex.parallel_for = [](int64_t n, const std::function<void(int64_t, int64_t)>& body) {
    at::parallel_for(0, n, 1, body);
  };
  return ex;
}

// State-element updates of a whole-sequence call.
inline int64_t work_of(const Dims& d) { return d.batch * d.seqlen * d.heads * d.dim_v * d.dim_k; }

}  // namespace decayfw::ops
