// The decay rule on CPU: forward, backward (two sweeps, no stored states) and decode step.
// See kernels/README.md for the algorithms and the threading plan.
#pragma once

#include "decayfw/cpu/executor.h"
#include "decayfw/params.h"

namespace decayfw::cpu {

void decay_forward(const DecayFwdParams& p, const Executor& ex);
void decay_backward(const DecayBwdParams& p, const Executor& ex);
void decay_step(const DecayStepParams& p, const Executor& ex);

// Number of row blocks each sequence is split into so that `threads` cores have work when the
// number of sequences is small. Rows of the state are independent (gates are elementwise), so a
// block of rows can run all T steps alone; only reductions over rows need a second pass.
int64_t row_blocks_for(int64_t num_sequences, int64_t rows, int threads);

}  // namespace decayfw::cpu
