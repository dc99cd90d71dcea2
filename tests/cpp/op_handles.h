// The C++ tests call the ops through the dispatcher, exactly as the analyzer engine and torch.ops do.
#pragma once

#include "decayfw/dispatcher_ops.h"

namespace decayfw::testing {
using dispatcher::decay_bwd;
using dispatcher::decay_chunk_size;
using dispatcher::decay_fwd;
using dispatcher::decay_fwd_train;
using dispatcher::decay_step;
using dispatcher::Grads;
}  // namespace decayfw::testing
