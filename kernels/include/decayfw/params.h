// Plain parameter structs shared by every device implementation of the fast-weight ops.
//
// No framework types live here: the CPU and CUDA kernels see only raw pointers, sizes and element
// strides, so they can be compiled, tested and benchmarked without LibTorch. The ATen adapter in
// kernels/ops/ fills these structs from tensors after validating them.
//
// Memory layout (the one place it is defined; see kernels/README.md for the why):
//   q, k, f : [B, T, H, M]   v, z, y : [B, T, H, D]   any strides for B, T and H; the last dim is contiguous.
//   state   : [B, H, D, M]   contiguous, fp32 (fp64 when the inputs are fp64).
// fairseq hands layers T×B×C tensors; a projection of them viewed as [T, B, H, X] and transposed to
// [B, T, H, X] is a valid input without a copy, and outputs are allocated with the strides of v.
#pragma once

#include <cstdint>

namespace decayfw {

enum class ScalarType : int { Float32, Float64, Float16, BFloat16 };

inline const char* scalar_type_name(ScalarType t) {
  switch (t) {
    case ScalarType::Float32: return "float32";
    case ScalarType::Float64: return "float64";
    case ScalarType::Float16: return "float16";
    case ScalarType::BFloat16: return "bfloat16";
  }
  return "unknown";
}

// A read-only [B, T, H, X] view: element strides of B, T and H; X is contiguous.
struct ConstSeqRef {
  const void* data = nullptr;
  int64_t stride_b = 0, stride_t = 0, stride_h = 0;
};

// A writable [B, T, H, X] view.
struct SeqRef {
  void* data = nullptr;
  int64_t stride_b = 0, stride_t = 0, stride_h = 0;
};

// Sizes common to every rule. N = batch * heads independent sequences.
struct Dims {
  int64_t batch = 0, seqlen = 0, heads = 0;
  int64_t dim_v = 0;  // D: value / output / row dimension of the state
  int64_t dim_k = 0;  // M: key / query / column dimension of the state
};

// How a gate acts on one side of the state. The decay rule gates every row (σ(z_t), width D) and
// every column (σ(f_t), width M); the same kernels run the paper's other linear rules by dropping
// gates: the gated rule (Peng et al.) shares one row gate per head and step (z is [B, T, H] and
// broadcast over the D rows) and has no column gate; the additive rule has none at all. A `None`
// gate is exactly 1: its tensor is never read and its gradient never written.
enum class GateKind : int { PerElement, PerHead, None };

// Forward: y_t = S_t q_t with S_t = (σ(z_t) σ(f_t)ᵀ) ⊙ S_{t-1} + v_t k_tᵀ.
struct DecayFwdParams {
  Dims dims;
  ScalarType dtype = ScalarType::Float32;  // of q, k, v, z, f and y
  GateKind row_gate = GateKind::PerElement;  // z
  GateKind col_gate = GateKind::PerElement;  // f (PerHead is not supported on the column side)
  ConstSeqRef q, k, v, z, f;
  SeqRef y;
  const void* initial_state = nullptr;  // [B, H, D, M] contiguous, or null for zeros
  void* final_state = nullptr;          // [B, H, D, M] contiguous, always written
};

// Backward: given dy and dS_T (optional), all input gradients. The chunk path can reuse the
// chunk-boundary states its forward computed (chunk_states); everything else is recomputed.
struct DecayBwdParams {
  Dims dims;
  ScalarType dtype = ScalarType::Float32;
  GateKind row_gate = GateKind::PerElement;
  GateKind col_gate = GateKind::PerElement;
  ConstSeqRef q, k, v, z, f, dy;
  SeqRef dq, dk, dv, dz, df;
  const void* initial_state = nullptr;      // as in the forward, or null
  const void* grad_final_state = nullptr;   // [B, H, D, M] or null for zeros
  void* grad_initial_state = nullptr;       // [B, H, D, M], always written
  // Chunk path only: the forward's chunk-boundary states [B, H, T/C + 1, D, M] fp32 (the forward's
  // workspace, kept), or null to recompute them. Read only; the recurrent path ignores it.
  const void* chunk_states = nullptr;
};

// One decode step, state updated in place. Inputs are [B, H, X] with element strides for B and H.
struct DecayStepParams {
  int64_t batch = 0, heads = 0, dim_v = 0, dim_k = 0;
  ScalarType dtype = ScalarType::Float32;
  GateKind row_gate = GateKind::PerElement;
  GateKind col_gate = GateKind::PerElement;
  ConstSeqRef q, k, v, z, f;  // stride_t unused
  SeqRef y;                   // stride_t unused
  void* state = nullptr;      // [B, H, D, M] contiguous, read and written
};

// The delta rule (Schlag et al. 2021) with a per-head, per-step write strength β_t = σ(beta_t):
//   S_t = S_{t-1} + β_t (v_t − S_{t-1} k_t) k_tᵀ,   y_t = S_t q_t
// q, k: [B, T, H, M]; v, y: [B, T, H, D]; beta: [B, T, H] logits (any strides). Feature maps and the
// sum normalisation of q and k are applied by the caller (the layer).
struct DeltaFwdParams {
  Dims dims;
  ScalarType dtype = ScalarType::Float32;
  ConstSeqRef q, k, v, beta;
  SeqRef y;
  const void* initial_state = nullptr;
  void* final_state = nullptr;
};

// Backward without stored per-step states: the forward is re-run once with a state checkpoint
// every `chunk` steps, then each chunk is recomputed from its checkpoint and walked backwards.
// Memory per sequence: (T / chunk + chunk + 1) · D · M accumulators.
struct DeltaBwdParams {
  Dims dims;
  ScalarType dtype = ScalarType::Float32;
  ConstSeqRef q, k, v, beta, dy;
  SeqRef dq, dk, dv, dbeta;
  const void* initial_state = nullptr;
  const void* grad_final_state = nullptr;
  void* grad_initial_state = nullptr;
  int64_t chunk = 64;
};

struct DeltaStepParams {
  int64_t batch = 0, heads = 0, dim_v = 0, dim_k = 0;
  ScalarType dtype = ScalarType::Float32;
  ConstSeqRef q, k, v, beta;  // stride_t unused
  SeqRef y;
  void* state = nullptr;
};

}  // namespace decayfw
