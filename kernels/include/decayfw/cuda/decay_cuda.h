// The decay rule on CUDA: launchers taking the plain params structs (no framework types), enqueued
// on the caller's stream with no host synchronisation. Scratch memory for the backward is passed
// in by the caller (the ATen adapter allocates it from PyTorch's caching allocator).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>

#include "decayfw/params.h"

namespace decayfw::cuda {

// Rows of the state handled by one CTA; the backward keeps per-tile partial sums of dq and dk.
int row_tiles(int64_t dim_v);

// Bytes of scratch decay_backward_cuda needs: per row tile, fp32 (fp64 for fp64 inputs) partial
// column sums of dq and dk, and the recomputed outputs y: O(T·(M·D/32 + D)) per sequence.
size_t decay_backward_workspace_bytes(const Dims& dims, ScalarType dtype);

cudaError_t decay_forward_cuda(const DecayFwdParams& p, cudaStream_t stream);
cudaError_t decay_backward_cuda(const DecayBwdParams& p, void* workspace, cudaStream_t stream);
cudaError_t decay_step_cuda(const DecayStepParams& p, cudaStream_t stream);

// ---- the vectorised decode step (decay_step.cu; program in kernels/cuda/decay_step_program.h):
// 16-byte state accesses, key and row sides staged once per CTA. fp32/fp16/bf16 inputs, fp32 state,
// M a multiple of 4 up to 256, state 16-byte aligned; null when it can run, else why not.
const char* vector_step_unsupported_reason(const DecayStepParams& p);
cudaError_t decay_step_vector_cuda(const DecayStepParams& p, cudaStream_t stream);

// ---- the chunkwise tensor-core path (kernels/cuda/decay_chunk*.cu; algorithm in decay_chunk_program.h)
// bf16/fp16 inputs multiply on tensor cores as themselves, fp32 inputs as tf32; states, sums and
// gates are fp32. Sizes: M in {16, 32, 64, 128}, D a multiple of 64; anything else runs recurrent.

struct ChunkConfig {
  int chunk = 0;          // tokens per chunk (0: no compiled configuration)
  size_t smem_bytes = 0;  // the largest shared-memory block of its kernels
};
ChunkConfig chunk_config(ScalarType dtype, int64_t dim_k);

// Why the chunk path cannot run these sizes on a device with this much opt-in shared memory per
// block, or null when it can.
const char* chunk_unsupported_reason(const Dims& dims, ScalarType dtype, size_t max_smem_per_block);

// The two forms of the chunk forward (the same arithmetic: states bit for bit, y up to FMA contraction):
//   Split: state_pass (serial over chunks, N·D/64 CTAs) writes every chunk's start state, then
//          output_pass (parallel over chunks) reads them back with the inputs and writes y.
//   Fused: forward_pass alone, serial over chunks with state_pass's grid, y from the running state;
//          the inputs are read once, and the states are written only when the caller keeps them.
//          It moves less (benchmarks/bench_gpu.py --traffic-model), but its work is all in the serial
//          chain, so it wins only where N·D/64 CTAs occupy every SM.
enum class ChunkForward { Split, Fused };

// The form a forward of these sizes takes on a device with sm_count SMs: Fused when its N·D/64
// serial CTAs (one per SM: their shared memory allows no second) fill the device, else Split,
// whose output_pass spreads over chunks too.
ChunkForward chunk_forward_for(const Dims& dims, int sm_count);

// Threads per CTA of the chunk kernels, 256 or 512 (default). Results do not depend on it, bit for bit:
// each index of a phase is one thread's work and each 16×16 output tile one warp's, in the same order
// whatever the count. How many warps hide each other's memory and barrier latency does: the kernels
// that hold one CTA per multiprocessor (output_pass, forward_pass, grad_pass: their shared memory leaves
// no room for a second) get 16 warps per multiprocessor at 512, and the serial state passes, whose
// N·D/64 CTAs often number no more than the multiprocessors, get 16 warps per CTA and so a shorter
// chain of phases per chunk.
constexpr int kChunkThreads = 512;
bool chunk_threads_supported(int threads);

// How the chunk kernels take the 16×16 diagonal blocks of each chunk (decay_chunk_program.h,
// DiagonalForm). A column whose log gates span at most 40 over the block's 16 rows is "narrow"; the
// others are "wide" and take one exponential per pair of rows in fp32 in every form.
//   Factored:    narrow columns from operands scaled once per row by their decay to or from the block's
//                first row, multiplied in fp32 on CUDA cores: per column and block, 16 exponentials
//                for its share of the block's q·k (or dy·v) products where the per-pair form takes 136,
//                and 30 for its terms of y, dv (or dq, dk) where that takes 72; the same errors against
//                fp64 (host executor, docs/cuda.md). The default.
//   Elementwise: every column per pair (the reference the others are tested against).
//   TensorCores: narrow columns as one more block of the tensor-core products. The fewest instructions,
//                but the diagonal's scaled operands are then rounded to the operand type as the
//                off-diagonal ones are, and the diagonal carries most of y where gates forget fast:
//                with bf16 and gates near σ = 0.5, errors against fp64 rose up to 3× in y and 5-6× in
//                the gate gradients. Opt-in. fp16 has no room for the scaled operands there and runs
//                the factored form.
//   Chunk:       TensorCores, except that a chunk whose gates span at most 40 over the whole chunk, in every
//                key column and every value row of the CTA's tile, takes its intra-chunk part as one
//                product over the chunk referred to its start: no 16-row blocks at all (about half
//                grad_pass's shared-memory wavefronts, benchmarks/smem_bank_report). TensorCores'
//                precision. Opt-in; fp16 runs the factored form.
enum class ChunkDiagonal { Factored, Elementwise, TensorCores, Chunk };

// How the chunk kernels run, beyond the forward's form: threads per CTA (kChunkThreads), the diagonal blocks'
// form, and whether a chunk taken whole (Chunk, and Factored's narrow chunks) computes its y with the two
// products chained in registers (16-bit operands: the masked product never goes through shared memory, and q's
// scaled rows are loaded once for both of their products; 8-12% fewer shared-memory wavefronts in output_pass,
// 4-6% in grad_pass, by benchmarks/smem_bank_report) or through shared memory. The same values either way. Each
// knob has a variable (decay_cuda_ops.cpp) so that a benchmark can time both sides.
struct ChunkTuning {
  int threads = kChunkThreads;
  ChunkDiagonal diagonal = ChunkDiagonal::Factored;
  bool chain_products = true;
  // The backward's grad_pass with the chunk form's four chained products (y, dV, dQ, dK) in one phase, one warp a
  // 16-row block each, where the default takes four phases of two warps a block (each computing the block's
  // masked product again): a CTA of 256 threads (255 registers) instead of `threads`. 16-bit operands (fp32 chains
  // nothing; fp16 takes no chunk form, so there only the thread count changes); the same bits. Which is faster is
  // for a GPU to say (docs/cuda-design-log.md, session 23).
  bool grad_one_phase = false;
};

// Workspace in bytes: the chunk-boundary states, N·(T/C + 1)·D·M floats (forward); the backward adds
// their gradients, N·(T/C)·D·M elements of the input type, and needs only those when it is given the
// forward's states (states_given).
size_t chunk_workspace_bytes(const Dims& dims, ScalarType dtype, bool backward, bool states_given = false);

// The forward's workspace holds the chunk-boundary states [B, H, T/C + 1, D, M] when it returns; a
// caller that keeps it can pass it to the backward as DecayBwdParams::chunk_states, which then
// skips recomputing them (one serial pass fewer, N·(T/C + 1)·D·M fp32 held in between). The fused
// form also takes a null workspace (nothing beyond y and S_T is written); the split form needs it.
cudaError_t decay_forward_chunk_cuda(const DecayFwdParams& p, void* workspace, cudaStream_t stream,
                                     ChunkForward form = ChunkForward::Split, const ChunkTuning& tuning = {});
cudaError_t decay_backward_chunk_cuda(const DecayBwdParams& p, void* workspace, cudaStream_t stream,
                                      const ChunkTuning& tuning = {});

}  // namespace decayfw::cuda
