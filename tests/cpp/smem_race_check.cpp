// Shared-memory races of the CUDA chunk programs, found on the CPU: what compute-sanitizer's racecheck looks
// for on the GPU, for every compiled configuration, diagonal form, forward form and gate regime, on every CI run.
// The programs run on HostCta with a SmemTrace current (kernels/cuda/cta/smem_trace.h, "Races"): within one
// phase, bytes that one for_each index stores and another loads or stores; accesses to bytes an async copy is
// still filling; stores outside every for_each; and in global memory (the op's tensors and workspace), bytes that
// one CTA of a launch stores and another CTA of the same launch loads or stores (which racecheck does not see).
// Beside the races, loads of shared memory the CTA never stored and accesses outside its shared memory. This
// file is compiled with GCC's ThreadSanitizer instrumentation and linked with benchmarks/smem_trace_hooks.cpp (no
// ThreadSanitizer runtime), so the programs' plain scalar accesses are seen as well as their vector ones and their
// copies.
//
// First the detector itself, on small programs that race and that do not (each must be judged right, or the
// sweep's zeros mean nothing); then the decode step's program, then the chunk programs' sweep. One line per case;
// the last line counts them.
//
//   smem_race_check            # every case
//   smem_race_check --quick    # the detector's cases and bf16 M = 64 only
#include <cstdio>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "chunk_host_driver.h"
#include "decay_chunk_configs.h"
#include "decay_step_program.h"
#include "step_host_driver.h"

namespace {

namespace chunk = decayfw::chunk;
namespace cta = decayfw::cta;
using Cta = cta::HostCta<>;

int passed = 0, failed = 0;

void check(const std::string& name, bool ok, const std::string& detail) {
  (ok ? passed : failed) += 1;
  std::printf("%s  %s%s%s\n", ok ? "pass" : "FAIL", name.c_str(), detail.empty() ? "" : ": ", detail.c_str());
}

std::string first_race(const cta::SmemTrace& t) {
  if (t.races().empty()) return "no race";
  const auto& r = t.races().front();
  return std::to_string(t.race_count()) + " racing accesses, first: " + r.what + " (indices " +
         std::to_string(r.first_index) + ", " + std::to_string(r.second_index) + ", byte " + std::to_string(r.offset) +
         ")";
}

// A detector case's verdict: a report iff `races`, and, when `what` is given, the first report's kind.
void judge(const std::string& name, const cta::SmemTrace& trace, bool races, const char* what) {
  bool ok = (trace.race_count() > 0) == races;
  if (ok && races && what) ok = trace.races().front().what == what;
  check("detector: " + name, ok, first_race(trace));
}

// One small program on `bytes` of traced shared memory; `races` says whether the detector must find one, and
// `what`, when given, the kind of the first.
void detector_case(const std::string& name, bool races, const char* what,
                   const std::function<void(Cta&, unsigned char*)>& program) {
  cta::SmemTrace trace;
  {
    cta::SmemTrace::Scope scope(trace);
    cta::HostSmem smem(4096);
    Cta c;
    program(c, smem.data());
    c.wait_async();
  }
  judge(name, trace, races, what);
}

void detector_cases() {
  detector_case("two indices store the same 16 bytes", true, "stored by two indices", [](Cta& c, unsigned char* s) {
    float* x = reinterpret_cast<float*>(s);
    c.for_each(64, [&](int64_t i) {
      const float v[4] = {float(i), 0, 0, 0};
      Cta::store4(x + 4 * (i / 2), v);
    });
  });
  detector_case("an index loads what another stores", true, "loaded where another index stored",
                [](Cta& c, unsigned char* s) {
                  float* x = reinterpret_cast<float*>(s);
                  c.for_each(64, [&](int64_t i) {
                    float v[4] = {float(i), 0, 0, 0};
                    if (i == 5) Cta::store4(x, v);
                    if (i == 40) Cta::load4(x, v);
                  });
                });
  detector_case("scalar: an index reads a float another writes", true, nullptr, [](Cta& c, unsigned char* s) {
    volatile float* x = reinterpret_cast<float*>(s);
    c.for_each(64, [&](int64_t i) {
      if (i == 63) x[7] = 1.0f;
      if (i == 0) (void)x[7];
    });
  });
  detector_case("scalar: reads shared by many indices, each row stored by its own", false, nullptr,
                [](Cta& c, unsigned char* s) {
                  volatile float* x = reinterpret_cast<float*>(s);
                  c.for_each(1, [&](int64_t) { x[0] = 2.0f; });
                  c.for_each(64, [&](int64_t i) {
                    const float a = x[0];
                    x[1 + i] = a + float(i);
                    x[1 + i] = x[1 + i] * 2.0f;  // read after its own write
                  });
                });
  detector_case("scalar: 16-bit neighbours in one word, stored by different indices", false, nullptr,
                [](Cta& c, unsigned char* s) {
                  volatile uint16_t* h = reinterpret_cast<uint16_t*>(s);
                  c.for_each(64, [&](int64_t i) { h[i] = static_cast<uint16_t>(i); });
                });
  detector_case("atomic_or from every index into one word", false, nullptr, [](Cta& c, unsigned char* s) {
    auto* w = reinterpret_cast<uint32_t*>(s);
    c.for_each(1, [&](int64_t) { *w = 0u; });
    c.for_each(64, [&](int64_t i) { c.atomic_or(w, 1u << (i % 32)); });
  });
  detector_case("an index reads a word others OR into, in the same phase", true,
                "loaded where another index made an atomic", [](Cta& c, unsigned char* s) {
                  auto* w = reinterpret_cast<volatile uint32_t*>(s);
                  c.for_each(1, [&](int64_t) { w[0] = 0u; });
                  c.for_each(64, [&](int64_t i) {
                    if (i < 32)
                      c.atomic_or(const_cast<uint32_t*>(w), 1u << i);
                    else
                      (void)w[0];
                  });
                });
  detector_case("a read of bytes an async copy is filling", true, "accessed while an async copy into it is in flight",
                [](Cta& c, unsigned char* s) {
                  alignas(16) static float source[64] = {};
                  float* x = reinterpret_cast<float*>(s);
                  c.for_each(16, [&](int64_t i) { c.copy16_async(x + 4 * i, source + 4 * i, true); });
                  c.for_each(16, [&](int64_t i) {
                    float v[4];
                    Cta::load4(x + 4 * ((i + 1) % 16), v);
                  });
                });
  detector_case("the same read after wait_async", false, nullptr, [](Cta& c, unsigned char* s) {
    alignas(16) static float source[64] = {};
    float* x = reinterpret_cast<float*>(s);
    c.for_each(16, [&](int64_t i) { c.copy16_async(x + 4 * i, source + 4 * i, true); });
    c.wait_async();
    c.for_each(16, [&](int64_t i) {
      float v[4];
      Cta::load4(x + 4 * ((i + 1) % 16), v);
    });
  });
  detector_case("a store outside every for_each", true, "stored outside every for_each (by each of the CTA's threads)",
                [](Cta&, unsigned char* s) {
                  float v[4] = {1, 2, 3, 4};
                  Cta::store4(reinterpret_cast<float*>(s), v);
                });
  detector_case("a load of bytes the CTA never stored", true, "loaded before this CTA stored anything there",
                [](Cta& c, unsigned char* s) {
                  float* x = reinterpret_cast<float*>(s);
                  c.for_each(8, [&](int64_t i) {
                    float v[4];
                    Cta::load4(x + 4 * i, v);
                  });
                });
  detector_case("a store just past the CTA's shared memory", true, nullptr, [](Cta& c, unsigned char* s) {
    float* x = reinterpret_cast<float*>(s + 4096);  // detector_case's buffer holds 4096 bytes
    c.for_each(1, [&](int64_t) {
      const float v[4] = {};
      Cta::store4(x, v);
    });
  });
  detector_case("gemm_apply: two tiles' epilogues store the same row", true, "stored by two indices",
                [](Cta& c, unsigned char* s) {
                  auto* a = reinterpret_cast<decayfw::BFloat16*>(s);  // 32×16 and 16×16 operands, rows of 16
                  float* out = reinterpret_cast<float*>(s + 2048);
                  c.for_each(48 * 16, [&](int64_t i) { a[i] = Cta::from_f<decayfw::BFloat16>(1.0f); });
                  c.gemm_apply<false, false>(32, 16, 16, a, 16, a + 32 * 16, 16, [&](int i, int j, const float* v) {
                    out[(i % 16) * 16 + j] = v[0];  // row i of both row tiles to one place
                  });
                });
  detector_case("gemm_apply: each lane's own accumulator pairs", false, nullptr, [](Cta& c, unsigned char* s) {
    auto* a = reinterpret_cast<decayfw::BFloat16*>(s);
    float* out = reinterpret_cast<float*>(s + 2048);
    c.for_each(48 * 16, [&](int64_t i) { a[i] = Cta::from_f<decayfw::BFloat16>(1.0f); });
    c.gemm_apply<false, false>(32, 16, 16, a, 16, a + 32 * 16, 16, [&](int i, int j, const float* v) {
      for (int p = 0; p < cta::kAccumulatorPairs; ++p) {
        const int r = i + cta::accumulator_pair_row(0, p) - cta::accumulator_pair_row(0, 0);
        const int col = j + cta::accumulator_pair_col(0, p) - cta::accumulator_pair_col(0, 0);
        out[(r % 32) * 16 + col] = v[2 * p];
        out[(r % 32) * 16 + col + 1] = v[2 * p + 1];
      }
    });
  });
}

// A launch of `ctas` CTAs over global buffers `in` (read by all) and `out`, each CTA running `cta(c, in, out)`.
void global_case(const std::string& name, bool races, const char* what, int ctas,
                 const std::function<void(int, const float*, float*)>& cta_body) {
  std::vector<float> in(64, 1.0f), out(64, 0.0f);
  cta::SmemTrace trace;
  {
    cta::SmemTrace::Scope scope(trace);
    trace.add_global(in.data(), in.size() * sizeof(float));
    trace.add_global(out.data(), out.size() * sizeof(float));
    trace.begin_launch("global");
    for (int c = 0; c < ctas; ++c) {
      trace.begin_cta();
      cta_body(c, in.data(), out.data());
    }
    trace.end_launch();
    out[0] = 3.0f;  // the host, between launches: not judged
  }
  judge(name, trace, races, what);
}

void global_cases() {
  global_case("global: each CTA stores its own rows, all read the input", false, nullptr, 4,
              [](int c, const float* in, float* out) {
                float v[4];
                Cta::load4(in, v);
                Cta::store4(out + 16 * c, v);
                volatile float* o = out;
                o[16 * c + 5] = o[16 * c + 4] + in[c];  // scalar, its own row
              });
  global_case("global: two CTAs store the same row", true, "stored by two CTAs of one launch", 4,
              [](int c, const float* in, float* out) {
                float v[4];
                Cta::load4(in, v);
                Cta::store4(out + 16 * (c / 2), v);
              });
  global_case("global: a CTA reads a row another CTA stores", true, "loaded where another CTA of the launch stored", 2,
              [](int c, const float*, float* out) {
                volatile float* o = out;
                if (c == 0)
                  o[20] = 1.0f;
                else
                  (void)o[20];
              });
}

const char* form_name(chunk::DiagonalForm f) {
  switch (f) {
    case chunk::DiagonalForm::Factored:
      return "factored";
    case chunk::DiagonalForm::Elementwise:
      return "elementwise";
    case chunk::DiagonalForm::Tensor:
      return "tensor";
    case chunk::DiagonalForm::Chunk:
      return "chunk";
  }
  return "?";
}

// Every program of one configuration: the split forward, the fused forward, and the backward, on two heads of
// three chunks (the last one partial) and two row tiles, with gate logits N(gate_mean, 1): 2 leaves every chunk narrow
// enough to be taken whole, −3 makes most columns wide (per-pair sums, the atomics that mark them).
// grad_one_phase: grad_pass's chunk-form chains in one phase (cuda::ChunkTuning::grad_one_phase).
template <typename In, typename Cfg>
void sweep_case(const char* dtype, chunk::DiagonalForm form, float gate_mean, bool vector_loads,
                bool grad_one_phase = false) {
  decayfw::testing::RandomSequence<In> seq(2 * Cfg::C + 5, 2 * chunk::kRows, Cfg::M, 11, gate_mean, 2);
  chunk::ChunkArgs split = seq.forward_args(form), fused = seq.forward_args(form), back = seq.backward_args(form);
  cta::SmemTrace trace(cta::SmemTrace::Work::RacesOnly);
  {
    cta::SmemTrace::Scope scope(trace);
    decayfw::testing::HostChunkRunner<In, Cfg, false> run(cta::Order::Forward, vector_loads);
    run.forward(split);
    run.forward_fused(fused);
    run.backward(back, true, grad_one_phase);
  }
  char name[160];
  std::snprintf(name, sizeof name, "%s M=%d C=%d %s gates N(%g, 1)%s%s", dtype, Cfg::M, Cfg::C, form_name(form),
                gate_mean, vector_loads ? "" : ", element loads", grad_one_phase ? ", grad_pass in one phase" : "");
  std::string detail = first_race(trace);
  if (!trace.races().empty()) {
    const auto& r = trace.races().front();
    detail += " in " + r.kernel +
              (r.phase.function.empty() ? std::string(", between CTAs (global memory) or outside every phase")
                                        : ", phase " + cta::site_name(r.phase));
  }
  check(name, trace.race_count() == 0 && trace.phases() > 0 && trace.global_accesses() > 0,
        detail + ", " + std::to_string(trace.phases()) + " phases, " + std::to_string(trace.global_accesses()) +
            " global accesses");
}

template <typename In>
void sweep(const char* dtype, bool quick) {
  for (int m : chunk::kCompiledM) {
    if (quick && m != 64) continue;
    chunk::with_compiled_config<In, int>(m, 0, [&](auto cfg) {
      using Cfg = decltype(cfg);
      for (chunk::DiagonalForm form : {chunk::DiagonalForm::Factored, chunk::DiagonalForm::Elementwise,
                                       chunk::DiagonalForm::Tensor, chunk::DiagonalForm::Chunk})
        for (float gate_mean : {2.0f, -3.0f})  // elementwise takes every column per pair, whatever the gates
          if (gate_mean > 0.0f || form != chunk::DiagonalForm::Elementwise)
            sweep_case<In, Cfg>(dtype, form, gate_mean, true);
      sweep_case<In, Cfg>(dtype, chunk::DiagonalForm::Factored, 0.0f, false);
      if constexpr (std::is_same_v<In, decayfw::BFloat16>)  // the chains side by side (fp16 takes no chunk form)
        for (float gate_mean : {2.0f, -3.0f})
          sweep_case<In, Cfg>(dtype, chunk::DiagonalForm::Chunk, gate_mean, true, true);
      return 0;
    });
  }
}

// The decode step's program (decay_step_program.h), as kernels/cuda/decay_step.cu launches it: one launch per token,
// a CTA per (sequence, 64 rows), the state updated in place. B = 2, H = 3, three tokens.
template <typename In>
void step_case(const char* dtype, int64_t D, int64_t M) {
  const int64_t B = 2, H = 3, T = 3, N = B * H;
  std::mt19937_64 rng(D + M);
  std::normal_distribution<float> n01(0.0f, 1.0f);
  auto make = [&](int64_t count) {
    std::vector<In> x(static_cast<size_t>(count));
    for (In& e : x) e = Cta::from_f<In>(n01(rng));
    return x;
  };
  std::vector<In> q = make(B * T * H * M), k = make(B * T * H * M), f = make(B * T * H * M), v = make(B * T * H * D),
                  z = make(B * T * H * D), y(static_cast<size_t>(N * D));
  std::vector<float> buf(static_cast<size_t>(N * D * M) + 4);  // the state, 16-byte aligned as the allocator's
  float* state = buf.data() + ((16 - reinterpret_cast<uintptr_t>(buf.data()) % 16) % 16) / sizeof(float);
  for (int64_t i = 0; i < N * D * M; ++i) state[i] = n01(rng);
  cta::SmemTrace trace(cta::SmemTrace::Work::RacesOnly);
  {
    cta::SmemTrace::Scope scope(trace);
    for (const std::vector<In>* x : {&q, &k, &f, &v, &z, &y}) trace.add_global(x->data(), x->size() * sizeof(In));
    trace.add_global(state, size_t(N * D * M) * sizeof(float));
    cta::HostSmem smem(decayfw::step::smem_bytes(M));
    Cta c;
    for (int64_t t = 0; t < T; ++t) {
      const decayfw::step::StepArgs a = decayfw::testing::step_args_at(t, B, T, H, D, M, q, k, f, v, z, y, state);
      trace.begin_launch("decay_step");
      for (int64_t n = 0; n < N; ++n)
        for (int64_t blk = 0; blk < (D + decayfw::step::kRows - 1) / decayfw::step::kRows; ++blk) {
          smem.poison();
          trace.begin_cta();
          decayfw::step::step_program<Cta, In>(c, a, n, blk, smem.data());
        }
      trace.end_launch();
    }
  }
  char name[96];
  std::snprintf(name, sizeof name, "decode step %s D=%lld M=%lld", dtype, static_cast<long long>(D),
                static_cast<long long>(M));
  check(name, trace.race_count() == 0 && trace.phases() > 0 && trace.global_accesses() > 0,
        first_race(trace) + ", " + std::to_string(trace.phases()) + " phases, " +
            std::to_string(trace.global_accesses()) + " global accesses");
}

void step_cases() {
  for (auto [D, M] : {std::pair<int64_t, int64_t>{64, 64}, {128, 32}, {100, 20}, {33, 4}, {200, 256}}) {
    step_case<float>("fp32", D, M);
    step_case<decayfw::BFloat16>("bf16", D, M);
  }
}

}  // namespace

int main(int argc, char** argv) {
  const bool quick = argc > 1 && std::strcmp(argv[1], "--quick") == 0;
  if (argc > 1 && !quick) {
    std::fprintf(stderr, "usage: smem_race_check [--quick]\n");
    return 2;
  }
  try {
    detector_cases();
    global_cases();
    step_cases();
    sweep<decayfw::BFloat16>("bf16", quick);
    if (!quick) {
      sweep<decayfw::Float16>("fp16", quick);
      sweep<float>("fp32", quick);
    }
  } catch (const std::exception& e) {
    std::printf("FAIL  %s\n", e.what());
    ++failed;
  }
  std::printf("%d cases: %d passed, %d failed\n", passed + failed, passed, failed);
  return failed == 0 ? 0 : 1;
}
