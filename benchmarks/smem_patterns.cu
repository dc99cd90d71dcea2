// Calibrates the shared-memory bank model (kernels/cuda/cta/smem_trace.h) on the GPU: each access pattern
// the model makes an assumption about, timed on one SM, beside the wavefronts the model gives it.
//
// Why. benchmarks/smem_bank_report counts the chunk programs' shared-memory wavefronts through that model,
// and its count is what says shared memory binds the chunk kernels (docs/cuda-design-log.md, "A third floor"). The
// model's doubtful parts are patterns: whether a 16-byte load every lane of a warp makes at one address
// takes 4 wavefronts (quarter warps), 2 (paired lanes) or 1 (its bytes); whether lanes n and n^1 sharing
// addresses halve a wide load; what WMMA's fragment loads and stores cost (and whether the generic loads
// load_matrix_sync made of the kernels' tiles cost more than ldmatrix). Nsight Compute's counters say
// this too, where the machine lets it read them; a timing needs nothing.
//
// It also checks, after the table, that the tensor cores' fp32 accumulators hold what cta_common.h's
// accumulator_pair says (WMMA leaves that layout unspecified; gemm_apply's epilogues rely on it).
//
// How. One CTA of 1024 threads (32 warps) on one SM. Each warp issues the pattern's instruction 32 times a
// loop iteration (inline PTX, so the compiler neither merges nor drops them), and thread 0 reads clock64
// around the whole CTA's run. With every warp issuing, the SM's shared memory serves one 128-byte wavefront
// a clock, so clocks ÷ (warp instructions) is the wavefronts an instruction takes, wherever that is above
// what the pipes issue (about 1 for the 4-byte patterns: the table's first row is the floor of the method).
//
//   smem_patterns [--iters N] [--model-only]     (no CUDA device: the model's column alone, exit 0 with
//                                                 --model-only, else a message and exit 1; exit 3 where the
//                                                 accumulators are not where accumulator_pair says)
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <mma.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "cta/host_cta.h"
#include "cta/smem_trace.h"
#include "cta/wmma_shared.cuh"

namespace {

namespace cta = decayfw::cta;

constexpr int kWarps = 32, kThreads = kWarps * cta::kWarp, kUnroll = 32;
constexpr int kSmemBytes = 32 * 1024;

enum class Kind { Load, Store, WmmaOperand, WmmaOperandShared, WmmaAccumulatorStore };

struct Pattern {
  const char* name;
  Kind kind;
  int bytes;               // per lane (Load: 4, 8 or 16; Store: 16)
  int offset[cta::kWarp];  // per lane, bytes; -1: inactive (Load, Store); WMMA: offset[0] is the tile's ld
};

// Lane l's byte offset for each pattern (the model's doubtful cases, and the plain ones that calibrate).
std::vector<Pattern> patterns() {
  std::vector<Pattern> p;
  auto add = [&](const char* name, Kind kind, int bytes, auto offset) {
    Pattern x{name, kind, bytes, {}};
    for (int l = 0; l < cta::kWarp; ++l) x.offset[l] = offset(l);
    p.push_back(x);
  };
  add("4 B, consecutive words", Kind::Load, 4, [](int l) { return 4 * l; });
  add("4 B, every other word (2-way)", Kind::Load, 4, [](int l) { return 8 * l; });
  add("4 B, one word", Kind::Load, 4, [](int) { return 0; });
  add("8 B, consecutive", Kind::Load, 8, [](int l) { return 8 * l; });
  add("8 B, one address", Kind::Load, 8, [](int) { return 0; });
  add("16 B, consecutive", Kind::Load, 16, [](int l) { return 16 * l; });
  add("16 B, one address", Kind::Load, 16, [](int) { return 0; });
  add("16 B, lanes n and n^1 share, pairs consecutive", Kind::Load, 16, [](int l) { return 16 * (l / 2); });
  add("16 B, lanes n and n^2 share", Kind::Load, 16, [](int l) { return 16 * ((l / 4) * 2 + l % 2); });
  add("16 B, lanes 0-15 / 16-31 on two addresses (forum 373160, 2)", Kind::Load, 16,
      [](int l) { return l < 16 ? 0 : 32; });
  add("16 B, lanes n and n+16 share, 32 B apart (forum 373160, 8)", Kind::Load, 16,
      [](int l) { return 32 * (l % 16); });
  add("16 B, rows of 64 floats, one column (8-way)", Kind::Load, 16, [](int l) { return 256 * l; });
  add("16 B, rows of 68 floats, one column (the padding)", Kind::Load, 16, [](int l) { return 272 * l; });
  add("16 B store, consecutive", Kind::Store, 16, [](int l) { return 16 * l; });
  add("16 B store, one address", Kind::Store, 16, [](int) { return 0; });
  // load_matrix_sync takes a generic pointer, and where nvcc cannot tell it is shared (here; the chunk kernels
  // before wmma_shared.cuh) emits four generic 32-bit loads (LD.E); the same PTX instruction with .shared, as
  // the kernels now issue it, is one ldmatrix (LDSM.x4). The model counts the same wavefronts for both.
  add("wmma bf16 operand 16x16, row-major, ld 72 (generic: 4 LD.E)", Kind::WmmaOperand, 2,
      [](int l) { return l == 0 ? 72 : 0; });
  add("wmma bf16 operand 16x16, row-major, ld 72 (.shared: LDSM.x4, the kernels')", Kind::WmmaOperandShared, 2,
      [](int l) { return l == 0 ? 72 : 0; });
  add("wmma fp32 accumulator store 16x16, ld 72", Kind::WmmaAccumulatorStore, 4, [](int l) { return l == 0 ? 72 : 0; });
  add("wmma fp32 accumulator store 16x16, ld 68", Kind::WmmaAccumulatorStore, 4, [](int l) { return l == 0 ? 68 : 0; });
  return p;
}

// The model's wavefronts per warp instruction (per load_matrix_sync or store_matrix_sync for WMMA), and
// its conflict-free and "fewest" columns.
struct ModelCost {
  double wavefronts, conflict_free, fewest;
};

ModelCost model(const Pattern& p) {
  if (p.kind == Kind::Load || p.kind == Kind::Store) {
    int64_t addr[cta::kWarp];
    for (int l = 0; l < cta::kWarp; ++l) addr[l] = p.offset[l];
    const bool store = p.kind == Kind::Store;
    return {double(cta::bank_wavefronts(addr, p.bytes, store)), double(cta::phase_wavefronts(addr, p.bytes, store)),
            double(cta::ideal_wavefronts(addr, p.bytes))};
  }
  // WMMA: what trace_wmma_fragments has one 16×16×16 product's A load, or its accumulator store, cost.
  const int ld = p.offset[0];
  cta::SmemTrace trace;
  cta::SmemTrace::Scope scope(trace);
  cta::HostSmem smem(3 * 16 * ld * sizeof(float));
  auto* a = reinterpret_cast<decayfw::BFloat16*>(smem.data());
  auto* c = reinterpret_cast<float*>(smem.data() + 16 * ld * sizeof(float));
  cta::trace_wmma_fragments<false, false>(trace, {"calibration", 0, 0, ""}, 16, 16, 16, a, ld, a, ld, c, ld, false);
  const char* site = p.kind == Kind::WmmaAccumulatorStore ? "C store" : "A load";
  cta::SmemTrace::Cost sum;
  for (const auto& [key, cost] : trace.costs())
    if (key.access.function == site) sum.add(cost);
  return {double(sum.wavefronts), double(sum.phases), double(sum.ideal)};
}

__device__ __forceinline__ unsigned shared_address(const void* p) {
  return static_cast<unsigned>(__cvta_generic_to_shared(p));
}

template <int kBytes>
__device__ __forceinline__ float load_shared(unsigned a) {
  float x, y, z, w;
  if constexpr (kBytes == 4) {
    asm volatile("ld.volatile.shared.f32 %0, [%1];" : "=f"(x) : "r"(a) : "memory");
    return x;
  } else if constexpr (kBytes == 8) {
    asm volatile("ld.volatile.shared.v2.f32 {%0, %1}, [%2];" : "=f"(x), "=f"(y) : "r"(a) : "memory");
    return x + y;
  } else {
    asm volatile("ld.volatile.shared.v4.f32 {%0, %1, %2, %3}, [%4];"
                 : "=f"(x), "=f"(y), "=f"(z), "=f"(w)
                 : "r"(a)
                 : "memory");
    return (x + y) + (z + w);
  }
}

template <int kBytes>
__device__ __forceinline__ void store_shared(unsigned a, float v) {
  static_assert(kBytes == 16, "the store patterns are 16-byte");
  asm volatile("st.volatile.shared.v4.f32 [%0], {%1, %1, %1, %1};" ::"r"(a), "f"(v) : "memory");
}

// One pattern, one CTA: clocks of the whole CTA's kUnroll × iters instructions per warp.
template <Kind kKind, int kBytes>
__global__ void __launch_bounds__(kThreads)
    time_pattern(const int* offsets, int iters, long long* clocks, float* sink) {
  namespace w = nvcuda::wmma;
  __shared__ __align__(128) unsigned char smem[kSmemBytes];
  for (int i = threadIdx.x; i < kSmemBytes / 4; i += blockDim.x) reinterpret_cast<float*>(smem)[i] = 1.0f / (1 + i);
  __syncthreads();
  const int offset = offsets[threadIdx.x % 32];
  float acc = 0.0f;
  const long long t0 = clock64();
  if constexpr (kKind == Kind::Load || kKind == Kind::Store) {
    if (offset >= 0) {
      const unsigned a = shared_address(smem + offset);
      for (int it = 0; it < iters; ++it) {
#pragma unroll
        for (int u = 0; u < kUnroll; ++u) {
          if constexpr (kKind == Kind::Load)
            acc += load_shared<kBytes>(a);
          else
            store_shared<kBytes>(a, acc + u);
        }
      }
    }
  } else if constexpr (kKind == Kind::WmmaOperand || kKind == Kind::WmmaOperandShared) {
    const int ld = offsets[0];
    const __nv_bfloat16* tile = reinterpret_cast<const __nv_bfloat16*>(smem) + (threadIdx.x / 32 % 2) * 16 * ld;
    __nv_bfloat162 sum = __floats2bfloat162_rn(0.0f, 0.0f);
    for (int it = 0; it < iters; ++it) {
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        uint32_t r[4];
        if constexpr (kKind == Kind::WmmaOperand) {
          w::fragment<w::matrix_a, 16, 16, 16, __nv_bfloat16, w::row_major> f;
          w::load_matrix_sync(f, tile, ld);
          memcpy(r, f.x, sizeof r);
        } else {
          asm volatile("wmma.load.a.sync.aligned.row.m16n16k16.shared.bf16 {%0, %1, %2, %3}, [%4], %5;"
                       : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                       : "r"(shared_address(tile)), "r"(ld)
                       : "memory");
        }
        __syncwarp();  // orders the warp's shared-memory accesses for ptxas too: a load per iteration, not hoisted
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          __nv_bfloat162 v;
          memcpy(&v, &r[e], 4);
          sum = __hadd2(sum, v);
        }
      }
    }
    acc = __low2float(sum) + __high2float(sum);
  } else {
    const int ld = offsets[0];
    float* tile = reinterpret_cast<float*>(smem) + (threadIdx.x / 32 % 2) * 16 * ld;
    w::fragment<w::accumulator, 16, 16, 16, float> c;
    w::fill_fragment(c, 1.0f);
    for (int it = 0; it < iters; ++it) {
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        w::store_matrix_sync(tile, c, ld, w::mem_row_major);
        __syncwarp();
      }
    }
  }
  __syncthreads();
  const long long t1 = clock64();
  if (threadIdx.x == 0) *clocks = t1 - t0;
  sink[threadIdx.x] = acc;
}

// The accumulator fragment (m16n16kK, fp32) loaded from a 16×16 tile whose element (r, c) is 16r + c: counts
// the elements a lane holds anywhere but where accumulator_pair puts them.
template <int K>
__global__ void check_accumulator_layout(int* mismatches) {
  __shared__ __align__(128) float tile[16 * 16];
  for (int i = threadIdx.x; i < 16 * 16; i += blockDim.x) tile[i] = float(i);
  __syncthreads();
  cta::wmma_shared::Accumulator<K> c;
  cta::wmma_shared::load(c, tile, 16);
  const int lane = threadIdx.x % cta::kWarp;
  for (int e = 0; e < cta::kAccumulatorPairs; ++e)
    for (int w = 0; w < 2; ++w)
      if (c.x[2 * e + w] != float(16 * cta::accumulator_pair_row(lane, e) + cta::accumulator_pair_col(lane, e) + w))
        atomicAdd(mismatches, 1);
}

#define DECAYFW_CHECK(x)                                                                    \
  do {                                                                                      \
    const cudaError_t err_ = (x);                                                           \
    if (err_ != cudaSuccess) {                                                              \
      std::fprintf(stderr, "smem_patterns: %s failed: %s\n", #x, cudaGetErrorString(err_)); \
      std::exit(1);                                                                         \
    }                                                                                       \
  } while (0)

// Clocks per warp instruction (per load_matrix_sync / store_matrix_sync for WMMA) of one pattern.
double measure(const Pattern& p, int iters, int* d_offsets, long long* d_clocks, float* d_sink) {
  DECAYFW_CHECK(cudaMemcpy(d_offsets, p.offset, sizeof p.offset, cudaMemcpyHostToDevice));
  auto run = [&](auto kernel) {
    kernel<<<1, kThreads>>>(d_offsets, 1, d_clocks, d_sink);  // warm-up
    DECAYFW_CHECK(cudaGetLastError());
    kernel<<<1, kThreads>>>(d_offsets, iters, d_clocks, d_sink);
    DECAYFW_CHECK(cudaGetLastError());
  };
  switch (p.kind) {
    case Kind::Load:
      if (p.bytes == 4)
        run(time_pattern<Kind::Load, 4>);
      else if (p.bytes == 8)
        run(time_pattern<Kind::Load, 8>);
      else
        run(time_pattern<Kind::Load, 16>);
      break;
    case Kind::Store:
      if (p.bytes != 16) {
        std::fprintf(stderr, "smem_patterns: the store pattern '%s' is not 16-byte (only those are timed)\n", p.name);
        std::exit(2);
      }
      run(time_pattern<Kind::Store, 16>);
      break;
    case Kind::WmmaOperand:
      run(time_pattern<Kind::WmmaOperand, 2>);
      break;
    case Kind::WmmaOperandShared:
      run(time_pattern<Kind::WmmaOperandShared, 2>);
      break;
    case Kind::WmmaAccumulatorStore:
      run(time_pattern<Kind::WmmaAccumulatorStore, 4>);
      break;
  }
  long long clocks = 0;
  DECAYFW_CHECK(cudaMemcpy(&clocks, d_clocks, sizeof clocks, cudaMemcpyDeviceToHost));
  return double(clocks) / (double(iters) * kUnroll * kWarps);  // every warp issues, whatever lanes are inactive
}

}  // namespace

int main(int argc, char** argv) {
  int iters = 200;
  bool model_only = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--iters" && i + 1 < argc)
      iters = std::atoi(argv[++i]);
    else if (a == "--model-only")
      model_only = true;
    else {
      std::fprintf(stderr, "usage: smem_patterns [--iters N] [--model-only]\n");
      return 2;
    }
  }
  if (iters < 1) {
    std::fprintf(stderr, "smem_patterns: --iters must be at least 1\n");
    return 2;
  }
  int devices = 0;
  const bool gpu = !model_only && cudaGetDeviceCount(&devices) == cudaSuccess && devices > 0;
  if (!gpu && !model_only) {
    std::fprintf(stderr, "smem_patterns: no CUDA device (--model-only prints the model's column alone)\n");
    return 1;
  }
  int* d_offsets = nullptr;
  long long* d_clocks = nullptr;
  float* d_sink = nullptr;
  std::string device = "no GPU (model only)";
  if (gpu) {
    cudaDeviceProp prop{};
    DECAYFW_CHECK(cudaGetDeviceProperties(&prop, 0));
    device = prop.name;
    DECAYFW_CHECK(cudaMalloc(&d_offsets, sizeof(int) * cta::kWarp));
    DECAYFW_CHECK(cudaMalloc(&d_clocks, sizeof(long long)));
    DECAYFW_CHECK(cudaMalloc(&d_sink, sizeof(float) * kThreads));
  }
  std::printf(
      "Shared-memory access patterns: the bank model's wavefronts per warp instruction (smem_trace.h; "
      "WMMA: per load_matrix_sync or store_matrix_sync, trace_wmma_fragments) against clocks per warp "
      "instruction measured on one SM with %d warps issuing (%s; %d × %d instructions a warp). Where the "
      "measured clocks exceed the first row's, they are the wavefronts the hardware took "
      "(benchmarks/smem_patterns.cu)\n\n",
      kWarps, device.c_str(), iters, kUnroll);
  std::printf("| pattern | model | conflict-free | fewest | measured clocks | measured ÷ model |\n");
  std::printf("|---|---|---|---|---|---|\n");
  for (const Pattern& p : patterns()) {
    const ModelCost m = model(p);
    if (!gpu) {
      std::printf("| %s | %.0f | %.0f | %.0f | — | — |\n", p.name, m.wavefronts, m.conflict_free, m.fewest);
      continue;
    }
    const double c = measure(p, iters, d_offsets, d_clocks, d_sink);
    std::printf("| %s | %.0f | %.0f | %.0f | %.2f | %.2f |\n", p.name, m.wavefronts, m.conflict_free, m.fewest, c,
                m.wavefronts > 0 ? c / m.wavefronts : 0.0);
  }
  // The accumulator layout gemm_apply's epilogues take for granted, for both fragments the chunk kernels use.
  int wrong = 0;
  if (gpu) {
    int* d_mismatches = nullptr;
    DECAYFW_CHECK(cudaMalloc(&d_mismatches, sizeof(int)));
    std::printf("\nWMMA fp32 accumulators against cta_common.h's accumulator_pair (gemm_apply's epilogues):");
    for (int k : {16, 8}) {
      DECAYFW_CHECK(cudaMemset(d_mismatches, 0, sizeof(int)));
      if (k == 16)
        check_accumulator_layout<16><<<1, cta::kWarp>>>(d_mismatches);
      else
        check_accumulator_layout<8><<<1, cta::kWarp>>>(d_mismatches);
      DECAYFW_CHECK(cudaGetLastError());
      int n = 0;
      DECAYFW_CHECK(cudaMemcpy(&n, d_mismatches, sizeof n, cudaMemcpyDeviceToHost));
      std::printf(" m16n16k%d %s;", k, n == 0 ? "as assumed" : "DIFFERENT");
      if (n) std::printf(" (%d of 256 elements elsewhere: the chunk kernels' epilogues are wrong)", n);
      wrong += n;
    }
    std::printf("\n");
    cudaFree(d_mismatches);
  } else {
    std::printf("\nWMMA fp32 accumulators against accumulator_pair: not checked (no GPU)\n");
  }
  if (gpu) {
    cudaFree(d_offsets);
    cudaFree(d_clocks);
    cudaFree(d_sink);
  }
  return wrong ? 3 : 0;
}
