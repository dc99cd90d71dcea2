// Checks each operation of the chunk programs' CUDA executor (DeviceCta, kernels/cuda/cta/device_cta.cuh) on
// the GPU against the host executor (HostCta, host_cta.h), through which CI runs every chunk program: the one
// part of the chunk path that the CPU tests cannot reach. If the chunk-path GPU tests fail and these cases
// pass, the fault is in a program or the launcher; if a case here fails, it names the operation.
//
// Cases (one CTA of 256 threads each, but where said):
//   - for_each: every index once, then a barrier;
//   - load4/store4 of fp32, bf16 and fp16 (16-bit stores round to nearest even, as from_f), load2/store2 (store2 of
//     bf16 and fp16 too);
//   - copy16_async and wait_async: copies and zero-fills;
//   - atomic_or;
//   - gemm with bf16, fp16 and fp32-as-tf32 operands, all four transposes, from zero and accumulating;
//     gemm_fp32 (fp32 operands at fp32 accuracy); gemm_apply (every element handed over once, where
//     accumulator_pair says, bit-equal to gemm's C), also with each k span (KSpan: op(A) zero above or below
//     its diagonal, or from or up to its diagonal 16×16 block, the steps that multiply those zeros skipped; or
//     a causal product whose tiles above the diagonal, or from it on, take no steps and stay 0); gemm_apply_sum (two
//     products in one set of accumulators: gemm's bits, then accumulating gemm's). 32×48 outputs, k = 64, the programs'
//     padded rows.
//   - gemm_chain (two products chained in registers through mma.sync), Causal and BlockCausal, 1, 2 and 4 warps
//     per row block, the first product's second factor stored either way, bf16 and fp16: against the host's, and the
//     bits of the same products through shared memory (gemm_apply, gemm_apply_sum) on the device; with --host-only, the
//     host's chain against the host's two steps;
//   - gemm_chain in a shared phase: grad_pass's four chains in one phase (its opt-in one-phase form) at its compiled
//     sizes, at 512, 256, 128 and 96 threads (a CTA warp taking one, two or more of the phase's warps, across the
//     chains), against each chain in its own phase (the same bits) and the host's phase.
// Element operations must match bit for bit. Products may differ in the order of the fp32 sums only, so
// they must agree to 1e-5 of Σ|a·b| (the sums' rounding is below 64·2^-24 ≈ 4e-6 of it).
//
//   cta_executor_check               a table, then exit 0 if every case passed, 1 if one failed or no GPU
//   cta_executor_check --host-only   the host executor's products against fp64 only (no GPU needed)
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "cta/device_cta.cuh"
#include "cta/host_cta.h"

// The cases are written once, __host__ __device__, and instantiated with each executor: HostCta's on the host
// only, DeviceCta's in kernels only. nvcc still compiles a device side of the host instantiations (and their
// lambdas), which would call host functions, and warns about it; no such side is ever called.
#pragma nv_diag_suppress 20011
#pragma nv_diag_suppress 20014

namespace {

namespace cta = decayfw::cta;
using decayfw::BFloat16;
using decayfw::Float16;

constexpr int kThreads = 256;
constexpr int kM = 32, kN = 48, kK = 64;  // the product's sizes
constexpr int kRows = 64, kLd = 72;       // operand tiles: up to 64 stored rows of 72 (the programs' +8)
constexpr int kLdc = kN + 8;              // C: rows of 56 floats
constexpr double kProductTolerance = 1e-5;

#define DECAYFW_CHECK(x)                                                                         \
  do {                                                                                           \
    const cudaError_t err_ = (x);                                                                \
    if (err_ != cudaSuccess) {                                                                   \
      std::fprintf(stderr, "cta_executor_check: %s failed: %s\n", #x, cudaGetErrorString(err_)); \
      std::exit(1);                                                                              \
    }                                                                                            \
  } while (0)

// The device type of a host storage type (same bits).
template <typename H>
struct DeviceType {
  using type = float;
};
template <>
struct DeviceType<BFloat16> {
  using type = __nv_bfloat16;
};
template <>
struct DeviceType<Float16> {
  using type = __half;
};

template <typename T>
T* to_device(const std::vector<T>& h) {
  T* d = nullptr;
  DECAYFW_CHECK(cudaMalloc(&d, h.size() * sizeof(T) + 16));
  DECAYFW_CHECK(cudaMemcpy(d, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice));
  return d;
}
template <typename T>
std::vector<T> from_device(const T* d, size_t n) {
  std::vector<T> h(n);
  DECAYFW_CHECK(cudaMemcpy(h.data(), d, n * sizeof(T), cudaMemcpyDeviceToHost));
  return h;
}

// ---- products --------------------------------------------------------------------------------------------

enum class Mode {
  Gemm,
  GemmAccumulate,
  GemmFp32,
  GemmApply,
  GemmApplyLowerA,
  GemmApplyUpperA,
  GemmApplyCausal,
  GemmApplyBelowA,
  GemmApplyAboveA,
  GemmApplyBlockCausal,
  GemmApplySum
};
const char* mode_name(Mode m) {
  return m == Mode::Gemm                   ? "gemm"
         : m == Mode::GemmAccumulate       ? "gemm, accumulate"
         : m == Mode::GemmFp32             ? "gemm_fp32"
         : m == Mode::GemmApply            ? "gemm_apply"
         : m == Mode::GemmApplyLowerA      ? "gemm_apply, LowerA span"
         : m == Mode::GemmApplyUpperA      ? "gemm_apply, UpperA span"
         : m == Mode::GemmApplyCausal      ? "gemm_apply, Causal span"
         : m == Mode::GemmApplyBelowA      ? "gemm_apply, BelowA span"
         : m == Mode::GemmApplyAboveA      ? "gemm_apply, AboveA span"
         : m == Mode::GemmApplyBlockCausal ? "gemm_apply, BlockCausal span"
                                           : "gemm_apply_sum (A·B, then A·B again with the LowerA span)";
}
__host__ __device__ constexpr bool is_apply(Mode m) {
  return m >= Mode::GemmApply;
}
__host__ __device__ constexpr cta::KSpan span_of(Mode m) {
  return m == Mode::GemmApplyLowerA || m == Mode::GemmApplySum ? cta::KSpan::LowerA
         : m == Mode::GemmApplyUpperA                          ? cta::KSpan::UpperA
         : m == Mode::GemmApplyCausal                          ? cta::KSpan::Causal
         : m == Mode::GemmApplyBelowA                          ? cta::KSpan::BelowA
         : m == Mode::GemmApplyAboveA                          ? cta::KSpan::AboveA
         : m == Mode::GemmApplyBlockCausal                     ? cta::KSpan::BlockCausal
                                                               : cta::KSpan::All;
}
// Whether output tile (i, j) of a Causal or BlockCausal product takes no steps (and stays 0).
constexpr bool dropped(Mode m, int i, int j) {
  return (m == Mode::GemmApplyCausal && j / 16 > i / 16) || (m == Mode::GemmApplyBlockCausal && j / 16 >= i / 16);
}

// The product on either executor, from the operands and C's start in shared memory (smem: A, B, C carved in
// that order); gemm_apply's epilogue writes each pair where it belongs and counts the writes.
template <Mode kMode, bool TA, bool TB, typename Cta, typename Op>
__host__ __device__ void product(Cta& x, Op* A, Op* B, float* C, int* writes) {
  if constexpr (is_apply(kMode)) {
    const auto epilogue = [&](int i, int j, const float* v) {
      for (int e = 0; e < cta::kAccumulatorPairs; ++e)
        for (int w = 0; w < 2; ++w) {
          const int row = i + 8 * (e & 1), col = j + 8 * (e >> 1) + w;
          C[row * kLdc + col] = v[2 * e + w];
          ++writes[row * kN + col];  // each element belongs to one lane: no two calls write one counter
        }
    };
    if constexpr (kMode == Mode::GemmApplySum)
      x.gemm_apply_sum(kM, kN, epilogue, cta::term<TA, TB>(kK, A, kLd, B, kLd),
                       cta::term<TA, TB, cta::KSpan::LowerA>(kK, A, kLd, B, kLd));
    else
      x.template gemm_apply<TA, TB, span_of(kMode)>(kM, kN, kK, A, kLd, B, kLd, epilogue);
  } else if constexpr (kMode == Mode::GemmFp32) {
    x.template gemm_fp32<TA, TB>(kM, kN, kK, A, kLd, B, kLd, C, kLdc, false);
  } else {
    x.template gemm<TA, TB>(kM, kN, kK, A, kLd, B, kLd, C, kLdc, kMode == Mode::GemmAccumulate);
  }
}

template <Mode kMode, bool TA, bool TB, typename Op>
__global__ void product_kernel(const Op* a, const Op* b, const float* c0, float* c, int* writes) {
  extern __shared__ __align__(128) unsigned char smem[];
  Op* A = reinterpret_cast<Op*>(smem);
  Op* B = A + kRows * kLd;
  float* C = reinterpret_cast<float*>(B + kRows * kLd);
  for (int i = threadIdx.x; i < kRows * kLd; i += blockDim.x) A[i] = a[i], B[i] = b[i];
  for (int i = threadIdx.x; i < kM * kLdc; i += blockDim.x) C[i] = c0[i];
  __syncthreads();
  cta::DeviceCta x;
  product<kMode, TA, TB>(x, A, B, C, writes);  // writes: global, atomics not needed (one writer each)
  for (int i = threadIdx.x; i < kM * kLdc; i += blockDim.x) c[i] = C[i];
}

constexpr size_t product_smem(size_t op_bytes) {
  return 2 * kRows * kLd * op_bytes + kM * kLdc * sizeof(float);
}

struct Row {
  std::string operation, configuration;
  double error = 0.0;  // largest |device − host| ÷ Σ|a·b|, or mismatches for exact cases
  bool exact = false, passed = false;
};

template <Mode kMode, bool TA, bool TB, typename H>
std::vector<float> host_product(const std::vector<H>& a, const std::vector<H>& b, const std::vector<float>& c0,
                                std::vector<int>& writes) {
  cta::HostSmem smem(product_smem(sizeof(H)));
  H* A = reinterpret_cast<H*>(smem.data());
  H* B = A + kRows * kLd;
  float* C = reinterpret_cast<float*>(B + kRows * kLd);
  std::memcpy(A, a.data(), a.size() * sizeof(H));
  std::memcpy(B, b.data(), b.size() * sizeof(H));
  std::memcpy(C, c0.data(), c0.size() * sizeof(float));
  cta::HostCta<> x;
  writes.assign(kM * kN, 0);
  product<kMode, TA, TB>(x, A, B, C, writes.data());
  return std::vector<float>(C, C + kM * kLdc);
}

// Element (i, j) of the product in fp64, exact for the operands as the tensor cores take them (tf32-rounded
// fp32 for gemm), and its scale: Σ_p |a·b| (+ |C's start| when accumulating), which errors are measured in.
struct Reference {
  double exact = 0.0, scale = 0.0;
};
template <Mode kMode, bool TA, bool TB, typename H>
Reference reference(const std::vector<H>& a, const std::vector<H>& b, const std::vector<float>& c0, int i, int j) {
  Reference r;
  if (kMode == Mode::GemmAccumulate) r.exact = c0[i * kLdc + j], r.scale = std::fabs(r.exact);
  for (int p = 0; p < kK && !dropped(kMode, i, j); ++p) {
    const float x = cta::HostCta<>::to_f(TA ? a[p * kLd + i] : a[i * kLd + p]);
    const float y = cta::HostCta<>::to_f(TB ? b[j * kLd + p] : b[p * kLd + j]);
    const bool tf32 = std::is_same_v<H, float> && kMode != Mode::GemmFp32;
    r.exact += double(tf32 ? cta::round_to_tf32(x) : x) * double(tf32 ? cta::round_to_tf32(y) : y);
    r.scale += std::fabs(double(x) * double(y));
  }
  if (kMode == Mode::GemmApplySum) r.exact *= 2.0, r.scale *= 2.0;  // the same product twice
  if (r.scale == 0.0) r.scale = 1.0;                                // a dropped tile: exactly 0 expected
  return r;
}

template <Mode kMode, bool TA, bool TB, typename H>
Row check_product(const char* type, bool gpu, std::mt19937& rng) {
  using D = typename DeviceType<H>::type;
  std::normal_distribution<float> n(0.0f, 1.0f);
  std::vector<H> a(kRows * kLd), b(kRows * kLd);
  std::vector<float> c0(kM * kLdc);
  for (auto& x : a) x = cta::HostCta<>::from_f<H>(n(rng));
  for (auto& x : b) x = cta::HostCta<>::from_f<H>(kMode == Mode::GemmFp32 ? std::exp(3.0f * n(rng)) : n(rng));
  for (auto& x : c0) x = n(rng);
  // LowerA, UpperA: op(A) zero where the span skips it (HostCta refuses a nonzero there).
  for (int i = 0; i < kM; ++i)
    for (int p = 0; p < kK; ++p)
      if ((span_of(kMode) == cta::KSpan::LowerA && p > i) || (kMode == Mode::GemmApplyUpperA && p < i) ||
          (kMode == Mode::GemmApplyBelowA && p / 16 >= i / 16) || (kMode == Mode::GemmApplyAboveA && p / 16 <= i / 16))
        a[TA ? p * kLd + i : i * kLd + p] = cta::HostCta<>::from_f<H>(0.0f);
  std::vector<int> host_writes;  // gemm_apply's epilogue counts its writes on either executor
  const std::vector<float> host = host_product<kMode, TA, TB>(a, b, c0, host_writes);
  Row row{mode_name(kMode), std::string(type) + (TA ? ", Aᵀ" : ", A") + (TB ? ", Bᵀ" : ", B")};
  if (!gpu) {  // the host executor against fp64
    for (int i = 0; i < kM; ++i)
      for (int j = 0; j < kN; ++j) {
        const Reference r = reference<kMode, TA, TB>(a, b, c0, i, j);
        row.error = std::max(row.error, std::fabs(host[i * kLdc + j] - r.exact) / r.scale);
      }
    row.passed = row.error <= kProductTolerance;
    return row;
  }
  // The host type's bits are the device type's: uploaded as they are, read on the device as D.
  D* pa = reinterpret_cast<D*>(to_device(a));
  D* pb = reinterpret_cast<D*>(to_device(b));
  float *pc0 = to_device(c0), *pc = to_device(c0);
  int* pw = to_device(std::vector<int>(kM * kN, 0));
  product_kernel<kMode, TA, TB><<<1, kThreads, product_smem(sizeof(D))>>>(pa, pb, pc0, pc, pw);
  DECAYFW_CHECK(cudaGetLastError());
  DECAYFW_CHECK(cudaDeviceSynchronize());
  const std::vector<float> device = from_device(pc, kM * kLdc);
  const std::vector<int> writes = from_device(pw, kM * kN);
  for (int i = 0; i < kM; ++i)
    for (int j = 0; j < kN; ++j)
      row.error = std::max(row.error, std::fabs(double(device[i * kLdc + j]) - host[i * kLdc + j]) /
                                          reference<kMode, TA, TB>(a, b, c0, i, j).scale);
  row.passed = row.error <= kProductTolerance;
  if (is_apply(kMode)) {
    // Every element exactly once, and the same bits as the device's gemm (the same tensor-core instructions;
    // the steps a span skips add exact zeros), except a Causal product's dropped tiles: zero.
    product_kernel<Mode::Gemm, TA, TB><<<1, kThreads, product_smem(sizeof(D))>>>(pa, pb, pc0, pc, pw);
    DECAYFW_CHECK(cudaGetLastError());
    if (kMode == Mode::GemmApplySum) {  // gemm's C, then the same product accumulated onto it
      float* once = to_device(from_device(pc, kM * kLdc));
      product_kernel<Mode::GemmAccumulate, TA, TB><<<1, kThreads, product_smem(sizeof(D))>>>(pa, pb, once, pc, pw);
      DECAYFW_CHECK(cudaGetLastError());
      cudaFree(once);
    }
    const std::vector<float> gemm = from_device(pc, kM * kLdc);
    int wrong = 0;
    for (int i = 0; i < kM; ++i)
      for (int j = 0; j < kN; ++j)
        wrong += writes[i * kN + j] != 1 ||
                 (dropped(kMode, i, j) ? device[i * kLdc + j] != 0.0f
                                       : std::memcmp(&gemm[i * kLdc + j], &device[i * kLdc + j], 4) != 0);
    row.configuration +=
        wrong ? ", " + std::to_string(wrong) + " elements not once or not gemm's bits" : ", gemm's bits";
    row.passed = row.passed && wrong == 0;
  }
  cudaFree(pa), cudaFree(pb), cudaFree(pc0), cudaFree(pc), cudaFree(pw);
  return row;
}

template <Mode kMode, typename H>
void check_transposes(const char* type, bool gpu, std::mt19937& rng, std::vector<Row>& rows) {
  rows.push_back(check_product<kMode, false, false, H>(type, gpu, rng));
  rows.push_back(check_product<kMode, false, true, H>(type, gpu, rng));
  rows.push_back(check_product<kMode, true, false, H>(type, gpu, rng));
  rows.push_back(check_product<kMode, true, true, H>(type, gpu, rng));
}

// ---- chained products ------------------------------------------------------------------------------------
//
// gemm_chain (Y = A·B1ᵀ + mask(A·B0ᵀ)·B2, the masked product rounded into P) against the host executor's, and
// on the device against the same two products through shared memory (gemm_apply into P, then gemm_apply_sum):
// the same fp32 sums in the same order, so the same bits, Y and P (whole_chunk_y relies on it). The host and the
// device may round P differently where their fp32 sums differ in the last place, so Y is compared with P's
// rounding in the tolerance: 1e-5 of Σ|a·b1| plus 2^-7 of Σ|p·b2|.

template <int kM, int kN, int kK, bool kTB1>
struct ChainTiles {  // the programs' padded rows (+8 elements); B1 stored n×k (kTB1) or k×n
  static constexpr int kLdk = kK + 8, kLdn = kN + 8, kLdp = kM + 8, kLd1 = kTB1 ? kLdk : kLdn;
  static constexpr size_t kB1 = kTB1 ? size_t(kN) * kLdk : size_t(kK) * kLdn;
  static constexpr size_t kOperands = size_t(kM) * kLdk * 2 + kB1 + size_t(kM) * kLdn;  // A, B0, B1, B2
  __host__ __device__ static constexpr size_t bytes(size_t op) {
    return (kOperands + size_t(kM) * kLdp) * op + size_t(kM) * kLdn * sizeof(float);
  }
};

const char* mask_name(cta::KSpan mask) {  // a gemm_chain row's mask, as its name's part
  return mask == cta::KSpan::Causal        ? ", Causal"
         : mask == cta::KSpan::BlockCausal ? ", BlockCausal"
         : mask == cta::KSpan::AntiCausal  ? ", AntiCausal"
                                           : ", BlockAntiCausal";
}

// On either executor, from the operands in shared memory (A, B0, B1, B2, P, then Y, carved in that order).
template <cta::KSpan kMask, int kM, int kN, int kK, int kParts, bool kTB1, bool kChained, typename Cta, typename Op>
__host__ __device__ void chain(Cta& x, unsigned char* smem, int* writes) {
  using L = ChainTiles<kM, kN, kK, kTB1>;
  Op* A = reinterpret_cast<Op*>(smem);
  Op* B0 = A + kM * L::kLdk;
  Op* B1 = B0 + kM * L::kLdk;
  Op* B2 = B1 + L::kB1;
  Op* P = B2 + kM * L::kLdn;
  float* Y = reinterpret_cast<float*>(P + kM * L::kLdp);
  const auto epilogue = [&](int i, int j, const float* v) {
    for (int e = 0; e < cta::kAccumulatorPairs; ++e)
      for (int w = 0; w < 2; ++w) {
        const int row = i + 8 * (e & 1), col = j + 8 * (e >> 1) + w;
        Y[row * L::kLdn + col] = v[2 * e + w];
        ++writes[row * kN + col];
      }
  };
  if constexpr (kChained) {
    x.template gemm_chain<kMask, kM, kN, kK, kParts, kTB1>(A, L::kLdk, B0, L::kLdk, B1, L::kLd1, B2, L::kLdn, P,
                                                           L::kLdp, epilogue);
  } else {
    x.template gemm_apply<false, true, kMask>(kM, kM, kK, A, L::kLdk, B0, L::kLdk, [&](int i, int j, const float* v) {
      for (int e = 0; e < cta::kAccumulatorPairs; ++e)
        for (int w = 0; w < 2; ++w) {
          const int row = i + 8 * (e & 1), col = j + 8 * (e >> 1) + w;
          P[row * L::kLdp + col] = Cta::template from_f<Op>(cta::chain_keeps(kMask, row, col) ? v[2 * e + w] : 0.0f);
        }
    });
    constexpr cta::KSpan kSecond = cta::chain_second_span(kMask);
    x.gemm_apply_sum(kM, kN, epilogue, cta::term<false, kTB1>(kK, A, L::kLdk, B1, L::kLd1),
                     cta::term<false, false, kSecond>(kM, P, L::kLdp, B2, L::kLdn));
  }
}

template <cta::KSpan kMask, int kM, int kN, int kK, int kParts, bool kTB1, bool kChained, typename Op>
__global__ void chain_kernel(const unsigned char* in, size_t in_bytes, unsigned char* out, int* writes) {
  extern __shared__ __align__(128) unsigned char smem[];
  const size_t total = ChainTiles<kM, kN, kK, kTB1>::bytes(sizeof(Op));
  for (size_t i = threadIdx.x; i < total; i += blockDim.x) smem[i] = i < in_bytes ? in[i] : 0;  // P, Y: padding 0
  __syncthreads();
  cta::DeviceCta x;
  chain<kMask, kM, kN, kK, kParts, kTB1, kChained, cta::DeviceCta, Op>(x, smem, writes);
  for (size_t i = threadIdx.x; i < total; i += blockDim.x) out[i] = smem[i];
}

// One CTA of `threads` running `kernel` on a shared-memory image of `total` bytes (from `in`, zeros after it): the
// image it leaves, and its `counts` elements' write counts.
template <typename Kernel>
std::vector<unsigned char> device_image(Kernel kernel, int threads, const std::vector<unsigned char>& in, size_t total,
                                        int counts, std::vector<int>& writes) {
  DECAYFW_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(total)));
  unsigned char *pin = to_device(in), *pout = to_device(std::vector<unsigned char>(total));
  int* pw = to_device(std::vector<int>(counts, 0));
  kernel<<<1, threads, total>>>(pin, in.size(), pout, pw);
  DECAYFW_CHECK(cudaGetLastError());
  DECAYFW_CHECK(cudaDeviceSynchronize());
  std::vector<unsigned char> out = from_device(pout, total);
  writes = from_device(pw, counts);
  cudaFree(pin), cudaFree(pout), cudaFree(pw);
  return out;
}

template <cta::KSpan kMask, int kM, int kN, int kK, int kParts, bool kTB1, bool kChained, typename D>
std::vector<unsigned char> device_chain(const std::vector<unsigned char>& in, std::vector<int>& writes) {
  return device_image(chain_kernel<kMask, kM, kN, kK, kParts, kTB1, kChained, D>, 512, in,
                      ChainTiles<kM, kN, kK, kTB1>::bytes(sizeof(D)), kM * kN, writes);
}

// Element (i, j) of a chain's Y: its tolerance against the host's, 1e-5 of Σ|a·b1| (k steps; B1 n×k if tb1, else
// k×n) plus 2^-7 of Σ|p·b2| over P's m columns (p(i, q): the masked product), for P rounded differently where the
// fp32 sums differ in the last place.
template <typename H, typename PAt>
double chain_tolerance(int i, int j, int k, int m, const H* A, int lda, const H* B1, int ldb1, bool tb1, PAt&& p,
                       const H* B2, int ldb2) {
  const auto at = [](const H* base, int r, int c, int ld) { return double(cta::HostCta<>::to_f(base[r * ld + c])); };
  double s1 = 0.0, s2 = 0.0;
  for (int q = 0; q < k; ++q) s1 += std::fabs(at(A, i, q, lda) * (tb1 ? at(B1, j, q, ldb1) : at(B1, q, j, ldb1)));
  for (int q = 0; q < m; ++q) s2 += std::fabs(p(i, q) * at(B2, q, j, ldb2));
  return 1e-5 * s1 + 0x1p-7 * s2 + 1e-30;
}

template <cta::KSpan kMask, int kM, int kN, int kK, int kParts, bool kTB1, typename H>
Row check_chain(const char* type, bool gpu, std::mt19937& rng) {
  using L = ChainTiles<kM, kN, kK, kTB1>;
  using D = typename DeviceType<H>::type;
  const size_t total = L::bytes(sizeof(H)), p_at = L::kOperands * sizeof(H),
               y_at = p_at + size_t(kM) * L::kLdp * sizeof(H);
  std::normal_distribution<float> n(0.0f, 1.0f);
  std::vector<H> ops(p_at / sizeof(H));
  for (auto& x : ops) x = cta::HostCta<>::from_f<H>(n(rng));
  std::vector<unsigned char> in(p_at);
  std::memcpy(in.data(), ops.data(), p_at);
  cta::HostSmem smem(total);
  std::memcpy(smem.data(), in.data(), p_at);
  cta::HostCta<> x;
  std::vector<int> host_writes(kM * kN, 0);
  chain<kMask, kM, kN, kK, kParts, kTB1, true, cta::HostCta<>, H>(x, smem.data(), host_writes.data());
  const H* hp = reinterpret_cast<const H*>(smem.data() + p_at);
  const float* hy = reinterpret_cast<const float*>(smem.data() + y_at);
  Row row{"gemm_chain", std::string(type) + mask_name(kMask) + ", " + std::to_string(kM) + "×" + std::to_string(kN) +
                            ", k = " + std::to_string(kK) + ", " + std::to_string(kParts) +
                            (kParts > 1 ? " parts" : " part") + (kTB1 ? ", B1ᵀ" : ", B1")};
  const auto at = [&](const H* base, int i, int p, int ld) { return double(cta::HostCta<>::to_f(base[i * ld + p])); };
  const H* A = ops.data();
  const H* B1 = A + 2 * kM * L::kLdk;
  const H* B2 = B1 + L::kB1;
  // Each Y element's tolerance, from the host's operands and P.
  const auto tolerance = [&](int i, int j) {
    return chain_tolerance(
        i, j, kK, kM, A, L::kLdk, B1, L::kLd1, kTB1, [&](int r, int q) { return at(hp, r, q, L::kLdp); }, B2, L::kLdn);
  };
  if (!gpu) {  // the host's chain against its own two products through shared memory: the same bits
    cta::HostSmem plain(total);
    std::memcpy(plain.data(), in.data(), p_at);
    std::vector<int> plain_writes(kM * kN, 0);
    chain<kMask, kM, kN, kK, kParts, kTB1, false, cta::HostCta<>, H>(x, plain.data(), plain_writes.data());
    row.exact = true;
    for (size_t b = p_at; b < total; ++b) row.error += plain.data()[b] != smem.data()[b];
    for (int e = 0; e < kM * kN; ++e) row.error += host_writes[e] != 1;
    row.passed = row.error == 0;
    return row;
  }
  std::vector<int> writes, plain_writes;
  const std::vector<unsigned char> dev = device_chain<kMask, kM, kN, kK, kParts, kTB1, true, D>(in, writes);
  const std::vector<unsigned char> plain = device_chain<kMask, kM, kN, kK, kParts, kTB1, false, D>(in, plain_writes);
  const H* dp = reinterpret_cast<const H*>(dev.data() + p_at);
  const float* dy = reinterpret_cast<const float*>(dev.data() + y_at);
  int wrong = 0;
  for (int i = 0; i < kM; ++i)
    for (int j = 0; j < kN; ++j) {
      row.error = std::max(row.error, std::fabs(double(dy[i * L::kLdn + j]) - hy[i * L::kLdn + j]) / tolerance(i, j));
      wrong += writes[i * kN + j] != 1;
    }
  for (int i = 0; i < kM; ++i)
    for (int j = 0; j < kM; ++j) {  // P within one rounding of the host's (and zero where masked)
      const double d = at(dp, i, j, L::kLdp), h = at(hp, i, j, L::kLdp);
      wrong += std::fabs(d - h) > 0x1p-7 * std::fabs(h) || (!cta::chain_keeps(kMask, i, j) && d != 0.0);
    }
  const bool same_bits = std::memcmp(dev.data() + p_at, plain.data() + p_at, total - p_at) == 0;
  row.configuration += wrong ? ", " + std::to_string(wrong) + " elements not once, or P off" : "";
  row.configuration += same_bits ? ", the two-step products' bits" : ", NOT the two-step products' bits";
  row.passed = row.error <= 1.0 && wrong == 0 && same_bits;
  return row;
}

// ---- chains sharing a phase ------------------------------------------------------------------------------
//
// grad_pass's four chains in one phase (chunk_grad_chains<true>: y's and dV's chains, then dQ's and dK's, side by
// side, P not stored), on the sizes it is compiled for. In a shared phase CTA warp w takes the phase's warps w,
// w + warps, ... (first_phase_warp), so at 512, 256 (grad_pass_one_phase_kernel's), 128 and 96 threads each
// chain must give its bits alone (its own phase, 512 threads), with every element handed over once, and agree
// with the host's phase as check_chain's chains do; with --host-only, the host's phase against its chains alone.

template <int kC, int kM, int kR>
struct GradPhaseTiles {  // Xa, Xb C×M; Xc, Xd C×R; Sop, dSop R×M (+8 a row); then Y, DV C×R and DQ, DK C×M in fp32
  static constexpr int kLdm = kM + 8, kLdd = kR + 8;
  static constexpr size_t kOperands = 2 * size_t(kC) * kLdm + 2 * size_t(kC) * kLdd + 2 * size_t(kR) * kLdm;
  static constexpr size_t kOutputs = 2 * size_t(kC) * kLdd + 2 * size_t(kC) * kLdm;  // fp32
  static constexpr int kWrites = 2 * kC * kR + 2 * kC * kM;
  __host__ __device__ static constexpr size_t bytes(size_t op) { return kOperands * op + kOutputs * sizeof(float); }
};

// The four chains, in one phase (kShared) or each in its own; kRowParts and kKeyParts are chunk_grad_chains<true>'s.
template <int kC, int kM, int kR, int kRowParts, int kKeyParts, bool kShared, typename Cta, typename Op>
__host__ __device__ void grad_phase(Cta& x, unsigned char* smem, int* writes) {
  using L = GradPhaseTiles<kC, kM, kR>;
  using cta::KSpan;
  constexpr int ldm = L::kLdm, ldd = L::kLdd, kRow = kC / 16 * kRowParts, kKey = kC / 16 * kKeyParts;
  constexpr int kPhase = 2 * kRow + 2 * kKey;
  Op* Xa = reinterpret_cast<Op*>(smem);
  Op* Xb = Xa + kC * ldm;
  Op* Xc = Xb + kC * ldm;
  Op* Xd = Xc + kC * ldd;
  Op* Sop = Xd + kC * ldd;
  Op* dSop = Sop + kR * ldm;
  float* Y = reinterpret_cast<float*>(dSop + kR * ldm);
  float* DV = Y + kC * ldd;
  float* DQ = DV + kC * ldd;
  float* DK = DQ + kC * ldm;
  const auto into = [](float* out, int ld, int n, int* counts) {
    return [=](int i, int j, const float* v) {
      for (int e = 0; e < cta::kAccumulatorPairs; ++e)
        for (int w = 0; w < 2; ++w) {
          const int row = i + 8 * (e & 1), col = j + 8 * (e >> 1) + w;
          out[row * ld + col] = v[2 * e + w];
          ++counts[row * n + col];
        }
    };
  };
  Op* const none = nullptr;
  x.template gemm_chain<KSpan::Causal, kC, kR, kM, kRowParts, true, 0, kShared ? kPhase : kRow>(
      Xa, ldm, Xb, ldm, Sop, ldm, Xd, ldd, none, 0, into(Y, ldd, kR, writes));
  x.template gemm_chain<KSpan::AntiCausal, kC, kR, kM, kRowParts, true, kShared ? kRow : 0, kShared ? kPhase : kRow>(
      Xb, ldm, Xa, ldm, dSop, ldm, Xc, ldd, none, 0, into(DV, ldd, kR, writes + kC * kR));
  x.template gemm_chain<KSpan::Causal, kC, kM, kR, kKeyParts, false, kShared ? 2 * kRow : 0, kShared ? kPhase : kKey>(
      Xc, ldd, Xd, ldd, Sop, ldm, Xb, ldm, none, 0, into(DQ, ldm, kM, writes + 2 * kC * kR));
  x.template gemm_chain<KSpan::AntiCausal, kC, kM, kR, kKeyParts, false, kShared ? 2 * kRow + kKey : 0,
                        kShared ? kPhase : kKey>(Xd, ldd, Xc, ldd, dSop, ldm, Xa, ldm, none, 0,
                                                 into(DK, ldm, kM, writes + 2 * kC * kR + kC * kM));
}

template <int kC, int kM, int kR, int kRowParts, int kKeyParts, bool kShared, typename Op>
__global__ void grad_phase_kernel(const unsigned char* in, size_t in_bytes, unsigned char* out, int* writes) {
  extern __shared__ __align__(128) unsigned char smem[];
  const size_t total = GradPhaseTiles<kC, kM, kR>::bytes(sizeof(Op));
  for (size_t i = threadIdx.x; i < total; i += blockDim.x) smem[i] = i < in_bytes ? in[i] : 0;  // outputs: 0
  __syncthreads();
  cta::DeviceCta x;
  grad_phase<kC, kM, kR, kRowParts, kKeyParts, kShared, cta::DeviceCta, Op>(x, smem, writes);
  for (size_t i = threadIdx.x; i < total; i += blockDim.x) out[i] = smem[i];
}

template <int kC, int kM, int kR, int kRowParts, int kKeyParts, typename H>
Row check_grad_phase(const char* type, bool gpu, std::mt19937& rng) {
  using L = GradPhaseTiles<kC, kM, kR>;
  using D = typename DeviceType<H>::type;
  constexpr int ldm = L::kLdm, ldd = L::kLdd;
  const size_t total = L::bytes(sizeof(H)), out_at = L::kOperands * sizeof(H);
  std::normal_distribution<float> n(0.0f, 1.0f);
  std::vector<H> ops(L::kOperands);
  for (auto& v : ops) v = cta::HostCta<>::from_f<H>(n(rng));
  std::vector<unsigned char> in(out_at);
  std::memcpy(in.data(), ops.data(), out_at);
  const auto on_host = [&](auto shared, std::vector<int>& writes) {
    cta::HostSmem smem(total);
    std::memcpy(smem.data(), in.data(), out_at);
    cta::HostCta<> x;
    writes.assign(L::kWrites, 0);
    grad_phase<kC, kM, kR, kRowParts, kKeyParts, decltype(shared)::value, cta::HostCta<>, H>(x, smem.data(),
                                                                                             writes.data());
    return std::vector<unsigned char>(smem.data(), smem.data() + total);
  };
  std::vector<int> host_writes, writes;
  const std::vector<unsigned char> host = on_host(std::true_type{}, host_writes);
  const auto not_once = [](const std::vector<int>& w) {
    int wrong = 0;
    for (int c : w) wrong += c != 1;
    return wrong;
  };
  Row row{"gemm_chain, one phase", std::string(type) +
                                       ", grad_pass's four chains (y, dV, dQ, dK): C = " + std::to_string(kC) +
                                       ", M = " + std::to_string(kM) + ", R = " + std::to_string(kR) + ", " +
                                       std::to_string(kRowParts) + "/" + std::to_string(kKeyParts) + " parts, " +
                                       std::to_string(2 * kC / 16 * (kRowParts + kKeyParts)) + " warps"};
  if (!gpu) {  // the host's phase against its chains alone: the same bits
    const std::vector<unsigned char> alone = on_host(std::false_type{}, writes);
    row.exact = true;
    for (size_t b = out_at; b < total; ++b) row.error += host[b] != alone[b];
    row.error += not_once(host_writes) + not_once(writes);
    row.passed = row.error == 0;
    return row;
  }
  const auto on_device = [&](auto shared, int threads, std::vector<int>& counts) {
    return device_image(grad_phase_kernel<kC, kM, kR, kRowParts, kKeyParts, decltype(shared)::value, D>, threads, in,
                        total, L::kWrites, counts);
  };
  const std::vector<unsigned char> alone = on_device(std::false_type{}, 512, writes);
  int wrong = not_once(writes);
  // Each output element's tolerance against the host's (check_chain's: P may round differently where the fp32
  // sums differ in the last place), from the operands in fp64.
  const H* X[6];
  X[0] = ops.data(), X[1] = X[0] + kC * ldm, X[2] = X[1] + kC * ldm, X[3] = X[2] + kC * ldd, X[4] = X[3] + kC * ldd,
  X[5] = X[4] + kR * ldm;
  const auto f = [](const H* base, int i, int p, int ld) { return double(cta::HostCta<>::to_f(base[i * ld + p])); };
  struct Output {
    cta::KSpan mask;
    int n, k, ld;  // Y's columns, the first product's k, the output's row length
    int a, b0, b1, b2, lda, ldb2;
    bool tb1;
  };
  const Output outputs[4] = {{cta::KSpan::Causal, kR, kM, ldd, 0, 1, 4, 3, ldm, ldd, true},
                             {cta::KSpan::AntiCausal, kR, kM, ldd, 1, 0, 5, 2, ldm, ldd, true},
                             {cta::KSpan::Causal, kM, kR, ldm, 2, 3, 4, 1, ldd, ldm, false},
                             {cta::KSpan::AntiCausal, kM, kR, ldm, 3, 2, 5, 0, ldd, ldm, false}};
  std::vector<std::pair<size_t, double>> tolerance;  // (byte offset of the output element, its tolerance)
  size_t at = out_at;
  for (const Output& o : outputs) {
    std::vector<double> P(size_t(kC) * kC, 0.0);  // mask(A·B0ᵀ)
    for (int i = 0; i < kC; ++i)
      for (int p = 0; p < kC; ++p)
        for (int q = 0; q < o.k && cta::chain_keeps(o.mask, i, p); ++q)
          P[i * kC + p] += f(X[o.a], i, q, o.lda) * f(X[o.b0], p, q, o.lda);
    for (int i = 0; i < kC; ++i)
      for (int j = 0; j < o.n; ++j)
        tolerance.push_back({at + (size_t(i) * o.ld + j) * sizeof(float),
                             chain_tolerance(
                                 i, j, o.k, kC, X[o.a], o.lda, X[o.b1], ldm, o.tb1,
                                 [&](int r, int q) { return P[r * kC + q]; }, X[o.b2], o.ldb2)});
    at += size_t(kC) * o.ld * sizeof(float);
  }
  std::string differing;
  for (int threads : {512, 256, 128, 96}) {
    const std::vector<unsigned char> shared = on_device(std::true_type{}, threads, writes);
    wrong += not_once(writes);
    if (std::memcmp(shared.data() + out_at, alone.data() + out_at, total - out_at) != 0)
      differing += (differing.empty() ? "" : ", ") + std::to_string(threads);
    for (const auto& [b, tol] : tolerance) {
      float d, h;
      std::memcpy(&d, shared.data() + b, sizeof d);
      std::memcpy(&h, host.data() + b, sizeof h);
      row.error = std::max(row.error, std::fabs(double(d) - double(h)) / tol);
    }
  }
  row.configuration += wrong ? ", " + std::to_string(wrong) + " elements not once" : "";
  row.configuration += differing.empty() ? ", at 512, 256, 128 and 96 threads the chains' bits alone"
                                         : ", NOT the chains' bits alone at " + differing + " threads";
  row.passed = row.error <= 1.0 && wrong == 0 && differing.empty();
  return row;
}

// ---- element operations ----------------------------------------------------------------------------------

constexpr int kIndices = 1000, kValues = 256;

// for_each, the vector accesses, the asynchronous copies and atomic_or, into `out` (ints, by part): what the
// host executor is asked to reproduce bit for bit.
//   [0, kIndices): 3i + 1 written by index i of a for_each (through shared memory)
//   then kValues floats through load4/store4, the same through load2/store2,
//   kValues bf16 stored from floats and loaded back (their bits, then the loaded floats), then stored from the
//   floats ± 1 by store2 (their bits), the same for fp16,
//   kValues floats copied by copy16_async, 64 bytes zero-filled, and one word OR-ed by 32 indices.
constexpr int kOutInts = kIndices + 2 * kValues + 2 * (kValues / 2 + kValues + kValues / 2) + kValues + 16 + 1;

template <typename Cta, typename B16, typename F16>
__host__ __device__ void element_ops(Cta& x, unsigned char* smem, const float* in, int* out) {
  int* S = reinterpret_cast<int*>(smem);
  float* F = reinterpret_cast<float*>(smem + 4096);
  float* G = F + kValues;
  B16* bh = reinterpret_cast<B16*>(G + kValues);
  F16* fh = reinterpret_cast<F16*>(bh + kValues);
  float* async = reinterpret_cast<float*>(fh + kValues);
  uint32_t* word = reinterpret_cast<uint32_t*>(async + kValues + 16);
  int* o = out;
  x.for_each(kIndices, [&](int64_t i) { S[i] = int(3 * i + 1); });
  x.for_each(kIndices, [&](int64_t i) { o[i] = S[i]; });
  o += kIndices;
  x.for_each(kValues, [&](int64_t i) { F[i] = in[i]; });
  x.for_each(kValues / 4, [&](int64_t q) {
    float v[4];
    Cta::load4(F + 4 * q, v);
    Cta::store4(G + 4 * q, v);
  });
  x.for_each(kValues, [&](int64_t i) { memcpy(&o[i], &G[i], 4); });
  o += kValues;
  x.for_each(kValues / 2, [&](int64_t q) {
    float v[2];
    Cta::load2(F + 2 * q, v);
    v[0] += 1.0f, v[1] -= 1.0f;
    Cta::store2(G + 2 * q, v);
  });
  x.for_each(kValues, [&](int64_t i) { memcpy(&o[i], &G[i], 4); });
  o += kValues;
  // 16-bit: store4 rounds, load4 widens; the stored bits (two a word), then the loaded values.
  auto sixteen = [&](auto* h) {
    x.for_each(kValues / 4, [&](int64_t q) {
      float v[4];
      Cta::load4(F + 4 * q, v);
      Cta::store4(h + 4 * q, v);
    });
    x.for_each(kValues / 4, [&](int64_t q) {
      float v[4];
      Cta::load4(h + 4 * q, v);
      Cta::store4(G + 4 * q, v);
    });
    x.for_each(kValues / 2, [&](int64_t i) { memcpy(&o[i], reinterpret_cast<const unsigned char*>(h) + 4 * i, 4); });
    o += kValues / 2;
    x.for_each(kValues, [&](int64_t i) { memcpy(&o[i], &G[i], 4); });
    o += kValues;
    x.for_each(kValues / 2, [&](int64_t q) {  // store2: a pair in one 32-bit access, rounded as store4
      float v[2];
      Cta::load2(F + 2 * q, v);
      v[0] += 1.0f, v[1] -= 1.0f;
      Cta::store2(h + 2 * q, v);
    });
    x.for_each(kValues / 2, [&](int64_t i) { memcpy(&o[i], reinterpret_cast<const unsigned char*>(h) + 4 * i, 4); });
    o += kValues / 2;
  };
  sixteen(bh);
  sixteen(fh);
  // Copies of 16 bytes from global memory, and four zero-filled ones after them.
  x.for_each(kValues / 4 + 4,
             [&](int64_t q) { x.copy16_async(async + 4 * q, in + 4 * (q % (kValues / 4)), q < kValues / 4); });
  x.wait_async();
  x.for_each(kValues + 16, [&](int64_t i) { memcpy(&o[i], &async[i], 4); });
  o += kValues + 16;
  x.for_each(1, [&](int64_t) { *word = 0u; });
  x.for_each(32, [&](int64_t i) { x.atomic_or(word, 1u << ((7 * i) % 32)); });
  x.for_each(1, [&](int64_t) { o[0] = int(*word); });
}

__global__ void element_kernel(const float* in, int* out) {
  extern __shared__ __align__(128) unsigned char smem[];
  cta::DeviceCta x;
  element_ops<cta::DeviceCta, __nv_bfloat16, __half>(x, smem, in, out);
}
constexpr size_t kElementSmem = 4096 + 2 * kValues * 4 + 2 * kValues * 2 + (kValues + 16) * 4 + 16;

// What element_ops must write, from the inputs alone.
std::vector<int> expected_elements(const std::vector<float>& in) {
  std::vector<int> e;
  auto bits = [&](float f) {
    int i;
    std::memcpy(&i, &f, 4);
    e.push_back(i);
  };
  for (int i = 0; i < kIndices; ++i) e.push_back(3 * i + 1);
  for (float f : in) bits(f);
  for (int i = 0; i < kValues; ++i) bits(i % 2 ? in[i] - 1.0f : in[i] + 1.0f);
  auto sixteen = [&](auto round, auto widen) {
    for (int i = 0; i < kValues; i += 2)
      e.push_back(int(uint32_t(round(in[i]).bits) | uint32_t(round(in[i + 1]).bits) << 16));
    for (float f : in) bits(widen(round(f)));
    for (int i = 0; i < kValues; i += 2)
      e.push_back(int(uint32_t(round(in[i] + 1.0f).bits) | uint32_t(round(in[i + 1] - 1.0f).bits) << 16));
  };
  sixteen([](float f) { return decayfw::to_bfloat16(f); }, [](BFloat16 h) { return decayfw::to_float(h); });
  sixteen([](float f) { return decayfw::to_float16(f); }, [](Float16 h) { return decayfw::to_float(h); });
  for (float f : in) bits(f);
  for (int i = 0; i < 16; ++i) e.push_back(0);
  uint32_t word = 0;
  for (int i = 0; i < 32; ++i) word |= 1u << ((7 * i) % 32);
  e.push_back(int(word));
  return e;
}

Row check_elements(bool gpu, std::mt19937& rng) {
  std::normal_distribution<float> n(0.0f, 1.0f);
  std::vector<float> in(kValues);
  for (float& x : in) x = n(rng) * std::exp(8.0f * n(rng));    // wide exponents: roundings, fp16's overflow
  in[0] = 1.0f + 1.0f / 256.0f, in[1] = 1.0f + 3.0f / 256.0f;  // ties for bf16 (to even: down, up)
  std::vector<int> host(kOutInts, -1);
  {
    cta::HostSmem smem(kElementSmem);
    cta::HostCta<> x;
    element_ops<cta::HostCta<>, BFloat16, Float16>(x, smem.data(), in.data(), host.data());
  }
  Row row{"for_each, load4/store4, load2/store2 (16-bit store2 too), copy16_async, atomic_or", "fp32, bf16, fp16", 0.0,
          true};
  auto differing = [&](const std::vector<int>& x, const std::vector<int>& y, const char* what) {
    int wrong = 0, first = -1;
    for (int i = 0; i < kOutInts; ++i)
      if (x[i] != y[i]) ++wrong, first = first < 0 ? i : first;
    if (wrong) row.configuration += std::string(", ") + what + ": first differing word " + std::to_string(first);
    return wrong;
  };
  // The host executor against what the operations mean; then the device against the host.
  row.error = differing(host, expected_elements(in), "host");
  if (!gpu) {
    row.passed = row.error == 0;
    return row;
  }
  float* pin = to_device(in);
  int* pout = to_device(std::vector<int>(kOutInts, -1));
  element_kernel<<<1, kThreads, kElementSmem>>>(pin, pout);
  DECAYFW_CHECK(cudaGetLastError());
  const std::vector<int> device = from_device(pout, kOutInts);
  row.error += differing(device, host, "device");
  row.passed = row.error == 0;
  cudaFree(pin), cudaFree(pout);
  return row;
}

}  // namespace

int main(int argc, char** argv) {
  bool host_only = false;
  for (int i = 1; i < argc; ++i) {
    if (std::string(argv[i]) == "--host-only") {
      host_only = true;
    } else {
      std::fprintf(stderr, "usage: cta_executor_check [--host-only]\n");
      return 2;
    }
  }
  int devices = 0;
  const bool gpu = !host_only && cudaGetDeviceCount(&devices) == cudaSuccess && devices > 0;
  if (!gpu && !host_only) {
    std::fprintf(stderr, "cta_executor_check: no CUDA device (--host-only checks the host executor alone)\n");
    return 1;
  }
  std::string device = "no GPU: the host executor against fp64";
  if (gpu) {
    cudaDeviceProp prop{};
    DECAYFW_CHECK(cudaGetDeviceProperties(&prop, 0));
    device = prop.name;
  }
  std::mt19937 rng(11);
  std::vector<Row> rows;
  rows.push_back(check_elements(gpu, rng));
  check_transposes<Mode::Gemm, BFloat16>("bf16", gpu, rng, rows);
  check_transposes<Mode::Gemm, Float16>("fp16", gpu, rng, rows);
  check_transposes<Mode::Gemm, float>("fp32 as tf32", gpu, rng, rows);
  check_transposes<Mode::GemmAccumulate, BFloat16>("bf16", gpu, rng, rows);
  check_transposes<Mode::GemmAccumulate, float>("fp32 as tf32", gpu, rng, rows);
  check_transposes<Mode::GemmFp32, float>("fp32", gpu, rng, rows);
  check_transposes<Mode::GemmApply, BFloat16>("bf16", gpu, rng, rows);
  check_transposes<Mode::GemmApply, Float16>("fp16", gpu, rng, rows);
  check_transposes<Mode::GemmApply, float>("fp32 as tf32", gpu, rng, rows);
  check_transposes<Mode::GemmApplyLowerA, BFloat16>("bf16", gpu, rng, rows);
  check_transposes<Mode::GemmApplyUpperA, BFloat16>("bf16", gpu, rng, rows);
  check_transposes<Mode::GemmApplyCausal, BFloat16>("bf16", gpu, rng, rows);
  check_transposes<Mode::GemmApplyLowerA, float>("fp32 as tf32", gpu, rng, rows);
  check_transposes<Mode::GemmApplyUpperA, float>("fp32 as tf32", gpu, rng, rows);
  check_transposes<Mode::GemmApplyCausal, float>("fp32 as tf32", gpu, rng, rows);
  check_transposes<Mode::GemmApplyBelowA, BFloat16>("bf16", gpu, rng, rows);
  check_transposes<Mode::GemmApplyAboveA, BFloat16>("bf16", gpu, rng, rows);
  check_transposes<Mode::GemmApplyBlockCausal, BFloat16>("bf16", gpu, rng, rows);
  check_transposes<Mode::GemmApplyBelowA, float>("fp32 as tf32", gpu, rng, rows);
  check_transposes<Mode::GemmApplyAboveA, float>("fp32 as tf32", gpu, rng, rows);
  check_transposes<Mode::GemmApplyBlockCausal, float>("fp32 as tf32", gpu, rng, rows);
  check_transposes<Mode::GemmApplySum, BFloat16>("bf16", gpu, rng, rows);
  check_transposes<Mode::GemmApplySum, float>("fp32 as tf32", gpu, rng, rows);
  rows.push_back(check_chain<cta::KSpan::Causal, 64, 64, 64, 1, true, BFloat16>("bf16", gpu, rng));
  rows.push_back(check_chain<cta::KSpan::Causal, 64, 64, 64, 2, true, BFloat16>("bf16", gpu, rng));
  rows.push_back(check_chain<cta::KSpan::BlockCausal, 64, 64, 64, 2, true, BFloat16>("bf16", gpu, rng));
  rows.push_back(check_chain<cta::KSpan::Causal, 64, 64, 32, 2, true, Float16>("fp16", gpu, rng));
  rows.push_back(check_chain<cta::KSpan::BlockCausal, 32, 64, 128, 4, true, BFloat16>("bf16", gpu, rng));
  rows.push_back(check_chain<cta::KSpan::Causal, 64, 32, 64, 2, false, BFloat16>("bf16", gpu, rng));
  rows.push_back(check_chain<cta::KSpan::BlockCausal, 32, 128, 64, 4, false, BFloat16>("bf16", gpu, rng));
  // the gradient's transposed chains (dV, dK): anti-causal masks, B1 either way
  rows.push_back(check_chain<cta::KSpan::AntiCausal, 64, 128, 64, 2, true, BFloat16>("bf16", gpu, rng));
  rows.push_back(check_chain<cta::KSpan::AntiCausal, 64, 64, 128, 4, false, BFloat16>("bf16", gpu, rng));
  rows.push_back(check_chain<cta::KSpan::BlockAntiCausal, 64, 128, 64, 2, true, BFloat16>("bf16", gpu, rng));
  rows.push_back(check_chain<cta::KSpan::BlockAntiCausal, 32, 64, 128, 4, false, BFloat16>("bf16", gpu, rng));
  // grad_pass's one phase at its compiled sizes: C = 64 (M ≤ 64, one part a chain) and C = 32 (M = 128)
  rows.push_back(check_grad_phase<64, 64, 64, 1, 1, BFloat16>("bf16", gpu, rng));
  rows.push_back(check_grad_phase<64, 16, 64, 1, 1, BFloat16>("bf16", gpu, rng));
  rows.push_back(check_grad_phase<32, 128, 64, 4, 4, BFloat16>("bf16", gpu, rng));
  std::printf(
      "The chunk programs' executor operations, DeviceCta on the GPU against HostCta on the same inputs (%s; "
      "tests/gpu/cta_executor_check.cu). Products: largest |difference| ÷ Σ|a·b| over 32×48 outputs, k = 64, "
      "tolerance %.0e; element operations: words that differ from the host's (and the host's from what the "
      "operations mean), of %d\n\n",
      device.c_str(), kProductTolerance, kOutInts);
  std::printf("| operation | operands | difference | result |\n|---|---|---|---|\n");
  int failed = 0;
  for (const Row& r : rows) {
    char difference[32];
    std::snprintf(difference, sizeof difference, r.exact ? "%.0f" : "%.1e", r.error);
    std::printf("| %s | %s | %s | %s |\n", r.operation.c_str(), r.configuration.c_str(), difference,
                r.passed ? "pass" : "FAIL");
    failed += !r.passed;
  }
  std::printf("\n%zu cases: %zu passed, %d failed\n", rows.size(), rows.size() - failed, failed);
  return failed ? 1 : 0;
}
