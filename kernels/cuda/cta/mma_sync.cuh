// mma.sync m16n8k16 and ldmatrix for DeviceCta::gemm_chain: the PTX instructions whose register layouts the PTX ISA
// documents ("Matrix Fragments for mma.m16n8k16"), which WMMA's fragments do not promise. gemm_chain's lane code
// (chain_warp.h) runs on them through PtxWarp; tests/cpp/lane_emulator.h is the same instruction set on the host. With
// g = lane / 4 and t = lane % 4, a warp's m16n8 fp32 accumulators c0..c3 hold rows g (c0, c1) and g + 8 (c2, c3) at
// columns 2t, 2t + 1; its 16-bit A operand a0..a3 holds rows g, g + 8, g, g + 8 at columns 2t, 2t + 1 (a0, a1) and 2t +
// 8, 2t + 9 (a2, a3), two elements to a register, the lower column in the low half; its B operand b0, b1 holds rows (k)
// 2t, 2t + 1 and 2t + 8, 2t + 9 of column (n) g. So two neighbouring m16n8 accumulator tiles, rounded and packed in
// pairs, are the A operand of the next product over those 16 columns: a product never leaves the registers between two
// multiplications.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <type_traits>

#include "wmma_shared.cuh"  // shared_address

namespace decayfw::cta::mma_sync {

// ldmatrix.x4: four 8×8 matrices of 16-bit elements, lane l giving the address of a 16-byte row (lanes 8i..8i + 7
// those of matrix i); register i gets matrix i's row l / 4, elements 2(l % 4), 2(l % 4) + 1 (with .trans: its
// column l / 4, rows 2(l % 4), 2(l % 4) + 1).
template <bool kTrans>
__device__ __forceinline__ void ldsm_x4(uint32_t (&r)[4], const void* row) {
  const unsigned a = wmma_shared::shared_address(row);
  if constexpr (kTrans)
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(a)
                 : "memory");
  else
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(a)
                 : "memory");
}

// c += a·b, m16n8k16, fp32 accumulators; Op is __nv_bfloat16 or __half.
template <typename Op>
__device__ __forceinline__ void mma_16816(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  if constexpr (std::is_same_v<Op, __nv_bfloat16>)
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  else
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Two floats rounded to nearest and packed, lo in the low half (the lower column).
template <typename Op>
__device__ __forceinline__ uint32_t pack2(float lo, float hi) {
  if constexpr (std::is_same_v<Op, __nv_bfloat16>) {
    const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<const uint32_t*>(&v);
  } else {
    const __half2 v = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<const uint32_t*>(&v);
  }
}

// The warp instruction set chain_warp.h's lane code runs on, on the device.
struct PtxWarp {
  template <bool kTrans>
  static __device__ __forceinline__ void ldsm_x4(uint32_t (&r)[4], const void* row) {
    mma_sync::ldsm_x4<kTrans>(r, row);
  }
  template <typename Op>
  static __device__ __forceinline__ void mma_16816(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    mma_sync::mma_16816<Op>(c, a, b0, b1);
  }
  template <typename Op>
  static __device__ __forceinline__ uint32_t pack2(float lo, float hi) {
    return mma_sync::pack2<Op>(lo, hi);
  }
};

}  // namespace decayfw::cta::mma_sync
