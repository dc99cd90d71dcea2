// The CPU kernels' threads come from PyTorch's intra-op pool, so every op honours
// torch.set_num_threads and shares threads with the rest of the model.
#pragma once

#include <ATen/Parallel.h>

#include "decayfw/cpu/executor.h"

namespace decayfw::ops {

inline cpu::Executor aten_executor() {
  cpu::Executor ex;
  ex.num_threads = at::get_num_threads();
  ex.parallel_for = [](int64_t n, const std::function<void(int64_t, int64_t)>& body) {
    at::parallel_for(0, n, 1, body);
  };
  return ex;
}

}  // namespace decayfw::ops
