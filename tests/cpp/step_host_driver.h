// The decode step's arguments as kernels/cuda/decay_step.cu's callers pass them, for the CPU runs of its CTA
// program (tests/cpp/test_step_program.cpp, tests/cpp/smem_race_check.cpp).
#pragma once

#include <cstdint>
#include <vector>

#include "decay_step_program.h"

namespace decayfw::testing {

// Token t of [B, T, H, X] inputs (batch stride T·H·X, head stride X), y [B, H, D], the state [B, H, D, M].
template <typename In>
step::StepArgs step_args_at(int64_t t, int64_t B, int64_t T, int64_t H, int64_t D, int64_t M, const std::vector<In>& q,
                            const std::vector<In>& k, const std::vector<In>& f, const std::vector<In>& v,
                            const std::vector<In>& z, std::vector<In>& y, float* state) {
  step::StepArgs a;
  a.B = B, a.H = H, a.D = D, a.M = M;
  a.q = q.data() + t * H * M, a.k = k.data() + t * H * M, a.f = f.data() + t * H * M;
  a.v = v.data() + t * H * D, a.z = z.data() + t * H * D;
  a.q_sb = a.k_sb = a.f_sb = T * H * M, a.q_sh = a.k_sh = a.f_sh = M;
  a.v_sb = a.z_sb = T * H * D, a.v_sh = a.z_sh = D;
  a.y = y.data(), a.y_sb = H * D, a.y_sh = D;
  a.state = state;
  return a;
}

}  // namespace decayfw::testing
