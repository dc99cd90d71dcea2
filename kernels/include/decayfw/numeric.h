// Scalar helpers shared by the CPU kernels: 16-bit float conversion and numerically safe gates.
// Gates arrive as logits; σ and log σ are always evaluated in the accumulation type (fp32 or fp64),
// never in bf16/fp16 where σ(6.3) already rounds to 1.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

namespace decayfw {

// Storage-only 16-bit float types: the kernels convert them to float on load and back on store.
struct BFloat16 {
  uint16_t bits;
};
struct Float16 {
  uint16_t bits;
};

inline float to_float(BFloat16 h) {
  uint32_t u = static_cast<uint32_t>(h.bits) << 16;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

inline BFloat16 to_bfloat16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  if ((u & 0x7fffffffu) > 0x7f800000u) return BFloat16{static_cast<uint16_t>((u >> 16) | 0x40u)};  // NaN stays NaN
  u += 0x7fffu + ((u >> 16) & 1u);  // round to nearest even
  return BFloat16{static_cast<uint16_t>(u >> 16)};
}

inline float to_float(Float16 h) {
  const uint32_t sign = (static_cast<uint32_t>(h.bits) & 0x8000u) << 16;
  uint32_t exp = (h.bits >> 10) & 0x1fu;
  uint32_t man = h.bits & 0x3ffu;
  uint32_t u;
  if (exp == 0x1fu) {
    u = sign | 0x7f800000u | (man << 13);
  } else if (exp == 0) {
    if (man == 0) {
      u = sign;
    } else {  // subnormal: normalise
      int e = -1;
      do {
        ++e;
        man <<= 1;
      } while ((man & 0x400u) == 0);
      u = sign | (static_cast<uint32_t>(127 - 15 - e) << 23) | ((man & 0x3ffu) << 13);
    }
  } else {
    u = sign | ((exp + 127 - 15) << 23) | (man << 13);
  }
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

inline Float16 to_float16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  const uint16_t sign = static_cast<uint16_t>((u >> 16) & 0x8000u);
  const uint32_t absu = u & 0x7fffffffu;
  if (absu > 0x7f800000u) return Float16{static_cast<uint16_t>(sign | 0x7e00u)};  // NaN
  if (absu >= 0x477ff000u) return Float16{static_cast<uint16_t>(sign | 0x7c00u)};  // overflow -> inf
  if (absu < 0x38800000u) {  // subnormal or zero in fp16
    if (absu < 0x33000000u) return Float16{sign};
    const uint32_t e = absu >> 23;
    const uint32_t man = (absu & 0x7fffffu) | 0x800000u;
    const uint32_t shift = 126 - e;  // 14..24
    uint32_t r = man >> shift;
    const uint32_t rem = man & ((1u << shift) - 1u);
    const uint32_t half = 1u << (shift - 1);
    if (rem > half || (rem == half && (r & 1u))) ++r;
    return Float16{static_cast<uint16_t>(sign | r)};
  }
  uint32_t r = absu - 0x38000000u;  // rebias exponent
  r += 0xfffu + ((r >> 13) & 1u);   // round to nearest even
  return Float16{static_cast<uint16_t>(sign | (r >> 13))};
}

template <typename Acc>
inline Acc load_as(const float* p) { return static_cast<Acc>(*p); }
template <typename Acc>
inline Acc load_as(const double* p) { return static_cast<Acc>(*p); }
template <typename Acc>
inline Acc load_as(const BFloat16* p) { return static_cast<Acc>(to_float(*p)); }
template <typename Acc>
inline Acc load_as(const Float16* p) { return static_cast<Acc>(to_float(*p)); }

template <typename Acc>
inline void store_from(float* p, Acc x) { *p = static_cast<float>(x); }
template <typename Acc>
inline void store_from(double* p, Acc x) { *p = static_cast<double>(x); }
template <typename Acc>
inline void store_from(BFloat16* p, Acc x) { *p = to_bfloat16(static_cast<float>(x)); }
template <typename Acc>
inline void store_from(Float16* p, Acc x) { *p = to_float16(static_cast<float>(x)); }

// σ(x) without overflow for large |x|.
template <typename Acc>
inline Acc sigmoid(Acc x) {
  if (x >= 0) return Acc(1) / (Acc(1) + std::exp(-x));
  const Acc e = std::exp(x);
  return e / (Acc(1) + e);
}

// e^x in fp32 without a libm call, so loops over gates vectorize: Cody–Waite range reduction
// x = n·ln2 + r, |r| ≤ ln2/2, a degree-6 polynomial for e^r, and 2^n put into the exponent bits.
// Relative error ≤ 3 ulp over the clamped range [−87, 88] (tests/cpp/test_numeric.cpp).
inline float exp_f32(float x) {
  x = x < -87.0f ? -87.0f : (x > 88.0f ? 88.0f : x);
  const float n = __builtin_floorf(x * 1.44269504088896341f + 0.5f);
  const float r = (x - n * 0.693359375f) + n * 2.12194440e-4f;
  float p = 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  const float er = (p * r) * r + r + 1.0f;
  const int32_t bits = (static_cast<int32_t>(n) + 127) << 23;
  return er * __builtin_bit_cast(float, bits);
}

// σ for the gate vectors of a step: branch-free so the loop vectorizes.
inline float sigmoid_f32(float x) { return 1.0f / (1.0f + exp_f32(-x)); }
inline double sigmoid_f32(double x) { return 1.0 / (1.0 + std::exp(-x)); }

}  // namespace decayfw
