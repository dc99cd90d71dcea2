// SmemTrace (kernels/cuda/cta/smem_trace.h): the shared-memory bank model, how HostCta's accesses become
// warp instructions, the tensor-core fragment model, and that the chunk programs' tile paddings keep their
// vector accesses free of bank conflicts in every compiled configuration.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <type_traits>
#include <vector>

#include "chunk_host_driver.h"
#include "cta/host_cta.h"
#include "cta/smem_trace.h"
#include "decay_chunk_configs.h"

namespace {

namespace cta = decayfw::cta;
namespace chunk = decayfw::chunk;
using decayfw::BFloat16;

// Lane l at base + l·stride bytes.
void strided(int64_t (&addr)[cta::kWarp], int64_t stride, int64_t base = 0) {
  for (int l = 0; l < cta::kWarp; ++l) addr[l] = base + l * stride;
}

TEST(SmemBankModel, ConsecutiveWordsTakeOneWavefrontAndStridesConflict) {
  int64_t a[cta::kWarp];
  strided(a, 4);
  EXPECT_EQ(cta::bank_wavefronts(a, 4), 1);
  strided(a, 8);  // every other word: two words per bank
  EXPECT_EQ(cta::bank_wavefronts(a, 4), 2);
  strided(a, 128);  // one bank
  EXPECT_EQ(cta::bank_wavefronts(a, 4), 32);
  strided(a, 0);  // one word: a broadcast
  EXPECT_EQ(cta::bank_wavefronts(a, 4), 1);
  EXPECT_EQ(cta::ideal_wavefronts(a, 4), 1);
}

TEST(SmemBankModel, WideAccessesAreServedInHalfAndQuarterWarps) {
  int64_t a[cta::kWarp];
  strided(a, 16);
  EXPECT_EQ(cta::bank_wavefronts(a, 16), 4);  // 512 bytes, no conflict
  EXPECT_EQ(cta::phase_wavefronts(a, 16), 4);
  strided(a, 8);
  EXPECT_EQ(cta::bank_wavefronts(a, 8), 2);
  // Rows of 64 floats (256 bytes): a quarter warp's 16-byte reads of one column all hit the same four banks.
  strided(a, 256);
  EXPECT_EQ(cta::bank_wavefronts(a, 16), 32);
  // Padded to 68 floats, as the programs' fp32 tiles: each row moves four banks on, and a quarter warp's
  // eight rows cover all 32.
  strided(a, 272);
  EXPECT_EQ(cta::bank_wavefronts(a, 16), 4);
  // A uniform 16-byte read: its lanes are paired, so half warps, one wavefront each; one in all by its bytes.
  strided(a, 0);
  EXPECT_EQ(cta::bank_wavefronts(a, 16), 2);
  EXPECT_EQ(cta::ideal_wavefronts(a, 16), 1);
  // A uniform store is not paired: a quarter warp a wavefront.
  EXPECT_EQ(cta::bank_wavefronts(a, 16, true), 4);
}

// The two 16-byte patterns measured on an H100 with ncu (forums.developer.nvidia.com/t/373160).
TEST(SmemBankModel, PairedLoadsAreServedInTwiceTheLanes) {
  int64_t a[cta::kWarp];
  // Lanes 0-15 on one address and 16-31 on another 32 bytes on: measured 2 wavefronts.
  for (int l = 0; l < cta::kWarp; ++l) a[l] = l < 16 ? 0 : 32;
  EXPECT_EQ(cta::bank_wavefronts(a, 16), 2);
  EXPECT_EQ(cta::phase_wavefronts(a, 16), 2);
  // Lanes n and n + 16 on one address, 32 bytes apart along n: no lane has its neighbour's address, so a
  // quarter warp's eight addresses span 256 bytes, two words a bank: measured 8.
  for (int l = 0; l < cta::kWarp; ++l) a[l] = 32 * (l % 16);
  EXPECT_EQ(cta::bank_wavefronts(a, 16), 8);
  EXPECT_EQ(cta::phase_wavefronts(a, 16), 4);
  // Pairs two lanes apart count too; a lane whose partner is inactive breaks the pairing.
  for (int l = 0; l < cta::kWarp; ++l) a[l] = 16 * ((l / 4) * 2 + l % 2);  // n and n^2 share
  EXPECT_EQ(cta::bank_wavefronts(a, 16), 2);
  a[2] = -1;
  EXPECT_EQ(cta::bank_wavefronts(a, 16), 4);
  // 8-byte loads: one uniform address is one wavefront for the whole warp.
  strided(a, 0);
  EXPECT_EQ(cta::bank_wavefronts(a, 8), 1);
}

TEST(SmemBankModel, InactiveLanesAndPhasesCostNothing) {
  int64_t a[cta::kWarp];
  std::fill(a, a + cta::kWarp, -1);
  EXPECT_EQ(cta::bank_wavefronts(a, 16), 0);
  EXPECT_EQ(cta::phase_wavefronts(a, 16), 0);
  EXPECT_EQ(cta::ideal_wavefronts(a, 16), 0);
  a[9] = 0;  // one lane of the second quarter
  EXPECT_EQ(cta::bank_wavefronts(a, 16), 1);
  EXPECT_EQ(cta::phase_wavefronts(a, 16), 1);
}

// The one row the trace has for a kernel and access kind.
cta::SmemTrace::Cost total(const cta::SmemTrace& t, const std::string& kind = "") {
  cta::SmemTrace::Cost c;
  for (const auto& [key, cost] : t.costs())
    if (kind.empty() || key.access.kind == kind) c.add(cost);
  return c;
}

// 64 indices, each reading four floats of its own row: two warps, one instruction each.
cta::SmemTrace::Cost rows_read(int row_floats, cta::Order order) {
  cta::SmemTrace trace;
  cta::SmemTrace::Scope scope(trace);
  cta::HostSmem smem(64 * row_floats * sizeof(float));
  float* rows = reinterpret_cast<float*>(smem.data());
  std::fill(rows, rows + 64 * row_floats, 1.0f);
  cta::HostCta<> c;
  c.order = order;
  float sum = 0.0f;
  c.for_each(64, [&](int64_t i) {
    float v[4];
    cta::HostCta<>::load4(rows + i * row_floats, v);
    sum += v[0];
  });
  EXPECT_EQ(sum, 64.0f);
  return total(trace);
}

TEST(SmemTrace, ConsecutiveIndicesAreAWarpWhateverTheHostOrder) {
  for (cta::Order order : {cta::Order::Forward, cta::Order::Reverse, cta::Order::Interleaved}) {
    const cta::SmemTrace::Cost padded = rows_read(68, order), unpadded = rows_read(64, order);
    EXPECT_EQ(padded.instructions, 2);
    EXPECT_EQ(padded.wavefronts, 8);  // 2 × 4 quarter warps
    EXPECT_EQ(unpadded.instructions, 2);
    EXPECT_EQ(unpadded.wavefronts, 64);  // eight rows on the same banks in every quarter warp
    EXPECT_EQ(unpadded.phases, 8);
  }
}

TEST(SmemTrace, SeesOnlySharedMemoryAndOnlyWhileCurrent) {
  std::vector<float> global(64, 1.0f);
  cta::HostSmem smem(1024);
  float* shared = reinterpret_cast<float*>(smem.data());  // made before the trace: not known to it
  cta::SmemTrace trace;
  {
    cta::SmemTrace::Scope scope(trace);
    cta::HostSmem known(1024);
    float* tile = reinterpret_cast<float*>(known.data());
    cta::HostCta<> c;
    c.for_each(8, [&](int64_t i) {
      float v[4];
      cta::HostCta<>::load4(global.data() + 4 * i, v);  // global memory
      cta::HostCta<>::load4(shared + 4 * i, v);         // another CTA's buffer
      cta::HostCta<>::store4(tile + 4 * i, v);          // this one's
    });
  }
  cta::HostCta<> c;
  c.for_each(8, [&](int64_t i) {
    float v[4] = {};
    cta::HostCta<>::store4(shared + 4 * i, v);  // no trace current
  });
  const cta::SmemTrace::Cost all = total(trace);
  EXPECT_EQ(all.instructions, 1);
  EXPECT_EQ(all.wavefronts, 1);  // eight lanes' 16 bytes: the first quarter warp
  ASSERT_EQ(trace.costs().size(), 1u);
  EXPECT_TRUE(trace.costs().begin()->first.store);
  EXPECT_EQ(trace.costs().begin()->first.access.kind, cta::kVectorAccess);
}

// One 16×16×16 product of Op operands (bf16 or fp32 as tf32): A row-major, B as given, both with leading
// dimension ld, C (fp32) with ldc; the cost of one access kind of the fragment model.
template <typename Op = BFloat16>
cta::SmemTrace::Cost fragments(bool b_transposed, int ldc, const std::string& access, int ld = 72) {
  cta::SmemTrace trace;
  cta::SmemTrace::Scope scope(trace);
  cta::HostSmem smem(4 * 16 * 80 * sizeof(float));
  auto* A = reinterpret_cast<Op*>(smem.data());
  Op* B = A + 16 * ld;
  float* C = reinterpret_cast<float*>(smem.data() + 2 * 16 * 80 * sizeof(float));
  std::fill(A, A + 2 * 16 * ld, Op{});
  cta::HostCta<> c;
  if (b_transposed)
    c.gemm<false, true>(16, 16, 16, A, ld, B, ld, C, ldc, false);
  else
    c.gemm<false, false>(16, 16, 16, A, ld, B, ld, C, ldc, false);
  cta::SmemTrace::Cost cost;
  for (const auto& [key, k] : trace.costs())
    if (key.access.function == access) cost.add(k);
  EXPECT_EQ(trace.gemms(), 1);
  return cost;
}

TEST(SmemTrace, TensorCoreFragmentsAreReadAsStored) {
  // A 16-bit operand tile is one ldmatrix.x4 whatever its layout: four 8×8 matrices of eight stored rows,
  // conflict-free with rows of 72 bf16 (each moves four banks on); unpadded rows of 64 all meet (8-way).
  const cta::SmemTrace::Cost a = fragments(true, 68, "A load");
  EXPECT_EQ(a.instructions, 1);
  EXPECT_EQ(a.wavefronts, 4);
  EXPECT_EQ(fragments(true, 68, "B load").wavefronts, 4);
  EXPECT_EQ(fragments(false, 68, "B load").wavefronts, 4);
  EXPECT_EQ(fragments(true, 68, "A load", 64).wavefronts, 32);
  // A tf32 operand tile (16×8 per k step of 8, two steps) is four 32-bit loads a step, lane (g, t) reading word
  // t of row g: rows of 68 floats move four banks on, conflict-free.
  const cta::SmemTrace::Cost t = fragments<float>(false, 72, "A load", 68);
  EXPECT_EQ(t.instructions, 8);
  EXPECT_EQ(t.wavefronts, 8);
  // The accumulators in four 64-bit stores: a half warp's four rows each span eight banks, and rows of
  // 68 floats move four banks on, so pairs of rows share banks (2-way); unpadded rows (64) all meet (4-way).
  const cta::SmemTrace::Cost c68 = fragments(true, 68, "C store"), c64 = fragments(true, 64, "C store");
  EXPECT_EQ(c68.instructions, 4);
  EXPECT_EQ(c68.wavefronts, 16);
  EXPECT_EQ(c64.wavefronts, 32);
  EXPECT_EQ(fragments(true, 72, "C store").wavefronts, 8);  // rows moving eight banks on: conflict-free
}

// gemm_apply's epilogue runs where the accumulators are: lane (g, t) of the tile's warp at rows g, g + 8 and
// columns 2t, 2t + 8 (+1). Its 64-bit accesses of an fp32 tile are then the accumulator stores' pattern, and
// the product itself touches no shared memory.
cta::SmemTrace::Cost epilogue(int ld, std::vector<std::string>* fragment_accesses = nullptr) {
  cta::SmemTrace trace;
  cta::SmemTrace::Scope scope(trace);
  cta::HostSmem smem(2 * 16 * 72 * sizeof(BFloat16) + 32 * 72 * sizeof(float));
  auto* A = reinterpret_cast<BFloat16*>(smem.data());
  BFloat16* B = A + 16 * 72;
  float* out = reinterpret_cast<float*>(smem.data() + 2 * 16 * 72 * sizeof(BFloat16));
  std::fill(A, A + 2 * 16 * 72, BFloat16{});
  std::fill(out, out + 32 * ld, 0.0f);
  cta::HostCta<> c;
  c.gemm_apply<false, true>(16, 32, 16, A, 72, B, 72, [&](int i, int j, const float* v) {
    for (int e = 0; e < 4; ++e) {
      float* p = out + (i + 8 * (e & 1)) * ld + j + 8 * (e >> 1);
      float o[2];
      cta::HostCta<>::load2(p, o);
      o[0] += v[2 * e], o[1] += v[2 * e + 1];
      cta::HostCta<>::store2(p, o);
    }
  });
  cta::SmemTrace::Cost cost;
  for (const auto& [key, k] : trace.costs()) {
    if (key.access.kind == cta::kVectorAccess)
      cost.add(k);
    else if (fragment_accesses)
      fragment_accesses->push_back(key.access.function);
  }
  return cost;
}

TEST(SmemTrace, GemmApplyEpilogueTakesTheAccumulatorLanes) {
  std::vector<std::string> fragments_seen;
  // Two 16×16 tiles, each lane four pairs loaded and stored: 16 instructions, and with rows of 72 floats (eight
  // banks on) a half warp's four rows of eight banks are conflict-free: 2 wavefronts each.
  const cta::SmemTrace::Cost padded = epilogue(72, &fragments_seen);
  EXPECT_EQ(padded.instructions, 16);
  EXPECT_EQ(padded.wavefronts, 32);
  // Rows of 68 floats move four banks: rows g and g + 2 meet, as the accumulator stores' (2-way).
  EXPECT_EQ(epilogue(68).wavefronts, 64);
  // The operands' fragments are read; no accumulator is loaded or stored.
  std::sort(fragments_seen.begin(), fragments_seen.end());
  EXPECT_EQ(fragments_seen, (std::vector<std::string>{"A load", "B load"}));
}

// The chunk programs' own vector accesses, one forward and backward, with the trace current.
template <typename In, int M>
cta::SmemTrace trace_chunk_programs(chunk::DiagonalForm form) {
  using Cfg = chunk::CompiledConfig<In, M>;
  decayfw::testing::RandomSequence<In> seq(2 * Cfg::C + 5, 128, M, 7);
  chunk::ChunkArgs a = seq.forward_args(form), b = seq.backward_args(form);
  cta::SmemTrace trace;
  cta::SmemTrace::Scope scope(trace);
  decayfw::testing::HostChunkRunner<In, Cfg, false> run;
  run.forward(a);
  run.backward(b, true);
  return trace;
}

template <typename In, int M>
void expect_vector_accesses_conflict_free(const char* name) {
  for (chunk::DiagonalForm form : {chunk::DiagonalForm::Factored, chunk::DiagonalForm::Elementwise,
                                   chunk::DiagonalForm::Tensor, chunk::DiagonalForm::Chunk}) {
    const cta::SmemTrace trace = trace_chunk_programs<In, M>(form);
    for (const char* kernel : {"state_pass", "output_pass", "dstate_pass", "grad_pass"}) {
      cta::SmemTrace::Cost c;
      for (const auto& [key, cost] : trace.costs())
        if (key.kernel == kernel && key.access.kind == cta::kVectorAccess) c.add(cost);
      ASSERT_GT(c.instructions, 0) << name << " " << kernel;
      // Measured 1.00–1.13 with 16-bit operands (e.g. the factored dot's key rows j and j + 8 meet in some
      // quarter warps), up to 1.19 for fp32 at M = 16 (rows of 16 floats padded by 4: two rows of a quarter
      // warp share four banks; a padding that avoids it would make the tensor-core loads conflict). Tiles
      // without the padding reach 1.5–2.1 here (12 of these 60 checks fail). One known exception: fp32
      // dstate_pass at M = 16, 1.29 since its log gates' vector accesses (conflict-free, 40% of its vector
      // instructions) became gate_column's scalar ones in session 22; its state tile's rows of 24 floats put
      // the two rows of a quarter warp on 8 common banks (2.0 for those accesses), as before.
      const bool known = std::is_same_v<In, float> && M == 16 && std::string(kernel) == "dstate_pass";
      EXPECT_LT(double(c.wavefronts) / double(c.phases), known ? 1.35 : 1.25)
          << name << " M = " << M << " " << kernel << " form " << static_cast<int>(form);
    }
  }
}

TEST(SmemTrace, ChunkProgramsVectorAccessesAreFreeOfBankConflicts) {
  expect_vector_accesses_conflict_free<BFloat16, 64>("bf16");
  expect_vector_accesses_conflict_free<BFloat16, 128>("bf16");
  expect_vector_accesses_conflict_free<decayfw::Float16, 32>("fp16");
  expect_vector_accesses_conflict_free<float, 16>("fp32");
  expect_vector_accesses_conflict_free<float, 128>("fp32");
}

}  // namespace
