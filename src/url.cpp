#include <wscengine/url.hpp>

#include "authority.hpp"

#include <cctype>

namespace wscengine {
namespace {

Error bad(std::string_view text, std::string why) {
  std::string message;  // appended: "'" + std::string(...) trips GCC 12's -Wrestrict
  message.reserve(text.size() + why.size() + 4);
  message += '\'';
  message += text;
  message += "': ";
  message += why;
  return Error(errc::invalid_url, std::move(message));
}

Error set_target(std::string_view text, std::string_view tail, Url& url) {
  if (auto fragment = tail.find('#'); fragment != std::string_view::npos) {
    return bad(text, "a WebSocket URL must not have a fragment (RFC 6455 §3)");
  }
  url.target = tail.empty() ? "/" : std::string(tail);
  if (url.target.front() == '?') url.target.insert(url.target.begin(), '/');
  for (unsigned char c : url.target) {
    if (c <= 0x20 || c == 0x7f) return bad(text, "invalid character in path (percent-encode it)");
  }
  return {};
}

// ws+unix:///run/app.sock:/target — Node ws's form; the path ends at the first ':'.
Result<Url> parse_unix_socket_url(std::string_view text, std::string_view rest, Url url) {
  auto colon = rest.find(':');
  std::string_view path = rest.substr(0, colon);
  std::string_view tail = colon == std::string_view::npos ? "" : rest.substr(colon + 1);
  if (path.empty()) return bad(text, "missing Unix socket path (ws+unix:///path/to.sock:/target)");
  // sockaddr_un::sun_path holds 108 bytes with the terminating NUL.
  if (path.size() > 107) return bad(text, "Unix socket path longer than 107 bytes");
  if (path.find('\0') != std::string_view::npos) return bad(text, "NUL in Unix socket path");
  url.unix_socket = std::string(path);
  url.host = "localhost";
  url.port = url.secure ? 443 : 80;
  if (Error e = set_target(text, tail, url)) return e;
  return url;
}

}  // namespace

std::string Url::host_header() const {
  if (port != (secure ? 443 : 80)) return authority();
  return host.find(':') != std::string::npos ? "[" + host + "]" : host;
}

std::string Url::authority() const { return detail::host_port(host, port); }

std::string Url::to_string() const {
  if (!unix_socket.empty()) return std::string(secure ? "wss+unix://" : "ws+unix://") + unix_socket + ":" + target;
  return std::string(secure ? "wss://" : "ws://") + authority() + target;
}

Result<Url> parse_url(std::string_view text) {
  Url url;
  auto scheme_end = text.find("://");
  if (scheme_end == std::string_view::npos) return bad(text, "missing scheme (use ws:// or wss://)");
  std::string scheme = detail::lower(text.substr(0, scheme_end));
  if (scheme == "ws") {
    url.secure = false;
  } else if (scheme == "wss") {
    url.secure = true;
  } else if (scheme == "ws+unix" || scheme == "wss+unix") {
    url.secure = scheme == "wss+unix";
    return parse_unix_socket_url(text, text.substr(scheme_end + 3), std::move(url));
  } else {
    return bad(text, "unsupported scheme '" + scheme + "' (use ws:// or wss://)");
  }
  std::string_view rest = text.substr(scheme_end + 3);
  auto authority_end = rest.find_first_of("/?#");
  std::string_view authority = rest.substr(0, authority_end);
  std::string_view tail = authority_end == std::string_view::npos ? "" : rest.substr(authority_end);
  if (auto at = authority.rfind('@'); at != std::string_view::npos) {
    return bad(text, "user info in the URL is not supported; send credentials in a header");
  }
  detail::Authority parts;
  if (const char* why = detail::split_authority(authority, parts)) return bad(text, why);
  url.host = std::move(parts.host);
  if (parts.port && parts.port->empty()) return bad(text, "empty port");
  if (url.host.empty()) return bad(text, "missing host");
  for (unsigned char c : url.host) {
    if (std::isspace(c) || c < 0x21) return bad(text, "invalid character in host");
  }
  url.port = url.secure ? 443 : 80;
  if (parts.port) {
    auto port = detail::parse_port(*parts.port);
    if (!port) return bad(text, "invalid port '" + std::string(*parts.port) + "'");
    url.port = *port;
  }
  if (Error e = set_target(text, tail, url)) return e;
  return url;
}

}  // namespace wscengine
