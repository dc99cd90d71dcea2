// The CUDA chunkwise (tensor-core) path's CTA programs, run on the CPU through HostCta, against the
// readable fp64 reference: forward, every gradient, initial/final state, T not a multiple of the
// chunk, several row tiles, saturated gates; with exact fp32 products (the algorithm alone) and
// with the tensor cores' operand rounding (bf16, fp16, tf32).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "chunk_host_driver.h"
#include "decay_chunk_configs.h"
#include "decay_naive.h"

namespace {

using decayfw::BFloat16;
using decayfw::Float16;
namespace chunk = decayfw::chunk;
namespace ref = decayfw::reference;

struct Shape {
  int64_t B, T, H, D, M;
};

std::string name_of(const Shape& s) {
  return "B" + std::to_string(s.B) + "_T" + std::to_string(s.T) + "_H" + std::to_string(s.H) + "_D" +
         std::to_string(s.D) + "_M" + std::to_string(s.M);
}

template <typename In>
In from_double(double x) {
  return decayfw::cta::HostCta<>::from_f<In>(static_cast<float>(x));
}
template <typename In>
double to_double(In x) {
  return decayfw::cta::HostCta<>::to_f(x);
}
inline double to_double(double x) {
  return x;
}

// One problem: inputs in the storage type In, and the same values (as rounded) in fp64.
template <typename In>
struct Problem {
  Shape s;
  std::vector<In> q, k, f, v, z, dy;
  std::vector<float> s0, dsT;
  ref::DecayProblem p;
  std::vector<double> dy64, dsT64;
  chunk::DiagonalForm diagonal = chunk::DiagonalForm::Factored;  // ChunkArgs::diagonal (the default)
  bool chain_products = true;                                    // ChunkArgs::chain_products (the default)
  bool grad_one_phase = false;  // grad_pass's one-phase form (cuda::ChunkTuning::grad_one_phase)

  Problem(Shape shape, uint64_t seed, double gate_mean, double gate_spread, bool with_states) : s(shape) {
    std::mt19937_64 rng(seed);
    std::normal_distribution<double> n01(0.0, 1.0);
    const int64_t nm = s.B * s.T * s.H * s.M, nd = s.B * s.T * s.H * s.D, ns = s.B * s.H * s.D * s.M;
    const double key_scale = 1.0 / std::sqrt(static_cast<double>(s.M));
    auto fill = [&](std::vector<In>& dst, std::vector<double>& dst64, int64_t count, double scale, double mean,
                    double spread) {
      dst.resize(count);
      dst64.resize(count);
      for (int64_t i = 0; i < count; ++i) {
        dst[i] = from_double<In>(mean + spread * scale * n01(rng));
        dst64[i] = to_double(dst[i]);
      }
    };
    p.B = s.B, p.T = s.T, p.H = s.H, p.D = s.D, p.M = s.M;
    fill(q, p.q, nm, key_scale, 0.0, 1.0);
    fill(k, p.k, nm, key_scale, 0.0, 1.0);
    fill(f, p.f, nm, 1.0, gate_mean, gate_spread);
    fill(v, p.v, nd, 1.0, 0.0, 1.0);
    fill(z, p.z, nd, 1.0, gate_mean, gate_spread);
    fill(dy, dy64, nd, 1.0, 0.0, 1.0);
    if (with_states) {
      s0.resize(ns);
      dsT.resize(ns);
      p.s0.resize(ns);
      dsT64.resize(ns);
      for (int64_t i = 0; i < ns; ++i) {
        s0[i] = static_cast<float>(n01(rng));
        dsT[i] = static_cast<float>(n01(rng));
        p.s0[i] = s0[i];
        dsT64[i] = dsT[i];
      }
    }
  }

  chunk::SeqIn in_view(const std::vector<In>& x, int64_t X) const {
    return {x.data(), s.T * s.H * X, s.H * X, X};
  }
  static chunk::SeqOut out_view(std::vector<In>& x, const Shape& s, int64_t X) {
    return {x.data(), s.T * s.H * X, s.H * X, X};
  }

  chunk::ChunkArgs args() const {
    chunk::ChunkArgs a;
    a.B = s.B, a.T = s.T, a.H = s.H, a.D = s.D, a.M = s.M;
    a.q = in_view(q, s.M), a.k = in_view(k, s.M), a.f = in_view(f, s.M);
    a.v = in_view(v, s.D), a.z = in_view(z, s.D), a.dy = in_view(dy, s.D);
    a.s0 = s0.empty() ? nullptr : s0.data();
    a.dsT = dsT.empty() ? nullptr : dsT.data();
    a.diagonal = diagonal;
    a.chain_products = chain_products;
    return a;
  }
};

// max |a − b| / max(1, max |b|): errors relative to the tensor's scale (b: the fp64 reference, or another run).
template <typename T, typename U>
double rel_error(const std::vector<T>& got, const std::vector<U>& want) {
  double err = 0.0, scale = 1.0;
  for (size_t i = 0; i < want.size(); ++i) {
    const double g = to_double(got[i]), w = to_double(want[i]);
    if (!std::isfinite(g)) return INFINITY;
    err = std::max(err, std::abs(g - w));
    scale = std::max(scale, std::abs(w));
  }
  return err / scale;
}

struct Result {
  double y, sT, dq, dk, dv, dz, df, ds0;
  double worst() const { return std::max({y, sT, dq, dk, dv, dz, df, ds0}); }
};

// Every output of one forward and one backward of the chunk programs on the host executor.
template <typename In>
struct Outputs {
  std::vector<In> y, dq, dk, df, dv, dz;
  std::vector<float> sT, ds0;
};

// The same bytes in two buffers (the same bits), the failure naming them.
template <typename V>
void expect_same_bits(const V& x, const V& y, const std::string& what) {
  ASSERT_EQ(x.size(), y.size()) << what;
  EXPECT_EQ(0, std::memcmp(x.data(), y.data(), x.size() * sizeof(x[0]))) << what;
}
// Every gradient of two runs, bit for bit.
template <typename In>
void expect_same_gradients(const Outputs<In>& a, const Outputs<In>& b, const std::string& what) {
  expect_same_bits(a.dq, b.dq, what + ": dq");
  expect_same_bits(a.dk, b.dk, what + ": dk");
  expect_same_bits(a.dv, b.dv, what + ": dv");
  expect_same_bits(a.dz, b.dz, what + ": dz");
  expect_same_bits(a.df, b.df, what + ": df");
  expect_same_bits(a.ds0, b.ds0, what + ": grad of the initial state");
}

// Which forward the launcher would run: state_pass + output_pass, or the fused forward_pass with or
// without writing the chunk states (decay_fwd_train or decay_fwd).
enum class Forward { Split, Fused, FusedWithoutStates };

template <typename In, int M, int C, bool kExact>
Outputs<In> run_programs(const Problem<In>& pr, decayfw::cta::Order order = decayfw::cta::Order::Forward,
                         bool vector_loads = true, bool reuse_states = false,
                         std::vector<float>* states_after = nullptr, Forward form = Forward::Split,
                         int64_t* chains = nullptr) {
  using Cfg = chunk::Config<M, C, In>;
  const Shape& s = pr.s;
  const int64_t nm = s.B * s.T * s.H * s.M, nd = s.B * s.T * s.H * s.D, ns = s.B * s.H * s.D * s.M;
  decayfw::testing::HostChunkRunner<In, Cfg, kExact> run(order, vector_loads);
  Outputs<In> o{std::vector<In>(nd), std::vector<In>(nm), std::vector<In>(nm), std::vector<In>(nm),
                std::vector<In>(nd), std::vector<In>(nd), std::vector<float>(ns), std::vector<float>(ns)};
  chunk::ChunkArgs a = pr.args();
  a.y = Problem<In>::out_view(o.y, s, s.D);
  a.final_state = o.sT.data();
  if (form == Forward::Split) run.forward(a);
  else run.forward_fused(a, form == Forward::Fused);
  if (form == Forward::FusedWithoutStates && reuse_states) throw std::logic_error("no states kept to reuse");
  chunk::ChunkArgs b = pr.args();
  b.dq = Problem<In>::out_view(o.dq, s, s.M), b.dk = Problem<In>::out_view(o.dk, s, s.M);
  b.df = Problem<In>::out_view(o.df, s, s.M);
  b.dv = Problem<In>::out_view(o.dv, s, s.D), b.dz = Problem<In>::out_view(o.dz, s, s.D);
  b.ds0 = o.ds0.data();
  run.backward(b, reuse_states, pr.grad_one_phase);
  if (states_after) *states_after = run.states();
  if (chains) *chains = run.executor().chains;
  return o;
}

template <typename In, int M, int C, bool kExact>
Result problem_against_reference(const Problem<In>& pr) {
  std::vector<double> sT64;
  const std::vector<double> y64 = ref::decay_forward(pr.p, &sT64);
  const ref::DecayGrads g64 = ref::decay_backward(pr.p, pr.dy64, pr.dsT64);
  const Outputs<In> o = run_programs<In, M, C, kExact>(pr);
  return {rel_error(o.y, y64), rel_error(o.sT, sT64), rel_error(o.dq, g64.dq), rel_error(o.dk, g64.dk),
          rel_error(o.dv, g64.dv), rel_error(o.dz, g64.dz), rel_error(o.df, g64.df), rel_error(o.ds0, g64.ds0)};
}
template <typename In, int M, int C, bool kExact>
Result run_against_reference(const Shape& s, uint64_t seed, double gate_mean = 2.0, double gate_spread = 1.0,
                             bool with_states = true, chunk::DiagonalForm diagonal = chunk::DiagonalForm::Factored) {
  Problem<In> pr(s, seed, gate_mean, gate_spread, with_states);
  pr.diagonal = diagonal;
  return problem_against_reference<In, M, C, kExact>(pr);
}

constexpr chunk::DiagonalForm kDiagonalForms[] = {chunk::DiagonalForm::Elementwise, chunk::DiagonalForm::Factored,
                                                  chunk::DiagonalForm::Tensor, chunk::DiagonalForm::Chunk};
std::string name_of(chunk::DiagonalForm form) {
  switch (form) {
    case chunk::DiagonalForm::Elementwise: return "elementwise diagonal";
    case chunk::DiagonalForm::Factored: return "factored diagonal";
    case chunk::DiagonalForm::Tensor: return "tensor diagonal";
    case chunk::DiagonalForm::Chunk:
      return "chunk form";
  }
  return "?";
}

void expect_within(const Result& r, double tol, const std::string& what) {
  EXPECT_LT(r.y, tol) << what << ": y";
  EXPECT_LT(r.sT, tol) << what << ": final state";
  EXPECT_LT(r.dq, tol) << what << ": dq";
  EXPECT_LT(r.dk, tol) << what << ": dk";
  EXPECT_LT(r.dv, tol) << what << ": dv";
  EXPECT_LT(r.dz, tol) << what << ": dz";
  EXPECT_LT(r.df, tol) << what << ": df";
  EXPECT_LT(r.ds0, tol) << what << ": grad of the initial state";
}

// Exact fp32 products: the chunk algorithm itself (references, masks, boundary terms, tiles).
TEST(ChunkProgram, ExactFp32MatchesReferenceAcrossChunkBoundaries) {
  for (const Shape& s : {Shape{1, 1, 1, 64, 32}, Shape{2, 63, 1, 64, 32}, Shape{1, 64, 2, 64, 32},
                         Shape{1, 65, 1, 64, 32}, Shape{2, 150, 2, 64, 32}}) {
    expect_within(run_against_reference<float, 32, 64, true>(s, 1), 5e-6, name_of(s));
  }
}

TEST(ChunkProgram, ExactFp32EveryKeyDimensionAndChunkSize) {
  expect_within(run_against_reference<float, 16, 64, true>({1, 130, 2, 64, 16}, 2), 5e-6, "M16 C64");
  expect_within(run_against_reference<float, 64, 64, true>({1, 130, 1, 64, 64}, 3), 5e-6, "M64 C64");
  expect_within(run_against_reference<float, 64, 32, true>({1, 97, 1, 64, 64}, 4), 5e-6, "M64 C32");
  expect_within(run_against_reference<float, 128, 32, true>({1, 70, 1, 64, 128}, 5), 5e-6, "M128 C32");
  expect_within(run_against_reference<float, 32, 16, true>({1, 40, 1, 64, 32}, 6), 5e-6, "M32 C16");
}

TEST(ChunkProgram, ExactFp32SeveralRowTilesSumPartials) {
  expect_within(run_against_reference<float, 32, 64, true>({2, 100, 1, 128, 32}, 7), 5e-6, "D128");
  expect_within(run_against_reference<float, 16, 64, true>({1, 70, 1, 192, 16}, 8), 5e-6, "D192");
}

TEST(ChunkProgram, ExactFp32WithoutInitialOrFinalState) {
  expect_within(run_against_reference<float, 32, 64, true>({1, 129, 2, 64, 32}, 9, 2.0, 1.0, false), 5e-6,
                "no states");
}

// Gates from fully closed to fully open: logits ±30 (log σ = −30 and ≈ −1e-13). Exponents of
// differences must never overflow, and memory that saturates at 1 must still be exact.
TEST(ChunkProgram, SaturatedGatesStayFiniteAndExact) {
  expect_within(run_against_reference<float, 32, 64, true>({1, 300, 1, 64, 32}, 10, 0.0, 30.0), 5e-5,
                "logits ±30");
  expect_within(run_against_reference<float, 32, 64, true>({1, 300, 1, 64, 32}, 11, 30.0, 0.0), 5e-5,
                "all gates open (σ(30))");
  expect_within(run_against_reference<float, 32, 64, true>({1, 300, 1, 64, 32}, 12, -30.0, 0.0), 5e-5,
                "all gates closed (σ(−30))");
}

// The diagonal blocks factor the decays of the columns whose log gates span at most 40 over a
// sub-chunk (in the tensor-core products, or in fp32: the factored form) and take per-pair sums for
// the others ("wide", kernels/cuda/chunk/loading.h). Logits around −2 with spread 3 give both in every
// sub-chunk; with exact products every form must match the reference as the all-per-pair form does. The fraction of
// wide (sub-chunk, column) pairs is counted from the gates themselves, so the test fails if the mix it needs is not
// there. The span of each (column, full 16-row block) of one gate input: −Σ log σ over rows r+1 .. r+15 (the first
// row's own gate cancels), in fp64.
std::vector<double> block_spans(const std::vector<double>& logits, int64_t T, int64_t X) {
  std::vector<double> spans;
  for (int64_t col = 0; col < X; ++col)
    for (int64_t r = 0; r + 16 <= T; r += 16) {
      double span = 0.0;
      for (int64_t i = r + 1; i < r + 16; ++i) {
        const double x = logits[i * X + col];
        span += std::max(-x, 0.0) + std::log1p(std::exp(-std::abs(x)));
      }
      spans.push_back(span);
    }
  return spans;
}
double wide_fraction(const std::vector<double>& logits, int64_t T, int64_t X) {
  const std::vector<double> spans = block_spans(logits, T, X);
  return static_cast<double>(std::count_if(spans.begin(), spans.end(), [](double x) { return x > 40.0; })) /
         static_cast<double>(spans.size());
}

TEST(ChunkProgram, DiagonalBlocksMixTensorCoreAndPerElementColumns) {
  const Shape s{1, 200, 1, 128, 32};
  const Problem<float> pr(s, 17, -2.0, 3.0, true);
  const double key = wide_fraction(pr.p.f, s.T, s.M), row = wide_fraction(pr.p.z, s.T, s.D);
  EXPECT_GT(key, 0.1) << "too few wide key columns for the test";
  EXPECT_LT(key, 0.9) << "too few narrow key columns for the test";
  EXPECT_GT(row, 0.1) << "too few wide rows for the test";
  EXPECT_LT(row, 0.9) << "too few narrow rows for the test";
  for (chunk::DiagonalForm form : kDiagonalForms)
    expect_within(run_against_reference<float, 32, 64, true>(s, 17, -2.0, 3.0, true, form), 5e-6,
                  "mixed spans, " + name_of(form));
}

TEST(ChunkProgram, LongSequenceWithSaturatedGates) {
  const Result r = run_against_reference<float, 16, 64, true>({1, 4096, 1, 64, 16}, 13, 0.0, 30.0);
  expect_within(r, 1e-4, "T = 4096, logits ±30");
}

// The tensor cores' rounding of operands: bf16/fp16 inputs multiply as themselves (exact in fp32)
// but the scaled operands and products are rounded to the input type; fp32 inputs run as tf32.
TEST(ChunkProgram, Bf16OperandsStayCloseToReference) {
  const Result r = run_against_reference<BFloat16, 64, 64, false>({2, 200, 1, 128, 64}, 14);
  expect_within(r, 1e-2, "bf16");
}

// Long memory in bf16: gates saturated open and closed (logits ±30) over T = 4096. Where a gate
// stays open the state grows without decay, and the gates' boundary term (a sum of dS_end ⊙ S_end)
// cancels against in-chunk sums of v ⊙ dv and k ⊙ dk, where dv and dk come from the state gradients
// as the tensor cores multiply them (bf16). Storing those gradients in bf16 (ChunkArgs::dstates)
// gives both sides the same values: over eight seeds every output stayed below 7.9e-3, where storing
// them in fp32 let df reach 1.95e-2 (seed 4, over four seeds).
TEST(ChunkProgram, Bf16LongSequenceWithSaturatedGates) {
  for (uint64_t seed : {4, 7}) {
    const Result r = run_against_reference<BFloat16, 64, 64, false>({1, 4096, 1, 128, 64}, seed, 0.0, 30.0);
    expect_within(r, 1e-2, "bf16, T = 4096, logits ±30, seed " + std::to_string(seed));
  }
}

TEST(ChunkProgram, Fp16OperandsStayCloseToReference) {
  const Result r = run_against_reference<Float16, 32, 64, false>({1, 200, 2, 64, 32}, 15);
  expect_within(r, 2e-3, "fp16");
}

TEST(ChunkProgram, Tf32OperandsStayCloseToReference) {
  const Result r = run_against_reference<float, 64, 32, false>({1, 200, 1, 64, 64}, 16);
  expect_within(r, 2e-3, "tf32");
}

// Every configuration the GPU compiles (decay_chunk_configs.h), in its own operand type and so with
// its own chunk size and shared-memory layout: two row tiles, three chunks, the last one partial.
// The tests above check the algorithm on a few configurations; this one checks every compiled
// kernel's layout against the executor's contract (tiles, WMMA alignment, overlap) and the reference.
// fp32 configurations run with exact products, so a layout fault cannot hide in tf32 rounding.
// bf16's gate gradients (dz, df) are sums of many rounded terms with cancellation: over six seeds
// they reached 1.2e-2 where the other outputs stay near 4e-3 (fp16: 1.1e-3, eight times less, as
// its three more mantissa bits predict; exact fp32: 1.2e-6), with every diagonal block per element
// (the default form). With the diagonal blocks on tensor cores (their products rounded to bf16 as the
// off-diagonal ones) one of this test's cases gives dz 2.15e-2; over six seeds of T = 1024 and logits
// N(4, 2) df reached 2.19e-2 (2.04e-2 per element), hence 3e-2 for that form.
template <typename In, int M, bool kExact>
void expect_compiled_configuration_close(double tol, const std::string& type, chunk::DiagonalForm form) {
  constexpr int C = chunk::CompiledConfig<In, M>::C;
  const Shape s{1, 2 * C + 5, 1, 128, M};
  expect_within(run_against_reference<In, M, C, kExact>(s, 40 + M, 2.0, 1.0, true, form), tol,
                type + " M" + std::to_string(M) + " C" + std::to_string(C) + ", " + name_of(form));
}
template <typename In, bool kExact = false>
void expect_every_m_close(double tol, const std::string& type, chunk::DiagonalForm form) {
  expect_compiled_configuration_close<In, 16, kExact>(tol, type, form);
  expect_compiled_configuration_close<In, 32, kExact>(tol, type, form);
  expect_compiled_configuration_close<In, 64, kExact>(tol, type, form);
  expect_compiled_configuration_close<In, 128, kExact>(tol, type, form);
}
TEST(ChunkProgram, EveryCompiledConfigurationInItsOperandType) {
  static_assert(sizeof(chunk::kCompiledM) / sizeof(chunk::kCompiledM[0]) == 4, "a compiled M is not tested here");
  for (chunk::DiagonalForm form : kDiagonalForms) {
    // The chunk form rounds every diagonal product as the tensor form does (and with these gates, logits
    // N(2, 1), takes nearly every chunk whole).
    const bool tensor = form == chunk::DiagonalForm::Tensor || form == chunk::DiagonalForm::Chunk;
    expect_every_m_close<float, true>(5e-6, "fp32 (tf32 layout, exact products)", form);
    expect_every_m_close<BFloat16>(tensor ? 3e-2 : 2e-2, "bf16", form);
    expect_every_m_close<Float16>(2e-3, "fp16", form);
  }
}

// The device runs a for_each's indices at once: a phase that reads what another index of the same
// phase writes would give order-dependent results. Every program, run with its indices forwards,
// backwards and interleaved, must give bit-identical outputs.
template <typename In, int M, int C>
std::vector<std::vector<float>> outputs_of(const Problem<In>& pr, decayfw::cta::Order order, bool vector_loads) {
  const Outputs<In> o = run_programs<In, M, C, false>(pr, order, vector_loads);
  std::vector<std::vector<float>> out;
  for (const std::vector<In>* x : {&o.y, &o.dq, &o.dk, &o.df, &o.dv, &o.dz}) {
    out.emplace_back();
    for (const In& e : *x) out.back().push_back(decayfw::cta::HostCta<>::to_f(e));
  }
  out.push_back(o.sT);
  out.push_back(o.ds0);
  return out;
}
template <typename In, int M, int C>
std::vector<std::vector<float>> outputs_in_order(const Shape& s, decayfw::cta::Order order, bool vector_loads = true,
                                                 double gate_mean = 1.0, double gate_spread = 2.0,
                                                 chunk::DiagonalForm form = chunk::DiagonalForm::Factored) {
  Problem<In> pr(s, 21, gate_mean, gate_spread, true);
  pr.diagonal = form;
  return outputs_of<In, M, C>(pr, order, vector_loads);
}

// Every column narrow, with spans just under the bound (logits N(−2.5, 0.05²): about 38.7 over a block):
// the factored forms' factors reach e^{38} and e^{−38} here, the largest and smallest they take. With
// exact products, their results must stay as close to fp64 as the per-pair form's.
TEST(ChunkProgram, DiagonalFactorsAtTheBoundStayExact) {
  const Shape s{1, 200, 1, 128, 32};
  const Problem<float> pr(s, 18, -2.5, 0.05, true);
  for (const std::vector<double>* logits : {&pr.p.f, &pr.p.z}) {
    const std::vector<double> spans = block_spans(*logits, s.T, logits == &pr.p.f ? s.M : s.D);
    EXPECT_GT(*std::min_element(spans.begin(), spans.end()), 37.0) << "the spans are not near the bound";
    EXPECT_LT(*std::max_element(spans.begin(), spans.end()), 40.0) << "a column is wide";
  }
  for (chunk::DiagonalForm form : kDiagonalForms)
    expect_within(run_against_reference<float, 32, 64, true>(s, 18, -2.5, 0.05, true, form), 5e-6,
                  "spans near the bound, " + name_of(form));
  // The factored form did take these columns: its fp32 products round otherwise than the per-pair ones.
  using decayfw::cta::Order;
  const auto factored = outputs_in_order<float, 32, 64>(s, Order::Forward, true, -2.5, 0.05, chunk::DiagonalForm::Factored);
  const auto per_pair = outputs_in_order<float, 32, 64>(s, Order::Forward, true, -2.5, 0.05, chunk::DiagonalForm::Elementwise);
  EXPECT_NE(factored, per_pair);
}

// The chunk form takes a chunk whole where every column of the key side and of the CTA's row tile spans at
// most 40 over the chunk, and as the tensor form does otherwise; the key side's Pd then comes from the first
// tile that takes the sub-chunks. Four chunks of 64 rows, two row tiles (D = 128), logits set per chunk:
//   0: everything whole, spans near the bound (factors up to e^{37}, down to e^{-37});
//   1: tile 0 whole, its rows and the keys spanning less than half the bound; tile 1's rows wide (its Pd
//      computed by tile 1);
//   2: tile 0's rows wide, tile 1 whole;
//   3: one key column wide: no tile whole.
// So the serial passes' state update takes every UpdateReference: Both in chunk 1's tile 0, End in the wide
// tiles, Rows in the others.
// With exact products, every output must match fp64 as the per-pair form does, the chunk path must have run
// (its bits differ from the tensor form's), its phases must not depend on their indices' order, and the fused
// forward must give the split pair's bits (its update takes K̃ and Ṽ from the whole chunks' products).
template <typename In>
void set_chunk_logits(Problem<In>& pr, bool key, int64_t chunk, int64_t col0, int64_t cols, double mean,
                      uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> n01(0.0, 0.02);
  const int64_t X = key ? pr.s.M : pr.s.D;
  std::vector<In>& x = key ? pr.f : pr.z;
  std::vector<double>& x64 = key ? pr.p.f : pr.p.z;
  for (int64_t t = chunk * 64; t < std::min<int64_t>(pr.s.T, chunk * 64 + 64); ++t)
    for (int64_t c = col0; c < col0 + cols; ++c) {
      x[t * X + c] = from_double<In>(mean + n01(rng));
      x64[t * X + c] = to_double(x[t * X + c]);
    }
}
template <typename In>
Problem<In> chunk_form_problem() {
  Problem<In> pr({1, 256, 1, 128, 32}, 19, 0.25, 0.0, true);  // logits 0.25: about 36.9 over a chunk
  set_chunk_logits(pr, false, 0, 0, 128, 0.25, 1);
  set_chunk_logits(pr, true, 0, 0, 32, 0.25, 2);
  set_chunk_logits(pr, false, 1, 0, 64, 2.0, 6);  // about 8.1: both sides under half the bound
  set_chunk_logits(pr, true, 1, 0, 32, 2.0, 7);
  set_chunk_logits(pr, false, 1, 64, 64, -2.0, 3);
  set_chunk_logits(pr, false, 2, 0, 64, -2.0, 4);
  set_chunk_logits(pr, true, 3, 7, 1, -2.0, 5);
  pr.diagonal = chunk::DiagonalForm::Chunk;
  return pr;
}
// The span of each (column, chunk of 64 rows) of one gate input, from the chunk's start: −Σ log σ, in fp64.
double max_chunk_span(const std::vector<double>& logits, int64_t chunk, int64_t col0, int64_t cols, int64_t X) {
  double widest = 0.0;
  for (int64_t c = col0; c < col0 + cols; ++c) {
    double span = 0.0;
    for (int64_t t = chunk * 64; t < chunk * 64 + 64; ++t) {
      const double x = logits[t * X + c];
      span += std::max(-x, 0.0) + std::log1p(std::exp(-std::abs(x)));
    }
    widest = std::max(widest, span);
  }
  return widest;
}
TEST(ChunkProgram, ChunkFormTakesNarrowChunksWhole) {
  const Problem<float> pr = chunk_form_problem<float>();
  const auto& f = pr.p.f;
  const auto& z = pr.p.z;
  EXPECT_GT(max_chunk_span(z, 0, 0, 128, 128), 36.0) << "chunk 0's spans are not near the bound";
  EXPECT_LT(max_chunk_span(z, 0, 0, 128, 128), 40.0);
  EXPECT_LT(max_chunk_span(f, 0, 0, 32, 32), 40.0);
  EXPECT_LT(max_chunk_span(z, 1, 0, 64, 128), 20.0) << "chunk 1, tile 0";
  EXPECT_LT(max_chunk_span(f, 1, 0, 32, 32), 20.0) << "chunk 1, key side";
  EXPECT_GT(max_chunk_span(z, 1, 64, 64, 128), 40.0) << "chunk 1, tile 1";
  EXPECT_GT(max_chunk_span(z, 2, 0, 64, 128), 40.0) << "chunk 2, tile 0";
  EXPECT_LT(max_chunk_span(z, 2, 64, 64, 128), 40.0) << "chunk 2, tile 1";
  EXPECT_GT(max_chunk_span(z, 2, 64, 64, 128), 20.0) << "chunk 2, tile 1: the update's Rows";
  EXPECT_GT(max_chunk_span(z, 3, 0, 128, 128), 20.0) << "chunk 3: the update's Rows";
  EXPECT_GT(max_chunk_span(f, 3, 0, 32, 32), 40.0) << "chunk 3, key side";
  for (int64_t c = 1; c < 4; ++c) EXPECT_LT(max_chunk_span(f, c, c == 3 ? 8 : 0, 24, 32), 40.0) << "chunk " << c;
  expect_within(problem_against_reference<float, 32, 64, true>(pr), 5e-6, "chunk form, exact products");
  Problem<float> tensor = pr;
  tensor.diagonal = chunk::DiagonalForm::Tensor;
  expect_within(problem_against_reference<float, 32, 64, true>(tensor), 5e-6, "tensor form, exact products");
  using decayfw::cta::Order;
  EXPECT_NE((outputs_of<float, 32, 64>(pr, Order::Forward, true)),
            (outputs_of<float, 32, 64>(tensor, Order::Forward, true)))
      << "the chunk form took no chunk whole";
  const Problem<BFloat16> b = chunk_form_problem<BFloat16>();
  const auto fwd = outputs_of<BFloat16, 32, 64>(b, Order::Forward, true);
  for (Order o : {Order::Reverse, Order::Interleaved})
    EXPECT_EQ(fwd, (outputs_of<BFloat16, 32, 64>(b, o, true))) << "bf16, chunk form, another order";
  expect_within(problem_against_reference<BFloat16, 32, 64, false>(b), 3e-2, "bf16, chunk form");
  // The factored form (the default) takes the same chunks whole, its diagonal blocks apart in fp32: exact with
  // exact products, the factored form's tolerance in bf16, and the same bits in every order.
  Problem<float> factored = pr;
  factored.diagonal = chunk::DiagonalForm::Factored;
  expect_within(problem_against_reference<float, 32, 64, true>(factored), 5e-6, "factored form, exact products");
  Problem<BFloat16> bf = b;
  bf.diagonal = chunk::DiagonalForm::Factored;
  const auto bf_fwd = outputs_of<BFloat16, 32, 64>(bf, Order::Forward, true);
  for (Order o : {Order::Reverse, Order::Interleaved})
    EXPECT_EQ(bf_fwd, (outputs_of<BFloat16, 32, 64>(bf, o, true))) << "bf16, factored form, another order";
  expect_within(problem_against_reference<BFloat16, 32, 64, false>(bf), 2e-2, "bf16, factored form");
}

// A whole chunk's products chained in registers (gemm_chain) or through shared memory (Pc). y's and dq's chains
// compute the same values, P and R rounded alike and every element's k steps in one order: the same bits in y, the
// final state and dq, in the chunk form and in the factored form (whose chunks skip their diagonal blocks), forward
// (split and fused) and backward; in the factored form every gradient too. The chunk form's dV and dK are chains as
// well (chunk_grad_chains), whose operands are referred to the chunk's start with dS_end scaled to dŜ and rounded
// once more: the other gradients differ by rounding (measured up to 1.3e-2 of their largest magnitude, in dz at
// M = 128; dk and dv up to 5.6e-3) and stay as close to the fp64 reference as Bf16OperandsStayCloseToReference asks.
// The problem has narrow and wide chunks and tiles.
template <int M, int C>
void expect_chained_products_same_bits(Problem<BFloat16> pr, Forward form, const std::string& what) {
  pr.chain_products = true;
  int64_t chains = 0, none = 0;
  const Outputs<BFloat16> chained =
      run_programs<BFloat16, M, C, false>(pr, decayfw::cta::Order::Forward, true, false, nullptr, form, &chains);
  pr.chain_products = false;
  const Outputs<BFloat16> plain =
      run_programs<BFloat16, M, C, false>(pr, decayfw::cta::Order::Forward, true, false, nullptr, form, &none);
  EXPECT_GT(chains, 0) << what << ": no chunk was taken whole";
  EXPECT_EQ(0, none) << what << ": chained without being asked to";
  expect_same_bits(chained.y, plain.y, what + ": y");
  expect_same_bits(chained.sT, plain.sT, what + ": final state");
  expect_same_bits(chained.dq, plain.dq, what + ": dq");
  if (pr.diagonal != chunk::DiagonalForm::Chunk) return expect_same_gradients(chained, plain, what);
  const std::pair<const char*, double> rounded[] = {{"dk", rel_error(chained.dk, plain.dk)},
                                                    {"dv", rel_error(chained.dv, plain.dv)},
                                                    {"dz", rel_error(chained.dz, plain.dz)},
                                                    {"df", rel_error(chained.df, plain.df)},
                                                    {"ds0", rel_error(chained.ds0, plain.ds0)}};
  for (const auto& [name, d] : rounded) EXPECT_LE(d, 2e-2) << what << ": " << name;
  pr.chain_products = true;
  const Result c64 = problem_against_reference<BFloat16, M, C, false>(pr);
  expect_within(c64, 2e-2, what + ", chained, against fp64");
  pr.chain_products = false;
  const Result p64 = problem_against_reference<BFloat16, M, C, false>(pr);
  std::printf(
      "%s: chained vs through Pc %.1e %.1e %.1e %.1e (dk, dv, dz, df); against fp64, chained | through Pc: dk "
      "%.1e | %.1e, dv %.1e | %.1e, dz %.1e | %.1e, df %.1e | %.1e\n",
      what.c_str(), rounded[0].second, rounded[1].second, rounded[2].second, rounded[3].second, c64.dk, p64.dk, c64.dv,
      p64.dv, c64.dz, p64.dz, c64.df, p64.df);
}
TEST(ChunkProgram, ChainedProductsGiveTheSameBits) {
  Problem<BFloat16> pr = chunk_form_problem<BFloat16>();
  for (chunk::DiagonalForm d : {chunk::DiagonalForm::Chunk, chunk::DiagonalForm::Factored}) {
    pr.diagonal = d;
    const std::string form = d == chunk::DiagonalForm::Chunk ? "chunk form" : "factored form";
    expect_chained_products_same_bits<32, 64>(pr, Forward::Split, "bf16 M = 32, " + form + ", split forward");
    expect_chained_products_same_bits<32, 64>(pr, Forward::Fused, "bf16 M = 32, " + form + ", fused forward");
  }
  // M = 64 and 128 (C = 32), a partial last chunk, two heads, narrow gates everywhere; and one chunk whose dS_end is
  // the final state's gradient alone (where dŜ's rounding shows most).
  for (chunk::DiagonalForm d : {chunk::DiagonalForm::Factored, chunk::DiagonalForm::Chunk}) {
    const std::string form = d == chunk::DiagonalForm::Chunk ? ", chunk form" : ", factored form";
    Problem<BFloat16> narrow({1, 150, 2, 128, 64}, 23, 2.0, 1.0, true);
    narrow.diagonal = d;
    expect_chained_products_same_bits<64, 64>(narrow, Forward::Split, "bf16 M = 64, T = 150" + form);
    Problem<BFloat16> wide_keys({1, 100, 1, 64, 128}, 29, 2.0, 1.0, true);
    wide_keys.diagonal = d;
    expect_chained_products_same_bits<128, 32>(wide_keys, Forward::Fused, "bf16 M = 128, C = 32, T = 100" + form);
    Problem<BFloat16> one_chunk({1, 64, 1, 64, 64}, 23, 2.0, 1.0, true);
    one_chunk.diagonal = d;
    expect_chained_products_same_bits<64, 64>(one_chunk, Forward::Split, "bf16 M = 64, T = 64" + form);
  }
}

// The device's placement of a shared phase's warps (DeviceCta::gemm_chain): over the CTA's warps, each of a
// chain's warps [first, first + n) is taken exactly once, by the CTA warp congruent to it, for 8 and 16 warps.
TEST(ChunkProgram, EveryWarpOfASharedPhaseIsTakenOnce) {
  for (int warps : {8, 16})
    for (int first : {0, 3, 4, 8, 12, 16, 20, 24})
      for (int n : {2, 4, 8}) {
        std::vector<int> taken(n, 0);
        for (int w = 0; w < warps; ++w)
          for (int v = decayfw::cta::first_phase_warp(w, warps, first); v < first + n; v += warps) {
            ASSERT_GE(v, first);
            EXPECT_EQ(w, v % warps);
            ++taken[v - first];
          }
        for (int c : taken) EXPECT_EQ(1, c) << warps << " warps, first " << first << ", " << n;
      }
}

// row_unit's walk of a 16-bit tile at M = 32 (rows of 64 bytes, ldm_op = 40 elements apart): every unit once, and
// each wavefront's lanes (16 of 8-byte units, 8 of 16-byte ones) on 128 distinct bytes modulo 128, where walking
// row by row puts two rows of a wavefront on the same banks. Other sizes walk row by row.
template <int kUnitBytes>
void expect_walk_on_distinct_banks() {
  constexpr int kM = 32, kU = kM * 2 / kUnitBytes, kRows = 64, kLanes = 128 / kUnitBytes;
  constexpr int kLdBytes = decayfw::chunk::CompiledConfig<BFloat16, kM>::ldm_op * 2;  // the tiles' rows as carved
  std::vector<int> seen(kRows * kU, 0);
  for (int64_t e = 0; e < int64_t(kRows) * kU; e += kLanes) {
    std::vector<int> bytes(128, 0);
    for (int l = 0; l < kLanes; ++l) {
      int row = -1, unit = -1;
      decayfw::chunk::row_unit<BFloat16, kM, kU>(e + l, row, unit);
      ASSERT_TRUE(row >= 0 && row < kRows && unit >= 0 && unit < kU) << row << ", " << unit;
      ++seen[row * kU + unit];
      for (int b = 0; b < kUnitBytes; ++b) ++bytes[(row * kLdBytes + unit * kUnitBytes + b) % 128];
    }
    EXPECT_EQ(1, *std::max_element(bytes.begin(), bytes.end())) << kUnitBytes << "-byte units, index " << e;
  }
  for (int c : seen) EXPECT_EQ(1, c);
}
TEST(ChunkProgram, RowUnitWalksEveryUnitOnceOnDistinctBanks) {
  expect_walk_on_distinct_banks<8>();   // quad_at: four 16-bit elements a lane
  expect_walk_on_distinct_banks<16>();  // stage_end_dstate's 16-byte copies
  int row = -1, col = -1;
  decayfw::chunk::quad_at<BFloat16, 16>(37, row, col);  // M = 64: a row is a wavefront
  EXPECT_EQ(2, row);
  EXPECT_EQ(20, col);
  decayfw::chunk::quad_at<float, 8>(37, row, col);  // fp32 at M = 32: 16-byte quads, a row a quarter warp's
  EXPECT_EQ(4, row);
  EXPECT_EQ(20, col);
}

// for_each_wide: every wide column once, across words, ascending from the first(n)-th of the n wide ones (mod n),
// then the ones before it; nothing without wide columns.
TEST(ChunkProgram, WideColumnsAreWalkedOnceFromTheirStart) {
  const uint32_t words[2] = {(1u << 3) | (1u << 17), (1u << 0) | (1u << 30)};  // columns 3, 17, 32, 62
  const auto walk = [&](int skip) {
    std::vector<int> cols;
    decayfw::chunk::for_each_wide<2>(
        words,
        [&](int n) {
          EXPECT_EQ(4, n);
          return skip;
        },
        [&](int c) { cols.push_back(c); });
    return cols;
  };
  EXPECT_EQ((std::vector<int>{3, 17, 32, 62}), walk(0));
  EXPECT_EQ((std::vector<int>{32, 62, 3, 17}), walk(2));
  EXPECT_EQ((std::vector<int>{62, 3, 17, 32}), walk(7));
  const uint32_t none[2] = {0u, 0u};
  int calls = 0;
  decayfw::chunk::for_each_wide<2>(
      none,
      [&](int) {
        ++calls;
        return 0;
      },
      [&](int) { ++calls; });
  EXPECT_EQ(0, calls);
}

// The diagonal blocks' layout (Pd, Rd): each block 32-byte aligned for the wmma stores into it, its rows S floats
// apart, and the same element of every block of a chunk on its own bank (the per-pair sums read them together).
TEST(ChunkProgram, DiagonalBlocksAreAlignedAndOnDistinctBanks) {
  constexpr int S = decayfw::chunk::kSub;
  for (int C : {32, 64}) {
    std::vector<int> banks;
    for (int I = 0; I < C / S; ++I) {
      const int start = decayfw::chunk::diagonal_block_offset<S>(I * S);
      EXPECT_EQ(0, start * int(sizeof(float)) % 32) << "block " << I;
      EXPECT_EQ(start + 5 * S, decayfw::chunk::diagonal_block_offset<S>(I * S + 5)) << "block " << I;
      banks.push_back((start + 5 * S + 3) % 32);
    }
    std::sort(banks.begin(), banks.end());
    EXPECT_EQ(banks.end(), std::unique(banks.begin(), banks.end())) << "C = " << C;
  }
}

// grad_pass's one-phase form (the chunk form's four chains side by side, one part each at C = 64): the same bits as
// the four phases it replaces, every gradient, at C = 64 and 32, in two orders of a phase's indices (its epilogues
// are one for_each), with as many chains. bf16: fp16 takes no chunk form (its range), so no chains either way.
template <int M, int C>
void expect_one_phase_same_bits(Problem<BFloat16> pr, const std::string& what) {
  int64_t four_chains = 0, one_chains = 0;
  const Outputs<BFloat16> four = run_programs<BFloat16, M, C, false>(pr, decayfw::cta::Order::Forward, true, false,
                                                                     nullptr, Forward::Split, &four_chains);
  pr.grad_one_phase = true;
  for (decayfw::cta::Order o : {decayfw::cta::Order::Forward, decayfw::cta::Order::Interleaved}) {
    const Outputs<BFloat16> one =
        run_programs<BFloat16, M, C, false>(pr, o, true, false, nullptr, Forward::Split, &one_chains);
    expect_same_gradients(four, one, what);
    EXPECT_EQ(four_chains, one_chains) << what;
  }
  EXPECT_GT(four_chains, 0) << what << ": no chunk was taken whole";
}
TEST(ChunkProgram, GradOnePhaseGivesTheSameBits) {
  expect_one_phase_same_bits<32, 64>(chunk_form_problem<BFloat16>(), "bf16 M = 32, narrow and wide chunks");
  Problem<BFloat16> narrow({1, 150, 2, 128, 64}, 23, 2.0, 1.0, true);
  narrow.diagonal = chunk::DiagonalForm::Chunk;
  expect_one_phase_same_bits<64, 64>(narrow, "bf16 M = 64, T = 150, two heads");
  Problem<BFloat16> wide_keys({1, 100, 1, 64, 128}, 29, 2.0, 1.0, true);
  wide_keys.diagonal = chunk::DiagonalForm::Chunk;
  expect_one_phase_same_bits<128, 32>(wide_keys, "bf16 M = 128, C = 32");
  Problem<BFloat16> small_keys({1, 96, 1, 64, 16}, 31, 2.0, 1.0, true);
  small_keys.diagonal = chunk::DiagonalForm::Chunk;
  expect_one_phase_same_bits<16, 64>(small_keys, "bf16 M = 16");
}

TEST(ChunkProgram, NoPhaseDependsOnTheOrderOfItsIndices) {
  using decayfw::cta::Order;
  const Shape s{1, 150, 2, 128, 32};
  const auto fwd = outputs_in_order<BFloat16, 32, 64>(s, Order::Forward);
  for (Order o : {Order::Reverse, Order::Interleaved}) {
    const auto other = outputs_in_order<BFloat16, 32, 64>(s, o);
    for (size_t i = 0; i < fwd.size(); ++i)
      EXPECT_EQ(0, std::memcmp(fwd[i].data(), other[i].data(), fwd[i].size() * sizeof(float))) << "output " << i;
  }
  const auto f32 = outputs_in_order<float, 128, 16>({1, 40, 1, 64, 128}, Order::Forward);
  const auto r32 = outputs_in_order<float, 128, 16>({1, 40, 1, 64, 128}, Order::Reverse);
  for (size_t i = 0; i < f32.size(); ++i)
    EXPECT_EQ(0, std::memcmp(f32[i].data(), r32[i].data(), f32[i].size() * sizeof(float))) << "output " << i;
  // Gates with both narrow and wide columns in every sub-chunk: the lists of wide columns
  // (WideList) and the indices of the others must not depend on each other either, in any form.
  for (chunk::DiagonalForm form : kDiagonalForms) {
    const auto mixed = outputs_in_order<BFloat16, 32, 64>(s, Order::Forward, true, -2.0, 3.0, form);
    for (Order o : {Order::Reverse, Order::Interleaved}) {
      const auto other = outputs_in_order<BFloat16, 32, 64>(s, o, true, -2.0, 3.0, form);
      for (size_t i = 0; i < mixed.size(); ++i)
        EXPECT_EQ(0, std::memcmp(mixed[i].data(), other[i].data(), mixed[i].size() * sizeof(float)))
            << "mixed, " << name_of(form) << ", output " << i;
    }
  }
}

// The chunk loads read 16-byte vectors where every input row is aligned, else element by element.
// Both must put the same bits in shared memory, so every output is bit-identical; and the usual
// contiguous inputs of these tests take the vector path (it is the one the other tests cover).
TEST(ChunkProgram, VectorAndElementLoadsGiveTheSameBits) {
  using decayfw::cta::Order;
  EXPECT_TRUE(chunk::inputs_allow_vector_loads(Problem<BFloat16>({1, 150, 2, 128, 64}, 21, 1.0, 2.0, true).args(), 2));
  EXPECT_TRUE(chunk::inputs_allow_vector_loads(Problem<float>({1, 150, 2, 128, 64}, 21, 1.0, 2.0, true).args(), 4));
  const auto check = [](const auto& vec, const auto& elem, const char* what) {
    ASSERT_EQ(vec.size(), elem.size());
    for (size_t i = 0; i < vec.size(); ++i)
      EXPECT_EQ(0, std::memcmp(vec[i].data(), elem[i].data(), vec[i].size() * sizeof(float))) << what << " output " << i;
  };
  const Shape s{1, 150, 2, 128, 64};
  check(outputs_in_order<BFloat16, 64, 64>(s, Order::Forward, true), outputs_in_order<BFloat16, 64, 64>(s, Order::Forward, false),
        "bf16");
  const Shape s32{2, 70, 1, 64, 32};
  check(outputs_in_order<float, 32, 32>(s32, Order::Forward, true), outputs_in_order<float, 32, 32>(s32, Order::Forward, false),
        "fp32");
}

// A backward given the forward's chunk-boundary states skips state_pass (as the launcher does with
// DecayBwdParams::chunk_states). The states are the same computation, so every gradient must be
// bit-identical to a backward that recomputes them; and the backward must leave them untouched.
template <typename In, int M, int C>
void expect_reuse_matches_recompute(const Shape& s, bool with_states, const char* what) {
  const Problem<In> pr(s, 33, 1.0, 2.0, with_states);
  std::vector<float> states_reused, states_recomputed;
  const Outputs<In> reused = run_programs<In, M, C, false>(pr, decayfw::cta::Order::Forward, true, true, &states_reused);
  const Outputs<In> recomputed =
      run_programs<In, M, C, false>(pr, decayfw::cta::Order::Forward, true, false, &states_recomputed);
  expect_same_gradients(reused, recomputed, what);
  expect_same_bits(states_reused, states_recomputed, std::string(what) + ": the chunk states after the backward");
}

TEST(ChunkProgram, BackwardReusingTheForwardStatesGivesTheSameBits) {
  expect_reuse_matches_recompute<BFloat16, 64, 64>({2, 150, 1, 128, 64}, true, "bf16, T = 150, with S0 and dS_T");
  expect_reuse_matches_recompute<BFloat16, 32, 64>({1, 64, 2, 64, 32}, false, "bf16, T = one chunk, no states");
  expect_reuse_matches_recompute<float, 32, 32>({1, 70, 1, 64, 32}, true, "fp32 as tf32");
}

// |a − b| ≤ 2 units of b's storage-type rounding at the scale of max |b| (bf16 2^-8, fp16 2^-11, fp32 2^-23 relative).
template <typename In>
void expect_within_one_rounding(const std::vector<In>& a, const std::vector<In>& b, const std::string& what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  const double unit = std::is_same_v<In, BFloat16> ? 0x1p-8 : std::is_same_v<In, Float16> ? 0x1p-11 : 0x1p-23;
  double scale = 0.0, err = 0.0;
  for (size_t i = 0; i < a.size(); ++i) {
    scale = std::max(scale, std::abs(to_double(b[i])));
    err = std::max(err, std::abs(to_double(a[i]) - to_double(b[i])));
  }
  EXPECT_LE(err, 2 * unit * scale) << what << " (max |difference| " << err << ", max |y| " << scale << ")";
}

// The fused forward (forward_pass) computes every value of state_pass and output_pass in the same
// order: S_T and the chunk states must be bit-identical to the split pair's, and so must the
// gradients of a backward that reuses its states, or recomputes them when it kept none; y too, up to
// the compiler's choice of FMAs (below).
template <typename In, int M, int C>
void expect_fused_problem_same_bits(const Problem<In>& pr, const std::string& what,
                                    decayfw::cta::Order order = decayfw::cta::Order::Forward) {
  std::vector<float> split_states, fused_states;
  const Outputs<In> split = run_programs<In, M, C, false>(pr, order, true, true, &split_states, Forward::Split);
  const Outputs<In> fused = run_programs<In, M, C, false>(pr, order, true, true, &fused_states, Forward::Fused);
  const Outputs<In> bare =
      run_programs<In, M, C, false>(pr, order, true, false, nullptr, Forward::FusedWithoutStates);
  expect_same_bits(split_states, fused_states, what + ": chunk states");
  for (const auto* o : {&fused, &bare}) {
    const std::string form = o == &fused ? "fused, " : "fused without states, ";
    // y: the same values in the same order, but in a different function, so an optimising build
    // may contract other products into FMAs (-O3 -march=native, as CI builds) and move y's last bit.
    // Within one rounding of the storage type, then; everything else stays bit-identical.
    expect_within_one_rounding(split.y, o->y, what + ": " + form + "y");
    expect_same_bits(split.sT, o->sT, what + ": " + form + "final state");
    expect_same_gradients(split, *o, what + ": " + form.substr(0, form.size() - 2));
  }
}
template <typename In, int M, int C>
void expect_fused_forward_same_bits(const Shape& s, bool with_states, const std::string& what,
                                    decayfw::cta::Order order = decayfw::cta::Order::Forward,
                                    chunk::DiagonalForm diagonal = chunk::DiagonalForm::Factored,
                                    double gate_mean = 1.0, double gate_spread = 2.0) {
  Problem<In> pr(s, 35, gate_mean, gate_spread, with_states);
  pr.diagonal = diagonal;
  expect_fused_problem_same_bits<In, M, C>(pr, what, order);
}

TEST(ChunkProgram, FusedForwardGivesTheSameBitsAsTheSplitPair) {
  using decayfw::cta::Order;
  expect_fused_forward_same_bits<BFloat16, 64, 64>({2, 150, 1, 128, 64}, true, "bf16, T = 150, with S0 and dS_T");
  expect_fused_forward_same_bits<BFloat16, 32, 64>({1, 64, 2, 64, 32}, false, "bf16, T = one chunk, no states");
  expect_fused_forward_same_bits<Float16, 16, 64>({1, 130, 1, 192, 16}, true, "fp16, three row tiles");
  expect_fused_forward_same_bits<float, 128, 16>({1, 40, 1, 64, 128}, true, "fp32 as tf32, C = 16");
  expect_fused_forward_same_bits<BFloat16, 32, 64>({1, 1, 1, 64, 32}, true, "T = 1");
  // Its phases must not depend on the order of their indices either (NoPhaseDependsOn... for the others).
  expect_fused_forward_same_bits<BFloat16, 64, 64>({1, 150, 1, 128, 64}, true, "bf16, reverse order", Order::Reverse);
  expect_fused_forward_same_bits<BFloat16, 64, 64>({1, 150, 1, 128, 64}, true, "bf16, interleaved", Order::Interleaved);
  // The chunk form, its chunks whole (logits N(2, 1)) and not (N(0, 2²): a mix).
  for (const double mean : {2.0, 0.0}) {
    const std::string gates = mean == 2.0 ? ", chunks whole" : ", chunks mixed";
    expect_fused_forward_same_bits<BFloat16, 64, 64>({2, 150, 1, 128, 64}, true, "bf16, chunk form" + gates,
                                                     Order::Forward, chunk::DiagonalForm::Chunk, mean,
                                                     mean == 2.0 ? 1.0 : 2.0);
    expect_fused_forward_same_bits<float, 32, 32>({1, 100, 1, 128, 32}, true, "tf32, chunk form" + gates,
                                                  Order::Reverse, chunk::DiagonalForm::Chunk, mean,
                                                  mean == 2.0 ? 1.0 : 2.0);
  }
  // Every reference of the state update (ChunkFormTakesNarrowChunksWhole's chunks), where the fused forward's
  // whole chunks hand their K̃ and Ṽ to the update and state_pass scales its own.
  expect_fused_problem_same_bits<BFloat16, 32, 64>(chunk_form_problem<BFloat16>(), "bf16, chunk form, each reference");
  Problem<BFloat16> factored = chunk_form_problem<BFloat16>();
  factored.diagonal = chunk::DiagonalForm::Factored;
  expect_fused_problem_same_bits<BFloat16, 32, 64>(factored, "bf16, factored form, each reference");
  expect_fused_problem_same_bits<float, 32, 64>(chunk_form_problem<float>(), "tf32, chunk form, each reference");
}

// ... and in every compiled configuration, whose ForwardSmem layouts the GPU launches (the host
// executor checks each gemm's tiles against WMMA's contract on the way).
template <typename In, int M>
void expect_fused_compiled_configuration() {
  constexpr int C = chunk::CompiledConfig<In, M>::C;
  expect_fused_forward_same_bits<In, M, C>({1, 2 * C + 5, 1, 128, M}, true,
                                           std::to_string(sizeof(In)) + "-byte operands, M" + std::to_string(M));
}
template <typename In>
void expect_fused_every_m() {
  expect_fused_compiled_configuration<In, 16>();
  expect_fused_compiled_configuration<In, 32>();
  expect_fused_compiled_configuration<In, 64>();
  expect_fused_compiled_configuration<In, 128>();
}
TEST(ChunkProgram, FusedForwardEveryCompiledConfiguration) {
  expect_fused_every_m<float>();
  expect_fused_every_m<BFloat16>();
  expect_fused_every_m<Float16>();
}

// A wrong fused forward must be seen: the comparison above is against an independent computation.
TEST(ChunkProgram, FusedForwardMatchesReference) {
  const Problem<float> pr({1, 150, 2, 128, 32}, 36, 2.0, 1.0, true);
  std::vector<double> sT64;
  const std::vector<double> y64 = ref::decay_forward(pr.p, &sT64);
  const Outputs<float> o =
      run_programs<float, 32, 64, true>(pr, decayfw::cta::Order::Forward, true, false, nullptr, Forward::FusedWithoutStates);
  EXPECT_LT(rel_error(o.y, y64), 5e-6);
  EXPECT_LT(rel_error(o.sT, sT64), 5e-6);
}

TEST(ChunkProgram, VectorLoadsNeedEveryRowAligned) {
  alignas(16) static BFloat16 buf[1024];
  const chunk::SeqIn aligned{buf, 512, 64, 16}, offset{buf + 1, 512, 64, 16}, odd_stride{buf, 512, 68, 4},
      absent{nullptr, 0, 0, 0};
  EXPECT_TRUE(chunk::rows_allow_vector_loads(aligned, 2));
  EXPECT_FALSE(chunk::rows_allow_vector_loads(offset, 2));      // one element in: 2 bytes off
  EXPECT_FALSE(chunk::rows_allow_vector_loads(odd_stride, 2));  // time stride 68 bf16 = 136 bytes
  EXPECT_TRUE(chunk::rows_allow_vector_loads(absent, 2));       // an input a pass does not read
  EXPECT_FALSE(chunk::rows_allow_vector_loads(chunk::SeqIn{buf, 512, 64, 6}, 4));  // fp32: 24 bytes
}

TEST(ChunkProgram, GemmRefusesAnOutputOverlappingAnOperand) {
  decayfw::cta::HostCta<> cta;
  decayfw::cta::HostSmem smem(64 * 64 * sizeof(float));  // 128-byte aligned, as the device's
  float* x = reinterpret_cast<float*>(smem.data());
  std::fill(x, x + 64 * 64, 1.0f);
  auto overlapping = [&] { cta.gemm<false, false>(16, 16, 16, x, 64, x + 2048, 64, x + 8, 64, false); };
  auto bad_k = [&] { cta.gemm<false, false>(16, 16, 12, x, 64, x + 2048, 64, x + 3072, 64, false); };
  auto fine = [&] { cta.gemm<false, false>(16, 16, 16, x, 64, x + 2048, 64, x + 3072, 64, false); };
  EXPECT_THROW(overlapping(), std::logic_error);
  EXPECT_THROW(bad_k(), std::logic_error);  // k not a multiple of 16
  EXPECT_NO_THROW(fine());
}

// gemm_chain refuses what its device warps could not do safely: a P that overlaps an operand (warps still read
// the operands while others store their blocks of P), and an epilogue that writes into an operand or into P.
TEST(ChunkProgram, GemmChainRefusesOverlapsAndEpiloguesWritingItsInputs) {
  using decayfw::cta::KSpan;
  decayfw::cta::HostCta<> cta;
  constexpr int kLd = 40;  // 32 columns + 8, as the programs pad
  decayfw::cta::HostSmem smem(6 * 32 * kLd * sizeof(BFloat16));
  BFloat16* x = reinterpret_cast<BFloat16*>(smem.data());
  std::fill(x, x + 6 * 32 * kLd, decayfw::to_bfloat16(0.5f));
  BFloat16 *A = x, *B0 = A + 32 * kLd, *B1 = B0 + 32 * kLd, *B2 = B1 + 32 * kLd, *P = B2 + 32 * kLd;
  std::vector<float> Y(32 * 32, 0.0f);
  const auto to_y = [&](int i, int j, const float* v) {
    for (int e = 0; e < 4; ++e)
      for (int w = 0; w < 2; ++w) Y[(i + 8 * (e & 1)) * 32 + j + 8 * (e >> 1) + w] = v[2 * e + w];
  };
  const auto run = [&](BFloat16* p, const auto& f) {
    cta.gemm_chain<KSpan::Causal, 32, 32, 32>(A, kLd, B0, kLd, B1, kLd, B2, kLd, p, kLd, f);
  };
  EXPECT_NO_THROW(run(P, to_y));
  // The causal product of 0.5s over k = 32 is 8 for j ≤ i, rounded exactly; Y = 8 + 4·(i + 1) at row i.
  EXPECT_EQ(8.0f, decayfw::to_float(P[5 * kLd + 5]));
  EXPECT_EQ(0.0f, decayfw::to_float(P[5 * kLd + 6]));
  EXPECT_EQ(8.0f + 4.0f * 6, Y[5 * 32 + 31]);
  EXPECT_THROW(run(B2, to_y), std::logic_error);     // P over B2
  EXPECT_THROW(run(A + 8, to_y), std::logic_error);  // P over A
  const BFloat16 one = decayfw::to_bfloat16(1.0f);
  EXPECT_THROW(run(P, [&](int i, int, const float*) { P[i * kLd] = one; }), std::logic_error);  // into P
  EXPECT_THROW(run(nullptr, [&](int i, int, const float*) { B1[i * kLd] = one; }), std::logic_error);
  EXPECT_NO_THROW(run(nullptr, to_y));  // no P: nothing stored
}

// Chains that share a phase (gemm_chain's first and phase): the same products as each alone, the epilogues run
// once the last chain is called, and what the device's concurrent warps could not do safely is refused: an
// epilogue writing another chain's operand, a P over another chain's operand, a chain that does not continue the
// open phase, and anything else run while the phase is open.
TEST(ChunkProgram, ChainsSharingAPhaseRunAsAloneAndRefuseWhatTheirWarpsWouldRace) {
  using decayfw::cta::KSpan;
  decayfw::cta::HostCta<> cta;
  constexpr int kLd = 40, kTile = 32 * kLd;
  decayfw::cta::HostSmem smem(9 * kTile * sizeof(BFloat16));
  BFloat16* x = reinterpret_cast<BFloat16*>(smem.data());
  std::mt19937 rng(3);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (int e = 0; e < 9 * kTile; ++e) x[e] = decayfw::to_bfloat16(normal(rng));
  BFloat16 *A = x, *B0 = A + kTile, *B1 = B0 + kTile, *B2 = B1 + kTile, *C1 = B2 + kTile, *P = C1 + kTile;
  BFloat16* const none = nullptr;  // no P
  using Y = std::vector<float>;
  const auto into = [](Y& y) {
    return [&y](int i, int j, const float* v) {
      for (int e = 0; e < 4; ++e)
        for (int w = 0; w < 2; ++w) y[(i + 8 * (e & 1)) * 32 + j + 8 * (e >> 1) + w] = v[2 * e + w];
    };
  };
  // Alone: y (causal, B1 = B1) and its transpose (anticausal, B1 = C1), two phases.
  Y alone0(32 * 32), alone1(32 * 32), shared0(32 * 32, -1.0f), shared1(32 * 32, -1.0f);
  std::fill(P, P + kTile, decayfw::to_bfloat16(0.0f));  // the padding columns too, which no chain stores
  cta.gemm_chain<KSpan::Causal, 32, 32, 32>(A, kLd, B0, kLd, B1, kLd, B2, kLd, P, kLd, into(alone0));
  const std::vector<BFloat16> p_alone(P, P + kTile);
  std::fill(P, P + kTile, decayfw::to_bfloat16(0.0f));
  cta.gemm_chain<KSpan::AntiCausal, 32, 32, 32, 2>(B0, kLd, A, kLd, C1, kLd, B2, kLd, none, 0, into(alone1));
  // Shared: 2 warps, then 4 (two parts), in one 6-warp phase; nothing is handed over before the last.
  cta.gemm_chain<KSpan::Causal, 32, 32, 32, 1, true, 0, 6>(A, kLd, B0, kLd, B1, kLd, B2, kLd, P, kLd, into(shared0));
  EXPECT_EQ(-1.0f, shared0[0]);
  EXPECT_THROW(cta.for_each(1, [](int64_t) {}), std::logic_error);  // the phase is open
  cta.gemm_chain<KSpan::AntiCausal, 32, 32, 32, 2, true, 2, 6>(B0, kLd, A, kLd, C1, kLd, B2, kLd, none, 0,
                                                               into(shared1));
  EXPECT_EQ(alone0, shared0);
  EXPECT_EQ(alone1, shared1);
  EXPECT_EQ(0, std::memcmp(p_alone.data(), P, kTile * sizeof(BFloat16)));
  // A chain that does not continue an open phase, or starts one while another is open.
  const auto noop = [](int, int, const float*) {};
  EXPECT_THROW(
      (cta.gemm_chain<KSpan::Causal, 32, 32, 32, 1, true, 2, 6>(A, kLd, B0, kLd, B1, kLd, B2, kLd, none, 0, noop)),
      std::logic_error);
  // The first chain's epilogue writes the second's B1 (C1): a race on the device, refused at the phase's end.
  const BFloat16 one = decayfw::to_bfloat16(1.0f);
  const auto racing = [&] {
    cta.gemm_chain<KSpan::Causal, 32, 32, 32, 1, true, 0, 4>(A, kLd, B0, kLd, B1, kLd, B2, kLd, none, 0,
                                                             [&](int i, int, const float*) { C1[i * kLd] = one; });
    cta.gemm_chain<KSpan::AntiCausal, 32, 32, 32, 1, true, 2, 4>(B0, kLd, A, kLd, C1, kLd, B2, kLd, none, 0, noop);
  };
  EXPECT_THROW(racing(), std::logic_error);
  // The second chain's P over the first's B2.
  decayfw::cta::HostCta<> fresh;
  fresh.gemm_chain<KSpan::Causal, 32, 32, 32, 1, true, 0, 4>(A, kLd, B0, kLd, B1, kLd, B2, kLd, none, 0, noop);
  EXPECT_THROW(
      (fresh.gemm_chain<KSpan::AntiCausal, 32, 32, 32, 1, true, 2, 4>(B0, kLd, A, kLd, C1, kLd, P, kLd, B2, kLd, noop)),
      std::logic_error);
}

// gemm_fp32 (the factored diagonal's narrow sums): each fp32 operand as two tf32 parts and three
// products, accurate to about 2^-21 of Σ|a·b| where gemm's tf32 rounding gives about 2^-11.
TEST(ChunkProgram, GemmFp32KeepsFp32AccuracyWhereTf32DoesNot) {
  decayfw::cta::HostCta<> cta;
  decayfw::cta::HostSmem smem(3 * 16 * 68 * sizeof(float));
  float* a = reinterpret_cast<float*>(smem.data());
  float *b = a + 16 * 68, *c = b + 16 * 68;
  std::mt19937 rng(7);
  std::normal_distribution<float> n(0.0f, 1.0f);
  for (int i = 0; i < 16 * 68; ++i) a[i] = n(rng), b[i] = std::exp(4.0f * n(rng));  // b: magnitudes e^{±12}
  auto worst = [&] {  // the largest error over Σ|a·b|, against fp64
    double w = 0.0;
    for (int i = 0; i < 16; ++i)
      for (int j = 0; j < 16; ++j) {
        double exact = 0.0, scale = 0.0;
        for (int p = 0; p < 64; ++p)
          exact += double(a[i * 68 + p]) * b[j * 68 + p], scale += std::fabs(double(a[i * 68 + p]) * b[j * 68 + p]);
        w = std::max(w, std::fabs(c[i * 16 + j] - exact) / scale);
      }
    return w;
  };
  cta.gemm<false, true>(16, 16, 64, a, 68, b, 68, c, 16, false);
  const double tf32 = worst();
  cta.gemm_fp32<false, true>(16, 16, 64, a, 68, b, 68, c, 16, false);
  const double split = worst();
  EXPECT_GT(tf32, 1e-4);
  EXPECT_LT(split, 1e-6);
  decayfw::cta::HostCta<true> exact;  // exact fp32 products: fp32 sums alone
  exact.gemm_fp32<false, true>(16, 16, 64, a, 68, b, 68, c, 16, false);
  EXPECT_LT(worst(), 1e-6);
}

// Two bf16 operands of 64 rows of 72, random (b right after a), and an fp32 C of c_rows × 48, in host shared memory.
struct ProductTiles {
  decayfw::cta::HostSmem smem;
  BFloat16 *a, *b;
  float* c;
  ProductTiles(int c_rows, unsigned seed) : smem(2 * 64 * 72 * sizeof(BFloat16) + size_t(c_rows) * 48 * sizeof(float)) {
    a = reinterpret_cast<BFloat16*>(smem.data());
    b = a + 64 * 72;
    c = reinterpret_cast<float*>(smem.data() + 2 * 64 * 72 * sizeof(BFloat16));
    std::mt19937 rng(seed);
    std::normal_distribution<float> n(0.0f, 1.0f);
    for (int i = 0; i < 2 * 64 * 72; ++i) a[i] = decayfw::to_bfloat16(n(rng));
  }
};

// gemm_apply hands over gemm's product, every element once, as the lanes of the tiles' warps hold it, in
// whatever order the host runs its calls; the tiles' checks are gemm's.
TEST(ChunkProgram, GemmApplyHandsOverTheProductAsTheLanesHoldIt) {
  ProductTiles tiles(32, 3);
  BFloat16 *a = tiles.a, *b = tiles.b;
  float* c = tiles.c;
  using decayfw::cta::Order;
  for (Order order : {Order::Forward, Order::Reverse, Order::Interleaved}) {
    decayfw::cta::HostCta<> cta;
    cta.order = order;
    cta.gemm<false, true>(32, 48, 64, a, 72, b, 72, c, 48, false);
    std::vector<int> seen(32 * 48, 0);
    int calls = 0;
    cta.gemm_apply<false, true>(32, 48, 64, a, 72, b, 72, [&](int i, int j, const float* v) {
      ++calls;
      // one lane's place: rows i, i + 8 and columns j, j + 8 of a 16×16 tile, j even
      EXPECT_LT(i % 16, 8);
      EXPECT_EQ(j % 2, 0);
      EXPECT_LT(j % 16, 8);
      for (int e = 0; e < 4; ++e)
        for (int w = 0; w < 2; ++w) {
          const int row = i + 8 * (e & 1), col = j + 8 * (e >> 1) + w;
          EXPECT_EQ(v[2 * e + w], c[row * 48 + col]) << row << ", " << col;  // the same sums, bit for bit
          ++seen[row * 48 + col];
        }
    });
    EXPECT_EQ(calls, 6 * 32);  // six tiles, a call per lane
    EXPECT_EQ(std::count(seen.begin(), seen.end(), 1), 32 * 48);
  }
  decayfw::cta::HostCta<> cta;
  auto nothing = [](int, int, const float*) {};
  auto bad_k = [&] { cta.gemm_apply<false, true>(32, 48, 24, a, 72, b, 72, nothing); };
  auto misaligned = [&] { cta.gemm_apply<false, true>(32, 48, 64, a + 8, 72, b, 72, nothing); };  // A 16 bytes off
  EXPECT_THROW(bad_k(), std::logic_error);
  EXPECT_THROW(misaligned(), std::logic_error);
  // An epilogue that writes into an operand races with the warps still multiplying on the device.
  auto into_b = [&] {
    cta.gemm_apply<false, true>(32, 48, 64, a, 72, b, 72, [&](int i, int j, const float*) {
      if (i == 17 && j == 2) b[5].bits ^= 1u;  // one lane of the second row of tiles
    });
  };
  EXPECT_THROW(into_b(), std::logic_error);
}

// k spans and sums of products (the chunk form's): a span sums only the k steps the device takes, and is
// refused where it would skip a nonzero; gemm_apply_sum hands over gemm's C followed by an accumulating gemm,
// bit for bit, and checks both products' operands.
TEST(ChunkProgram, GemmApplySpansAndSumsAreTheProductsAsked) {
  using decayfw::cta::KSpan;
  ProductTiles tiles(64, 5);
  BFloat16 *a = tiles.a, *b = tiles.b;
  float* c = tiles.c;
  decayfw::cta::HostCta<> cta;
  const auto collect = [](std::vector<float>& out) {
    return [&out](int i, int j, const float* v) {
      for (int e = 0; e < 4; ++e)
        for (int w = 0; w < 2; ++w) out[(i + 8 * (e & 1)) * 48 + j + 8 * (e >> 1) + w] = v[2 * e + w];
    };
  };
  // A 64×64 lower-triangular A: LowerA gives gemm's bits; with one element above the diagonal it is refused.
  for (int i = 0; i < 64; ++i)
    for (int p = i + 1; p < 64; ++p) a[i * 72 + p] = decayfw::to_bfloat16(0.0f);
  cta.gemm<false, false>(64, 48, 64, a, 72, b, 72, c, 48, false);
  std::vector<float> lower(64 * 48), sum(64 * 48);
  cta.gemm_apply<false, false, KSpan::LowerA>(64, 48, 64, a, 72, b, 72, collect(lower));
  EXPECT_EQ(0, std::memcmp(lower.data(), c, lower.size() * sizeof(float)));
  cta.gemm<false, false>(64, 48, 64, a, 72, b, 72, c, 48, true);  // C + the same product
  cta.gemm_apply_sum(64, 48, collect(sum), decayfw::cta::term<false, false>(64, a, 72, b, 72),
                     decayfw::cta::term<false, false, KSpan::LowerA>(64, a, 72, b, 72));
  EXPECT_EQ(0, std::memcmp(sum.data(), c, sum.size() * sizeof(float)));
  // Causal: tiles above the diagonal take no steps (their accumulators stay 0).
  std::vector<float> causal(64 * 48);
  cta.gemm_apply<false, false, KSpan::Causal>(64, 48, 64, a, 72, b, 72, collect(causal));
  EXPECT_EQ(causal[0 * 48 + 16], 0.0f);   // tile (0, 16)
  EXPECT_EQ(causal[0 * 48 + 32], 0.0f);   // tile (0, 32)
  EXPECT_NE(causal[16 * 48 + 16], 0.0f);  // tile (16, 16)
  EXPECT_EQ(causal[40 * 48 + 20], lower[40 * 48 + 20]);
  a[3 * 72 + 40] = decayfw::to_bfloat16(1.0f);  // above the diagonal, in a step LowerA skips for rows 0..15
  auto skips_nonzero = [&] { cta.gemm_apply<false, false, KSpan::LowerA>(64, 48, 64, a, 72, b, 72, collect(lower)); };
  EXPECT_THROW(skips_nonzero(), std::logic_error);
  a[3 * 72 + 40] = decayfw::to_bfloat16(0.0f);
  auto into_second = [&] {
    cta.gemm_apply_sum(
        64, 48,
        [&](int i, int j, const float*) {
          if (i == 17 && j == 2) b[5].bits ^= 1u;
        },
        decayfw::cta::term<false, false>(64, a, 72, a, 72), decayfw::cta::term<false, false>(64, a, 72, b, 72));
  };
  EXPECT_THROW(into_second(), std::logic_error);
}

// WMMA's load_matrix_sync/store_matrix_sync need 32-byte aligned tiles and leading dimensions in
// multiples of 16 bytes; the host executor refuses what the device could not load, naming it.
TEST(ChunkProgram, GemmRefusesTilesWmmaCannotLoad) {
  decayfw::cta::HostCta<> cta;
  decayfw::cta::HostSmem smem(3 * 64 * 64 * sizeof(float));
  auto* bytes = smem.data();
  auto* a = reinterpret_cast<BFloat16*>(bytes);
  auto* b = reinterpret_cast<BFloat16*>(bytes + 16384);
  auto* c = reinterpret_cast<float*>(bytes + 32768);
  std::fill(a, a + 16384 / 2, decayfw::to_bfloat16(0.5f));  // a and b: 16 KB each
  std::fill(b, b + 16384 / 2, decayfw::to_bfloat16(0.25f));
  auto message = [](auto&& f) {
    try {
      f();
    } catch (const std::logic_error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  // bf16 with ld 72 (144 bytes): every 16-row and 16-column tile is 32-byte aligned.
  EXPECT_EQ("no error", message([&] { cta.gemm<false, true>(32, 32, 32, a, 72, b, 72, c, 36, false); }));
  EXPECT_FLOAT_EQ(32 * 0.5f * 0.25f, c[0]);
  // Eight bf16 elements in: 16-byte aligned, enough for a vector access, not for a fragment.
  EXPECT_NE(std::string::npos, message([&] { cta.gemm<false, true>(32, 32, 32, a + 8, 72, b, 72, c, 36, false); })
                                   .find("the A tile at (0, 0) is not 32-byte aligned"));
  EXPECT_NE(std::string::npos, message([&] { cta.gemm<true, false>(32, 32, 32, a, 72, b + 8, 72, c, 36, false); })
                                   .find("the B tile at (0, 0) is not 32-byte aligned"));
  EXPECT_NE(std::string::npos, message([&] { cta.gemm<false, true>(32, 32, 32, a, 72, b, 72, c + 4, 36, true); })
                                   .find("the C tile at (0, 0) is not 32-byte aligned"));
  // ld 68 bf16 = 136 bytes: the 16-row tiles are aligned, but WMMA wants a 16-byte multiple.
  EXPECT_NE(std::string::npos, message([&] { cta.gemm<false, true>(32, 32, 32, a, 68, b, 72, c, 36, false); })
                                   .find("lda 68, ldb 72, ldc 36"));
  // fp32 (tf32) operands: four floats in is 16 bytes off.
  auto* af = reinterpret_cast<float*>(bytes);
  EXPECT_NE(std::string::npos, message([&] { cta.gemm<false, false>(16, 16, 16, af + 4, 36, af + 1024, 36, c, 36, false); })
                                   .find("the A tile at (0, 0) is not 32-byte aligned"));
}

// cp.async's contract on the host: the destination is undefined (NaN bits) until wait_async, a
// zero-fill reads nothing, misaligned addresses and a destination written in flight are refused.
TEST(ChunkProgram, AsyncCopiesLandOnlyAtTheWait) {
  decayfw::cta::HostCta<> cta;
  decayfw::cta::HostSmem smem(256);
  float* dst = reinterpret_cast<float*>(smem.data());
  std::fill(dst, dst + 64, 7.0f);
  alignas(16) static const float src[8] = {1, 2, 3, 4, 5, 6, 7, 8};
  cta.copy16_async(dst, src, true);
  cta.copy16_async(dst + 4, src + 4, false);  // a row past T: zeros, src not read
  EXPECT_EQ(2u, cta.copies_in_flight());
  EXPECT_TRUE(std::isnan(dst[0]) && std::isnan(dst[7])) << "in flight, the destination must not look valid";
  EXPECT_EQ(7.0f, dst[8]);
  cta.wait_async();
  EXPECT_EQ(0u, cta.copies_in_flight());
  EXPECT_EQ(1.0f, dst[0]);
  EXPECT_EQ(4.0f, dst[3]);
  EXPECT_EQ(0.0f, dst[4]);
  EXPECT_EQ(0.0f, dst[7]);
  EXPECT_THROW(cta.copy16_async(dst + 1, src, true), std::logic_error);  // shared side 4 bytes off
  EXPECT_THROW(cta.copy16_async(dst, src + 1, true), std::logic_error);  // global side 4 bytes off
  EXPECT_EQ(0u, cta.copies_in_flight());
  cta.copy16_async(dst, src, true);
  dst[2] = 0.5f;  // a program writing where a copy has not landed: racy on the device
  EXPECT_THROW(cta.wait_async(), std::logic_error);
}

// The serial passes overlap: each chunk's tensor-core products run while the next chunk's inputs
// are being copied (walk_chunks), in every chunk but the last. Unaligned views copy element by
// element, synchronously, and overlap nothing.
template <typename In, int M, int C>
void expect_serial_passes_overlap(const Shape& s) {
  using Cfg = chunk::Config<M, C, In>;
  const Problem<In> pr(s, 5, 1.0, 2.0, true);
  const int64_t chunks = (s.T + C - 1) / C, ctas = s.B * s.H * (s.D / chunk::kRows);
  std::vector<In> y(s.B * s.T * s.H * s.D), dq(s.B * s.T * s.H * s.M), dk(dq), df(dq), dv(y), dz(y);
  std::vector<float> sT(s.B * s.H * s.D * s.M), ds0(sT);
  const auto forward_args = [&] {
    chunk::ChunkArgs a = pr.args();
    a.y = Problem<In>::out_view(y, s, s.D);
    a.final_state = sT.data();
    return a;
  };
  chunk::ChunkArgs b = pr.args();
  b.dq = Problem<In>::out_view(dq, s, s.M), b.dk = Problem<In>::out_view(dk, s, s.M);
  b.df = Problem<In>::out_view(df, s, s.M), b.dv = Problem<In>::out_view(dv, s, s.D);
  b.dz = Problem<In>::out_view(dz, s, s.D), b.ds0 = ds0.data();
  for (const bool vector : {true, false}) {
    const std::string what = std::string(vector ? "vector" : "element") + " loads, " + name_of(s);
    const int64_t overlapped = vector ? ctas * (chunks - 1) : 0;
    decayfw::testing::HostChunkRunner<In, Cfg, false> run(decayfw::cta::Order::Forward, vector);
    chunk::ChunkArgs a = forward_args();
    run.forward(a);  // state_pass (one product per chunk) and output_pass (no copies in flight)
    EXPECT_EQ(overlapped, run.executor().gemms_while_copying) << what << ": state_pass";
    const int64_t before_backward = run.executor().gemms_while_copying;
    run.backward(b, true);  // dstate_pass (one product per chunk) and grad_pass
    EXPECT_EQ(overlapped, run.executor().gemms_while_copying - before_backward) << what << ": dstate_pass";
    decayfw::testing::HostChunkRunner<In, Cfg, false> fused(decayfw::cta::Order::Forward, vector);
    chunk::ChunkArgs f = forward_args();
    fused.forward_fused(f);  // per chunk at least y's inter-chunk product and the state update
    if (vector) EXPECT_GE(fused.executor().gemms_while_copying, 2 * overlapped) << what << ": forward_pass";
    else EXPECT_EQ(0, fused.executor().gemms_while_copying) << what << ": forward_pass";
  }
}

TEST(ChunkProgram, SerialPassesComputeWhileTheNextChunkIsCopied) {
  expect_serial_passes_overlap<BFloat16, 64, 64>({1, 3 * 64 + 5, 2, 128, 64});
  expect_serial_passes_overlap<float, 32, 32>({2, 2 * 32 + 1, 1, 64, 32});
}

// Shared memory of the compiled configurations on a Hopper SM (228 KB, 227 KB per block, 1 KB
// reserved per block): the second set of raw tiles must leave state_pass and dstate_pass at two CTAs
// per SM (their in-place operand scaling pays for it), and the fused forward and output_pass below the
// gradient pass, which sets the path's requirement (chunk_unsupported_reason).
template <typename Op, int M>
void expect_shared_memory_budget(const char* type) {
  using Cfg = chunk::CompiledConfig<Op, M>;
  constexpr size_t kSmPerSm = 228 * 1024, kReservedPerCta = 1024;
  const size_t scan = std::max(chunk::ScanSmem<Op, Cfg>(nullptr, false).bytes, chunk::ScanSmem<Op, Cfg>(nullptr, true).bytes);
  const size_t fused = chunk::ForwardSmem<Op, Cfg>(nullptr).bytes, grad = chunk::ChunkSmem<Op, Cfg>(nullptr, chunk::ChunkCarve::Grad).bytes;
  EXPECT_LE(2 * (scan + kReservedPerCta), kSmPerSm) << type << " M = " << M << ": the serial passes take " << scan;
  EXPECT_LE(fused, grad) << type << " M = " << M;
  const size_t output = chunk::ChunkSmem<Op, Cfg>(nullptr, chunk::ChunkCarve::Output).bytes;
  EXPECT_LE(output, grad) << type << " M = " << M;
  EXPECT_LE(grad, 227u * 1024) << type << " M = " << M;
}
template <typename Op>
void expect_every_m_within_budget(const char* type) {
  expect_shared_memory_budget<Op, 16>(type);
  expect_shared_memory_budget<Op, 32>(type);
  expect_shared_memory_budget<Op, 64>(type);
  expect_shared_memory_budget<Op, 128>(type);
}

TEST(ChunkProgram, SharedMemoryLeavesTwoSerialCtasPerSm) {
  expect_every_m_within_budget<BFloat16>("bf16");
  expect_every_m_within_budget<Float16>("fp16");
  expect_every_m_within_budget<float>("tf32");
}

// A test that could not fail would prove nothing: a deliberately broken input (one flipped gate)
// must be seen.
TEST(ChunkProgram, ComparisonDetectsAWrongAnswer) {
  Problem<float> pr({1, 100, 1, 64, 32}, 17, 2.0, 1.0, true);
  std::vector<double> sT64;
  const std::vector<double> y64 = ref::decay_forward(pr.p, &sT64);
  pr.z[70 * 64 + 5] = -pr.z[70 * 64 + 5];  // the kernel sees another gate than the reference
  EXPECT_GT(rel_error(run_programs<float, 32, 64, true>(pr).y, y64), 1e-3);
}

}  // namespace
