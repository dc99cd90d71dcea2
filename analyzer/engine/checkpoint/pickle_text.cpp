#include "pickle_text.h"

#include <cerrno>
#include <cstdlib>

namespace decayfw::engine::pickle {
namespace {

void append_utf8(uint32_t cp, std::string& out) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xc0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xe0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  } else {
    out += static_cast<char>(0xf0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3f));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
    out += static_cast<char>(0x80 | (cp & 0x3f));
  }
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool parse_hex(const std::string& s, size_t pos, size_t n, uint32_t& out) {
  if (pos + n > s.size()) return false;
  out = 0;
  for (size_t i = 0; i < n; ++i) {
    const int d = hex_digit(s[pos + i]);
    if (d < 0) return false;
    out = out * 16 + static_cast<uint32_t>(d);
  }
  return true;
}

}  // namespace

bool decode_raw_unicode_escape(const std::string& in, std::string& utf8) {
  utf8.clear();
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] == '\\' && i + 1 < in.size() && (in[i + 1] == 'u' || in[i + 1] == 'U')) {
      const size_t n = in[i + 1] == 'u' ? 4 : 8;
      uint32_t cp = 0;
      if (!parse_hex(in, i + 2, n, cp) || cp > 0x10ffff) return false;
      append_utf8(cp, utf8);
      i += 1 + n;
    } else {
      append_utf8(static_cast<unsigned char>(in[i]), utf8);
    }
  }
  return true;
}

bool decode_quoted_string(const std::string& in, std::string& out) {
  out.clear();
  if (in.size() < 2 || (in.front() != '\'' && in.front() != '"') || in.back() != in.front()) return false;
  for (size_t i = 1; i + 1 < in.size(); ++i) {
    if (in[i] != '\\') {
      out += in[i];
      continue;
    }
    if (++i + 1 > in.size() - 1) return false;  // a backslash right before the closing quote
    const char c = in[i];
    switch (c) {
      case 'n': out += '\n'; break;
      case 't': out += '\t'; break;
      case 'r': out += '\r'; break;
      case 'a': out += '\a'; break;
      case 'b': out += '\b'; break;
      case 'f': out += '\f'; break;
      case 'v': out += '\v'; break;
      case '\\': case '\'': case '"': out += c; break;
      case 'x': {
        uint32_t v = 0;
        if (i + 2 >= in.size() - 1 || !parse_hex(in, i + 1, 2, v)) return false;
        out += static_cast<char>(v);
        i += 2;
        break;
      }
      default:
        if (c >= '0' && c <= '7') {  // up to three octal digits
          uint32_t v = 0;
          size_t k = 0;
          for (; k < 3 && i + k + 1 < in.size() && in[i + k] >= '0' && in[i + k] <= '7'; ++k) v = v * 8 + (in[i + k] - '0');
          out += static_cast<char>(v & 0xff);
          i += k - 1;
        } else {  // unknown escapes are kept as written, as Python does
          out += '\\';
          out += c;
        }
    }
  }
  return true;
}

bool parse_decimal_int(std::string s, int64_t& out) {
  if (!s.empty() && s.back() == 'L') s.pop_back();
  if (s.empty() || s.size() > 24) return false;
  errno = 0;
  char* end = nullptr;
  const long long v = std::strtoll(s.c_str(), &end, 10);
  if (errno != 0 || end != s.c_str() + s.size()) return false;
  out = v;
  return true;
}

bool parse_memo_key(const std::string& s, uint64_t& out) {
  if (s.empty() || s.size() > 20 || s[0] < '0' || s[0] > '9') return false;
  errno = 0;
  char* end = nullptr;
  const unsigned long long v = std::strtoull(s.c_str(), &end, 10);
  if (errno != 0 || end != s.c_str() + s.size()) return false;
  out = v;
  return true;
}

bool parse_float_text(const std::string& s, double& out) {
  if (s.empty() || s.size() > 64) return false;
  char* end = nullptr;
  out = std::strtod(s.c_str(), &end);  // the C locale: '.' is the decimal point
  return end == s.c_str() + s.size();
}

}  // namespace decayfw::engine::pickle
