// DeviceCta: the CUDA executor of CTA programs (cta_common.h). for_each spreads indices over the
// CTA's threads; gemm splits the 16×16 output tiles over warps and runs WMMA on tensor cores: bf16 and
// fp16 operands with m16n16k16, fp32 operands as tf32 with m16n16k8 (gemm_fp32: as three tf32 products,
// to fp32 accuracy); fp32 accumulators loaded from and stored to shared memory, or (gemm_apply) handed to
// an epilogue in registers. The fragments move through wmma_shared.cuh's shared-state-space loads and
// stores (ldmatrix for 16-bit operands).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <mma.h>

#include <type_traits>

#include "chain_warp.h"
#include "cta_common.h"
#include "mma_sync.cuh"
#include "wmma_shared.cuh"

namespace decayfw::cta {

template <typename Op>
struct WmmaOperand;  // fragment element type per operand storage type (the k step: wmma_k_step)
template <>
struct WmmaOperand<__nv_bfloat16> {
  using type = __nv_bfloat16;
};
template <>
struct WmmaOperand<__half> {
  using type = __half;
};
template <>
struct WmmaOperand<float> {
  using type = nvcuda::wmma::precision::tf32;
};

struct DeviceCta {
  static __device__ __forceinline__ float to_f(float x) { return x; }
  static __device__ __forceinline__ float to_f(__nv_bfloat16 x) { return __bfloat162float(x); }
  static __device__ __forceinline__ float to_f(__half x) { return __half2float(x); }
  template <typename T>
  static __device__ __forceinline__ T from_f(float x) {
    if constexpr (std::is_same_v<T, __nv_bfloat16>) return __float2bfloat16_rn(x);
    else if constexpr (std::is_same_v<T, __half>) return __float2half_rn(x);
    else return x;
  }

  static __device__ __forceinline__ void load4(const float* p, float* v) {
    const float4 x = *reinterpret_cast<const float4*>(p);
    v[0] = x.x, v[1] = x.y, v[2] = x.z, v[3] = x.w;
  }
  static __device__ __forceinline__ void store4(float* p, const float* v) {
    *reinterpret_cast<float4*>(p) = make_float4(v[0], v[1], v[2], v[3]);
  }
  static __device__ __forceinline__ void load2(const float* p, float* v) {
    const float2 x = *reinterpret_cast<const float2*>(p);
    v[0] = x.x, v[1] = x.y;
  }
  static __device__ __forceinline__ void store2(float* p, const float* v) {
    *reinterpret_cast<float2*>(p) = make_float2(v[0], v[1]);
  }
  template <typename T>  // 16-bit storage: four elements in one 8-byte access
  static __device__ __forceinline__ void load4(const T* p, float* v) {
    static_assert(sizeof(T) == 2, "load4 of a 16-bit type");
    T x[4];
    const uint2 u = *reinterpret_cast<const uint2*>(p);
    memcpy(x, &u, 8);
    for (int i = 0; i < 4; ++i) v[i] = to_f(x[i]);
  }
  template <typename T>
  static __device__ __forceinline__ void store4(T* p, const float* v) {
    static_assert(sizeof(T) == 2, "store4 of a 16-bit type");
    T x[4];
    for (int i = 0; i < 4; ++i) x[i] = from_f<T>(v[i]);
    uint2 u;
    memcpy(&u, x, 8);
    *reinterpret_cast<uint2*>(p) = u;
  }
  template <typename T>  // 16-bit storage: two elements in one 4-byte access
  static __device__ __forceinline__ void store2(T* p, const float* v) {
    static_assert(sizeof(T) == 2, "store2 of a 16-bit type");
    T x[2] = {from_f<T>(v[0]), from_f<T>(v[1])};
    uint32_t u;
    memcpy(&u, x, 4);
    *reinterpret_cast<uint32_t*>(p) = u;
  }

  // cp.async.cg (sm_80 and newer, as the bf16 and tf32 fragments): global -> shared through L2
  // only, as the inputs are streamed once; a source size of 0 zero-fills the 16 bytes and reads
  // nothing.
  template <typename T>
  __device__ __forceinline__ void copy16_async(T* dst, const T* src, bool fill) {
    const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(dst));
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(src), "r"(fill ? 16 : 0) : "memory");
  }
  __device__ __forceinline__ void wait_async() {
    asm volatile("cp.async.wait_all;\n" ::: "memory");
    __syncthreads();
  }

  __device__ __forceinline__ void atomic_or(uint32_t* word, uint32_t bits) { atomicOr(word, bits); }
  template <typename T>
  static constexpr bool has_fp32_range() {
    return !std::is_same_v<T, __half>;
  }

  template <typename F>
  __device__ __forceinline__ void for_each(int64_t n, F&& f) {
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) f(i);
    __syncthreads();
  }

  // mma_tiles' last step (defined first: its type is deduced) for gemm and gemm_fp32: each tile's accumulators stored
  // to its place in C.
  static __device__ __forceinline__ auto stored_to(float* C, int ldc) {
    return [C, ldc](int i0, int j0, const auto& c) { wmma_shared::store(gemm_c_tile(C, ldc, i0, j0), c, ldc); };
  }

  template <bool TA, bool TB, typename Op>
  __device__ __forceinline__ void gemm(int m, int n, int k, const Op* A, int lda, const Op* B, int ldb, float* C,
                                       int ldc, bool accumulate) {
    mma_tiles<TA, TB, false>(m, n, k, A, lda, B, ldb, accumulate ? C : nullptr, ldc, stored_to(C, ldc));
  }

  // The product stays in the accumulators: each lane hands its four column pairs to f (hand_over).
  template <bool TA, bool TB, KSpan kSpan = KSpan::All, typename Op, typename F>
  __device__ __forceinline__ void gemm_apply(int m, int n, int k, const Op* A, int lda, const Op* B, int ldb, F&& f) {
    mma_tiles<TA, TB, false, kSpan>(m, n, k, A, lda, B, ldb, nullptr, 0,
                                    [&](int i0, int j0, const auto& c) { hand_over(f, i0, j0, c); });
  }

  // Two products in one set of accumulators, then f as gemm_apply's. A walk of its own: routing gemm and
  // gemm_apply through a walk over terms too made nvcc 13 spill 52-76 bytes in every bf16 grad_pass (ptxas -v).
  // Same fragments, loads and k spans as mma_tiles.
  template <typename F, typename T1, typename T2>
  __device__ __forceinline__ void gemm_apply_sum(int m, int n, F&& f, const T1& x, const T2& y) {
    namespace w = nvcuda::wmma;
    using Op = typename T1::Operand;
    static_assert(std::is_same_v<Op, typename T2::Operand>, "one operand type");
    constexpr int kK = wmma_k_step<Op>;
    const int warp = threadIdx.x / 32, warps = blockDim.x / 32;
    const int tiles_n = n / 16, tiles = (m / 16) * tiles_n;
    for (int t = warp; t < tiles; t += warps) {
      const int i0 = (t / tiles_n) * 16, j0 = (t % tiles_n) * 16;
      w::fragment<w::accumulator, 16, 16, kK, float> c;
      w::fill_fragment(c, 0.0f);
      add_term(c, i0, j0, x);
      add_term(c, i0, j0, y);
      hand_over(f, i0, j0, c);
    }
    __syncthreads();
  }

  // fp32 operands at fp32 accuracy: each fragment element x splits into hi = tf32(x) and lo = tf32(x − hi),
  // and the tensor cores sum lo·hi + hi·lo + hi·hi (the small terms first). The lo·lo term left out is
  // below 2^-22 of the product. The operands are read once, as gemm's, and split in registers.
  template <bool TA, bool TB>
  __device__ __forceinline__ void gemm_fp32(int m, int n, int k, const float* A, int lda, const float* B, int ldb,
                                            float* C, int ldc, bool accumulate) {
    mma_tiles<TA, TB, true>(m, n, k, A, lda, B, ldb, accumulate ? C : nullptr, ldc, stored_to(C, ldc));
  }

  // Y = A·op(B1) + mask(A·B0ᵀ)·B2 (cta_common.h) with mma.sync: the chain's warp v is row block v mod m/16 and part
  // v div m/16 (n/kParts columns of Y), its lane code in chain_warp.h (shared with the host's lane emulator). In a
  // phase of kPhase warps that several chains share, this one's warps are [kFirst, kFirst + m/16·kParts), CTA warp
  // w taking the phase's warps w, w + warps, ...; the barrier follows the phase's last chain. Each element's k
  // steps are in gemm_apply_sum's order.
  template <KSpan kMask, int kM, int kN, int kK, int kParts = 1, bool kTB1 = true, int kFirst = 0,
            int kPhase = kM / 16 * kParts, typename Op, typename F>
  __device__ __forceinline__ void gemm_chain(const Op* A, int lda, const Op* B0, int ldb0, const Op* B1, int ldb1,
                                             const Op* B2, int ldb2, Op* P, int ldp, F&& f) {
    constexpr int kWarps = kM / 16 * kParts;
    static_assert(kFirst >= 0 && kFirst + kWarps <= kPhase, "the chain's warps lie in its phase");
    const int lane = threadIdx.x % 32;
    if constexpr (kFirst == 0 && kPhase == kWarps) {
      // A phase of its own, written as before the shared phases: grad_pass sits at its 128 registers, and an
      // equivalent loop (an offset of 0, the warp count in a variable) made ptxas spill 8 bytes in it.
      for (int w = threadIdx.x / 32; w < kM / 16 * kParts; w += blockDim.x / 32)
        chain_warp<kMask, kM, kN, kK, kParts, kTB1, mma_sync::PtxWarp>(w, lane, A, lda, B0, ldb0, B1, ldb1, B2, ldb2, P,
                                                                       ldp, f);
      __syncthreads();
    } else {
      const int warps = blockDim.x / 32;
      for (int v = first_phase_warp(threadIdx.x / 32, warps, kFirst); v < kFirst + kWarps; v += warps)
        chain_warp<kMask, kM, kN, kK, kParts, kTB1, mma_sync::PtxWarp>(v - kFirst, lane, A, lda, B0, ldb0, B1, ldb1, B2,
                                                                       ldb2, P, ldp, f);
      if constexpr (kFirst + kWarps == kPhase) __syncthreads();
    }
  }

 private:
  template <typename Frag>
  static __device__ __forceinline__ void split_tf32(Frag& hi, Frag& lo) {
    namespace w = nvcuda::wmma;
#pragma unroll
    for (int e = 0; e < hi.num_elements; ++e) {
      const float x = hi.x[e], h = w::__float_to_tf32(x);
      hi.x[e] = h;
      lo.x[e] = w::__float_to_tf32(x - h);
    }
  }

  // A tile's accumulators to gemm_apply's epilogue: the lane's four column pairs (accumulator_pair).
  template <typename F, typename Acc>
  static __device__ __forceinline__ void hand_over(F& f, int i0, int j0, const Acc& c) {
    const int lane = threadIdx.x % 32;
    float v[2 * kAccumulatorPairs];
#pragma unroll
    for (int e = 0; e < 2 * kAccumulatorPairs; ++e) v[e] = c.x[e];
    f(i0 + accumulator_pair_row(lane, 0), j0 + accumulator_pair_col(lane, 0), static_cast<const float*>(v));
  }

  // One term's k steps into a tile's accumulators (gemm_apply_sum).
  template <typename Acc, typename X>
  static __device__ __forceinline__ void add_term(Acc& c, int i0, int j0, const X& x) {
    namespace w = nvcuda::wmma;
    using Op = typename X::Operand;
    using Frag = typename WmmaOperand<Op>::type;
    constexpr int kK = wmma_k_step<Op>;
    using LayoutA = std::conditional_t<X::kTA, w::col_major, w::row_major>;
    using LayoutB = std::conditional_t<X::kTB, w::col_major, w::row_major>;
    int begin, end;
    k_span(X::kSpan, i0, j0, x.k, begin, end);
    for (int p = begin; p < end; p += kK) {
      w::fragment<w::matrix_a, 16, 16, kK, Frag, LayoutA> a;
      w::fragment<w::matrix_b, 16, 16, kK, Frag, LayoutB> b;
      wmma_shared::load(a, gemm_a_tile<X::kTA>(x.A, x.lda, i0, p), x.lda);
      wmma_shared::load(b, gemm_b_tile<X::kTB>(x.B, x.ldb, j0, p), x.ldb);
      if constexpr (std::is_same_v<Op, float>) {
#pragma unroll
        for (int e = 0; e < a.num_elements; ++e) a.x[e] = w::__float_to_tf32(a.x[e]);
#pragma unroll
        for (int e = 0; e < b.num_elements; ++e) b.x[e] = w::__float_to_tf32(b.x[e]);
      }
      w::mma_sync(c, a, b, c);
    }
  }

  // The tile walk of cta_common.h: a warp per 16×16 output tile, k in wmma_k_step<Op> steps, starting from
  // C's tile (C0 non-null) or zero, and done(i0, j0, accumulators) per tile; kSplit: fp32 operands split in
  // two tf32 parts (gemm_fp32).
  template <bool TA, bool TB, bool kSplit, KSpan kSpan = KSpan::All, typename Op, typename Done>
  __device__ __forceinline__ void mma_tiles(int m, int n, int k, const Op* A, int lda, const Op* B, int ldb,
                                            const float* C0, int ldc, Done&& done) {
    namespace w = nvcuda::wmma;
    static_assert(!kSplit || std::is_same_v<Op, float>, "only fp32 operands split");
    using Frag = typename WmmaOperand<Op>::type;
    constexpr int kK = wmma_k_step<Op>;  // the step HostCta checks the tiles with
    using LayoutA = std::conditional_t<TA, w::col_major, w::row_major>;
    using LayoutB = std::conditional_t<TB, w::col_major, w::row_major>;
    const int warp = threadIdx.x / 32, warps = blockDim.x / 32;
    const int tiles_n = n / 16, tiles = (m / 16) * tiles_n;
    for (int t = warp; t < tiles; t += warps) {
      const int i0 = (t / tiles_n) * 16, j0 = (t % tiles_n) * 16;
      w::fragment<w::accumulator, 16, 16, kK, float> c;
      if (C0)
        wmma_shared::load(c, gemm_c_tile(C0, ldc, i0, j0), ldc);
      else w::fill_fragment(c, 0.0f);
      auto step = [&](int p) {
        w::fragment<w::matrix_a, 16, 16, kK, Frag, LayoutA> a;
        w::fragment<w::matrix_b, 16, 16, kK, Frag, LayoutB> b;
        wmma_shared::load(a, gemm_a_tile<TA>(A, lda, i0, p), lda);
        wmma_shared::load(b, gemm_b_tile<TB>(B, ldb, j0, p), ldb);
        if constexpr (kSplit) {
          w::fragment<w::matrix_a, 16, 16, kK, Frag, LayoutA> a_lo;
          w::fragment<w::matrix_b, 16, 16, kK, Frag, LayoutB> b_lo;
          split_tf32(a, a_lo);
          split_tf32(b, b_lo);
          w::mma_sync(c, a_lo, b, c);
          w::mma_sync(c, a, b_lo, c);
        } else if constexpr (std::is_same_v<Op, float>) {
#pragma unroll
          for (int e = 0; e < a.num_elements; ++e) a.x[e] = w::__float_to_tf32(a.x[e]);
#pragma unroll
          for (int e = 0; e < b.num_elements; ++e) b.x[e] = w::__float_to_tf32(b.x[e]);
        }
        w::mma_sync(c, a, b, c);
      };
      int begin, end;
      k_span(kSpan, i0, j0, k, begin, end);
      if constexpr (kSplit) {
        // The split's four operand fragments one k step at a time: unrolled, later steps' loads were
        // hoisted and grad_pass (128 registers at 512 threads) spilled.
#pragma unroll 1
        for (int p = begin; p < end; p += kK) step(p);
      } else {
        for (int p = begin; p < end; p += kK) step(p);
      }
      done(i0, j0, c);
    }
    __syncthreads();
  }
};

}  // namespace decayfw::cta
