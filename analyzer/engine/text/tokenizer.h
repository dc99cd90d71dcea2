// Text ↔ dictionary ids for a model: whitespace words (WikiText models), or GPT-2 byte-level BPE
// whose ids are the dictionary's words (models trained with fairseq's --bpe gpt2).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "text/dictionary.h"
#include "text/gpt2_bpe.h"

namespace decayfw::engine {

struct Tokenizer {
  const Dictionary* dict = nullptr;
  std::shared_ptr<const Gpt2Bpe> bpe;  // null: whitespace words

  std::vector<int64_t> encode_line(const std::string& line) const {
    return bpe ? bpe->encode_to_dictionary(line, *dict) : dict->encode_line(line);
  }
  // A multi-line text as one stream: each line's tokens, </s> between lines (not after the last).
  std::vector<int64_t> encode_text(const std::string& text) const {
    std::vector<int64_t> ids;
    for (size_t start = 0; start <= text.size();) {
      size_t nl = text.find('\n', start);
      if (nl == std::string::npos) nl = text.size();
      const auto line = encode_line(text.substr(start, nl - start));
      ids.insert(ids.end(), line.begin(), line.end());
      if (nl < text.size()) ids.push_back(Dictionary::kEos);
      start = nl + 1;
    }
    return ids;
  }
  std::string decode(const std::vector<int64_t>& ids) const {
    return bpe ? bpe->decode_from_dictionary(ids, *dict) : dict->decode(ids);
  }
  // One generated token as it should be shown when streaming (BPE pieces carry their own spaces).
  std::string piece(int64_t id) const {
    if (!bpe) return " " + dict->word(id);
    return bpe->decode_from_dictionary({id}, *dict);
  }
};

}  // namespace decayfw::engine
