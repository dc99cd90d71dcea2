// Minimal JSON output for the CLI's --json mode (one object per line, so scripts can stream).
#pragma once

#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

namespace decayfw::cli {

inline std::string json_escape(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      case '\r': out += "\\r"; break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out + "\"";
}

inline std::string json_number(double x) {
  if (!std::isfinite(x)) return "null";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.9g", x);
  return buf;
}

class JsonObject {
 public:
  JsonObject& add(const std::string& k, const std::string& v) { return raw(k, json_escape(v)); }
  JsonObject& add(const std::string& k, const char* v) { return raw(k, json_escape(v)); }
  JsonObject& add(const std::string& k, double v) { return raw(k, json_number(v)); }
  JsonObject& add(const std::string& k, int64_t v) { return raw(k, std::to_string(v)); }
  JsonObject& add(const std::string& k, int v) { return raw(k, std::to_string(v)); }
  JsonObject& add(const std::string& k, bool v) { return raw(k, v ? "true" : "false"); }
  template <typename T>
  JsonObject& add_list(const std::string& k, const std::vector<T>& v) {
    std::string s = "[";
    for (size_t i = 0; i < v.size(); ++i) s += (i ? "," : "") + json_number(static_cast<double>(v[i]));
    return raw(k, s + "]");
  }
  JsonObject& raw(const std::string& k, const std::string& v) {
    body_ += (body_.empty() ? "" : ",") + json_escape(k) + ":" + v;
    return *this;
  }
  std::string str() const { return "{" + body_ + "}"; }

 private:
  std::string body_;
};

}  // namespace decayfw::cli
