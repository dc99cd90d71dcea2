// Per-token decode latency and memory against context length (the paper's Figure 1), for one
// model or several side by side. For each context length L: fill the state/KV cache with L tokens,
// then time `steps` single-token decode steps; report the median per token, the state or KV-cache
// bytes at L (on the model's device) and the process's peak resident (host) memory. On a GPU each
// timed step is synchronised before the clock is read. Points are delivered as they are measured
// so a UI can plot live; a run can be cancelled between steps.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "model/transformer_lm.h"

namespace decayfw::engine {

struct BenchOptions {
  std::vector<int64_t> contexts = {128, 256, 512, 1024, 2048, 3072};
  int64_t steps = 32;    // timed decode steps per point
  int64_t warmup = 4;    // untimed steps first
  int64_t prefill_block = 512;
  uint64_t seed = 1;
};

struct BenchPoint {
  std::string model;         // the label given
  std::string device;        // where it ran: "cpu", "cuda:0"
  int64_t context = 0;
  double ms_per_token = 0;   // median
  double tokens_per_s = 0;
  int64_t state_bytes = 0;   // KV cache or fast-weight states at this context
  int64_t peak_rss_bytes = 0;
};

struct BenchModel {
  std::string label;
  TransformerLm* model = nullptr;
};

// Interleaves the models at every context length, so both see the same machine conditions.
// on_point returns false to stop. Returns every point measured.
std::vector<BenchPoint> benchmark_decode(const std::vector<BenchModel>& models, const BenchOptions& options,
                                         const std::function<bool(const BenchPoint&)>& on_point = {},
                                         const std::atomic<bool>* cancel = nullptr);

int64_t peak_rss_bytes();

}  // namespace decayfw::engine
