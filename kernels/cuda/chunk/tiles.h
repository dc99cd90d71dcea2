// The chunk programs' common ground: the op's arguments (ChunkArgs), the compiled sizes (Config),
// the numerics every program shares (log σ, the decays' exponential), the four-column helpers, and the
// shared-memory tiles of one chunk (Tiles, and ChunkSmem's carve for output_pass, forward_pass and
// grad_pass). The notation is in ../decay_chunk_program.h.
#pragma once

#include <math.h>

#include <cstdint>

#include "../cta/cta_common.h"

namespace decayfw::chunk {

struct SeqIn {  // a read-only [B, T, H, X] view with element strides; X contiguous
  const void* p;
  int64_t sb, st, sh;
};
struct SeqOut {
  void* p;
  int64_t sb, st, sh;
};

// The three forms of the 16×16 diagonal blocks ("diagonal blocks" in intra_chunk.h). Each column whose gates span
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
  int64_t chunks = 0;         // ceil(T / C)
  int64_t tiles = 0;          // D / kRows
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
  float* ds0 = nullptr;  // [N, D, M]
  // How the diagonal blocks (intra_chunk.h) are taken: DiagonalForm says what each form costs.
  DiagonalForm diagonal = DiagonalForm::Factored;
  // A whole chunk's y from its products chained in registers (cta gemm_chain: 16-bit operands), or through
  // shared memory (gemm_apply, then gemm_apply_sum); the same values either way (whole_chunk_y).
  bool chain_products = true;
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

// MUFU operations (count_special_functions), as nvcc 13 compiles them for sm_90: log_sigmoid one MUFU.EX2
// (log1pf is a polynomial on the FMA pipe), sigmoid_of_minus a MUFU.EX2 and the division's MUFU.RCP (its slow
// path, for divisors near the range's ends, takes more), decay_exp one MUFU.EX2.
DECAYFW_CTA float log_sigmoid(float x) {
  cta::count_special_functions(1);
  return fminf(x, 0.0f) - log1pf(expf(-fabsf(x)));
}
DECAYFW_CTA float sigmoid_of_minus(float x) {
  cta::count_special_functions(2);
  return 1.0f / (1.0f + expf(x));
}  // σ(−x): exact near σ(x) = 1

// e^x of a decay exponent (a difference of cumulative log gates, x ≤ 0). The gradient pass computes
// hundreds of thousands per chunk, most in its 16×16 diagonal blocks, so the hardware's ex2.approx is
// used on the device: one multiply and one special-function op, where expf spends six more
// instructions on range reduction. Its error, about 2 ulp plus |x|·2^-24 relative (under 6e-6 for
// x ≥ −88; below about −87 the result flushes to zero, as the terms it scales no longer count), is far
// under the operands' rounding (bf16 2^-9, tf32 2^-11). The host executor uses expf.
DECAYFW_CTA float decay_exp(float x) {
  cta::count_special_functions(1);
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

// The row and unit of element unit e (U units a row) of a tile of M-wide rows ldm_op = M + 8 elements apart, for a
// phase that takes one unit an index. With 16-bit elements and M = 32 a row is 64 bytes and rows are 80 apart: a
// wavefront's lanes (a half warp of 8-byte units, a quarter warp of 16-byte ones) span two rows, and consecutive
// rows share banks (2.4 wavefronts an 8-byte instruction where 2 would do, and 2-way conflicts). Rows r and r + 4
// lie 320 bytes apart, 64 mod 128, on the other half of the banks: so each group of 8 rows is walked as (0, 4),
// (1, 5), (2, 6), (3, 7), a row's units in order. The rows must come in 8s (every caller's are multiples of 16).
// Other sizes, where a wavefront's lanes take one row or less: row by row.
template <typename Op, int M, int U>
DECAYFW_CTA void row_unit(int64_t e, int& row, int& unit) {
  if constexpr (sizeof(Op) == 2 && M == 32) {
    const int l = static_cast<int>(e % (8 * U)), group = static_cast<int>(e / (8 * U));
    row = 8 * group + l / (2 * U) + 4 * (l / U % 2);
    unit = l % U;
  } else {
    row = static_cast<int>(e / U);
    unit = static_cast<int>(e % U);
  }
}

// row_unit for quads of four elements (Q a row): the row and the quad's first column. A quarter warp of 8-byte
// quads still takes one row (the fp32 gate rows' 16-byte accesses beside them stay conflict-free).
template <typename Op, int Q>
DECAYFW_CTA void quad_at(int64_t e, int& row, int& col) {
  row_unit<Op, Q * kQuad, Q>(e, row, col);
  col *= kQuad;
}

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

// Two scale_quads on one quad of gates g, loaded once: up[w] = up_src[w]·e^{g[w]} and down[w] = down_src[w]·e^{end[w] −
// g[w]} (end null: e^{−g[w]}), each rounded to its type: the same operations as the two scale_quad calls, so the
// same bits. A chunk's operands come in such pairs (Q̃ with K̃ on the key gates, dỸ with Ṽ on the row gates).
template <typename Cta, typename Op>
DECAYFW_CTA void scale_quad_pair(Op* up, const Op* up_src, Op* down, const Op* down_src, const float* g,
                                 const float* end) {
  float x[kQuad], y[kQuad], gg[kQuad], ge[kQuad] = {0.0f, 0.0f, 0.0f, 0.0f};
  Cta::load4(up_src, x);
  Cta::load4(down_src, y);
  Cta::load4(g, gg);
  if (end) Cta::load4(end, ge);
  DECAYFW_UNROLL
  for (int w = 0; w < kQuad; ++w) {
    x[w] *= decay_exp(gg[w]);
    y[w] *= decay_exp(ge[w] - gg[w]);
  }
  Cta::store4(up, x);
  Cta::store4(down, y);
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
template <typename Cta, typename T>
DECAYFW_CTA void decay_state_quad(T* s, float a, const float* b) {
  float o[kQuad], gb[kQuad];
  Cta::load4(s, o);
  Cta::load4(b, gb);
  DECAYFW_UNROLL
  for (int w = 0; w < kQuad; ++w) o[w] *= decay_exp(a + gb[w]);
  Cta::store4(s, o);
}

// Where the serial passes' state update refers its operands (update_state): the update of a chunk is
//   S ← e^{A_L} e^{B_L}ᵀ ⊙ S + Σ_j (v_j e^{A_L − A_j}) (k_j e^{B_L − B_j})ᵀ,
// and e^{A_L − A_j} = e^{A_L}·e^{−A_j} takes e^{A_L} (a row's) and e^{B_L} (a column's) out of the sum, to the
// epilogue, where the chunk's spans allow it: the operands referred to the chunk's start are the chunk form's
// Ṽ = V ⊙ e^{−A} and K̃ = K ⊙ e^{−B} (whole_chunk_operands), which the fused forward has already, so that its
// update needs no operands of its own. Each factor taken out scales the sum's terms by up to e^{span} of its side
// before the epilogue brings them back, so:
//   End:  every column's factors stay in the operands (any spans);
//   Rows: Ṽ (the tile's rows span at most wide_span_bound over the chunk), K' = K ⊙ e^{B_L − B},
//         S ← e^{A_L} ⊙ (e^{B_L}ᵀ ⊙ S + Ṽᵀ K');
//   Both: Ṽ and K̃ (both sides span at most half of it: the terms reach e^{bound}·|v||k| as the chunk form's
//         products do), S ← e^{A_L} e^{B_L}ᵀ ⊙ (S + Ṽᵀ K̃).
enum class UpdateReference : int { End, Rows, Both };

// The bits of the chunk form's words (Tiles::chunk_wide): a column of the side spans more than wide_span_bound over
// the chunk, more than half of it.
constexpr uint32_t kChunkWide = 1u, kChunkOverHalf = 2u;

// The serial passes' state update in one lane's part of its product (gemm_apply's epilogue, v as decay_pairs'
// takes it): at rows d, d + 8 and columns m, m + 8 (+ 1) of the fp32 state, s ← s·e^{a}e^{b} + v with v added
// where `ref` (UpdateReference) says the operands refer to: before both factors (Both), between them (Rows) or
// after (End); a the rows' A_L (a[0] row d, a[8] row d + 8), b the columns' B_L. Then also(i, j, o) with each new
// pair o at (d + i, m + j), for the pass to write where the next chunk wants it. Applying the decay here rather
// than in a phase before a gemm that loads the state as its accumulators and stores it back reads and writes the
// state once a chunk instead of twice, and the copies of the new state need not read it again. One exponential
// a row and one a column (e^{a}·e^{b}, not e^{a + b}): 6 a lane and 16×16 tile, where one an element took 8.
template <typename Cta, typename Also>
DECAYFW_CTA void decay_state_pairs(float* s, int ld, const float* a, const float* b, const float* v,
                                   UpdateReference ref, Also&& also) {
  const float ea[2] = {decay_exp(a[0]), decay_exp(a[8])};
  DECAYFW_UNROLL
  for (int c = 0; c < 2; ++c) {  // columns m, m + 8
    float gb[2];
    Cta::load2(b + 8 * c, gb);
    const float eb[2] = {decay_exp(gb[0]), decay_exp(gb[1])};
    DECAYFW_UNROLL
    for (int r = 0; r < 2; ++r) {  // rows d, d + 8: pair r + 2c
      float* p = s + 8 * r * ld + 8 * c;
      const float* x = v + 2 * (r + 2 * c);
      float o[2];
      Cta::load2(p, o);
      DECAYFW_UNROLL
      for (int w = 0; w < 2; ++w) {
        float u = o[w];
        if (ref == UpdateReference::Both) u += x[w];
        u *= eb[w];
        if (ref == UpdateReference::Rows) u += x[w];
        u *= ea[r];
        if (ref == UpdateReference::End) u += x[w];
        o[w] = u;
      }
      Cta::store2(p, o);
      also(8 * r, 8 * c, static_cast<const float*>(o));
    }
  }
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
// with kApart where the column's 16-row block is not before the row's (the diagonal blocks taken apart): the
// masks of cta::chain_keeps, which gemm_chain applies in registers.
template <typename Cta, bool kApart, typename Op>
DECAYFW_CTA void store_causal_pairs(Op* out, int ld, int i, int j, const float* v) {
  DECAYFW_UNROLL
  for (int e = 0; e < 4; ++e) {  // pair e at row i + 8·(e & 1), columns j + 8·(e >> 1) (+ 1)
    const int r = i + 8 * (e & 1), c = j + 8 * (e >> 1);
    DECAYFW_UNROLL
    for (int w = 0; w < 2; ++w) {
      const bool kept = cta::chain_keeps(kApart ? cta::KSpan::BlockCausal : cta::KSpan::Causal, r, c + w);
      out[r * ld + c + w] = Cta::template from_f<Op>(kept ? v[2 * e + w] : 0.0f);
    }
  }
}

// Where one CTA works: sequence n, chunk (start c0, valid rows L), tile rows [row0, row0 + R).
struct Place {
  int64_t n, b, h, chunk, c0, row0, tile;
  int valid;  // rows of the chunk inside the sequence
  // The sub-chunks holding a valid row: the later ones of a partial last chunk are all padding.
  DECAYFW_CTA int valid_subs() const { return (valid + kSub - 1) / kSub; }
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
  Op *Fr = nullptr, *Zr = nullptr;                                // raw gate logits f (C×M), z (C×R), unpadded
  float *Bc = nullptr, *Ac = nullptr;  // cumulative log gates C×M, C×R: rows key_gates(i), row_gates(i)
  Op *Xa = nullptr, *Xb = nullptr, *Xc = nullptr, *Xd = nullptr;  // scaled operands C×M, C×M, C×R, C×R
  float* P = nullptr;                  // S×C fp32 products of a sub-chunk's rows with the chunk's
  Op* Pop = nullptr;                   // the same rounded to the operand type
  Op *Sop = nullptr, *dSop = nullptr;  // R×M state and state gradient rounded to the operand type
  float *Pd = nullptr, *Rd = nullptr;  // C×S fp32 diagonal blocks (diagonal_block_offset): q·k, dy·v with decays
  float* Y = nullptr;                  // C×R fp32 outputs
  // Per sub-chunk, one bit per key column (key_words words) and per row of the tile (row_words): set
  // where that column's log gates span too much for the diagonal block's tensor-core products
  // ("wide": see the diagonal blocks in intra_chunk.h); null in the passes that have no diagonal blocks.
  uint32_t *key_wide = nullptr, *row_wide = nullptr;
  // The form the program runs (effective_diagonal): where the narrow columns' diagonal terms go, into
  // the tensor-core products, or through Fx, Fy (S×ld_fd fp32: one sub-chunk's two operands of Pd or
  // Rd, scaled by their factors through its first row, zero in the wide columns) when factored.
  DiagonalForm diagonal = DiagonalForm::Elementwise;
  float *Fx = nullptr, *Fy = nullptr;
  // The chunk form's two words, key side then the tile's rows: kChunkWide set where some column's log gates span
  // more than wide_span_bound over the whole chunk, kChunkOverHalf where more than half of it (set with the wide
  // bits; null where a pass has none). Pc: the chunk form's C×C products in the operand type, in the region P,
  // Pop, Fx, Fy, Sop and dSop share, after Sop (which its products still read) and where dSop is (dead by then).
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
    return takes_chunks_whole() && chunk_wide != nullptr && ((chunk_wide[0] | chunk_wide[1]) & kChunkWide) == 0u;
  }
  // Where the serial passes' update of this chunk refers its operands (UpdateReference): what the spans allow.
  DECAYFW_HD UpdateReference update_reference() const {
    if (!takes_chunks_whole() || chunk_wide == nullptr || (chunk_wide[1] & kChunkWide)) return UpdateReference::End;
    return ((chunk_wide[0] | chunk_wide[1]) & kChunkOverHalf) ? UpdateReference::Rows : UpdateReference::Both;
  }
  DECAYFW_HD bool takes_chunks_whole() const {
    return fp32_range && (diagonal == DiagonalForm::Chunk || diagonal == DiagonalForm::Factored);
  }
  bool fp32_range = false;  // the operand type holds e^{±40}·|x| (Cta::has_fp32_range; not fp16)
  bool chained = false;     // whole_chunk_y chains its products (ChunkArgs::chain_products, 16-bit operands)
  DECAYFW_HD bool factored() const { return diagonal == DiagonalForm::Factored; }
};

// Where row i of a diagonal-block tile (Pd, Rd: C×S fp32, sub-chunk I's S×S block in rows I·S .. I·S + S − 1)
// starts. Each block starts kDiagonalSkew floats after the previous one ends: the wide columns' per-pair sums
// (paired_diagonal_sums, y_diagonal_terms) have a warp's lanes on several sub-chunks read the same (r, c) of
// their blocks at once, and blocks S·S = 256 floats apart put all of those on one bank (3.1 and 4.0
// wavefronts a read with a swapped model's gates); 8 floats apart they take banks 8·I, and every block stays
// 32-byte aligned for the wmma stores into it.
constexpr int kDiagonalSkew = 8;
template <int S>
DECAYFW_HD constexpr int diagonal_block_offset(int i) {
  return i * S + (i / S) * kDiagonalSkew;
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
    t.Pd = ar.take<float>(diagonal_block_offset<S>(C));
    if (grad) t.Rd = ar.take<float>(diagonal_block_offset<S>(C));
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

}  // namespace decayfw::chunk
