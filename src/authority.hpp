// Engine internals: the host[:port] part of ws:// URLs and proxy URLs, parsed and
// written one way for both.
#pragma once

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace wscengine::detail {

inline std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

/// "host" or "[v6]" with ":port": the form of a Host header or a CONNECT target.
// Built by appending: GCC 12 reports a false -Wrestrict for "[" + std::string(...).
inline std::string host_port(std::string_view host, std::uint16_t port) {
  const bool v6 = host.find(':') != std::string_view::npos;
  std::string out;
  out.reserve(host.size() + 8);
  if (v6) out += '[';
  out += host;
  if (v6) out += ']';
  out += ':';
  out += std::to_string(port);
  return out;
}

/// The parts of "host", "host:port", "[v6]" or "[v6]:port". A name is lower-cased;
/// an IPv6 literal loses its brackets. `port` is set (maybe empty) when a ':' was there.
struct Authority {
  std::string host;
  std::optional<std::string_view> port;
};

/// Splits `text` into `out`; returns null, or why it cannot.
inline const char* split_authority(std::string_view text, Authority& out) {
  if (!text.empty() && text.front() == '[') {
    auto close = text.find(']');
    if (close == std::string_view::npos) return "unterminated IPv6 literal";
    out.host = std::string(text.substr(1, close - 1));
    std::string_view after = text.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return "junk after IPv6 literal";
      out.port = after.substr(1);
    }
    return nullptr;
  }
  if (auto colon = text.rfind(':'); colon != std::string_view::npos) {
    out.port = text.substr(colon + 1);
    text = text.substr(0, colon);
  }
  out.host = lower(text);
  return nullptr;
}

/// A port number 1..65535 written in decimal digits only, or nullopt.
inline std::optional<std::uint16_t> parse_port(std::string_view text) {
  unsigned value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size() || value == 0 || value > 65535)
    return std::nullopt;
  return static_cast<std::uint16_t>(value);
}

}  // namespace wscengine::detail
