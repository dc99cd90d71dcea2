// Shared-memory bank conflicts of the CUDA chunk programs' vector accesses, counted on the CPU: runs one
// forward and one backward of the chunk path through HostCta with a SmemTrace (kernels/cuda/cta/smem_trace.h)
// and prints, per kernel, the wavefronts its Cta::load4/store4 and cp.async accesses take against the
// fewest their data needs, then the source lines that lose the most. The count follows the programs'
// real addresses and index-to-thread mapping, so it is exact for what it covers (not the scalar
// accesses, nor the tensor-core fragments: see smem_trace.h). The same run counts each kernel's special-function
// (MUFU) operations, as the device would issue them (cta_common.h: count_special_functions).
//
//   smem_bank_report [--dtype bf16|fp16|fp32] [--m 64] [--d 128] [--t 256]
//                    [--diagonal factored|elementwise|tensor|chunk] [--forward split|fused] [--top 20] [--gate-mean 2]
//                    [--gates normal|ugi]       # ugi: a freshly swapped model's gates (Uniform Gate Initialization)
//                    [--grad-phases four|one]   # grad_pass's chunk-form chains in four phases (default) or one
//                    [--by-phase]               # also each kernel's wavefronts by phase: where the volume is
//   smem_bank_report --python --m 64 --d 128 --diagonal factored    # a line of bench_gpu.py's SMEM_WAVEFRONTS
//   smem_bank_report --python-mufu --m 64 --d 128 --diagonal factored  # ... of its MUFU_OPS
#include <dlfcn.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iterator>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include <unistd.h>

#include "chunk_host_driver.h"
#include "decay_chunk_configs.h"

namespace {

namespace chunk = decayfw::chunk;
namespace cta = decayfw::cta;

struct Options {
  std::string dtype = "bf16", diagonal = "factored", forward = "split", grad_phases = "four";
  int m = 64, d = 128, t = 256, top = 20;
  bool by_phase = false;   // the table of each kernel's wavefronts by phase (the for_each's or gemm's caller)
  double gate_mean = 2.0;  // gate logits N(mean, 1): 2 leaves no wide column; below about -2.5 most are wide
  // "normal": N(gate_mean, 1); "ugi": a freshly swapped model's (RandomSequence::use_uniform_gate_init)
  std::string gates = "normal";
  // One line of benchmarks/bench_gpu.py's SMEM_WAVEFRONTS ("wavefronts") or MUFU_OPS ("mufu") instead of the tables.
  std::string python;
};

[[noreturn]] void usage(const std::string& why) {
  std::fprintf(
      stderr,
      "smem_bank_report: %s\nusage: smem_bank_report [--dtype bf16|fp16|fp32] [--m 16|32|64|128] [--d N·64] "
      "[--t N] [--diagonal factored|elementwise|tensor|chunk] [--forward split|fused] [--top N] [--gate-mean X] "
      "[--gates normal|ugi] [--grad-phases four|one] [--by-phase] [--python | --python-mufu]\n"
      "--gates ugi: each channel's logits its Uniform Gate Initialization bias + N(0, 1), as a freshly swapped model's "
      "(fast channels: wide sub-chunks, no chunk whole); normal (default): N(--gate-mean, 1)\n"
      "--grad-phases one: grad_pass's chunk-form chains in one phase (cuda::ChunkTuning::grad_one_phase)\n"
      "--by-phase: also each kernel's wavefronts per chunk by phase (the caller of the for_each or gemm), against "
      "their conflict-free count\n"
      "--python: wavefronts per chunk (and row tile) of every kernel, both forward forms, as a line of bench_gpu.py's "
      "SMEM_WAVEFRONTS\n"
      "--python-mufu: the same for the special-function (MUFU) operations, a line of bench_gpu.py's MUFU_OPS\n",
      why.c_str());
  std::exit(2);
}

int integer(const char* flag, const char* text, long least) {
  char* end = nullptr;
  const long v = std::strtol(text, &end, 10);
  if (*text == '\0' || *end != '\0' || v < least || v > 1 << 20)
    usage(std::string(flag) + " wants an integer of at least " + std::to_string(least) + ", got '" + text + "'");
  return static_cast<int>(v);
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--help" || a == "-h") usage("counts the chunk programs' shared-memory bank conflicts on the CPU");
    if (a == "--python" || a == "--python-mufu") {
      o.python = a == "--python" ? "wavefronts" : "mufu";
      continue;
    }
    if (a == "--by-phase") {
      o.by_phase = true;
      continue;
    }
    if (i + 1 >= argc) usage(a + " needs a value");
    const char* v = argv[++i];
    if (a == "--dtype") o.dtype = v;
    else if (a == "--diagonal") o.diagonal = v;
    else if (a == "--forward") o.forward = v;
    else if (a == "--grad-phases")
      o.grad_phases = v;
    else if (a == "--m") o.m = integer("--m", v, 1);
    else if (a == "--d") o.d = integer("--d", v, 1);
    else if (a == "--t") o.t = integer("--t", v, 1);
    else if (a == "--top") o.top = integer("--top", v, 0);
    else if (a == "--gates")
      o.gates = v;
    else if (a == "--gate-mean") {
      char* end = nullptr;
      o.gate_mean = std::strtod(v, &end);
      if (*v == '\0' || *end != '\0' || !(o.gate_mean > -40.0 && o.gate_mean < 40.0))
        usage(std::string("--gate-mean wants a number between -40 and 40, got '") + v + "'");
    }
    else usage("unknown option " + a);
  }
  if (o.dtype != "bf16" && o.dtype != "fp16" && o.dtype != "fp32") usage("--dtype: bf16, fp16 or fp32, got " + o.dtype);
  if (o.m != 16 && o.m != 32 && o.m != 64 && o.m != 128) usage("--m: a compiled M (16, 32, 64, 128)");
  if (o.d % chunk::kRows != 0) usage("--d: a multiple of " + std::to_string(chunk::kRows));
  if (o.forward != "split" && o.forward != "fused") usage("--forward: split or fused, got " + o.forward);
  if (o.gates != "normal" && o.gates != "ugi") usage("--gates: normal or ugi, got " + o.gates);
  if (o.grad_phases != "four" && o.grad_phases != "one") usage("--grad-phases: four or one, got " + o.grad_phases);
  return o;
}

chunk::DiagonalForm diagonal_of(const std::string& s) {
  if (s == "factored") return chunk::DiagonalForm::Factored;
  if (s == "elementwise") return chunk::DiagonalForm::Elementwise;
  if (s == "tensor") return chunk::DiagonalForm::Tensor;
  if (s == "chunk") return chunk::DiagonalForm::Chunk;
  usage("--diagonal: factored, elementwise, tensor or chunk, got " + s);
}

// One sequence of random inputs (gate logits N(gate_mean, 1), whose default 2 leaves no wide column, as in the GPU
// benchmark; or a freshly swapped model's with --gates ugi), run forward and backward with the trace current.
template <typename In, typename Cfg>
void run_traced(const Options& o, cta::SmemTrace& trace) {
  decayfw::testing::RandomSequence<In> seq(o.t, o.d, o.m, 1, static_cast<float>(o.gate_mean));
  if (o.gates == "ugi") seq.use_uniform_gate_init(7);
  chunk::ChunkArgs a = seq.forward_args(diagonal_of(o.diagonal)), b = seq.backward_args(diagonal_of(o.diagonal));
  decayfw::testing::HostChunkRunner<In, Cfg, false> run;
  cta::SmemTrace::Scope scope(trace);
  if (o.forward == "split") run.forward(a);
  else run.forward_fused(a);
  run.backward(b, true, o.grad_phases == "one");
}

// Source lines of the hooks' instruction addresses: one addr2line run over all of them (-i: the innermost
// inlined function, whose line is the access's own). Without addr2line or debug lines, "pc 0x…".
std::map<uintptr_t, std::pair<std::string, int>> source_lines(const std::vector<uintptr_t>& pcs) {
  std::map<uintptr_t, std::pair<std::string, int>> lines;
  for (uintptr_t pc : pcs) {
    char hex[32];
    std::snprintf(hex, sizeof hex, "pc 0x%lx", static_cast<unsigned long>(pc));
    lines[pc] = {hex, 0};
  }
  Dl_info info{};
  if (pcs.empty() || !dladdr(reinterpret_cast<void*>(pcs.front()), &info) || !info.dli_fname) return lines;
  const auto base = reinterpret_cast<uintptr_t>(info.dli_fbase);
  const std::string list =
      (std::filesystem::temp_directory_path() / ("smem_bank_report_pcs." + std::to_string(::getpid()))).string();
  if (FILE* f = std::fopen(list.c_str(), "w")) {
    // The call's return address minus one: an address inside the call instruction itself.
    for (uintptr_t pc : pcs) std::fprintf(f, "0x%lx\n", static_cast<unsigned long>(pc - base - 1));
    std::fclose(f);
  } else {
    return lines;
  }
  const std::string cmd = std::string("addr2line -a -f -i -C -e '") + info.dli_fname + "' < " + list + " 2>/dev/null";
  FILE* out = ::popen(cmd.c_str(), "r");
  if (!out) return lines;
  // Per address: its line "0x…", then (function, file:line) pairs, innermost first.
  char buf[4096];
  size_t next = 0;
  bool named = true;
  std::string function;
  int field = 0;
  while (std::fgets(buf, sizeof buf, out)) {
    std::string line(buf);
    if (!line.empty() && line.back() == '\n') line.pop_back();
    if (line.rfind("0x", 0) == 0 && field == 0) {
      named = false;
      ++next;
      continue;
    }
    if (field == 0) {
      function = line;
      field = 1;
      continue;
    }
    field = 0;
    if (!named && next >= 1 && next <= pcs.size()) {
      const size_t colon = line.rfind(':');
      const int number = colon == std::string::npos ? 0 : std::atoi(line.c_str() + colon + 1);
      lines[pcs[next - 1]] = {function, number};
      named = true;
    }
  }
  ::pclose(out);
  std::remove(list.c_str());
  return lines;
}

double ratio(int64_t a, int64_t b) { return b ? double(a) / double(b) : 0.0; }

// The races the trace found (smem_trace.h, "Races"): what compute-sanitizer's racecheck would report on the device.
void print_races(const cta::SmemTrace& trace) {
  std::printf(
      "\nRaces and faults (smem_trace.h: two indices of a phase on the same bytes, an access to bytes an async "
      "copy is filling, a store outside every for_each, a load of bytes the CTA never stored, an access outside "
      "its shared memory): %lld\n",
      static_cast<long long>(trace.race_count()));
  if (trace.races().empty()) return;
  std::printf(
      "\n| kernel | phase | first access | index | second access | index | byte | what |\n"
      "|---|---|---|---|---|---|---|---|\n");
  for (const auto& r : trace.races())
    std::printf("| %s | %s | %s | %lld | %s | %lld | %lld | %s |\n", r.kernel.c_str(), cta::site_name(r.phase).c_str(),
                cta::site_name(r.first).c_str(), static_cast<long long>(r.first_index),
                cta::site_name(r.second).c_str(), static_cast<long long>(r.second_index),
                static_cast<long long>(r.offset), r.what.c_str());
}

// What the counts of a kernel are divided by for "per chunk": grad_pass and output_pass walk a chunk's row tiles in
// one CTA, so their runs are the chunks; the scans and forward_pass take one tile each, so theirs are per chunk and
// row tile.
double runs_per_chunk(const Options& o, int C, const std::string& kernel) {
  const double chunks = double((o.t + C - 1) / C), tiles = double(o.d / chunk::kRows);
  return kernel == "grad_pass" || kernel == "output_pass" ? chunks : chunks * tiles;
}

// Each kernel's wavefronts by phase (the caller of the for_each or gemm, its lines together), per chunk, beside their
// conflict-free count: a phase near it loses little to bank conflicts, and only less volume (fewer or wider
// accesses) makes it cheaper.
void print_phases(const Options& o, int C, const cta::SmemTrace& trace) {
  std::map<std::string, std::map<std::string, cta::SmemTrace::Cost>> kernels;  // kernel -> phase -> cost
  for (const auto& [key, c] : trace.costs()) {
    std::string phase = cta::site_name(key.phase);
    if (key.phase.line) phase.erase(phase.rfind(':'));
    kernels[key.kernel][phase.empty() ? "(no phase)" : phase].add(c);
  }
  std::printf(
      "\nWavefronts by phase, per chunk as above (phase: the caller of the for_each or gemm, all its lines; "
      "conflicts: wavefronts ÷ conflict-free)\n\n"
      "| kernel | phase | wavefronts | share of the kernel | conflict-free | conflicts |\n|---|---|---|---|---|---|\n");
  for (const auto& [name, phases] : kernels) {
    const double per = runs_per_chunk(o, C, name);
    std::vector<std::pair<std::string, cta::SmemTrace::Cost>> rows(phases.begin(), phases.end());
    int64_t total = 0;
    for (const auto& [phase, c] : rows) total += c.wavefronts;
    std::stable_sort(rows.begin(), rows.end(),
                     [](const auto& x, const auto& y) { return x.second.wavefronts > y.second.wavefronts; });
    for (const auto& [phase, c] : rows)
      std::printf("| %s | %s | %.0f | %.1f%% | %.0f | %.3f |\n", name.c_str(), phase.c_str(), c.wavefronts / per,
                  100.0 * ratio(c.wavefronts, total), c.phases / per, ratio(c.wavefronts, c.phases));
  }
}

void report(const Options& o, int C, const cta::SmemTrace& trace) {
  const int64_t chunks = (o.t + C - 1) / C;
  char mean[32];
  std::snprintf(mean, sizeof mean, "%g", o.gate_mean);
  const std::string gate_text = o.gates == "ugi" ? std::string("Uniform Gate Initialization biases + N(0, 1)")
                                                 : std::string("N(") + mean + ", 1)";
  std::printf(
      "Shared-memory accesses of the chunk path, one forward (%s) and backward (the forward's states reused), "
      "counted on the CPU (benchmarks/smem_bank_report): %s, M = %d, C = %d, D = %d, T = %d (%lld chunks), one "
      "sequence, gate logits %s, %s diagonal; %lld for_each phases, %lld tensor-core products. Per chunk of each "
      "kernel "
      "(state_pass, dstate_pass and forward_pass: per chunk and row tile). Wavefronts as the bank model of "
      "kernels/cuda/cta/smem_trace.h serves them; conflict-free: one per phase (quarter warp for 16-byte "
      "accesses, half warp for 8-byte ones, twice that for loads whose neighbouring lanes share addresses) "
      "with an active lane; fewest: the instructions' distinct bytes in "
      "128-byte wavefronts (lower where lanes of different phases read the same data). vector: Cta::load4, "
      "store4; scalar: plain loads and stores; wmma: gemm's fragments as nvcc's WMMA code reads and writes them\n\n",
      o.forward.c_str(), o.dtype.c_str(), o.m, C, o.d, o.t, static_cast<long long>(chunks), gate_text.c_str(),
      o.diagonal.c_str(), static_cast<long long>(trace.phases()), static_cast<long long>(trace.gemms()));
  std::map<std::string, std::map<std::string, cta::SmemTrace::Cost>> kernels;  // kernel -> kind -> cost
  for (const auto& [key, c] : trace.costs()) {
    kernels[key.kernel][key.access.kind].add(c);
    kernels[key.kernel]["all"].add(c);
  }
  std::printf("| kernel | instructions | wavefronts | conflict-free | fewest |");
  for (const char* k : cta::kAccessKinds) std::printf(" %s wavefronts |", k);
  std::printf(" bank conflicts (wavefronts ÷ conflict-free) | MUFU operations |\n|---|---|---|---|---|");
  for (size_t i = 0; i < std::size(cta::kAccessKinds); ++i) std::printf("---|");
  std::printf("---|---|\n");
  for (const auto& [name, by_kind] : kernels) {
    const double per = runs_per_chunk(o, C, name);
    const cta::SmemTrace::Cost& c = by_kind.at("all");
    std::printf("| %s | %.0f | %.0f | %.0f | %.0f |", name.c_str(), c.instructions / per, c.wavefronts / per,
                c.phases / per, c.ideal / per);
    for (const char* k : cta::kAccessKinds) {
      auto it = by_kind.find(k);
      std::printf(" %.0f |", it == by_kind.end() ? 0.0 : it->second.wavefronts / per);
    }
    const auto mufu = trace.special_functions().find(name);
    std::printf(" %.3f | %.0f |\n", ratio(c.wavefronts, c.phases),
                mufu == trace.special_functions().end() ? 0.0 : double(mufu->second) / per);
  }
  print_races(trace);
  if (o.by_phase) print_phases(o, C, trace);
  std::vector<std::pair<cta::SmemTrace::Key, cta::SmemTrace::Cost>> rows(trace.costs().begin(), trace.costs().end());
  std::stable_sort(rows.begin(), rows.end(),
                   [&](const auto& x, const auto& y) { return x.second.wavefronts > y.second.wavefronts; });
  if (o.top == 0) return;
  std::printf("\nThe accesses that take the most wavefronts, over the whole run (phase: the caller of the for_each or "
              "gemm; access: the load's or store's function and line)\n\n"
              "| kernel | phase | access | kind | bytes | load/store | instructions | wavefronts per instruction | "
              "conflict-free | fewest |\n|---|---|---|---|---|---|---|---|---|---|\n");
  int shown = 0;
  for (const auto& [key, c] : rows) {
    if (shown++ >= o.top) break;
    const double n = double(c.instructions);
    std::printf("| %s | %s | %s | %s | %d | %s | %lld | %.2f | %.2f | %.2f |\n", key.kernel.c_str(),
                cta::site_name(key.phase).c_str(), cta::site_name(key.access).c_str(), key.access.kind.c_str(),
                key.bytes, key.store ? "store" : "load", static_cast<long long>(c.instructions), c.wavefronts / n,
                c.phases / n, c.ideal / n);
  }
}

// Wavefronts (summed over the kinds of access) or MUFU operations of each kernel per chunk (grad_pass,
// output_pass: a CTA each) or per chunk and row tile (the others, whose CTAs walk the chunks of a row tile).
std::map<std::string, double> per_chunk(const Options& o, int C, const cta::SmemTrace& trace) {
  std::map<std::string, double> w;
  if (o.python == "mufu") {
    for (const auto& [kernel, n] : trace.special_functions()) w[kernel] = double(n);
  } else {
    for (const auto& [key, c] : trace.costs()) w[key.kernel] += double(c.wavefronts);
  }
  for (auto& [name, v] : w) v /= runs_per_chunk(o, C, name);
  return w;
}

template <typename In, typename Cfg>
cta::SmemTrace traced(const Options& o) {
  cta::SmemTrace trace;
  run_traced<In, Cfg>(o, trace);
  const auto lines = source_lines(trace.addresses());
  trace.symbolize([&](uintptr_t pc) { return lines.at(pc); });
  return trace;
}

template <typename In>
int run_dtype(const Options& o) {
  return chunk::with_compiled_config<In, int>(o.m, 2, [&](auto cfg) {
    using Cfg = decltype(cfg);
    if (o.python.empty()) {
      report(o, Cfg::C, traced<In, Cfg>(o));
      return 0;
    }
    Options split = o, fused = o;
    split.forward = "split", fused.forward = "fused";
    std::map<std::string, double> w = per_chunk(split, Cfg::C, traced<In, Cfg>(split));
    w["forward_pass"] = per_chunk(fused, Cfg::C, traced<In, Cfg>(fused)).at("forward_pass");
    std::printf("    (%d, %d, \"%s\"): {", o.m, o.d, o.diagonal.c_str());
    const char* sep = "";
    for (const auto& [name, v] : w) {
      std::printf("%s\"%s\": %.0f", sep, name.c_str(), v);
      sep = ", ";
    }
    std::printf("},\n");
    return 0;
  });
}

}  // namespace

int main(int argc, char** argv) {
  const Options o = parse(argc, argv);
  try {
    if (o.dtype == "bf16") return run_dtype<decayfw::BFloat16>(o);
    if (o.dtype == "fp16") return run_dtype<decayfw::Float16>(o);
    return run_dtype<float>(o);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "smem_bank_report: %s\n", e.what());
    return 1;
  }
}
