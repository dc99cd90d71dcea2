// WMMA fragment loads and stores from shared memory, as PTX wmma.load / wmma.store with the .shared state
// space, for DeviceCta's gemm.
//
// Why not load_matrix_sync: it takes a generic pointer, and the chunk programs' tiles are carved from the
// dynamic shared block and passed around in structs, where nvcc cannot tell they are shared. It then emits
// generic loads: four 32-bit LD.E per 16×16 16-bit operand fragment, and 64-bit ST.E for the accumulators
// (SASS of grad_pass, nvcc 13, sm_90). The same instructions with .shared become one LDSM.x4 (ldmatrix, 4 for
// the transposed layout: LDSM.MT88) per 16-bit operand fragment, and LDS / LDS.64 / STS.64 for the 32-bit
// operands (tf32) and the accumulators. The registers are the same: load_matrix_sync and store_matrix_sync
// are these instructions without the state space, their vector of registers being the fragment's x[] in order
// (nvcc 13's PTX of both, for bf16, tf32 and f32 fragments), so the layouts (and mma_sync on them) are unchanged.
// benchmarks/smem_patterns.cu times the two operand loads beside each other on a GPU.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <mma.h>

#include <cstdint>
#include <cstring>

namespace decayfw::cta::wmma_shared {

namespace w = nvcuda::wmma;

__device__ __forceinline__ unsigned shared_address(const void* p) {
  return static_cast<unsigned>(__cvta_generic_to_shared(p));
}

// The PTX of a load into N registers r from shared address a with stride ld (elements).
#define DECAYFW_WMMA_ASM4(PTX, r, a, ld)                        \
  asm volatile(PTX " {%0, %1, %2, %3}, [%4], %5;"               \
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]) \
               : "r"(a), "r"(ld)                                \
               : "memory")
#define DECAYFW_WMMA_ASM8(PTX, r, a, ld)                                                                        \
  asm volatile(PTX " {%0, %1, %2, %3, %4, %5, %6, %7}, [%8], %9;"                                               \
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]), "=r"(r[4]), "=r"(r[5]), "=r"(r[6]), "=r"(r[7]) \
               : "r"(a), "r"(ld)                                                                                \
               : "memory")

// load(fragment, p, ld) for one fragment type the gemm uses: N registers (4: bf16 and tf32 operands, 8: f16
// operands and the f32 accumulators), MATRIX a, b or c, LAYOUT row or col, the fragment's k, its element type
// T and the PTX type.
#define DECAYFW_WMMA_LOAD(N, FRAGMENT, MATRIX, LAYOUT, K, PTXTYPE)                                         \
  __device__ __forceinline__ void load(FRAGMENT& f, const void* p, unsigned ld) {                          \
    uint32_t r[N];                                                                                         \
    DECAYFW_WMMA_ASM##N("wmma.load." #MATRIX ".sync.aligned." #LAYOUT ".m16n16k" #K ".shared." PTXTYPE, r, \
                        shared_address(p), ld);                                                            \
    static_assert(sizeof(f.x) == sizeof(r), "the fragment's registers");                                   \
    memcpy(f.x, r, sizeof r);                                                                              \
  }
#define DECAYFW_WMMA_OPERAND(N, MATRIX, LAYOUT, K, T, PTXTYPE) \
  DECAYFW_WMMA_LOAD(N, DECAYFW_WMMA_FRAGMENT(matrix_##MATRIX, K, T, LAYOUT##_major), MATRIX, LAYOUT, K, PTXTYPE)
#define DECAYFW_WMMA_FRAGMENT(USE, K, T, LAYOUT) w::fragment<w::USE, 16, 16, K, T, w::LAYOUT>

using bf16 = __nv_bfloat16;
using tf32 = w::precision::tf32;
template <int K>
using Accumulator = w::fragment<w::accumulator, 16, 16, K, float>;

// Both operands in both layouts, for one operand type.
#define DECAYFW_WMMA_OPERANDS(N, K, T, PTXTYPE)  \
  DECAYFW_WMMA_OPERAND(N, a, row, K, T, PTXTYPE) \
  DECAYFW_WMMA_OPERAND(N, a, col, K, T, PTXTYPE) \
  DECAYFW_WMMA_OPERAND(N, b, row, K, T, PTXTYPE) \
  DECAYFW_WMMA_OPERAND(N, b, col, K, T, PTXTYPE)
DECAYFW_WMMA_OPERANDS(4, 16, bf16, "bf16")
DECAYFW_WMMA_OPERANDS(8, 16, __half, "f16")
DECAYFW_WMMA_OPERANDS(4, 8, tf32, "tf32")
// The fp32 accumulators, row-major (the only layout the gemm keeps them in).
DECAYFW_WMMA_LOAD(8, Accumulator<16>, c, row, 16, "f32")
DECAYFW_WMMA_LOAD(8, Accumulator<8>, c, row, 8, "f32")
#undef DECAYFW_WMMA_OPERANDS
#undef DECAYFW_WMMA_OPERAND
#undef DECAYFW_WMMA_FRAGMENT
#undef DECAYFW_WMMA_LOAD
#undef DECAYFW_WMMA_ASM4
#undef DECAYFW_WMMA_ASM8

#define DECAYFW_WMMA_STORE(FRAG, PTX)                                                                               \
  __device__ __forceinline__ void store(float* p, const FRAG& c, unsigned ld) {                                     \
    asm volatile(PTX " [%0], {%1, %2, %3, %4, %5, %6, %7, %8}, %9;" ::"r"(shared_address(p)), "f"(c.x[0]),          \
                 "f"(c.x[1]), "f"(c.x[2]), "f"(c.x[3]), "f"(c.x[4]), "f"(c.x[5]), "f"(c.x[6]), "f"(c.x[7]), "r"(ld) \
                 : "memory");                                                                                       \
  }
DECAYFW_WMMA_STORE(Accumulator<16>, "wmma.store.d.sync.aligned.row.m16n16k16.shared.f32")
DECAYFW_WMMA_STORE(Accumulator<8>, "wmma.store.d.sync.aligned.row.m16n16k8.shared.f32")
#undef DECAYFW_WMMA_STORE

}  // namespace decayfw::cta::wmma_shared
