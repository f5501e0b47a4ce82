// wscengine — HTTP CONNECT proxies: where they come from and which one a URL uses.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include <wscengine/error.hpp>
#include <wscengine/url.hpp>

namespace wscengine {

/// An HTTP proxy that a connection tunnels through with CONNECT (RFC 9110 §9.3.6).
/// The tunnel carries the WebSocket upgrade for ws:// and TLS, end to end with the
/// server, for wss://; the proxy sees only the host and port.
/// Thread safety: a plain value.
struct HttpProxy {
  /// How the proxy tunnels: HTTP CONNECT (`http://`), or SOCKS5 (RFC 1928) with the
  /// server's name resolved by the client (`socks5://`) or by the proxy (`socks5h://`).
  enum class Protocol : std::uint8_t { http, socks5, socks5h };

  std::string host{};      ///< name or address, no brackets
  std::uint16_t port = 0;  ///< explicit, or 80 (http) / 1080 (SOCKS5)
  std::string username{};  ///< Basic proxy authentication (RFC 7617), or SOCKS5 user name and password (RFC 1929)
  std::string password{};  ///< with `username`
  Protocol protocol = Protocol::http;  ///< see Protocol

  /// "http://host:port" (or socks5://, socks5h://), without credentials: safe to log.
  std::string to_string() const;
  /// The Proxy-Authorization value ("Basic dXNlcjpwdw=="), or empty without a username.
  std::string authorization() const;
};

/// Parses a proxy URL: "http://[user[:password]@]host[:port][/]", or the same with
/// "socks5://" or "socks5h://" (port 1080 by default; user and password at most 255
/// bytes each, RFC 1929); "host:port" without a scheme means http://. User and
/// password may be percent-encoded. Errors are `errc::invalid_option` with the
/// reason; they never repeat the password. "https://" proxies (TLS to the proxy)
/// are refused by name. Thread safety: pure.
Result<HttpProxy> parse_proxy_url(std::string_view text);

/// How a connection finds its proxy. A plain value.
struct ProxyOptions {
  /// A proxy for every connection ("http://user:pw@proxy:3128"). Empty: see
  /// `from_environment`.
  std::string url{};
  /// With `url` empty, take the proxy from the environment as curl does:
  /// `https_proxy` / `HTTPS_PROXY` for wss://, `http_proxy` / `HTTP_PROXY` for
  /// ws://, then `all_proxy` / `ALL_PROXY` for both (lower-case first), unless
  /// `no_proxy` / `NO_PROXY` names the host (see proxy_bypassed). False: direct.
  bool from_environment = true;
};

/// Reads one environment variable; returns nullptr when it is not set.
using EnvironmentLookup = std::function<const char*(const char* name)>;

/// The proxy for `url` under `options`, or nullopt for a direct connection
/// (always direct for a Unix socket URL). Reads the environment through `lookup`
/// (default: std::getenv). A variable that does not parse is an
/// `errc::invalid_option` naming the variable. Thread safety: pure, apart from
/// reading the environment.
Result<std::optional<HttpProxy>> choose_proxy(const Url& url, const ProxyOptions& options,
                                              const EnvironmentLookup& lookup = {});

/// True when a NO_PROXY list says to reach `url` directly. The list is separated
/// by commas or spaces; each entry is "*" (every host), a host name that matches
/// itself and its subdomains (a leading "." or "*." is ignored), an IPv4 or IPv6
/// address (brackets optional), or an address block in CIDR notation
/// ("10.0.0.0/8", "fd00::/8"); a ":port" suffix limits an entry to that port.
/// Names are not resolved: an address entry matches URLs that use the address.
/// Thread safety: pure.
bool proxy_bypassed(const Url& url, std::string_view no_proxy);

}  // namespace wscengine
