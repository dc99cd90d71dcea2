// What a "CTA program" is, and the pieces shared by its two executors.
//
// The chunkwise kernels (../chunk/, indexed by decay_chunk_program.h) are written once, as the work of one CTA, against
// a small executor interface, and run by two executors:
//   - DeviceCta (device_cta.cuh): the real thing. for_each spreads indices over the CTA's threads
//     and ends with __syncthreads(); gemm runs on tensor cores (WMMA: bf16/fp16, or tf32 for fp32).
//   - HostCta (host_cta.h): the same program on the CPU, one index at a time, with the tensor-core
//     operand rounding emulated. The CPU tests run every CUDA chunk program through it against the
//     fp64 reference, so indexing, masking, chunk boundaries and the numerics are checked on
//     machines without a GPU (CI). What it cannot check is the device executor itself (fragment
//     loads, the warp split of gemm): that is tests/gpu.
//
// The interface a program may use (Cta is DeviceCta or HostCta):
//   cta.for_each(n, f)        f(i) for every i in [0, n), in any order and in parallel, then a
//                             barrier. f(i) must write only what no other index reads or writes.
//   cta.gemm<TA, TB>(m, n, k, A, lda, B, ldb, C, ldc, accumulate)
//                             C[m×n] (fp32, row-major) = (accumulate ? C : 0) + op(A)·op(B), then a
//                             barrier. op(A)[i,p] = TA ? A[p·lda + i] : A[i·lda + p];
//                             op(B)[p,j] = TB ? B[j·ldb + p] : B[p·ldb + j]. m, n, k multiples of 16;
//                             A, B (of the operand type) and C in shared memory, which the device
//                             loads and stores as such (wmma_shared.cuh); 32-byte aligned tiles.
//   cta.gemm_fp32<TA, TB>(m, n, k, A, lda, B, ldb, C, ldc, accumulate)
//                             gemm with fp32 operands multiplied to fp32 accuracy (where gemm rounds
//                             them to tf32): each operand as the sum of two tf32 parts, three
//                             tensor-core products (the product of the two small parts, below 2^-22
//                             of the whole, left out). Same tiles, contract and barrier as gemm.
//   cta.gemm_apply<TA, TB[, span]>(m, n, k, A, lda, B, ldb, f)
//                             gemm's product, left in the tensor cores' fp32 accumulators (registers on
//                             the device) and handed to f there instead of stored: f(i, j, v) with v[8]
//                             the products at rows i, i + 8 and columns j, j + 1, j + 8, j + 9, pair e
//                             (v[2e], v[2e + 1]) at row i + 8·(e & 1), columns j + 8·(e >> 1) (+ 1): one
//                             call per 16-row, 16-column tile and per (i mod 16, j mod 16) with i mod 16
//                             < 8 and j even < 8 in it, i.e. what one lane of a warp holds (accumulator_pair),
//                             then a barrier. The calls are as a for_each's indices: f writes only what no
//                             other call reads or writes. An epilogue that scales the product and adds it
//                             into a tile saves the tile the product would pass through. span (a KSpan, All
//                             by default) skips the k steps a causal mask makes zero.
//   cta.gemm_apply_sum(m, n, f, term<TA, TB[, span]>(k, A, lda, B, ldb), term<...>(...))
//                             gemm_apply of the sum of two products (one set of accumulators, the first
//                             product's k steps, then the second's): the operand type alike, k, transposes
//                             and spans each their own. One epilogue for two products that share their decays.
//   cta.gemm_chain<mask, m, n, k[, parts, TB1]>(A, lda, B0, ldb0, B1, ldb1, B2, ldb2, P, ldp, f)   (16-bit operands)
//                             Y[m×n] = A·op(B1) + mask(A·B0ᵀ)·B2, handed to f as gemm_apply's, then a barrier. A
//                             [m×k], B0 [m×k] row-major; op(B1) as gemm's op(B) with TB = TB1 (true by default:
//                             B1 [n×k]); B2 [m×n] row-major. mask (KSpan::Causal: the pairs j ≤ i; BlockCausal: the
//                             16-row blocks before the row's; AntiCausal, BlockAntiCausal: their transposes, j ≥ i
//                             and the blocks after the row's) zeroes the rest of A·B0ᵀ (whose tiles outside it take
//                             no steps), and the result is rounded to the operand type (as store_causal_pairs);
//                             P (null, or [m×m] at ld ldp) receives it. Y's k steps: A·op(B1)'s, then the second
//                             product's in its span (LowerA, BelowA, UpperA, AboveA: chain_second_span), as
//                             gemm_apply_sum's. The point is what
//                             stays in registers on the device: a warp holds a 16-row block of the masked
//                             product and multiplies it from there (mma.sync's accumulators have its A
//                             operand's layout), and A's block is loaded once for both products; with parts >
//                             1, that many warps share a row block, each with n/parts columns of Y (each
//                             computes the block of P; the first stores it).
//   cta.gemm_chain<mask, m, n, k, parts, TB1, first, phase>(...)
//                             the same, in a phase that several chains share: this chain's m/16·parts warps are
//                             [first, first + m/16·parts) of the phase's `phase` (the chains called in order of
//                             first, from 0, with nothing else between them), and the barrier comes after the last.
//                             The chains run at once: no epilogue may write any of the phase's operands or P, no P
//                             overlap another chain's operands or P, and the epilogues are as one for_each's calls.
//   Cta::to_f(x), Cta::from_f<T>(x)   storage type <-> float.
//   Cta::load4(p, v), Cta::store4(p, v)   four consecutive elements of p (float, or a 16-bit
//                             storage type) to or from four floats v, at an address aligned to their
//                             size (16 or 8 bytes): one vector access on the device. A 16-bit store
//                             rounds to nearest, as from_f.
//   Cta::load2(p, v), Cta::store2(p, v)   two consecutive floats, 8-byte aligned: one 64-bit access
//                             (gemm_apply's epilogues take a pair of columns); store2 also to a 16-bit
//                             storage type, 4-byte aligned, rounded as store4: one 32-bit access.
//   cta.copy16_async(dst, src, fill)
//                             starts copying 16 bytes of read-only global input at src to shared
//                             memory at dst (both 16-byte aligned), or zeros when !fill (src is then
//                             not read), without going through registers (cp.async on the device).
//                             dst is undefined until the next wait_async and must not be read or
//                             written before it: the serial passes compute one chunk while the
//                             next one's inputs are in flight.
//   cta.wait_async()          every copy the CTA started has landed, then a barrier.
//   cta.atomic_or(word, bits) *word |= bits atomically (a 32-bit word in shared memory): the one
//                             write that indices of the same for_each may share (a bit set per
//                             column, read only after the phase's barrier).
//   Cta::has_fp32_range<Op>() whether the operand type reaches fp32's range (bf16, and fp32 run as
//                             tf32) or not (fp16: 65504).
#pragma once

#include <cstddef>
#include <cstdint>

#if defined(__CUDACC__)
#define DECAYFW_CTA __device__ __forceinline__      // program code: device only under nvcc
#define DECAYFW_HD __host__ __device__ __forceinline__  // layouts: the launcher sizes shared memory with them
#else
#define DECAYFW_CTA inline
#define DECAYFW_HD inline
#endif

// Unrolls a loop of constant trip count on the device (so its loads are issued together); nothing
// on the host, where GCC would warn about an unknown pragma.
// DECAYFW_UNROLL_BY4: four iterations at a time, where a full unroll would keep too many loads live.
#if defined(__CUDACC__)
#define DECAYFW_UNROLL _Pragma("unroll")
#define DECAYFW_UNROLL_BY4 _Pragma("unroll 4")
#else
#define DECAYFW_UNROLL
#define DECAYFW_UNROLL_BY4
#endif

namespace decayfw::cta {

// The special-function operations (the SM's MUFU pipe: MUFU.EX2, MUFU.RCP) that the programs' exponentials and
// reciprocals cost on the device, counted on the host: while special_function_count points somewhere (a current
// SmemTrace's kernel), the programs add their device cost there (tiles.h: decay_exp, log_sigmoid,
// sigmoid_of_minus). The MUFU floor of benchmarks/smem_bank_report comes from them. Under nvcc the programs are
// device code and count nothing (the counter is there for host code such as SmemTrace's).
inline thread_local int64_t* special_function_count = nullptr;
DECAYFW_CTA void count_special_functions(int n) {
#if !defined(__CUDACC__)
  if (special_function_count) *special_function_count += n;
#else
  (void)n;
#endif
}

// Carves typed buffers out of one shared-memory block, 128-byte aligned. With a null base it only
// measures, so the launcher computes a program's shared-memory size with the program's own carve.
class Arena {
 public:
  DECAYFW_HD explicit Arena(unsigned char* base) : base_(base) {}
  template <typename T>
  DECAYFW_HD T* take(size_t count) {
    used_ = (used_ + 127) & ~size_t(127);
    T* p = base_ ? reinterpret_cast<T*>(base_ + used_) : nullptr;
    used_ += count * sizeof(T);
    return p;
  }
  // A sub-arena over the next `bytes` bytes: alternatives that share memory (used in different
  // phases) are carved from copies of one sub-arena.
  DECAYFW_HD Arena region(size_t bytes) {
    used_ = (used_ + 127) & ~size_t(127);
    Arena r(base_ ? base_ + used_ : nullptr);
    used_ += bytes;
    return r;
  }
  DECAYFW_HD size_t used() const { return used_; }

 private:
  unsigned char* base_;
  size_t used_ = 0;
};

DECAYFW_HD size_t max_size(size_t a, size_t b) { return a > b ? a : b; }

// The number of set bits of a word.
DECAYFW_HD int bit_count(uint32_t x) {
#if defined(__CUDA_ARCH__)
  return __popc(x);
#else
  return __builtin_popcount(x);
#endif
}

// The index of the lowest set bit of a non-zero word.
DECAYFW_HD int lowest_set_bit(uint32_t x) {
#if defined(__CUDA_ARCH__)
  return __ffs(static_cast<int>(x)) - 1;
#else
  return __builtin_ctz(x);
#endif
}

// gemm's tile walk, shared by both executors: DeviceCta loads and stores exactly these addresses,
// and HostCta checks every one of them against WMMA's contract, so a layout that would break
// load_matrix_sync on the device fails on the CPU first.
//   - A warp computes one 16×16 output tile (i0, j0) at a time, stepping k by wmma_k_step<Op>
//     (m16n16k16 for 16-bit operands, m16n16k8 for tf32).
//   - Every tile pointer must be 32-byte aligned, and every leading dimension a multiple of
//     16 bytes (8 half-precision or 4 fp32 elements).
template <typename Op>
constexpr int wmma_k_step = sizeof(Op) == 4 ? 8 : 16;
constexpr size_t kWmmaTileAlign = 32;  // bytes, for every fragment load and store
constexpr size_t kWmmaLdmBytes = 16;   // a leading dimension's multiple, in bytes

template <bool TA, typename Op>
DECAYFW_HD const Op* gemm_a_tile(const Op* A, int lda, int i0, int p) {  // op(A)[i0.., p..]
  return TA ? A + p * lda + i0 : A + i0 * lda + p;
}
template <bool TB, typename Op>
DECAYFW_HD const Op* gemm_b_tile(const Op* B, int ldb, int j0, int p) {  // op(B)[p.., j0..]
  return TB ? B + j0 * ldb + p : B + p * ldb + j0;
}
template <typename F>  // float or const float
DECAYFW_HD F* gemm_c_tile(F* C, int ldc, int i0, int j0) {
  return C + i0 * ldc + j0;
}

// The k steps [begin, end) a 16×16 output tile (rows i0.., columns j0..) of gemm_apply's product takes: all of
// them, or fewer where the program knows the others multiply zeros (a causal mask), so that they cost nothing:
//   All:    [0, k).
//   LowerA: op(A) is zero above its diagonal (op(A)[i, p] = 0 for p > i): [0, i0 + 16).
//   UpperA: op(A) is zero below it (p < i): [i0, k).
//   Causal: the epilogue masks the product to j ≤ i: a tile with j0 > i0 takes none (its accumulators stay 0).
// and the same with the 16×16 blocks on the diagonal zero too (the blocks taken apart, in fp32):
//   BelowA: op(A) zero from its diagonal block on: [0, i0).   AboveA: zero up to it: [i0 + 16, k).
//   BlockCausal: the epilogue masks the product to the blocks j0 < i0: a tile with j0 ≥ i0 takes none.
// HostCta checks that the steps skipped for LowerA, UpperA, BelowA and AboveA hold zeros in A.
enum class KSpan { All, LowerA, UpperA, Causal, BelowA, AboveA, BlockCausal, AntiCausal, BlockAntiCausal };

// One product of gemm_apply_sum: op(A)·op(B) over k, its transposes and k span as gemm_apply's.
template <bool TA, bool TB, KSpan kSpanOf, typename Op>
struct Term {
  static constexpr bool kTA = TA, kTB = TB;
  static constexpr KSpan kSpan = kSpanOf;
  using Operand = Op;
  int k;
  const Op* A;
  int lda;
  const Op* B;
  int ldb;
};
template <bool TA, bool TB, KSpan kSpan = KSpan::All, typename Op>
DECAYFW_HD Term<TA, TB, kSpan, Op> term(int k, const Op* A, int lda, const Op* B, int ldb) {
  return {k, A, lda, B, ldb};
}

// In a phase that several gemm_chains share, the first of the phase's warps (first, first + warps, ... are the
// chain's) that CTA warp `warp` of `warps` takes: the least v ≥ first with v ≡ warp (mod warps).
DECAYFW_HD int first_phase_warp(int warp, int warps, int first) {
  return warp >= first ? warp : warp + (first - warp + warps - 1) / warps * warps;
}

DECAYFW_HD void k_span(KSpan span, int i0, int j0, int k, int& begin, int& end) {
  begin = 0, end = k;
  if (span == KSpan::LowerA)
    end = i0 + 16 < k ? i0 + 16 : k;
  else if (span == KSpan::UpperA)
    begin = i0 < k ? i0 : k;
  else if (span == KSpan::Causal && j0 > i0)
    end = 0;
  else if (span == KSpan::BelowA)
    end = i0 < k ? i0 : k;
  else if (span == KSpan::AboveA)
    begin = i0 + 16 < k ? i0 + 16 : k;
  else if (span == KSpan::BlockCausal && j0 >= i0)
    end = 0;
  else if (span == KSpan::AntiCausal && j0 < i0)
    end = 0;
  else if (span == KSpan::BlockAntiCausal && j0 <= i0)
    end = 0;
}

// The fp32 accumulators of a 16×16 tile (m16n16k16 and m16n16k8 alike) as lane l of the warp holds them:
// four pairs of adjacent columns, pair e in registers x[2e], x[2e + 1], at row l / 4 (+ 8 for odd e) and
// column 2·(l % 4) (+ 8 for e ≥ 2). WMMA leaves the layout unspecified; this is the one mma.sync's m16n8
// fragments document, and the one nvcc 13 stores for both fragments on sm_90 (SASS of wmma.store.d: STS.64
// of x[0..1] at row l / 4, column 2·(l % 4), of x[2..3] 8 rows on, x[4..5] 8 columns on, x[6..7] both).
// gemm_apply's epilogues rely on it; trace_wmma_fragments models the accumulators' loads and stores with it.
constexpr int kAccumulatorPairs = 4;

// gemm_chain's ldmatrix.x4 of a 16×16 tile of 16-bit elements (row-major, at its (0, 0)): lane l gives the
// address of one 16-byte row, the (row, column) below. Row blocks first (rows 0-7, 8-15 at column 0, then at
// column 8) makes the four registers mma.m16n8k16's A operand a0..a3, and with .trans, from a stored k×n tile,
// its B operand (b0, b1) for columns 0-7, then 8-15. Column blocks first (columns 0, 8 of rows 0-7, then of
// rows 8-15) makes them the B operand from a stored n×k tile (k contiguous) without .trans.
DECAYFW_HD int ldsm_row(int lane, bool column_blocks_first) {
  return lane % 8 + 8 * (column_blocks_first ? lane / 16 : lane / 8 % 2);
}
DECAYFW_HD int ldsm_col(int lane, bool column_blocks_first) {
  return 8 * (column_blocks_first ? lane / 8 % 2 : lane / 16);
}
// Lane l's row address for the tile at (r0, c0) of a row-major array with leading dimension ld.
template <typename T>
DECAYFW_HD T* ldsm_address(T* base, int ld, int r0, int c0, int lane, bool column_blocks_first) {
  return base + (r0 + ldsm_row(lane, column_blocks_first)) * ld + c0 + ldsm_col(lane, column_blocks_first);
}
// gemm_chain's masks: Causal (the pairs j ≤ i), BlockCausal (j's 16-block before i's), and their transposes
// AntiCausal (j ≥ i) and BlockAntiCausal (j's 16-block after i's), the masked product's transpose in the gradient.
DECAYFW_HD constexpr bool is_chain_mask(KSpan mask) {
  return mask == KSpan::Causal || mask == KSpan::BlockCausal || mask == KSpan::AntiCausal ||
         mask == KSpan::BlockAntiCausal;
}
// Whether gemm_chain keeps the pair (i, j) of A·B0ᵀ (i, j absolute in the product).
DECAYFW_HD bool chain_keeps(KSpan mask, int i, int j) {
  return mask == KSpan::BlockCausal       ? j / 16 < i / 16
         : mask == KSpan::AntiCausal      ? j >= i
         : mask == KSpan::BlockAntiCausal ? j / 16 > i / 16
                                          : j <= i;
}
// The 16-column tiles [first, last) of a 16-row block's masked product that the mask leaves anything in (of
// `blocks`): the second product's k steps too.
DECAYFW_HD void chain_tiles(KSpan mask, int blk, int blocks, int& first, int& last) {
  first = mask == KSpan::AntiCausal ? blk : mask == KSpan::BlockAntiCausal ? blk + 1 : 0;
  last = mask == KSpan::Causal ? blk + 1 : mask == KSpan::BlockCausal ? blk : blocks;
}
// The second product's k span, as gemm_apply_sum's term would take it.
DECAYFW_HD constexpr KSpan chain_second_span(KSpan mask) {
  return mask == KSpan::Causal        ? KSpan::LowerA
         : mask == KSpan::BlockCausal ? KSpan::BelowA
         : mask == KSpan::AntiCausal  ? KSpan::UpperA
                                      : KSpan::AboveA;
}
DECAYFW_HD int accumulator_pair_row(int lane, int e) {
  return lane / 4 + 8 * (e & 1);
}
DECAYFW_HD int accumulator_pair_col(int lane, int e) {
  return 2 * (lane % 4) + 8 * (e >> 1);
}

}  // namespace decayfw::cta
