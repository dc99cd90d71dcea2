// decayfw::decay_chunk_size: which chunk size (0: none) decay_fwd and decay_bwd would run given
// sizes with, asked without tensors. Fake kernels (torch.compile) need it for the shape of
// decay_fwd_train's chunk states, and benchmarks for their traffic model. The op has no tensor
// arguments, so it is registered once for every backend (CompositeExplicitAutograd) and branches on
// its device argument.
#include <ATen/ATen.h>
#include <torch/library.h>

#include "decay_op_args.h"
#include "tensor_checks.h"

namespace decayfw::ops {
namespace {

int64_t decay_chunk_size(int64_t batch, int64_t seqlen, int64_t heads, int64_t dim_v, int64_t dim_k,
                         at::ScalarType dtype, c10::Device device) {
  constexpr const char* op = "decayfw.decay_chunk_size";
  TORCH_CHECK(batch >= 0 && seqlen >= 0 && heads >= 0 && dim_v > 0 && dim_k > 0, op,
              ": sizes must be non-negative (D and M positive), got B = ", batch, ", T = ", seqlen, ", H = ", heads,
              ", D = ", dim_v, ", M = ", dim_k);
  TORCH_CHECK(dtype == at::kFloat || dtype == at::kDouble || dtype == at::kHalf || dtype == at::kBFloat16, op,
              ": dtype must be float32, float64, float16 or bfloat16, got ", dtype);
  if (device.is_cpu()) return 0;  // the CPU op has no chunk path
  TORCH_CHECK(device.is_cuda(), op, ": decayfw supports CPU and CUDA devices, got ", device);
#ifdef DECAYFW_WITH_CUDA
  Dims d;
  d.batch = batch, d.seqlen = seqlen, d.heads = heads, d.dim_v = dim_v, d.dim_k = dim_k;
  return cuda_chunk_size(op, d, to_scalar_type(dtype), device.has_index() ? device.index() : c10::DeviceIndex(-1));
#else
  TORCH_CHECK(false, op, ": asked about ", device, ", but decayfw was built without CUDA");
#endif
}

}  // namespace
}  // namespace decayfw::ops

TORCH_LIBRARY_IMPL(decayfw, CompositeExplicitAutograd, m) {
  m.impl("decay_chunk_size", &decayfw::ops::decay_chunk_size);
}
