// A warp on the host: 32 lanes as 32 threads, and the warp instructions gemm_chain's lane code uses
// (kernels/cuda/cta/chain_warp.h) carried out for them as the PTX ISA documents them, so that the lane mapping
// written for the device (which lane gives which row address, which register holds which pair) runs here.
//
// Written from the PTX ISA's tables, not from the kernels' helpers (cta_common.h's ldsm_row, accumulator_pair_*):
//   ldmatrix.sync.aligned.m8n8.x4[.trans].shared.b16: lanes 8i..8i + 7 give the addresses of matrix i's 8 rows
//     (16 bytes each, 16-byte aligned); lane l's register i holds matrix i's row l/4, elements 2(l%4), 2(l%4) + 1
//     (.trans: column l/4, rows 2(l%4), 2(l%4) + 1), the first in the low half.
//   mma.sync.aligned.m16n8k16.row.col.f32.{bf16,f16}: with g = l/4, t = l%4, A's registers 0..3 hold
//     (row g, k 2t..2t+1), (g + 8, 2t..), (g, 2t + 8..), (g + 8, 2t + 8..); B's two hold (k 2t..2t+1, column g),
//     (k 2t + 8.., g); C/D's four floats (row g, columns 2t, 2t + 1), (g + 8, 2t, 2t + 1).
// The products are exact in fp32 (16-bit operands) and summed in k order from the accumulator, as HostCta's gemm
// sums them, so a right mapping gives HostCta::gemm_chain's bits.
//
// Every lane must issue the same instructions in the same order (a warp-synchronous instruction: the device's
// .aligned); a lane that issues another one, or a misaligned row, stops the warp with an error naming the lane.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <exception>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "decayfw/numeric.h"

namespace decayfw::testing {

class LaneEmulator {
 public:
  static constexpr int kLanes = 32;

  // Runs body(lane) for the 32 lanes of one warp, each on its own thread; rethrows the first lane's error.
  template <typename Body>
  static void run_warp(Body&& body) {
    Warp warp;
    std::vector<std::thread> lanes;
    lanes.reserve(kLanes);
    for (int l = 0; l < kLanes; ++l)
      lanes.emplace_back([&warp, &body, l] {
        current_ = &warp;
        lane_ = l;
        try {
          body(l);
          warp.finish();
        } catch (const Aborted&) {
        } catch (...) {
          warp.abort(std::current_exception());
        }
        current_ = nullptr;
      });
    for (auto& t : lanes) t.join();
    if (warp.error) std::rethrow_exception(warp.error);
  }

  // chain_warp.h's instruction set.
  template <bool kTrans>
  static void ldsm_x4(uint32_t (&r)[4], const void* row) {
    Warp& w = warp();
    if (reinterpret_cast<uintptr_t>(row) % 16 != 0)
      w.abort(std::make_exception_ptr(
          std::logic_error("ldmatrix: lane " + std::to_string(lane_) + "'s row address is not 16-byte aligned")));
    w.slot[lane_].row = row;
    w.sync(kTrans ? Instruction::LdsmTrans : Instruction::Ldsm);
    const int l = lane_;
    for (int i = 0; i < 4; ++i) {
      uint16_t e[2];
      for (int h = 0; h < 2; ++h) {
        const int r = kTrans ? 2 * (l % 4) + h : l / 4;  // the matrix's row in memory
        const int c = kTrans ? l / 4 : 2 * (l % 4) + h;  // its column (element of that 16-byte row)
        std::memcpy(&e[h], static_cast<const char*>(w.slot[8 * i + r].row) + 2 * c, 2);
      }
      r[i] = uint32_t(e[0]) | uint32_t(e[1]) << 16;
    }
    w.sync(Instruction::Done);  // nobody posts the next instruction's operands before all have read these
  }

  template <typename Op>
  static void mma_16816(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    static_assert(std::is_same_v<Op, BFloat16> || std::is_same_v<Op, Float16>, "16-bit operands");
    Warp& w = warp();
    auto& s = w.slot[lane_];
    std::memcpy(s.a, a, sizeof s.a);
    s.b[0] = b0, s.b[1] = b1;
    std::memcpy(s.c, c, sizeof s.c);
    w.sync(std::is_same_v<Op, BFloat16> ? Instruction::MmaBf16 : Instruction::MmaF16);
    float A[16][16], B[16][8], C[16][8];
    for (int l = 0; l < kLanes; ++l) {
      const int g = l / 4, t = l % 4;
      const auto& o = w.slot[l];
      for (int reg = 0; reg < 4; ++reg)
        for (int h = 0; h < 2; ++h) {
          A[g + 8 * (reg % 2)][2 * t + 8 * (reg / 2) + h] = element<Op>(o.a[reg], h);
          C[g + 8 * (reg / 2)][2 * t + reg % 2] = o.c[reg];
        }
      for (int reg = 0; reg < 2; ++reg)
        for (int h = 0; h < 2; ++h) B[2 * t + 8 * reg + h][g] = element<Op>(o.b[reg], h);
    }
    const int g = lane_ / 4, t = lane_ % 4;
    for (int reg = 0; reg < 4; ++reg) {
      const int i = g + 8 * (reg / 2), j = 2 * t + reg % 2;
      float d = C[i][j];
      for (int k = 0; k < 16; ++k) d += A[i][k] * B[k][j];
      c[reg] = d;
    }
    w.sync(Instruction::Done);
  }

  // The calling thread's lane (for an instruction set derived from this one).
  static int lane() { return lane_; }

  template <typename Op>
  static uint32_t pack2(float lo, float hi) {
    if constexpr (std::is_same_v<Op, BFloat16>)
      return uint32_t(to_bfloat16(lo).bits) | uint32_t(to_bfloat16(hi).bits) << 16;
    else
      return uint32_t(to_float16(lo).bits) | uint32_t(to_float16(hi).bits) << 16;
  }

 private:
  enum class Instruction { Ldsm, LdsmTrans, MmaBf16, MmaF16, Done, Exit };
  static const char* name(Instruction i) {
    constexpr const char* kNames[] = {"ldmatrix", "ldmatrix.trans", "mma.bf16", "mma.f16", "(reading)", "exit"};
    return kNames[static_cast<int>(i)];
  }
  struct Aborted {};

  struct Slot {
    const void* row = nullptr;
    uint32_t a[4] = {}, b[2] = {};
    float c[4] = {};
    Instruction issued = Instruction::Done;
  };

  // A barrier over the 32 lanes that also checks they all arrived at the same instruction.
  struct Warp {
    Slot slot[kLanes];
    std::mutex m;
    std::condition_variable cv;
    int arrived = 0;
    int64_t generation = 0;
    bool aborted = false;
    std::exception_ptr error;

    void sync(Instruction what) {
      std::unique_lock<std::mutex> lock(m);
      if (aborted) throw Aborted{};
      slot[lane_].issued = what;
      const int64_t gen = generation;
      if (++arrived == kLanes) {
        for (int l = 0; l < kLanes; ++l)
          if (slot[l].issued != slot[0].issued) {
            fail(std::make_exception_ptr(std::logic_error(std::string("warp divergence: lane 0 issued ") +
                                                          name(slot[0].issued) + ", lane " + std::to_string(l) + " " +
                                                          name(slot[l].issued))));
            throw Aborted{};
          }
        arrived = 0;
        ++generation;
        cv.notify_all();
        return;
      }
      cv.wait(lock, [&] { return generation != gen || aborted; });
      if (aborted) throw Aborted{};
    }
    void finish() { sync(Instruction::Exit); }
    void abort(std::exception_ptr e) {
      std::lock_guard<std::mutex> lock(m);
      fail(std::move(e));
    }
    void fail(std::exception_ptr e) {  // m held
      if (!error) error = std::move(e);
      aborted = true;
      cv.notify_all();
    }
  };

  static Warp& warp() {
    if (!current_) throw std::logic_error("a warp instruction outside LaneEmulator::run_warp");
    if (current_->aborted) throw Aborted{};
    return *current_;
  }
  template <typename Op>
  static float element(uint32_t reg, int half) {
    const uint16_t bits = static_cast<uint16_t>(half ? reg >> 16 : reg & 0xffffu);
    if constexpr (std::is_same_v<Op, BFloat16>)
      return to_float(BFloat16{bits});
    else
      return to_float(Float16{bits});
  }

  static inline thread_local Warp* current_ = nullptr;
  static inline thread_local int lane_ = -1;
};

}  // namespace decayfw::testing
