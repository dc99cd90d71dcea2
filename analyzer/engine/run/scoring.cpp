#include "run/scoring.h"

#include <chrono>
#include <cmath>
#include <stdexcept>

#include "text/dictionary.h"

namespace decayfw::engine {

double ScoreResult::mean_nll() const {
  if (logprobs.empty()) return 0;
  double s = 0;
  for (float l : logprobs) s -= l;
  return s / static_cast<double>(logprobs.size());
}

double ScoreResult::perplexity() const { return std::exp(mean_nll()); }

ScoreResult score_tokens(TransformerLm& model, const std::vector<int64_t>& stream_in, const ScoringOptions& o,
                         const std::function<bool(int64_t, int64_t)>& progress, const std::atomic<bool>* cancel) {
  if (o.tokens_per_sample <= 0) throw std::invalid_argument("score: tokens_per_sample must be positive");
  if (o.context_window < 0 || o.context_window >= o.tokens_per_sample) {
    throw std::invalid_argument("score: context_window must be in [0, tokens_per_sample)");
  }
  if (o.streaming && !model.config().decay) {
    throw std::invalid_argument("score: streaming carries a decay state; this model is softmax attention (use a "
                                "context window instead)");
  }
  std::vector<int64_t> stream = stream_in;
  if (o.max_tokens > 0 && static_cast<int64_t>(stream.size()) > o.max_tokens) stream.resize(o.max_tokens);
  const int64_t N = static_cast<int64_t>(stream.size());
  // inputs[i] is the token the model reads when predicting stream[i]
  std::vector<int64_t> inputs(stream.size());
  for (int64_t i = 0; i < N; ++i) inputs[i] = i == 0 ? Dictionary::kEos : stream[i - 1];
  const int64_t block = o.streaming ? o.tokens_per_sample : o.tokens_per_sample - o.context_window;
  const auto t0 = std::chrono::steady_clock::now();
  ScoreResult r;
  r.targets = stream;
  r.logprobs.reserve(stream.size());
  DecodeState state = model.new_state(1);
  for (int64_t a = 0; a < N; a += block) {
    if (cancel != nullptr && cancel->load()) {
      r.cancelled = true;
      break;
    }
    const int64_t b = std::min(N, a + block);
    const int64_t ctx = o.streaming ? 0 : std::min(o.context_window, a);
    at::Tensor in = at::tensor(std::vector<int64_t>(inputs.begin() + (a - ctx), inputs.begin() + b), at::kLong);
    at::Tensor feats = o.streaming ? model.features(in.unsqueeze(0), &state) : model.features(in.unsqueeze(0));
    at::Tensor lp = model.log_probs(feats.narrow(1, ctx, b - a)).select(0, 0);
    at::Tensor tgt = at::tensor(std::vector<int64_t>(stream.begin() + a, stream.begin() + b), at::kLong);
    at::Tensor picked = lp.gather(1, tgt.to(lp.device()).unsqueeze(1)).squeeze(1).to(at::kCPU).contiguous();
    const float* p = picked.data_ptr<float>();
    r.logprobs.insert(r.logprobs.end(), p, p + (b - a));
    if (progress && !progress(b, N)) {
      r.cancelled = true;
      break;
    }
  }
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

}  // namespace decayfw::engine
