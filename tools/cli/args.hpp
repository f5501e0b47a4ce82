// wscengine CLI — a small command-line parser: `--name value`, `--name=value`,
// repeatable flags and switches, with one-line errors that name the flag.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace wscengine::cli {

/// What a command accepts. A plain value.
struct FlagSpec {
  std::set<std::string> with_value;                 ///< e.g. "--header" (may repeat)
  std::set<std::string> switches;                   ///< e.g. "--quiet"
  std::map<std::string, std::string> aliases = {};  ///< e.g. "-H" for "--header"
};

/// Parsed arguments. Thread safety: a plain value.
class Args {
 public:
  /// Parses argv[first..]; on a usage error returns nullopt and sets `error`.
  static std::optional<Args> parse(int argc, char** argv, int first, const FlagSpec& spec, std::string& error);

  bool has(const std::string& flag) const { return values_.count(flag) || switches_.count(flag); }
  /// The last value given for `flag`, if any.
  std::optional<std::string> value(const std::string& flag) const;
  /// Every value given for a repeatable flag, in order.
  std::vector<std::string> values(const std::string& flag) const;
  const std::vector<std::string>& positional() const { return positional_; }

  /// The value as a number in [min, max]; `error` names the flag when it is not.
  std::optional<double> number(const std::string& flag, double fallback, double min, double max,
                               std::string& error) const;

 private:
  std::map<std::string, std::vector<std::string>> values_;
  std::set<std::string> switches_;
  std::vector<std::string> positional_;
};

}  // namespace wscengine::cli
