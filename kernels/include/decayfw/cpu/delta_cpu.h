// The delta rule (Schlag et al. 2021) on CPU: forward, backward (chunk checkpoints, no per-step
// states stored) and decode step. One task per sequence; see delta_cpu.cpp.
#pragma once

#include "decayfw/cpu/executor.h"
#include "decayfw/params.h"

namespace decayfw::cpu {

void delta_forward(const DeltaFwdParams& p, const Executor& ex);
void delta_backward(const DeltaBwdParams& p, const Executor& ex);
void delta_step(const DeltaStepParams& p, const Executor& ex);

}  // namespace decayfw::cpu
