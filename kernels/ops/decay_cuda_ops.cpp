// CUDA implementations of the decay-rule ops: prepare the arguments (decay_op_args.h), launch on
// PyTorch's current stream (no host synchronisation), scratch from PyTorch's caching allocator.
// Built only when the LibTorch found has CUDA.
#include <ATen/ATen.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <string>
#include <tuple>

#include "decay_op_args.h"
#include "decayfw/cuda/decay_cuda.h"
#include "tensor_checks.h"

namespace decayfw::ops {
namespace {

constexpr int64_t kMaxKeyDim = 256;  // the register-resident recurrent kernels' limit

void check_cuda_limits(const char* op, int64_t dim_k, int64_t sequences) {
  TORCH_CHECK(dim_k <= kMaxKeyDim, op, ": key dimension M = ", dim_k, " is larger than the CUDA kernels' limit of ",
              kMaxKeyDim);
  TORCH_CHECK(sequences <= int64_t(INT32_MAX), op, ": B*H = ", sequences, " sequences is too many for one launch");
}

void check_launch(const char* op, cudaError_t err) {
  TORCH_CHECK(err == cudaSuccess, op, ": CUDA launch failed: ", cudaGetErrorString(err));
}

// The value of one of the environment variables that steer the CUDA op, read at every call: "auto" when
// unset; anything but auto and the listed values is refused with a message naming the variable.
std::string env_choice(const char* op, const char* variable, std::initializer_list<const char*> values) {
  const char* env = std::getenv(variable);
  const std::string want = env ? env : "auto";
  bool known = want == "auto";
  std::string listed = "auto";
  size_t i = 0;
  for (const char* v : values) {
    known = known || want == v;
    listed += (++i == values.size() ? " or " : ", ") + std::string(v);
  }
  TORCH_CHECK(known, op, ": ", variable, " must be ", listed, ", got '", want, "'");
  return want;
}

// Which CUDA implementation runs a forward or backward call. The chunkwise tensor-core path is the
// training path; the recurrent path serves short sequences (a serial chain of T steps costs about
// as much as one chunk's fixed work when T is below a chunk), fp64, sizes the chunk kernels are not
// compiled for, and fp32 inputs unless PyTorch allows TF32 matmuls
// (torch.backends.cuda.matmul.allow_tf32), since the chunk path multiplies fp32 as tf32.
// DECAYFW_CUDA_PATH=auto|chunk|recurrent overrides the choice (read at every call).
constexpr int64_t kChunkMinTokens = 64;

// The chunk size of the path a call takes, 0 for the recurrent path.
int64_t chosen_chunk(const char* op, const Dims& d, ScalarType dtype, c10::DeviceIndex device) {
  const std::string want = env_choice(op, "DECAYFW_CUDA_PATH", {"chunk", "recurrent"});
  if (want == "recurrent" || d.seqlen == 0) return 0;
  const cudaDeviceProp* prop = at::cuda::getDeviceProperties(device);
  const char* why = cuda::chunk_unsupported_reason(d, dtype, prop->sharedMemPerBlockOptin);
  const int64_t chunk = cuda::chunk_config(dtype, d.dim_k).chunk;
  if (want == "chunk") {
    TORCH_CHECK(why == nullptr, op, ": DECAYFW_CUDA_PATH=chunk, but the chunk path cannot run D = ", d.dim_v,
                ", M = ", d.dim_k, ", ", scalar_type_name(dtype), " on ", prop->name, ": ", why);
    return chunk;
  }
  if (why != nullptr || d.seqlen < kChunkMinTokens) return 0;
  if (dtype == ScalarType::Float32 && !at::globalContext().allowTF32CuBLAS()) return 0;
  return chunk;
}

// Which form a chunk-path forward takes (cuda::ChunkForward: same results, bit for bit).
// DECAYFW_CHUNK_FORWARD=auto|fused|split, read at every call; auto asks cuda::chunk_forward_for.
cuda::ChunkForward chosen_forward(const char* op, const Dims& d, c10::DeviceIndex device) {
  const std::string want = env_choice(op, "DECAYFW_CHUNK_FORWARD", {"fused", "split"});
  if (want == "fused") return cuda::ChunkForward::Fused;
  if (want == "split") return cuda::ChunkForward::Split;
  return cuda::chunk_forward_for(d, at::cuda::getDeviceProperties(device)->multiProcessorCount);
}

// Threads per CTA of the chunk kernels (cuda::kChunkThreads says why it matters):
// DECAYFW_CHUNK_THREADS=auto|256|512, read at every call; auto is cuda::kChunkThreads. The same
// results bit for bit; the choice is there so a benchmark can time both.
int chosen_threads(const char* op) {
  const std::string want = env_choice(op, "DECAYFW_CHUNK_THREADS", {"256", "512"});
  return want == "auto" ? cuda::kChunkThreads : std::stoi(want);
}

// How the chunk kernels take their diagonal blocks (cuda::ChunkDiagonal says what each costs):
// DECAYFW_CHUNK_DIAGONAL=auto|factored|elementwise|tensor|chunk, read at every call; auto is factored (fp16
// asked for tensor or chunk runs factored: its range leaves no room for the scaled operands).
cuda::ChunkDiagonal chosen_diagonal(const char* op) {
  const std::string want = env_choice(op, "DECAYFW_CHUNK_DIAGONAL", {"factored", "elementwise", "tensor", "chunk"});
  if (want == "tensor") return cuda::ChunkDiagonal::TensorCores;
  if (want == "chunk") return cuda::ChunkDiagonal::Chunk;
  return want == "elementwise" ? cuda::ChunkDiagonal::Elementwise : cuda::ChunkDiagonal::Factored;
}

// Everything a chunk-path call is tuned by (cuda::ChunkTuning), from its variables, read at every call:
// DECAYFW_CHUNK_THREADS, DECAYFW_CHUNK_DIAGONAL, DECAYFW_CHUNK_CHAIN=auto|on|off (auto is on): whether a
// whole chunk's y chains its two products in registers, and DECAYFW_CHUNK_GRAD_PHASES=auto|four|one (auto is
// four): whether grad_pass runs the chunk form's four chains in one phase at 256 threads (ChunkTuning::
// grad_one_phase). The same results either way, bit for bit on the host executor; the choices are there so a
// benchmark can time both, and so that a fault in one on some GPU can be stepped around.
cuda::ChunkTuning chosen_tuning(const char* op) {
  cuda::ChunkTuning t;
  t.threads = chosen_threads(op);
  t.diagonal = chosen_diagonal(op);
  t.chain_products = env_choice(op, "DECAYFW_CHUNK_CHAIN", {"on", "off"}) != "off";
  t.grad_one_phase = env_choice(op, "DECAYFW_CHUNK_GRAD_PHASES", {"four", "one"}) == "one";
  return t;
}

at::Tensor workspace(size_t bytes, const at::Tensor& like) {
  return at::empty({static_cast<int64_t>(bytes)}, like.options().dtype(at::kByte));
}

// The chunk kernels move fp32 states 16 bytes at a time. A state the caller passes at an address
// that is not 16-byte aligned (a contiguous view at an odd storage offset) is copied to fresh memory
// first; `keep` holds the copy until the launch is enqueued (the caching allocator orders reuse on
// the stream). The states the op allocates itself are always aligned.
const void* aligned_state(const void* p, const at::Tensor& given, at::Tensor& keep) {
  if (p == nullptr || reinterpret_cast<uintptr_t>(p) % 16 == 0) return p;
  keep = given.clone();
  return keep.data_ptr();
}
const void* aligned_state(const void* p, const c10::optional<at::Tensor>& given, at::Tensor& keep) {
  return p == nullptr ? p : aligned_state(p, *given, keep);
}

// decay_fwd and decay_fwd_train (keep_states). On the chunk path the forward's workspace is the
// chunk-boundary states, allocated as the [B, H, chunks + 1, D, M] tensor decay_fwd_train returns;
// decay_fwd drops it, and on the fused form allocates none. Elsewhere the third result is empty.
std::tuple<at::Tensor, at::Tensor, at::Tensor> forward(const char* op, bool keep_states, const at::Tensor& q,
                                                       const at::Tensor& k, const at::Tensor& v, const at::Tensor& z,
                                                       const at::Tensor& f,
                                                       const c10::optional<at::Tensor>& initial_state) {
  DecayFwdCall c = prepare_decay_fwd(c10::DeviceType::CUDA, q, k, v, z, f, initial_state);
  const c10::cuda::CUDAGuard guard(q.device());  // the launch's device
  const Dims& d = c.params.dims;
  check_cuda_limits(op, d.dim_k, d.batch * d.heads);
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  const int64_t chunk = chosen_chunk(op, d, c.params.dtype, q.device().index());
  if (chunk == 0) {
    check_launch(op, cuda::decay_forward_cuda(c.params, stream));
    return {c.y, c.final_state, at::empty({0}, q.options().dtype(at::kFloat))};
  }
  const cuda::ChunkForward form = chosen_forward(op, d, q.device().index());
  const cuda::ChunkTuning tuning = chosen_tuning(op);
  at::Tensor s0;
  c.params.initial_state = aligned_state(c.params.initial_state, initial_state, s0);
  if (form == cuda::ChunkForward::Fused && !keep_states) {
    check_launch(op, cuda::decay_forward_chunk_cuda(c.params, nullptr, stream, form, tuning));
    return {c.y, c.final_state, at::empty({0}, q.options().dtype(at::kFloat))};
  }
  at::Tensor states = at::empty({d.batch, d.heads, (d.seqlen + chunk - 1) / chunk + 1, d.dim_v, d.dim_k},
                                q.options().dtype(at::kFloat));
  TORCH_INTERNAL_ASSERT(static_cast<size_t>(states.nbytes()) == cuda::chunk_workspace_bytes(d, c.params.dtype, false));
  check_launch(op, cuda::decay_forward_chunk_cuda(c.params, states.data_ptr(), stream, form, tuning));
  return {c.y, c.final_state, states};
}

std::tuple<at::Tensor, at::Tensor> decay_fwd_cuda(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
                                                  const at::Tensor& z, const at::Tensor& f,
                                                  const c10::optional<at::Tensor>& initial_state) {
  auto [y, final_state, states] = forward("decayfw.decay_fwd", false, q, k, v, z, f, initial_state);
  return {y, final_state};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> decay_fwd_train_cuda(const at::Tensor& q, const at::Tensor& k,
                                                                    const at::Tensor& v, const at::Tensor& z,
                                                                    const at::Tensor& f,
                                                                    const c10::optional<at::Tensor>& initial_state) {
  return forward("decayfw.decay_fwd_train", true, q, k, v, z, f, initial_state);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> decay_bwd_cuda(
    const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& z, const at::Tensor& f,
    const c10::optional<at::Tensor>& initial_state, const at::Tensor& dy,
    const c10::optional<at::Tensor>& grad_final_state, const c10::optional<at::Tensor>& chunk_states) {
  constexpr const char* op = "decayfw.decay_bwd";
  DecayBwdCall c = prepare_decay_bwd(c10::DeviceType::CUDA, q, k, v, z, f, initial_state, dy, grad_final_state);
  const c10::cuda::CUDAGuard guard(q.device());  // the launch's device
  const Dims& d = c.params.dims;
  check_cuda_limits(op, d.dim_k, d.batch * d.heads);
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  const int64_t chunk = chosen_chunk(op, d, c.params.dtype, q.device().index());
  // Checked on every path; used only by the chunk path (a forward on the other path kept none).
  const at::Tensor* saved = chunk_states_or_null(op, chunk_states, d, chunk, q);
  if (chunk != 0) {
    const cuda::ChunkTuning tuning = chosen_tuning(op);
    at::Tensor s0, dsT, states;
    c.params.initial_state = aligned_state(c.params.initial_state, initial_state, s0);
    c.params.grad_final_state = aligned_state(c.params.grad_final_state, grad_final_state, dsT);
    if (saved) c.params.chunk_states = aligned_state(saved->data_ptr(), *saved, states);
    at::Tensor ws = workspace(cuda::chunk_workspace_bytes(d, c.params.dtype, true, saved != nullptr), q);
    check_launch(op, cuda::decay_backward_chunk_cuda(c.params, ws.data_ptr(), stream, tuning));
  } else {
    at::Tensor ws = workspace(cuda::decay_backward_workspace_bytes(d, c.params.dtype), q);
    check_launch(op, cuda::decay_backward_cuda(c.params, ws.data_ptr(), stream));
  }
  return {c.dq, c.dk, c.dv, c.dz, c.df, c.grad_initial_state};
}

at::Tensor decay_step_cuda(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const at::Tensor& z,
                           const at::Tensor& f, at::Tensor& state) {
  DecayStepCall c = prepare_decay_step(c10::DeviceType::CUDA, q, k, v, z, f, state);
  const c10::cuda::CUDAGuard guard(q.device());  // the launch's device
  check_cuda_limits("decayfw.decay_step", c.params.dim_k, c.params.batch * c.params.heads);
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  // The vectorised step unless DECAYFW_CUDA_PATH=recurrent (the recurrent kernels' T = 1 case).
  const char* env = std::getenv("DECAYFW_CUDA_PATH");
  if ((env == nullptr || std::strcmp(env, "recurrent") != 0) && cuda::vector_step_unsupported_reason(c.params) == nullptr) {
    check_launch("decayfw.decay_step", cuda::decay_step_vector_cuda(c.params, stream));
  } else {
    check_launch("decayfw.decay_step", cuda::decay_step_cuda(c.params, stream));
  }
  return c.y;
}

}  // namespace

int64_t cuda_chunk_size(const char* op, const Dims& d, ScalarType dtype, c10::DeviceIndex device) {
  check_cuda_limits(op, d.dim_k, d.batch * d.heads);
  return chosen_chunk(op, d, dtype, device);
}

}  // namespace decayfw::ops

TORCH_LIBRARY_IMPL(decayfw, CUDA, m) {
  m.impl("decay_fwd", &decayfw::ops::decay_fwd_cuda);
  m.impl("decay_fwd_train", &decayfw::ops::decay_fwd_train_cuda);
  m.impl("decay_bwd", &decayfw::ops::decay_bwd_cuda);
  m.impl("decay_step", &decayfw::ops::decay_step_cuda);
}
