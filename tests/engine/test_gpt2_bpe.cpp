// GPT-2 byte-level BPE against fairseq's own encoder (gpt2_bpe_utils.Encoder) on a BPE learned in
// the fixtures, and the round trip through a fairseq dictionary whose words are the ids.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "engine_fixtures.h"
#include "text/gpt2_bpe.h"

using namespace decayfw::engine;
using decayfw::testing::fixture;

namespace {

std::string unhex(const std::string& h) {
  std::string out;
  for (size_t i = 0; i + 1 < h.size(); i += 2) out += static_cast<char>(std::stoi(h.substr(i, 2), nullptr, 16));
  return out;
}

TEST(Gpt2Bpe, EncodesLikeFairseqAndRoundTrips) {
  const Gpt2Bpe bpe = Gpt2Bpe::load(fixture("bpe_encoder.json"), fixture("bpe_vocab.bpe"));
  std::ifstream in(fixture("bpe_expected.txt"));
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    const size_t tab = line.find('\t');
    const std::string text = unhex(line.substr(0, tab));
    std::vector<int64_t> want;
    std::istringstream ids(line.substr(tab + 1));
    for (int64_t id; ids >> id;) want.push_back(id);
    SCOPED_TRACE(text);
    const auto got = bpe.encode(text);
    EXPECT_EQ(got, want);
    EXPECT_EQ(bpe.decode(got), text);
    ++n;
  }
  EXPECT_EQ(n, 5);
}

TEST(Gpt2Bpe, ThroughAFairseqDictionaryOfIds) {
  const Gpt2Bpe bpe = Gpt2Bpe::load(fixture("bpe_encoder.json"), fixture("bpe_vocab.bpe"));
  const std::string text = "the city the history";
  const auto ids = bpe.encode(text);
  const std::string dict_path = (std::filesystem::temp_directory_path() / "decayfw_bpe_dict.txt").string();
  {
    std::ofstream d(dict_path);
    for (int64_t id : ids) d << id << " 1 #fairseq:overwrite\n";
  }
  const Dictionary dict = Dictionary::load(dict_path);
  const auto dict_ids = bpe.encode_to_dictionary(text, dict);
  for (int64_t d : dict_ids) EXPECT_GE(d, 4);
  EXPECT_EQ(bpe.decode_from_dictionary(dict_ids, dict), text);
}

TEST(Gpt2Bpe, BadFilesAreNamed) {
  EXPECT_THROW(Gpt2Bpe::load("/nonexistent/encoder.json", fixture("bpe_vocab.bpe")), std::runtime_error);
  const std::string bad = (std::filesystem::temp_directory_path() / "decayfw_bad_encoder.json").string();
  std::ofstream(bad) << "[1, 2, 3]";
  try {
    Gpt2Bpe::load(bad, fixture("bpe_vocab.bpe"));
    ADD_FAILURE();
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find(bad), std::string::npos) << e.what();
  }
}

}  // namespace
