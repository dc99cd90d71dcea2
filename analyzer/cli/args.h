// A small command-line parser for the decayfw tool: "--name value", "--name=value" and flags, with
// per-command help text and errors that name the option.
#pragma once

#include <map>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

namespace decayfw::cli {

struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct Option {
  std::string name, metavar, help, default_value;
  bool flag = false;
};

class Args {
 public:
  Args(std::string command, std::string summary, std::vector<Option> options, std::vector<std::string> positional)
      : command_(std::move(command)), summary_(std::move(summary)), options_(std::move(options)),
        positional_names_(std::move(positional)) {}

  void parse(const std::vector<std::string>& argv) {
    for (size_t i = 0; i < argv.size(); ++i) {
      const std::string& a = argv[i];
      if (a == "-h" || a == "--help") {
        help_ = true;
        return;
      }
      if (a.rfind("--", 0) == 0) {
        std::string name = a.substr(2), value;
        const size_t eq = name.find('=');
        bool inline_value = eq != std::string::npos;
        if (inline_value) {
          value = name.substr(eq + 1);
          name = name.substr(0, eq);
        }
        const Option* o = find(name);
        if (o == nullptr) throw UsageError("decayfw " + command_ + ": unknown option --" + name + " (see --help)");
        if (o->flag) {
          if (inline_value) throw UsageError("decayfw " + command_ + ": --" + name + " takes no value");
          values_[name] = "1";
          continue;
        }
        if (!inline_value) {
          if (i + 1 >= argv.size()) throw UsageError("decayfw " + command_ + ": --" + name + " needs a value (" + o->metavar + ")");
          value = argv[++i];
        }
        values_[name] = value;
      } else {
        positional_.push_back(a);
      }
    }
    if (positional_.size() != positional_names_.size()) {
      std::string want;
      for (const auto& p : positional_names_) want += " " + p;
      throw UsageError("decayfw " + command_ + ": expected" + (want.empty() ? " no arguments" : want) +
                       ", got " + std::to_string(positional_.size()) + " (see --help)");
    }
  }

  bool help() const { return help_; }
  std::string usage() const {
    std::string s = "usage: decayfw " + command_;
    for (const auto& p : positional_names_) s += " " + p;
    s += " [options]\n\n" + summary_ + "\n\noptions:\n";
    for (const auto& o : options_) {
      std::string left = "  --" + o.name + (o.flag ? "" : " " + o.metavar);
      if (left.size() < 28) left.resize(28, ' ');
      s += left + " " + o.help + (o.default_value.empty() || o.flag ? "" : " (default: " + o.default_value + ")") + "\n";
    }
    return s + "  -h, --help                   this text\n";
  }
  const std::string& positional(size_t i) const { return positional_.at(i); }
  bool flag(const std::string& name) const { return values_.count(name) > 0; }
  bool given(const std::string& name) const { return values_.count(name) > 0; }
  std::string str(const std::string& name) const {
    auto it = values_.find(name);
    if (it != values_.end()) return it->second;
    const Option* o = find(name);
    return o ? o->default_value : "";
  }
  int64_t integer(const std::string& name) const {
    const std::string v = str(name);
    try {
      size_t used = 0;
      const long long x = std::stoll(v, &used);
      if (used != v.size()) throw std::invalid_argument("");
      return x;
    } catch (const std::exception&) {
      throw UsageError("decayfw " + command_ + ": --" + name + " must be an integer, got '" + v + "'");
    }
  }
  double real(const std::string& name) const {
    const std::string v = str(name);
    try {
      size_t used = 0;
      const double x = std::stod(v, &used);
      if (used != v.size()) throw std::invalid_argument("");
      return x;
    } catch (const std::exception&) {
      throw UsageError("decayfw " + command_ + ": --" + name + " must be a number, got '" + v + "'");
    }
  }
  std::vector<int64_t> int_list(const std::string& name) const {
    std::vector<int64_t> out;
    std::string cur;
    for (char c : str(name) + ",") {
      if (c == ',') {
        if (!cur.empty()) {
          try {
            out.push_back(std::stoll(cur));
          } catch (const std::exception&) {
            throw UsageError("decayfw " + command_ + ": --" + name + " must be a comma-separated list of integers");
          }
        }
        cur.clear();
      } else {
        cur += c;
      }
    }
    return out;
  }

 private:
  const Option* find(const std::string& name) const {
    for (const auto& o : options_) {
      if (o.name == name) return &o;
    }
    return nullptr;
  }
  std::string command_, summary_;
  std::vector<Option> options_;
  std::vector<std::string> positional_names_, positional_;
  std::map<std::string, std::string> values_;
  bool help_ = false;
};

}  // namespace decayfw::cli
