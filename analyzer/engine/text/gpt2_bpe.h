// GPT-2's byte-level BPE (encoder.json + vocab.bpe), as fairseq's `--bpe gpt2` applies it: text →
// GPT-2 token ids → their decimal strings, which are the words of the model's dict.txt.
//
// The pre-tokenizer is GPT-2's pattern  's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// written out by hand. Unicode classes are approximated without ICU: letters are ASCII letters and
// non-ASCII code points outside the punctuation, symbol and space blocks; numbers are ASCII digits.
// For ASCII and Latin text this is exact (tested against fairseq's encoder).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "text/dictionary.h"

namespace decayfw::engine {

class Gpt2Bpe {
 public:
  // Throws std::runtime_error naming the file and the problem.
  static Gpt2Bpe load(const std::string& encoder_json, const std::string& vocab_bpe);

  std::vector<int64_t> encode(const std::string& text) const;   // GPT-2 ids
  std::string decode(const std::vector<int64_t>& ids) const;    // bytes → UTF-8 (invalid bytes kept)

  // fairseq's view: ids as the dictionary's words ("464 3290 …") and back.
  std::vector<int64_t> encode_to_dictionary(const std::string& text, const Dictionary& dict) const;
  std::string decode_from_dictionary(const std::vector<int64_t>& dict_ids, const Dictionary& dict) const;

  // GPT-2's pre-tokenization (exposed for tests).
  static std::vector<std::string> pretokenize(const std::string& text);

 private:
  std::unordered_map<std::string, int64_t> encoder_;
  std::unordered_map<int64_t, std::string> decoder_;
  std::map<std::pair<std::string, std::string>, int64_t> ranks_;
  std::vector<std::string> byte_to_symbol_;               // 256 entries, UTF-8
  std::unordered_map<std::string, uint8_t> symbol_to_byte_;
  mutable std::unordered_map<std::string, std::vector<std::string>> cache_;
  std::vector<std::string> bpe(const std::string& token) const;
};

}  // namespace decayfw::engine
