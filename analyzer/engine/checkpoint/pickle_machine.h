// A safe pickle reader: runs the pickle opcode stream (protocols 0–5) into pickle::Value trees
// and never imports or calls anything. Constructors it understands structurally (tensor rebuilds,
// OrderedDict, torch.Size, storage classes) become plain values; other classes become Objects;
// a pickle that would call a known code-execution entry point (os.system, subprocess.*, eval, …)
// is refused with an error naming it. Every read is bounds-checked and nesting, memo and string
// sizes are limited, so a malformed or hostile file gives an error, never a crash.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "pickle_value.h"

namespace decayfw::engine::pickle {

struct Limits {
  size_t max_depth = 1000;            // nesting: MARKs open at once, and containers in the result
  size_t max_memo = 10'000'000;
  size_t max_string = size_t(1) << 30;
  size_t max_items = 100'000'000;     // values on the stack
  // Values and bytes that calls and BUILDs copy (e.g. tuple(x) or bytes(x) of one big x, repeated):
  // a few input bytes can ask for a copy of a large value, so their total is capped. Items count
  // 1, bytes 1/8. Real checkpoints copy little (their tensors' data is not in the pickle).
  size_t max_copied = size_t(1) << 26;
};

// Reads one pickle starting at data[offset]; on return `offset` points past its STOP opcode.
// The result is a tree (shared values allowed, no cycles) at most limits.max_depth deep, so code
// walking it cannot run away. Errors are PickleErrors naming the opcode and its byte offset.
ValuePtr read_pickle(const uint8_t* data, size_t size, size_t& offset, const Limits& limits = {});

}  // namespace decayfw::engine::pickle
