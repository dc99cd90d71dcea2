// How every chunk program loads a chunk: staging, log gates, their cumulative sums, the wide columns'
// marks, and the start state. The notation is in ../decay_chunk_program.h.
#pragma once

#include "tiles.h"

namespace decayfw::chunk {

// ---- loading -----------------------------------------------------------------------------------
//
// Every pass loads a chunk the same way, in two phases:
//   1. staging: the raw inputs to shared memory as they are, 16 bytes per asynchronous copy
//      (cp.async), so all of a thread's copies are in flight at once and the phase waits out one
//      memory latency, not one per index. q, k (C×M) and v, dy (C×R) go to the raw tiles the pass
//      carves, the gate logits f (C×M) and z (C×R) to Fr and Zr; rows past T are zeros. Views whose
//      rows are not 16-byte aligned (e.g. one element into their storage) are copied element by
//      element instead, synchronously (ChunkArgs::vector_loads). The same phase clears the wide
//      columns' words of the sides it loads (clear_wide_word).
//   2. after cta.wait_async(): one index per column (gate_column): its log gates log σ(f) or log σ(z)
//      (0 past T: identity steps), summed down the chunk as they are computed, the inclusive cumulative
//      sums written to Bc or Ac, and the column's wide bits set from the sums it holds.
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
  if (vector)
    cta.copy16_async(dst, src, ok);
  else
    *dst = ok ? *src : Cta::template from_f<Op>(0.0f);
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
    // q's and k's rows are padded (ldm_op) and taken in row_unit's order: at M = 32 a quarter warp's 16-byte copies
    // then fill two rows on different banks, where consecutive rows 80 bytes apart overlapped. f's rows are not
    // padded, so the same order would put them on the same banks: they stay in order. Each copy is its own.
    int iq = i, xq = x;
    if (vec) {
      row_unit<Op, Cfg::M, Cfg::M / kVec<Op>>(e, iq, xq);
      xq *= kVec<Op>;
    }
    const bool ok_q = iq < pl.valid;
    const int64_t tq = pl.c0 + (ok_q ? iq : 0), at = int64_t(iq) * Cfg::ldm_op + xq;
    stage_one(cta, vec, ok_q, row_of<Op>(a.q, pl.b, tq, pl.h) + xq, to.Qr ? to.Qr + at : nullptr);
    stage_one(cta, vec, ok_q, row_of<Op>(a.k, pl.b, tq, pl.h) + xq, to.Kr ? to.Kr + at : nullptr);
    stage_one(cta, vec, ok, row_of<Op>(a.f, pl.b, tt, pl.h) + x, to.Fr ? to.Fr + i * Cfg::M + x : nullptr);
  } else {
    const int at = i * Cfg::ldd_op + x;
    const int64_t col = pl.row0 + x;
    stage_one(cta, vec, ok, row_of<Op>(a.v, pl.b, tt, pl.h) + col, to.Vr ? to.Vr + at : nullptr);
    if (to.Gr) stage_one(cta, vec, ok, row_of<Op>(a.dy, pl.b, tt, pl.h) + col, to.Gr + at);
    stage_one(cta, vec, ok, row_of<Op>(a.z, pl.b, tt, pl.h) + col, to.Zr ? to.Zr + i * Cfg::R + x : nullptr);
  }
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
  t.chained = a.chain_products && sizeof(Op) == 2;
}

// The widest span of log gates over a sub-chunk for which a column's diagonal block is factored (on
// tensor cores or in fp32): the block's operands are scaled by up to e^{span} there (the diagonal blocks
// below say why), and e^40 ≈ 2.4·10^17 leaves inputs up to 10^21 finite in fp32's range. In the
// elementwise form every column is wide. Spans are ≥ 0.
DECAYFW_CTA float wide_span_bound(DiagonalForm form) {
  return form == DiagonalForm::Elementwise ? -1.0f : 40.0f;
}

DECAYFW_CTA bool is_wide(const uint32_t* words, int col) {
  return (words[col >> 5] >> (col & 31)) & 1u;
}
// The bits of four columns from col (a multiple of 4, so they share a word), as scale_quad's `zero`.
DECAYFW_CTA uint32_t wide_quad(const uint32_t* words, int col) {
  return (words[col >> 5] >> (col & 31)) & 0xfu;
}

// f(col) for every wide column of one sub-chunk's words, ascending from the first(n)-th of its n wide columns
// (mod n), then the ones before it: the same order for every thread whose first(n) is the same.
template <int kWords, typename First, typename F>
DECAYFW_CTA void for_each_wide(const uint32_t* words, First&& first, F&& f) {
  uint32_t bits[kWords];
  int n = 0;
  DECAYFW_UNROLL
  for (int w = 0; w < kWords; ++w) n += cta::bit_count(bits[w] = words[w]);
  if (n == 0) return;
  const int skip = first(n) % n;
  DECAYFW_UNROLL
  for (int pass = 0; pass < 2; ++pass) {
    int k = 0;  // the column's place among the wide ones
    DECAYFW_UNROLL
    for (int w = 0; w < kWords; ++w)
      for (uint32_t b = bits[w]; b != 0; b &= b - 1, ++k)
        if ((k >= skip) == (pass == 0)) f(32 * w + cta::lowest_set_bit(b));
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

// The sub-chunks' words of one side, when the pass has them (state_pass has the chunk form's words alone: it has
// no diagonal blocks).
template <typename Op, typename Cfg>
DECAYFW_CTA int64_t sub_chunk_words(const Tiles<Op, Cfg>& t, bool key) {
  return t.key_wide == nullptr ? 0 : int64_t(Cfg::NS) * (key ? Cfg::key_words : Cfg::row_words);
}
// The words of the sides being loaded, cleared in the staging phase (before phase 2 sets their bits): the
// sub-chunks' wide bits, then the chunk form's word of each side.
template <typename Op, typename Cfg>
DECAYFW_CTA int64_t wide_word_count(const Tiles<Op, Cfg>& t, int sides) {
  const int64_t chunk_words =
      t.chunk_wide && t.takes_chunks_whole() ? (sides & kKeySide ? 1 : 0) + (sides & kRowSide ? 1 : 0) : 0;
  return (sides & kKeySide ? sub_chunk_words(t, true) : 0) + (sides & kRowSide ? sub_chunk_words(t, false) : 0) +
         chunk_words;
}
template <typename Op, typename Cfg>
DECAYFW_CTA void clear_wide_word(Tiles<Op, Cfg>& t, int sides, int64_t e) {
  const int64_t keys = sides & kKeySide ? sub_chunk_words(t, true) : 0;
  const int64_t rows = sides & kRowSide ? sub_chunk_words(t, false) : 0;
  if (e < keys)
    t.key_wide[e] = 0u;
  else if (e < keys + rows)
    t.row_wide[e - keys] = 0u;
  else
    t.chunk_wide[e == keys + rows && (sides & kKeySide) ? 0 : 1] = 0u;
}

// Phase 2, index e of M + R columns (or one side's): column e's landed logits as log gates (0 past T), summed
// down the chunk in the order of the rows, each inclusive sum stored to Bc or Ac. One thread walks the column,
// so the sums come in registers: a sub-chunk whose span (its first row's sum less its last's) exceeds
// wide_span_bound sets the column's bit in that sub-chunk's words, and in the chunk form a column whose last
// sum is below −bound/2 (its span over the whole chunk) sets kChunkOverHalf in its side's word, below −bound
// kChunkWide too; NaN sets them all. (One phase for log gates and sums: the log gates were a phase of their own,
// stored and read back.)
template <typename Cfg>
DECAYFW_CTA int64_t column_count(int sides) {
  return (sides & kKeySide ? Cfg::M : 0) + (sides & kRowSide ? Cfg::R : 0);
}
template <typename Cta, typename Op, typename Cfg>
DECAYFW_CTA void gate_column(Cta& cta, const Place& pl, Tiles<Op, Cfg>& t, int sides, int64_t e) {
  constexpr int S = Cfg::S;
  const int64_t keys = sides & kKeySide ? Cfg::M : 0;  // the key side's columns come first
  const bool key = e < keys;
  const int col = static_cast<int>(key ? e : e - keys);
  const int X = key ? Cfg::M : Cfg::R, ld = key ? Cfg::ldg_m : Cfg::ldg_r;
  const Op* logits = (key ? t.Fr : t.Zr) + col;
  float* g = (key ? t.Bc : t.Ac) + col;
  uint32_t* words = key ? t.key_wide : t.row_wide;
  const int words_per_sub = key ? Cfg::key_words : Cfg::row_words;
  const float bound = wide_span_bound(t.diagonal);
  float s = 0.0f;
  for (int I = 0; I < Cfg::NS; ++I) {
    float first = 0.0f;
    DECAYFW_UNROLL_BY4
    for (int r = 0; r < S; ++r) {
      const int i = I * S + r;
      const float x = Cta::to_f(logits[i * X]);
      s = (i < pl.valid ? log_sigmoid(x) : 0.0f) + s;
      g[i * ld] = s;
      if (r == 0) first = s;
    }
    if (words && !(first - s <= bound)) cta.atomic_or(words + I * words_per_sub + (col >> 5), 1u << (col & 31));
  }
  if (t.takes_chunks_whole() && t.chunk_wide && !(-s <= 0.5f * bound))
    cta.atomic_or(t.chunk_wide + (key ? 0 : 1), !(-s <= bound) ? kChunkWide | kChunkOverHalf : kChunkOverHalf);
}

// Phase 2 of a staged chunk: the caller started its copies and cleared the sides' wide words (wide_word_count
// indices of clear_wide_word) in its staging phase, with work of its own beside.
template <typename Cta, typename Op, typename Cfg>
DECAYFW_CTA void finish_loading(Cta& cta, const Place& pl, Tiles<Op, Cfg>& t, int sides) {
  cta.wait_async();
  cta.for_each(column_count<Cfg>(sides), [&](int64_t e) { gate_column(cta, pl, t, sides, e); });
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
    int d, m;
    quad_at<Op, Q>(e + u * stride, d, m);  // the same rows as the stores below
    Cta::load4(a.states + pl.state_row(pl.chunk, a.chunks + 1, a.D, d) * M + m, s[u]);
  }
  DECAYFW_UNROLL
  for (int u = 0; u < kStateBatch; ++u) {
    int d, m;
    quad_at<Op, Q>(e + u * stride, d, m);
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
  int d, u;
  row_unit<Op, Cfg::M, P>(e, d, u);
  const int m = u * kVec<Op>;
  cta.copy16_async(t.dSop + d * Cfg::ldm_op + m,
                   dstates_of<Op>(a) + pl.state_row(pl.chunk, a.chunks, a.D, d) * Cfg::M + m, true);
}

}  // namespace decayfw::chunk
