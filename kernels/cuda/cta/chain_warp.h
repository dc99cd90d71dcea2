// One warp's share of gemm_chain (cta_common.h), written once against a warp instruction set `Isa` so that the
// same lane code runs on the device (mma_sync.cuh's PtxWarp: ldmatrix and mma.sync) and on the host, where
// tests/cpp/lane_emulator.h carries out each instruction for 32 lanes by the PTX ISA's fragment tables. That is
// what checks the lane mapping (which lane loads which row, which register holds which pair) without a GPU.
//
// Isa provides, for the calling lane (all 32 lanes of the warp call each one together, as on the device):
//   Isa::ldsm_x4<kTrans>(uint32_t (&r)[4], const void* row)   ldmatrix.sync.aligned.m8n8.x4[.trans].shared.b16
//   Isa::mma_16816<Op>(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1)
//                                                            mma.sync.aligned.m16n8k16.row.col.f32.{op}.{op}.f32
//   Isa::pack2<Op>(float lo, float hi) -> uint32_t           two floats rounded to Op, lo in the low half
#pragma once

#include <cstdint>

#include "cta_common.h"

namespace decayfw::cta {

// Host and device under nvcc: the shared-memory trace (smem_trace.h, host code) runs it to record its addresses.
#if defined(__CUDACC__)
#define DECAYFW_WARP __host__ __device__ __forceinline__
#else
#define DECAYFW_WARP inline
#endif
// Unrolled in the device's code only (the host's compiler, under nvcc too, does not know the pragma).
#if defined(__CUDA_ARCH__)
#define DECAYFW_WARP_UNROLL _Pragma("unroll")
#else
#define DECAYFW_WARP_UNROLL
#endif

// Two neighbouring m16n8 accumulator tiles (16 columns) += a·B over one k step, B's 16×16 tile loaded by
// ldmatrix.x4 (.trans when kTrans) from this lane's row address: registers 0, 1 are the first tile's b0, b1.
#if defined(__CUDACC__)
#pragma nv_exec_check_disable  // the Isa's instructions are the caller's side's (PtxWarp: device; the others: host)
#endif
template <typename Isa, bool kTrans, typename Op>
DECAYFW_WARP void mma_n16(float (&c0)[4], float (&c1)[4], const uint32_t (&a)[4], const void* b_row) {
  uint32_t b[4];
  Isa::template ldsm_x4<kTrans>(b, b_row);
  Isa::template mma_16816<Op>(c0, a, b[0], b[1]);
  Isa::template mma_16816<Op>(c1, a, b[2], b[3]);
}

// Warp w (of kM/16 · kParts) of gemm_chain, lane `lane`: row block w mod (kM/16), Y's columns part w / (kM/16).
// It loads its block of A once (ldmatrix) and multiplies it by op(B1) into its columns of Y; then, one 16-column
// tile of P = A·B0ᵀ at a time (over the mask's tiles), it multiplies the tile, masks and rounds it into the A
// operand of Y's next k step in registers, stores it into P (when given, by part 0; zeros outside the mask's
// tiles), and multiplies it by B2's rows. Y goes to f(i, j, v) as gemm_apply's epilogue. Y's k steps are in
// gemm_apply_sum's order either way; a tile of P at a time keeps 8 of P's floats and 4 of its A registers live
// instead of the whole block's (kM/2 and kM/4), which is what lets one warp hold all of Y's columns.
#if defined(__CUDACC__)
#pragma nv_exec_check_disable
#endif
template <KSpan kMask, int kM, int kN, int kK, int kParts, bool kTB1, typename Isa, typename Op, typename F>
DECAYFW_WARP void chain_warp(int w, int lane, const Op* A, int lda, const Op* B0, int ldb0, const Op* B1, int ldb1,
                             const Op* B2, int ldb2, Op* P, int ldp, F& f) {
  static_assert(sizeof(Op) == 2, "gemm_chain multiplies 16-bit operands");
  static_assert(is_chain_mask(kMask), "gemm_chain's mask is Causal, BlockCausal or their transposes");
  static_assert(kM % 16 == 0 && kK % 16 == 0 && kN % (16 * kParts) == 0, "whole 16×16 tiles");
  constexpr int kBlocks = kM / 16, kNp = kN / kParts;
  const int g = lane / 4, tq = lane % 4;
  const int blk = w % kBlocks, part = w / kBlocks, i0 = blk * 16, n0 = part * kNp;
  int first, last;  // P's 16-column tiles the mask leaves anything in; Y's second product's k steps
  chain_tiles(kMask, blk, kBlocks, first, last);
  uint32_t a[kK / 16][4];
  DECAYFW_WARP_UNROLL
  for (int kk = 0; kk < kK / 16; ++kk)
    Isa::template ldsm_x4<false>(a[kk], ldsm_address(A, lda, i0, kk * 16, lane, false));
  float y[kNp / 8][4] = {};
  DECAYFW_WARP_UNROLL
  for (int kk = 0; kk < kK / 16; ++kk) DECAYFW_WARP_UNROLL
  for (int jt = 0; jt < kNp / 16; ++jt) {
    if constexpr (kTB1)
      mma_n16<Isa, false, Op>(y[2 * jt], y[2 * jt + 1], a[kk],
                              ldsm_address(B1, ldb1, n0 + jt * 16, kk * 16, lane, true));
    else  // stored k×n
      mma_n16<Isa, true, Op>(y[2 * jt], y[2 * jt + 1], a[kk],
                             ldsm_address(B1, ldb1, kk * 16, n0 + jt * 16, lane, false));
  }
  const bool stores = P && part == 0;
  DECAYFW_WARP_UNROLL
  for (int s = 0; s < kBlocks; ++s) {
    const bool in = s >= first && s < last;
    if (!in && !stores) continue;
    float p[2][4] = {};
    if (in) {
      DECAYFW_WARP_UNROLL
      for (int kk = 0; kk < kK / 16; ++kk)
        mma_n16<Isa, false, Op>(p[0], p[1], a[kk], ldsm_address(B0, ldb0, s * 16, kk * 16, lane, true));
    }
    // The tile masked and rounded: its n8 tile q's rows g, g + 8 are registers 0, 1 (q = 0) or 2, 3 (q = 1) of the
    // A operand for k step s.
    uint32_t pa[4];
    DECAYFW_WARP_UNROLL
    for (int q = 0; q < 2; ++q) DECAYFW_WARP_UNROLL
    for (int h = 0; h < 2; ++h) {
      const int i = i0 + g + 8 * h, j = s * 16 + q * 8 + 2 * tq;
      const uint32_t x = Isa::template pack2<Op>(chain_keeps(kMask, i, j) ? p[q][2 * h] : 0.0f,
                                                 chain_keeps(kMask, i, j + 1) ? p[q][2 * h + 1] : 0.0f);
      pa[h + 2 * q] = x;
      if (stores) *reinterpret_cast<uint32_t*>(P + i * ldp + j) = x;
    }
    if (!in) continue;
    DECAYFW_WARP_UNROLL
    for (int jt = 0; jt < kNp / 16; ++jt)
      mma_n16<Isa, true, Op>(y[2 * jt], y[2 * jt + 1], pa, ldsm_address(B2, ldb2, s * 16, n0 + jt * 16, lane, false));
  }
  // The epilogue as gemm_apply's: per 16-column tile, the lane's pairs (accumulator_pair) are n8 tile 2jt's c0..c3,
  // then 2jt + 1's.
  DECAYFW_WARP_UNROLL
  for (int jt = 0; jt < kNp / 16; ++jt) {
    float v[2 * kAccumulatorPairs];
    DECAYFW_WARP_UNROLL
    for (int e = 0; e < 4; ++e) v[e] = y[2 * jt][e], v[4 + e] = y[2 * jt + 1][e];
    f(i0 + g, n0 + jt * 16 + 2 * tq, static_cast<const float*>(v));
  }
}

}  // namespace decayfw::cta
