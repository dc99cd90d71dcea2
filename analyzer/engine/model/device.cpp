#include "model/device.h"

#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/cuda.h>

#include <stdexcept>

namespace decayfw::engine {

bool torch_built_with_cuda() {
#if defined(DECAYFW_TORCH_HAS_CUDA) && DECAYFW_TORCH_HAS_CUDA
  return true;
#else
  return at::hasCUDA();  // a CUDA LibTorch found some other way still answers for itself
#endif
}

int64_t cuda_device_count() { return at::hasCUDA() ? static_cast<int64_t>(torch::cuda::device_count()) : 0; }

std::string cuda_unavailable_reason() {
  if (cuda_device_count() > 0) return "";
  if (!torch_built_with_cuda()) return "this LibTorch has no CUDA (it was built for the CPU only)";
  return "this LibTorch has CUDA, but no GPU is visible (check the driver and CUDA_VISIBLE_DEVICES)";
}

at::Device parse_device(const std::string& name) {
  if (name == "cpu") return at::kCPU;
  if (name == "cuda" || name.rfind("cuda:", 0) == 0) {
    int64_t index = 0;
    if (name != "cuda") {
      const std::string n = name.substr(5);
      if (n.empty() || n.find_first_not_of("0123456789") != std::string::npos || n.size() > 4) {
        throw std::invalid_argument("device '" + name + "': expected cuda:N with N a GPU index");
      }
      index = std::stoll(n);
    }
    const std::string why = cuda_unavailable_reason();
    if (!why.empty()) throw std::invalid_argument("device '" + name + "': " + why + "; use cpu");
    const int64_t count = cuda_device_count();
    if (index >= count) {
      throw std::invalid_argument("device '" + name + "': only " + std::to_string(count) + " GPU" +
                                  (count == 1 ? "" : "s") + " visible (cuda:0" +
                                  (count > 1 ? " … cuda:" + std::to_string(count - 1) : std::string()) + ")");
    }
    return at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(index));
  }
  throw std::invalid_argument("device '" + name + "': expected cpu, cuda or cuda:N");
}

std::string device_name(const at::Device& device) {
  if (device.is_cpu()) return "cpu";
  if (device.is_cuda()) return "cuda:" + std::to_string(device.has_index() ? device.index() : 0);
  return device.str();
}

std::vector<DeviceInfo> list_devices() {
  std::vector<DeviceInfo> out = {{"cpu", "CPU", true, ""}};
  const int64_t n = cuda_device_count();
  for (int64_t i = 0; i < n; ++i) {
    out.push_back({"cuda:" + std::to_string(i), "CUDA:" + std::to_string(i), true, ""});
  }
  if (n == 0) out.push_back({"cuda", "CUDA", false, cuda_unavailable_reason()});
  return out;
}

void synchronize(const at::Device& device) {
  if (device.is_cuda()) torch::cuda::synchronize(device.has_index() ? device.index() : -1);
}

void check_op_on_device(const std::string& op, const at::Device& device) {
  if (device.is_cpu()) return;
  const auto handle = c10::Dispatcher::singleton().findSchema({"decayfw::" + op, ""});
  if (!handle.has_value()) throw std::invalid_argument("the decayfw op '" + op + "' is not registered (libdecayfw_ops not loaded)");
  const c10::DispatchKey key = c10::computeDispatchKey(at::kFloat, at::kStrided, device);
  if (!handle->hasKernelForDispatchKey(key)) {
    throw std::invalid_argument("device '" + device_name(device) + "': the decayfw op '" + op +
                                "' has no kernel for it in this build (configure with -DDECAYFW_CUDA=ON where nvcc "
                                "is, against a LibTorch with CUDA); decay models run on cpu");
  }
}

}  // namespace decayfw::engine
