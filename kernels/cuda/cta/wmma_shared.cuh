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

// One overload per fragment type the gemm uses: USE a or b, LAYOUT row or col, the fragment's k, its element
// type, the PTX type, and its registers (4: bf16 and tf32 operands, 8: f16 operands and the f32 accumulators).
#define DECAYFW_WMMA_LOAD4(FRAG, PTX)                                                                   \
  __device__ __forceinline__ void load(FRAG& f, const void* p, unsigned ld) {                          \
    uint32_t r[4];                                                                                      \
    asm volatile(PTX " {%0, %1, %2, %3}, [%4], %5;"                                                     \
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])                                       \
                 : "r"(shared_address(p)), "r"(ld)                                                      \
                 : "memory");                                                                           \
    static_assert(sizeof(f.x) == sizeof(r), "a fragment of four registers");                          \
    memcpy(f.x, r, sizeof r);                                                                           \
  }
#define DECAYFW_WMMA_LOAD8(FRAG, PTX)                                                                   \
  __device__ __forceinline__ void load(FRAG& f, const void* p, unsigned ld) {                          \
    uint32_t r[8];                                                                                      \
    asm volatile(PTX " {%0, %1, %2, %3, %4, %5, %6, %7}, [%8], %9;"                                     \
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3]), "=r"(r[4]), "=r"(r[5]), "=r"(r[6]),  \
                   "=r"(r[7])                                                                           \
                 : "r"(shared_address(p)), "r"(ld)                                                      \
                 : "memory");                                                                           \
    static_assert(sizeof(f.x) == sizeof(r), "a fragment of eight registers");                          \
    memcpy(f.x, r, sizeof r);                                                                           \
  }

// The fragment types, named for the macros (whose arguments cannot hold a template's commas).
using bf16 = __nv_bfloat16;
using tf32 = w::precision::tf32;
template <typename Use, int K, typename T, typename Layout>
using Operand = w::fragment<Use, 16, 16, K, T, Layout>;
using Bf16ARow = Operand<w::matrix_a, 16, bf16, w::row_major>;
using Bf16ACol = Operand<w::matrix_a, 16, bf16, w::col_major>;
using Bf16BRow = Operand<w::matrix_b, 16, bf16, w::row_major>;
using Bf16BCol = Operand<w::matrix_b, 16, bf16, w::col_major>;
using F16ARow = Operand<w::matrix_a, 16, __half, w::row_major>;
using F16ACol = Operand<w::matrix_a, 16, __half, w::col_major>;
using F16BRow = Operand<w::matrix_b, 16, __half, w::row_major>;
using F16BCol = Operand<w::matrix_b, 16, __half, w::col_major>;
using Tf32ARow = Operand<w::matrix_a, 8, tf32, w::row_major>;
using Tf32ACol = Operand<w::matrix_a, 8, tf32, w::col_major>;
using Tf32BRow = Operand<w::matrix_b, 8, tf32, w::row_major>;
using Tf32BCol = Operand<w::matrix_b, 8, tf32, w::col_major>;
using AccK16 = w::fragment<w::accumulator, 16, 16, 16, float>;
using AccK8 = w::fragment<w::accumulator, 16, 16, 8, float>;

DECAYFW_WMMA_LOAD4(Bf16ARow, "wmma.load.a.sync.aligned.row.m16n16k16.shared.bf16")
DECAYFW_WMMA_LOAD4(Bf16ACol, "wmma.load.a.sync.aligned.col.m16n16k16.shared.bf16")
DECAYFW_WMMA_LOAD4(Bf16BRow, "wmma.load.b.sync.aligned.row.m16n16k16.shared.bf16")
DECAYFW_WMMA_LOAD4(Bf16BCol, "wmma.load.b.sync.aligned.col.m16n16k16.shared.bf16")
DECAYFW_WMMA_LOAD8(F16ARow, "wmma.load.a.sync.aligned.row.m16n16k16.shared.f16")
DECAYFW_WMMA_LOAD8(F16ACol, "wmma.load.a.sync.aligned.col.m16n16k16.shared.f16")
DECAYFW_WMMA_LOAD8(F16BRow, "wmma.load.b.sync.aligned.row.m16n16k16.shared.f16")
DECAYFW_WMMA_LOAD8(F16BCol, "wmma.load.b.sync.aligned.col.m16n16k16.shared.f16")
DECAYFW_WMMA_LOAD4(Tf32ARow, "wmma.load.a.sync.aligned.row.m16n16k8.shared.tf32")
DECAYFW_WMMA_LOAD4(Tf32ACol, "wmma.load.a.sync.aligned.col.m16n16k8.shared.tf32")
DECAYFW_WMMA_LOAD4(Tf32BRow, "wmma.load.b.sync.aligned.row.m16n16k8.shared.tf32")
DECAYFW_WMMA_LOAD4(Tf32BCol, "wmma.load.b.sync.aligned.col.m16n16k8.shared.tf32")
// The fp32 accumulators, row-major (the only layout the gemm keeps them in).
DECAYFW_WMMA_LOAD8(AccK16, "wmma.load.c.sync.aligned.row.m16n16k16.shared.f32")
DECAYFW_WMMA_LOAD8(AccK8, "wmma.load.c.sync.aligned.row.m16n16k8.shared.f32")
#undef DECAYFW_WMMA_LOAD4
#undef DECAYFW_WMMA_LOAD8

#define DECAYFW_WMMA_STORE(FRAG, PTX)                                                                    \
  __device__ __forceinline__ void store(float* p, const FRAG& c, unsigned ld) {                          \
    asm volatile(PTX " [%0], {%1, %2, %3, %4, %5, %6, %7, %8}, %9;" ::"r"(shared_address(p)), "f"(c.x[0]),   \
                 "f"(c.x[1]), "f"(c.x[2]), "f"(c.x[3]), "f"(c.x[4]), "f"(c.x[5]), "f"(c.x[6]), "f"(c.x[7]),  \
                 "r"(ld)                                                                                  \
                 : "memory");                                                                             \
  }
DECAYFW_WMMA_STORE(AccK16, "wmma.store.d.sync.aligned.row.m16n16k16.shared.f32")
DECAYFW_WMMA_STORE(AccK8, "wmma.store.d.sync.aligned.row.m16n16k8.shared.f32")
#undef DECAYFW_WMMA_STORE

}  // namespace decayfw::cta::wmma_shared
