// The CUDA vectorised decode step's CTA program (kernels/cuda/decay_step_program.h), run on the CPU
// through HostCta: T steps equal the fp64 reference's forward, for any D, every M that is a
// multiple of 4, 16-bit inputs, and in every index order.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "cta/host_cta.h"
#include "decay_naive.h"
#include "decay_step_program.h"
#include "step_host_driver.h"

namespace {

using decayfw::BFloat16;
namespace ref = decayfw::reference;
namespace step = decayfw::step;
using Host = decayfw::cta::HostCta<>;

template <typename In>
struct StepRun {
  double y_err = 0.0, s_err = 0.0;
  std::vector<float> state, y_all;
};

// Runs T steps of B×H sequences with the program; returns max relative errors against the reference.
template <typename In>
StepRun<In> run_steps(int64_t B, int64_t T, int64_t H, int64_t D, int64_t M, uint64_t seed,
                      decayfw::cta::Order order = decayfw::cta::Order::Forward) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> n01(0.0, 1.0);
  ref::DecayProblem p;
  p.B = B, p.T = T, p.H = H, p.D = D, p.M = M;
  std::vector<In> q, k, f, v, z;
  auto fill = [&](std::vector<In>& x, std::vector<double>& x64, int64_t n, double scale, double mean) {
    for (int64_t i = 0; i < n; ++i) {
      x.push_back(Host::from_f<In>(static_cast<float>(mean + scale * n01(rng))));
      x64.push_back(Host::to_f(x.back()));
    }
  };
  const int64_t nm = B * T * H * M, nd = B * T * H * D;
  fill(q, p.q, nm, 1.0 / std::sqrt(double(M)), 0.0);
  fill(k, p.k, nm, 1.0 / std::sqrt(double(M)), 0.0);
  fill(f, p.f, nm, 1.0, 2.0);
  fill(v, p.v, nd, 1.0, 0.0);
  fill(z, p.z, nd, 1.0, 2.0);
  StepRun<In> r;
  // The state in an over-allocated buffer, placed at a 16-byte boundary as the CUDA allocator does.
  std::vector<float> buf(static_cast<size_t>(B * H * D * M) + 4);
  float* S = buf.data() + ((16 - reinterpret_cast<uintptr_t>(buf.data()) % 16) % 16) / sizeof(float);
  for (int64_t i = 0; i < B * H * D * M; ++i) {
    S[i] = static_cast<float>(n01(rng));
    p.s0.push_back(S[i]);
  }
  std::vector<double> sT;
  const std::vector<double> y64 = ref::decay_forward(p, &sT);

  Host cta;
  cta.order = order;
  decayfw::cta::HostSmem smem(step::smem_bytes(M));
  std::vector<In> y(static_cast<size_t>(B * H * D));
  double yscale = 1.0;
  for (double x : y64) yscale = std::max(yscale, std::abs(x));
  for (int64_t t = 0; t < T; ++t) {
    const step::StepArgs a = decayfw::testing::step_args_at(t, B, T, H, D, M, q, k, f, v, z, y, S);
    for (int64_t n = 0; n < B * H; ++n)
      for (int64_t blk = 0; blk < (D + step::kRows - 1) / step::kRows; ++blk) {
        smem.poison();
        step::step_program<Host, In>(cta, a, n, blk, smem.data());
      }
    for (int64_t bb = 0; bb < B; ++bb)
      for (int64_t h = 0; h < H; ++h)
        for (int64_t d = 0; d < D; ++d) {
          const double got = Host::to_f(y[(bb * H + h) * D + d]);
          r.y_all.push_back(static_cast<float>(got));
          r.y_err = std::max(r.y_err, std::abs(got - y64[((bb * T + t) * H + h) * D + d]) / yscale);
        }
  }
  double sscale = 1.0;
  for (double x : sT) sscale = std::max(sscale, std::abs(x));
  for (size_t i = 0; i < sT.size(); ++i) r.s_err = std::max(r.s_err, std::abs(S[i] - sT[i]) / sscale);
  r.state.assign(S, S + sT.size());
  return r;
}

TEST(StepProgram, StepsEqualTheReferenceForward) {
  for (auto [D, M] : {std::pair<int64_t, int64_t>{64, 64}, {128, 32}, {100, 20}, {33, 4}, {64, 256}, {200, 128}}) {
    const StepRun<float> r = run_steps<float>(2, 20, 3, D, M, 1 + D + M);
    EXPECT_LT(r.y_err, 2e-6) << "D " << D << " M " << M;
    EXPECT_LT(r.s_err, 2e-6) << "D " << D << " M " << M;
  }
}

TEST(StepProgram, Bf16InputsWithFp32State) {
  const StepRun<BFloat16> r = run_steps<BFloat16>(1, 50, 2, 128, 64, 7);
  EXPECT_LT(r.y_err, 1e-2);  // y is rounded to bf16; the state stays fp32
  EXPECT_LT(r.s_err, 2e-6);
}

TEST(StepProgram, NoPhaseDependsOnTheOrderOfItsIndices) {
  using decayfw::cta::Order;
  const StepRun<float> a = run_steps<float>(1, 5, 2, 100, 32, 9, Order::Forward);
  for (Order o : {Order::Reverse, Order::Interleaved}) {
    const StepRun<float> b = run_steps<float>(1, 5, 2, 100, 32, 9, o);
    EXPECT_EQ(0, std::memcmp(a.y_all.data(), b.y_all.data(), a.y_all.size() * sizeof(float)));
    EXPECT_EQ(0, std::memcmp(a.state.data(), b.state.data(), a.state.size() * sizeof(float)));
  }
}

TEST(StepProgram, VectorAccessNeedsAlignedState) {
  alignas(16) float s[8] = {};
  float v[4];
  EXPECT_NO_THROW(Host::load4(s, v));
  EXPECT_THROW(Host::load4(s + 1, v), std::logic_error);
}

}  // namespace
