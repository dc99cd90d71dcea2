#include "text/gpt2_bpe.h"

#include <fstream>
#include <limits>
#include <sstream>
#include <stdexcept>

namespace decayfw::engine {
namespace {

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

// Decodes UTF-8 into (code point, byte length); an invalid byte decodes as itself (length 1).
std::vector<std::pair<uint32_t, size_t>> code_points(const std::string& s) {
  std::vector<std::pair<uint32_t, size_t>> out;
  for (size_t i = 0; i < s.size();) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    uint32_t cp = c;
    if (n == 0 || i + n > s.size()) {
      n = 1;
    } else if (n > 1) {
      cp = c & (0x7F >> n);
      for (size_t k = 1; k < n; ++k) {
        const unsigned char cc = static_cast<unsigned char>(s[i + k]);
        if ((cc & 0xC0) != 0x80) {
          n = 1;
          cp = c;
          break;
        }
        cp = (cp << 6) | (cc & 0x3F);
      }
    }
    out.emplace_back(cp, n);
    i += n;
  }
  return out;
}

bool is_space(uint32_t c) {
  return c == ' ' || (c >= '\t' && c <= '\r') || c == 0x85 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) ||
         c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000 || (c >= 0x1C && c <= 0x1F);
}
bool is_digit(uint32_t c) { return c >= '0' && c <= '9'; }
bool is_letter(uint32_t c) {
  if (c < 0x80) return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
  if (is_space(c)) return false;
  if (c <= 0xBF) return c == 0xAA || c == 0xB5 || c == 0xBA;  // Latin-1 symbols except ª µ º
  if (c == 0xD7 || c == 0xF7) return false;                   // × ÷
  if ((c >= 0x2000 && c <= 0x2BFF) || (c >= 0x3000 && c <= 0x303F) || (c >= 0xFE30 && c <= 0xFE4F) ||
      (c >= 0xFF00 && c <= 0xFF0F) || (c >= 0x1F000 && c <= 0x1FAFF)) {
    return false;  // punctuation, symbols, arrows, CJK punctuation, emoji
  }
  return true;
}

// Minimal JSON object reader for encoder.json: {"token": id, ...}.
std::unordered_map<std::string, int64_t> read_encoder_json(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("gpt2 bpe: cannot open '" + path + "'");
  const std::string s((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::unordered_map<std::string, int64_t> out;
  size_t i = 0;
  auto fail = [&](const std::string& what) -> void {
    throw std::runtime_error("gpt2 bpe: '" + path + "' is not a JSON object of token → id (" + what + " at byte " +
                             std::to_string(i) + ")");
  };
  auto skip = [&] {
    while (i < s.size() && (s[i] == ' ' || s[i] == '\n' || s[i] == '\r' || s[i] == '\t')) ++i;
  };
  auto hex4 = [&](size_t at) -> uint32_t {
    if (at + 4 > s.size()) fail("truncated \\u escape");
    return static_cast<uint32_t>(std::stoul(s.substr(at, 4), nullptr, 16));
  };
  skip();
  if (i >= s.size() || s[i] != '{') fail("expected '{'");
  ++i;
  while (true) {
    skip();
    if (i < s.size() && s[i] == '}') break;
    if (i >= s.size() || s[i] != '"') fail("expected a string key");
    ++i;
    std::string key;
    while (i < s.size() && s[i] != '"') {
      if (s[i] == '\\') {
        if (++i >= s.size()) fail("truncated escape");
        const char e = s[i++];
        switch (e) {
          case 'n': key += '\n'; break;
          case 't': key += '\t'; break;
          case 'r': key += '\r'; break;
          case 'b': key += '\b'; break;
          case 'f': key += '\f'; break;
          case 'u': {
            uint32_t cp = hex4(i);
            i += 4;
            if (cp >= 0xD800 && cp <= 0xDBFF && i + 6 <= s.size() && s[i] == '\\' && s[i + 1] == 'u') {
              const uint32_t lo = hex4(i + 2);
              cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
              i += 6;
            }
            append_utf8(key, cp);
            break;
          }
          default: key += e;
        }
      } else {
        key += s[i++];
      }
    }
    if (i >= s.size()) fail("unterminated string");
    ++i;
    skip();
    if (i >= s.size() || s[i] != ':') fail("expected ':'");
    ++i;
    skip();
    size_t used = 0;
    int64_t id = 0;
    try {
      id = std::stoll(s.substr(i, 24), &used);
    } catch (const std::exception&) {
      fail("expected an integer id");
    }
    i += used;
    out[key] = id;
    skip();
    if (i < s.size() && s[i] == ',') {
      ++i;
      continue;
    }
    skip();
    if (i < s.size() && s[i] == '}') break;
    fail("expected ',' or '}'");
  }
  return out;
}

}  // namespace

Gpt2Bpe Gpt2Bpe::load(const std::string& encoder_json, const std::string& vocab_bpe) {
  Gpt2Bpe b;
  b.encoder_ = read_encoder_json(encoder_json);
  for (const auto& kv : b.encoder_) b.decoder_[kv.second] = kv.first;
  std::ifstream in(vocab_bpe);
  if (!in) throw std::runtime_error("gpt2 bpe: cannot open '" + vocab_bpe + "'");
  std::string line;
  int64_t rank = 0, lineno = 0;
  while (std::getline(in, line)) {
    ++lineno;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty() || line.rfind("#version", 0) == 0) continue;
    const size_t sp = line.find(' ');
    if (sp == std::string::npos || sp == 0 || sp + 1 >= line.size()) {
      throw std::runtime_error("gpt2 bpe: '" + vocab_bpe + "' line " + std::to_string(lineno) + " is not a merge 'a b'");
    }
    b.ranks_.emplace(std::make_pair(line.substr(0, sp), line.substr(sp + 1)), rank++);
  }
  // GPT-2's reversible byte → printable code point table
  std::vector<int> bs;
  for (int c = '!'; c <= '~'; ++c) bs.push_back(c);
  for (int c = 0xA1; c <= 0xAC; ++c) bs.push_back(c);
  for (int c = 0xAE; c <= 0xFF; ++c) bs.push_back(c);
  std::vector<uint32_t> cs(256, 0);
  std::vector<bool> direct(256, false);
  for (int c : bs) {
    direct[c] = true;
    cs[c] = static_cast<uint32_t>(c);
  }
  uint32_t n = 0;
  for (int c = 0; c < 256; ++c) {
    if (!direct[c]) cs[c] = 256 + n++;
  }
  b.byte_to_symbol_.resize(256);
  for (int c = 0; c < 256; ++c) {
    append_utf8(b.byte_to_symbol_[c], cs[c]);
    b.symbol_to_byte_[b.byte_to_symbol_[c]] = static_cast<uint8_t>(c);
  }
  return b;
}

std::vector<std::string> Gpt2Bpe::pretokenize(const std::string& text) {
  const auto cps = code_points(text);
  std::vector<size_t> offset(cps.size() + 1, 0);
  for (size_t i = 0; i < cps.size(); ++i) offset[i + 1] = offset[i] + cps[i].second;
  std::vector<std::string> out;
  const size_t N = cps.size();
  auto cp = [&](size_t i) { return cps[i].first; };
  size_t i = 0;
  while (i < N) {
    size_t j = i;
    if (cp(i) == '\'' && i + 1 < N) {  // contractions
      const uint32_t a = cp(i + 1), b = i + 2 < N ? cp(i + 2) : 0;
      if (a == 's' || a == 't' || a == 'm' || a == 'd') j = i + 2;
      else if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) j = i + 3;
    }
    if (j == i) {
      const size_t k = (cp(i) == ' ' && i + 1 < N) ? i + 1 : i;  // the optional leading space
      if (is_letter(cp(k))) {
        j = k;
        while (j < N && is_letter(cp(j))) ++j;
      } else if (is_digit(cp(k))) {
        j = k;
        while (j < N && is_digit(cp(j))) ++j;
      } else if (!is_space(cp(k))) {
        j = k;
        while (j < N && !is_space(cp(j)) && !is_letter(cp(j)) && !is_digit(cp(j))) ++j;
      } else {  // \s+(?!\S) then \s+
        j = i;
        while (j < N && is_space(cp(j))) ++j;
        if (j < N && j - i > 1) --j;  // leave the last space to prefix the next word
      }
    }
    out.push_back(text.substr(offset[i], offset[j] - offset[i]));
    i = j;
  }
  return out;
}

std::vector<std::string> Gpt2Bpe::bpe(const std::string& token) const {
  auto hit = cache_.find(token);
  if (hit != cache_.end()) return hit->second;
  std::vector<std::string> word;
  for (const auto& [c, n] : code_points(token)) {
    std::string s;
    append_utf8(s, c);
    word.push_back(s);
  }
  while (word.size() > 1) {
    int64_t best = std::numeric_limits<int64_t>::max();
    std::pair<std::string, std::string> pair;
    for (size_t k = 0; k + 1 < word.size(); ++k) {
      auto it = ranks_.find({word[k], word[k + 1]});
      if (it != ranks_.end() && it->second < best) {
        best = it->second;
        pair = it->first;
      }
    }
    if (best == std::numeric_limits<int64_t>::max()) break;
    std::vector<std::string> merged;
    for (size_t k = 0; k < word.size();) {
      if (k + 1 < word.size() && word[k] == pair.first && word[k + 1] == pair.second) {
        merged.push_back(word[k] + word[k + 1]);
        k += 2;
      } else {
        merged.push_back(word[k++]);
      }
    }
    word = std::move(merged);
  }
  cache_[token] = word;
  return word;
}

std::vector<int64_t> Gpt2Bpe::encode(const std::string& text) const {
  std::vector<int64_t> ids;
  for (const auto& piece : pretokenize(text)) {
    std::string symbols;
    for (unsigned char c : piece) symbols += byte_to_symbol_[c];
    for (const auto& t : bpe(symbols)) {
      auto it = encoder_.find(t);
      if (it == encoder_.end()) throw std::runtime_error("gpt2 bpe: symbol '" + t + "' is not in encoder.json");
      ids.push_back(it->second);
    }
  }
  return ids;
}

std::string Gpt2Bpe::decode(const std::vector<int64_t>& ids) const {
  std::string symbols;
  for (int64_t id : ids) {
    auto it = decoder_.find(id);
    if (it == decoder_.end()) throw std::runtime_error("gpt2 bpe: id " + std::to_string(id) + " is not in encoder.json");
    symbols += it->second;
  }
  std::string out;
  for (const auto& [c, n] : code_points(symbols)) {
    std::string s;
    append_utf8(s, c);
    auto it = symbol_to_byte_.find(s);
    out += it != symbol_to_byte_.end() ? static_cast<char>(it->second) : '?';
  }
  return out;
}

std::vector<int64_t> Gpt2Bpe::encode_to_dictionary(const std::string& text, const Dictionary& dict) const {
  std::vector<int64_t> out;
  for (int64_t id : encode(text)) out.push_back(dict.index(std::to_string(id)));
  return out;
}

std::string Gpt2Bpe::decode_from_dictionary(const std::vector<int64_t>& dict_ids, const Dictionary& dict) const {
  std::vector<int64_t> ids;
  for (int64_t d : dict_ids) {
    if (d == Dictionary::kBos || d == Dictionary::kPad || d == Dictionary::kEos || d == Dictionary::kUnk) continue;
    const std::string& w = dict.word(d);
    if (w.empty() || w.find_first_not_of("0123456789") != std::string::npos) continue;  // madeupwords
    ids.push_back(std::stoll(w));
  }
  return decode(ids);
}

}  // namespace decayfw::engine
