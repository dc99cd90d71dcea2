// The chunk configurations that are compiled, one per (operand type, M). The chunk size C is the
// largest whose gradient pass fits a Hopper SM's 227 KB of opt-in shared memory (16-bit operands
// take half the room of tf32 ones). One table serves the CUDA launchers (decay_chunk*.cu) and the
// CPU tests (tests/cpp/test_chunk_program.cpp), so the tests run every configuration that the GPU
// runs, with the same shared-memory layout.
#pragma once

#include <cstdint>

#include "decay_chunk_program.h"

namespace decayfw::chunk {

inline constexpr int kCompiledM[] = {16, 32, 64, 128};

template <typename Op>
constexpr int compiled_chunk(int M) {
  if constexpr (sizeof(Op) == 2) return M <= 64 ? 64 : 32;  // bf16, fp16
  else return M == 16 ? 64 : M == 128 ? 16 : 32;           // fp32 as tf32
}

template <typename Op, int kM>
using CompiledConfig = Config<kM, compiled_chunk<Op>(kM), Op>;

// fn(CompiledConfig<Op, M>{}) for a run-time M; `otherwise` when M has no compiled configuration.
template <typename Op, typename R, typename Fn>
R with_compiled_config(int64_t M, R otherwise, Fn&& fn) {
  switch (M) {
    case 16: return fn(CompiledConfig<Op, 16>{});
    case 32: return fn(CompiledConfig<Op, 32>{});
    case 64: return fn(CompiledConfig<Op, 64>{});
    case 128: return fn(CompiledConfig<Op, 128>{});
  }
  return otherwise;
}

}  // namespace decayfw::chunk
