// fairseq's Dictionary: dict.txt ("<word> <count>" per line, most frequent first) behind the four
// special symbols <s>=0 <pad>=1 </s>=2 <unk>=3. A dict.txt written by fairseq-preprocess already ends
// in the "madeupword0000 0"… lines Dictionary.finalize(padding_factor=8) added, and fairseq's
// Dictionary.load adds none, so load() pads only when asked (padding_factor > 1, for a raw count
// file), the way finalize does; len(dictionary) is the models' embedding rows.
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

namespace decayfw::engine {

class Dictionary {
 public:
  static constexpr int64_t kBos = 0, kPad = 1, kEos = 2, kUnk = 3;

  // Reads dict.txt. Lines may end in " #fairseq:overwrite" (fairseq's flag); a line without a
  // count, a duplicate word without that flag, or a missing file throws std::runtime_error naming
  // the file and line.
  static Dictionary load(const std::string& path, int padding_factor = 1);

  int64_t size() const { return static_cast<int64_t>(words_.size()); }
  int64_t index(const std::string& word) const;  // kUnk when absent
  const std::string& word(int64_t id) const;
  // Whitespace tokenization of one line (WikiText's tokens are space-separated), without </s>.
  std::vector<int64_t> encode_line(const std::string& line) const;
  // A file as fairseq's language_modeling task reads it: every line's tokens followed by </s>.
  std::vector<int64_t> encode_file(const std::string& path) const;
  std::string decode(const std::vector<int64_t>& ids, bool skip_specials = true) const;

 private:
  std::vector<std::string> words_;
  std::unordered_map<std::string, int64_t> index_;
  void add(const std::string& w);
};

}  // namespace decayfw::engine
