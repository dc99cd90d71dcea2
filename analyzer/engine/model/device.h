// The devices the engine runs on: names ("cpu", "cuda", "cuda:N") parsed with clear refusals, the
// list a UI offers, and the synchronisation that timing on an asynchronous device needs. The CLI
// (--device) and the analyzer's device choice both go through here.
#pragma once

#include <ATen/ATen.h>

#include <string>
#include <vector>

namespace decayfw::engine {

struct DeviceInfo {
  std::string name;    // "cpu", "cuda:0", … (what parse_device accepts); "cuda" for the unavailable entry
  std::string label;   // for menus: "CPU", "CUDA:0"
  bool available = false;
  std::string reason;  // why not, when !available
};

// True when this LibTorch was built with CUDA (whether or not a GPU is visible).
bool torch_built_with_cuda();
// Number of CUDA devices visible to this process (0 without CUDA).
int64_t cuda_device_count();
// Why CUDA cannot be used here ("" when it can): no CUDA in this LibTorch, or no GPU visible.
std::string cuda_unavailable_reason();

// "cpu", "cuda" (= cuda:0) or "cuda:N". Throws std::invalid_argument naming the device and why it
// cannot be used (unknown name, no CUDA in this LibTorch, no GPU visible, index out of range).
at::Device parse_device(const std::string& name);
// The inverse: "cpu", "cuda:0".
std::string device_name(const at::Device& device);

// CPU first, then one entry per visible GPU; without CUDA a single unavailable "cuda" entry whose
// reason says why.
std::vector<DeviceInfo> list_devices();

// Waits until the work queued on `device` has finished (CUDA kernels run asynchronously); a no-op
// on the CPU. Call before reading a clock that times device work.
void synchronize(const at::Device& device);

// Throws std::invalid_argument when the decayfw op `op` ("decay_fwd", "decay_step") has no kernel
// for `device`'s backend in this build (e.g. CUDA LibTorch but the project built with -DDECAYFW_CUDA=OFF).
void check_op_on_device(const std::string& op, const at::Device& device);

}  // namespace decayfw::engine
