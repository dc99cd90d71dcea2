// SmemTrace: what a CTA program's accesses to shared memory would cost the device's banks, found by
// running the program on HostCta (host only; the device executor knows nothing of it).
//
// What is recorded. While a trace is current (SmemTrace::Scope), HostCta reports every Cta::load4/store4
// and copy16_async that lands in a HostSmem buffer, with the index of the for_each that made it. A program
// compiled with GCC's -fsanitize=thread and linked with benchmarks/smem_trace_hooks.cpp reports its scalar
// loads and stores as well, by instruction address: no ThreadSanitizer runtime is linked, only its
// instrumentation, whose per-access calls those hooks define.
//
// How it is replayed. At the end of each for_each the trace issues the accesses as the device would: the
// indices of a warp are 32 consecutive ones (DeviceCta::for_each gives index threadIdx.x + k·blockDim.x to
// a thread, and blockDim.x is a multiple of 32), and the lanes' k-th access from one instruction is one
// warp instruction (SIMT; a lane that skips it is inactive).
//
// The bank model (32 banks, one 4-byte word each per clock): an access of w bytes per lane is served
// in phases of 128 / w lanes (the whole warp for 4-byte accesses, half warps for 8-byte ones, quarter
// warps for 16-byte ones); in a phase, lanes that read the same word share it (broadcast), and
// distinct words in the same bank are served one per wavefront. So an instruction's wavefronts are the
// sum over its phases of the largest number of distinct words any bank holds; without conflicts, a
// full warp's 4-, 8- and 16-byte accesses take 1, 2 and 4. Stores count the same way. Wavefronts above
// one per phase are bank conflicts, which padding the tiles' rows removes.
//
// Paired loads: a wavefront returns at most one 4-byte register per lane (128 bytes), which is why wide
// accesses go in phases; where neighbouring lanes load the same address, the return packs two lanes'
// registers in one, and an 8- or 16-byte load is served in phases of twice the lanes. The rule, as
// NVIDIA's engineers gave it for sm_70 (forums.developer.nvidia.com/t/77228): every active lane n loads
// the address of lane n^1, or every one that of lane n^2 ("4 requests per instruction ... reduce from 4
// to 2"); an H100 measurement (ncu, forums.developer.nvidia.com/t/373160) fits it: 16-byte loads with
// lanes 0-15 on one address and 16-31 on another took 2 wavefronts, where two lanes of each quarter warp
// on different addresses took 8. The model asks the partner lane to be active too; stores are not paired.
//
// Accesses of 1 or 2 bytes count as 4-byte ones of the whole warp (two lanes in one word share it).
//
// Races. The same records say which indices of a phase touch the same bytes, and every for_each index may be
// another thread (DeviceCta gives index i to thread i % blockDim.x, and blockDim.x is 256 or 512), so the trace
// also reports what compute-sanitizer's racecheck would: within one phase, a byte stored by one index and loaded
// or stored by another (atomic_or's read-modify-writes only race with plain accesses, not with each other);
// any access to bytes an asynchronous copy is still filling (copy16_async until wait_async); a store outside
// every for_each, which on the device each of the CTA's threads makes. Beside the races, two faults memcheck
// and initcheck look for: a load of bytes the CTA has not stored (HostSmem fills them with NaN, which shows
// only where the value is used), and an access outside the CTA's shared memory (HostSmem keeps guard bytes
// around it). gemm_apply's epilogues run as a for_each of index 32·tile + lane, so their races are found the
// same way; gemm's own accesses are checked by HostCta (the output against its operands, the operands against
// the epilogues).
//
// Global memory has races of its own, between CTAs: a launch's CTAs run in any order and at once, so bytes
// that one CTA of a launch stores and another CTA of the same launch loads or stores race too. The runner names
// the launches and CTAs (begin_launch, begin_cta) and the global buffers (add_global: the op's tensors and
// workspace); accesses elsewhere (the host's own memory) are not judged.
//
// gemm's tensor-core fragments are modeled, not traced (trace_wmma_fragments): WMMA's layouts are not
// documented, so the model follows the loads and stores nvcc 13 emits for them on sm_90 (read off the
// SASS: ldmatrix for 16-bit operands, 32-bit loads of tf32 ones as stored, 64-bit accesses of the
// accumulators). Global memory is not counted.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <map>
#include <set>
#include <stdexcept>
#include <string>
#include <tuple>
#include <unordered_map>
#include <utility>
#include <vector>

#include "chain_warp.h"
#include "cta_common.h"

namespace decayfw::cta {

// How an access is made: the report's columns (SmemTrace::Site::kind).
inline constexpr char kVectorAccess[] = "vector";            // Cta::load4/store4
inline constexpr char kScalarAccess[] = "scalar";            // plain loads and stores (the hooks')
inline constexpr char kCopyAccess[] = "cp.async";            // copy16_async's stores
inline constexpr char kFragmentAccess[] = "wmma (modeled)";  // gemm's fragments (trace_wmma_fragments)
inline constexpr char kAtomicAccess[] = "atomic";            // Cta::atomic_or (a scalar read-modify-write)
constexpr const char* kAccessKinds[] = {kVectorAccess, kScalarAccess, kCopyAccess, kFragmentAccess, kAtomicAccess};

constexpr int kBanks = 32;
constexpr int kBankBytes = 4;
constexpr int kWarp = 32;

// Whether every active lane n has an active partner n ^ step at the same address (step 1 or 2).
inline bool lanes_paired(const int64_t (&addr)[kWarp], int step) {
  for (int l = 0; l < kWarp; ++l)
    if (addr[l] >= 0 && addr[l ^ step] != addr[l]) return false;
  return true;
}

// Lanes served together: the whole warp for accesses of up to 4 bytes, half a warp for 8, a quarter for
// 16; twice as many for a load whose lanes are paired (above).
inline int lanes_per_phase(const int64_t (&addr)[kWarp], int bytes, bool store) {
  const int lanes = kBanks / std::clamp(bytes / kBankBytes, 1, kWarp);
  const bool paired = !store && lanes < kWarp && (lanes_paired(addr, 1) || lanes_paired(addr, 2));
  return paired ? 2 * lanes : lanes;
}

// Wavefronts of one warp instruction: addr[l] is lane l's address, or -1 when the lane is inactive;
// every active lane accesses `bytes` (4, 8 or 16) bytes aligned to their size.
inline int bank_wavefronts(const int64_t (&addr)[kWarp], int bytes, bool store = false) {
  const int lanes = lanes_per_phase(addr, bytes, store), words = std::max(bytes / kBankBytes, 1);
  int total = 0;
  for (int phase = 0; phase < kWarp; phase += lanes) {
    std::vector<int64_t> seen;  // the distinct words of this phase
    for (int l = phase; l < phase + lanes; ++l) {
      if (addr[l] < 0) continue;
      for (int w = 0; w < words; ++w) seen.push_back(addr[l] / kBankBytes + w);
    }
    std::sort(seen.begin(), seen.end());
    seen.erase(std::unique(seen.begin(), seen.end()), seen.end());
    int per_bank[kBanks] = {};
    for (int64_t word : seen) ++per_bank[word % kBanks];
    total += *std::max_element(per_bank, per_bank + kBanks);
  }
  return total;
}

// Wavefronts of the same instruction without bank conflicts: one per phase with an active lane.
inline int phase_wavefronts(const int64_t (&addr)[kWarp], int bytes, bool store = false) {
  const int lanes = lanes_per_phase(addr, bytes, store);
  int total = 0;
  for (int phase = 0; phase < kWarp; phase += lanes) {
    bool active = false;
    for (int l = phase; l < phase + lanes; ++l) active = active || addr[l] >= 0;
    total += active ? 1 : 0;
  }
  return total;
}

// The least wavefronts any instruction moving these lanes' data could take: its distinct bytes in
// 128-byte wavefronts. Below phase_wavefronts where lanes of different phases read the same bytes
// (beyond the pairs above, whether the hardware merges phases is not documented, so the report keeps
// the two apart).
inline int ideal_wavefronts(const int64_t (&addr)[kWarp], int bytes) {
  std::vector<int64_t> words;
  for (int l = 0; l < kWarp; ++l)
    if (addr[l] >= 0)
      for (int w = 0; w < std::max(bytes / kBankBytes, 1); ++w) words.push_back(addr[l] / kBankBytes + w);
  std::sort(words.begin(), words.end());
  words.erase(std::unique(words.begin(), words.end()), words.end());
  const int64_t n = static_cast<int64_t>(words.size());
  return static_cast<int>((n * kBankBytes + kBanks * kBankBytes - 1) / (kBanks * kBankBytes));
}

class SmemTrace {
 public:
  SmemTrace() = default;
  // What a trace does: count bank wavefronts and find races, or find races only (faster: no replay).
  enum class Work { CountAndRaces, RacesOnly };
  explicit SmemTrace(Work work) : count_(work == Work::CountAndRaces) {}

  // Where an access comes from: a function and line (HostCta's vector accesses, through GCC's
  // __builtin_FUNCTION and __builtin_LINE; the modeled fragments), or an instruction address (the
  // scalar accesses the hooks report), named by symbolize() once the run is over.
  // kind: how the access is made (kAccessKinds).
  struct Site {
    std::string function;
    int line = 0;
    uintptr_t pc = 0;
    std::string kind;
    bool operator<(const Site& o) const {
      return std::tie(kind, function, line, pc) < std::tie(o.kind, o.function, o.line, o.pc);
    }
  };
  // One row of the report: the accesses one source line made in one phase of one kernel.
  struct Key {
    std::string kernel;
    Site phase, access;
    int bytes = 0;
    bool store = false;
    bool operator<(const Key& o) const {
      return std::tie(kernel, phase, access, bytes, store) < std::tie(o.kernel, o.phase, o.access, o.bytes, o.store);
    }
  };
  // Two accesses that race (see the header): where, which indices (−1: outside every for_each, or a copy's
  // side that has no index; in global memory, which CTAs of the launch), and what the second did to bytes the
  // first had touched (offset: in its shared-memory or global buffer).
  struct Race {
    std::string kernel;
    Site phase, first, second;
    int64_t offset = 0, first_index = -1, second_index = -1;
    std::string what;
  };
  struct Cost {
    int64_t instructions = 0, wavefronts = 0, phases = 0, ideal = 0;
    void add(const Cost& o) {
      instructions += o.instructions, wavefronts += o.wavefronts, phases += o.phases, ideal += o.ideal;
    }
  };

  // Makes a trace current for this thread while the scope lives, and the programs' special-function
  // operations counted for its kernels (count_special_functions).
  class Scope {
   public:
    explicit Scope(SmemTrace& t) : previous_(current()), previous_count_(special_function_count) {
      current() = &t;
      t.count_special_functions_here();
    }
    ~Scope() {
      current() = previous_;
      special_function_count = previous_count_;
    }
    Scope(const Scope&) = delete;
    Scope& operator=(const Scope&) = delete;

   private:
    SmemTrace* previous_;
    int64_t* previous_count_;
  };
  static SmemTrace*& current() {
    static thread_local SmemTrace* trace = nullptr;
    return trace;
  }
  // While one lives, the hooks report nothing: HostCta's own copies inside a vector access it reported
  // whole, and gemm's emulation, whose fragments are modeled.
  // The fences keep the compiler from moving the accesses out from under it, or merging one Quiet's end
  // with the next one's start: instrumentation is added after optimization, so nothing the optimizer
  // sees between them reads the depth.
  class Quiet {
   public:
    Quiet() {
      ++depth();
      std::atomic_signal_fence(std::memory_order_seq_cst);
    }
    ~Quiet() {
      std::atomic_signal_fence(std::memory_order_seq_cst);
      --depth();
    }
    Quiet(const Quiet&) = delete;
    Quiet& operator=(const Quiet&) = delete;
    static int& depth() {
      static thread_local int d = 0;
      return d;
    }
  };

  // HostSmem's buffers: only accesses inside them are shared memory.
  // allocation_*: the host memory around it, where an access is out of the CTA's shared memory.
  void add_buffer(const unsigned char* p, size_t bytes, const unsigned char* allocation_begin = nullptr,
                  const unsigned char* allocation_end = nullptr) {
    Quiet own;
    buffers_.push_back({p, p + bytes, allocation_begin ? allocation_begin : p,
                        allocation_end ? allocation_end : p + bytes, std::vector<ByteState>(bytes)});
  }
  // The tensor cores' stores (gemm's C, emulated by HostCta, modeled for the banks): `bytes` from p are written.
  void mark_written(const void* p, size_t bytes) {
    Quiet own;
    size_t buffer = 0;
    const int64_t offset = offset_of(p, &buffer);
    if (offset < 0) return;
    std::vector<ByteState>& states = buffers_[buffer].bytes;
    for (size_t b = 0; b < bytes && offset + int64_t(b) < int64_t(states.size()); ++b)
      states[offset + b].written = true;
  }
  // A new CTA on the buffer at p: nothing in it is written yet.
  void forget_writes(const unsigned char* p) {
    Quiet own;
    for (Buffer& b : buffers_)
      if (b.begin == p)
        for (ByteState& x : b.bytes) x.written = false;
  }
  void remove_buffer(const unsigned char* p) {
    Quiet own;
    buffers_.erase(std::remove_if(buffers_.begin(), buffers_.end(), [&](const Buffer& b) { return b.begin == p; }),
                   buffers_.end());
  }

  // Global buffers, and the launch and CTA that run (global races: see the header). clear_globals forgets them.
  void add_global(const void* p, size_t bytes) {
    Quiet own;
    if (p && bytes)
      globals_.push_back({static_cast<const unsigned char*>(p), static_cast<const unsigned char*>(p) + bytes,
                          std::vector<GlobalByte>(bytes)});
  }
  void clear_globals() {
    Quiet own;
    globals_.clear();
  }
  void begin_launch(std::string kernel) {
    Quiet own;
    kernel_ = std::move(kernel);
    ++launch_;
    cta_ = -1;
    if (current() == this) count_special_functions_here();
  }
  void begin_cta() {
    Quiet own;
    ++cta_;
  }
  void end_launch() {
    Quiet own;
    cta_ = -1;
  }

  // HostCta's hooks.
  void begin_phase(const char* function, int line) {
    Quiet own;
    phase_ = {function, line, 0, ""};
    in_phase_ = true;
    lanes_.clear();
    ++phases_;
    ++epoch_;  // every byte's record of the previous phase is stale from here
  }
  void set_index(int64_t i) {
    Quiet own;
    index_ = i;
  }
  void end_phase() {
    Quiet own;
    in_phase_ = false;
    replay();
  }
  void access(const void* p, int bytes, bool store, const char* function, int line, const char* kind) {
    Quiet own;
    access(p, bytes, store, SiteRef{function, line, 0, kind});
  }
  // Cta::atomic_or: a load and a store of the word for the banks, one atomic access for the races.
  void atomic_access(const void* p, int bytes, const char* function, int line) {
    Quiet own;
    const SiteRef site{function, line, 0, kAtomicAccess};
    access(p, bytes, false, site, Mode::Atomic);
    access(p, bytes, true, site, Mode::Atomic);
  }
  // wait_async: every copy in flight has landed.
  void copies_landed() {
    Quiet own;
    for (const auto& [buffer, offset] : in_flight_)
      for (int b = 0; b < 16; ++b) buffers_[buffer].bytes[offset + b].copy_site = -1;
    in_flight_.clear();
  }
  // The -fsanitize=thread hooks' (benchmarks/smem_trace_hooks.cpp).
  // The trace's own code, inlined into the instrumented program, makes instrumented accesses too: every
  // method holds a Quiet, so those return at once (as everything under a Quiet does).
  void access_at(const void* p, int bytes, bool store, const void* pc) {
    if (Quiet::depth() > 0) return;
    Quiet own;
    access(p, bytes, store, SiteRef{"", 0, reinterpret_cast<uintptr_t>(pc), kScalarAccess});
  }
  // One whole warp instruction (gemm's modeled fragments): lane l accesses `bytes` at p[l], or nothing when null.
  void instruction(const void* const (&p)[kWarp], int bytes, bool store, const Site& phase, const Site& site) {
    Quiet own;
    if (!count_) return;
    int64_t addr[kWarp];
    for (int l = 0; l < kWarp; ++l) addr[l] = p[l] ? offset_of(p[l]) : -1;
    count({kernel_, phase, site, bytes, store}, addr, bytes);
  }
  void note_gemm() {
    Quiet own;
    ++gemms_;
  }

  const std::map<Key, Cost>& costs() const { return costs_; }
  // The special-function (MUFU) operations of each kernel, as the device would issue them per lane.
  const std::map<std::string, int64_t>& special_functions() const { return special_functions_; }
  // The races found (the first of each pair of sites in each phase) and how many accesses raced in all.
  const std::vector<Race>& races() const { return races_; }
  int64_t race_count() const { return race_count_; }
  // Accesses to the registered global buffers that were judged (made by a CTA of a launch).
  int64_t global_accesses() const { return global_accesses_; }
  int64_t phases() const { return phases_; }
  int64_t gemms() const { return gemms_; }

  // The instruction addresses of the hooks' sites, for symbolize.
  std::vector<uintptr_t> addresses() const {
    std::vector<uintptr_t> pcs;
    for (const auto& [key, c] : costs_)
      if (key.access.pc) pcs.push_back(key.access.pc);
    std::sort(pcs.begin(), pcs.end());
    pcs.erase(std::unique(pcs.begin(), pcs.end()), pcs.end());
    return pcs;
  }

  // Names the instruction addresses of the hooks' sites: function and line, with `name(pc)`, which
  // maps addresses to "function:line" (the report runs addr2line), merging the sites that share a line.
  template <typename Name>
  void symbolize(Name&& name) {
    Quiet own;
    std::map<Key, Cost> named;
    for (const auto& [key, c] : costs_) {
      Key k = key;
      if (k.access.pc) {
        const std::pair<std::string, int> where = name(k.access.pc);
        k.access = {where.first, where.second, 0, k.access.kind};
      }
      named[k].add(c);
    }
    costs_ = std::move(named);
    for (Race& r : races_)
      for (Site* site : {&r.first, &r.second})
        if (site->pc) {
          const std::pair<std::string, int> where = name(site->pc);
          *site = {where.first, where.second, 0, site->kind};
        }
  }

 private:
  struct Access {
    Site site;
    int64_t offset;
    int bytes;
    bool store;
  };

  // What one phase did to one byte (valid while epoch is the trace's): the index that stored it and one that
  // loaded it (many_loads: more than one did), the index of an atomic access, and the site of each (an index
  // into sites_).
  struct PhaseRecord {
    int64_t epoch = -1, store = -1, load = -1, atomic = -1;
    bool many_loads = false, many_atomics = false;
    int store_site = -1, load_site = -1, atomic_site = -1;
  };
  // A byte's record across phases: this phase's, the site of an asynchronous copy still filling it, and whether
  // this CTA has stored it (forget_writes).
  struct ByteState {
    PhaseRecord phase;
    int copy_site = -1;
    bool written = false;
  };
  struct Buffer {
    const unsigned char *begin, *end;
    const unsigned char *allocation_begin, *allocation_end;  // the host's allocation around it (out of bounds)
    std::vector<ByteState> bytes;
  };
  enum class Mode { Plain, Atomic };
  // What the running launch did to one byte of a global buffer (valid while launch is the trace's): the CTA
  // that stored it, one that loaded it, and their sites.
  struct GlobalByte {
    int64_t launch = -1, store = -1, load = -1;
    bool many_loads = false;
    int store_site = -1, load_site = -1;
  };
  struct Global {
    const unsigned char *begin, *end;
    std::vector<GlobalByte> bytes;
  };

  // The offset from the start of the shared-memory buffer holding p, or -1 outside every buffer (and that
  // buffer's place in buffers_). Banks follow the offset from a 128-byte boundary: HostSmem aligns its buffers
  // as the device does.
  int64_t offset_of(const void* p, size_t* buffer = nullptr) const {
    const auto* b = static_cast<const unsigned char*>(p);
    for (size_t i = 0; i < buffers_.size(); ++i)
      if (b >= buffers_[i].begin && b < buffers_[i].end) {
        if (buffer) *buffer = i;
        return static_cast<int64_t>(b - buffers_[i].begin);
      }
    return -1;
  }

  // A site as its accesses name it (string literals and an address): cheap to pass for every access, made a
  // Site only where one is kept.
  struct SiteRef {
    const char* function;
    int line;
    uintptr_t pc;
    const char* kind;
    Site site() const { return {function, line, pc, kind}; }
  };

  void access(const void* p, int bytes, bool store, const SiteRef& site, Mode mode = Mode::Plain) {
    size_t buffer = 0;
    const int64_t offset = offset_of(p, &buffer);
    if (offset < 0) {
      const auto* c = static_cast<const unsigned char*>(p);
      for (const Buffer& b : buffers_)
        if (c >= b.allocation_begin && c < b.allocation_end)
          return race(c - b.begin, -1, -1, site_id(site), in_phase_ ? index_ : -1,
                      "outside the CTA's shared memory (byte offset from its start; " +
                          std::to_string(b.end - b.begin) + " bytes)");
      return check_global(p, bytes, store, site);  // global memory, or the host's own
    }
    check_races(buffer, offset, bytes, store, site, mode);
    if (!count_) return;
    // Outside a for_each an access is one lane's instruction.
    lanes_[in_phase_ ? index_ : 0].push_back({site.site(), offset, std::max(bytes, kBankBytes), store});
    if (!in_phase_) replay();
  }

  // Sites are numbered once (by their literals' addresses and the pc, which identify them), for the races'
  // records; sites_ keeps each one's Site.
  int site_id(const SiteRef& ref) {
    const auto key = std::make_tuple(ref.function, ref.line, ref.pc, ref.kind);
    const auto [it, added] = site_ids_.try_emplace(key, static_cast<int>(sites_.size()));
    if (added) sites_.push_back(ref.site());
    return it->second;
  }
  // Records a race, keeping the first of each (phase, sites, what).
  // global: between CTAs, so no phase.
  void race(int64_t offset, int first_site, int64_t first_index, int second_site, int64_t second_index,
            const std::string& what, bool global = false) {
    ++race_count_;
    const Site none{"", 0, 0, ""};
    const Site& first = first_site >= 0 ? sites_[first_site] : none;
    const Site& second = second_site >= 0 ? sites_[second_site] : none;
    const Site& phase = in_phase_ && !global ? phase_ : none;
    const auto key = std::make_tuple(kernel_, phase, first, second, what);
    if (!race_keys_.insert(key).second) return;
    races_.push_back({kernel_, phase, first, second, offset, first_index, second_index, what});
  }

  // Bytes of a global buffer that one CTA of the running launch stores and another loads or stores.
  void check_global(const void* p, int bytes, bool store, const SiteRef& site) {
    if (cta_ < 0) return;  // between launches: the host's own work
    const auto* b = static_cast<const unsigned char*>(p);
    for (Global& g : globals_) {
      if (b < g.begin || b >= g.end) continue;
      ++global_accesses_;
      const int id = site_id(site);
      bool raced = false;
      for (const unsigned char* at = b; at < b + bytes && at < g.end; ++at) {
        GlobalByte& x = g.bytes[at - g.begin];
        if (x.launch != launch_) x = GlobalByte{launch_};
        const bool other_store = x.store >= 0 && x.store != cta_;
        const bool other_load = x.load >= 0 && (x.load != cta_ || x.many_loads);
        const char* what =
            other_store ? (store ? "stored by two CTAs of one launch" : "loaded where another CTA of the launch stored")
            : store && other_load ? "stored where another CTA of the launch loaded"
                                  : nullptr;
        if (what && !raced) {
          raced = true;
          race(at - g.begin, other_store ? x.store_site : x.load_site, other_store ? x.store : x.load, id, cta_, what,
               true);
        }
        if (store)
          x.store = cta_, x.store_site = id;
        else if (x.load < 0)
          x.load = cta_, x.load_site = id;
        else if (x.load != cta_)
          x.many_loads = true;
      }
      return;
    }
  }

  // The rules of the header, byte by byte, for one access of `bytes` bytes at `offset` in buffer `buffer`.
  void check_races(size_t buffer, int64_t offset, int bytes, bool store, const SiteRef& site, Mode mode) {
    const bool copy = site.kind == kCopyAccess;  // one address in every translation unit (inline)
    const int id = site_id(site);
    const int64_t i = in_phase_ ? index_ : -1;
    std::vector<ByteState>& states = buffers_[buffer].bytes;
    bool raced = false;  // one report per access
    auto report = [&](int64_t at, int first_site, int64_t first_index, const char* what) {
      if (!raced) race(at, first_site, first_index, id, i, what);
      raced = true;
    };
    if (copy) in_flight_.emplace_back(buffer, offset);
    for (int64_t at = offset; at < offset + bytes && at < static_cast<int64_t>(states.size()); ++at) {
      ByteState& b = states[at];
      if (b.copy_site >= 0) report(at, b.copy_site, -1, "accessed while an async copy into it is in flight");
      if (copy) b.copy_site = id;
      if (!store && !b.written) report(at, -1, -1, "loaded before this CTA stored anything there");
      if (store) b.written = true;
      if (!in_phase_) {
        if (store && !copy) report(at, -1, -1, "stored outside every for_each (by each of the CTA's threads)");
        continue;
      }
      PhaseRecord& r = b.phase;
      if (r.epoch != epoch_) r = PhaseRecord{epoch_};
      const bool other_store = r.store >= 0 && r.store != i;
      const bool other_load = r.load >= 0 && (r.load != i || r.many_loads);
      const bool other_atomic = r.atomic >= 0 && (r.atomic != i || r.many_atomics);
      if (mode == Mode::Atomic) {
        if (other_store) report(at, r.store_site, r.store, "atomic on a byte another index stored");
        if (other_load) report(at, r.load_site, r.load, "atomic on a byte another index loaded");
        if (r.atomic >= 0 && r.atomic != i) r.many_atomics = true;
        if (r.atomic < 0) r.atomic = i, r.atomic_site = id;
      } else if (store) {
        if (other_store) report(at, r.store_site, r.store, "stored by two indices");
        if (other_load) report(at, r.load_site, r.load, "stored where another index loaded");
        if (other_atomic) report(at, r.atomic_site, r.atomic, "stored where another index made an atomic");
        r.store = i, r.store_site = id;
      } else {
        if (other_store) report(at, r.store_site, r.store, "loaded where another index stored");
        if (other_atomic) report(at, r.atomic_site, r.atomic, "loaded where another index made an atomic");
        if (r.load >= 0 && r.load != i) r.many_loads = true;
        if (r.load < 0) r.load = i, r.load_site = id;
      }
    }
  }

  void count(const Key& key, const int64_t (&addr)[kWarp], int bytes) {
    bytes = std::max(bytes, kBankBytes);  // 1- and 2-byte accesses: their word's bank, the whole warp at once
    Cost& c = costs_[key];
    ++c.instructions;
    c.wavefronts += bank_wavefronts(addr, bytes, key.store);
    c.phases += phase_wavefronts(addr, bytes, key.store);
    c.ideal += ideal_wavefronts(addr, bytes);
  }

  // The accesses of the phase that just ended, as warp instructions.
  void replay() {
    std::map<int64_t, std::vector<int64_t>> warps;  // warp -> the indices of its lanes that accessed anything
    for (const auto& [index, list] : lanes_) warps[index / kWarp].push_back(index);
    for (const auto& [warp, indices] : warps) {
      // The k-th access of a lane from one site (and width, kind) is one instruction.
      std::map<std::tuple<Site, int, bool, int>, std::vector<std::pair<int, int64_t>>> instructions;
      for (int64_t index : indices) {
        std::map<std::tuple<Site, int, bool>, int> seen;
        for (const Access& a : lanes_[index]) {
          const int k = seen[{a.site, a.bytes, a.store}]++;
          instructions[{a.site, a.bytes, a.store, k}].push_back({static_cast<int>(index % kWarp), a.offset});
        }
      }
      for (const auto& [what, lanes] : instructions) {
        int64_t addr[kWarp];
        std::fill(addr, addr + kWarp, -1);
        for (const auto& [lane, offset] : lanes) addr[lane] = offset;
        count({kernel_, phase_, std::get<0>(what), std::get<1>(what), std::get<2>(what)}, addr, std::get<1>(what));
      }
    }
    lanes_.clear();
  }

  // The current kernel's count, from its launch on (no program runs outside a launch). std::map: the address
  // outlives later insertions.
  void count_special_functions_here() {
    Quiet own;
    special_function_count = launch_ > 0 ? &special_functions_[kernel_] : nullptr;
  }

  bool count_ = true;
  std::map<std::string, int64_t> special_functions_;
  std::vector<Global> globals_;
  int64_t launch_ = 0, cta_ = -1, global_accesses_ = 0;
  std::string kernel_ = "?";
  Site phase_;
  bool in_phase_ = false;
  int64_t index_ = 0, phases_ = 0, gemms_ = 0;
  std::unordered_map<int64_t, std::vector<Access>> lanes_;
  std::vector<Buffer> buffers_;
  std::map<Key, Cost> costs_;
  int64_t epoch_ = 0, race_count_ = 0;
  std::vector<Site> sites_;
  std::map<std::tuple<const char*, int, uintptr_t, const char*>, int> site_ids_;
  std::vector<std::pair<size_t, int64_t>> in_flight_;  // (buffer, offset) of each copy not yet landed
  std::vector<Race> races_;
  std::set<std::tuple<std::string, Site, Site, Site, std::string>> race_keys_;
};

// A site as the reports name it: "function:line", the function without namespaces or template arguments
// ("ns::f<...>(...)::<lambda>" -> "f"); a site without a line (a modeled fragment's) by its name alone.
inline std::string site_name(const SmemTrace::Site& s) {
  if (!s.line) return s.function;
  const std::string head = s.function.substr(0, s.function.find_first_of("<("));
  const size_t colons = head.rfind("::");
  return (colons == std::string::npos ? head : head.substr(colons + 2)) + ":" + std::to_string(s.line);
}

// gemm's fragment accesses for one C[m×n] (+)= op(A)·op(B) on the tensor cores, as the model above has
// them, reported to `trace` as whole warp instructions of the phase `phase`. What nvcc 13 makes of WMMA for
// sm_90 with the .shared loads and stores of wmma_shared.cuh (SASS of the chunk kernels and of 16×16 tiles,
// both layouts of each operand, bf16, f16 and tf32):
//   - a 16-bit operand tile is one LDSM.x4 (ldmatrix): four 8×8 matrices of eight stored rows of 16 bytes,
//     a wavefront each without conflicts; lane l gives the address of row l % 8 of matrix l / 8, so it is
//     the model's 16-byte access in quarter warps (stored rows 0-7 and 8-15, then the next 16 bytes);
//   - a tf32 operand tile is four 32-bit loads, lane (g, t) = (l / 4, l % 4) reading word t of stored row g,
//     each covering eight rows and four words (the next eight rows, then the next four words);
//   - the fp32 accumulators are four 64-bit loads or stores, lane (g, t) taking columns 2t, 2t + 1 of row g,
//     then row g + 8, then eight columns on (accumulator_pair); with C null (gemm_apply) there are none, the
//     product staying in registers.
// (With load_matrix_sync's generic pointers, which the chunk kernels used before, the 16-bit operands were
// four generic 32-bit loads of the same words: the same wavefronts, four times the instructions.)
// Element addresses as HostCta's gemm reads them: op(A)[i,p] = TA ? A[p·lda + i] : A[i·lda + p];
// op(B)[p,j] = TB ? B[j·ldb + p] : B[p·ldb + j].
template <bool TA, bool TB, typename Op>
void trace_wmma_fragments(SmemTrace& trace, const SmemTrace::Site& phase, int m, int n, int k, const Op* A, int lda,
                          const Op* B, int ldb, const float* C, int ldc, bool accumulate, KSpan span = KSpan::All) {
  constexpr int kStep = sizeof(Op) == 4 ? 8 : 16;  // m16n16k8 for tf32, m16n16k16 for 16-bit operands
  constexpr int kPerWord = 4 / sizeof(Op);
  const void* lane[kWarp];
  // One operand tile as stored: `rows` rows of ld elements from `tile`, 32 bytes wide (16 16-bit or 8 fp32).
  auto operand = [&](const char* what, const Op* tile, int ld, int rows) {
    if constexpr (sizeof(Op) == 2) {  // ldmatrix.x4: 16 rows of 16 elements, two 16-byte halves
      for (int l = 0; l < kWarp; ++l) lane[l] = tile + size_t(l % 8 + 8 * (l / 8 % 2)) * ld + 8 * (l / 16);
      trace.instruction(lane, 16, false, phase, {what, 0, 0, kFragmentAccess});
    } else {
      for (int r = 0; r < 4; ++r) {
        const int row_block = r % (rows / 8), word_block = r / (rows / 8);
        for (int l = 0; l < kWarp; ++l)
          lane[l] = tile + size_t(l / 4 + 8 * row_block) * ld + (l % 4 + 4 * word_block) * kPerWord;
        trace.instruction(lane, 4, false, phase, {what, 0, 0, kFragmentAccess});
      }
    }
  };
  auto accumulator = [&](int i0, int j0, bool store) {
    for (int r = 0; r < kAccumulatorPairs; ++r) {
      for (int l = 0; l < kWarp; ++l)
        lane[l] = C + size_t(i0 + accumulator_pair_row(l, r)) * ldc + j0 + accumulator_pair_col(l, r);
      trace.instruction(lane, 8, store, phase, {store ? "C store" : "C load", 0, 0, kFragmentAccess});
    }
  };
  for (int i0 = 0; i0 < m; i0 += 16)
    for (int j0 = 0; j0 < n; j0 += 16) {
      if (C && accumulate) accumulator(i0, j0, false);
      int begin, end;
      k_span(span, i0, j0, k, begin, end);
      for (int p = begin; p < end; p += kStep) {
        // op(A)[i0.., p..]: stored 16 rows of kStep (row-major) or kStep rows of 16 (TA); likewise op(B)[p.., j0..].
        operand("A load", gemm_a_tile<TA>(A, lda, i0, p), lda, TA ? kStep : 16);
        operand("B load", gemm_b_tile<TB>(B, ldb, j0, p), ldb, TB ? 16 : kStep);
      }
      if (C) accumulator(i0, j0, true);
    }
}

// One lane's ldmatrix row addresses as chain_warp.h issues them, in order; nothing is multiplied (the addresses do
// not depend on the values), nothing stored.
struct LdsmRecorder {
  static inline thread_local std::vector<const void*>* rows = nullptr;
  template <bool kTrans>
  static void ldsm_x4(uint32_t (&r)[4], const void* row) {
    rows->push_back(row);
    r[0] = r[1] = r[2] = r[3] = 0;
  }
  template <typename Op>
  static void mma_16816(float (&)[4], const uint32_t (&)[4], uint32_t, uint32_t) {}
  template <typename Op>
  static uint32_t pack2(float, float) {
    return 0;
  }
};

// gemm_chain's fragments (16-bit operands), as DeviceCta loads them: the device's own lane code (chain_warp.h) run
// once per lane of each warp with LdsmRecorder, and the lanes' k-th ldmatrix traced as one warp instruction
// (ldmatrix.x4: 16 bytes a lane). P's stores are the program's own accesses (HostCta::gemm_chain traces them).
template <KSpan kMask, int kM, int kN, int kK, int kParts, bool kTB1, typename Op>
void trace_chain_fragments(SmemTrace& trace, const SmemTrace::Site& phase, const Op* A, int lda, const Op* B0, int ldb0,
                           const Op* B1, int ldb1, const Op* B2, int ldb2) {
  static_assert(sizeof(Op) == 2, "gemm_chain multiplies 16-bit operands");
  const auto* a0 = reinterpret_cast<const char*>(A);
  const auto* a1 = reinterpret_cast<const char*>(A + (kM - 1) * lda + kK);
  const auto ignore = [](int, int, const float*) {};
  for (int w = 0; w < kM / 16 * kParts; ++w) {
    std::vector<const void*> rows[kWarp];
    for (int l = 0; l < kWarp; ++l) {
      LdsmRecorder::rows = &rows[l];
      chain_warp<kMask, kM, kN, kK, kParts, kTB1, LdsmRecorder>(w, l, A, lda, B0, ldb0, B1, ldb1, B2, ldb2,
                                                                static_cast<Op*>(nullptr), 0, ignore);
    }
    LdsmRecorder::rows = nullptr;
    for (int l = 1; l < kWarp; ++l)
      if (rows[l].size() != rows[0].size())
        throw std::logic_error("trace_chain_fragments: lanes issued different ldmatrix counts");
    for (size_t k = 0; k < rows[0].size(); ++k) {
      const void* lane[kWarp];
      for (int l = 0; l < kWarp; ++l) lane[l] = rows[l][k];
      const auto* first = static_cast<const char*>(lane[0]);
      trace.instruction(lane, 16, false, phase,
                        {first >= a0 && first < a1 ? "A load" : "B load", 0, 0, kFragmentAccess});
    }
  }
}

}  // namespace decayfw::cta
