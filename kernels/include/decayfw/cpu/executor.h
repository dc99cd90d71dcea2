// How CPU kernels get their threads. The kernels stay framework-free: the caller injects a
// parallel-for (the ATen adapter passes at::parallel_for so the op shares PyTorch's thread pool and
// honours torch.set_num_threads; tests and benchmarks may pass nothing to run serially).
#pragma once

#include <cstdint>
#include <functional>

namespace decayfw::cpu {

struct Executor {
  int num_threads = 1;
  // Runs body(begin, end) over disjoint sub-ranges covering [0, n). Empty: run serially.
  std::function<void(int64_t n, const std::function<void(int64_t, int64_t)>& body)> parallel_for;

  void run(int64_t n, const std::function<void(int64_t, int64_t)>& body) const {
    if (n <= 0) return;
    if (parallel_for && num_threads > 1 && n > 1) {
      parallel_for(n, body);
    } else {
      body(0, n);
    }
  }
};

}  // namespace decayfw::cpu
