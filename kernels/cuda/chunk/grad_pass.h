// grad_pass: every input gradient of one chunk, from its start state and the gradient reaching its end.
// The notation and the gate identity are in ../decay_chunk_program.h.
#pragma once

#include "intra_chunk.h"

namespace decayfw::chunk {

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
      for (int x = 0; x < kQuad; ++x)
        p[x] = Dg[diagonal_block_offset<S>(j0 + c + x) + jj];  // a column of Dg: the transpose
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
                                    bool wide, bool keep = true) {
  constexpr int S = Cfg::S;
  Tiles<Op, Cfg>& t = sm.t;
  const float* p = t.Pd + diagonal_block_offset<S>(blk);
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
    if (!keep) return;
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
DECAYFW_CTA void diagonal_key_terms(ChunkSmem<Op, Cfg>& sm, int blk, int m, bool wide, bool keep = true) {
  constexpr int S = Cfg::S;
  Tiles<Op, Cfg>& t = sm.t;
  const float* p = t.Rd + diagonal_block_offset<S>(blk);
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
    if (!keep) return;
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
// of the later sub-chunks' parts on top of the carry. A chain of 16 on NS·X/4 threads: each takes four
// consecutive columns (kQuad), whose tiles it reads with one vector access each (a 16-bit tile's four
// elements in 8 bytes, where one a lane took a wavefront for 64 bytes), each column summed in the same order
// as alone. term(i, x, v, last) gives v[w] = the term of column x + w; out(i, x, g) takes g[w]. With `kept` (C
// rows of ld floats that nothing reads after), the first walk leaves each term there and the second reads it back:
// one read where the term took several. `last` is true on the element's last call of term (the first walk's with
// kept, the second's without), so that term can write what it alone reads then, on values it holds.
template <typename Cta, typename Cfg, int X, typename Term, typename Out>
DECAYFW_CTA void reverse_gate_sums(Cta& cta, int valid, const float* carry, float* part, Term&& term, Out&& out,
                                   float* kept = nullptr, int ld = 0) {
  constexpr int S = Cfg::S, NS = Cfg::NS, XQ = X / kQuad;
  static_assert(X % kQuad == 0, "columns come in fours");
  cta.for_each(int64_t(NS) * XQ, [&](int64_t e) {
    const int I = static_cast<int>(e / XQ), x = static_cast<int>(e % XQ) * kQuad;
    float s[kQuad] = {0.0f, 0.0f, 0.0f, 0.0f}, v[kQuad];
    for (int i = (I * S + S < valid ? I * S + S : valid) - 1; i >= I * S; --i) {
      term(i, x, v, kept != nullptr);
      if (kept) Cta::store4(kept + i * ld + x, v);
      DECAYFW_UNROLL
      for (int w = 0; w < kQuad; ++w) s[w] += v[w];
    }
    Cta::store4(part + I * X + x, s);
  });
  cta.for_each(int64_t(NS) * XQ, [&](int64_t e) {
    const int I = static_cast<int>(e / XQ), x = static_cast<int>(e % XQ) * kQuad;
    float g[kQuad], v[kQuad];
    Cta::load4(carry + x, g);
    for (int J = NS - 1; J > I; --J) {
      Cta::load4(part + J * X + x, v);
      DECAYFW_UNROLL
      for (int w = 0; w < kQuad; ++w) g[w] += v[w];
    }
    for (int i = (I * S + S < valid ? I * S + S : valid) - 1; i >= I * S; --i) {
      if (kept)
        Cta::load4(kept + i * ld + x, v);
      else
        term(i, x, v, true);
      DECAYFW_UNROLL
      for (int w = 0; w < kQuad; ++w) g[w] += v[w];
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
  const int end = pl.valid_subs() * S;            // rows past it are all padding (zero q and dy)
  const int first = t.tensor_diagonal() ? 0 : S;  // the first column of the products, from j0
  for (int J = 0; J < Cfg::NS; ++J) {
    const int j0 = J * S, rp = j0 + S - 1, w = end - j0, later = w - S, cols = w - first;
    if (j0 >= pl.valid) break;
    if (cols == 0) continue;
    const uint32_t *key_wide = t.key_wide + J * Cfg::key_words, *row_wide = t.row_wide + J * Cfg::row_words;
    const int i0 = j0 + first;  // the first row of q and dy the products read
    cta.for_each(int64_t(S) * (MQ + RQ) + int64_t(cols) * (MQ + RQ), [&](int64_t e) {
      if (e < int64_t(S) * MQ) {
        int j, m;
        quad_at<Op, MQ>(e, j, m);
        j += j0;
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
        int i, m;
        quad_at<Op, MQ>(e, i, m);
        i += i0;
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

// dq's two products chained in registers (16-bit operands): R = mask(dỸ Ṽᵀ), then dỸ S_prev + R K̃ (Y is C×M, k = R:
// whole_chunk_y's parts at this M, at most one per 16 columns; ptxas: no spill), R stored into keep_r when given.
template <cta::KSpan kMask, typename Cta, typename Op, typename Cfg>
DECAYFW_CTA void chained_dq(Cta& cta, Tiles<Op, Cfg>& t, float* DQ, Op* keep_r) {
  constexpr int C = Cfg::C, M = Cfg::M, R = Cfg::R;
  cta.template gemm_chain<kMask, C, M, R, chain_parts<M, M>(), false>(
      t.Xc, Cfg::ldd_op, t.Xd, Cfg::ldd_op, t.Sop, Cfg::ldm_op, t.Xb, Cfg::ldm_op, keep_r, Cfg::ldc_op,
      [&](int i, int m, const float* v) {
        decay_pairs<Cta>(DQ + i * Cfg::ldm_f + m, Cfg::ldm_f, t.key_gates(i) + m, Cfg::ldg_m, nullptr, 0, v, true);
      });
}

// The chunk form's gradient products with every product chained (t.chained, 16-bit operands): dV and dK are chains
// too, their inter-chunk parts in the same accumulators as the transposed intra-chunk ones, the operands referred
// to the chunk's start (grad_rows' scaling phase: Q̃ in Xa, K̃ in Xb, dỸ in Xc, Ṽ in Xd, and dŜ in dSop, in place):
//   Y = e^{A} ⊙ (Q̃ S_prevᵀ + mask(Q̃ K̃ᵀ) Ṽ),      dQ += e^{B} ⊙ (dỸ S_prev + mask(dỸ Ṽᵀ) K̃),
//   dV = e^{−A} ⊙ (K̃ dŜᵀ + mask'(K̃ Q̃ᵀ) dỸ),          dK += e^{−B} ⊙ (Ṽ dŜ + mask'(Ṽ dỸᵀ) Q̃),
// with dŜ = dS_end ⊙ e^{A_L ⊕ B_L} and mask' the transposed mask (AntiCausal). P and R are recomputed by column
// blocks where chunk_grad_products reads them back from Pc, and nothing goes through Pc (where dSop is, which these
// chains read to the end). One more rounding than chunk_grad_products' path, dŜ's (dS_end is stored rounded): the
// chunk form's precision trade; the factored form keeps its precision (docs/cuda.md, "Chained products").
template <bool kOnePhase, typename Cta, typename Op, typename Cfg>
DECAYFW_CTA void chunk_grad_chains(Cta& cta, Tiles<Op, Cfg>& t, float* DQ, float* DK, float* DV) {
  constexpr int C = Cfg::C, M = Cfg::M, R = Cfg::R;
  using cta::KSpan;
  const auto dv_decays = [&](int j, int d, const float* v) {
    decay_pairs<Cta>(DV + j * Cfg::ldd_f + d, Cfg::ldd_f, nullptr, 0, t.row_gates(j) + d, Cfg::ldg_r, v, false);
  };
  const auto dk_decays = [&](int j, int m, const float* v) {
    decay_pairs<Cta>(DK + j * Cfg::ldm_f + m, Cfg::ldm_f, nullptr, 0, t.key_gates(j) + m, Cfg::ldg_m, v, true);
  };
  if constexpr (kOnePhase) {
    // One phase (kGradOnePhaseThreads): y's and dV's chains (n = R, k = M), then dQ's and dK's (n = M, k = R),
    // side by side, one part each at C = 64, so that every block of P and R is computed once.
    constexpr int kRowParts = C >= 64 ? 1 : chain_parts<M, R>(), kKeyParts = C >= 64 ? 1 : chain_parts<M, M>();
    constexpr int kRow = C / 16 * kRowParts, kKey = C / 16 * kKeyParts, kPhase = 2 * kRow + 2 * kKey;
    cta.template gemm_chain<KSpan::Causal, C, R, M, kRowParts, true, 0, kPhase>(
        t.Xa, Cfg::ldm_op, t.Xb, Cfg::ldm_op, t.Sop, Cfg::ldm_op, t.Xd, Cfg::ldd_op, static_cast<Op*>(nullptr), 0,
        [&](int i, int d, const float* v) {
          decay_pairs<Cta>(t.Y + i * Cfg::ldd_f + d, Cfg::ldd_f, t.row_gates(i) + d, Cfg::ldg_r, nullptr, 0, v, false);
        });
    cta.template gemm_chain<KSpan::AntiCausal, C, R, M, kRowParts, true, kRow, kPhase>(
        t.Xb, Cfg::ldm_op, t.Xa, Cfg::ldm_op, t.dSop, Cfg::ldm_op, t.Xc, Cfg::ldd_op, static_cast<Op*>(nullptr), 0,
        dv_decays);
    cta.template gemm_chain<KSpan::Causal, C, M, R, kKeyParts, false, 2 * kRow, kPhase>(
        t.Xc, Cfg::ldd_op, t.Xd, Cfg::ldd_op, t.Sop, Cfg::ldm_op, t.Xb, Cfg::ldm_op, static_cast<Op*>(nullptr), 0,
        [&](int i, int m, const float* v) {
          decay_pairs<Cta>(DQ + i * Cfg::ldm_f + m, Cfg::ldm_f, t.key_gates(i) + m, Cfg::ldg_m, nullptr, 0, v, true);
        });
    cta.template gemm_chain<KSpan::AntiCausal, C, M, R, kKeyParts, false, 2 * kRow + kKey, kPhase>(
        t.Xd, Cfg::ldd_op, t.Xc, Cfg::ldd_op, t.dSop, Cfg::ldm_op, t.Xa, Cfg::ldm_op, static_cast<Op*>(nullptr), 0,
        dk_decays);
  } else {
    whole_chunk_y<false>(cta, t, t.Xd, false);
    // dV (C×R, k = M): y's chain, transposed. dv starts with it.
    cta.template gemm_chain<KSpan::AntiCausal, C, R, M, chain_parts<M, R>()>(t.Xb, Cfg::ldm_op, t.Xa, Cfg::ldm_op,
                                                                             t.dSop, Cfg::ldm_op, t.Xc, Cfg::ldd_op,
                                                                             static_cast<Op*>(nullptr), 0, dv_decays);
    chained_dq<KSpan::Causal>(cta, t, DQ, static_cast<Op*>(nullptr));
    // dK (C×M, k = R): dq's, transposed; dŜ stored R×M is its B1 k×n. dk adds (it sums over the row tiles).
    cta.template gemm_chain<KSpan::AntiCausal, C, M, R, chain_parts<M, M>(), false>(
        t.Xd, Cfg::ldd_op, t.Xc, Cfg::ldd_op, t.dSop, Cfg::ldm_op, t.Xa, Cfg::ldm_op, static_cast<Op*>(nullptr), 0,
        dk_decays);
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
  constexpr KSpan kMasked = kApart ? KSpan::BlockCausal : KSpan::Causal,
                  kLower = kApart ? KSpan::BelowA : KSpan::LowerA, kUpper = kApart ? KSpan::AboveA : KSpan::UpperA;
  whole_chunk_operands(cta, t, false, true, t.Xd);
  whole_chunk_y<kApart>(cta, t, t.Xd, true);
  cta.template gemm_apply<true, false, kUpper>(
      C, R, C, t.Pc, Cfg::ldc_op, t.Xc, Cfg::ldd_op, [&](int j, int d, const float* v) {
        decay_pairs<Cta>(DV + j * Cfg::ldd_f + d, Cfg::ldd_f, nullptr, 0, t.row_gates(j) + d, Cfg::ldg_r, v, true);
      });
  // R, then dq's two products: chained in registers as whole_chunk_y's (R kept in Pc for dk), or through Pc.
  const auto dq_decays = [&](int i, int m, const float* v) {
    decay_pairs<Cta>(DQ + i * Cfg::ldm_f + m, Cfg::ldm_f, t.key_gates(i) + m, Cfg::ldg_m, nullptr, 0, v, true);
  };
  bool chained = false;
  if constexpr (sizeof(Op) == 2) {
    if ((chained = t.chained)) chained_dq<kMasked>(cta, t, DQ, t.Pc);
  }
  if (!chained) {
    cta.template gemm_apply<false, true, kMasked>(
        C, C, R, t.Xc, Cfg::ldd_op, t.Xd, Cfg::ldd_op,
        [&](int i, int j, const float* v) { store_causal_pairs<Cta, kApart>(t.Pc, Cfg::ldc_op, i, j, v); });
    cta.gemm_apply_sum(C, M, dq_decays, cta::term<false, false>(R, t.Xc, Cfg::ldd_op, t.Sop, Cfg::ldm_op),
                       cta::term<false, false, kLower>(C, t.Pc, Cfg::ldc_op, t.Xb, Cfg::ldm_op));
  }
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
template <bool kOnePhase, typename Cta, typename Op, typename Cfg>
DECAYFW_CTA void grad_rows(Cta& cta, const ChunkArgs& a, const Place& pl, ChunkSmem<Op, Cfg>& sm,
                           KeptAcrossTiles& kept) {
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
      // memory was read 4 bytes at a time. Rows ldm_op apart repeat their banks after 8 (16-bit; 4 for fp32), half
      // a wavefront's lanes: so two quads a step, the second group of rows reading them in the other order, and
      // both summed in column order (the same sums).
      constexpr int kApart = sizeof(Op) == 2 ? 8 : 4;
      const bool swap = e / kApart % 2 != 0;
      const Op* row = t.dSop + e * Cfg::ldm_op;
      for (int m = 0; m < M; m += 2 * kQuad) {
        float a0[kQuad], a1[kQuad], y0[kQuad], y1[kQuad];
        Cta::load4(row + m + (swap ? kQuad : 0), a0);
        Cta::load4(row + m + (swap ? 0 : kQuad), a1);
        Cta::load4(s + e * M + m, y0);
        Cta::load4(s + e * M + m + kQuad, y1);
        DECAYFW_UNROLL
        for (int w = 0; w < kQuad; ++w) acc += (swap ? a1[w] : a0[w]) * y0[w];
        DECAYFW_UNROLL
        for (int w = 0; w < kQuad; ++w) acc += (swap ? a0[w] : a1[w]) * y1[w];
      }
      sm.carry_row[e] = acc;
    } else {
      const int m = static_cast<int>(e - R);
      for (int d = 0; d < R; ++d) acc += Cta::to_f(t.dSop[d * Cfg::ldm_op + m]) * s[d * M + m];
      sm.carry_col[m] += acc;
    }
  });

  // Inter-chunk parts: y from S_prev, dq from S_prev, dv and dk from dS_end. A whole chunk of the chunk form with
  // chained products takes dv's and dk's in its chains instead (chunk_grad_chains): K and V referred to the chunk's
  // start rather than its end, and dS_end scaled to dŜ in place (the last R·M/4 indices; the sums above read it).
  const bool whole = t.chunk_narrow();
  // (t.chained is set for 16-bit operands only; the sizeof lets fp32's code drop what it never runs.)
  const bool transposed = sizeof(Op) == 2 && whole && t.chained && !t.factored();
  const float* key_end = transposed ? nullptr : t.key_gates(last);
  const float* row_end = transposed ? nullptr : t.row_gates(last);
  constexpr int MQ = M / kQuad, RQ = R / kQuad;
  // Q̃ and K̃ (start-referred) as an earlier tile left them. K̃ is kept only for the chains, which read it here;
  // the other paths scale K to the chunk's end here, and a whole chunk's products put K̃ back in Xb. Where both
  // are scaled, and for dỸ with Ṽ, one index takes the pair on one load of their gates (scale_quad_pair).
  const bool pair_keys = !kept.keys_scaled;
  const int64_t cm = int64_t(C) * MQ, cr = int64_t(C) * RQ, keys = pair_keys || !transposed ? cm : 0;
  cta.for_each(keys + cr + (transposed ? int64_t(R) * MQ : 0), [&](int64_t e) {
    if (e < keys) {
      int i, m;
      quad_at<Op, MQ>(e, i, m);
      if (pair_keys)
        scale_quad_pair<Cta>(t.Xa + i * Cfg::ldm_op + m, t.Qr + i * Cfg::ldm_op + m, t.Xb + i * Cfg::ldm_op + m,
                             t.Kr + i * Cfg::ldm_op + m, t.key_gates(i) + m, key_end ? key_end + m : nullptr);
      else
        scale_quad<Cta>(t.Xb + i * Cfg::ldm_op + m, t.Kr + i * Cfg::ldm_op + m, key_end ? key_end + m : nullptr,
                        t.key_gates(i) + m);
      return;
    }
    e -= keys;
    if (e < cr) {
      const int i = static_cast<int>(e / RQ), d = static_cast<int>(e % RQ) * kQuad;
      scale_quad_pair<Cta>(t.Xc + i * Cfg::ldd_op + d, t.Gr + i * Cfg::ldd_op + d, t.Xd + i * Cfg::ldd_op + d,
                           t.Vr + i * Cfg::ldd_op + d, t.row_gates(i) + d, row_end ? row_end + d : nullptr);
      return;
    }
    e -= cr;
    int d, m;
    quad_at<Op, MQ>(e, d, m);
    decay_state_quad<Cta>(t.dSop + d * Cfg::ldm_op + m, t.row_gates(last)[d], t.key_gates(last) + m);
  });
  if (transposed) {
    if constexpr (sizeof(Op) == 2) chunk_grad_chains<kOnePhase>(cta, t, DQ, DK, DV);
  } else {
    // Each product decayed in registers: dk adds its own (it accumulates over tiles), dv starts with its own. dS_end
    // is not read after these two.
    cta.template gemm_apply<false, false>(C, M, R, t.Xd, Cfg::ldd_op, t.dSop, Cfg::ldm_op,
                                          [&](int i, int m, const float* v) {
                                            decay_pairs<Cta>(DK + i * Cfg::ldm_f + m, Cfg::ldm_f, t.key_gates(last) + m,
                                                             0, t.key_gates(i) + m, Cfg::ldg_m, v, true);
                                          });
    cta.template gemm_apply<false, true>(C, R, M, t.Xb, Cfg::ldm_op, t.dSop, Cfg::ldm_op,
                                         [&](int i, int d, const float* v) {
                                           decay_pairs<Cta>(DV + i * Cfg::ldd_f + d, Cfg::ldd_f, t.row_gates(last) + d,
                                                            0, t.row_gates(i) + d, Cfg::ldg_r, v, false);
                                         });

    // Intra-chunk: the chunk form's products over the whole chunk (with y's and dq's inter-chunk products in the
    // same accumulators), or y's and dq's inter-chunk products, then by sub-chunk with the diagonal blocks on
    // tensor cores (but their wide columns): y and dq (causal, one loop sharing the scaled k and v), dv and dk
    // (anti-causal). A chunk taken whole has no diagonal terms left: the row gates' sums below then take y ⊙ dy
    // and write dv themselves.
    if (whole && t.factored()) {
      chunk_grad_products<true>(cta, pl, t, DQ, DK, DV, kept.pd);
    } else if (whole) {
      chunk_grad_products<false>(cta, pl, t, DQ, DK, DV, kept.pd);
    } else {
      cta.template gemm_apply<false, false>(
          C, M, R, t.Xc, Cfg::ldd_op, t.Sop, Cfg::ldm_op, [&](int i, int m, const float* v) {
            decay_pairs<Cta>(DQ + i * Cfg::ldm_f + m, Cfg::ldm_f, t.key_gates(i) + m, Cfg::ldg_m, nullptr, 0, v, true);
          });
      cta.template gemm_apply<false, true>(C, R, M, t.Xa, Cfg::ldm_op, t.Sop, Cfg::ldm_op,
                                           [&](int i, int d, const float* v) {
                                             decay_pairs<Cta>(t.Y + i * Cfg::ldd_f + d, Cfg::ldd_f, t.row_gates(i) + d,
                                                              Cfg::ldg_r, nullptr, 0, v, false);
                                           });
      intra_chunk_causal(cta, pl, t, !kept.pd, DQ);
      kept.pd = true;
      intra_chunk_anticausal(cta, pl, t, DK, DV);
    }
  }
  kept.keys_scaled = whole;  // the sub-chunks' products write Xa and Xb

  // The diagonal terms off the tensor cores, in fp32 (from Pd and Rd): the wide columns' per pair, the
  // narrow ones' factored in the factored form (a whole chunk's too); and dv written, y ⊙ dy kept in Y for the
  // row-gate identity. Not in the chunk form's whole chunks, which have none. One index per (sub-chunk, row),
  // for the ones that are not wide; in the factored form one per (sub-chunk, key column), likewise; then one per
  // wide (sub-chunk, row) and one per wide (sub-chunk, key column) (WideList). In the factored form a wide
  // column's index among the narrow ones runs their factored sums too and keeps nothing: its warp's lanes then all
  // read the same quads of Pd or Rd, which pairs the 16-byte reads (2 wavefronts each by the bank model, where
  // lanes left out took 3.5–3.7 with a swapped model's gates); the narrow ranges come first so that their warps
  // start on a sub-chunk.
  // Only the sub-chunks with a valid row (as store_y): a partial last chunk's later blocks have no Pd or Rd (their
  // products are skipped), and nothing reads their rows.
  const bool terms = !whole || t.factored();
  const int blocks = pl.valid_subs();
  const WideList<Cfg::row_words> wide_rows(t.row_wide, blocks);
  const WideList<Cfg::key_words> wide_keys(t.key_wide, blocks);
  const int64_t rows = int64_t(blocks) * R, narrow_keys = t.factored() ? int64_t(blocks) * M : 0;
  if (terms)
    cta.for_each(rows + narrow_keys + wide_rows.size + wide_keys.size, [&](int64_t e) {
      int I, col;
      if (e < rows) {
        I = static_cast<int>(e / R), col = static_cast<int>(e % R);
        const bool listed = is_wide(t.row_wide + I * Cfg::row_words, col);  // an entry of wide_rows
        if (!listed || t.factored()) diagonal_row_terms<Cta>(a, pl, sm, I * S, col, false, !listed);
        return;
      }
      e -= rows;
      if (e < narrow_keys) {
        I = static_cast<int>(e / M), col = static_cast<int>(e % M);
        return diagonal_key_terms<Cta>(sm, I * S, col, false, !is_wide(t.key_wide + I * Cfg::key_words, col));
      }
      e -= narrow_keys;
      if (e < wide_rows.size) {
        wide_rows.at(e, I, col);
        return diagonal_row_terms<Cta>(a, pl, sm, I * S, col, true);
      }
      wide_keys.at(e - wide_rows.size, I, col);
      diagonal_key_terms<Cta>(sm, I * S, col, true);
    });

  // Row gates: reverse cumulative sums of y ⊙ dy − v ⊙ dv inside the chunk on top of the boundary term,
  // times σ(−z) of the staged logits (reverse_gate_sums; the terms kept in Y between its walks). Without diagonal
  // terms dv is written here, by the first walk, which reads it for the term (its last call: kept is given), so the
  // second walk reads the term and z only.
  reverse_gate_sums<Cta, Cfg, R>(
      cta, pl.valid, sm.carry_row, sm.part,
      [&](int i, int d, float* v, bool last) {
        float y[kQuad], dy[kQuad], x[kQuad], dv[kQuad];
        Cta::load4(t.Y + i * Cfg::ldd_f + d, y);
        if (!terms) Cta::load4(t.Gr + i * Cfg::ldd_op + d, dy);
        Cta::load4(t.Vr + i * Cfg::ldd_op + d, x);
        Cta::load4(DV + i * Cfg::ldd_f + d, dv);
        DECAYFW_UNROLL
        for (int w = 0; w < kQuad; ++w) v[w] = (terms ? y[w] : y[w] * dy[w]) - x[w] * dv[w];
        if (!terms && last) {
          Op* dv_row = row_of<Op>(a.dv, pl.b, pl.c0 + i, pl.h) + pl.row0 + d;
          DECAYFW_UNROLL
          for (int w = 0; w < kQuad; ++w) dv_row[w] = Cta::template from_f<Op>(dv[w]);
        }
      },
      [&](int i, int d, const float* g) {
        float z[kQuad];
        Cta::load4(t.Zr + i * R + d, z);
        Op* dz_row = row_of<Op>(a.dz, pl.b, pl.c0 + i, pl.h) + pl.row0 + d;
        DECAYFW_UNROLL
        for (int w = 0; w < kQuad; ++w) dz_row[w] = Cta::template from_f<Op>(g[w] * sigmoid_of_minus(z[w]));
      },
      t.Y, Cfg::ldd_f);  // Y is not read after the terms: they replace it
}

// grad_pass(n, chunk): every input gradient of one chunk. The row tiles of D are walked inside the
// CTA: dv and dz are per row, and dq, dk (sums over all rows) accumulate across tiles in shared
// memory, so no partial buffers and no second kernel are needed. kOnePhase: the chunk form's four chains in one
// phase (chunk_grad_chains), for a CTA of kGradOnePhaseThreads.
template <typename Cta, typename Op, typename Cfg, bool kOnePhase = false>
DECAYFW_CTA void grad_pass(Cta& cta, const ChunkArgs& a, int64_t n, int64_t chunk, unsigned char* smem) {
  constexpr int C = Cfg::C, M = Cfg::M;
  ChunkSmem<Op, Cfg> sm(smem, ChunkCarve::Grad);
  Tiles<Op, Cfg>& t = sm.t;
  choose_form<Cta>(t, a);
  float *DQ = sm.DQ, *DK = sm.DK;
  const Staging<Op> to = staging_of(t);
  KeptAcrossTiles kept;
  const int64_t zeros = int64_t(C) * M + M;
  for (int64_t tile = 0; tile < a.tiles; ++tile) {
    // One staging phase per tile: its rows (with the key side and DQ, DK zeroed for the first), its
    // start state and the gradient reaching its end state.
    const Place pl(a, n, chunk, tile, C);
    const int sides = tile == 0 ? kBothSides : kRowSide;
    const int64_t copies = stage_count<Op, Cfg>(a, sides), dstate = end_dstate_copies<Op, Cfg>(),
                  state = start_state_batches<Cfg>(), zero = tile == 0 ? zeros : 0, words = wide_word_count(t, sides);
    cta.for_each(copies + dstate + state + words + zero, [&](int64_t e) {
      if (e < copies) return stage_index<Cta, Op, Cfg>(cta, a, pl, to, sides, e);
      e -= copies;
      if (e < dstate) return stage_end_dstate<Cta>(cta, a, pl, t, e);
      e -= dstate;
      if (e < state) return load_start_state_batch<Cta>(a, pl, t, e);
      e -= state;
      // DQ's and DK's zeros before the wide words, whose count is odd: a warp's 32 zeros then lie in one
      // row (M = 32) or half of one, not across two rows 40 floats apart on the same banks.
      if (e < zero) {
        if (e < int64_t(C) * M) {
          DQ[(e / M) * Cfg::ldm_f + e % M] = 0.0f;
          DK[(e / M) * Cfg::ldm_f + e % M] = 0.0f;
        } else {
          sm.carry_col[e - int64_t(C) * M] = 0.0f;
        }
        return;
      }
      clear_wide_word(t, sides, e - zero);
    });
    finish_loading(cta, pl, t, sides);
    grad_rows<kOnePhase>(cta, a, pl, sm, kept);
  }

  // Column gates: reverse cumulative sums of q ⊙ dq − k ⊙ dk inside the chunk on top of the
  // boundary term, then dq, dk (written by the terms' last call, which reads them) and df (σ(−f) of the staged
  // logits). The terms are kept in Y where its rows hold M floats (Y is not read after the row tiles), so that
  // the second walk reads one quad where the terms take four.
  const Place keys(a, n, chunk, 0, C);
  constexpr bool kKeepColumnTerms = M <= Cfg::ldd_f;
  reverse_gate_sums<Cta, Cfg, M>(
      cta, keys.valid, sm.carry_col, sm.part,
      [&](int i, int m, float* v, bool last) {
        float q[kQuad], dq[kQuad], k[kQuad], dk[kQuad];
        Cta::load4(t.Qr + i * Cfg::ldm_op + m, q);
        Cta::load4(DQ + i * Cfg::ldm_f + m, dq);
        Cta::load4(t.Kr + i * Cfg::ldm_op + m, k);
        Cta::load4(DK + i * Cfg::ldm_f + m, dk);
        DECAYFW_UNROLL
        for (int w = 0; w < kQuad; ++w) v[w] = q[w] * dq[w] - k[w] * dk[w];
        if (last) {
          const int64_t tt = keys.c0 + i;
          Op *dq_row = row_of<Op>(a.dq, keys.b, tt, keys.h) + m, *dk_row = row_of<Op>(a.dk, keys.b, tt, keys.h) + m;
          DECAYFW_UNROLL
          for (int w = 0; w < kQuad; ++w) {
            dq_row[w] = Cta::template from_f<Op>(dq[w]);
            dk_row[w] = Cta::template from_f<Op>(dk[w]);
          }
        }
      },
      [&](int i, int m, const float* g) {
        float f[kQuad];
        Cta::load4(t.Fr + i * M + m, f);
        Op* df_row = row_of<Op>(a.df, keys.b, keys.c0 + i, keys.h) + m;
        DECAYFW_UNROLL
        for (int w = 0; w < kQuad; ++w) df_row[w] = Cta::template from_f<Op>(g[w] * sigmoid_of_minus(f[w]));
      },
      kKeepColumnTerms ? t.Y : nullptr, Cfg::ldd_f);
}

}  // namespace decayfw::chunk
