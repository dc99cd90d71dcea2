// libFuzzer target: arbitrary bytes through the checkpoint reader (zip archives via LibTorch's
// reader, the legacy format, the safe pickle machine, tensor materialisation). Any outcome but a
// CheckpointError or a successful read — a crash, a sanitizer report, an uncaught exception type —
// is a bug. Build and run: analyzer/fuzz/run_fuzz.sh.
#include <cstddef>
#include <cstdint>

#include "checkpoint/checkpoint_reader.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    decayfw::engine::read_checkpoint_bytes("fuzz-input", data, size);
  } catch (const decayfw::engine::CheckpointError&) {
  }
  return 0;
}
