// wscengine — WebSocket URLs.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include <wscengine/error.hpp>

namespace wscengine {

/// A parsed ws:// or wss:// URL. `host` holds an IPv6 literal without brackets.
/// A WebSocket over a Unix domain socket is written `ws+unix:///run/app.sock:/target`
/// (or `wss+unix://`), the form of Node's `ws`: the socket path ends at the first
/// ':', the target follows; the Host header is then "localhost".
/// Thread safety: a plain value.
struct Url {
  bool secure = false;        ///< wss:// or wss+unix://
  std::string host{};         ///< host name or address, no brackets ("localhost" for a Unix socket)
  std::uint16_t port = 0;     ///< explicit or the scheme's default (80 / 443)
  std::string target{};       ///< path and query, at least "/"
  std::string unix_socket{};  ///< the Unix domain socket's path for ws+unix://, else empty

  /// The Host header value: host, bracketed if IPv6, with the port when not default.
  std::string host_header() const;
  /// "host:port", the host bracketed if IPv6, the port always: a CONNECT target.
  std::string authority() const;
  /// The URL again, without user info; safe to log (no credentials).
  std::string to_string() const;
};

/// Parses a ws://, wss://, ws+unix:// or wss+unix:// URL. Errors are `errc::invalid_url` with the reason,
/// e.g. "unsupported scheme 'http' (use ws:// or wss://)". Thread safety: pure.
Result<Url> parse_url(std::string_view text);

}  // namespace wscengine
