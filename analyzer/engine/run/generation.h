// Text generation with a TransformerLm: greedy (fairseq's beam 1), or sampling with temperature,
// top-k and top-p from a fixed seed; tokens are streamed to a callback as they are produced, and a
// run can be cancelled from another thread. Incremental: O(1) per token for decay models.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "model/transformer_lm.h"
#include "text/dictionary.h"
#include "text/tokenizer.h"

namespace decayfw::engine {

struct SamplingOptions {
  int64_t max_new_tokens = 50;
  bool sampling = false;       // false: greedy argmax (fairseq --beam 1)
  double temperature = 1.0;    // sampling only
  int64_t top_k = 0;           // 0: all
  double top_p = 1.0;          // 1: all
  uint64_t seed = 1;
  bool stop_at_eos = true;
  int64_t min_length = 1;      // </s> is not allowed before the hypothesis (prompt + new) has this many tokens (fairseq's min_len)
};

struct GeneratedToken {
  int64_t index = 0;       // 0-based position among the new tokens
  int64_t id = 0;
  std::string word;        // the dictionary's word
  std::string piece;       // how it reads in the text (a leading space, or the BPE piece)
  double logprob = 0;      // log-probability the model gave the chosen token (before temperature)
  double seconds = 0;      // wall time since generation started
};

struct GenerationResult {
  std::vector<int64_t> prompt_ids, new_ids;
  std::vector<double> logprobs;
  std::string text;              // prompt + continuation, specials removed
  bool stopped_at_eos = false, cancelled = false;
  double prompt_seconds = 0, generation_seconds = 0;
  double tokens_per_second() const;
};

// Returns false from the callback to stop early.
using TokenCallback = std::function<bool(const GeneratedToken&)>;

// `prompt` is encoded with the dictionary; like fairseq's language-model generation the model reads
// </s> first, then the prompt. Throws std::invalid_argument for bad options.
GenerationResult generate(TransformerLm& model, const Tokenizer& tokenizer, const std::string& prompt,
                          const SamplingOptions& options, const TokenCallback& on_token = {},
                          const std::atomic<bool>* cancel = nullptr);
// Whitespace-word models.
inline GenerationResult generate(TransformerLm& model, const Dictionary& dict, const std::string& prompt,
                                 const SamplingOptions& options, const TokenCallback& on_token = {},
                                 const std::atomic<bool>* cancel = nullptr) {
  return generate(model, Tokenizer{&dict, nullptr}, prompt, options, on_token, cancel);
}

// Chooses the next token from log-probabilities [V] (pad excluded, </s> excluded when !allow_eos).
int64_t choose_token(const at::Tensor& log_probs, const SamplingOptions& options, bool allow_eos,
                     uint64_t& rng_state);

}  // namespace decayfw::engine
