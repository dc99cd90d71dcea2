#include "run/generation.h"

#include <chrono>
#include <cmath>
#include <stdexcept>

#include "model/device.h"

namespace decayfw::engine {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// splitmix64: a small, portable, seedable generator (the same stream on every platform).
uint64_t next_random(uint64_t& s) {
  uint64_t z = (s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

}  // namespace

double GenerationResult::tokens_per_second() const {
  return generation_seconds > 0 ? static_cast<double>(new_ids.size()) / generation_seconds : 0.0;
}

int64_t choose_token(const at::Tensor& log_probs_in, const SamplingOptions& o, bool allow_eos, uint64_t& rng) {
  // Greedy: the argmax where the log-probabilities are (one number comes back from a GPU);
  // sampling walks the sorted distribution on the host.
  at::Tensor lp = log_probs_in.to(at::kDouble);
  lp = o.sampling ? lp.cpu().clone() : lp.clone();
  const double neg_inf = -std::numeric_limits<double>::infinity();
  lp[Dictionary::kPad] = neg_inf;
  if (!allow_eos) lp[Dictionary::kEos] = neg_inf;
  if (!o.sampling) return lp.argmax().item<int64_t>();
  at::Tensor logits = lp / o.temperature;
  at::Tensor probs = at::softmax(logits, 0);
  at::Tensor sorted, order;
  std::tie(sorted, order) = probs.sort(0, /*descending=*/true);
  int64_t keep = sorted.size(0);
  if (o.top_k > 0) keep = std::min(keep, o.top_k);
  if (o.top_p < 1.0) {  // smallest prefix whose mass reaches top_p (fairseq's nucleus sampling)
    at::Tensor cum = sorted.cumsum(0);
    const int64_t n = (cum < o.top_p).sum().item<int64_t>() + 1;
    keep = std::min(keep, std::max<int64_t>(1, n));
  }
  at::Tensor p = sorted.narrow(0, 0, keep);
  const double total = p.sum().item<double>();
  const double u = (static_cast<double>(next_random(rng) >> 11) * 0x1.0p-53) * total;
  auto acc = p.accessor<double, 1>();
  double run = 0;
  for (int64_t i = 0; i < keep; ++i) {
    run += acc[i];
    if (u < run) return order[i].item<int64_t>();
  }
  return order[keep - 1].item<int64_t>();
}

GenerationResult generate(TransformerLm& model, const Tokenizer& tokenizer, const std::string& prompt,
                          const SamplingOptions& o, const TokenCallback& on_token, const std::atomic<bool>* cancel) {
  const Dictionary& dict = *tokenizer.dict;
  if (o.max_new_tokens < 0) throw std::invalid_argument("generate: max_new_tokens must be >= 0");
  if (o.sampling && !(o.temperature > 0)) throw std::invalid_argument("generate: temperature must be > 0");
  if (!(o.top_p > 0 && o.top_p <= 1)) throw std::invalid_argument("generate: top_p must be in (0, 1]");
  if (o.top_k < 0) throw std::invalid_argument("generate: top_k must be >= 0");
  GenerationResult r;
  r.prompt_ids = tokenizer.encode_line(prompt);
  std::vector<int64_t> context = {Dictionary::kEos};
  context.insert(context.end(), r.prompt_ids.begin(), r.prompt_ids.end());
  const auto t0 = Clock::now();
  DecodeState state = model.new_state(1);
  at::Tensor feats = model.features(at::tensor(context, at::kLong).unsqueeze(0), &state);
  at::Tensor lp = model.log_probs(feats.select(1, feats.size(1) - 1)).select(0, 0);
  synchronize(model.device());  // a GPU runs asynchronously: the prompt's time is when its work is done
  r.prompt_seconds = seconds_since(t0);
  const auto t1 = Clock::now();
  uint64_t rng = o.seed;
  for (int64_t i = 0; i < o.max_new_tokens; ++i) {
    if (cancel != nullptr && cancel->load()) {
      r.cancelled = true;
      break;
    }
    const bool allow_eos = static_cast<int64_t>(r.prompt_ids.size()) + i >= o.min_length;
    const int64_t id = choose_token(lp, o, allow_eos, rng);
    GeneratedToken tok;
    tok.index = i;
    tok.id = id;
    tok.word = dict.word(id);
    tok.piece = id == Dictionary::kEos ? "" : tokenizer.piece(id);
    tok.logprob = lp[id].item<double>();  // (from a GPU: the token's work has finished, the clock is right)
    tok.seconds = seconds_since(t1);
    r.new_ids.push_back(id);
    r.logprobs.push_back(tok.logprob);
    if (id == Dictionary::kEos && o.stop_at_eos) {
      r.stopped_at_eos = true;
      if (on_token) on_token(tok);
      break;
    }
    if (on_token && !on_token(tok)) {
      r.cancelled = true;
      break;
    }
    if (i + 1 < o.max_new_tokens) {
      lp = model.log_probs(model.step(at::tensor({id}, at::kLong), state)).select(0, 0);
    }
  }
  synchronize(model.device());
  r.generation_seconds = seconds_since(t1);
  std::vector<int64_t> all = r.prompt_ids;
  all.insert(all.end(), r.new_ids.begin(), r.new_ids.end());
  r.text = tokenizer.decode(all);
  return r;
}

}  // namespace decayfw::engine
