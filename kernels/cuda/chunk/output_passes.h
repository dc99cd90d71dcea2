// The forward's y: output_pass (one chunk from its start state, parallel over chunks) and forward_pass
// (the fused forward: serial over chunks, y from the running state).
#pragma once

#include "intra_chunk.h"
#include "state_passes.h"

namespace decayfw::chunk {

// y of the chunk's valid rows out: Y (everything but the diagonal terms off the tensor cores) plus those.
// One function for output_pass and forward_pass, so both compile the same arithmetic. One index per (sub-chunk,
// row d) first, for the ones that are not wide (their factored terms in the factored form), then one per wide one
// (WideList). In the factored form a wide row's index among the others runs the factored sums with its warp and
// writes nothing, so that the warp's 16-byte reads of Pd are all on one address (as grad_pass's diagonal terms).
template <typename Cta, typename Op, typename Cfg>
DECAYFW_CTA void store_y(Cta& cta, const ChunkArgs& a, const Place& pl, const Tiles<Op, Cfg>& t) {
  constexpr int R = Cfg::R, S = Cfg::S;
  const int blocks = pl.valid_subs();
  const WideList<Cfg::row_words> wide(t.row_wide, blocks);
  const int64_t rows = int64_t(blocks) * R;
  cta.for_each(rows + wide.size, [&](int64_t e) {
    int sub, d;
    float y[S];
    if (e < rows) {
      sub = static_cast<int>(e / R), d = static_cast<int>(e % R);
      const bool listed = is_wide(t.row_wide + sub * Cfg::row_words, d);  // an entry of the list
      if (t.factored()) {
        y_diagonal_terms<Cta>(t, sub * S, d, false, y);
      } else {  // the tensor form: in the products already
        DECAYFW_UNROLL
        for (int r = 0; r < S; ++r) y[r] = 0.0f;
      }
      if (listed) return;
    } else {
      wide.at(e - rows, sub, d);
      y_diagonal_terms<Cta>(t, sub * S, d, true, y);
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
// Pd and the wide key columns, which depend on it alone (docs/cuda-design-log.md, "A second floor").
template <typename Cta, typename Op, typename Cfg>
DECAYFW_CTA void output_pass(Cta& cta, const ChunkArgs& a, int64_t n, int64_t chunk, unsigned char* smem) {
  constexpr int C = Cfg::C;
  ChunkSmem<Op, Cfg> sm(smem, ChunkCarve::Output);
  Tiles<Op, Cfg>& t = sm.t;
  choose_form<Cta>(t, a);
  const Staging<Op> to = staging_of(t);
  KeptAcrossTiles kept;
  for (int64_t tile = 0; tile < a.tiles; ++tile) {
    const Place pl(a, n, chunk, tile, C);
    const int sides = tile == 0 ? kBothSides : kRowSide;
    const int64_t copies = stage_count<Op, Cfg>(a, sides), state = start_state_batches<Cfg>();
    cta.for_each(copies + state + wide_word_count(t, sides), [&](int64_t e) {
      if (e < copies) return stage_index<Cta, Op, Cfg>(cta, a, pl, to, sides, e);
      e -= copies;
      if (e < state) return load_start_state_batch<Cta>(a, pl, t, e);
      clear_wide_word(t, sides, e - state);
    });
    finish_loading(cta, pl, t, sides);
    if (t.chunk_narrow()) {
      y_of_whole_chunk(cta, pl, t, !kept.pd, kept.keys_scaled);
      kept.pd = kept.pd || t.factored();
      kept.keys_scaled = true;
    } else {
      y_inter_product(cta, t);
      intra_chunk_causal(cta, pl, t, !kept.pd);  // writes Xa and Xb sub-chunk by sub-chunk
      kept.pd = true;
      kept.keys_scaled = false;
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
  // Each chunk's start state goes to the caller's states (if kept) and, rounded, to the operand tile Sop (what
  // output_pass's load_start_state_batch gives from the same fp32 values): S_0 here, in quad_at's rows' order (one
  // vector store a quad, where four scalar ones put a warp's rows on the same banks, 3-way at M = 32); the
  // others from the update that makes them.
  {
    const Place start(a, n, 0, tile, Cfg::C);
    const float* s0 = a.s0 ? a.s0 + (n * D + row0) * M : nullptr;
    float* states0 = a.states ? a.states + start.state_row(0, slots, D, 0) * M : nullptr;
    cta.for_each(int64_t(R) * Q, [&](int64_t e) {
      int d, m;
      quad_at<Op, Q>(e, d, m);
      float s[4] = {0.0f, 0.0f, 0.0f, 0.0f};
      if (s0) Cta::load4(s0 + d * M + m, s);
      Cta::store4(S + d * Cfg::ldm_f + m, s);
      if (states0) Cta::store4(states0 + d * M + m, s);
      Cta::store4(t.Sop + d * Cfg::ldm_op + m, s);
    });
  }
  walk_chunks(cta, a, n, tile, false, t, sm.next, [&](const Place& pl) {
    // y of the chunk, as output_pass, then the state update.
    if (t.chunk_narrow()) {
      y_of_whole_chunk(cta, pl, t, true, false);
    } else {
      y_inter_product(cta, t);
      intra_chunk_causal(cta, pl, t, true);
    }
    store_y(cta, a, pl, t);
    const bool more = pl.chunk + 1 < a.chunks;  // the last chunk's state (S_T) is copied below
    float* next = a.states && more ? a.states + pl.state_row(pl.chunk + 1, slots, D, 0) * M : nullptr;
    // A whole chunk leaves K̃ in Xb and Ṽ in Xc, which the update takes where the spans allow.
    const bool whole = t.chunk_narrow();
    update_state(
        cta, t, S,
        [&](int d, int m, const float* o) {
          if (more) Cta::store2(t.Sop + d * Cfg::ldm_op + m, o);
          if (next) Cta::store2(next + d * M + m, o);
        },
        whole ? t.Xb : nullptr, whole ? t.Xc : nullptr);
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

}  // namespace decayfw::chunk
