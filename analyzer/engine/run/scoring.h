// Per-token log-probabilities and perplexity of a text, the way fairseq-eval-lm computes them: the
// text is one token stream (each line's tokens then </s>), the model reads the previous token (</s>
// before the first), blocks of `tokens_per_sample − context_window` targets are scored, each seeing
// up to `context_window` earlier tokens. Or streaming: blocks of `tokens_per_sample` scored one
// after another with the decay state carried across them (unbounded context, O(1) memory).
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <vector>

#include "model/transformer_lm.h"

namespace decayfw::engine {

struct ScoringOptions {
  int64_t tokens_per_sample = 512;
  int64_t context_window = 0;
  bool streaming = false;      // decay models only
  int64_t max_tokens = 0;      // score only the first N tokens (0: all)
};

struct ScoreResult {
  std::vector<int64_t> targets;
  std::vector<float> logprobs;  // natural log, one per target
  double mean_nll() const;      // nats per token
  double perplexity() const;
  double seconds = 0;
  bool cancelled = false;
};

// progress(done, total) after every block; return false (or set `cancel`) to stop.
ScoreResult score_tokens(TransformerLm& model, const std::vector<int64_t>& stream, const ScoringOptions& options,
                         const std::function<bool(int64_t, int64_t)>& progress = {},
                         const std::atomic<bool>* cancel = nullptr);

}  // namespace decayfw::engine
