// Checks of the server's opening-handshake answer that some libraries leave out.
#include <wscengine/adapter.hpp>

#include <set>

#include "authority.hpp"

namespace wscengine {
namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

std::vector<std::string_view> split(std::string_view s, char by) {
  std::vector<std::string_view> out;
  for (;;) {
    auto at = s.find(by);
    out.push_back(trim(s.substr(0, at)));
    if (at == std::string_view::npos) return out;
    s.remove_prefix(at + 1);
  }
}

Error refused(std::string what) { return Error(errc::handshake_failed, std::move(what)); }

}  // namespace

Result<std::string> check_subprotocol_answer(std::optional<std::string_view> chosen,
                                             const std::vector<std::string>& offered) {
  if (!chosen || trim(*chosen).empty()) return std::string();
  std::string name(trim(*chosen));
  if (std::find(offered.begin(), offered.end(), name) == offered.end())
    return refused("server chose subprotocol '" + name + "' that was not offered (RFC 6455 §4.1)");
  return name;
}

Result<bool> check_extensions_answer(std::optional<std::string_view> answer, bool offered_deflate) {
  return check_extensions_answer(answer, offered_deflate, DeflateOptions{});
}

std::string check_deflate_options(const DeflateOptions& o) {
  auto bits = [](const char* name, int value) {
    return value >= 9 && value <= 15 ? std::string()
                                     : std::string("deflate.") + name + " must be in 9..15 (got " +
                                           std::to_string(value) + "; zlib cannot compress with 8)";
  };
  if (auto bad = bits("server_max_window_bits", o.server_max_window_bits); !bad.empty()) return bad;
  if (auto bad = bits("client_max_window_bits", o.client_max_window_bits); !bad.empty()) return bad;
  if (o.level < 0 || o.level > 9) return "deflate.level must be in 0..9 (got " + std::to_string(o.level) + ")";
  if (o.memory_level < 1 || o.memory_level > 9)
    return "deflate.memory_level must be in 1..9 (got " + std::to_string(o.memory_level) + ")";
  return {};
}

Result<bool> check_extensions_answer(std::optional<std::string_view> answer, bool offered_deflate,
                                     const DeflateOptions& offer) {
  if (!answer || trim(*answer).empty()) return false;
  bool deflate = false;
  for (auto extension : split(*answer, ',')) {
    auto parts = split(extension, ';');
    std::string name = detail::lower(parts[0]);
    if (name != "permessage-deflate" || !offered_deflate)
      return refused("server enabled extension '" + std::string(extension) +
                     "', which was not offered (RFC 6455 §9.1, RFC 7692 §5.1)");
    if (deflate) return refused("server enabled permessage-deflate twice (RFC 7692 §5.1)");
    deflate = true;
    std::set<std::string> seen;
    for (std::size_t i = 1; i < parts.size(); ++i) {
      auto eq = parts[i].find('=');
      std::string param = detail::lower(trim(parts[i].substr(0, eq)));
      std::string value = eq == std::string_view::npos ? std::string() : std::string(trim(parts[i].substr(eq + 1)));
      if (value.size() >= 2 && value.front() == '"' && value.back() == '"') value = value.substr(1, value.size() - 2);
      if (!seen.insert(param).second)
        return refused("permessage-deflate parameter '" + param + "' repeated (RFC 7692 §7.1)");
      bool flag = param == "server_no_context_takeover" || param == "client_no_context_takeover";
      bool bits = param == "server_max_window_bits" || param == "client_max_window_bits";
      if (!flag && !bits)
        return refused("permessage-deflate parameter '" + param + "' was not offered (RFC 7692 §7.1)");
      if (flag && eq != std::string_view::npos)
        return refused("permessage-deflate parameter '" + param + "' takes no value (RFC 7692 §7.1)");
      if (bits) {
        bool valid = value.size() == 1 ? value[0] >= '8' && value[0] <= '9'
                                       : value.size() == 2 && value[0] == '1' && value[1] >= '0' && value[1] <= '5';
        if (!valid) return refused("permessage-deflate " + param + "=" + value + " is not in 8..15 (RFC 7692 §7.1.2)");
        // A window is a limit the answer may lower, never raise (RFC 7692 §7.1.2).
        int asked = param == "server_max_window_bits" ? offer.server_max_window_bits : offer.client_max_window_bits;
        if (std::stoi(value) > asked)
          return refused("permessage-deflate " + param + "=" + value + " in the answer, over the " +
                         std::to_string(asked) + " offered (RFC 7692 §7.1.2)");
      }
    }
    // A server accepting server_no_context_takeover must say so (RFC 7692 §7.1.1.1).
    if (offer.server_no_context_takeover && !seen.count("server_no_context_takeover"))
      return refused(
          "permessage-deflate answer without server_no_context_takeover, which was asked for "
          "(RFC 7692 §7.1.1.1)");
  }
  return deflate;
}

}  // namespace wscengine
