// HostCta: runs a CTA program (cta_common.h) on the CPU, one index at a time, for tests.
//
// The indices of a for_each run in a chosen order: the device runs them concurrently, so a program
// whose result depends on that order (one index reading what another writes in the same phase) is
// racy; running it forwards, backwards and interleaved and comparing bit for bit finds such races.
// gemm refuses an output that overlaps an operand (the device would read half-written values).
// Asynchronous copies (copy16_async) land only at wait_async, as on the device they may land any
// time before it; until then their destination holds NaN bit patterns, so a program that reads it
// too early computes NaN, and wait_async refuses a destination written in the meantime.
//
// Storage types are decayfw's host 16-bit types (numeric.h) and float. gemm multiplies exactly as
// the tensor cores do: 16-bit operands are exact in fp32 products; fp32 operands are first rounded
// to tf32 (10-bit mantissa, round to nearest, ties away, as cvt.rna.tf32.f32) unless the executor
// is told to keep them exact (kExactFp32: checks the algorithm alone); sums are fp32. gemm_fp32 splits
// fp32 operands in two tf32 parts, as the device does.
//
// With a SmemTrace current (smem_trace.h), its shared-memory accesses are recorded for a bank count: the
// vector accesses and copies here, gemm's fragments as modeled there; the emulation's own copies are not.
#pragma once

#include <algorithm>
#include <array>
#include <cstring>
#include <functional>
#include <stdexcept>
#include <string>
#include <tuple>
#include <type_traits>
#include <vector>

#include "cta_common.h"
#include "decayfw/numeric.h"
#include "smem_trace.h"

namespace decayfw::cta {

inline float round_to_tf32(float x) {
  uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  if ((u & 0x7f800000u) != 0x7f800000u) {  // finite: round the 13 dropped bits, ties away from zero
    u += 0x1000u;
    u &= 0xffffe000u;
  }
  float r;
  std::memcpy(&r, &u, sizeof r);
  return r;
}

enum class Order { Forward, Reverse, Interleaved };

template <bool kExactFp32 = false>
struct HostCta {
  Order order = Order::Forward;
  // What the asynchronous copies overlapped: gemm calls made while copies were in flight (the tests
  // check that the serial passes compute while the next chunk is copied).
  int64_t gemms_while_copying = 0;
  int64_t chains = 0;  // gemm_chain calls (the tests check that a program took the chained products)

  static float to_f(float x) { return x; }
  static float to_f(BFloat16 x) { return to_float(x); }
  static float to_f(Float16 x) { return to_float(x); }
  template <typename T>
  static T from_f(float x) {
    if constexpr (std::is_same_v<T, BFloat16>) return to_bfloat16(x);
    else if constexpr (std::is_same_v<T, Float16>) return to_float16(x);
    else return x;
  }

  // The defaulted arguments name the caller (GCC's builtins), for a SmemTrace; programs pass two.
  static void load4(const float* p, float* v, const char* fn = __builtin_FUNCTION(), int line = __builtin_LINE()) {
    check_aligned(p);
    trace(p, 16, false, fn, line);
    SmemTrace::Quiet reported;
    std::memcpy(v, p, 4 * sizeof(float));
  }
  static void store4(float* p, const float* v, const char* fn = __builtin_FUNCTION(), int line = __builtin_LINE()) {
    check_aligned(p);
    trace(p, 16, true, fn, line);
    SmemTrace::Quiet reported;
    std::memcpy(p, v, 4 * sizeof(float));
  }
  static void load2(const float* p, float* v, const char* fn = __builtin_FUNCTION(), int line = __builtin_LINE()) {
    check_aligned_to(p, 8);
    trace(p, 8, false, fn, line);
    SmemTrace::Quiet reported;
    std::memcpy(v, p, 2 * sizeof(float));
  }
  static void store2(float* p, const float* v, const char* fn = __builtin_FUNCTION(), int line = __builtin_LINE()) {
    check_aligned_to(p, 8);
    trace(p, 8, true, fn, line);
    SmemTrace::Quiet reported;
    std::memcpy(p, v, 2 * sizeof(float));
  }
  template <typename T>  // 16-bit storage: four elements, 8-byte aligned as the device's one access
  static void load4(const T* p, float* v, const char* fn = __builtin_FUNCTION(), int line = __builtin_LINE()) {
    static_assert(sizeof(T) == 2, "load4 of a 16-bit type");
    check_aligned_to(p, 8);
    trace(p, 8, false, fn, line);
    SmemTrace::Quiet reported;
    for (int i = 0; i < 4; ++i) v[i] = to_f(p[i]);
  }
  template <typename T>
  static void store4(T* p, const float* v, const char* fn = __builtin_FUNCTION(), int line = __builtin_LINE()) {
    static_assert(sizeof(T) == 2, "store4 of a 16-bit type");
    check_aligned_to(p, 8);
    trace(p, 8, true, fn, line);
    SmemTrace::Quiet reported;
    for (int i = 0; i < 4; ++i) p[i] = from_f<T>(v[i]);
  }
  template <typename T>  // 16-bit storage: two elements, 4-byte aligned as the device's one access
  static void store2(T* p, const float* v, const char* fn = __builtin_FUNCTION(), int line = __builtin_LINE()) {
    static_assert(sizeof(T) == 2, "store2 of a 16-bit type");
    check_aligned_to(p, 4);
    trace(p, 4, true, fn, line);
    SmemTrace::Quiet reported;
    for (int i = 0; i < 2; ++i) p[i] = from_f<T>(v[i]);
  }
  template <typename T>
  void copy16_async(T* dst, const T* src, bool fill, const char* fn = __builtin_FUNCTION(),
                    int line = __builtin_LINE()) {
    static_assert(16 % sizeof(T) == 0, "a 16-byte copy holds whole elements");
    check_aligned_to(dst, 16);
    trace(dst, 16, true, fn, line, kCopyAccess);
    if (fill) trace(src, 16, false, fn, line, kCopyAccess);  // global memory: only its races are judged
    SmemTrace::Quiet reported;
    Copy c{reinterpret_cast<unsigned char*>(dst), {}};
    if (fill) {
      check_aligned_to(src, 16);
      std::memcpy(c.bytes, src, 16);  // the source is read-only input: when it is read does not matter
    } else {
      std::memset(c.bytes, 0, 16);
    }
    std::memset(dst, 0xff, 16);
    in_flight_.push_back(c);
  }
  void wait_async() {
    require_no_open_chains("wait_async");
    SmemTrace::Quiet emulation;  // the copies were reported when they started
    for (const Copy& c : in_flight_) {
      for (int b = 0; b < 16; ++b)
        if (c.dst[b] != 0xff)
          throw std::logic_error("cta: shared memory written while an async copy into it was in flight");
    }
    for (const Copy& c : in_flight_) std::memcpy(c.dst, c.bytes, 16);
    in_flight_.clear();
    if (SmemTrace* t = SmemTrace::current()) t->copies_landed();
  }
  size_t copies_in_flight() const { return in_flight_.size(); }

  void atomic_or(uint32_t* word, uint32_t bits, const char* fn = __builtin_FUNCTION(), int line = __builtin_LINE()) {
    if (SmemTrace* t = SmemTrace::current()) t->atomic_access(word, 4, fn, line);
    SmemTrace::Quiet reported;
    *word |= bits;
  }
  template <typename T>
  static constexpr bool has_fp32_range() {
    return !std::is_same_v<T, Float16>;
  }

  static void trace(const void* p, int bytes, bool store, const char* fn, int line, const char* kind = kVectorAccess) {
    if (SmemTrace* t = SmemTrace::current()) t->access(p, bytes, store, fn, line, kind);
  }

  static void check_aligned(const float* p) {
    if (reinterpret_cast<uintptr_t>(p) % 16 != 0) throw std::logic_error("cta: a 4-float access is not 16-byte aligned");
  }
  static void check_aligned_to(const void* p, uintptr_t bytes) {
    if (reinterpret_cast<uintptr_t>(p) % bytes != 0)
      throw std::logic_error("cta: an access of " + std::to_string(bytes) + " bytes is not " + std::to_string(bytes) +
                             "-byte aligned");
  }

  template <typename F>
  void for_each(int64_t n, F&& f, const char* fn = __builtin_FUNCTION(), int line = __builtin_LINE()) {
    require_no_open_chains("a for_each");
    SmemTrace* t = SmemTrace::current();
    if (t) t->begin_phase(fn, line);
    auto run = [&](int64_t i) {
      if (t) t->set_index(i);
      f(i);
    };
    switch (order) {
      case Order::Forward:
        for (int64_t i = 0; i < n; ++i) run(i);
        break;
      case Order::Reverse:
        for (int64_t i = n - 1; i >= 0; --i) run(i);
        break;
      case Order::Interleaved:  // odd indices first, then even: neighbours never in program order
        for (int64_t i = 1; i < n; i += 2) run(i);
        for (int64_t i = 0; i < n; i += 2) run(i);
        break;
    }
    if (t) t->end_phase();
  }

  template <bool TA, bool TB, typename Op>
  void gemm(int m, int n, int k, const Op* A, int lda, const Op* B, int ldb, float* C, int ldc, bool accumulate,
            const char* fn = __builtin_FUNCTION(), int line = __builtin_LINE()) {
    multiply<TA, TB, false>(m, n, k, A, lda, B, ldb, C, ldc, accumulate, fn, line);
  }
  // As the device: x = hi + lo, hi = tf32(x), lo = tf32(x − hi), each product lo·hi + hi·lo + hi·hi (exact
  // fp32 products with kExactFp32). The fragments are gemm's: the split is made in registers.
  template <bool TA, bool TB>
  void gemm_fp32(int m, int n, int k, const float* A, int lda, const float* B, int ldb, float* C, int ldc,
                 bool accumulate, const char* fn = __builtin_FUNCTION(), int line = __builtin_LINE()) {
    multiply<TA, TB, true>(m, n, k, A, lda, B, ldb, C, ldc, accumulate, fn, line);
  }
  // The product is kept in host memory of its own (not shared memory: the device's accumulators are
  // registers), and f runs as a for_each, index 32·tile + lane making lane's calls for its tile, so that the
  // order checks and the trace see what the device's warps do. On the device, warps still multiplying read
  // the operands while others run their epilogues: an epilogue that writes into an operand is refused.
  // A span other than All sums each tile's k steps in its span only, as the device does, and refuses one
  // whose skipped steps hold a nonzero element of A (LowerA, UpperA, BelowA, AboveA).
  template <bool TA, bool TB, KSpan kSpan = KSpan::All, typename Op, typename F>
  void gemm_apply(int m, int n, int k, const Op* A, int lda, const Op* B, int ldb, F&& f,
                  const char* fn = __builtin_FUNCTION(), int line = __builtin_LINE()) {
    apply_products(m, n, f, fn, line, term<TA, TB, kSpan>(k, A, lda, B, ldb));
  }
  // Both products summed in one host vector, the first's k steps then the second's, as the device's
  // accumulators take them.
  template <typename F, typename T1, typename T2>
  void gemm_apply_sum(int m, int n, F&& f, const T1& first, const T2& second, const char* fn = __builtin_FUNCTION(),
                      int line = __builtin_LINE()) {
    apply_products(m, n, f, fn, line, first, second);
  }
  template <typename F, typename... Terms>
  void apply_products(int m, int n, F& f, const char* fn, int line, const Terms&... terms) {
    (begin_term(m, n, terms, fn, line), ...);
    std::vector<float> acc(size_t(m) * n);
    {
      SmemTrace::Quiet modeled;
      bool first = true;
      auto add = [&](const auto& x) {
        add_term(m, n, x, acc.data(), n, !first);
        first = false;
      };
      (add(terms), ...);
    }
    const auto before = std::make_tuple(operand_snapshot(m, n, terms)...);
    hand_over(m, n, acc, f, fn, line);
    SmemTrace::Quiet check;
    std::apply([&](const auto&... snapshot) { (check_unchanged(snapshot), ...); }, before);
  }
  // The product acc [m×n] to the epilogue f as a for_each, index 32·tile + lane making lane's call for its tile.
  template <typename F>
  void hand_over(int m, int n, const std::vector<float>& acc, F& f, const char* fn, int line) {
    for_each(
        int64_t(m / 16) * (n / 16) * kWarp, [&](int64_t e) { hand_over_call(n, acc, f, e); }, fn, line);
  }
  // hand_over's index e: lane e mod 32's call for tile e div 32 (tiles row by row, n/16 to a row).
  template <typename F>
  static void hand_over_call(int n, const std::vector<float>& acc, F& f, int64_t e) {
    const int tiles_n = n / 16, tile = static_cast<int>(e / kWarp), lane = static_cast<int>(e % kWarp);
    const int i0 = tile / tiles_n * 16, j0 = tile % tiles_n * 16;
    float v[2 * kAccumulatorPairs];
    for (int p = 0; p < kAccumulatorPairs; ++p) {
      const int i = i0 + accumulator_pair_row(lane, p), j = j0 + accumulator_pair_col(lane, p);
      v[2 * p] = acc[size_t(i) * n + j], v[2 * p + 1] = acc[size_t(i) * n + j + 1];
    }
    f(i0 + accumulator_pair_row(lane, 0), j0 + accumulator_pair_col(lane, 0), static_cast<const float*>(v));
  }

  // gemm_chain (cta_common.h) as whole products in the device's order: P's k steps, masked and rounded to the
  // operand type; Y's first product's k steps, then the second's in its span. P's block stays in host memory
  // (the device's registers). A chain's product is taken when it is called, but its stores into P and its
  // epilogue wait for the last chain of its phase (kFirst + its warps = kPhase; a chain alone is its own phase):
  // then the phase's stores into P run as one for_each, index 32·block + lane storing that lane's pairs 4 bytes
  // at a time, as the device's warps store them, and the epilogues as one more, chain after chain, each as
  // gemm_apply's. On the device the chains of a phase run at once, other warps still reading operands while one
  // stores or runs its epilogue: so no epilogue may write any of the phase's operands or P, no P may overlap
  // another chain's operands or P, and nothing else may run while a phase is open.
  template <KSpan kMask, int kM, int kN, int kK, int kParts = 1, bool kTB1 = true, int kFirst = 0,
            int kPhase = kM / 16 * kParts, typename Op, typename F>
  void gemm_chain(const Op* A, int lda, const Op* B0, int ldb0, const Op* B1, int ldb1, const Op* B2, int ldb2, Op* P,
                  int ldp, F&& f, const char* fn = __builtin_FUNCTION(), int line = __builtin_LINE()) {
    static_assert(sizeof(Op) == 2, "gemm_chain multiplies 16-bit operands");
    static_assert(is_chain_mask(kMask), "gemm_chain's mask is Causal, BlockCausal or their transposes");
    static_assert(kN % (16 * kParts) == 0, "each part takes whole 16-column tiles of Y");
    constexpr int kWarps = kM / 16 * kParts;
    static_assert(kFirst >= 0 && kFirst + kWarps <= kPhase, "the chain's warps lie in its phase");
    constexpr KSpan kSecond = chain_second_span(kMask);
    if (kFirst == 0 && !open_.chains.empty())
      throw std::logic_error("cta::gemm_chain: a chain starts a phase while another phase's chains are open");
    if (kFirst > 0 && (open_.chains.empty() || open_.next != kFirst || open_.warps != kPhase))
      throw std::logic_error("cta::gemm_chain: warps " + std::to_string(kFirst) + ".. of a " + std::to_string(kPhase) +
                             "-warp phase do not continue an open phase");
    if (!in_flight_.empty()) ++gemms_while_copying;
    ++chains;
    check_tiles(kM, kN, kK);
    const std::array<Extent, 5> extents = {
        {{A, (size_t(kM - 1) * lda + kK) * sizeof(Op), "A"},
         {B0, (size_t(kM - 1) * ldb0 + kK) * sizeof(Op), "B0"},
         {B1, (kTB1 ? size_t(kN - 1) * ldb1 + kK : size_t(kK - 1) * ldb1 + kN) * sizeof(Op), "B1"},
         {B2, (size_t(kM - 1) * ldb2 + kN) * sizeof(Op), "B2"},
         {P, P ? (size_t(kM - 1) * ldp + kM) * sizeof(Op) : 0, "P"}}};
    {
      SmemTrace::Quiet checks;
      check_wmma_contract<false, true>(kM, kM, kK, A, lda, B0, ldb0, static_cast<float*>(nullptr), 0);
      check_wmma_contract<false, kTB1>(kM, kN, kK, A, lda, B1, ldb1, static_cast<float*>(nullptr), 0);
      check_wmma_contract<false, false>(kM, kN, kM, B2, ldb2, B2, ldb2, static_cast<float*>(nullptr), 0);
      if (P) check_wmma_contract<false, false>(kM, kM, kM, P, ldp, P, ldp, static_cast<float*>(nullptr), 0);
      for (int o = 0; o < 4; ++o) check_p_apart(extents[4], extents[o]);  // its own P over its operands
      for (const OpenChain& c : open_.chains)
        for (int o = 0; o < 5; ++o) {  // its P over the phase's, and the phase's P over its operands
          check_p_apart(extents[4], c.extents[o]);
          check_p_apart(c.extents[4], extents[o]);
        }
    }
    if (SmemTrace* t = SmemTrace::current()) {
      t->note_gemm();
      trace_chain_fragments<kMask, kM, kN, kK, kParts, kTB1>(*t, {fn, line, 0, ""}, A, lda, B0, ldb0, B1, ldb1, B2,
                                                             ldb2);
    }
    constexpr size_t kProducts = size_t(kM) * kM;
    std::vector<float> pf(kProducts), acc(size_t{kM} * kN);
    std::vector<Op> pop(kProducts);
    {
      SmemTrace::Quiet modeled;
      product<false, true, false>(kM, kM, kK, A, lda, B0, ldb0, pf.data(), kM, false, kMask);
      for (int i = 0; i < kM; ++i)
        for (int j = 0; j < kM; ++j)
          pop[size_t(i) * kM + j] = from_f<Op>(chain_keeps(kMask, i, j) ? pf[size_t(i) * kM + j] : 0.0f);
      product<false, kTB1, false>(kM, kN, kK, A, lda, B1, ldb1, acc.data(), kN, false);
      product<false, false, false>(kM, kN, kM, pop.data(), kM, B2, ldb2, acc.data(), kN, true, kSecond);
    }
    OpenChain c;
    c.extents = extents;
    c.stores = P ? int64_t(kM / 16) * kWarp : 0;
    c.store = [=, pop = std::move(pop)](int64_t e) {
      const int i0 = static_cast<int>(e / kWarp) * 16, lane = static_cast<int>(e % kWarp);
      for (int j0 = 0; j0 < kM; j0 += 16)
        for (int p = 0; p < kAccumulatorPairs; ++p) {
          const int i = i0 + accumulator_pair_row(lane, p), j = j0 + accumulator_pair_col(lane, p);
          trace(P + size_t(i) * ldp + j, 4, true, fn, line);
          SmemTrace::Quiet stored;
          P[size_t(i) * ldp + j] = pop[size_t(i) * kM + j];
          P[size_t(i) * ldp + j + 1] = pop[size_t(i) * kM + j + 1];
        }
    };
    c.calls = int64_t(kM / 16) * (kN / 16) * kWarp;
    c.epilogue = [acc = std::move(acc), f](int64_t e) mutable { hand_over_call(kN, acc, f, e); };
    open_.chains.push_back(std::move(c));
    open_.next = kFirst + kWarps;
    open_.warps = kPhase;
    if (open_.next == kPhase) close_chains(fn, line);
  }
  // A term's checks and trace, as a product of its own (its fragments, no C).
  template <bool TA, bool TB, KSpan kSpan, typename Op>
  void begin_term(int m, int n, const Term<TA, TB, kSpan, Op>& x, const char* fn, int line) {
    begin_product<TA, TB>(m, n, x.k, x.A, x.lda, x.B, x.ldb, static_cast<const float*>(nullptr), 0, false, fn, line,
                          kSpan);
    SmemTrace::Quiet modeled;
    check_wmma_contract<TA, TB>(m, n, x.k, x.A, x.lda, x.B, x.ldb, static_cast<float*>(nullptr), 0);
    if (kSpan != KSpan::All && !is_chain_mask(kSpan)) check_skipped_zero<TA>(m, x.k, x.A, x.lda, kSpan);
  }
  template <bool TA, bool TB, KSpan kSpan, typename Op>
  static void add_term(int m, int n, const Term<TA, TB, kSpan, Op>& x, float* C, int ldc, bool accumulate) {
    product<TA, TB, false>(m, n, x.k, x.A, x.lda, x.B, x.ldb, C, ldc, accumulate, kSpan);
  }
  // The operands as they were before the epilogues (check_unchanged: see gemm_apply).
  template <typename Op>
  struct Snapshot {
    const Op *a, *b;
    std::vector<Op> a_before, b_before;
  };
  template <bool TA, bool TB, KSpan kSpan, typename Op>
  static Snapshot<Op> operand_snapshot(int m, int n, const Term<TA, TB, kSpan, Op>& x) {
    const size_t a_elems = TA ? size_t(x.k - 1) * x.lda + m : size_t(m - 1) * x.lda + x.k;
    const size_t b_elems = TB ? size_t(n - 1) * x.ldb + x.k : size_t(x.k - 1) * x.ldb + n;
    return {x.A, x.B, std::vector<Op>(x.A, x.A + a_elems), std::vector<Op>(x.B, x.B + b_elems)};
  }
  template <typename Op>
  static void check_unchanged(const Snapshot<Op>& s) {
    if (std::memcmp(s.a_before.data(), s.a, s.a_before.size() * sizeof(Op)) != 0 ||
        std::memcmp(s.b_before.data(), s.b, s.b_before.size() * sizeof(Op)) != 0)
      throw std::logic_error("cta::gemm_apply: the epilogue wrote into an operand (which other warps may still read)");
  }
  template <bool TA, bool TB, bool kSplit, typename Op>
  void multiply(int m, int n, int k, const Op* A, int lda, const Op* B, int ldb, float* C, int ldc, bool accumulate,
                const char* fn, int line) {
    begin_product<TA, TB>(m, n, k, A, lda, B, ldb, C, ldc, accumulate, fn, line);
    SmemTrace::Quiet modeled;
    check_wmma_contract<TA, TB>(m, n, k, A, lda, B, ldb, C, ldc);
    const size_t c_bytes = (size_t(m - 1) * ldc + n) * sizeof(float);
    check_no_overlap("cta::gemm: the output", C, c_bytes, A,
                     (TA ? size_t(k - 1) * lda + m : size_t(m - 1) * lda + k) * sizeof(Op), "A");
    check_no_overlap("cta::gemm: the output", C, c_bytes, B,
                     (TB ? size_t(n - 1) * ldb + k : size_t(k - 1) * ldb + n) * sizeof(Op), "B");
    product<TA, TB, kSplit>(m, n, k, A, lda, B, ldb, C, ldc, accumulate);
    if (SmemTrace* t = SmemTrace::current())
      for (int i = 0; i < m; ++i) t->mark_written(C + size_t(i) * ldc, size_t(n) * sizeof(float));
  }
  // What every product does first: counts it against copies in flight, checks its sizes, and reports its
  // fragments (C null: none of C's) to a current trace.
  template <bool TA, bool TB, typename Op>
  void begin_product(int m, int n, int k, const Op* A, int lda, const Op* B, int ldb, const float* C, int ldc,
                     bool accumulate, const char* fn, int line, KSpan span = KSpan::All) {
    require_no_open_chains("a gemm");
    if (!in_flight_.empty()) ++gemms_while_copying;
    check_tiles(m, n, k);
    if (SmemTrace* t = SmemTrace::current()) {
      t->note_gemm();
      trace_wmma_fragments<TA, TB>(*t, {fn, line, 0, ""}, m, n, k, A, lda, B, ldb, C, ldc, accumulate, span);
    }
  }
  // Every element of op(A) in a k step its row tile's span skips must be zero (the product would otherwise
  // differ from the one asked for).
  template <bool TA, typename Op>
  static void check_skipped_zero(int m, int k, const Op* A, int lda, KSpan span) {
    for (int i = 0; i < m; ++i) {
      int begin, end;
      k_span(span, i / 16 * 16, 0, k, begin, end);
      for (int p = 0; p < k; ++p)
        if ((p < begin || p >= end) && to_f(TA ? A[p * lda + i] : A[i * lda + p]) != 0.0f)
          throw std::logic_error("cta::gemm_apply: its k span skips a nonzero element of A at (" + std::to_string(i) +
                                 ", " + std::to_string(p) + ")");
    }
  }
  // C (+)= op(A)·op(B) as the tensor cores compute it.
  template <bool TA, bool TB, bool kSplit, typename Op>
  static void product(int m, int n, int k, const Op* A, int lda, const Op* B, int ldb, float* C, int ldc,
                      bool accumulate, KSpan span = KSpan::All) {
    static_assert(!kSplit || std::is_same_v<Op, float>, "only fp32 operands split");
    auto operand = [](Op x) {
      const float v = to_f(x);
      if constexpr (std::is_same_v<Op, float> && !kExactFp32) return round_to_tf32(v);
      return v;
    };
    for (int i = 0; i < m; ++i)
      for (int j = 0; j < n; ++j) {
        float s = accumulate ? C[i * ldc + j] : 0.0f;
        int begin, end;
        k_span(span, i / 16 * 16, j / 16 * 16, k, begin, end);
        for (int p = begin; p < end; ++p) {
          const Op a = TA ? A[p * lda + i] : A[i * lda + p];
          const Op b = TB ? B[j * ldb + p] : B[p * ldb + j];
          if constexpr (kSplit && !kExactFp32) {
            const float ah = round_to_tf32(a), bh = round_to_tf32(b);
            s += (round_to_tf32(a - ah) * bh + ah * round_to_tf32(b - bh)) + ah * bh;
          } else {
            s += operand(a) * operand(b);
          }
        }
        C[i * ldc + j] = s;
      }
  }

  // An output (gemm's C, gemm_chain's P) that other warps write while the operands are still read must not overlap
  // them: `what` names the output in the refusal.
  static void check_no_overlap(const char* what, const void* out, size_t out_bytes, const void* x, size_t x_bytes,
                               const char* name) {
    const auto o0 = reinterpret_cast<uintptr_t>(out), o1 = o0 + out_bytes;
    const auto x0 = reinterpret_cast<uintptr_t>(x), x1 = x0 + x_bytes;
    if (o0 < x1 && x0 < o1) throw std::logic_error(std::string(what) + " overlaps operand " + name);
  }

  // WMMA's memory contract, on every address DeviceCta's tile walk (cta_common.h) would load or
  // store (C null: gemm_apply, no C): tile pointers 32-byte aligned, leading dimensions multiples of 16 bytes. Shared
  // memory is 128-byte aligned on both executors (HostSmem, __align__(128)), so an offset that breaks the rule here
  // breaks it on the device.
  template <bool TA, bool TB, typename Op>
  static void check_wmma_contract(int m, int n, int k, const Op* A, int lda, const Op* B, int ldb, float* C,
                                  int ldc) {
    auto ldm_ok = [](int ld, size_t elem) { return ld > 0 && (size_t(ld) * elem) % kWmmaLdmBytes == 0; };
    if (!ldm_ok(lda, sizeof(Op)) || !ldm_ok(ldb, sizeof(Op)) || (C && !ldm_ok(ldc, sizeof(float)))) {
      throw std::logic_error("cta::gemm: a leading dimension is not a multiple of 16 bytes (lda " + std::to_string(lda) +
                             ", ldb " + std::to_string(ldb) + ", ldc " + std::to_string(ldc) + ")");
    }
    auto tile = [](const void* p, const char* what, int r, int c) {
      if (reinterpret_cast<uintptr_t>(p) % kWmmaTileAlign != 0) {
        throw std::logic_error(std::string("cta::gemm: the ") + what + " tile at (" + std::to_string(r) + ", " +
                               std::to_string(c) + ") is not 32-byte aligned");
      }
    };
    constexpr int kK = wmma_k_step<Op>;
    for (int i0 = 0; i0 < m; i0 += 16) {
      for (int j0 = 0; C && j0 < n; j0 += 16) tile(gemm_c_tile(C, ldc, i0, j0), "C", i0, j0);
      for (int p = 0; p < k; p += kK) tile(gemm_a_tile<TA>(A, lda, i0, p), "A", i0, p);
    }
    for (int j0 = 0; j0 < n; j0 += 16)
      for (int p = 0; p < k; p += kK) tile(gemm_b_tile<TB>(B, ldb, j0, p), "B", p, j0);
  }

  // The device executor's shape contract, enforced here so a program that breaks it fails on CPU.
  static void check_tiles(int m, int n, int k) {
    if (m % 16 != 0 || n % 16 != 0 || k % 16 != 0 || m <= 0 || n <= 0 || k <= 0) {
      throw std::logic_error("cta::gemm: m, n, k must be positive multiples of 16 (got " + std::to_string(m) +
                             ", " + std::to_string(n) + ", " + std::to_string(k) + ")");
    }
  }

 private:
  struct Copy {
    unsigned char* dst;
    unsigned char bytes[16];
  };
  std::vector<Copy> in_flight_;

  // An operand or P of a chain: address, bytes, name.
  struct Extent {
    const void* p;
    size_t bytes;
    const char* name;
  };
  static void check_p_apart(const Extent& p, const Extent& x) {
    if (p.p && x.p) check_no_overlap("cta::gemm_chain: P", p.p, p.bytes, x.p, x.bytes, x.name);
  }
  // A chain whose phase is still open: its operands and P, and its stores into P and its epilogue as for_each
  // indices.
  struct OpenChain {
    std::array<Extent, 5> extents;
    int64_t stores = 0, calls = 0;
    std::function<void(int64_t)> store, epilogue;
  };
  struct OpenPhase {
    std::vector<OpenChain> chains;
    int next = 0, warps = 0;  // the next chain's first warp; the phase's warps
  } open_;
  void require_no_open_chains(const char* what) const {
    if (!open_.chains.empty())
      throw std::logic_error(std::string("cta: ") + what + " while a phase of gemm_chain calls is open (warps " +
                             std::to_string(open_.next) + ".. of " + std::to_string(open_.warps) + " still to come)");
  }
  // The open phase's stores into P, then its epilogues, each as one for_each, chain after chain; then every
  // chain's operands and P checked against their bytes before the epilogues.
  void close_chains(const char* fn, int line) {
    const std::vector<OpenChain> phase = std::move(open_.chains);
    open_ = OpenPhase{};
    const auto run = [&](int64_t OpenChain::*count, std::function<void(int64_t)> OpenChain::*call) {
      int64_t n = 0;
      for (const OpenChain& c : phase) n += c.*count;
      if (n > 0)
        for_each(
            n,
            [&](int64_t e) {
              for (const OpenChain& c : phase) {
                if (e < c.*count) return (c.*call)(e);
                e -= c.*count;
              }
            },
            fn, line);
    };
    run(&OpenChain::stores, &OpenChain::store);
    std::vector<std::vector<unsigned char>> before;
    {
      SmemTrace::Quiet snapshots;
      for (const OpenChain& c : phase)
        for (const Extent& x : c.extents) {
          const auto* b = static_cast<const unsigned char*>(x.p);
          before.emplace_back(b, b ? b + x.bytes : b);
        }
    }
    run(&OpenChain::calls, &OpenChain::epilogue);
    SmemTrace::Quiet check;
    size_t k = 0;
    for (const OpenChain& c : phase)
      for (const Extent& x : c.extents)
        if (const std::vector<unsigned char>& b = before[k++]; !b.empty() && std::memcmp(b.data(), x.p, x.bytes) != 0)
          throw std::logic_error(std::string("cta::gemm_chain: an epilogue wrote into ") + x.name +
                                 " of a chain in its phase (which other warps may still read)");
  }
};

// Shared memory for one CTA on the host: 128-byte aligned, filled with NaN bit patterns so a
// program that reads what it never wrote produces NaN instead of a plausible number.
class HostSmem {
 public:
  // kGuard bytes on either side: an access there is out of bounds (SmemTrace reports it).
  static constexpr size_t kGuard = 256;
  explicit HostSmem(size_t bytes) : buf_(bytes + 128 + 2 * kGuard, 0xff) {
    if (SmemTrace* t = SmemTrace::current()) t->add_buffer(data(), bytes, buf_.data(), buf_.data() + buf_.size());
  }
  ~HostSmem() {
    if (SmemTrace* t = SmemTrace::current()) t->remove_buffer(data());
  }
  HostSmem(const HostSmem&) = delete;
  HostSmem& operator=(const HostSmem&) = delete;
  unsigned char* data() {
    auto p = reinterpret_cast<uintptr_t>(buf_.data() + kGuard);
    return buf_.data() + kGuard + ((128 - p % 128) % 128);
  }
  // Between CTAs: NaN everywhere, and (for a trace) nothing written.
  void poison() {
    SmemTrace::Quiet between_ctas;
    std::fill(buf_.begin(), buf_.end(), 0xff);
    if (SmemTrace* t = SmemTrace::current()) t->forget_writes(data());
  }

 private:
  std::vector<unsigned char> buf_;
};

}  // namespace decayfw::cta
