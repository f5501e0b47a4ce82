#include "args.hpp"

#include <cerrno>
#include <cmath>
#include <cstdlib>

namespace wscengine::cli {

std::optional<Args> Args::parse(int argc, char** argv, int first, const FlagSpec& spec, std::string& error) {
  Args args;
  for (int i = first; i < argc; ++i) {
    std::string arg = argv[i];
    if (auto alias = spec.aliases.find(arg); alias != spec.aliases.end()) arg = alias->second;
    if (arg.size() < 3 || arg.rfind("--", 0) != 0) {
      if (arg.size() > 1 && arg[0] == '-') {
        error = "unknown option " + arg;
        return std::nullopt;
      }
      args.positional_.push_back(arg);
      continue;
    }
    std::string name = arg, value;
    bool inline_value = false;
    if (auto eq = arg.find('='); eq != std::string::npos) {
      name = arg.substr(0, eq);
      value = arg.substr(eq + 1);
      inline_value = true;
    }
    if (spec.switches.count(name)) {
      if (inline_value) {
        error = name + " takes no value";
        return std::nullopt;
      }
      args.switches_.insert(name);
    } else if (spec.with_value.count(name)) {
      if (!inline_value) {
        if (i + 1 >= argc) {
          error = name + " needs a value";
          return std::nullopt;
        }
        value = argv[++i];
      }
      args.values_[name].push_back(value);
    } else {
      error = "unknown option " + name;
      return std::nullopt;
    }
  }
  return args;
}

std::optional<std::string> Args::value(const std::string& flag) const {
  auto it = values_.find(flag);
  if (it == values_.end() || it->second.empty()) return std::nullopt;
  return it->second.back();
}

std::vector<std::string> Args::values(const std::string& flag) const {
  auto it = values_.find(flag);
  return it == values_.end() ? std::vector<std::string>{} : it->second;
}

std::optional<double> Args::number(const std::string& flag, double fallback, double min, double max,
                                   std::string& error) const {
  auto text = value(flag);
  if (!text) return fallback;
  errno = 0;
  char* end = nullptr;
  double v = std::strtod(text->c_str(), &end);
  if (text->empty() || *end != '\0' || errno != 0 || !std::isfinite(v) || v < min || v > max) {
    error = flag + " needs a number from " + std::to_string(static_cast<long long>(min)) + " to " +
            std::to_string(static_cast<long long>(max)) + " (got '" + *text + "')";
    return std::nullopt;
  }
  return v;
}

}  // namespace wscengine::cli
