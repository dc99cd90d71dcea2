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
// below).
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
#pragma once

#include <math.h>

#include <cstdint>

#include "cta/cta_common.h"

namespace decayfw::chunk {

struct SeqIn {  // a read-only [B, T, H, X] view with element strides; X contiguous
  const void* p;
  int64_t sb, st, sh;
};
struct SeqOut {
  void* p;
  int64_t sb, st, sh;
};

// The three forms of the 16×16 diagonal blocks ("diagonal blocks" below). Each column whose gates span
// at most wide_span_bound over a sub-chunk ("narrow") has its decays factored through the sub-chunk's first
// row; the others ("wide") take one exponential per pair in fp32 in every form.
//   Elementwise: every column per pair in fp32 (the reference).
//   Factored:    narrow columns from fp32 operands scaled once per row, multiplied in fp32 on the CUDA
//                cores: per column and block, 16 exponentials for its share of Pd (or Rd) and 30 for
//                its paired terms, where the per-pair form takes 136 and 72; as precise (the default).
//   Tensor:      narrow columns inside the tensor-core products, their operands rounded to the operand
//                type: the fewest instructions, but the rounding costs precision (docs/cuda.md). fp16
//                runs the factored form instead (effective_diagonal).
//   Chunk:       the tensor form, except that a chunk whose gates span at most wide_span_bound over the whole
//                chunk in every column (of the key side and of the tile's rows) takes its intra-chunk part as
//                one product over the chunk, referred to the chunk's start (y_of_whole_chunk): no
//                sub-chunks, no per-element terms. The tensor form's precision (every diagonal product rounded
//                to the operand type); fp16 runs the factored form instead.
enum class DiagonalForm : int { Elementwise, Factored, Tensor, Chunk };

// Everything the chunk programs read and write. fp32 buffers are contiguous; N = B·H.
struct ChunkArgs {
  int64_t B = 0, T = 0, H = 0, D = 0, M = 0;
  int64_t chunks = 0;  // ceil(T / C)
  int64_t tiles = 0;   // D / kRows
  bool vector_loads = false;  // every input row 16-byte aligned (inputs_allow_vector_loads)
  SeqIn q{}, k{}, v{}, z{}, f{}, dy{};
  SeqOut y{}, dq{}, dk{}, dv{}, dz{}, df{};
  const float* s0 = nullptr;     // [N, D, M] or null for zeros
  float* final_state = nullptr;  // [N, D, M] or null
  float* states = nullptr;       // [N, chunks + 1, D, M]: chunk c's start state; [chunks] = S_T
  const float* dsT = nullptr;    // [N, D, M] or null for zeros
  // [N, chunks, D, M] in the operand type Op: the gradient reaching chunk c's end state. grad_pass
  // multiplies it as Op anyway, so storing it rounded loses nothing there and halves its traffic for
  // 16-bit inputs; its other use, the gates' boundary term, is then computed from the same rounded
  // values as the dv and dk it telescopes against (tests/cpp/test_chunk_program.cpp measures the effect).
  void* dstates = nullptr;
  float* ds0 = nullptr;          // [N, D, M]
  // How the diagonal blocks (below) are taken: DiagonalForm says what each form costs.
  DiagonalForm diagonal = DiagonalForm::Factored;
};

constexpr int kRows = 64;  // state rows per CTA (a D tile)
constexpr int kSub = 16;   // sub-chunk: the tensor-core tile edge

// Elements in one 16-byte vector load of an input: 8 bf16/fp16, 4 fp32.
template <typename Op>
constexpr int kVec = 16 / static_cast<int>(sizeof(Op));

// The chunk loads read inputs 16 bytes at a time when every row they read starts 16-byte aligned:
// the base pointer aligned and every stride a whole number of vectors (M and the tile offsets are
// multiples of 16 elements, so a vector never straddles a row's end). Otherwise (odd views, e.g. a
// slice one element in) they load element by element. The launcher and the host driver both
// decide with this function.
DECAYFW_HD bool rows_allow_vector_loads(const SeqIn& s, size_t elem_bytes) {
  if (s.p == nullptr) return true;
  const int64_t w = static_cast<int64_t>(16 / elem_bytes);
  return reinterpret_cast<uintptr_t>(s.p) % 16 == 0 && s.sb % w == 0 && s.st % w == 0 && s.sh % w == 0;
}
DECAYFW_HD bool inputs_allow_vector_loads(const ChunkArgs& a, size_t elem_bytes) {
  return rows_allow_vector_loads(a.q, elem_bytes) && rows_allow_vector_loads(a.k, elem_bytes) &&
         rows_allow_vector_loads(a.v, elem_bytes) && rows_allow_vector_loads(a.z, elem_bytes) &&
         rows_allow_vector_loads(a.f, elem_bytes) && rows_allow_vector_loads(a.dy, elem_bytes);
}

// Compile-time sizes of one configuration: key dimension M, chunk C, operand type Op (= the input
// type: bf16, fp16, or fp32 run as tf32). Leading dimensions are padded so that rows of a tile fall
// on different shared-memory banks and every 16-row/16-column tile stays 32-byte aligned. fp32 tiles
// move 8 banks a row: the tensor cores' 64-bit accumulator accesses (four rows of eight banks in a half
// warp) are then free of conflicts, where 4 made them 2-way; Fx and Fy move 4, as their reader takes eight
// rows of four words a warp (gemm_fp32's tf32 fragments). benchmarks/smem_bank_report counts what each choice
// costs.
template <int kM, int kC, typename Op>
struct Config {
  static constexpr int M = kM, C = kC, R = kRows, S = kSub, NS = kC / kSub;
  static constexpr int ldm_op = M + 8, ldd_op = R + 8, ldc_op = C + 8;
  static constexpr int ldm_f = M + 8, ldd_f = R + 8, ldc_f = C + 8;
  static constexpr int ld_fd = (M > R ? M : R) + 4;  // the factored diagonal's fp32 operands (Tiles::Fx, Fy)
  // The cumulative log gates (Tiles::Bc C×M, Ac C×R) move 4 banks a row, so that the per-pair sums' scalar
  // reads of one column in rows j and j' meet only 8 rows apart (unpadded, every row met: 4.9 wavefronts a
  // read with fast-forgetting gates); not at M = 16, where a quarter warp's vector reads span two rows that
  // the padding would overlap.
  static constexpr int ldg_m = M >= 32 ? M + 8 : M, ldg_r = R + 8;
  static constexpr int key_words = (M + 31) / 32, row_words = R / 32;  // one bit per column (Tiles::key_wide)
  static_assert(kM % 16 == 0 && kC % 16 == 0, "M and C must be multiples of 16");
};

template <typename Op>
DECAYFW_CTA Op* dstates_of(const ChunkArgs& a) {
  return static_cast<Op*>(a.dstates);
}

DECAYFW_CTA float log_sigmoid(float x) { return fminf(x, 0.0f) - log1pf(expf(-fabsf(x))); }
DECAYFW_CTA float sigmoid_of_minus(float x) { return 1.0f / (1.0f + expf(x)); }  // σ(−x): exact near σ(x) = 1

// e^x of a decay exponent (a difference of cumulative log gates, x ≤ 0). The gradient pass computes
// hundreds of thousands per chunk, most in its 16×16 diagonal blocks, so the hardware's ex2.approx is
// used on the device: one multiply and one special-function op, where expf spends six more
// instructions on range reduction. Its error, about 2 ulp plus |x|·2^-24 relative (under 6e-6 for
// x ≥ −88; below about −87 the result flushes to zero, as the terms it scales no longer count), is far
// under the operands' rounding (bf16 2^-9, tf32 2^-11). The host executor uses expf.
DECAYFW_CTA float decay_exp(float x) {
#if defined(__CUDA_ARCH__)
  return __expf(x);
#else
  return expf(x);
#endif
}

template <typename T>
DECAYFW_CTA const T* row_of(const SeqIn& s, int64_t b, int64_t t, int64_t h) {
  return static_cast<const T*>(s.p) + b * s.sb + t * s.st + h * s.sh;
}
template <typename T>
DECAYFW_CTA T* row_of(const SeqOut& s, int64_t b, int64_t t, int64_t h) {
  return static_cast<T*>(s.p) + b * s.sb + t * s.st + h * s.sh;
}

// ---- four columns per index ----------------------------------------------------------------------
//
// The phases that scale operands or accumulate products do little arithmetic per element: a
// difference, an exponential, a product, a rounding. Taken element by element, the index arithmetic,
// addresses and scalar shared-memory accesses around it came to 21-29 instructions per exponential
// (SASS of grad_pass, bf16 M = 64), where one special-function operation holds its pipe for 8 issue
// slots: those phases were bound by instruction issue, not by the exponentials. They take four
// consecutive columns per index instead, with one vector access per tile (load4, store4: every row
// of every tile starts 16-byte aligned, and columns come in fours). Each element is computed as
// before, so the results are the same bit for bit.
constexpr int kQuad = 4;

// dst[w] = src[w]·e^{a[w] − b[w]} (b null: e^{a[w]}; a null: e^{−b[w]}) rounded to dst's type, for w < 4; the
// lanes whose bit is set in `zero` get 0 instead.
template <typename Cta, typename Op>
DECAYFW_CTA void scale_quad(Op* dst, const Op* src, const float* a, const float* b, uint32_t zero = 0u) {
  float x[kQuad], ga[kQuad] = {0.0f, 0.0f, 0.0f, 0.0f}, gb[kQuad] = {0.0f, 0.0f, 0.0f, 0.0f};
  Cta::load4(src, x);
  if (a) Cta::load4(a, ga);
  if (b) Cta::load4(b, gb);
  DECAYFW_UNROLL
  for (int w = 0; w < kQuad; ++w) x[w] = (zero >> w) & 1u ? 0.0f : x[w] * decay_exp(ga[w] - gb[w]);
  Cta::store4(dst, x);
}

// scale_quad that also keeps the products in fp32: v[w] = src[w]·e^{a[w] − b[w]}, dst[w] = v[w] rounded (0
// where `zero` has the lane's bit; no dst: not stored) and kept[w] = v[w] (0 where `zero_kept` has it). The
// factored diagonal's operands are the diagonal rows' scaled operands before rounding.
template <typename Cta, typename Op>
DECAYFW_CTA void scale_quad_kept(Op* dst, float* kept, const Op* src, const float* a, const float* b, uint32_t zero,
                                 uint32_t zero_kept) {
  float x[kQuad], ga[kQuad], gb[kQuad], o[kQuad];
  Cta::load4(src, x);
  Cta::load4(a, ga);
  Cta::load4(b, gb);
  DECAYFW_UNROLL
  for (int w = 0; w < kQuad; ++w) {
    const float v = (zero & zero_kept) >> w & 1u ? 0.0f : x[w] * decay_exp(ga[w] - gb[w]);
    o[w] = (zero >> w) & 1u ? 0.0f : v;
    x[w] = (zero_kept >> w) & 1u ? 0.0f : v;
  }
  if (dst) Cta::store4(dst, o);
  Cta::store4(kept, x);
}

// s[w] ← s[w]·e^{a + b[w]}: four elements of a state row d (a = A_L of that row, b = B_L of its columns).
template <typename Cta>
DECAYFW_CTA void decay_state_quad(float* s, float a, const float* b) {
  float o[kQuad], gb[kQuad];
  Cta::load4(s, o);
  Cta::load4(b, gb);
  DECAYFW_UNROLL
  for (int w = 0; w < kQuad; ++w) o[w] *= decay_exp(a + gb[w]);
  Cta::store4(s, o);
}

// One lane's part of a product as gemm_apply hands it over (v, in registers on the device), decayed into
// its fp32 tile: at rows i, i + 8 and columns j, j + 8 (+ 1), out += e^{a − b}·v when add, else
// out = v·e^{a − b}. out, a and b point at (i, j) of their tiles, rows ld, lda, ldb apart; lda or ldb 0: a
// reference row, the same for both rows, read once per column pair; b null: e^{a}; a null: e^{−b}. The product used to
// go through an fp32 tile of its own, to be read back and decayed there; each value is computed as it was then, so the
// results are the same bit for bit.
template <typename Cta>
DECAYFW_CTA void decay_pairs(float* out, int ld, const float* a, int lda, const float* b, int ldb, const float* v,
                             bool add) {
  DECAYFW_UNROLL
  for (int c = 0; c < 2; ++c) {  // columns j, j + 8
    float ga[2][2] = {{0.0f, 0.0f}, {0.0f, 0.0f}}, gb[2][2] = {{0.0f, 0.0f}, {0.0f, 0.0f}};
    // The a and b sides' loads stay separate calls: the bank model (smem_trace.h) takes each call site as
    // one instruction, as the device issues them.
    if (a) {
      Cta::load2(a + 8 * c, ga[0]);
      if (lda)
        Cta::load2(a + 8 * lda + 8 * c, ga[1]);
      else
        ga[1][0] = ga[0][0], ga[1][1] = ga[0][1];
    }
    if (b) {
      Cta::load2(b + 8 * c, gb[0]);
      if (ldb)
        Cta::load2(b + 8 * ldb + 8 * c, gb[1]);
      else
        gb[1][0] = gb[0][0], gb[1][1] = gb[0][1];
    }
    DECAYFW_UNROLL
    for (int r = 0; r < 2; ++r) {  // rows i, i + 8: pair r + 2c
      float* p = out + 8 * r * ld + 8 * c;
      const float* x = v + 2 * (r + 2 * c);
      float o[2];
      if (add) {
        Cta::load2(p, o);
        DECAYFW_UNROLL
        for (int w = 0; w < 2; ++w) o[w] += decay_exp(ga[r][w] - gb[r][w]) * x[w];
      } else {
        DECAYFW_UNROLL
        for (int w = 0; w < 2; ++w) o[w] = x[w] * decay_exp(ga[r][w] - gb[r][w]);
      }
      Cta::store2(p, o);
    }
  }
}

// One lane's part of a C×C product as gemm_apply hands it over (v, at row i, column j), rounded into the operand
// type at out (the product's (0, 0), rows ld apart) and masked to the causal pairs: zero where column > row, or
// with kApart where the column's 16-row block is not before the row's (the diagonal blocks taken apart).
template <typename Cta, bool kApart, typename Op>
DECAYFW_CTA void store_causal_pairs(Op* out, int ld, int i, int j, const float* v) {
  DECAYFW_UNROLL
  for (int e = 0; e < 4; ++e) {  // pair e at row i + 8·(e & 1), columns j + 8·(e >> 1) (+ 1)
    const int r = i + 8 * (e & 1), c = j + 8 * (e >> 1);
    DECAYFW_UNROLL
    for (int w = 0; w < 2; ++w) {
      const bool kept = kApart ? (c + w) / kSub < r / kSub : c + w <= r;
      out[r * ld + c + w] = Cta::template from_f<Op>(kept ? v[2 * e + w] : 0.0f);
    }
  }
}

// Where one CTA works: sequence n, chunk (start c0, valid rows L), tile rows [row0, row0 + R).
struct Place {
  int64_t n, b, h, chunk, c0, row0, tile;
  int valid;  // rows of the chunk inside the sequence
  DECAYFW_CTA Place(const ChunkArgs& a, int64_t n_, int64_t chunk_, int64_t tile_, int C)
      : n(n_), b(n_ / a.H), h(n_ % a.H), chunk(chunk_), c0(chunk_ * C), row0(tile_ * kRows), tile(tile_) {
    const int64_t left = a.T - c0;
    valid = static_cast<int>(left < C ? left : C);
  }
  DECAYFW_CTA int64_t state_row(int64_t slot, int64_t slots, int64_t D, int64_t d) const {  // [N, slots, D, M] row
    return (n * slots + slot) * D + row0 + d;
  }
};

// The shared-memory tiles of one chunk. Programs carve the ones they use (others stay null).
template <typename Op, typename Cfg>
struct Tiles {
  Op *Qr = nullptr, *Kr = nullptr, *Vr = nullptr, *Gr = nullptr;  // raw q, k (C×M), v, dy (C×R); 0 past T
  Op *Fr = nullptr, *Zr = nullptr;                                 // raw gate logits f (C×M), z (C×R), unpadded
  float *Bc = nullptr, *Ac = nullptr;  // cumulative log gates C×M, C×R: rows key_gates(i), row_gates(i)
  Op *Xa = nullptr, *Xb = nullptr, *Xc = nullptr, *Xd = nullptr;  // scaled operands C×M, C×M, C×R, C×R
  float* P = nullptr;                  // S×C fp32 products of a sub-chunk's rows with the chunk's
  Op* Pop = nullptr;                   // the same rounded to the operand type
  Op *Sop = nullptr, *dSop = nullptr;  // R×M state and state gradient rounded to the operand type
  float *Pd = nullptr, *Rd = nullptr;  // C×S fp32 diagonal blocks: q·k and dy·v with their decays
  float* Y = nullptr;                  // C×R fp32 outputs
  // Per sub-chunk, one bit per key column (key_words words) and per row of the tile (row_words): set
  // where that column's log gates span too much for the diagonal block's tensor-core products
  // ("wide": see the diagonal blocks below); null in the passes that have no diagonal blocks.
  uint32_t *key_wide = nullptr, *row_wide = nullptr;
  // The form the program runs (effective_diagonal): where the narrow columns' diagonal terms go, into
  // the tensor-core products, or through Fx, Fy (S×ld_fd fp32: one sub-chunk's two operands of Pd or
  // Rd, scaled by their factors through its first row, zero in the wide columns) when factored.
  DiagonalForm diagonal = DiagonalForm::Elementwise;
  float *Fx = nullptr, *Fy = nullptr;
  // The chunk form's two words, key side then the tile's rows: nonzero where some column's log gates span more
  // than wide_span_bound over the whole chunk (set with the wide bits; null where a pass has none). Pc: the
  // chunk form's C×C products in the operand type, in the region P, Pop, Fx, Fy, Sop and dSop share, after
  // Sop (which its products still read) and where dSop is (dead by then).
  uint32_t* chunk_wide = nullptr;
  Op* Pc = nullptr;
  // Row i of the cumulative log gates, whose rows are padded (Cfg::ldg_m, ldg_r).
  DECAYFW_HD float* key_gates(int i) const { return Bc + i * Cfg::ldg_m; }
  DECAYFW_HD float* row_gates(int i) const { return Ac + i * Cfg::ldg_r; }
  DECAYFW_HD bool tensor_diagonal() const {
    return diagonal == DiagonalForm::Tensor || diagonal == DiagonalForm::Chunk;
  }
  // This chunk (and tile) takes the chunk form's whole-chunk products.
  // (The factored form takes such a chunk whole too, its 16×16 diagonal blocks apart in fp32: blocks_apart.)
  DECAYFW_HD bool chunk_narrow() const {
    return takes_chunks_whole() && chunk_wide != nullptr && (chunk_wide[0] | chunk_wide[1]) == 0u;
  }
  DECAYFW_HD bool takes_chunks_whole() const {
    return fp32_range && (diagonal == DiagonalForm::Chunk || diagonal == DiagonalForm::Factored);
  }
  bool fp32_range = false;  // the operand type holds e^{±40}·|x| (Cta::has_fp32_range; not fp16)
  DECAYFW_HD bool factored() const { return diagonal == DiagonalForm::Factored; }
};

// ---- loading -----------------------------------------------------------------------------------
//
// Every pass loads a chunk the same way, in three phases:
//   1. staging: the raw inputs to shared memory as they are, 16 bytes per asynchronous copy
//      (cp.async), so all of a thread's copies are in flight at once and the phase waits out one
//      memory latency, not one per index. q, k (C×M) and v, dy (C×R) go to the raw tiles the pass
//      carves, the gate logits f (C×M) and z (C×R) to Fr and Zr; rows past T are zeros. Views whose
//      rows are not 16-byte aligned (e.g. one element into their storage) are copied element by
//      element instead, synchronously (ChunkArgs::vector_loads).
//   2. after cta.wait_async(): the log gates log σ(f), log σ(z) into Bc and Ac (0 past T: identity
//      steps);
//   3. their inclusive cumulative sums over the chunk, one column per index.
// A pass stages the key side (q, k, f), the row side of one tile (v, dy, z), or both.
enum Sides : int { kKeySide = 1, kRowSide = 2, kBothSides = 3 };

// Where one chunk's raw inputs land; null where the pass does not read that input.
template <typename Op>
struct Staging {
  Op *Qr = nullptr, *Kr = nullptr, *Vr = nullptr, *Gr = nullptr, *Fr = nullptr, *Zr = nullptr;
};
template <typename Op, typename Cfg>
DECAYFW_CTA Staging<Op> staging_of(const Tiles<Op, Cfg>& t) {
  Staging<Op> s;
  s.Qr = t.Qr, s.Kr = t.Kr, s.Vr = t.Vr, s.Gr = t.Gr, s.Fr = t.Fr, s.Zr = t.Zr;
  return s;
}

// Copies per row of X elements: X / kVec vectors, or X elements.
template <typename Op>
DECAYFW_CTA int loads_per_row(const ChunkArgs& a, int X) {
  return a.vector_loads ? X / kVec<Op> : X;
}

// One vector (or one element) of one input row to its tile, when the pass stages that input.
template <typename Cta, typename Op>
DECAYFW_CTA void stage_one(Cta& cta, bool vector, bool ok, const Op* src, Op* dst) {
  if (dst == nullptr) return;
  if (vector) cta.copy16_async(dst, src, ok);
  else *dst = ok ? *src : Cta::template from_f<Op>(0.0f);
}

// The staging indices of a chunk: C key rows of loads_per_row(M) (q, k, f), then C tile rows of
// loads_per_row(R) (v, dy, z).
template <typename Op, typename Cfg>
DECAYFW_CTA int64_t stage_count(const ChunkArgs& a, int sides) {
  return int64_t(Cfg::C) * ((sides & kKeySide ? loads_per_row<Op>(a, Cfg::M) : 0) +
                            (sides & kRowSide ? loads_per_row<Op>(a, Cfg::R) : 0));
}
template <typename Cta, typename Op, typename Cfg>
DECAYFW_CTA void stage_index(Cta& cta, const ChunkArgs& a, const Place& pl, const Staging<Op>& to, int sides,
                             int64_t e) {
  const int per_key = loads_per_row<Op>(a, Cfg::M), per_row = loads_per_row<Op>(a, Cfg::R);
  const int64_t keys = sides & kKeySide ? int64_t(Cfg::C) * per_key : 0;
  const bool key = e < keys;
  if (!key) e -= keys;
  const int per = key ? per_key : per_row;
  const int i = static_cast<int>(e / per), x = static_cast<int>(e % per) * (a.vector_loads ? kVec<Op> : 1);
  const bool ok = i < pl.valid;
  const int64_t tt = pl.c0 + (ok ? i : 0);  // a row inside the sequence, read only when ok
  const bool vec = a.vector_loads;
  if (key) {
    const int at = i * Cfg::ldm_op + x;
    stage_one(cta, vec, ok, row_of<Op>(a.q, pl.b, tt, pl.h) + x, to.Qr ? to.Qr + at : nullptr);
    stage_one(cta, vec, ok, row_of<Op>(a.k, pl.b, tt, pl.h) + x, to.Kr ? to.Kr + at : nullptr);
    stage_one(cta, vec, ok, row_of<Op>(a.f, pl.b, tt, pl.h) + x, to.Fr + i * Cfg::M + x);
  } else {
    const int at = i * Cfg::ldd_op + x;
    const int64_t col = pl.row0 + x;
    stage_one(cta, vec, ok, row_of<Op>(a.v, pl.b, tt, pl.h) + col, to.Vr ? to.Vr + at : nullptr);
    if (to.Gr) stage_one(cta, vec, ok, row_of<Op>(a.dy, pl.b, tt, pl.h) + col, to.Gr + at);
    stage_one(cta, vec, ok, row_of<Op>(a.z, pl.b, tt, pl.h) + col, to.Zr + i * Cfg::R + x);
  }
}

// Phase 2, index e of C·(M + R)/4 (or one side's part): four landed logits of a row as their log gates
// (four per index, as the phases below: kQuad).
template <typename Cfg>
DECAYFW_CTA int64_t gate_count(int sides) {
  return int64_t(Cfg::C) * ((sides & kKeySide ? Cfg::M : 0) + (sides & kRowSide ? Cfg::R : 0)) / kQuad;
}
template <typename Cta, typename Op, typename Cfg>
DECAYFW_CTA void log_gate_index(const Place& pl, Tiles<Op, Cfg>& t, int sides, int64_t e) {
  const int64_t keys = sides & kKeySide ? int64_t(Cfg::C) * Cfg::M / kQuad : 0;
  const bool key = e < keys;
  const int64_t at = (key ? e : e - keys) * kQuad;  // the quad's first element in the C×M or C×R tile
  const int X = key ? Cfg::M : Cfg::R, row = static_cast<int>(at / X);
  float x[kQuad];
  Cta::load4(key ? t.Fr + at : t.Zr + at, x);
  const bool valid = row < pl.valid;
  DECAYFW_UNROLL
  for (int w = 0; w < kQuad; ++w) x[w] = valid ? log_sigmoid(x[w]) : 0.0f;
  Cta::store4((key ? t.key_gates(row) : t.row_gates(row)) + at % X, x);
}

// Inclusive cumulative sum down one column of a C-row fp32 tile with leading dimension ld.
template <int C>
DECAYFW_CTA void cumsum_column(float* g, int ld) {
  float s = 0.0f;
  for (int i = 0; i < C; ++i) s = g[i * ld] += s;
}

// The form a program runs: the one asked for, except that the tensor form needs an operand type with
// fp32's range (its scaled operands reach e^{span}·|x|, rounded to the operand type): fp16 (65504) runs
// the factored form instead.
template <typename Cta, typename Op>
DECAYFW_CTA DiagonalForm effective_diagonal(const ChunkArgs& a) {
  if ((a.diagonal == DiagonalForm::Tensor || a.diagonal == DiagonalForm::Chunk) && !Cta::template has_fp32_range<Op>())
    return DiagonalForm::Factored;
  return a.diagonal;
}

// What a program's tiles run: the effective form, and whether the operand type can take a chunk whole.
template <typename Cta, typename Op, typename Cfg>
DECAYFW_CTA void choose_form(Tiles<Op, Cfg>& t, const ChunkArgs& a) {
  t.diagonal = effective_diagonal<Cta, Op>(a);
  t.fp32_range = Cta::template has_fp32_range<Op>();
}

// The widest span of log gates over a sub-chunk for which a column's diagonal block is factored (on
// tensor cores or in fp32): the block's operands are scaled by up to e^{span} there (the diagonal blocks
// below say why), and e^40 ≈ 2.4·10^17 leaves inputs up to 10^21 finite in fp32's range. In the
// elementwise form every column is wide. Spans are ≥ 0.
DECAYFW_CTA float wide_span_bound(DiagonalForm form) { return form == DiagonalForm::Elementwise ? -1.0f : 40.0f; }

DECAYFW_CTA bool is_wide(const uint32_t* words, int col) { return (words[col >> 5] >> (col & 31)) & 1u; }
// The bits of four columns from col (a multiple of 4, so they share a word), as scale_quad's `zero`.
DECAYFW_CTA uint32_t wide_quad(const uint32_t* words, int col) { return (words[col >> 5] >> (col & 31)) & 0xfu; }

// f(col) for every wide column of one sub-chunk's words: those from column `first` (< 32) on, ascending, then
// the ones before it (the same for every thread with the same `first`).
template <int kWords, typename F>
DECAYFW_CTA void for_each_wide(const uint32_t* words, int first, F&& f) {
  const uint32_t before = (1u << first) - 1u;  // columns of word 0 below first
  DECAYFW_UNROLL
  for (int pass = 0; pass < 2; ++pass) {
    DECAYFW_UNROLL
    for (int w = 0; w < kWords; ++w) {
      uint32_t bits = w == 0 ? words[0] & (pass == 0 ? ~before : before) : pass == 0 ? words[w] : 0u;
      for (; bits != 0; bits &= bits - 1) f(32 * w + cta::lowest_set_bit(bits));
    }
  }
}

// The wide columns of the first `subs` sub-chunks as one list, sub-chunk by sub-chunk, columns ascending.
// The phases that do per-element work for wide columns take one index per entry, so that their cost
// follows the number of wide columns: with one index per (sub-chunk, column), a few wide columns
// scattered over a tile would put one in nearly every warp, and each such warp would pay for all 32
// lanes. Every thread reads the words (a few per sub-chunk) and finds its entry by counting bits.
template <int kWords>
struct WideList {
  const uint32_t* words;
  int subs;
  int64_t size = 0;
  DECAYFW_CTA WideList(const uint32_t* w, int subs_) : words(w), subs(subs_) {
    for (int i = 0; i < subs * kWords; ++i) size += cta::bit_count(words[i]);
  }
  // Entry e (< size): its sub-chunk and column.
  DECAYFW_CTA void at(int64_t e, int& sub, int& col) const {
    int k = static_cast<int>(e);
    for (int I = 0; I < subs; ++I) {
      for (int w = 0; w < kWords; ++w) {
        uint32_t bits = words[I * kWords + w];
        const int c = cta::bit_count(bits);
        if (k < c) {
          for (; k > 0; --k) bits &= bits - 1;
          sub = I, col = 32 * w + cta::lowest_set_bit(bits);
          return;
        }
        k -= c;
      }
    }
    sub = col = 0;  // not reached for e < size
  }
};

// The words of the sides being loaded, cleared in phase 2 (before phase 3 sets their bits): the sub-chunks'
// wide bits, then the chunk form's word of each side.
template <typename Op, typename Cfg>
DECAYFW_CTA int64_t wide_word_count(const Tiles<Op, Cfg>& t, int sides) {
  if (t.key_wide == nullptr) return 0;
  const int64_t chunk_words =
      t.chunk_wide && t.takes_chunks_whole() ? (sides & kKeySide ? 1 : 0) + (sides & kRowSide ? 1 : 0) : 0;
  return int64_t(Cfg::NS) * ((sides & kKeySide ? Cfg::key_words : 0) + (sides & kRowSide ? Cfg::row_words : 0)) +
         chunk_words;
}
template <typename Op, typename Cfg>
DECAYFW_CTA void clear_wide_word(Tiles<Op, Cfg>& t, int sides, int64_t e) {
  const int64_t keys = sides & kKeySide ? int64_t(Cfg::NS) * Cfg::key_words : 0;
  const int64_t rows = sides & kRowSide ? int64_t(Cfg::NS) * Cfg::row_words : 0;
  if (e < keys) t.key_wide[e] = 0u;
  else if (e < keys + rows)
    t.row_wide[e - keys] = 0u;
  else
    t.chunk_wide[e == keys + rows && (sides & kKeySide) ? 0 : 1] = 0u;
}

// After a column's cumulative sum: its bit in every sub-chunk whose span it exceeds (NaN included).
template <typename Cta, typename Cfg>
DECAYFW_CTA void mark_wide_column(Cta& cta, float bound, const float* g, int ld, uint32_t* words, int words_per_sub,
                                  int col) {
  constexpr int S = Cfg::S;
  for (int I = 0; I < Cfg::NS; ++I) {
    const float span = g[I * S * ld] - g[(I * S + S - 1) * ld];
    if (!(span <= bound)) cta.atomic_or(words + I * words_per_sub + (col >> 5), 1u << (col & 31));
  }
}

// The chunk form: a column whose log gates span more than bound over the whole chunk (from its start: the
// column's last cumulative sum, rows past T adding 0) sets its side's word (NaN included).
template <typename Cta, typename Op, typename Cfg>
DECAYFW_CTA void mark_chunk_column(Cta& cta, const Tiles<Op, Cfg>& t, float bound, const float* g, int ld, int side) {
  if (!t.takes_chunks_whole() || t.chunk_wide == nullptr) return;
  if (!(-g[(Cfg::C - 1) * ld] <= bound)) cta.atomic_or(t.chunk_wide + side, 1u);
}

// Phase 3, index e of M + R columns (or one side's).
template <typename Cfg>
DECAYFW_CTA int64_t column_count(int sides) {
  return (sides & kKeySide ? Cfg::M : 0) + (sides & kRowSide ? Cfg::R : 0);
}
template <typename Cta, typename Op, typename Cfg>
DECAYFW_CTA void cumsum_index(Cta& cta, Tiles<Op, Cfg>& t, int sides, int64_t e) {
  const int64_t keys = sides & kKeySide ? Cfg::M : 0;
  if (e < keys) {
    const int m = static_cast<int>(e);
    cumsum_column<Cfg::C>(t.Bc + m, Cfg::ldg_m);
    if (t.key_wide)
      mark_wide_column<Cta, Cfg>(cta, wide_span_bound(t.diagonal), t.Bc + m, Cfg::ldg_m, t.key_wide, Cfg::key_words, m);
    mark_chunk_column(cta, t, wide_span_bound(t.diagonal), t.Bc + m, Cfg::ldg_m, 0);
  } else {
    const int d = static_cast<int>(e - keys);
    cumsum_column<Cfg::C>(t.Ac + d, Cfg::ldg_r);
    if (t.row_wide)
      mark_wide_column<Cta, Cfg>(cta, wide_span_bound(t.diagonal), t.Ac + d, Cfg::ldg_r, t.row_wide, Cfg::row_words, d);
    mark_chunk_column(cta, t, wide_span_bound(t.diagonal), t.Ac + d, Cfg::ldg_r, 1);
  }
}

// Phases 2 and 3 of a staged chunk (the caller started its copies, with work of its own beside).
template <typename Cta, typename Op, typename Cfg>
DECAYFW_CTA void finish_loading(Cta& cta, const Place& pl, Tiles<Op, Cfg>& t, int sides) {
  cta.wait_async();
  const int64_t gates = gate_count<Cfg>(sides);
  cta.for_each(gates + wide_word_count(t, sides), [&](int64_t e) {
    if (e < gates) log_gate_index<Cta>(pl, t, sides, e);
    else clear_wide_word(t, sides, e - gates);
  });
  cta.for_each(column_count<Cfg>(sides), [&](int64_t e) { cumsum_index(cta, t, sides, e); });
}

// The states the parallel passes read beside a chunk's inputs, in the same staging phase:
//   - the chunk's start state S_prev (fp32), rounded to the operand type into Sop: kStateBatch
//     float4 loads per index, all issued before the first store;
//   - for the gradient, the gradient reaching its end state, stored in the operand type already,
//     copied as it is into dSop (16-byte asynchronous copies; the workspace is aligned).
constexpr int kStateBatch = 4;
template <typename Cfg>
DECAYFW_CTA int64_t start_state_batches() {
  return int64_t(Cfg::R) * (Cfg::M / 4) / kStateBatch;
}
template <typename Cta, typename Op, typename Cfg>
DECAYFW_CTA void load_start_state_batch(const ChunkArgs& a, const Place& pl, Tiles<Op, Cfg>& t, int64_t e) {
  constexpr int M = Cfg::M, Q = M / 4;
  const int64_t stride = start_state_batches<Cfg>();  // index u of batch e: a warp's loads are contiguous
  float s[kStateBatch][4];
  DECAYFW_UNROLL
  for (int u = 0; u < kStateBatch; ++u) {
    const int64_t g = e + u * stride, d = g / Q, m = (g % Q) * 4;
    Cta::load4(a.states + pl.state_row(pl.chunk, a.chunks + 1, a.D, d) * M + m, s[u]);
  }
  DECAYFW_UNROLL
  for (int u = 0; u < kStateBatch; ++u) {
    const int64_t g = e + u * stride, d = g / Q, m = (g % Q) * 4;
    Cta::store4(t.Sop + d * Cfg::ldm_op + m, s[u]);  // rounded to nearest, as from_f
  }
}
template <typename Op, typename Cfg>
DECAYFW_CTA int64_t end_dstate_copies() {
  return int64_t(Cfg::R) * (Cfg::M / kVec<Op>);
}
template <typename Cta, typename Op, typename Cfg>
DECAYFW_CTA void stage_end_dstate(Cta& cta, const ChunkArgs& a, const Place& pl, Tiles<Op, Cfg>& t, int64_t e) {
  constexpr int P = Cfg::M / kVec<Op>;
  const int64_t d = e / P, m = (e % P) * kVec<Op>;
  cta.copy16_async(t.dSop + d * Cfg::ldm_op + m,
                   dstates_of<Op>(a) + pl.state_row(pl.chunk, a.chunks, a.D, d) * Cfg::M + m, true);
}

// ---- the output y of one chunk (also recomputed by the gradient pass) ---------------------------

// Y = e^{A} ⊙ ((Q ⊙ e^{B}) S_prevᵀ): the part of every y_i that comes from before the chunk, the row
// decays applied to the product in registers. Needs Sop, writes Xa.
template <typename Cta, typename Op, typename Cfg>
DECAYFW_CTA void y_inter_product(Cta& cta, Tiles<Op, Cfg>& t) {
  constexpr int C = Cfg::C, M = Cfg::M, R = Cfg::R;
  constexpr int MQ = M / kQuad;
  cta.for_each(int64_t(C) * MQ, [&](int64_t e) {
    const int i = static_cast<int>(e / MQ), m = static_cast<int>(e % MQ) * kQuad;
    scale_quad<Cta>(t.Xa + i * Cfg::ldm_op + m, t.Qr + i * Cfg::ldm_op + m, t.key_gates(i) + m, nullptr);
  });
  cta.template gemm_apply<false, true>(
      C, R, M, t.Xa, Cfg::ldm_op, t.Sop, Cfg::ldm_op, [&](int i, int d, const float* v) {
        decay_pairs<Cta>(t.Y + i * Cfg::ldd_f + d, Cfg::ldd_f, t.row_gates(i) + d, Cfg::ldg_r, nullptr, 0, v, false);
      });
}

// ---- the chunk form: the intra-chunk part as one product over the chunk ---------------------------
//
// Where every column's log gates span at most wide_span_bound over the whole chunk (Tiles::chunk_narrow), the
// chunk's start is every pair's reference: e^{X_i − X_j} = e^{X_i}·e^{−X_j} with e^{X_i} ≤ 1 and e^{−X_j} ≤
// e^{span} (X the cumulative log gates from the chunk's start), and the intra-chunk part is the inter-chunk
// part's form on the chunk's own rows, with no sub-chunks and nothing per element:
//   P = mask(Q̃ K̃ᵀ), Q̃ = Q ⊙ e^{B} (y_inter_product's Xa), K̃ = K ⊙ e^{−B};   Y += e^{A} ⊙ (P Ṽ), Ṽ = V ⊙ e^{−A}.
// The gradient's products (chunk_grad_products) are the same four shapes. Each scaled operand is rounded
// to the operand type, the diagonal pairs too: the tensor form's precision.

// The factored form takes a whole chunk the same way, but for its 16×16 diagonal blocks (kApart): the products
// skip them (P masked to the blocks before the row's), and the blocks come in fp32 as the factored form's do
// (Pd, Rd: diagonal_blocks_whole), so its precision stays the factored form's.

// A whole chunk's scaled operands, in one phase: Q̃ = Q ⊙ e^{B} into Xa (with_q: grad_rows has it already),
// K̃ = K ⊙ e^{−B} into Xb, Ṽ = V ⊙ e^{−A} into vt.
template <typename Cta, typename Op, typename Cfg>
DECAYFW_CTA void whole_chunk_operands(Cta& cta, Tiles<Op, Cfg>& t, bool with_q, Op* vt) {
  constexpr int C = Cfg::C, M = Cfg::M, R = Cfg::R, MQ = M / kQuad, RQ = R / kQuad;
  const int64_t qs = with_q ? int64_t(C) * MQ : 0, keys = qs + int64_t(C) * MQ;
  cta.for_each(keys + int64_t(C) * RQ, [&](int64_t e) {
    if (e < keys) {
      const bool kk = e >= qs;
      if (kk) e -= qs;
      const int j = static_cast<int>(e / MQ), m = static_cast<int>(e % MQ) * kQuad;
      if (kk)
        scale_quad<Cta>(t.Xb + j * Cfg::ldm_op + m, t.Kr + j * Cfg::ldm_op + m, nullptr, t.key_gates(j) + m);
      else
        scale_quad<Cta>(t.Xa + j * Cfg::ldm_op + m, t.Qr + j * Cfg::ldm_op + m, t.key_gates(j) + m, nullptr);
      return;
    }
    e -= keys;
    const int j = static_cast<int>(e / RQ), d = static_cast<int>(e % RQ) * kQuad;
    scale_quad<Cta>(vt + j * Cfg::ldd_op + d, t.Vr + j * Cfg::ldd_op + d, nullptr, t.row_gates(j) + d);
  });
}

// A whole chunk's y from its scaled operands (Q̃ in Xa, K̃ in Xb, Ṽ in vt): P into Pc (kept for the gradient),
// then Y = e^{A} ⊙ (Q̃ S_prevᵀ + P Ṽ), the inter- and intra-chunk parts in one set of accumulators
// (y_inter_product's decays and the intra product's are the same).
template <bool kApart, typename Cta, typename Op, typename Cfg>
DECAYFW_CTA void whole_chunk_y(Cta& cta, Tiles<Op, Cfg>& t, const Op* vt) {
  using cta::KSpan;
  constexpr int C = Cfg::C, M = Cfg::M, R = Cfg::R;
  cta.template gemm_apply<false, true, kApart ? KSpan::BlockCausal : KSpan::Causal>(
      C, C, M, t.Xa, Cfg::ldm_op, t.Xb, Cfg::ldm_op,
      [&](int i, int j, const float* v) { store_causal_pairs<Cta, kApart>(t.Pc, Cfg::ldc_op, i, j, v); });
  cta.gemm_apply_sum(
      C, R,
      [&](int i, int d, const float* v) {
        decay_pairs<Cta>(t.Y + i * Cfg::ldd_f + d, Cfg::ldd_f, t.row_gates(i) + d, Cfg::ldg_r, nullptr, 0, v, false);
      },
      cta::term<false, true>(M, t.Xa, Cfg::ldm_op, t.Sop, Cfg::ldm_op), cta::term < false, false,
      kApart ? KSpan::BelowA : KSpan::LowerA > (C, t.Pc, Cfg::ldc_op, vt, Cfg::ldd_op));
}

// A whole chunk's diagonal blocks in fp32, into Dg (C×S, zero above the diagonal), as the factored form's
// (factored_products) but referred to the chunk's start, which its spans allow: block I's pair (i, j) is
// Σ_x (x_i e^{G_i})(y_j e^{−G_j}) over X columns, both factors in fp32 (Fx, Fy, one block at a time), multiplied
// at fp32 accuracy (gemm_fp32). G: the key side's gates (Pd: q, k) or the tile's rows' (Rd: dy, v).
template <int X, typename Cta, typename Op, typename Cfg, typename Gates>
DECAYFW_CTA void diagonal_blocks_whole(Cta& cta, Tiles<Op, Cfg>& t, const Place& pl, const Op* x, const Op* y, int ld,
                                       Gates&& gates, float* Dg) {
  constexpr int S = Cfg::S, XQ = X / kQuad;
  for (int I = 0; I < Cfg::NS; ++I) {
    const int r = I * S;
    if (r >= pl.valid) break;
    cta.for_each(int64_t(2) * S * XQ + (I > 0 ? S * S : 0), [&](int64_t e) {
      if (e < int64_t(2) * S * XQ) {
        const bool later = e >= int64_t(S) * XQ;  // Fy: the later factor's rows
        if (later) e -= int64_t(S) * XQ;
        const int ii = static_cast<int>(e / XQ), c = static_cast<int>(e % XQ) * kQuad;
        float v[kQuad], g[kQuad];
        Cta::load4((later ? y : x) + (r + ii) * ld + c, v);
        Cta::load4(gates(r + ii) + c, g);
        DECAYFW_UNROLL
        for (int w = 0; w < kQuad; ++w) v[w] *= decay_exp(later ? -g[w] : g[w]);
        Cta::store4((later ? t.Fy : t.Fx) + ii * Cfg::ld_fd + c, v);
        return;
      }
      e -= int64_t(2) * S * XQ;  // the previous block's pairs above its diagonal: zero
      const int ii = static_cast<int>(e / S), jj = static_cast<int>(e % S);
      if (jj > ii) Dg[(r - S + ii) * S + jj] = 0.0f;
    });
    cta.template gemm_fp32<false, true>(S, S, X, t.Fx, Cfg::ld_fd, t.Fy, Cfg::ld_fd, Dg + r * S, S, false);
  }
  const int last = ((pl.valid + S - 1) / S - 1) * S;  // the last block's upper pairs
  cta.for_each(int64_t(S) * S, [&](int64_t e) {
    const int ii = static_cast<int>(e / S), jj = static_cast<int>(e % S);
    if (jj > ii) Dg[(last + ii) * S + jj] = 0.0f;
  });
}

// A whole chunk's y; in the factored form with its diagonal blocks apart, and Pd after them when `need_pd`
// (Fx and Fy share the region Sop and Pc are in, read until then).
template <typename Cta, typename Op, typename Cfg>
DECAYFW_CTA void y_of_whole_chunk(Cta& cta, const Place& pl, Tiles<Op, Cfg>& t, bool need_pd) {
  whole_chunk_operands(cta, t, true, t.Xc);
  if (!t.factored()) return whole_chunk_y<false>(cta, t, t.Xc);
  whole_chunk_y<true>(cta, t, t.Xc);
  if (need_pd)
    diagonal_blocks_whole<Cfg::M>(
        cta, t, pl, t.Qr, t.Kr, Cfg::ldm_op, [&](int i) { return t.key_gates(i); }, t.Pd);
}

// ---- diagonal blocks: on tensor cores where the gates allow, per element where they do not --------
//
// Inside a sub-chunk (first row r) the decay of a pair r ≤ j ≤ i factors through its first row too:
// e^{X_i − X_j} = e^{X_i − X_r}·e^{X_r − X_j}, the first factor ≤ 1 and the second ≤ e^{span}, where
// span = X_r − X_{r+S−1} of that column (≥ 0). Where a column's span is at most wide_span_bound, its
// diagonal block is one more 16-column block of the sub-chunk's tensor-core products, with the pairs
// j > i masked out after the first product. A "wide" column (fast-forgetting gates: logits below about
// −2.5 a token; the tests' saturated ±30) could overflow that factor, so its operands' diagonal rows
// are zeroed in those products, and its diagonal terms are added per element in fp32 as before
// (for_each_pair_decay), from the blocks Pd (q·k, over M) and Rd (dy·v, over the tile's rows), which
// are kept complete: their tensor-core sums over the other columns plus the wide columns' per-element
// ones. The bits of the wide columns are set while the log gates are summed (mark_wide_column).

// The part of a diagonal block's element Σ_c x_i y_j e^{G_i−G_j} (over X columns, in fp32) the tensor cores
// leave out: Pd_ij's with q, k and B (key columns), Rd_ij's with dy, v and A (the tile's rows). The wide
// columns per pair; when factored, the narrow ones too: *narrow, their sum from factored_products.
template <typename Cta, int kWords, typename Op>
DECAYFW_CTA float diagonal_sum(const Op* x, const Op* y, int ld, const float* g, int ldg, const uint32_t* wide,
                               const float* narrow, int i, int j) {
  // Each pair starts at column j/2 mod 32, so that a warp's lanes, on the rows j of one sub-chunk, read the
  // gates and the operands in different banks where the wide columns are consecutive: rows of the gates are 8
  // (mod 32) words apart, so from column 0 rows four apart met in every read (2.0 wavefronts a read, by the bank
  // model, with every column wide); from j/2 they take 1.1 (1.24 at M = 16, whose gate rows are 16 apart), the
  // best start of the forms a·j, a·(j >> s) + b·(j mod 2^s) tried.
  float s = 0.0f;
  for_each_wide<kWords>(wide, (j >> 1) & 31, [&](int c) {
    s += Cta::to_f(x[i * ld + c]) * Cta::to_f(y[j * ld + c]) * decay_exp(g[i * ldg + c] - g[j * ldg + c]);
  });
  return (narrow ? *narrow : 0.0f) + s;
}

// The factored form's narrow sums of a sub-chunk's diagonal block (first row r), Fx·Fyᵀ over X columns
// (Fx, Fy zero in the wide ones), into the block's place in Dg (C×S), where round_products_with_diagonal
// reads each pair's and adds the wide columns. On the tensor cores at fp32 accuracy (gemm_fp32), one
// warp's 16×16 tile: as fp32 dot products per pair, two 16-byte reads per four multiply-adds were the
// largest share of grad_pass's shared-memory wavefronts (benchmarks/smem_bank_report). Pairs j > i
// are computed too (their factors can exceed 1: even inf there is harmless) and overwritten with zeros.
template <int X, typename Cta, typename Op, typename Cfg>
DECAYFW_CTA void factored_products(Cta& cta, Tiles<Op, Cfg>& t, int r, float* Dg) {
  cta.template gemm_fp32<false, true>(Cfg::S, Cfg::S, X, t.Fx, Cfg::ld_fd, t.Fy, Cfg::ld_fd, Dg + r * Cfg::S, Cfg::S,
                                      false);
}

// A sub-chunk's products against every earlier row and its own (n = r + S columns, the last S its
// diagonal block), from fp32 P to the operand type in Pop: the diagonal block masked to j ≤ i, with the
// sums the tensor cores leave out added (diagonal(i, j) for j ≤ i: per pair, or factored; P holds the
// block only in the tensor form), and kept in fp32 in Dg (C×S) when keep, else read back from Dg (Pd
// depends on the key side alone: kept across row tiles).
// The earlier rows go four columns per index, and so does a kept block read back; a block computed here
// goes one element per index, its S(S+1)/2 pairs j ≤ i first and together (rows a and S−1−a hold S + 1
// of them), so that the warps that sum over the columns are full and no lane of theirs waits on
// another's longer sum; then the zeros above.
template <typename Cta, typename Op, typename Cfg, typename Diagonal>
DECAYFW_CTA void round_products_with_diagonal(Cta& cta, Tiles<Op, Cfg>& t, int r, float* Dg, bool keep,
                                              Diagonal&& diagonal) {
  constexpr int S = Cfg::S, kPairs = S * (S + 1) / 2;
  const int rq = r / kQuad;  // quads per row left of the block (it starts on a multiple of four)
  constexpr int SQ = S / kQuad;
  const int64_t before = int64_t(S) * rq, block = keep ? kPairs + S * S : S * SQ;
  cta.for_each(before + block, [&](int64_t e) {
    if (e < before || !keep) {
      const bool kept = e >= before;
      if (kept) e -= before;
      const int q = kept ? SQ : rq, ii = static_cast<int>(e / q), j = static_cast<int>(e % q) * kQuad;
      float p[kQuad];
      Cta::load4(kept ? Dg + (r + ii) * S + j : t.P + ii * Cfg::ldc_f + j, p);
      Cta::store4(t.Pop + ii * Cfg::ldc_op + (kept ? r + j : j), p);
      return;
    }
    e -= before;
    int ii, jj;
    float p;
    if (e < kPairs) {
      const int a = static_cast<int>(e) / (S + 1), b = static_cast<int>(e) % (S + 1);
      ii = b <= a ? a : S - 1 - a;
      jj = b <= a ? b : b - a - 1;
      p = t.tensor_diagonal() ? t.P[ii * Cfg::ldc_f + r + jj] + diagonal(r + ii, r + jj) : diagonal(r + ii, r + jj);
      Dg[(r + ii) * S + jj] = p;
    } else {
      e -= kPairs;
      ii = static_cast<int>(e / S), jj = static_cast<int>(e % S);
      if (jj <= ii) return;  // a pair, above
      p = 0.0f;
      Dg[(r + ii) * S + jj] = p;
    }
    if (t.tensor_diagonal()) t.Pop[ii * Cfg::ldc_op + r + jj] = Cta::template from_f<Op>(p);  // else not multiplied
  });
}

// y_i += Σ_{j ≤ i} e^{A_i−A_j} ⊙ P_ij v_j (P_ij = Σ_m q_i k_j e^{B_i−B_j}) for the rows i of each sub-chunk I
// (first row r), against every earlier row and its own, except the diagonal terms the tensor cores do not
// take (store_y, or grad_pass's diagonal_row_terms, add them from Pd):
//   Y_I += e^{A_I−A_r} ⊙ mask((Q_I e^{B_I−B_r})(K_{<r+S} e^{B_r−B_{<r+S}})ᵀ)(V_{<r+S} e^{A_r−A_{<r+S}}),
// in the tensor form, the diagonal rows of K (V) zeroed in the wide key (row) columns; in the others the
// products take the earlier rows only (mask(..) then has nothing to mask), and the diagonal terms come
// from Pd (and Rd) whole: store_y, diagonal_row_terms, diagonal_key_terms. Pd is computed
// when key_side, else the one kept from the first row tile is used: in the factored form its narrow
// columns as fp32 dot products of the same scaled rows before rounding (Fx, Fy), its wide ones per element.
// With DQ (grad_pass), the same loop also takes dq's causal part from the same scaled K and V:
//   DQ_I += e^{B_I−B_r} ⊙ mask((dY_I e^{A_I−A_r})(V_{<r+S} e^{A_r−A_{<r+S}})ᵀ)(K_{<r+S} e^{B_r−B_{<r+S}}),
// keeping Rd, its masked diagonal block (with the per-element and factored sums), for the anti-causal
// loop. dY_I's scaled rows (and Rd's factored operands, once Pd no longer needs Fx, Fy) are written in
// the phase after y's product (whose decays its epilogue applies).
template <typename Cta, typename Op, typename Cfg>
DECAYFW_CTA void intra_chunk_causal(Cta& cta, const Place& pl, Tiles<Op, Cfg>& t, bool key_side, float* DQ = nullptr) {
  constexpr int M = Cfg::M, R = Cfg::R, S = Cfg::S, MQ = M / kQuad, RQ = R / kQuad, ld = Cfg::ld_fd;
  const bool pd_factored = t.factored() && key_side, rd_factored = t.factored() && DQ;
  for (int I = 0; I < Cfg::NS; ++I) {
    const int r = I * S, n = r + S;
    if (r >= pl.valid) break;
    // The rows the tensor cores multiply: the diagonal block's too in the tensor form, else the earlier
    // ones only (none for the first sub-chunk: no product at all).
    const int cols = t.tensor_diagonal() ? n : r;
    const int64_t kept_k = pd_factored ? S : 0;  // k's diagonal rows for Fy only
    const uint32_t *key_wide = t.key_wide + I * Cfg::key_words, *row_wide = t.row_wide + I * Cfg::row_words;
    cta.for_each(int64_t(S) * MQ + (cols + kept_k) * MQ + int64_t(cols) * RQ, [&](int64_t e) {
      if (e < int64_t(S) * MQ) {
        const int ii = static_cast<int>(e / MQ), i = r + ii, m = static_cast<int>(e % MQ) * kQuad;
        if (pd_factored)
          scale_quad_kept<Cta>(t.Xa + i * Cfg::ldm_op + m, t.Fx + ii * ld + m, t.Qr + i * Cfg::ldm_op + m,
                               t.key_gates(i) + m, t.key_gates(r) + m, 0u, wide_quad(key_wide, m));
        else
          scale_quad<Cta>(t.Xa + i * Cfg::ldm_op + m, t.Qr + i * Cfg::ldm_op + m, t.key_gates(i) + m,
                          t.key_gates(r) + m);
        return;
      }
      e -= int64_t(S) * MQ;
      if (e < (cols + kept_k) * MQ) {
        const int j = static_cast<int>(e / MQ), m = static_cast<int>(e % MQ) * kQuad;
        if (j >= cols)  // the factored form: k's diagonal rows, kept for Fy and not multiplied
          scale_quad_kept<Cta>(static_cast<Op*>(nullptr), t.Fy + (j - r) * ld + m, t.Kr + j * Cfg::ldm_op + m,
                               t.key_gates(r) + m, t.key_gates(j) + m, 0xfu, wide_quad(key_wide, m));
        else
          scale_quad<Cta>(t.Xb + j * Cfg::ldm_op + m, t.Kr + j * Cfg::ldm_op + m, t.key_gates(r) + m,
                          t.key_gates(j) + m,
                          j >= r ? wide_quad(key_wide, m) : 0u);  // j ≥ r: the tensor form's diagonal rows
        return;
      }
      e -= (cols + kept_k) * MQ;
      const int j = static_cast<int>(e / RQ), d = static_cast<int>(e % RQ) * kQuad;
      scale_quad<Cta>(t.Xc + j * Cfg::ldd_op + d, t.Vr + j * Cfg::ldd_op + d, t.row_gates(r) + d, t.row_gates(j) + d,
                      j >= r ? wide_quad(row_wide, d) : 0u);
    });
    if (cols > 0)
      cta.template gemm<false, true>(S, cols, M, t.Xa + r * Cfg::ldm_op, Cfg::ldm_op, t.Xb, Cfg::ldm_op, t.P,
                                     Cfg::ldc_f, false);
    if (pd_factored) factored_products<M>(cta, t, r, t.Pd);
    round_products_with_diagonal(cta, t, r, t.Pd, key_side, [&](int i, int j) {
      return diagonal_sum<Cta, Cfg::key_words>(t.Qr, t.Kr, Cfg::ldm_op, t.Bc, Cfg::ldg_m, key_wide,
                                               pd_factored ? t.Pd + i * S + (j - r) : nullptr, i, j);
    });
    // y's decays, on the product in registers (when there is one).
    if (cols > 0)
      cta.template gemm_apply<false, false>(S, R, cols, t.Pop, Cfg::ldc_op, t.Xc, Cfg::ldd_op,
                                            [&](int ii, int d, const float* v) {
                                              const int i = r + ii;
                                              decay_pairs<Cta>(t.Y + i * Cfg::ldd_f + d, Cfg::ldd_f, t.row_gates(i) + d,
                                                               Cfg::ldg_r, t.row_gates(r) + d, 0, v, true);
                                            });
    // With DQ, dY_I's scaled rows for dq's product (Fx, dY's rows before rounding, and Fy, V's diagonal
    // rows, when factored: Rd's operands).
    const int64_t q = int64_t(S) * RQ;
    const int64_t parts = (DQ ? 1 : 0) + (rd_factored ? 1 : 0);  // parts: 1 dY's rows, 2 V's kept rows
    if (parts > 0)
      cta.for_each(parts * q, [&](int64_t e) {
        const int part = static_cast<int>(e / q) + 1;
        e %= q;
        const int ii = static_cast<int>(e / RQ), d = static_cast<int>(e % RQ) * kQuad, i = r + ii;
        if (part == 1) {
          if (rd_factored)
            scale_quad_kept<Cta>(t.Xd + i * Cfg::ldd_op + d, t.Fx + ii * ld + d, t.Gr + i * Cfg::ldd_op + d,
                                 t.row_gates(i) + d, t.row_gates(r) + d, 0u, wide_quad(row_wide, d));
          else
            scale_quad<Cta>(t.Xd + i * Cfg::ldd_op + d, t.Gr + i * Cfg::ldd_op + d, t.row_gates(i) + d,
                            t.row_gates(r) + d);
        } else {
          scale_quad_kept<Cta>(static_cast<Op*>(nullptr), t.Fy + ii * ld + d, t.Vr + i * Cfg::ldd_op + d,
                               t.row_gates(r) + d, t.row_gates(i) + d, 0xfu, wide_quad(row_wide, d));
        }
      });
    if (!DQ) continue;
    if (cols > 0)
      cta.template gemm<false, true>(S, cols, R, t.Xd + r * Cfg::ldd_op, Cfg::ldd_op, t.Xc, Cfg::ldd_op, t.P,
                                     Cfg::ldc_f, false);
    if (rd_factored) factored_products<R>(cta, t, r, t.Rd);
    round_products_with_diagonal(cta, t, r, t.Rd, true, [&](int i, int j) {
      return diagonal_sum<Cta, Cfg::row_words>(t.Gr, t.Vr, Cfg::ldd_op, t.Ac, Cfg::ldg_r, row_wide,
                                               rd_factored ? t.Rd + i * S + (j - r) : nullptr, i, j);
    });
    if (cols == 0) continue;
    cta.template gemm_apply<false, false>(S, M, cols, t.Pop, Cfg::ldc_op, t.Xb, Cfg::ldm_op,
                                          [&](int ii, int m, const float* v) {
                                            const int i = r + ii;
                                            decay_pairs<Cta>(DQ + i * Cfg::ldm_f + m, Cfg::ldm_f, t.key_gates(i) + m,
                                                             Cfg::ldg_m, t.key_gates(r) + m, 0, v, true);
                                          });
  }
}

// For every pair of rows c ≤ r of a 16-row sub-chunk, in the order r ascending, c ascending:
// f(r, c, e^{x_r − x_c}), x one column's cumulative log gates over the sub-chunk (non-increasing). The
// decays come from 72 exponentials instead of 136: a pair across the halves (r ≥ 8 > c) takes
// e^{x_r − x_8}·e^{x_8 − x_c}, a pair across the quarters of one half (base b, r − b ≥ 4 > c − b)
// e^{x_r − x_{b+4}}·e^{x_{b+4} − x_c}, and only pairs inside a quarter their own exponential. Every
// factor is ≤ 1, as with the sub-chunks' references, so no gates can overflow it, and a factor that
// underflows belongs to a decay at least as small.
template <int S, typename F>
DECAYFW_CTA void for_each_pair_decay(const float (&x)[S], F&& f) {
  static_assert(S == 16, "the split is written for 16-row sub-chunks");
  float across_halves[8], across_quarters[2][4];  // the factors of the earlier row c
  DECAYFW_UNROLL
  for (int c = 0; c < 8; ++c) across_halves[c] = decay_exp(x[8] - x[c]);
  DECAYFW_UNROLL
  for (int h = 0; h < 2; ++h) {
    DECAYFW_UNROLL
    for (int j = 0; j < 4; ++j) across_quarters[h][j] = decay_exp(x[8 * h + 4] - x[8 * h + j]);
  }
  DECAYFW_UNROLL
  for (int r = 0; r < S; ++r) {
    const int h = r / 8, b = 8 * h;
    const float to_half = r >= 8 ? decay_exp(x[r] - x[8]) : 1.0f;             // the later row's factors
    const float to_quarter = r - b >= 4 ? decay_exp(x[r] - x[b + 4]) : 1.0f;
    DECAYFW_UNROLL
    for (int c = 0; c <= r; ++c) {
      float decay;
      if (r >= 8 && c < 8) decay = to_half * across_halves[c];
      else if (r - b >= 4 && c - b < 4) decay = to_quarter * across_quarters[h][c - b];
      else decay = decay_exp(x[r] - x[c]);
      f(r, c, decay);
    }
  }
}

// The factors of a narrow column's decays through its sub-chunk's first row: e^{x_r − x_c} =
// to_row[r]·from_row[c], to_row[r] = e^{x_r − x_0} ≤ 1 and from_row[c] = e^{x_0 − x_c} ≤ e^{span}
// (wide_span_bound). 30 exponentials for the column's 136 pairs.
template <int S>
DECAYFW_CTA void first_row_factors(const float (&x)[S], float (&to_row)[S], float (&from_row)[S]) {
  to_row[0] = from_row[0] = 1.0f;
  DECAYFW_UNROLL
  for (int c = 1; c < S; ++c) {
    to_row[c] = decay_exp(x[c] - x[0]);
    from_row[c] = decay_exp(x[0] - x[c]);
  }
}

// A narrow column's sums of paired_diagonal_sums (factored form), from first_row_factors:
//   later[r]   = e^{x_r−x_0}·Σ_{c ≤ r} p_rc (u_c e^{x_0−x_c}),
//   earlier[c] = e^{x_0−x_c}·Σ_{r ≥ c} p_rc (w_r e^{x_r−x_0})   (when w is given).
// Each p_rc is read once for both, as in the per-pair form (read in two passes, the compiler keeps all
// 136 in registers between them), four of a row at a time: 40 vector reads where single ones took 136
// (the block is the sub-chunk's S×S slice of Pd or Rd, 16-byte aligned). Both terms of a pair are
// products of the same fp32 factors, so the gate identity keeps their near-cancellation as the per-pair
// form does.
template <typename Cta, int S>
DECAYFW_CTA void factored_diagonal_sums(const float (&x)[S], const float* p, const float (&u)[S], const float* w,
                                        float (&later)[S], float (&earlier)[S]) {
  float to_row[S], from_row[S], uf[S], wf[S];
  first_row_factors(x, to_row, from_row);
  DECAYFW_UNROLL
  for (int c = 0; c < S; ++c) {
    uf[c] = u[c] * from_row[c];
    wf[c] = w ? w[c] * to_row[c] : 0.0f;
    later[c] = earlier[c] = 0.0f;
  }
  DECAYFW_UNROLL
  for (int r = 0; r < S; ++r) {
    DECAYFW_UNROLL
    for (int c4 = 0; c4 <= r; c4 += kQuad) {
      float p4[kQuad];
      Cta::load4(p + r * S + c4, p4);
      DECAYFW_UNROLL
      for (int k = 0; k < kQuad; ++k) {
        const int c = c4 + k;
        if (c > r) break;
        later[r] += p4[k] * uf[c];
        if (w) earlier[c] += p4[k] * wf[r];
      }
    }
  }
  DECAYFW_UNROLL
  for (int c = 0; c < S; ++c) {
    later[c] *= to_row[c];
    earlier[c] *= from_row[c];
  }
}

// The diagonal block's part of y for one sub-chunk (rows blk .. blk + S − 1) and one row d off the tensor
// cores: y_r = Σ_{c ≤ r} Pd_rc v_c e^{A_r−A_c}, into y[r]; per pair when wide, else (factored form)
// y_r = e^{A_r−A_0}·Σ_{c ≤ r} Pd_rc (v_c e^{A_0−A_c}).
template <typename Cta, typename Op, typename Cfg>
DECAYFW_CTA void y_diagonal_terms(const Tiles<Op, Cfg>& t, int blk, int d, bool wide, float (&y)[Cfg::S]) {
  constexpr int S = Cfg::S;
  float A[S], v[S];
  DECAYFW_UNROLL
  for (int r = 0; r < S; ++r) {
    A[r] = t.row_gates(blk + r)[d];
    v[r] = Cta::to_f(t.Vr[(blk + r) * Cfg::ldd_op + d]);
    y[r] = 0.0f;
  }
  const float* p = t.Pd + blk * S;
  if (wide) {
    for_each_pair_decay(A, [&](int r, int c, float decay) { y[r] += p[r * S + c] * v[c] * decay; });
    return;
  }
  float unused[S];
  factored_diagonal_sums<Cta>(A, p, v, nullptr, y, unused);
}

// ---- programs ----------------------------------------------------------------------------------

// ---- the serial passes' input pipeline ----------------------------------------------------------
//
// state_pass, dstate_pass and forward_pass walk the chunks one after another, one CTA per (sequence,
// row tile). When those CTAs barely fill the GPU (N = 64, D = 128: 128 CTAs) nothing runs beside
// one on its SM, so a chunk staged only when it is needed would make every chunk wait out a memory
// latency with the SM idle. walk_chunks instead stages the next chunk while this one is computed:
// its copies land in a second set of raw tiles, and the two sets swap at every chunk. The gate
// logits (Fr, Zr) need one set only: they become log gates right after they land, before the next
// chunk's copies start. Element-wise staging (unaligned views) is synchronous: correct, not overlapped.

// Where the next chunk lands: a second set of the raw tiles a pass uses (flags, not pointers: a
// measuring Arena hands out null ones), and the pass's one set of gate-logit tiles.
template <typename Op, typename Cfg>
DECAYFW_HD Staging<Op> carve_next_staging(cta::Arena& ar, const Tiles<Op, Cfg>& t, bool q, bool k, bool v, bool dy) {
  constexpr int C = Cfg::C;
  Staging<Op> s;
  if (q) s.Qr = ar.take<Op>(size_t(C) * Cfg::ldm_op);
  if (k) s.Kr = ar.take<Op>(size_t(C) * Cfg::ldm_op);
  if (v) s.Vr = ar.take<Op>(size_t(C) * Cfg::ldd_op);
  if (dy) s.Gr = ar.take<Op>(size_t(C) * Cfg::ldd_op);
  s.Fr = t.Fr, s.Zr = t.Zr;
  return s;
}

template <typename T>
DECAYFW_CTA void swap_pointers(T*& a, T*& b) {
  T* x = a;
  a = b;
  b = x;
}

// The landed chunk's tiles become the current ones; the current ones take the next copies.
template <typename Op, typename Cfg>
DECAYFW_CTA void swap_raw_tiles(Tiles<Op, Cfg>& t, Staging<Op>& next) {
  swap_pointers(t.Qr, next.Qr);
  swap_pointers(t.Kr, next.Kr);
  swap_pointers(t.Vr, next.Vr);
  swap_pointers(t.Gr, next.Gr);
}

// Walks the chunks of sequence n, row tile `tile` (backwards from the last for dstate_pass), with
// each chunk's inputs in t (raw tiles, cumulative log gates Bc and Ac) when compute(pl) runs and
// the next chunk's copies in flight. chunk_start(pl, e), e < start_work, is the pass's own work
// at the chunk's start (its state copies), run in the same phase as the log gates.
template <typename Cta, typename Op, typename Cfg, typename ChunkStart, typename Compute>
DECAYFW_CTA void walk_chunks(Cta& cta, const ChunkArgs& a, int64_t n, int64_t tile, bool backwards, Tiles<Op, Cfg>& t,
                             Staging<Op>& next_staging, int64_t start_work, ChunkStart&& chunk_start,
                             Compute&& compute) {
  const int64_t copies = stage_count<Op, Cfg>(a, kBothSides), step = backwards ? -1 : 1;
  const int64_t first = backwards ? a.chunks - 1 : 0;
  {
    const Place pl(a, n, first, tile, Cfg::C);  // the first chunk has nothing to overlap with
    cta.for_each(copies, [&](int64_t e) { stage_index<Cta, Op, Cfg>(cta, a, pl, next_staging, kBothSides, e); });
  }
  for (int64_t k = 0, c = first; k < a.chunks; ++k, c += step) {
    const Place pl(a, n, c, tile, Cfg::C);
    cta.wait_async();
    swap_raw_tiles(t, next_staging);
    const int64_t gates = start_work + gate_count<Cfg>(kBothSides);
    cta.for_each(gates + wide_word_count(t, kBothSides), [&](int64_t e) {
      if (e < start_work) chunk_start(pl, e);
      else if (e < gates) log_gate_index<Cta>(pl, t, kBothSides, e - start_work);
      else clear_wide_word(t, kBothSides, e - gates);
    });
    // The next chunk's copies first, so that every thread starts its share before the sums.
    const bool more = k + 1 < a.chunks;
    const Place next(a, n, more ? c + step : c, tile, Cfg::C);
    const int64_t issue = more ? copies : 0;
    cta.for_each(issue + column_count<Cfg>(kBothSides), [&](int64_t e) {
      if (e < issue) stage_index<Cta, Op, Cfg>(cta, a, next, next_staging, kBothSides, e);
      else cumsum_index(cta, t, kBothSides, e - issue);
    });
    compute(pl);
  }
}

// Shared-memory carve of state_pass / dstate_pass (the same shape: a running R×M fp32 state, the
// raw tiles of one rank-C update, scaled in place, their second set, and the gate logits).
template <typename Op, typename Cfg>
struct ScanSmem {
  float* S;
  Tiles<Op, Cfg> t;
  Staging<Op> next;
  DECAYFW_HD explicit ScanSmem(unsigned char* base, bool backward) {
    constexpr int C = Cfg::C, M = Cfg::M, R = Cfg::R;
    cta::Arena ar(base);
    S = ar.take<float>(size_t(R) * Cfg::ldm_f);
    (backward ? t.Qr : t.Kr) = ar.take<Op>(size_t(C) * Cfg::ldm_op);
    (backward ? t.Gr : t.Vr) = ar.take<Op>(size_t(C) * Cfg::ldd_op);
    t.Bc = ar.take<float>(size_t(C) * Cfg::ldg_m);
    t.Ac = ar.take<float>(size_t(C) * Cfg::ldg_r);
    t.Fr = ar.take<Op>(size_t(C) * M);
    t.Zr = ar.take<Op>(size_t(C) * R);
    next = carve_next_staging(ar, t, backward, !backward, !backward, backward);
    bytes = ar.used();
  }
  size_t bytes;
};

// Index e of R·M/4: four elements of the R×M fp32 state tile of a row tile, between shared memory
// and the [.., D, M] global states (row d at src + d·ld_src). A null src gives zeros; a second
// destination, when given, gets the same values. A destination of a 16-bit type gets them rounded
// (the state gradients, ChunkArgs::dstates).
template <typename Cta, typename Cfg, typename Dst>
DECAYFW_CTA void copy_state_quad(int64_t e, Dst* dst, int64_t ld_dst, const float* src, int64_t ld_src,
                                 float* dst2 = nullptr, int64_t ld_dst2 = 0) {
  constexpr int Q = Cfg::M / 4;
  const int64_t d = e / Q, m = (e % Q) * 4;
  float s[4] = {0.0f, 0.0f, 0.0f, 0.0f};
  if (src) Cta::load4(src + d * ld_src + m, s);
  Cta::store4(dst + d * ld_dst + m, s);
  if (dst2) Cta::store4(dst2 + d * ld_dst2 + m, s);
}
template <typename Cta, typename Cfg, typename Dst>
DECAYFW_CTA void copy_state_tile(Cta& cta, Dst* dst, int64_t ld_dst, const float* src, int64_t ld_src,
                                 float* dst2 = nullptr, int64_t ld_dst2 = 0) {
  cta.for_each(int64_t(Cfg::R) * (Cfg::M / 4),
               [&](int64_t e) { copy_state_quad<Cta, Cfg>(e, dst, ld_dst, src, ld_src, dst2, ld_dst2); });
}

// One chunk's state update (state_pass and forward_pass): the running R×M fp32 state S ←
// e^{A_L} e^{B_L}ᵀ ⊙ S + (V ⊙ e^{A_L−A})ᵀ (K ⊙ e^{B_L−B}), from the chunk loaded in t (Kr, Vr, Bc, Ac).
// The operands are scaled in place (each element by its own index): nothing reads the raw k and v
// of the chunk after its update, and the serial passes then need no operand tiles of their own.
template <typename Cta, typename Op, typename Cfg>
DECAYFW_CTA void update_state(Cta& cta, Tiles<Op, Cfg>& t, float* S) {
  constexpr int C = Cfg::C, M = Cfg::M, R = Cfg::R, MQ = M / kQuad, RQ = R / kQuad;
  cta.for_each(int64_t(C) * (MQ + RQ) + int64_t(R) * MQ, [&](int64_t e) {
    if (e < int64_t(C) * MQ) {
      const int j = static_cast<int>(e / MQ), m = static_cast<int>(e % MQ) * kQuad;
      Op* k = t.Kr + j * Cfg::ldm_op + m;
      scale_quad<Cta>(k, k, t.key_gates(C - 1) + m, t.key_gates(j) + m);
      return;
    }
    e -= int64_t(C) * MQ;
    if (e < int64_t(C) * RQ) {
      const int j = static_cast<int>(e / RQ), d = static_cast<int>(e % RQ) * kQuad;
      Op* v = t.Vr + j * Cfg::ldd_op + d;
      scale_quad<Cta>(v, v, t.row_gates(C - 1) + d, t.row_gates(j) + d);
      return;
    }
    e -= int64_t(C) * RQ;
    const int d = static_cast<int>(e / MQ), m = static_cast<int>(e % MQ) * kQuad;
    decay_state_quad<Cta>(S + d * Cfg::ldm_f + m, t.row_gates(C - 1)[d], t.key_gates(C - 1) + m);
  });
  cta.template gemm<true, false>(R, M, C, t.Vr, Cfg::ldd_op, t.Kr, Cfg::ldm_op, S, Cfg::ldm_f, true);
}


// state_pass(n, tile): S ← e^{A_L} e^{B_L}ᵀ ⊙ S + (V ⊙ e^{A_L−A})ᵀ (K ⊙ e^{B_L−B}) chunk by chunk,
// writing each chunk's start state to states[n][c] and S_T to states[n][chunks] (and final_state).
template <typename Cta, typename Op, typename Cfg>
DECAYFW_CTA void state_pass(Cta& cta, const ChunkArgs& a, int64_t n, int64_t tile, unsigned char* smem) {
  constexpr int M = Cfg::M, R = Cfg::R;
  ScanSmem<Op, Cfg> sm(smem, false);
  float* S = sm.S;
  const int64_t slots = a.chunks + 1, D = a.D, row0 = tile * kRows;
  copy_state_tile<Cta, Cfg>(cta, S, Cfg::ldm_f, a.s0 ? a.s0 + (n * D + row0) * M : nullptr, M);
  walk_chunks(
      cta, a, n, tile, false, sm.t, sm.next, int64_t(R) * (M / 4),
      [&](const Place& pl, int64_t e) {
        copy_state_quad<Cta, Cfg>(e, a.states + pl.state_row(pl.chunk, slots, D, 0) * M, M, S, Cfg::ldm_f);
      },
      [&](const Place&) { update_state(cta, sm.t, S); });
  const Place pl(a, n, a.chunks, tile, Cfg::C);
  copy_state_tile<Cta, Cfg>(cta, a.states + pl.state_row(a.chunks, slots, D, 0) * M, M, S, Cfg::ldm_f,
                            a.final_state ? a.final_state + (n * D + row0) * M : nullptr, M);
}

// dstate_pass(n, tile): walking chunks backwards, dstates[n][c] = the gradient reaching chunk c's
// end state from later tokens (dS_T for the last chunk), then
// dS ← e^{A_L} e^{B_L}ᵀ ⊙ dS + (dY ⊙ e^{A})ᵀ (Q ⊙ e^{B}) (operands scaled in place); finally ds0 = dS.
template <typename Cta, typename Op, typename Cfg>
DECAYFW_CTA void dstate_pass(Cta& cta, const ChunkArgs& a, int64_t n, int64_t tile, unsigned char* smem) {
  constexpr int C = Cfg::C, M = Cfg::M, R = Cfg::R;
  ScanSmem<Op, Cfg> sm(smem, true);
  Tiles<Op, Cfg>& t = sm.t;
  float* dS = sm.S;
  const int64_t D = a.D;
  const int64_t row0 = tile * kRows;
  copy_state_tile<Cta, Cfg>(cta, dS, Cfg::ldm_f, a.dsT ? a.dsT + (n * D + row0) * M : nullptr, M);
  walk_chunks(
      cta, a, n, tile, true, t, sm.next, int64_t(R) * (M / 4),
      [&](const Place& pl, int64_t e) {
        copy_state_quad<Cta, Cfg>(e, dstates_of<Op>(a) + pl.state_row(pl.chunk, a.chunks, D, 0) * M, M, dS, Cfg::ldm_f);
      },
      [&](const Place&) {
        constexpr int MQ = M / kQuad, RQ = R / kQuad;
        cta.for_each(int64_t(C) * (MQ + RQ) + int64_t(R) * MQ, [&](int64_t e) {
          if (e < int64_t(C) * MQ) {
            const int i = static_cast<int>(e / MQ), m = static_cast<int>(e % MQ) * kQuad;
            Op* q = t.Qr + i * Cfg::ldm_op + m;
            scale_quad<Cta>(q, q, t.key_gates(i) + m, nullptr);
            return;
          }
          e -= int64_t(C) * MQ;
          if (e < int64_t(C) * RQ) {
            const int i = static_cast<int>(e / RQ), d = static_cast<int>(e % RQ) * kQuad;
            Op* g = t.Gr + i * Cfg::ldd_op + d;
            scale_quad<Cta>(g, g, t.row_gates(i) + d, nullptr);
            return;
          }
          e -= int64_t(C) * RQ;
          const int d = static_cast<int>(e / MQ), m = static_cast<int>(e % MQ) * kQuad;
          decay_state_quad<Cta>(dS + d * Cfg::ldm_f + m, t.row_gates(C - 1)[d], t.key_gates(C - 1) + m);
        });
        cta.template gemm<true, false>(R, M, C, t.Gr, Cfg::ldd_op, t.Qr, Cfg::ldm_op, dS, Cfg::ldm_f, true);
      });
  copy_state_tile<Cta, Cfg>(cta, a.ds0 + (n * D + row0) * M, M, dS, Cfg::ldm_f);
}

// Shared-memory carve of one chunk's tiles, for the program that uses them:
//   Output: output_pass, which walks the row tiles of a chunk inside the CTA;
//   Fused:  the chunk part of forward_pass (one row tile per CTA);
//   Grad:   grad_pass, which walks the row tiles too and adds the gradients' tiles.
// Phases that never overlap share one region: {P, Pop, Fx, Fy} (a sub-chunk's products) | {Sop, dSop}
// (inter-chunk products). The diagonal blocks Pd and Rd are written while P and Pop are in use and
// read later (Pd, which depends on the key side alone, across row tiles), so they have their own.
enum class ChunkCarve { Output, Fused, Grad };

template <typename Op, typename Cfg>
struct ChunkSmem {
  Tiles<Op, Cfg> t;
  float *DQ = nullptr, *DK = nullptr, *DV = nullptr, *carry_row = nullptr, *carry_col = nullptr;
  float* part = nullptr;  // NS×max(M, R): the gate gradients' sums per sub-chunk (reverse_gate_sums)
  size_t bytes;
  DECAYFW_HD ChunkSmem(unsigned char* base, ChunkCarve carve) {
    constexpr int C = Cfg::C, M = Cfg::M, R = Cfg::R, S = Cfg::S;
    const bool grad = carve == ChunkCarve::Grad;
    cta::Arena ar(base);
    t.Qr = ar.take<Op>(size_t(C) * Cfg::ldm_op);
    t.Kr = ar.take<Op>(size_t(C) * Cfg::ldm_op);
    t.Bc = ar.take<float>(size_t(C) * Cfg::ldg_m);
    t.Vr = ar.take<Op>(size_t(C) * Cfg::ldd_op);
    if (grad) t.Gr = ar.take<Op>(size_t(C) * Cfg::ldd_op);
    t.Ac = ar.take<float>(size_t(C) * Cfg::ldg_r);
    t.Xa = ar.take<Op>(size_t(C) * Cfg::ldm_op);
    t.Xb = ar.take<Op>(size_t(C) * Cfg::ldm_op);
    t.Xc = ar.take<Op>(size_t(C) * Cfg::ldd_op);
    if (grad) t.Xd = ar.take<Op>(size_t(C) * Cfg::ldd_op);
    // The gate logits: grad_pass keeps them to the end (σ(−x) in the gate gradients); output_pass
    // only until they are log gates, so they share the scaled operands' tiles, written after that.
    if (grad) {
      t.Fr = ar.take<Op>(size_t(C) * M);
      t.Zr = ar.take<Op>(size_t(C) * R);
    } else {
      t.Fr = t.Xa, t.Zr = t.Xc;  // C×ldm_op ≥ C×M, C×ldd_op ≥ C×R
    }
    // the shared region: measure each alternative, take the largest
    cta::Arena alt1(nullptr), alt2(nullptr), alt3(nullptr);
    alt1.take<float>(size_t(S) * Cfg::ldc_f);  // P and Pop: one sub-chunk's rows against the chunk
    alt1.take<Op>(size_t(S) * Cfg::ldc_op);
    alt1.take<float>(size_t(2) * S * Cfg::ld_fd);  // Fx, Fy
    alt2.take<Op>(size_t(R) * Cfg::ldm_op);
    if (grad) alt2.take<Op>(size_t(R) * Cfg::ldm_op);
    alt3.take<Op>(size_t(R) * Cfg::ldm_op);  // the chunk form: Sop, still read beside Pc, then Pc (where
    alt3.take<Op>(size_t(C) * Cfg::ldc_op);  // dSop is in grad_pass: dead by then)
    cta::Arena region = ar.region(cta::max_size(cta::max_size(alt1.used(), alt2.used()), alt3.used()));
    cta::Arena r1 = region, r2 = region, r3 = region;
    r3.take<Op>(size_t(R) * Cfg::ldm_op);
    t.Pc = r3.take<Op>(size_t(C) * Cfg::ldc_op);
    t.P = r1.take<float>(size_t(S) * Cfg::ldc_f);
    t.Pop = r1.take<Op>(size_t(S) * Cfg::ldc_op);
    t.Fx = r1.take<float>(size_t(S) * Cfg::ld_fd);
    t.Fy = r1.take<float>(size_t(S) * Cfg::ld_fd);
    t.Sop = r2.take<Op>(size_t(R) * Cfg::ldm_op);
    if (grad) t.dSop = r2.take<Op>(size_t(R) * Cfg::ldm_op);
    t.Pd = ar.take<float>(size_t(C) * S);
    if (grad) t.Rd = ar.take<float>(size_t(C) * S);
    t.key_wide = ar.take<uint32_t>(size_t(Cfg::NS) * Cfg::key_words + 2);  // and the chunk form's two words
    t.chunk_wide = t.key_wide + Cfg::NS * Cfg::key_words;
    t.row_wide = ar.take<uint32_t>(size_t(Cfg::NS) * Cfg::row_words);
    t.Y = ar.take<float>(size_t(C) * Cfg::ldd_f);
    if (grad) {
      DQ = ar.take<float>(size_t(C) * Cfg::ldm_f);
      DK = ar.take<float>(size_t(C) * Cfg::ldm_f);
      DV = ar.take<float>(size_t(C) * Cfg::ldd_f);
      carry_row = ar.take<float>(R);
      carry_col = ar.take<float>(M);
      part = ar.take<float>(size_t(Cfg::NS) * (M > R ? M : R));
    }
    bytes = ar.used();
  }
};

// y of the chunk's valid rows out: Y (everything but the diagonal terms off the tensor cores) plus those.
// One function for output_pass and forward_pass, so both compile the same arithmetic. One index per wide
// (sub-chunk, row d) first (WideList), then one per (sub-chunk, row d) that is not wide (its factored
// terms in the factored form).
template <typename Cta, typename Op, typename Cfg>
DECAYFW_CTA void store_y(Cta& cta, const ChunkArgs& a, const Place& pl, const Tiles<Op, Cfg>& t) {
  constexpr int R = Cfg::R, S = Cfg::S;
  const int blocks = (pl.valid + S - 1) / S;
  const WideList<Cfg::row_words> wide(t.row_wide, blocks);
  cta.for_each(wide.size + int64_t(blocks) * R, [&](int64_t e) {
    int sub, d;
    float y[S];
    if (e < wide.size) {
      wide.at(e, sub, d);
      y_diagonal_terms<Cta>(t, sub * S, d, true, y);
    } else {
      e -= wide.size;
      sub = static_cast<int>(e / R), d = static_cast<int>(e % R);
      if (is_wide(t.row_wide + sub * Cfg::row_words, d)) return;  // an entry of the list above
      if (t.factored()) {
        y_diagonal_terms<Cta>(t, sub * S, d, false, y);
      } else {  // the tensor form: in the products already
        DECAYFW_UNROLL
        for (int r = 0; r < S; ++r) y[r] = 0.0f;
      }
    }
    const int blk = sub * S;
    DECAYFW_UNROLL
    for (int r = 0; r < S; ++r) {
      const int i = blk + r;
      if (i < pl.valid)
        row_of<Op>(a.y, pl.b, pl.c0 + i, pl.h)[pl.row0 + d] = Cta::template from_f<Op>(t.Y[i * Cfg::ldd_f + d] + y[r]);
    }
  });
}

// output_pass(n, chunk): y of the chunk's valid rows. The row tiles of D are walked inside the CTA,
// as grad_pass does: the key side (q, k, log σ(f)) is staged with the first tile and kept, and so are
// Pd and the wide key columns, which depend on it alone (docs/cuda.md, "A second floor").
template <typename Cta, typename Op, typename Cfg>
DECAYFW_CTA void output_pass(Cta& cta, const ChunkArgs& a, int64_t n, int64_t chunk, unsigned char* smem) {
  constexpr int C = Cfg::C;
  ChunkSmem<Op, Cfg> sm(smem, ChunkCarve::Output);
  Tiles<Op, Cfg>& t = sm.t;
  choose_form<Cta>(t, a);
  const Staging<Op> to = staging_of(t);
  bool pd_kept =
      false;  // Pd, which depends on the key side alone, computed by an earlier tile (not by the chunk form's)
  for (int64_t tile = 0; tile < a.tiles; ++tile) {
    const Place pl(a, n, chunk, tile, C);
    const int sides = tile == 0 ? kBothSides : kRowSide;
    const int64_t copies = stage_count<Op, Cfg>(a, sides);
    cta.for_each(copies + start_state_batches<Cfg>(), [&](int64_t e) {
      if (e < copies) stage_index<Cta, Op, Cfg>(cta, a, pl, to, sides, e);
      else load_start_state_batch<Cta>(a, pl, t, e - copies);
    });
    finish_loading(cta, pl, t, sides);
    if (t.chunk_narrow()) {
      y_of_whole_chunk(cta, pl, t, !pd_kept);
      pd_kept = pd_kept || t.factored();
    } else {
      y_inter_product(cta, t);
      intra_chunk_causal(cta, pl, t, !pd_kept);
      pd_kept = true;
    }
    store_y(cta, a, pl, t);
  }
}

// ---- the fused forward: state_pass and output_pass in one serial program --------------------------
//
// forward_pass(n, tile) walks the chunks as state_pass does and computes each chunk's y from the
// running state in shared memory, so the inputs are read once and the chunk states are never read
// back (split: written by state_pass, read by output_pass). Its parallelism is state_pass's,
// N·D/64 CTAs: the launcher takes it when that fills the GPU (decay_chunk.cu says when). Every
// value is computed as in the split pair, in the same order (y_inter_product and store_y are shared), so
// S_T and the states are bit-identical to theirs, and y is up to the compiler's FMA contraction
// (tests/cpp/test_chunk_program.cpp). The states are written only when
// the caller keeps them (ChunkArgs::states non-null: the training forward); decay_fwd passes none
// and the forward then needs no workspace at all.

// Shared-memory carve: the running R×M fp32 state, then output_pass's tiles, then what walk_chunks
// adds: the gate logits in tiles of their own (they land while the scaled operands are in use) and
// the second set of raw tiles.
template <typename Op, typename Cfg>
struct ForwardSmem {
  float* S;
  ChunkSmem<Op, Cfg> chunk;
  Staging<Op> next;
  size_t bytes;
  // The state's bytes, 128-byte aligned as an Arena would leave them (a constant, not a function:
  // nvcc would not call a constexpr host function from this host-device constructor).
  static constexpr size_t kStateBytes = (size_t(Cfg::R) * Cfg::ldm_f * sizeof(float) + 127) & ~size_t(127);
  DECAYFW_HD explicit ForwardSmem(unsigned char* base)
      : S(base ? reinterpret_cast<float*>(base) : nullptr),
        chunk(base ? base + kStateBytes : nullptr, ChunkCarve::Fused) {
    cta::Arena ar(base);
    ar.region(kStateBytes + chunk.bytes);
    chunk.t.Fr = ar.take<Op>(size_t(Cfg::C) * Cfg::M);
    chunk.t.Zr = ar.take<Op>(size_t(Cfg::C) * Cfg::R);
    next = carve_next_staging(ar, chunk.t, true, true, true, false);  // output_pass's raw tiles: q, k, v
    bytes = ar.used();
  }
};

template <typename Cta, typename Op, typename Cfg>
DECAYFW_CTA void forward_pass(Cta& cta, const ChunkArgs& a, int64_t n, int64_t tile, unsigned char* smem) {
  constexpr int M = Cfg::M, R = Cfg::R, Q = M / 4;
  ForwardSmem<Op, Cfg> sm(smem);
  Tiles<Op, Cfg>& t = sm.chunk.t;
  choose_form<Cta>(t, a);
  float* S = sm.S;
  const int64_t slots = a.chunks + 1, D = a.D, row0 = tile * kRows;
  copy_state_tile<Cta, Cfg>(cta, S, Cfg::ldm_f, a.s0 ? a.s0 + (n * D + row0) * M : nullptr, M);
  walk_chunks(
      cta, a, n, tile, false, t, sm.next, int64_t(R) * Q,
      [&](const Place& pl, int64_t e) {
        // The start state: to the caller's states (if kept) and, rounded, to the operand tile Sop
        // (what output_pass's load_start_state_batch gives from the same fp32 values).
        const int d = static_cast<int>(e / Q), m = static_cast<int>(e % Q) * 4;
        float s[4];
        Cta::load4(S + d * Cfg::ldm_f + m, s);
        if (a.states) Cta::store4(a.states + (pl.state_row(pl.chunk, slots, D, d)) * M + m, s);
        Op* dst = t.Sop + d * Cfg::ldm_op + m;
        for (int w = 0; w < 4; ++w) dst[w] = Cta::template from_f<Op>(s[w]);
      },
      [&](const Place& pl) {
        // y of the chunk, as output_pass, then the state update.
        if (t.chunk_narrow()) {
          y_of_whole_chunk(cta, pl, t, true);
        } else {
          y_inter_product(cta, t);
          intra_chunk_causal(cta, pl, t, true);
        }
        store_y(cta, a, pl, t);
        update_state(cta, t, S);
      });
  float* final_state = a.final_state ? a.final_state + (n * D + row0) * M : nullptr;
  if (a.states) {
    const Place pl(a, n, a.chunks, tile, Cfg::C);
    copy_state_tile<Cta, Cfg>(cta, a.states + pl.state_row(a.chunks, slots, D, 0) * M, M, S, Cfg::ldm_f, final_state,
                              M);
  } else if (final_state) {
    copy_state_tile<Cta, Cfg>(cta, final_state, M, S, Cfg::ldm_f);
  }
}

// The anti-causal products of sub-chunk J's rows j (from j0) with its own rows and the later ones
// (w columns from j0), in the operand type in Pop, from column `first` (0: with the diagonal block, which
// only the tensor form multiplies; S: the later ones only): the diagonal block transposed from Dg (Pd or
// Rd, already masked: zero where i < j), the later columns from fp32 P (written at column S).
template <typename Cta, typename Op, typename Cfg>
DECAYFW_CTA void round_products_after_diagonal(Cta& cta, Tiles<Op, Cfg>& t, int j0, int first, int w, const float* Dg) {
  constexpr int S = Cfg::S;
  const int wq = (w - first) / kQuad;
  cta.for_each(int64_t(S) * wq, [&](int64_t e) {
    const int jj = static_cast<int>(e / wq), c = first + static_cast<int>(e % wq) * kQuad;
    float p[kQuad];
    if (c >= S) {
      Cta::load4(t.P + jj * Cfg::ldc_f + c, p);
    } else {
      DECAYFW_UNROLL
      for (int x = 0; x < kQuad; ++x) p[x] = Dg[(j0 + c + x) * S + jj];  // a column of Dg: the transpose
    }
    Cta::store4(t.Pop + jj * Cfg::ldc_op + c, p);
  });
}

// Over the pairs c ≤ r of one sub-chunk column, with p the sub-chunk's S×S block of Pd or Rd and the decay
// e^{x_r−x_c}: to_later[r] += p_rc u_c e^{..} and to_earlier[c] += p_rc w_r e^{..}, one decay for both.
template <int S>
DECAYFW_CTA void paired_diagonal_sums(const float (&x)[S], const float* p, const float (&u)[S], const float (&w)[S],
                                      float (&to_later)[S], float (&to_earlier)[S]) {
  for_each_pair_decay(x, [&](int r, int c, float decay) {
    const float prc = p[r * S + c];
    to_later[r] += prc * u[c] * decay;
    to_earlier[c] += prc * w[r] * decay;
  });
}

// The diagonal blocks' terms of grad_pass for one sub-chunk (rows blk .. blk + S − 1) and one column off
// the tensor cores, in fp32. Both terms of a pair of rows a ≥ c share one decay:
//   row side (column d, decay e^{A_a−A_c}, with Pd):  y_a += Pd_ac v_c e^{..}   and  dv_c += Pd_ac dy_a e^{..};
//   key side (column m, decay e^{B_a−B_c}, with Rd):  dq_a += Rd_ac k_c e^{..}  and  dk_c += Rd_ac q_a e^{..}.
// A wide column takes them per pair, each sum in the order of the per-row loops it replaced (y_a and dq_a
// over c ascending, dv_c and dk_c over a ascending, from the off-diagonal sums), its decays from
// for_each_pair_decay (72 exponentials where the per-row loops took S(S+1) = 272); a narrow one, in the
// factored form, factored (factored_diagonal_sums). diagonal_row_terms also finishes every row d, whatever
// its form: Y ← y ⊙ dy for the row gates, and dv out.
template <typename Cta, typename Op, typename Cfg>
DECAYFW_CTA void diagonal_row_terms(const ChunkArgs& a, const Place& pl, ChunkSmem<Op, Cfg>& sm, int blk, int d,
                                    bool wide) {
  constexpr int S = Cfg::S;
  Tiles<Op, Cfg>& t = sm.t;
  const float* p = t.Pd + blk * S;
  const auto at = [&](int r) { return (blk + r) * Cfg::ldd_op + d; };
  // row r's results: dv kept for the gate identity and written, Y ← (Y + y_r) ⊙ dy_r
  const auto finish = [&](int r, float y, float dv) {
    const int i = blk + r;
    sm.DV[i * Cfg::ldd_f + d] = dv;
    t.Y[i * Cfg::ldd_f + d] = (t.Y[i * Cfg::ldd_f + d] + y) * Cta::to_f(t.Gr[at(r)]);
    if (i < pl.valid) row_of<Op>(a.dv, pl.b, pl.c0 + i, pl.h)[pl.row0 + d] = Cta::template from_f<Op>(dv);
  };
  float A[S], u[S], y[S], dv[S];
  DECAYFW_UNROLL
  for (int r = 0; r < S; ++r) {
    A[r] = t.row_gates(blk + r)[d];
    u[r] = Cta::to_f(t.Vr[at(r)]);
    y[r] = 0.0f;
  }
  if (t.factored() && !wide) {
    float g[S];
    DECAYFW_UNROLL
    for (int r = 0; r < S; ++r) g[r] = Cta::to_f(t.Gr[at(r)]);
    factored_diagonal_sums<Cta>(A, p, u, g, y, dv);
    DECAYFW_UNROLL
    for (int r = 0; r < S; ++r) finish(r, y[r], sm.DV[(blk + r) * Cfg::ldd_f + d] + dv[r]);
    return;
  }
  DECAYFW_UNROLL
  for (int r = 0; r < S; ++r) dv[r] = sm.DV[(blk + r) * Cfg::ldd_f + d];
  if (wide) {
    float g[S];
    DECAYFW_UNROLL
    for (int r = 0; r < S; ++r) g[r] = Cta::to_f(t.Gr[at(r)]);
    paired_diagonal_sums(A, p, u, g, y, dv);
  }
  DECAYFW_UNROLL
  for (int r = 0; r < S; ++r) finish(r, y[r], dv[r]);
}

template <typename Cta, typename Op, typename Cfg>
DECAYFW_CTA void diagonal_key_terms(ChunkSmem<Op, Cfg>& sm, int blk, int m, bool wide) {
  constexpr int S = Cfg::S;
  Tiles<Op, Cfg>& t = sm.t;
  const float* p = t.Rd + blk * S;
  const auto at = [&](int r) { return (blk + r) * Cfg::ldm_op + m; };
  const auto grad = [&](float* G, int r) -> float& { return G[(blk + r) * Cfg::ldm_f + m]; };
  float B[S], k[S], dq[S], dk[S];
  DECAYFW_UNROLL
  for (int r = 0; r < S; ++r) {
    B[r] = t.key_gates(blk + r)[m];
    k[r] = Cta::to_f(t.Kr[at(r)]);
  }
  if (!wide) {  // factored (the only form that lists narrow key columns here)
    float q[S];
    DECAYFW_UNROLL
    for (int r = 0; r < S; ++r) q[r] = Cta::to_f(t.Qr[at(r)]);
    factored_diagonal_sums<Cta>(B, p, k, q, dq, dk);
    DECAYFW_UNROLL
    for (int r = 0; r < S; ++r) {
      grad(sm.DQ, r) += dq[r];
      grad(sm.DK, r) += dk[r];
    }
    return;
  }
  float q[S];
  DECAYFW_UNROLL
  for (int r = 0; r < S; ++r) {
    q[r] = Cta::to_f(t.Qr[at(r)]);
    dq[r] = grad(sm.DQ, r);
    dk[r] = grad(sm.DK, r);
  }
  paired_diagonal_sums(B, p, k, q, dq, dk);
  DECAYFW_UNROLL
  for (int r = 0; r < S; ++r) {
    grad(sm.DQ, r) = dq[r];
    grad(sm.DK, r) = dk[r];
  }
}

// The gates' gradients: per column x (X of them), g_i = carry_x + Σ_{s ≥ i, s < valid} term(s, x), and
// out(i, x, g_i) for every valid row i. One thread per column walking all C rows would be a chain of
// C dependent steps on X threads (two warps at X = 64), so the rows are cut at the sub-chunks: each
// (sub-chunk, column) first sums its own terms into part (NS×X fp32), then walks its rows from the sum
// of the later sub-chunks' parts on top of the carry. A chain of 16 on NS·X threads. With `kept` (C rows of
// ld floats that nothing reads after), the first walk leaves each term there and the second reads it back:
// one read where the term took several.
template <typename Cta, typename Cfg, int X, typename Term, typename Out>
DECAYFW_CTA void reverse_gate_sums(Cta& cta, int valid, const float* carry, float* part, Term&& term, Out&& out,
                                   float* kept = nullptr, int ld = 0) {
  constexpr int S = Cfg::S, NS = Cfg::NS;
  cta.for_each(int64_t(NS) * X, [&](int64_t e) {
    const int I = static_cast<int>(e / X), x = static_cast<int>(e % X);
    float s = 0.0f;
    for (int i = (I * S + S < valid ? I * S + S : valid) - 1; i >= I * S; --i) {
      const float v = term(i, x);
      if (kept) kept[i * ld + x] = v;
      s += v;
    }
    part[I * X + x] = s;
  });
  cta.for_each(int64_t(NS) * X, [&](int64_t e) {
    const int I = static_cast<int>(e / X), x = static_cast<int>(e % X);
    float g = carry[x];
    for (int J = NS - 1; J > I; --J) g += part[J * X + x];
    for (int i = (I * S + S < valid ? I * S + S : valid) - 1; i >= I * S; --i) {
      g += kept ? kept[i * ld + x] : term(i, x);
      out(i, x, g);
    }
  });
}

// dv and dk's intra-chunk parts, sub-chunk by sub-chunk (after intra_chunk_causal has kept Pd and Rd).
template <typename Cta, typename Op, typename Cfg>
DECAYFW_CTA void intra_chunk_anticausal(Cta& cta, const Place& pl, Tiles<Op, Cfg>& t, float* DK, float* DV) {
  constexpr int M = Cfg::M, R = Cfg::R, S = Cfg::S, MQ = M / kQuad, RQ = R / kQuad;
  // Rows j of sub-chunk J against its own rows and every later valid row i, reference = J's last row rp:
  //   dv_J += e^{A_rp−A_J} ⊙ Σ_i P_ji (dy_i e^{A_i−A_rp}),  dk_J += e^{B_rp−B_J} ⊙ Σ_i R_ji (q_i e^{B_i−B_rp}),
  // P_ji = Pd_ij and R_ji = Rd_ij on the diagonal block (kept complete above), and after it
  // (K_J e^{B_rp−B_J})·(q_i e^{B_i−B_rp}) and (V_J e^{A_rp−A_J})·(dy_i e^{A_i−A_rp}). In the tensor form the
  // products take the diagonal block too, the diagonal rows of q (dy) zeroed in the wide key columns
  // (rows); in the others they take the later rows only (first = S), and with none there is no product.
  const int end = (pl.valid + S - 1) / S * S;     // rows past it are all padding (zero q and dy)
  const int first = t.tensor_diagonal() ? 0 : S;  // the first column of the products, from j0
  for (int J = 0; J < Cfg::NS; ++J) {
    const int j0 = J * S, rp = j0 + S - 1, w = end - j0, later = w - S, cols = w - first;
    if (j0 >= pl.valid) break;
    if (cols == 0) continue;
    const uint32_t *key_wide = t.key_wide + J * Cfg::key_words, *row_wide = t.row_wide + J * Cfg::row_words;
    const int i0 = j0 + first;  // the first row of q and dy the products read
    cta.for_each(int64_t(S) * (MQ + RQ) + int64_t(cols) * (MQ + RQ), [&](int64_t e) {
      if (e < int64_t(S) * MQ) {
        const int j = j0 + static_cast<int>(e / MQ), m = static_cast<int>(e % MQ) * kQuad;
        scale_quad<Cta>(t.Xb + j * Cfg::ldm_op + m, t.Kr + j * Cfg::ldm_op + m, t.key_gates(rp) + m,
                        t.key_gates(j) + m);
        return;
      }
      e -= int64_t(S) * MQ;
      if (e < int64_t(S) * RQ) {
        const int j = j0 + static_cast<int>(e / RQ), d = static_cast<int>(e % RQ) * kQuad;
        scale_quad<Cta>(t.Xd + j * Cfg::ldd_op + d, t.Vr + j * Cfg::ldd_op + d, t.row_gates(rp) + d,
                        t.row_gates(j) + d);
        return;
      }
      e -= int64_t(S) * RQ;
      if (e < int64_t(cols) * MQ) {
        const int i = i0 + static_cast<int>(e / MQ), m = static_cast<int>(e % MQ) * kQuad;
        scale_quad<Cta>(t.Xa + i * Cfg::ldm_op + m, t.Qr + i * Cfg::ldm_op + m, t.key_gates(i) + m, t.key_gates(rp) + m,
                        i <= rp ? wide_quad(key_wide, m) : 0u);  // i ≤ rp: the tensor form's diagonal rows
        return;
      }
      e -= int64_t(cols) * MQ;
      const int i = i0 + static_cast<int>(e / RQ), d = static_cast<int>(e % RQ) * kQuad;
      scale_quad<Cta>(t.Xc + i * Cfg::ldd_op + d, t.Gr + i * Cfg::ldd_op + d, t.row_gates(i) + d, t.row_gates(rp) + d,
                      i <= rp ? wide_quad(row_wide, d) : 0u);
    });
    if (later > 0)
      cta.template gemm<false, true>(S, later, M, t.Xb + j0 * Cfg::ldm_op, Cfg::ldm_op, t.Xa + (j0 + S) * Cfg::ldm_op,
                                     Cfg::ldm_op, t.P + S, Cfg::ldc_f, false);
    round_products_after_diagonal(cta, t, j0, first, w, t.Pd);
    cta.template gemm_apply<false, false>(S, R, cols, t.Pop + first, Cfg::ldc_op, t.Xc + i0 * Cfg::ldd_op, Cfg::ldd_op,
                                          [&](int jj, int d, const float* v) {
                                            const int j = j0 + jj;
                                            decay_pairs<Cta>(DV + j * Cfg::ldd_f + d, Cfg::ldd_f, t.row_gates(rp) + d,
                                                             0, t.row_gates(j) + d, Cfg::ldg_r, v, true);
                                          });
    if (later > 0)
      cta.template gemm<false, true>(S, later, R, t.Xd + j0 * Cfg::ldd_op, Cfg::ldd_op, t.Xc + (j0 + S) * Cfg::ldd_op,
                                     Cfg::ldd_op, t.P + S, Cfg::ldc_f, false);
    round_products_after_diagonal(cta, t, j0, first, w, t.Rd);
    cta.template gemm_apply<false, false>(S, M, cols, t.Pop + first, Cfg::ldc_op, t.Xa + i0 * Cfg::ldm_op, Cfg::ldm_op,
                                          [&](int jj, int m, const float* v) {
                                            const int j = j0 + jj;
                                            decay_pairs<Cta>(DK + j * Cfg::ldm_f + m, Cfg::ldm_f, t.key_gates(rp) + m,
                                                             0, t.key_gates(j) + m, Cfg::ldg_m, v, true);
                                          });
  }
}

// The chunk form's gradient products, after dk's and dv's inter-chunk ones (grad_rows: Xa = Q̃ and
// Xc = dY ⊙ e^{A} = dỸ; Xb and Xd free, and dSop, where Pc is):
//   Y = e^{A} ⊙ (Q̃ S_prevᵀ + P Ṽ),   dV += e^{−A} ⊙ (Pᵀ dỸ),   with P = mask(Q̃ K̃ᵀ);
//   dQ += e^{B} ⊙ (dỸ S_prev + R K̃),  dK += e^{−B} ⊙ (Rᵀ Q̃),   with R = mask(dỸ Ṽᵀ);
// K̃ = K ⊙ e^{−B} into Xb, Ṽ = V ⊙ e^{−A} into Xd, P then R in Pc; y's and dq's inter- and intra-chunk
// products in one set of accumulators each.
// With kApart (the factored form) the products skip the diagonal blocks, which come after them in fp32: Rd, and
// Pd unless an earlier tile kept it (pd_kept).
template <bool kApart, typename Cta, typename Op, typename Cfg>
DECAYFW_CTA void chunk_grad_products(Cta& cta, const Place& pl, Tiles<Op, Cfg>& t, float* DQ, float* DK, float* DV,
                                     bool& pd_kept) {
  constexpr int C = Cfg::C, M = Cfg::M, R = Cfg::R;
  using cta::KSpan;
  constexpr KSpan kMasked = kApart ? KSpan::BlockCausal : KSpan::Causal, kLower = kApart ? KSpan::BelowA : KSpan::LowerA,
                  kUpper = kApart ? KSpan::AboveA : KSpan::UpperA;
  whole_chunk_operands(cta, t, false, t.Xd);
  whole_chunk_y<kApart>(cta, t, t.Xd);
  cta.template gemm_apply<true, false, kUpper>(
      C, R, C, t.Pc, Cfg::ldc_op, t.Xc, Cfg::ldd_op, [&](int j, int d, const float* v) {
        decay_pairs<Cta>(DV + j * Cfg::ldd_f + d, Cfg::ldd_f, nullptr, 0, t.row_gates(j) + d, Cfg::ldg_r, v, true);
      });
  cta.template gemm_apply<false, true, kMasked>(
      C, C, R, t.Xc, Cfg::ldd_op, t.Xd, Cfg::ldd_op,
      [&](int i, int j, const float* v) { store_causal_pairs<Cta, kApart>(t.Pc, Cfg::ldc_op, i, j, v); });
  cta.gemm_apply_sum(
      C, M,
      [&](int i, int m, const float* v) {
        decay_pairs<Cta>(DQ + i * Cfg::ldm_f + m, Cfg::ldm_f, t.key_gates(i) + m, Cfg::ldg_m, nullptr, 0, v, true);
      },
      cta::term<false, false>(R, t.Xc, Cfg::ldd_op, t.Sop, Cfg::ldm_op),
      cta::term<false, false, kLower>(C, t.Pc, Cfg::ldc_op, t.Xb, Cfg::ldm_op));
  cta.template gemm_apply<true, false, kUpper>(
      C, M, C, t.Pc, Cfg::ldc_op, t.Xa, Cfg::ldm_op, [&](int j, int m, const float* v) {
        decay_pairs<Cta>(DK + j * Cfg::ldm_f + m, Cfg::ldm_f, nullptr, 0, t.key_gates(j) + m, Cfg::ldg_m, v, true);
      });
  if constexpr (kApart) {
    if (!pd_kept)
      diagonal_blocks_whole<M>(
          cta, t, pl, t.Qr, t.Kr, Cfg::ldm_op, [&](int i) { return t.key_gates(i); }, t.Pd);
    pd_kept = true;
    diagonal_blocks_whole<R>(
        cta, t, pl, t.Gr, t.Vr, Cfg::ldd_op, [&](int i) { return t.row_gates(i); }, t.Rd);
  }
}

// One row tile's share of grad_pass, on the tile's rows and states staged by grad_pass: dv, dz of
// its rows; its terms of dq and dk added to DQ, DK.
template <typename Cta, typename Op, typename Cfg>
DECAYFW_CTA void grad_rows(Cta& cta, const ChunkArgs& a, const Place& pl, ChunkSmem<Op, Cfg>& sm, bool& pd_kept) {
  constexpr int C = Cfg::C, M = Cfg::M, R = Cfg::R, S = Cfg::S;
  Tiles<Op, Cfg>& t = sm.t;
  float *DQ = sm.DQ, *DK = sm.DK, *DV = sm.DV;
  const int last = C - 1;
  // Boundary terms: every later token's share of the gate gradients, rowsum and (summed over the
  // tiles) colsum of dS_end ⊙ S_end (S_end = the next chunk's start state, or S_T; dS_end as staged,
  // the stored values exactly).
  cta.for_each(R + M, [&](int64_t e) {
    const float* s = a.states + pl.state_row(pl.chunk + 1, a.chunks + 1, a.D, 0) * M;
    float acc = 0.0f;
    if (e < R) {
      // Four columns per step, summed in the same order: a thread walks its own row, so single reads put the
      // warp's 32 rows on 8 banks (rows of ldm_op elements move 4 banks on), and the states' row in global
      // memory was read 4 bytes at a time.
      for (int m = 0; m < M; m += kQuad) {
        float x[kQuad], y[kQuad];
        Cta::load4(t.dSop + e * Cfg::ldm_op + m, x);
        Cta::load4(s + e * M + m, y);
        DECAYFW_UNROLL
        for (int w = 0; w < kQuad; ++w) acc += x[w] * y[w];
      }
      sm.carry_row[e] = acc;
    } else {
      const int m = static_cast<int>(e - R);
      for (int d = 0; d < R; ++d) acc += Cta::to_f(t.dSop[d * Cfg::ldm_op + m]) * s[d * M + m];
      sm.carry_col[m] += acc;
    }
  });

  // Inter-chunk parts: y from S_prev, dq from S_prev, dv and dk from dS_end.
  constexpr int MQ = M / kQuad, RQ = R / kQuad;
  cta.for_each(int64_t(C) * (2 * MQ + 2 * RQ), [&](int64_t e) {
    const int64_t cm = int64_t(C) * MQ, cr = int64_t(C) * RQ;
    if (e < 2 * cm) {
      const bool kk = e >= cm;
      if (kk) e -= cm;
      const int i = static_cast<int>(e / MQ), m = static_cast<int>(e % MQ) * kQuad;
      if (!kk) scale_quad<Cta>(t.Xa + i * Cfg::ldm_op + m, t.Qr + i * Cfg::ldm_op + m, t.key_gates(i) + m, nullptr);
      else
        scale_quad<Cta>(t.Xb + i * Cfg::ldm_op + m, t.Kr + i * Cfg::ldm_op + m, t.key_gates(last) + m,
                        t.key_gates(i) + m);
      return;
    }
    e -= 2 * cm;
    const bool vv = e >= cr;
    if (vv) e -= cr;
    const int i = static_cast<int>(e / RQ), d = static_cast<int>(e % RQ) * kQuad;
    if (!vv) scale_quad<Cta>(t.Xc + i * Cfg::ldd_op + d, t.Gr + i * Cfg::ldd_op + d, t.row_gates(i) + d, nullptr);
    else
      scale_quad<Cta>(t.Xd + i * Cfg::ldd_op + d, t.Vr + i * Cfg::ldd_op + d, t.row_gates(last) + d,
                      t.row_gates(i) + d);
  });
  // Each product decayed in registers: dk adds its own (it accumulates over tiles), dv starts with its own. dS_end
  // is not read after these two.
  cta.template gemm_apply<false, false>(C, M, R, t.Xd, Cfg::ldd_op, t.dSop, Cfg::ldm_op,
                                        [&](int i, int m, const float* v) {
                                          decay_pairs<Cta>(DK + i * Cfg::ldm_f + m, Cfg::ldm_f, t.key_gates(last) + m,
                                                           0, t.key_gates(i) + m, Cfg::ldg_m, v, true);
                                        });
  cta.template gemm_apply<false, true>(C, R, M, t.Xb, Cfg::ldm_op, t.dSop, Cfg::ldm_op,
                                       [&](int i, int d, const float* v) {
                                         decay_pairs<Cta>(DV + i * Cfg::ldd_f + d, Cfg::ldd_f, t.row_gates(last) + d, 0,
                                                          t.row_gates(i) + d, Cfg::ldg_r, v, false);
                                       });

  // Intra-chunk: the chunk form's products over the whole chunk (with y's and dq's inter-chunk products in the
  // same accumulators), or y's and dq's inter-chunk products, then by sub-chunk with the diagonal blocks on
  // tensor cores (but their wide columns): y and dq (causal, one loop sharing the scaled k and v), dv and dk
  // (anti-causal). A chunk taken whole has no diagonal terms left: the row gates' sums below then take y ⊙ dy
  // and write dv themselves.
  const bool whole = t.chunk_narrow();
  if (whole && t.factored()) {
    chunk_grad_products<true>(cta, pl, t, DQ, DK, DV, pd_kept);
  } else if (whole) {
    chunk_grad_products<false>(cta, pl, t, DQ, DK, DV, pd_kept);
  } else {
    cta.template gemm_apply<false, false>(
        C, M, R, t.Xc, Cfg::ldd_op, t.Sop, Cfg::ldm_op, [&](int i, int m, const float* v) {
          decay_pairs<Cta>(DQ + i * Cfg::ldm_f + m, Cfg::ldm_f, t.key_gates(i) + m, Cfg::ldg_m, nullptr, 0, v, true);
        });
    cta.template gemm_apply<false, true>(
        C, R, M, t.Xa, Cfg::ldm_op, t.Sop, Cfg::ldm_op, [&](int i, int d, const float* v) {
          decay_pairs<Cta>(t.Y + i * Cfg::ldd_f + d, Cfg::ldd_f, t.row_gates(i) + d, Cfg::ldg_r, nullptr, 0, v, false);
        });
    intra_chunk_causal(cta, pl, t, !pd_kept, DQ);
    pd_kept = true;
    intra_chunk_anticausal(cta, pl, t, DK, DV);
  }

  // The diagonal terms off the tensor cores, in fp32 (from Pd and Rd): the wide columns' per pair, the
  // narrow ones' factored in the factored form (a whole chunk's too); and dv written, y ⊙ dy kept in Y for the
  // row-gate identity. Not in the chunk form's whole chunks, which have none. One index per wide (sub-chunk,
  // row) (WideList), one per (sub-chunk, row) that is not wide, one per wide (sub-chunk, key column), and in
  // the factored form one per (sub-chunk, key column) that is not wide.
  const bool terms = !whole || t.factored();
  const WideList<Cfg::row_words> wide_rows(t.row_wide, Cfg::NS);
  const WideList<Cfg::key_words> wide_keys(t.key_wide, Cfg::NS);
  const int64_t rows = int64_t(Cfg::NS) * R, narrow_keys = t.factored() ? int64_t(Cfg::NS) * M : 0;
  if (terms)
    cta.for_each(wide_rows.size + rows + wide_keys.size + narrow_keys, [&](int64_t e) {
      int I, col;
      if (e < wide_rows.size) {
        wide_rows.at(e, I, col);
        return diagonal_row_terms<Cta>(a, pl, sm, I * S, col, true);
      }
      e -= wide_rows.size;
      if (e < rows) {
        I = static_cast<int>(e / R), col = static_cast<int>(e % R);
        if (!is_wide(t.row_wide + I * Cfg::row_words, col)) diagonal_row_terms<Cta>(a, pl, sm, I * S, col, false);
        return;
      }
      e -= rows;
      if (e < wide_keys.size) {
        wide_keys.at(e, I, col);
        return diagonal_key_terms<Cta>(sm, I * S, col, true);
      }
      e -= wide_keys.size;
      I = static_cast<int>(e / M), col = static_cast<int>(e % M);
      if (!is_wide(t.key_wide + I * Cfg::key_words, col)) diagonal_key_terms<Cta>(sm, I * S, col, false);
    });

  // Row gates: reverse cumulative sums of y ⊙ dy − v ⊙ dv inside the chunk on top of the boundary term,
  // times σ(−z) of the staged logits (reverse_gate_sums; the terms kept in Y between its walks).
  reverse_gate_sums<Cta, Cfg, R>(
      cta, pl.valid, sm.carry_row, sm.part,
      [&](int i, int d) {
        const float y_dy =
            terms ? t.Y[i * Cfg::ldd_f + d] : t.Y[i * Cfg::ldd_f + d] * Cta::to_f(t.Gr[i * Cfg::ldd_op + d]);
        return y_dy - Cta::to_f(t.Vr[i * Cfg::ldd_op + d]) * DV[i * Cfg::ldd_f + d];
      },
      [&](int i, int d, float g) {
        row_of<Op>(a.dz, pl.b, pl.c0 + i, pl.h)[pl.row0 + d] =
            Cta::template from_f<Op>(g * sigmoid_of_minus(Cta::to_f(t.Zr[i * R + d])));
        if (!terms)
          row_of<Op>(a.dv, pl.b, pl.c0 + i, pl.h)[pl.row0 + d] = Cta::template from_f<Op>(DV[i * Cfg::ldd_f + d]);
      },
      t.Y, Cfg::ldd_f);  // Y is not read after the terms: they replace it
}

// grad_pass(n, chunk): every input gradient of one chunk. The row tiles of D are walked inside the
// CTA: dv and dz are per row, and dq, dk (sums over all rows) accumulate across tiles in shared
// memory, so no partial buffers and no second kernel are needed.
template <typename Cta, typename Op, typename Cfg>
DECAYFW_CTA void grad_pass(Cta& cta, const ChunkArgs& a, int64_t n, int64_t chunk, unsigned char* smem) {
  constexpr int C = Cfg::C, M = Cfg::M;
  ChunkSmem<Op, Cfg> sm(smem, ChunkCarve::Grad);
  Tiles<Op, Cfg>& t = sm.t;
  choose_form<Cta>(t, a);
  float *DQ = sm.DQ, *DK = sm.DK;
  const Staging<Op> to = staging_of(t);
  bool pd_kept =
      false;  // Pd, which depends on the key side alone, computed by an earlier tile (not by the chunk form's)
  const int64_t zeros = int64_t(C) * M + M;
  for (int64_t tile = 0; tile < a.tiles; ++tile) {
    // One staging phase per tile: its rows (with the key side and DQ, DK zeroed for the first), its
    // start state and the gradient reaching its end state.
    const Place pl(a, n, chunk, tile, C);
    const int sides = tile == 0 ? kBothSides : kRowSide;
    const int64_t copies = stage_count<Op, Cfg>(a, sides), dstate = end_dstate_copies<Op, Cfg>(),
                  state = start_state_batches<Cfg>(), zero = tile == 0 ? zeros : 0;
    cta.for_each(copies + dstate + state + zero, [&](int64_t e) {
      if (e < copies) return stage_index<Cta, Op, Cfg>(cta, a, pl, to, sides, e);
      e -= copies;
      if (e < dstate) return stage_end_dstate<Cta>(cta, a, pl, t, e);
      e -= dstate;
      if (e < state) return load_start_state_batch<Cta>(a, pl, t, e);
      e -= state;
      if (e < int64_t(C) * M) {
        DQ[(e / M) * Cfg::ldm_f + e % M] = 0.0f;
        DK[(e / M) * Cfg::ldm_f + e % M] = 0.0f;
      } else {
        sm.carry_col[e - int64_t(C) * M] = 0.0f;
      }
    });
    finish_loading(cta, pl, t, sides);
    grad_rows(cta, a, pl, sm, pd_kept);
  }

  // Column gates: reverse cumulative sums of q ⊙ dq − k ⊙ dk inside the chunk on top of the
  // boundary term, then dq, dk and df (σ(−f) of the staged logits).
  const Place keys(a, n, chunk, 0, C);
  reverse_gate_sums<Cta, Cfg, M>(
      cta, keys.valid, sm.carry_col, sm.part,
      [&](int i, int m) {
        return Cta::to_f(t.Qr[i * Cfg::ldm_op + m]) * DQ[i * Cfg::ldm_f + m] -
               Cta::to_f(t.Kr[i * Cfg::ldm_op + m]) * DK[i * Cfg::ldm_f + m];
      },
      [&](int i, int m, float g) {
        const int64_t tt = keys.c0 + i;
        row_of<Op>(a.dq, keys.b, tt, keys.h)[m] = Cta::template from_f<Op>(DQ[i * Cfg::ldm_f + m]);
        row_of<Op>(a.dk, keys.b, tt, keys.h)[m] = Cta::template from_f<Op>(DK[i * Cfg::ldm_f + m]);
        row_of<Op>(a.df, keys.b, tt, keys.h)[m] =
            Cta::template from_f<Op>(g * sigmoid_of_minus(Cta::to_f(t.Fr[i * M + m])));
      });
}

}  // namespace decayfw::chunk
