// The decay rule in chunkwise-parallel form: the CTA programs of the CUDA tensor-core path.
//
// Written once against the CTA executor interface (cta/cta_common.h): decay_chunk_kernels.cuh
// runs them on the GPU (DeviceCta), tests/cpp/test_chunk_program.cpp runs the very same code on the
// CPU (HostCta) against the fp64 reference. No framework types; all global offsets are 64-bit.
//
// Notation (per sequence n, chunk of C tokens starting at c0, rows of a tile of kRows state rows):
//   α_i = log σ(z_i) (per row d), β_i = log σ(f_i) (per column m), fp32, ≤ 0;
//   A_i = Σ_{j≤i} α_j, B_i = Σ_{j≤i} β_j: inclusive in-chunk cumulative log gates (fp32);
//   S_prev: the state at the chunk's start; L = C − 1 (padded rows past T are identity steps:
//   zero inputs, gates exactly 1, so A_L and B_L are the chunk's totals).
//   S_i = e^{A_i} e^{B_i}ᵀ ⊙ S_prev + Σ_{j≤i} e^{A_i−A_j} e^{B_i−B_j}ᵀ ⊙ v_j k_jᵀ,   y_i = S_i q_i.
// Every exponential is of a difference that is ≤ 0, or at most 40 where a diagonal block takes the
// tensor cores (never e^{−A_j} alone, which overflows for small gates). Tensor-core products need
// operands scaled by one reference per sub-chunk of 16 rows (GLA's secondary chunking, here with gates
// on both sides): for rows i of sub-chunk I with first row r and any j < r,
// e^{X_i − X_j} = e^{X_i − X_r}·e^{X_r − X_j}, both factors ≤ 1. The 16×16 diagonal blocks are one
// more block of those products where the gates allow, else per element in fp32 ("diagonal blocks"
// in chunk/intra_chunk.h).
//
// Programs (one CTA each; the launch order is in decay_chunk_kernels.cuh and the host test):
//   state_pass    (n, tile)         serial over chunks: writes each chunk's start state, and S_T.
//   output_pass   (n, chunk)        y of one chunk from its start state: parallel over chunks (row
//                                   tiles walked inside, the key side and Pd kept across them).
//   forward_pass  (n, tile)         the two above fused: serial over chunks, y from the running
//                                   state; the launcher's choice when N·D/64 CTAs fill the GPU.
//   dstate_pass   (n, tile)         serial backwards: the gradient reaching each chunk's end state.
//   The three serial programs copy the next chunk's inputs while they compute this one
//   (walk_chunks: asynchronous copies into a second set of raw tiles).
//   grad_pass     (n, chunk)        every input gradient of one chunk (row tiles walked inside),
//                                   gates by the identity
//                                   ∂L/∂A_t = Σ_{s≥t}(y_s⊙dy_s − v_s⊙dv_s) + rowsum(dS_end ⊙ S_end)
//                                   (the boundary term telescopes all later chunks) and its column
//                                   twin with q⊙dq − k⊙dk and colsum.
//
// The programs, one family per file (chunk/):
//   tiles.h          arguments, compiled sizes, numerics, the shared-memory tiles and their carve
//   loading.h        staging a chunk, log gates and their sums, wide-column marks, the start state
//   intra_chunk.h    y's inter-chunk product, whole chunks, sub-chunk products and diagonal blocks
//   state_passes.h   the serial pipeline (walk_chunks), state_pass, dstate_pass
//   output_passes.h  output_pass, forward_pass
//   grad_pass.h      grad_pass
#pragma once

#include "chunk/grad_pass.h"
#include "chunk/output_passes.h"
