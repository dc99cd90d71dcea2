// The decay-rule op on CPU against the readable fp64 reference (kernels/reference/decay_naive.h),
// central finite differences, segment/step consistency, saturated gates and bad input.
#include <gtest/gtest.h>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <cmath>
#include <string>
#include <vector>

#include "decay_naive.h"
#include "decayfw/cpu/decay_cpu.h"
#include "op_handles.h"

namespace dt = decayfw::testing;
using decayfw::reference::DecayProblem;

namespace {

std::vector<double> to_vec(const at::Tensor& t) {
  at::Tensor c = t.to(at::kDouble).contiguous();
  return std::vector<double>(c.data_ptr<double>(), c.data_ptr<double>() + c.numel());
}

at::Tensor from_vec(const std::vector<double>& v, at::IntArrayRef shape) {
  return at::tensor(v, at::kDouble).reshape(shape);
}

struct Inputs {
  at::Tensor q, k, v, z, f, s0;
};

Inputs make_inputs(int64_t B, int64_t T, int64_t H, int64_t D, int64_t M, at::ScalarType dtype, uint64_t seed,
                   double gate_mean = 2.0) {
  at::manual_seed(seed);
  auto o = at::TensorOptions().dtype(at::kDouble);
  Inputs in;
  // Keys and queries scaled like a normalised projection so states stay O(1) over long T.
  in.q = at::randn({B, T, H, M}, o) / std::sqrt(static_cast<double>(M));
  in.k = at::randn({B, T, H, M}, o) / std::sqrt(static_cast<double>(M));
  in.v = at::randn({B, T, H, D}, o);
  in.z = at::randn({B, T, H, D}, o) + gate_mean;
  in.f = at::randn({B, T, H, M}, o) + gate_mean;
  in.s0 = at::randn({B, H, D, M}, o);
  for (at::Tensor* t : {&in.q, &in.k, &in.v, &in.z, &in.f}) *t = t->to(dtype);
  if (dtype != at::kDouble) in.s0 = in.s0.to(at::kFloat);
  return in;
}

DecayProblem problem_of(const Inputs& in, bool with_s0) {
  DecayProblem p;
  p.B = in.q.size(0);
  p.T = in.q.size(1);
  p.H = in.q.size(2);
  p.M = in.q.size(3);
  p.D = in.v.size(3);
  p.q = to_vec(in.q);
  p.k = to_vec(in.k);
  p.v = to_vec(in.v);
  p.z = to_vec(in.z);
  p.f = to_vec(in.f);
  if (with_s0) p.s0 = to_vec(in.s0);
  return p;
}

double max_rel_err(const at::Tensor& got, const at::Tensor& want) {
  const at::Tensor g = got.to(at::kDouble), w = want.to(at::kDouble);
  const double scale = std::max(1.0, w.abs().max().item<double>());
  return (g - w).abs().max().item<double>() / scale;
}

}  // namespace

// ------------------------------------------------------------------------------------------------
// forward and backward against the naive fp64 loop over random sizes

struct Size {
  int64_t B, T, H, D, M;
};

class DecayVsReference : public ::testing::TestWithParam<Size> {};

TEST_P(DecayVsReference, ForwardAndBackwardMatchNaiveLoopInFp64) {
  const Size s = GetParam();
  for (bool with_s0 : {false, true}) {
    const Inputs in = make_inputs(s.B, s.T, s.H, s.D, s.M, at::kDouble, 1234 + s.T + s.D);
    const DecayProblem p = problem_of(in, with_s0);
    std::vector<double> sT_ref;
    const std::vector<double> y_ref = decayfw::reference::decay_forward(p, &sT_ref);
    auto [y, sT] = dt::decay_fwd(in.q, in.k, in.v, in.z, in.f,
                                 with_s0 ? c10::optional<at::Tensor>(in.s0) : c10::nullopt);
    EXPECT_LT(max_rel_err(y, from_vec(y_ref, y.sizes())), 1e-12) << "y, with_s0=" << with_s0;
    EXPECT_LT(max_rel_err(sT, from_vec(sT_ref, sT.sizes())), 1e-12) << "final state";

    const at::Tensor dy = at::randn_like(y);
    const at::Tensor dsT = at::randn_like(sT);
    const auto g_ref = decayfw::reference::decay_backward(p, to_vec(dy), to_vec(dsT));
    auto [dq, dk, dv, dz, df, ds0] = dt::decay_bwd(
        in.q, in.k, in.v, in.z, in.f, with_s0 ? c10::optional<at::Tensor>(in.s0) : c10::nullopt, dy, dsT);
    EXPECT_LT(max_rel_err(dq, from_vec(g_ref.dq, dq.sizes())), 1e-11) << "dq";
    EXPECT_LT(max_rel_err(dk, from_vec(g_ref.dk, dk.sizes())), 1e-11) << "dk";
    EXPECT_LT(max_rel_err(dv, from_vec(g_ref.dv, dv.sizes())), 1e-11) << "dv";
    EXPECT_LT(max_rel_err(dz, from_vec(g_ref.dz, dz.sizes())), 1e-10) << "dz";
    EXPECT_LT(max_rel_err(df, from_vec(g_ref.df, df.sizes())), 1e-10) << "df";
    EXPECT_LT(max_rel_err(ds0, from_vec(g_ref.ds0, ds0.sizes())), 1e-11) << "ds0";
  }
}

// N = B*H in {1, 3, 64}; T in {1, 2, 17, 1000}; D, M in {1, 3, 4, 16, 32, 64, 128}. The naive
// backward keeps all T states, so the largest shapes use few sequences.
INSTANTIATE_TEST_SUITE_P(
    Sizes, DecayVsReference,
    ::testing::Values(Size{1, 1, 1, 1, 1}, Size{1, 2, 1, 3, 4}, Size{3, 17, 1, 4, 3}, Size{1, 17, 3, 16, 1},
                      Size{1, 1000, 1, 32, 16}, Size{1, 1000, 3, 4, 128}, Size{4, 17, 16, 64, 32},
                      Size{8, 2, 8, 128, 64}, Size{1, 17, 1, 128, 128}, Size{2, 1000, 32, 3, 4},
                      Size{1, 100, 1, 64, 64}, Size{1, 2, 3, 1, 128}),
    [](const ::testing::TestParamInfo<Size>& i) {
      const Size s = i.param;
      return "B" + std::to_string(s.B) + "T" + std::to_string(s.T) + "H" + std::to_string(s.H) + "D" +
             std::to_string(s.D) + "M" + std::to_string(s.M);
    });

// ------------------------------------------------------------------------------------------------
// gradients against central finite differences (fp64), every input including the initial state

TEST(DecayGradients, MatchCentralFiniteDifferences) {
  const Inputs in = make_inputs(2, 5, 2, 3, 4, at::kDouble, 7, 0.5);
  const at::Tensor dy = at::randn({2, 5, 2, 3}, at::kDouble);
  const at::Tensor dsT = at::randn({2, 2, 3, 4}, at::kDouble);
  auto loss = [&](const Inputs& x) {
    auto [y, sT] = dt::decay_fwd(x.q, x.k, x.v, x.z, x.f, x.s0);
    return (y * dy).sum().item<double>() + (sT * dsT).sum().item<double>();
  };
  auto grads = dt::decay_bwd(in.q, in.k, in.v, in.z, in.f, in.s0, dy, dsT);
  const std::vector<std::pair<const char*, at::Tensor>> analytic = {
      {"q", std::get<0>(grads)}, {"k", std::get<1>(grads)}, {"v", std::get<2>(grads)},
      {"z", std::get<3>(grads)}, {"f", std::get<4>(grads)}, {"s0", std::get<5>(grads)}};
  const double eps = 1e-6;
  for (size_t which = 0; which < analytic.size(); ++which) {
    Inputs x{in.q.clone(), in.k.clone(), in.v.clone(), in.z.clone(), in.f.clone(), in.s0.clone()};
    at::Tensor* target[] = {&x.q, &x.k, &x.v, &x.z, &x.f, &x.s0};
    at::Tensor flat = target[which]->view(-1);
    const at::Tensor want = analytic[which].second.reshape(-1);
    for (int64_t i = 0; i < flat.numel(); ++i) {
      const double orig = flat[i].item<double>();
      flat[i] = orig + eps;
      const double lp = loss(x);
      flat[i] = orig - eps;
      const double lm = loss(x);
      flat[i] = orig;
      const double fd = (lp - lm) / (2 * eps);
      EXPECT_NEAR(want[i].item<double>(), fd, 1e-6 * std::max(1.0, std::abs(fd)))
          << "d" << analytic[which].first << "[" << i << "]";
    }
  }
}

// ------------------------------------------------------------------------------------------------
// segments and decode steps

TEST(DecayConsistency, TwoSegmentsWithCarriedStateEqualOnePass) {
  const Inputs in = make_inputs(2, 40, 3, 16, 8, at::kFloat, 11);
  auto [y, sT] = dt::decay_fwd(in.q, in.k, in.v, in.z, in.f, in.s0);
  auto part = [&](int64_t a, int64_t b) {
    return std::vector<at::Tensor>{in.q.slice(1, a, b), in.k.slice(1, a, b), in.v.slice(1, a, b),
                                   in.z.slice(1, a, b), in.f.slice(1, a, b)};
  };
  const auto p1 = part(0, 23), p2 = part(23, 40);
  auto [y1, s1] = dt::decay_fwd(p1[0], p1[1], p1[2], p1[3], p1[4], in.s0);
  auto [y2, s2] = dt::decay_fwd(p2[0], p2[1], p2[2], p2[3], p2[4], s1);
  EXPECT_TRUE(at::allclose(at::cat({y1, y2}, 1), y, 1e-5, 1e-5));
  EXPECT_TRUE(at::allclose(s2, sT, 1e-5, 1e-5));
}

TEST(DecayConsistency, DecodeStepsEqualOneForward) {
  for (at::ScalarType dtype : {at::kFloat, at::kDouble}) {
    const Inputs in = make_inputs(2, 25, 4, 32, 16, dtype, 12);
    auto [y, sT] = dt::decay_fwd(in.q, in.k, in.v, in.z, in.f, in.s0);
    at::Tensor state = in.s0.clone();
    for (int64_t t = 0; t < 25; ++t) {
      at::Tensor yt = dt::decay_step(in.q.select(1, t), in.k.select(1, t), in.v.select(1, t), in.z.select(1, t),
                                     in.f.select(1, t), state);
      EXPECT_LT(max_rel_err(yt, y.select(1, t)), dtype == at::kDouble ? 1e-13 : 1e-6) << "t=" << t;
    }
    EXPECT_LT(max_rel_err(state, sT), dtype == at::kDouble ? 1e-13 : 1e-6);
  }
}

TEST(DecayLayout, TimeFirstStridedViewsEqualContiguousInputs) {
  // fairseq hands [T, B, C]; a projection viewed as [T, B, H, X] and transposed is a valid input.
  const int64_t T = 9, B = 3, H = 2, D = 8, M = 4;
  at::manual_seed(3);
  auto tf = [&](int64_t X) { return at::randn({T, B, H, X}); };
  at::Tensor q = tf(M), k = tf(M), v = tf(D), z = tf(D), f = tf(M);
  auto [y_view, s_view] =
      dt::decay_fwd(q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1), z.transpose(0, 1), f.transpose(0, 1));
  auto [y_cont, s_cont] = dt::decay_fwd(q.transpose(0, 1).contiguous(), k.transpose(0, 1).contiguous(),
                                        v.transpose(0, 1).contiguous(), z.transpose(0, 1).contiguous(),
                                        f.transpose(0, 1).contiguous());
  EXPECT_TRUE(at::equal(y_view, y_cont));
  EXPECT_TRUE(at::equal(s_view, s_cont));
  // The output keeps the time-first layout of v, so the output projection needs no copy.
  EXPECT_TRUE(y_view.transpose(0, 1).is_contiguous());
}

// ------------------------------------------------------------------------------------------------
// threading: row blocks (few sequences, many threads) give the same numbers as whole sequences

TEST(DecayThreading, RowBlockSplitMatchesSingleBlock) {
  // T·D·M = 300·64·16 is above the size under which the op stays on one thread
  const Inputs in = make_inputs(1, 300, 1, 64, 16, at::kDouble, 21);
  const at::Tensor dy = at::randn({1, 300, 1, 64}, at::kDouble);
  const at::Tensor dsT = at::randn({1, 1, 64, 16}, at::kDouble);
  const int threads_before = at::get_num_threads();
  at::set_num_threads(1);
  auto [y1, s1] = dt::decay_fwd(in.q, in.k, in.v, in.z, in.f, in.s0);
  auto g1 = dt::decay_bwd(in.q, in.k, in.v, in.z, in.f, in.s0, dy, dsT);
  at::set_num_threads(std::max(2, threads_before));
  auto [y2, s2] = dt::decay_fwd(in.q, in.k, in.v, in.z, in.f, in.s0);
  auto g2 = dt::decay_bwd(in.q, in.k, in.v, in.z, in.f, in.s0, dy, dsT);
  at::set_num_threads(threads_before);
  EXPECT_LT(max_rel_err(y2, y1), 1e-14);
  EXPECT_LT(max_rel_err(s2, s1), 1e-14);
  EXPECT_LT(max_rel_err(std::get<0>(g2), std::get<0>(g1)), 1e-12);
  EXPECT_LT(max_rel_err(std::get<1>(g2), std::get<1>(g1)), 1e-12);
  EXPECT_LT(max_rel_err(std::get<4>(g2), std::get<4>(g1)), 1e-12);
  EXPECT_LT(max_rel_err(std::get<5>(g2), std::get<5>(g1)), 1e-12);
}

TEST(DecayThreading, ManyRowBlocksThroughTheKernelInterface) {
  // Drive the framework-free kernel with 8 simulated threads and one sequence, so it splits the 64
  // rows into 4 blocks and reduces dq/dk/df across them.
  EXPECT_EQ(decayfw::cpu::row_blocks_for(1, 64, 8), 4);
  EXPECT_EQ(decayfw::cpu::row_blocks_for(64, 64, 8), 1);
  EXPECT_EQ(decayfw::cpu::row_blocks_for(3, 4, 8), 1);
  const Inputs in = make_inputs(1, 30, 1, 64, 8, at::kDouble, 5);
  const at::Tensor dy = at::randn({1, 30, 1, 64}, at::kDouble);
  decayfw::cpu::Executor ex;
  ex.num_threads = 8;
  ex.parallel_for = [](int64_t n, const std::function<void(int64_t, int64_t)>& body) {
    for (int64_t i = n - 1; i >= 0; --i) body(i, i + 1);  // reverse order: no hidden ordering assumption
  };
  at::Tensor dq = at::empty_like(in.q), dk = at::empty_like(in.k), dv = at::empty_like(in.v),
             dz = at::empty_like(in.z), df = at::empty_like(in.f), ds0 = at::empty_like(in.s0);
  decayfw::DecayBwdParams p;
  p.dims = {1, 30, 1, 64, 8};
  p.dtype = decayfw::ScalarType::Float64;
  auto cref = [](const at::Tensor& t) {
    return decayfw::ConstSeqRef{t.data_ptr(), t.stride(0), t.stride(1), t.stride(2)};
  };
  auto mref = [](at::Tensor& t) { return decayfw::SeqRef{t.data_ptr(), t.stride(0), t.stride(1), t.stride(2)}; };
  p.q = cref(in.q);
  p.k = cref(in.k);
  p.v = cref(in.v);
  p.z = cref(in.z);
  p.f = cref(in.f);
  p.dy = cref(dy);
  p.dq = mref(dq);
  p.dk = mref(dk);
  p.dv = mref(dv);
  p.dz = mref(dz);
  p.df = mref(df);
  p.initial_state = in.s0.data_ptr();
  p.grad_initial_state = ds0.data_ptr();
  decayfw::cpu::decay_backward(p, ex);
  const auto g_ref = decayfw::reference::decay_backward(problem_of(in, true), to_vec(dy), {});
  EXPECT_LT(max_rel_err(dq, from_vec(g_ref.dq, dq.sizes())), 1e-11);
  EXPECT_LT(max_rel_err(dk, from_vec(g_ref.dk, dk.sizes())), 1e-11);
  EXPECT_LT(max_rel_err(df, from_vec(g_ref.df, df.sizes())), 1e-10);
  EXPECT_LT(max_rel_err(dz, from_vec(g_ref.dz, dz.sizes())), 1e-10);
  EXPECT_LT(max_rel_err(ds0, from_vec(g_ref.ds0, ds0.sizes())), 1e-11);
}

// ------------------------------------------------------------------------------------------------
// 16-bit inputs: loaded as fp32, state and accumulation fp32

TEST(DecayPrecision, HalfAndBFloat16InputsAccumulateInFp32) {
  const Inputs in = make_inputs(2, 300, 2, 32, 16, at::kFloat, 31);
  for (at::ScalarType dtype : {at::kBFloat16, at::kHalf}) {
    // Compare against fp32 on the same rounded inputs: what remains is output rounding only.
    Inputs r{in.q.to(dtype), in.k.to(dtype), in.v.to(dtype), in.z.to(dtype), in.f.to(dtype), in.s0};
    auto [y16, s16] = dt::decay_fwd(r.q, r.k, r.v, r.z, r.f, r.s0);
    EXPECT_EQ(y16.scalar_type(), dtype);
    EXPECT_EQ(s16.scalar_type(), at::kFloat);
    auto [y32, s32] = dt::decay_fwd(r.q.to(at::kFloat), r.k.to(at::kFloat), r.v.to(at::kFloat),
                                    r.z.to(at::kFloat), r.f.to(at::kFloat), r.s0);
    EXPECT_LT(max_rel_err(y16, y32), dtype == at::kBFloat16 ? 1e-2 : 2e-3) << dtype;
    EXPECT_LT(max_rel_err(s16, s32), 1e-6) << "state must be computed in fp32 for " << dtype;
    const at::Tensor dy = at::randn_like(y32);
    auto g16 = dt::decay_bwd(r.q, r.k, r.v, r.z, r.f, r.s0, dy.to(dtype), c10::nullopt);
    auto g32 = dt::decay_bwd(r.q.to(at::kFloat), r.k.to(at::kFloat), r.v.to(at::kFloat), r.z.to(at::kFloat),
                             r.f.to(at::kFloat), r.s0, dy.to(dtype).to(at::kFloat), c10::nullopt);
    EXPECT_LT(max_rel_err(std::get<3>(g16), std::get<3>(g32)), dtype == at::kBFloat16 ? 1e-2 : 2e-3) << "dz";
    EXPECT_LT(max_rel_err(std::get<4>(g16), std::get<4>(g32)), dtype == at::kBFloat16 ? 1e-2 : 2e-3) << "df";
  }
}

// ------------------------------------------------------------------------------------------------
// saturated gates over a long sequence

TEST(DecayNumerics, SaturatedGatesOverLongSequencesStayFiniteAndMatch) {
  const int64_t T = 65536, D = 4, M = 4;
  at::manual_seed(99);
  auto sat = [&](int64_t X) {  // logits of ±30: gates within 1e-13 of 0 or 1
    return at::where(at::rand({1, T, 1, X}) < 0.5, at::full({1, T, 1, X}, -30.0), at::full({1, T, 1, X}, 30.0))
        .to(at::kDouble);
  };
  Inputs in;
  in.q = at::randn({1, T, 1, M}, at::kDouble) * 0.1;
  in.k = at::randn({1, T, 1, M}, at::kDouble) * 0.1;
  in.v = at::randn({1, T, 1, D}, at::kDouble);
  in.z = sat(D);
  in.f = sat(M);
  const DecayProblem p = problem_of(in, false);
  std::vector<double> sT_ref;
  const at::Tensor y_ref = from_vec(decayfw::reference::decay_forward(p, &sT_ref), {1, T, 1, D});
  for (at::ScalarType dtype : {at::kDouble, at::kFloat}) {
    auto [y, sT] = dt::decay_fwd(in.q.to(dtype), in.k.to(dtype), in.v.to(dtype), in.z.to(dtype), in.f.to(dtype));
    ASSERT_TRUE(at::isfinite(y).all().item<bool>()) << dtype;
    ASSERT_TRUE(at::isfinite(sT).all().item<bool>()) << dtype;
    EXPECT_LT(max_rel_err(y, y_ref), dtype == at::kDouble ? 1e-9 : 1e-3) << dtype;
    auto g = dt::decay_bwd(in.q.to(dtype), in.k.to(dtype), in.v.to(dtype), in.z.to(dtype), in.f.to(dtype),
                           c10::nullopt, at::ones_like(y), at::ones_like(sT));
    for (const at::Tensor& t : {std::get<0>(g), std::get<1>(g), std::get<2>(g), std::get<3>(g), std::get<4>(g)})
      ASSERT_TRUE(at::isfinite(t).all().item<bool>()) << "gradient not finite for " << dtype;
  }
}

// ------------------------------------------------------------------------------------------------
// bad input: the message names the argument and the expected shape; nothing crashes

void expect_error(const std::function<void()>& fn, const std::vector<std::string>& fragments) {
  try {
    fn();
    ADD_FAILURE() << "expected an error mentioning " << fragments.front();
  } catch (const c10::Error& e) {
    const std::string msg = e.what_without_backtrace();
    for (const auto& frag : fragments) EXPECT_NE(msg.find(frag), std::string::npos) << "'" << frag << "' not in: " << msg;
  }
}

TEST(DecayBadInput, ErrorsNameTheArgumentAndExpectedShape) {
  const Inputs in = make_inputs(2, 5, 3, 8, 4, at::kFloat, 1);
  expect_error([&] { dt::decay_fwd(in.q, in.k.narrow(3, 0, 3), in.v, in.z, in.f); },
               {"'k'", "[B, T, H, M] = [2, 5, 3, 4]", "[2, 5, 3, 3]"});
  expect_error([&] { dt::decay_fwd(in.q, in.k, in.v, in.z.narrow(1, 0, 4), in.f); },
               {"'z'", "[B, T, H, D] = [2, 5, 3, 8]"});
  expect_error([&] { dt::decay_fwd(in.q, in.k, in.v.sum(3), in.z, in.f); }, {"'v'", "rank 4"});
  expect_error([&] { dt::decay_fwd(in.q, in.k.to(at::kDouble), in.v, in.z, in.f); }, {"'k'", "dtype"});
  expect_error([&] { dt::decay_fwd(in.q.to(at::kInt), in.k, in.v, in.z, in.f); }, {"'q'", "dtype"});
  expect_error([&] { dt::decay_fwd(in.q, in.k, in.v, in.z, in.f, at::zeros({2, 3, 8, 5})); },
               {"'initial_state'", "[B, H, D, M] = [2, 3, 8, 4]"});
  expect_error([&] { dt::decay_fwd(in.q, in.k, in.v, in.z, in.f, at::zeros({2, 3, 8, 4}, at::kDouble)); },
               {"'initial_state'", "Float"});
  expect_error([&] { dt::decay_fwd(in.q, in.k.transpose(2, 3).contiguous().transpose(2, 3), in.v, in.z, in.f); },
               {"'k'", "contiguous in its last dimension"});
  expect_error([&] {
    dt::decay_fwd(in.q.narrow(1, 0, 0), in.k.narrow(1, 0, 0), in.v.narrow(1, 0, 0), in.z.narrow(1, 0, 0),
                  in.f.narrow(1, 0, 0));
  },
               {"'q'", "empty"});
  at::Tensor state = at::zeros({2, 3, 8, 4});
  expect_error([&] { dt::decay_step(in.q.select(1, 0), in.k.select(1, 0), in.v.select(1, 0), in.z.select(1, 0), in.f, state); },
               {"'f'", "rank 3"});
  at::Tensor bad_state = at::zeros({2, 3, 4, 8});
  expect_error([&] {
    dt::decay_step(in.q.select(1, 0), in.k.select(1, 0), in.v.select(1, 0), in.z.select(1, 0), in.f.select(1, 0),
                   bad_state);
  },
               {"'state'", "[B, H, D, M] = [2, 3, 8, 4]"});
  expect_error([&] { dt::decay_bwd(in.q, in.k, in.v, in.z, in.f, c10::nullopt, in.v.narrow(3, 0, 2), c10::nullopt); },
               {"'dy'", "[B, T, H, D]"});
}

// ------------------------------------------------------------------------------------------------
// the training forward and the reusable chunk states (kept only by the CUDA chunk path)

TEST(DecayTrainingForward, CpuKeepsNoChunkStatesAndGivesDecayFwdsOutputs) {
  const Inputs in = make_inputs(2, 70, 3, 8, 4, at::kFloat, 5);
  auto [y, sT] = dt::decay_fwd(in.q, in.k, in.v, in.z, in.f, in.s0);
  auto [y_train, sT_train, states] = dt::decay_fwd_train(in.q, in.k, in.v, in.z, in.f, in.s0);
  EXPECT_TRUE(at::equal(y, y_train));
  EXPECT_TRUE(at::equal(sT, sT_train));
  EXPECT_EQ(states.numel(), 0);
  EXPECT_EQ(states.scalar_type(), at::kFloat);
  // Passing the (empty) states back changes nothing.
  const at::Tensor dy = at::randn_like(in.v);
  const auto g = dt::decay_bwd(in.q, in.k, in.v, in.z, in.f, in.s0, dy, c10::nullopt);
  const auto g_states = dt::decay_bwd(in.q, in.k, in.v, in.z, in.f, in.s0, dy, c10::nullopt, states);
  EXPECT_TRUE(at::equal(std::get<0>(g), std::get<0>(g_states)));
  EXPECT_TRUE(at::equal(std::get<4>(g), std::get<4>(g_states)));
  EXPECT_TRUE(at::equal(std::get<5>(g), std::get<5>(g_states)));
  EXPECT_EQ(dt::decay_chunk_size(2, 70, 3, 8, 4, at::kFloat, c10::Device(c10::kCPU)), 0);
}

TEST(DecayTrainingForward, BadChunkStatesAreNamed) {
  const Inputs in = make_inputs(2, 5, 3, 8, 4, at::kFloat, 1);
  const at::Tensor dy = at::randn_like(in.v);
  const auto bwd = [&](const at::Tensor& states) {
    dt::decay_bwd(in.q, in.k, in.v, in.z, in.f, c10::nullopt, dy, c10::nullopt, states);
  };
  expect_error([&] { bwd(at::zeros({2, 3, 2, 8, 5})); }, {"'chunk_states'", "[B, H, chunks + 1, D, M] = [2, 3, chunks + 1, 8, 4]", "[2, 3, 2, 8, 5]"});
  expect_error([&] { bwd(at::zeros({2, 3, 8, 4})); }, {"'chunk_states'", "decay_fwd_train"});
  expect_error([&] { bwd(at::zeros({2, 3, 2, 8, 4}, at::kDouble)); }, {"'chunk_states'", "float32", "Double"});
  expect_error([&] { bwd(at::zeros({2, 3, 8, 2, 4}).transpose(2, 3)); }, {"'chunk_states'", "contiguous"});
  expect_error([&] { dt::decay_chunk_size(2, -1, 3, 8, 4, at::kFloat, c10::Device(c10::kCPU)); }, {"T = -1"});
  expect_error([&] { dt::decay_chunk_size(2, 5, 3, 8, 4, at::kInt, c10::Device(c10::kCPU)); }, {"dtype", "Int"});
  expect_error([&] { dt::decay_chunk_size(2, 5, 3, 8, 4, at::kFloat, c10::Device(c10::kMeta)); }, {"CPU and CUDA", "meta"});
}
