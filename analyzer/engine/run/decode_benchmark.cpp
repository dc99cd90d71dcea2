#include "run/decode_benchmark.h"

#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <random>
#include <stdexcept>

#include "model/device.h"

namespace decayfw::engine {

int64_t peak_rss_bytes() {
  struct rusage u {};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<int64_t>(u.ru_maxrss) * 1024;  // Linux reports KiB
}

std::vector<BenchPoint> benchmark_decode(const std::vector<BenchModel>& models, const BenchOptions& o,
                                         const std::function<bool(const BenchPoint&)>& on_point,
                                         const std::atomic<bool>* cancel) {
  if (models.empty()) throw std::invalid_argument("bench: no model");
  if (o.steps <= 0 || o.warmup < 0 || o.prefill_block <= 0) throw std::invalid_argument("bench: steps must be positive");
  for (int64_t L : o.contexts) {
    if (L < 0) throw std::invalid_argument("bench: context lengths must be >= 0");
  }
  std::vector<BenchPoint> points;
  std::mt19937_64 rng(o.seed);
  for (int64_t L : o.contexts) {
    for (const auto& bm : models) {
      if (cancel != nullptr && cancel->load()) return points;
      TransformerLm& m = *bm.model;
      const int64_t V = m.config().vocab_size;
      std::uniform_int_distribution<int64_t> tok(4, V - 1);
      DecodeState st = m.new_state(1);
      for (int64_t a = 0; a < L; a += o.prefill_block) {  // the context, in blocks
        const int64_t n = std::min(o.prefill_block, L - a);
        std::vector<int64_t> ids(static_cast<size_t>(n));
        for (auto& i : ids) i = tok(rng);
        m.features(at::tensor(ids, at::kLong).unsqueeze(0), &st);
        if (cancel != nullptr && cancel->load()) return points;
      }
      const int64_t state_bytes = st.bytes();
      // A GPU runs asynchronously: every timed step starts with the device idle and ends when its
      // work is done (a no-op on the CPU).
      const at::Device dev = m.device();
      synchronize(dev);
      std::vector<double> ms;
      for (int64_t s = 0; s < o.warmup + o.steps; ++s) {
        if (cancel != nullptr && cancel->load()) return points;
        const auto t0 = std::chrono::steady_clock::now();
        // a full decode step: the token's features and its distribution over the vocabulary
        m.log_probs(m.step(at::tensor({tok(rng)}, at::kLong), st));
        synchronize(dev);
        const double dt = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
        if (s >= o.warmup) ms.push_back(dt);
      }
      std::nth_element(ms.begin(), ms.begin() + static_cast<std::ptrdiff_t>(ms.size() / 2), ms.end());
      BenchPoint p;
      p.model = bm.label;
      p.device = device_name(dev);
      p.context = L;
      p.ms_per_token = ms[ms.size() / 2];
      p.tokens_per_s = 1000.0 / p.ms_per_token;
      p.state_bytes = state_bytes;
      p.peak_rss_bytes = peak_rss_bytes();
      points.push_back(p);
      if (on_point && !on_point(p)) return points;
    }
  }
  return points;
}

}  // namespace decayfw::engine
