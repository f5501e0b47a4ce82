// wscengine — WebSocket URLs.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include <wscengine/error.hpp>

namespace wscengine {

/// A parsed ws:// or wss:// URL. `host` holds an IPv6 literal without brackets.
/// Thread safety: a plain value.
struct Url {
  bool secure = false;     ///< wss://
  std::string host;        ///< host name or address, no brackets
  std::uint16_t port = 0;  ///< explicit or the scheme's default (80 / 443)
  std::string target;      ///< path and query, at least "/"

  /// The Host header value: host, bracketed if IPv6, with the port when not default.
  std::string host_header() const;
  /// The URL again, without user info; safe to log (no credentials).
  std::string to_string() const;
};

/// Parses a ws:// or wss:// URL. Errors are `errc::invalid_url` with the reason,
/// e.g. "unsupported scheme 'http' (use ws:// or wss://)". Thread safety: pure.
Result<Url> parse_url(std::string_view text);

}  // namespace wscengine
