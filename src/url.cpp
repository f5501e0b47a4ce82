#include <wscengine/url.hpp>

#include <algorithm>
#include <cctype>
#include <charconv>

namespace wscengine {
namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

Error bad(std::string_view text, std::string why) {
  return Error(errc::invalid_url, "'" + std::string(text) + "': " + std::move(why));
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
  std::string h = host.find(':') != std::string::npos ? "[" + host + "]" : host;
  if (port != (secure ? 443 : 80)) h += ":" + std::to_string(port);
  return h;
}

std::string Url::to_string() const {
  if (!unix_socket.empty()) return std::string(secure ? "wss+unix://" : "ws+unix://") + unix_socket + ":" + target;
  return std::string(secure ? "wss://" : "ws://") + (host.find(':') != std::string::npos ? "[" + host + "]" : host) +
         ":" + std::to_string(port) + target;
}

Result<Url> parse_url(std::string_view text) {
  Url url;
  auto scheme_end = text.find("://");
  if (scheme_end == std::string_view::npos) return bad(text, "missing scheme (use ws:// or wss://)");
  std::string scheme = lower(text.substr(0, scheme_end));
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
  std::string_view port_text;
  if (!authority.empty() && authority.front() == '[') {
    auto close = authority.find(']');
    if (close == std::string_view::npos) return bad(text, "unterminated IPv6 literal");
    url.host = std::string(authority.substr(1, close - 1));
    std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return bad(text, "junk after IPv6 literal");
      port_text = after.substr(1);
      if (port_text.empty()) return bad(text, "empty port");
    }
  } else {
    auto colon = authority.rfind(':');
    if (colon != std::string_view::npos) {
      port_text = authority.substr(colon + 1);
      authority = authority.substr(0, colon);
      if (port_text.empty()) return bad(text, "empty port");
    }
    url.host = lower(authority);
  }
  if (url.host.empty()) return bad(text, "missing host");
  for (unsigned char c : url.host) {
    if (std::isspace(c) || c < 0x21) return bad(text, "invalid character in host");
  }
  url.port = url.secure ? 443 : 80;
  if (!port_text.empty()) {
    unsigned value = 0;
    auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), value);
    if (ec != std::errc() || end != port_text.data() + port_text.size() || value == 0 || value > 65535) {
      return bad(text, "invalid port '" + std::string(port_text) + "'");
    }
    url.port = static_cast<std::uint16_t>(value);
  }
  if (Error e = set_target(text, tail, url)) return e;
  return url;
}

}  // namespace wscengine
