// libFuzzer target: arbitrary bytes through the checkpoint reader (zip archives via LibTorch's
// reader, the legacy format, the safe pickle machine, tensor materialisation) and, directly, through
// the pickle machine (so mutations need not keep a torch header to reach every opcode). Any outcome
// but an error of the reader's own types or a successful read — a crash, a sanitizer report, a
// hang, another exception type — is a bug. Build and run: analyzer/fuzz/run_fuzz.sh.
#include <cstddef>
#include <cstdint>

#include "checkpoint/checkpoint_reader.h"
#include "checkpoint/pickle_machine.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  try {
    decayfw::engine::read_checkpoint_bytes("fuzz-input", data, size);
  } catch (const decayfw::engine::CheckpointError&) {
  }
  try {
    size_t offset = 0;
    decayfw::engine::pickle::read_pickle(data, size, offset);
  } catch (const decayfw::engine::pickle::PickleError&) {
  }
  return 0;
}
