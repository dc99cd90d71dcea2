// Operator schemas of the decayfw library, one TORCH_LIBRARY block for all rules and devices.
// Device implementations register themselves with TORCH_LIBRARY_IMPL in their own files
// (decay_cpu_ops.cpp, decay_cuda_ops.cpp), so Python (torch.ops.decayfw.*) and C++ callers
// (at::Dispatcher, the analyzer engine) reach the same kernels. Layouts: kernels/README.md.
#include <torch/library.h>

TORCH_LIBRARY(decayfw, m) {
  // q, k, f: [B, T, H, M]; v, z: [B, T, H, D]; initial_state: [B, H, D, M] fp32 (fp64 for fp64 inputs).
  // Returns y [B, T, H, D] (input dtype, strides of v) and the final state [B, H, D, M].
  m.def("decay_fwd(Tensor q, Tensor k, Tensor v, Tensor z, Tensor f, Tensor? initial_state=None)"
        " -> (Tensor y, Tensor final_state)");
  // The forward for training: decay_fwd, plus what its backward can reuse. On the CUDA chunk path
  // that is the chunk-boundary states [B, H, ceil(T / C) + 1, D, M] fp32 (C = decay_chunk_size);
  // elsewhere an empty fp32 tensor (nothing is worth keeping).
  m.def("decay_fwd_train(Tensor q, Tensor k, Tensor v, Tensor z, Tensor f, Tensor? initial_state=None)"
        " -> (Tensor y, Tensor final_state, Tensor chunk_states)");
  // Gradients of decay_fwd with respect to every input, given dy and (optionally) the gradient of
  // the final state. Recomputes what it needs, except the chunk states when decay_fwd_train's are
  // passed (None or empty: recomputed); no per-token states are ever stored.
  m.def("decay_bwd(Tensor q, Tensor k, Tensor v, Tensor z, Tensor f, Tensor? initial_state, Tensor dy,"
        " Tensor? grad_final_state=None, Tensor? chunk_states=None)"
        " -> (Tensor dq, Tensor dk, Tensor dv, Tensor dz, Tensor df, Tensor grad_initial_state)");
  // Tokens per chunk of the chunk path that decay_fwd/decay_bwd would run these sizes on now (it
  // depends on the device, DECAYFW_CUDA_PATH and PyTorch's TF32 setting), or 0 when they take the
  // recurrent path or the CPU op. Host-side only: shapes for fake tensors, sizes for benchmarks.
  m.def("decay_chunk_size(int batch, int seqlen, int heads, int dim_v, int dim_k, ScalarType dtype, Device device)"
        " -> int");
  // One decode step: q, k, f [B, H, M]; v, z [B, H, D]; state [B, H, D, M] updated in place.
  m.def("decay_step(Tensor q, Tensor k, Tensor v, Tensor z, Tensor f, Tensor(a!) state) -> Tensor y");

  // The paper's other rules (kernels/README.md), same layouts; g and beta are logits [B, T, H]
  // ([B, H] for a step), one per head and step.
  // Additive (Katharopoulos et al. 2020): S_t = S_{t-1} + v_t k_tᵀ.
  m.def("add_fwd(Tensor q, Tensor k, Tensor v, Tensor? initial_state=None) -> (Tensor y, Tensor final_state)");
  m.def("add_bwd(Tensor q, Tensor k, Tensor v, Tensor? initial_state, Tensor dy, Tensor? grad_final_state=None)"
        " -> (Tensor dq, Tensor dk, Tensor dv, Tensor grad_initial_state)");
  m.def("add_step(Tensor q, Tensor k, Tensor v, Tensor(a!) state) -> Tensor y");
  // Gated (Peng et al. 2021): S_t = σ(g_t) S_{t-1} + (1 − σ(g_t)) v_t k_tᵀ.
  m.def("gated_fwd(Tensor q, Tensor k, Tensor v, Tensor g, Tensor? initial_state=None)"
        " -> (Tensor y, Tensor final_state)");
  m.def("gated_bwd(Tensor q, Tensor k, Tensor v, Tensor g, Tensor? initial_state, Tensor dy,"
        " Tensor? grad_final_state=None)"
        " -> (Tensor dq, Tensor dk, Tensor dv, Tensor dg, Tensor grad_initial_state)");
  m.def("gated_step(Tensor q, Tensor k, Tensor v, Tensor g, Tensor(a!) state) -> Tensor y");
  // Delta (Schlag et al. 2021): S_t = S_{t-1} + σ(beta_t) (v_t − S_{t-1} k_t) k_tᵀ.
  m.def("delta_fwd(Tensor q, Tensor k, Tensor v, Tensor beta, Tensor? initial_state=None)"
        " -> (Tensor y, Tensor final_state)");
  m.def("delta_bwd(Tensor q, Tensor k, Tensor v, Tensor beta, Tensor? initial_state, Tensor dy,"
        " Tensor? grad_final_state=None)"
        " -> (Tensor dq, Tensor dk, Tensor dv, Tensor dbeta, Tensor grad_initial_state)");
  m.def("delta_step(Tensor q, Tensor k, Tensor v, Tensor beta, Tensor(a!) state) -> Tensor y");
}
