// The scalar helpers the CPU kernels rely on: the vectorizable fp32 exp and σ, and the 16-bit
// float conversions (against LibTorch's own c10::Half / c10::BFloat16).
#include <gtest/gtest.h>

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <cmath>
#include <cstring>
#include <random>

#include "decayfw/numeric.h"

namespace {
int64_t ulp_distance(float a, float b) {
  int32_t ia, ib;
  std::memcpy(&ia, &a, 4);
  std::memcpy(&ib, &b, 4);
  if (ia < 0) ia = INT32_MIN - ia;
  if (ib < 0) ib = INT32_MIN - ib;
  return std::llabs(static_cast<int64_t>(ia) - ib);
}
}  // namespace

TEST(Numeric, ExpF32IsWithinThreeUlpOfLibm) {
  int64_t worst = 0;
  for (float x = -87.0f; x <= 88.0f; x += 0.0137f) {
    const float want = static_cast<float>(std::exp(static_cast<double>(x)));
    worst = std::max(worst, ulp_distance(decayfw::exp_f32(x), want));
  }
  EXPECT_LE(worst, 3);
  EXPECT_EQ(decayfw::exp_f32(0.0f), 1.0f);
  EXPECT_TRUE(std::isfinite(decayfw::exp_f32(1000.0f)));
  EXPECT_GE(decayfw::exp_f32(-1000.0f), 0.0f);
}

TEST(Numeric, SigmoidIsAccurateAndSaturatesWithoutNaN) {
  for (float x = -40.0f; x <= 40.0f; x += 0.01f) {
    const double want = 1.0 / (1.0 + std::exp(-static_cast<double>(x)));
    EXPECT_NEAR(decayfw::sigmoid_f32(x), want, 4e-7 * want + 1e-30) << x;
  }
  EXPECT_EQ(decayfw::sigmoid_f32(1e6f), 1.0f);
  EXPECT_GE(decayfw::sigmoid_f32(-1e6f), 0.0f);
  EXPECT_FALSE(std::isnan(decayfw::sigmoid_f32(std::numeric_limits<float>::infinity())));
}

TEST(Numeric, SixteenBitConversionsMatchC10) {
  std::mt19937 rng(1);
  std::uniform_int_distribution<uint32_t> bits;
  for (int i = 0; i < 200000; ++i) {
    uint32_t u = bits(rng);
    float f;
    std::memcpy(&f, &u, 4);
    if (std::isnan(f)) continue;
    const c10::BFloat16 bw(f);
    EXPECT_EQ(decayfw::to_bfloat16(f).bits, bw.x) << f;
    const c10::Half hw(f);
    EXPECT_EQ(decayfw::to_float16(f).bits, hw.x) << f;
    const uint16_t h = static_cast<uint16_t>(u & 0xffff);
    const float got = decayfw::to_float(decayfw::Float16{h});
    const float want = static_cast<float>(c10::Half(h, c10::Half::from_bits()));
    if (std::isnan(want)) {
      EXPECT_TRUE(std::isnan(got)) << h;
    } else {
      EXPECT_EQ(got, want) << h;
    }
  }
}
