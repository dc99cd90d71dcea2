// gemm_chain's lane code (kernels/cuda/cta/chain_warp.h), the code the device runs, run for 32 lanes on the host by
// lane_emulator.h (ldmatrix and mma.sync as the PTX ISA's fragment tables define them) and compared bit for bit with
// HostCta::gemm_chain's whole products: which lane gives which row address to ldmatrix, which register holds which
// pair of the product, how the masked product becomes the next product's A operand, and which pairs the epilogue
// and the stores into P get. What it cannot check is the hardware itself: that is the GPU run (cta_executor_check).
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "cta/chain_warp.h"
#include "cta/host_cta.h"
#include "lane_emulator.h"

namespace {

using decayfw::BFloat16;
using decayfw::Float16;
using decayfw::cta::KSpan;
using decayfw::testing::LaneEmulator;

// A chain's operands in one block of shared-like memory, padded rows as the programs lay them out (ld = width + 8).
template <typename Op>
struct Operands {
  int m, n, k, lda, ldb1, ldb2, ldp;
  bool tb1;
  decayfw::cta::HostSmem smem;
  Op *A, *B0, *B1, *B2, *P;

  Operands(int m_, int n_, int k_, bool tb1_, uint32_t seed)
      : m(m_),
        n(n_),
        k(k_),
        lda(k_ + 8),
        ldb1(tb1_ ? k_ + 8 : n_ + 8),
        ldb2(n_ + 8),
        ldp(m_ + 8),
        tb1(tb1_),
        smem(sizeof(Op) *
             size_t(2 * m_ * (k_ + 8) + (tb1_ ? n_ * (k_ + 8) : k_ * (n_ + 8)) + m_ * (n_ + 8) + m_ * (m_ + 8))) {
    A = reinterpret_cast<Op*>(smem.data());
    B0 = A + m * lda;
    B1 = B0 + m * lda;
    B2 = B1 + (tb1 ? n * ldb1 : k * ldb1);
    P = B2 + m * ldb2;
    std::mt19937 rng(seed);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    Op* end = P + m * ldp;
    for (Op* x = A; x < end; ++x) *x = decayfw::cta::HostCta<>::from_f<Op>(normal(rng));
    std::fill(P, end, decayfw::cta::HostCta<>::from_f<Op>(-7.0f));  // what no lane stores stays -7
  }
};

struct Result {
  std::vector<float> y;
  std::vector<uint16_t> p;
};

template <typename Op>
Result result_of(const Operands<Op>& x, const std::vector<float>& y) {
  Result r{y, {}};
  for (int i = 0; i < x.m; ++i)
    for (int j = 0; j < x.m; ++j) r.p.push_back(x.P[i * x.ldp + j].bits);
  return r;
}

// The epilogue of gemm_apply's contract, storing Y (each pair exactly once: a second store is a mapping error).
struct StoreY {
  std::vector<float>& y;
  std::vector<int>& stores;
  int n;
  void operator()(int i, int j, const float* v) const {
    for (int e = 0; e < 4; ++e)
      for (int w = 0; w < 2; ++w) {
        const size_t at = size_t(i + 8 * (e & 1)) * n + j + 8 * (e >> 1) + w;
        y[at] = v[2 * e + w];
        ++stores[at];  // each element has one owner lane, so no two threads touch the same counter
      }
  }
};

template <KSpan kMask, int kM, int kN, int kK, int kParts, bool kTB1, typename Op>
Result host_chain(Operands<Op>& x) {
  decayfw::cta::HostCta<> cta;
  std::vector<float> y(static_cast<size_t>(kM) * kN, 0.0f);
  std::vector<int> stores(y.size(), 0);
  cta.gemm_chain<kMask, kM, kN, kK, kParts, kTB1>(x.A, x.lda, x.B0, x.lda, x.B1, x.ldb1, x.B2, x.ldb2, x.P, x.ldp,
                                                  StoreY{y, stores, kN});
  return result_of(x, y);
}

template <KSpan kMask, int kM, int kN, int kK, int kParts, bool kTB1, typename Isa, typename Op>
Result lane_chain(Operands<Op>& x) {
  std::vector<float> y(static_cast<size_t>(kM) * kN, 0.0f);
  std::vector<int> stores(y.size(), 0);
  StoreY f{y, stores, kN};
  for (int w = 0; w < kM / 16 * kParts; ++w)
    LaneEmulator::run_warp([&](int lane) {
      decayfw::cta::chain_warp<kMask, kM, kN, kK, kParts, kTB1, Isa>(w, lane, x.A, x.lda, x.B0, x.lda, x.B1, x.ldb1,
                                                                     x.B2, x.ldb2, x.P, x.ldp, f);
    });
  for (size_t e = 0; e < stores.size(); ++e)
    if (stores[e] != 1) ADD_FAILURE() << "Y element " << e << " stored " << stores[e] << " times";
  return result_of(x, y);
}

// The first differing element, named, or "" when the two give the same bits.
std::string first_difference(const Result& want, const Result& got, int n, int m) {
  for (size_t e = 0; e < want.y.size(); ++e)
    if (std::memcmp(&want.y[e], &got.y[e], sizeof(float)) != 0)
      return "Y(" + std::to_string(e / n) + ", " + std::to_string(e % n) + "): host " + std::to_string(want.y[e]) +
             ", lanes " + std::to_string(got.y[e]);
  for (size_t e = 0; e < want.p.size(); ++e)
    if (want.p[e] != got.p[e])
      return "P(" + std::to_string(e / m) + ", " + std::to_string(e % m) + "): host bits " + std::to_string(want.p[e]) +
             ", lanes " + std::to_string(got.p[e]);
  return "";
}

template <KSpan kMask, int kM, int kN, int kK, int kParts, bool kTB1, typename Op, typename Isa = LaneEmulator>
std::string compare(uint32_t seed) {
  Operands<Op> host(kM, kN, kK, kTB1, seed), lanes(kM, kN, kK, kTB1, seed);
  const Result want = host_chain<kMask, kM, kN, kK, kParts, kTB1>(host);
  const Result got = lane_chain<kMask, kM, kN, kK, kParts, kTB1, Isa>(lanes);
  return first_difference(want, got, kN, kM);
}

}  // namespace

// The configurations the chunk programs instantiate (whole_chunk_y: B1 = S_prev [n×k]; grad_pass's dq: TB1 = false),
// each part count, both masks, both 16-bit types.
TEST(ChainLanes, CausalBf16AsTheChunkFormsForwardTakesIt) {
  EXPECT_EQ("", (compare<KSpan::Causal, 64, 128, 128, 2, true, BFloat16>(1)));
  EXPECT_EQ("", (compare<KSpan::Causal, 64, 64, 64, 2, true, BFloat16>(2)));
  EXPECT_EQ("", (compare<KSpan::Causal, 32, 64, 128, 2, true, BFloat16>(3)));
}

TEST(ChainLanes, FourPartsAtM128AndOnePart) {
  EXPECT_EQ("", (compare<KSpan::Causal, 128, 64, 64, 4, true, BFloat16>(4)));
  EXPECT_EQ("", (compare<KSpan::Causal, 32, 32, 32, 1, true, BFloat16>(5)));
}

TEST(ChainLanes, BlockCausalAndUntransposedB1AsGradPassesDq) {
  EXPECT_EQ("", (compare<KSpan::BlockCausal, 64, 128, 64, 2, true, BFloat16>(6)));
  EXPECT_EQ("", (compare<KSpan::Causal, 64, 64, 128, 2, false, BFloat16>(7)));
  EXPECT_EQ("", (compare<KSpan::BlockCausal, 32, 64, 64, 1, false, BFloat16>(8)));
}

// The gradient's transposed chains: dV = K̃·dŜᵀ + mask(K̃ Q̃ᵀ)·dỸ (B1 n×k), dK = Ṽ·dŜ + mask(Ṽ dỸᵀ)·Q̃ (B1 k×n).
TEST(ChainLanes, AntiCausalMasksAsTheGradientsDvAndDk) {
  EXPECT_EQ("", (compare<KSpan::AntiCausal, 64, 128, 64, 2, true, BFloat16>(21)));
  EXPECT_EQ("", (compare<KSpan::AntiCausal, 64, 64, 128, 4, false, BFloat16>(22)));
  EXPECT_EQ("", (compare<KSpan::BlockAntiCausal, 64, 128, 64, 2, true, BFloat16>(23)));
  EXPECT_EQ("", (compare<KSpan::BlockAntiCausal, 32, 64, 128, 4, false, BFloat16>(24)));
  EXPECT_EQ("", (compare<KSpan::AntiCausal, 128, 64, 64, 4, true, Float16>(25)));
}

TEST(ChainLanes, Fp16Operands) {
  EXPECT_EQ("", (compare<KSpan::Causal, 64, 64, 64, 2, true, Float16>(9)));
  EXPECT_EQ("", (compare<KSpan::BlockCausal, 32, 64, 32, 1, false, Float16>(10)));
}

TEST(ChainLanes, TheEmulatorRefusesMisalignedRowsAndDivergedLanes) {
  // A misaligned row address (one lane's mapping off by an element) stops the warp with the lane named.
  Operands<BFloat16> x(32, 32, 32, true, 11);
  std::vector<float> y(32 * 32);
  std::vector<int> stores(y.size());
  StoreY f{y, stores, 32};
  try {
    LaneEmulator::run_warp([&](int lane) {
      decayfw::cta::chain_warp<KSpan::Causal, 32, 32, 32, 1, true, LaneEmulator>(
          0, lane, x.A + (lane == 9), x.lda, x.B0, x.lda, x.B1, x.ldb1, x.B2, x.ldb2, x.P, x.ldp, f);
    });
    ADD_FAILURE() << "a misaligned ldmatrix row was accepted";
  } catch (const std::logic_error& e) {
    EXPECT_NE(std::string(e.what()).find("lane 9"), std::string::npos) << e.what();
  }
  // A lane that leaves the warp's instruction stream is refused as divergence.
  try {
    LaneEmulator::run_warp([&](int lane) {
      if (lane == 3) return;
      uint32_t r[4];
      LaneEmulator::ldsm_x4<false>(r, x.A + 8 * (lane % 2));
    });
    ADD_FAILURE() << "a diverged lane was accepted";
  } catch (const std::logic_error& e) {
    EXPECT_NE(std::string(e.what()).find("divergence"), std::string::npos) << e.what();
  }
}

namespace {
// The emulator with one lane's mistake in it: lane 13 packs its pairs of P the other way round.
struct Lane13SwapsItsPair : LaneEmulator {
  template <typename Op>
  static uint32_t pack2(float lo, float hi) {
    return lane() == 13 ? LaneEmulator::pack2<Op>(hi, lo) : LaneEmulator::pack2<Op>(lo, hi);
  }
};
}  // namespace

// The comparison finds one lane's mistake (so the equalities above could fail).
TEST(ChainLanes, ASwappedPairInOneLaneIsFound) {
  EXPECT_NE("", (compare<KSpan::Causal, 32, 32, 32, 1, true, BFloat16, Lane13SwapsItsPair>(12)));
}
