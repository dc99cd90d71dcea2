// The products of one chunk that every program shares: y's part from before the chunk, the chunk form
// (a whole chunk as one product), and the sub-chunk products with their 16×16 diagonal blocks. The
// notation is in ../decay_chunk_program.h.
#pragma once

#include "loading.h"

namespace decayfw::chunk {

// ---- the output y of one chunk (also recomputed by the gradient pass) ---------------------------

// Y = e^{A} ⊙ ((Q ⊙ e^{B}) S_prevᵀ): the part of every y_i that comes from before the chunk, the row
// decays applied to the product in registers. Needs Sop, writes Xa.
template <typename Cta, typename Op, typename Cfg>
DECAYFW_CTA void y_inter_product(Cta& cta, Tiles<Op, Cfg>& t) {
  constexpr int C = Cfg::C, M = Cfg::M, R = Cfg::R;
  constexpr int MQ = M / kQuad;
  cta.for_each(int64_t(C) * MQ, [&](int64_t e) {
    int i, m;
    quad_at<Op, MQ>(e, i, m);
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

// A whole chunk's scaled operands, in one phase: Q̃ = Q ⊙ e^{B} into Xa (with_q: not when it is there already,
// from grad_rows or an earlier row tile), K̃ = K ⊙ e^{−B} into Xb (with_k: likewise), Ṽ = V ⊙ e^{−A} into vt.
// Q̃ and K̃ depend on the key side alone, so a CTA walking the row tiles scales them once while nothing else
// writes Xa and Xb.
template <typename Cta, typename Op, typename Cfg>
DECAYFW_CTA void whole_chunk_operands(Cta& cta, Tiles<Op, Cfg>& t, bool with_q, bool with_k, Op* vt) {
  constexpr int C = Cfg::C, M = Cfg::M, R = Cfg::R, MQ = M / kQuad, RQ = R / kQuad;
  // Both of Q̃ and K̃: one index a pair, on one load of their gates (scale_quad_pair).
  const bool pair = with_q && with_k;
  const int64_t qs = with_q && !pair ? int64_t(C) * MQ : 0, keys = qs + (with_k ? int64_t(C) * MQ : 0);
  cta.for_each(keys + int64_t(C) * RQ, [&](int64_t e) {
    if (e < keys) {
      const bool kk = e >= qs;
      if (kk) e -= qs;
      int j, m;
      quad_at<Op, MQ>(e, j, m);
      if (pair)
        scale_quad_pair<Cta>(t.Xa + j * Cfg::ldm_op + m, t.Qr + j * Cfg::ldm_op + m, t.Xb + j * Cfg::ldm_op + m,
                             t.Kr + j * Cfg::ldm_op + m, t.key_gates(j) + m, nullptr);
      else if (kk)
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

// Warps per 16-row block of a gemm_chain with k = K and Y n = N wide: each holds N/parts columns of Y, and each
// computes its row block of P (the chain's first product) for itself, so one part computes P once and reads A and
// B0 once. Until session 26 one part spilled (the fused forward, 12-16 bytes at M = 32, 64, 128: the whole block of
// P was live beside Y's accumulators) and the chains took two, four at K = 128; chain_warp now holds one 16-column
// tile of P at a time, and one part (two at K = 128, whose A block alone is 32 registers) leaves no bf16 or fp16
// kernel spilling (ptxas, nvcc 13, sm_90). At most one part per 16 columns.
template <int K, int N>
constexpr int chain_parts() {
  constexpr int parts = K >= 128 ? 2 : 1;
  return parts < N / 16 ? parts : N / 16;
}

// A whole chunk's y from its scaled operands (Q̃ in Xa, K̃ in Xb, Ṽ in vt): P = mask(Q̃ K̃ᵀ), then
// Y = e^{A} ⊙ (Q̃ S_prevᵀ + P Ṽ), the inter- and intra-chunk parts in one set of accumulators (y_inter_product's
// decays and the intra product's are the same); P kept in Pc for the gradient's products when keep_p. Chained
// (t.chained), P stays in registers between its two products and Q̃ is loaded once for both of its; otherwise P
// goes through Pc. The values are the same: P rounded to the operand type, every element's k steps in one order.
template <bool kApart, typename Cta, typename Op, typename Cfg>
DECAYFW_CTA void whole_chunk_y(Cta& cta, Tiles<Op, Cfg>& t, const Op* vt, bool keep_p) {
  using cta::KSpan;
  constexpr int C = Cfg::C, M = Cfg::M, R = Cfg::R;
  constexpr KSpan kMask = kApart ? KSpan::BlockCausal : KSpan::Causal;
  const auto y_decays = [&](int i, int d, const float* v) {
    decay_pairs<Cta>(t.Y + i * Cfg::ldd_f + d, Cfg::ldd_f, t.row_gates(i) + d, Cfg::ldg_r, nullptr, 0, v, false);
  };
  if constexpr (sizeof(Op) == 2) {
    if (t.chained)
      return cta.template gemm_chain<kMask, C, R, M, chain_parts<M, R>()>(
          t.Xa, Cfg::ldm_op, t.Xb, Cfg::ldm_op, t.Sop, Cfg::ldm_op, vt, Cfg::ldd_op, keep_p ? t.Pc : nullptr,
          Cfg::ldc_op, y_decays);
  }
  cta.template gemm_apply<false, true, kMask>(
      C, C, M, t.Xa, Cfg::ldm_op, t.Xb, Cfg::ldm_op,
      [&](int i, int j, const float* v) { store_causal_pairs<Cta, kApart>(t.Pc, Cfg::ldc_op, i, j, v); });
  constexpr KSpan kSecond = kApart ? KSpan::BelowA : KSpan::LowerA;  // P's rows: zero past the mask
  cta.gemm_apply_sum(C, R, y_decays, cta::term<false, true>(M, t.Xa, Cfg::ldm_op, t.Sop, Cfg::ldm_op),
                     cta::term<false, false, kSecond>(C, t.Pc, Cfg::ldc_op, vt, Cfg::ldd_op));
}

// A whole chunk's diagonal blocks in fp32, into Dg (C×S, zero above the diagonal), as the factored form's
// (factored_products) but referred to the chunk's start, which its spans allow: block I's pair (i, j) is
// Σ_x (x_i e^{G_i})(y_j e^{−G_j}) over X columns, both factors in fp32 (Fx, Fy, one block at a time), multiplied
// at fp32 accuracy (gemm_fp32). G: the key side's gates (Pd: q, k) or the tile's rows' (Rd: dy, v).
template <int X, typename Cta, typename Op, typename Cfg, typename Gates>
DECAYFW_CTA void diagonal_blocks_whole(Cta& cta, Tiles<Op, Cfg>& t, const Place& pl, const Op* x, const Op* y, int ld,
                                       Gates&& gates, float* Dg) {
  constexpr int S = Cfg::S, XQ = X / kQuad;
  for (int I = 0; I < pl.valid_subs(); ++I) {
    const int r = I * S;
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
      if (jj > ii) Dg[diagonal_block_offset<S>(r - S + ii) + jj] = 0.0f;
    });
    cta.template gemm_fp32<false, true>(S, S, X, t.Fx, Cfg::ld_fd, t.Fy, Cfg::ld_fd, Dg + diagonal_block_offset<S>(r),
                                        S, false);
  }
  const int last = (pl.valid_subs() - 1) * S;  // the last block's upper pairs
  cta.for_each(int64_t(S) * S, [&](int64_t e) {
    const int ii = static_cast<int>(e / S), jj = static_cast<int>(e % S);
    if (jj > ii) Dg[diagonal_block_offset<S>(last + ii) + jj] = 0.0f;
  });
}

// What a row tile leaves for the next in a CTA that walks a chunk's row tiles (output_pass, grad_pass), both
// depending on the key side alone: Pd (not the chunk form's whole chunks, which have none), and Q̃ = Q ⊙ e^{B} in
// Xa and K̃ = K ⊙ e^{−B} in Xb after a whole chunk (nothing after its products writes them; a sub-chunked tile
// does).
struct KeptAcrossTiles {
  bool pd = false, keys_scaled = false;
};

// A whole chunk's y; in the factored form with its diagonal blocks apart, and Pd after them when `need_pd`
// (Fx and Fy share the region Sop and Pc are in, read until then). `keys_scaled`: Q̃ and K̃ are in Xa and Xb
// already (an earlier row tile's whole chunk).
template <typename Cta, typename Op, typename Cfg>
DECAYFW_CTA void y_of_whole_chunk(Cta& cta, const Place& pl, Tiles<Op, Cfg>& t, bool need_pd, bool keys_scaled) {
  whole_chunk_operands(cta, t, !keys_scaled, !keys_scaled, t.Xc);
  if (!t.factored()) return whole_chunk_y<false>(cta, t, t.Xc, false);
  whole_chunk_y<true>(cta, t, t.Xc, false);
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
// ones. The bits of the wide columns are set while the log gates are summed (gate_column, loading.h).

// The part of a diagonal block's element Σ_c x_i y_j e^{G_i−G_j} (over X columns, in fp32) the tensor cores
// leave out: Pd_ij's with q, k and B (key columns), Rd_ij's with dy, v and A (the tile's rows). The wide
// columns per pair; when factored, the narrow ones too: *narrow, their sum from factored_products.
template <typename Cta, int kWords, typename Op>
DECAYFW_CTA float diagonal_sum(const Op* x, const Op* y, int ld, const float* g, int ldg, const uint32_t* wide,
                               const float* narrow, int i, int j) {
  // Where each pair's walk over the wide columns starts, so that a warp's lanes (the pairs of a few rows i and
  // every row j of one sub-chunk) read the gates and operands on few banks: rows of the gates are 8 words (mod 32)
  // apart, so rows four apart meet where they read one column. With many wide columns (all, in the elementwise
  // form) a pair starts at the (j/2)-th, the lanes on consecutive columns: 1.1 wavefronts a read by the bank
  // model, where all from the first took 2.0. With few (a trained model's: a few of a sub-chunk's 64), at the
  // (j/8)-th, two starts, so that the lanes' reads share addresses: 1.44 a read (swapped model's gates, M = 64),
  // where the (j/2)-th took 2.03 and the column j/2, the rule for many, 1.90.
  float s = 0.0f;
  for_each_wide<kWords>(
      wide, [j](int n) { return n >= 16 ? j >> 1 : j >> 3; },
      [&](int c) {
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
  cta.template gemm_fp32<false, true>(Cfg::S, Cfg::S, X, t.Fx, Cfg::ld_fd, t.Fy, Cfg::ld_fd,
                                      Dg + diagonal_block_offset<Cfg::S>(r), Cfg::S, false);
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
      Cta::load4(kept ? Dg + diagonal_block_offset<S>(r + ii) + j : t.P + ii * Cfg::ldc_f + j, p);
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
      Dg[diagonal_block_offset<S>(r + ii) + jj] = p;
    } else {
      e -= kPairs;
      ii = static_cast<int>(e / S), jj = static_cast<int>(e % S);
      if (jj <= ii) return;  // a pair, above
      p = 0.0f;
      Dg[diagonal_block_offset<S>(r + ii) + jj] = p;
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
        int ii, m;
        quad_at<Op, MQ>(e, ii, m);
        const int i = r + ii;
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
        int j, m;
        quad_at<Op, MQ>(e, j, m);
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
                                               pd_factored ? t.Pd + diagonal_block_offset<S>(i) + (j - r) : nullptr, i,
                                               j);
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
                                               rd_factored ? t.Rd + diagonal_block_offset<S>(i) + (j - r) : nullptr, i,
                                               j);
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
    const float to_half = r >= 8 ? decay_exp(x[r] - x[8]) : 1.0f;  // the later row's factors
    const float to_quarter = r - b >= 4 ? decay_exp(x[r] - x[b + 4]) : 1.0f;
    DECAYFW_UNROLL
    for (int c = 0; c <= r; ++c) {
      float decay;
      if (r >= 8 && c < 8)
        decay = to_half * across_halves[c];
      else if (r - b >= 4 && c - b < 4)
        decay = to_quarter * across_quarters[h][c - b];
      else
        decay = decay_exp(x[r] - x[c]);
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
  const float* p = t.Pd + diagonal_block_offset<S>(blk);
  if (wide) {
    for_each_pair_decay(A, [&](int r, int c, float decay) { y[r] += p[r * S + c] * v[c] * decay; });
    return;
  }
  float unused[S];
  factored_diagonal_sums<Cta>(A, p, v, nullptr, y, unused);
}

}  // namespace decayfw::chunk
