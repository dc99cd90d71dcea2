// The serial passes over a sequence's chunks: their input pipeline (walk_chunks), state_pass (each
// chunk's start state) and dstate_pass (the gradient reaching each chunk's end state).
#pragma once

#include "loading.h"

namespace decayfw::chunk {

// ---- the serial passes' input pipeline ----------------------------------------------------------
//
// state_pass, dstate_pass and forward_pass walk the chunks one after another, one CTA per (sequence,
// row tile). When those CTAs barely fill the GPU (N = 64, D = 128: 128 CTAs) nothing runs beside
// one on its SM, so a chunk staged only when it is needed would make every chunk wait out a memory
// latency with the SM idle. walk_chunks instead stages the next chunk while this one is computed:
// its copies land in a second set of raw tiles, and the two sets swap at every chunk. The gate
// logits (Fr, Zr) need one set only: they become log gates right after they land (gate_column), and
// the next chunk's logits are copied in after that phase. Element-wise staging (unaligned views) is
// synchronous: correct, not overlapped.

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
// the next chunk's copies in flight. The passes write each chunk's state where the next chunk wants it from
// the update that makes it (update_state's `also`), so nothing reads the state again at the chunk's start.
// The pass has one set of gate-logit tiles (Fr, Zr), which phase 2 reads: the next chunk's q, k, v, dy are
// copied in the staging phase, its logits in a phase of their own after phase 2.
template <typename Cta, typename Op, typename Cfg, typename Compute>
DECAYFW_CTA void walk_chunks(Cta& cta, const ChunkArgs& a, int64_t n, int64_t tile, bool backwards, Tiles<Op, Cfg>& t,
                             Staging<Op>& next_staging, Compute&& compute) {
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
    const bool more = k + 1 < a.chunks;
    const Place next(a, n, more ? c + step : c, tile, Cfg::C);
    Staging<Op> inputs = next_staging, logits;  // the next chunk's copies: q, k, v, dy now, f and z after phase 2
    inputs.Fr = inputs.Zr = nullptr;
    logits.Fr = next_staging.Fr, logits.Zr = next_staging.Zr;
    const int64_t issue = more ? copies : 0, words = wide_word_count(t, kBothSides);
    cta.for_each(issue + words, [&](int64_t e) {
      if (e < issue) return stage_index<Cta, Op, Cfg>(cta, a, next, inputs, kBothSides, e);
      clear_wide_word(t, kBothSides, e - issue);
    });
    cta.for_each(column_count<Cfg>(kBothSides), [&](int64_t e) { gate_column(cta, pl, t, kBothSides, e); });
    if (more) cta.for_each(copies, [&](int64_t e) { stage_index<Cta, Op, Cfg>(cta, a, next, logits, kBothSides, e); });
    compute(pl);
  }
}

// Shared-memory carve of state_pass / dstate_pass (the same shape: a running R×M fp32 state, the
// raw tiles of one rank-C update, scaled in place, their second set, and the gate logits; state_pass also the
// chunk form's two words, for update_state's reference).
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
    if (!backward) t.chunk_wide = ar.take<uint32_t>(2);
    bytes = ar.used();
  }
  size_t bytes;
};

// Index e of R·M/4: four elements of the R×M fp32 state tile of a row tile, between shared memory
// and the [.., D, M] global states (row d at src + d·ld_src). A null src gives zeros; a second
// destination, when given, gets the same values. A destination of a 16-bit type gets them rounded
// (the state gradients, ChunkArgs::dstates).
template <typename Cta, typename Cfg, typename Dst, typename Dst2 = float>
DECAYFW_CTA void copy_state_quad(int64_t e, Dst* dst, int64_t ld_dst, const float* src, int64_t ld_src,
                                 Dst2* dst2 = nullptr, int64_t ld_dst2 = 0) {
  constexpr int Q = Cfg::M / 4;
  const int64_t d = e / Q, m = (e % Q) * 4;
  float s[4] = {0.0f, 0.0f, 0.0f, 0.0f};
  if (src) Cta::load4(src + d * ld_src + m, s);
  Cta::store4(dst + d * ld_dst + m, s);
  if (dst2) Cta::store4(dst2 + d * ld_dst2 + m, s);
}
template <typename Cta, typename Cfg, typename Dst, typename Dst2 = float>
DECAYFW_CTA void copy_state_tile(Cta& cta, Dst* dst, int64_t ld_dst, const float* src, int64_t ld_src,
                                 Dst2* dst2 = nullptr, int64_t ld_dst2 = 0) {
  cta.for_each(int64_t(Cfg::R) * (Cfg::M / 4),
               [&](int64_t e) { copy_state_quad<Cta, Cfg>(e, dst, ld_dst, src, ld_src, dst2, ld_dst2); });
}

// The serial passes' update of their running R×M fp32 state (state_pass's and forward_pass's S, dstate_pass's dS):
// S ← e^{A_L} e^{B_L}ᵀ ⊙ S + Xᵀ Y over the chunk (X: C×R, the tile's rows; Y: C×M, the keys; both scaled already,
// referred to where `ref` says: UpdateReference). The decay is applied where the product is added
// (decay_state_pairs), so S is read and written once, and also(d, m, o) gets each new pair o at (d, m) there.
template <typename Cta, typename Op, typename Cfg, typename Also>
DECAYFW_CTA void apply_state_update(Cta& cta, Tiles<Op, Cfg>& t, float* S, const Op* X, const Op* Y,
                                    UpdateReference ref, Also&& also) {
  constexpr int C = Cfg::C;
  cta.template gemm_apply<true, false>(
      Cfg::R, Cfg::M, C, X, Cfg::ldd_op, Y, Cfg::ldm_op, [&](int d, int m, const float* v) {
        decay_state_pairs<Cta>(S + d * Cfg::ldm_f + m, Cfg::ldm_f, t.row_gates(C - 1) + d, t.key_gates(C - 1) + m, v,
                               ref, [&](int i, int j, const float* o) { also(d + i, m + j, o); });
      });
}

// One chunk's state update (state_pass and forward_pass): the running R×M fp32 state S ←
// e^{A_L} e^{B_L}ᵀ ⊙ S + (V ⊙ e^{A_L−A})ᵀ (K ⊙ e^{B_L−B}), from the chunk loaded in t (Kr, Vr, Bc, Ac), its
// operands referred to the chunk's start where the spans allow (Tiles::update_reference). The operands are scaled
// in place (each element by its own index): nothing reads the raw k and v of the chunk after its update, and the
// serial passes then need no operand tiles of their own. The fused forward has K̃ = K ⊙ e^{−B} and Ṽ = V ⊙ e^{−A}
// already after a whole chunk (whole_chunk_operands, the same operations as the scaling here: the same bits as
// state_pass's) and passes them (k_start, v_start): where the reference takes them, that side needs no scaling.
// also: as apply_state_update's.
template <typename Cta, typename Op, typename Cfg, typename Also>
DECAYFW_CTA void update_state(Cta& cta, Tiles<Op, Cfg>& t, float* S, Also&& also, const Op* k_start = nullptr,
                              const Op* v_start = nullptr) {
  constexpr int C = Cfg::C, M = Cfg::M, R = Cfg::R, MQ = M / kQuad, RQ = R / kQuad;
  const UpdateReference ref = t.update_reference();
  const bool keys_at_start = ref == UpdateReference::Both, rows_at_start = ref != UpdateReference::End;
  // A side the caller has at the reference already is taken as it is; the other is scaled here, in place.
  const bool scale_keys = !(keys_at_start && k_start), scale_rows = !(rows_at_start && v_start);
  const Op* K = scale_keys ? t.Kr : k_start;
  const Op* V = scale_rows ? t.Vr : v_start;
  const int64_t keys = scale_keys ? int64_t(C) * MQ : 0, rows = scale_rows ? int64_t(C) * RQ : 0;
  if (keys + rows > 0)
    cta.for_each(keys + rows, [&](int64_t e) {
      if (e < keys) {
        int j, m;
        quad_at<Op, MQ>(e, j, m);
        Op* k = t.Kr + j * Cfg::ldm_op + m;
        scale_quad<Cta>(k, k, keys_at_start ? nullptr : t.key_gates(C - 1) + m, t.key_gates(j) + m);
        return;
      }
      e -= keys;
      const int j = static_cast<int>(e / RQ), d = static_cast<int>(e % RQ) * kQuad;
      Op* v = t.Vr + j * Cfg::ldd_op + d;
      scale_quad<Cta>(v, v, rows_at_start ? nullptr : t.row_gates(C - 1) + d, t.row_gates(j) + d);
    });
  apply_state_update(cta, t, S, V, K, ref, also);
}

// state_pass(n, tile): S ← e^{A_L} e^{B_L}ᵀ ⊙ S + (V ⊙ e^{A_L−A})ᵀ (K ⊙ e^{B_L−B}) chunk by chunk,
// writing each chunk's start state to states[n][c] and S_T to states[n][chunks] (and final_state).
template <typename Cta, typename Op, typename Cfg>
DECAYFW_CTA void state_pass(Cta& cta, const ChunkArgs& a, int64_t n, int64_t tile, unsigned char* smem) {
  constexpr int M = Cfg::M;
  ScanSmem<Op, Cfg> sm(smem, false);
  choose_form<Cta>(sm.t, a);  // update_state's reference follows the fused forward's
  float* S = sm.S;
  const int64_t slots = a.chunks + 1, D = a.D, row0 = tile * kRows;
  const Place start(a, n, 0, tile, Cfg::C);  // S_0, also chunk 0's start state
  copy_state_tile<Cta, Cfg>(cta, S, Cfg::ldm_f, a.s0 ? a.s0 + (n * D + row0) * M : nullptr, M,
                            a.states + start.state_row(0, slots, D, 0) * M, M);
  walk_chunks(cta, a, n, tile, false, sm.t, sm.next, [&](const Place& pl) {
    // The next chunk's start state as the update makes it; the last chunk's (S_T) below.
    float* next = pl.chunk + 1 < a.chunks ? a.states + pl.state_row(pl.chunk + 1, slots, D, 0) * M : nullptr;
    update_state(cta, sm.t, S, [&](int d, int m, const float* o) {
      if (next) Cta::store2(next + d * M + m, o);
    });
  });
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
  const Place last(a, n, a.chunks - 1, tile, Cfg::C);  // dS_T, also the last chunk's end-state gradient
  copy_state_tile<Cta, Cfg>(cta, dS, Cfg::ldm_f, a.dsT ? a.dsT + (n * D + row0) * M : nullptr, M,
                            dstates_of<Op>(a) + last.state_row(a.chunks - 1, a.chunks, D, 0) * M, M);
  walk_chunks(
      cta, a, n, tile, true, t, sm.next, [&](const Place& pl) {
        constexpr int MQ = M / kQuad, RQ = R / kQuad;
        Op* prev = pl.chunk > 0 ? dstates_of<Op>(a) + pl.state_row(pl.chunk - 1, a.chunks, D, 0) * M : nullptr;
        cta.for_each(int64_t(C) * (MQ + RQ), [&](int64_t e) {
          if (e < int64_t(C) * MQ) {
            int i, m;
            quad_at<Op, MQ>(e, i, m);
            Op* q = t.Qr + i * Cfg::ldm_op + m;
            scale_quad<Cta>(q, q, t.key_gates(i) + m, nullptr);
            return;
          }
          e -= int64_t(C) * MQ;
          const int i = static_cast<int>(e / RQ), d = static_cast<int>(e % RQ) * kQuad;
          Op* g = t.Gr + i * Cfg::ldd_op + d;
          scale_quad<Cta>(g, g, t.row_gates(i) + d, nullptr);
        });
        // The gradient reaching the previous chunk's end state, as the update makes it.
        apply_state_update(cta, t, dS, t.Gr, t.Qr, UpdateReference::End, [&](int d, int m, const float* o) {
          if (prev) Cta::store2(prev + d * M + m, o);
        });
      });
  copy_state_tile<Cta, Cfg>(cta, a.ds0 + (n * D + row0) * M, M, dS, Cfg::ldm_f);
}

}  // namespace decayfw::chunk
