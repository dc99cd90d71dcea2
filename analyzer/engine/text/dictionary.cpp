#include "dictionary.h"

#include <fstream>
#include <sstream>
#include <stdexcept>

namespace decayfw::engine {

void Dictionary::add(const std::string& w) {
  index_.emplace(w, static_cast<int64_t>(words_.size()));
  words_.push_back(w);
}

Dictionary Dictionary::load(const std::string& path, int padding_factor) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("dictionary: cannot open '" + path + "'");
  Dictionary d;
  for (const char* s : {"<s>", "<pad>", "</s>", "<unk>"}) d.add(s);
  std::string line;
  int64_t lineno = 0;
  while (std::getline(in, line)) {
    ++lineno;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) continue;
    bool overwrite = false;
    const std::string flag = " #fairseq:overwrite";
    if (line.size() > flag.size() && line.compare(line.size() - flag.size(), flag.size(), flag) == 0) {
      overwrite = true;
      line.resize(line.size() - flag.size());
    }
    const size_t sp = line.rfind(' ');
    if (sp == std::string::npos || sp == 0) {
      throw std::runtime_error("dictionary '" + path + "' line " + std::to_string(lineno) +
                               ": expected '<word> <count>', got '" + line + "'");
    }
    const std::string word = line.substr(0, sp), count = line.substr(sp + 1);
    if (count.empty() || count.find_first_not_of("0123456789") != std::string::npos) {
      throw std::runtime_error("dictionary '" + path + "' line " + std::to_string(lineno) + ": count '" + count +
                               "' is not a non-negative integer");
    }
    if (d.index_.count(word) && !overwrite) {
      throw std::runtime_error("dictionary '" + path + "' line " + std::to_string(lineno) + ": duplicate word '" +
                               word + "' (fairseq needs '#fairseq:overwrite' to allow it)");
    }
    if (d.index_.count(word)) {
      d.words_.push_back(word);  // fairseq appends a second entry; lookups keep the first
    } else {
      d.add(word);
    }
  }
  if (padding_factor > 1) {
    int64_t i = 0;
    while (d.size() % padding_factor != 0) {
      char buf[32];
      std::snprintf(buf, sizeof buf, "madeupword%04lld", static_cast<long long>(i++));
      d.add(buf);
    }
  }
  return d;
}

int64_t Dictionary::index(const std::string& word) const {
  auto it = index_.find(word);
  return it == index_.end() ? kUnk : it->second;
}

const std::string& Dictionary::word(int64_t id) const {
  if (id < 0 || id >= size()) throw std::out_of_range("dictionary: id " + std::to_string(id) + " out of range");
  return words_[static_cast<size_t>(id)];
}

std::vector<int64_t> Dictionary::encode_line(const std::string& line) const {
  std::vector<int64_t> ids;
  std::istringstream ss(line);
  std::string w;
  while (ss >> w) ids.push_back(index(w));
  return ids;
}

std::vector<int64_t> Dictionary::encode_file(const std::string& path) const {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot open text file '" + path + "'");
  std::vector<int64_t> ids;
  std::string line;
  while (std::getline(in, line)) {
    auto l = encode_line(line);
    ids.insert(ids.end(), l.begin(), l.end());
    ids.push_back(kEos);
  }
  return ids;
}

std::string Dictionary::decode(const std::vector<int64_t>& ids, bool skip_specials) const {
  std::string out;
  for (int64_t id : ids) {
    if (skip_specials && (id == kBos || id == kPad || id == kEos)) continue;
    if (!out.empty()) out += ' ';
    out += word(id);
  }
  return out;
}

}  // namespace decayfw::engine
