#include <wscengine/proxy.hpp>

#include "authority.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>
#include <cstdlib>
#include <cstring>

namespace wscengine {
namespace {

Error invalid(std::string why) { return Error(errc::invalid_option, "proxy URL: " + std::move(why)); }

std::optional<std::string> percent_decode(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      out += s[i];
      continue;
    }
    if (i + 2 >= s.size()) return std::nullopt;
    unsigned value = 0;
    auto [end, ec] = std::from_chars(s.data() + i + 1, s.data() + i + 3, value, 16);
    if (ec != std::errc() || end != s.data() + i + 3) return std::nullopt;
    out += static_cast<char>(value);
    i += 2;
  }
  return out;
}

std::string base64(std::string_view in) {
  static constexpr char table[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  std::size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    unsigned v = (static_cast<unsigned char>(in[i]) << 16) | (static_cast<unsigned char>(in[i + 1]) << 8) |
                 static_cast<unsigned char>(in[i + 2]);
    out += {table[v >> 18], table[(v >> 12) & 63], table[(v >> 6) & 63], table[v & 63]};
  }
  if (std::size_t left = in.size() - i; left > 0) {
    unsigned v = static_cast<unsigned char>(in[i]) << 16;
    if (left == 2) v |= static_cast<unsigned char>(in[i + 1]) << 8;
    out += table[v >> 18];
    out += table[(v >> 12) & 63];
    out += left == 2 ? table[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

// An IPv4 or IPv6 address as 16 bytes (IPv4 mapped), or nullopt.
std::optional<std::array<unsigned char, 16>> parse_address(const std::string& text) {
  std::array<unsigned char, 16> bytes{};
  in_addr v4{};
  if (::inet_pton(AF_INET, text.c_str(), &v4) == 1) {
    bytes[10] = bytes[11] = 0xff;
    std::memcpy(bytes.data() + 12, &v4, 4);
    return bytes;
  }
  if (::inet_pton(AF_INET6, text.c_str(), bytes.data()) == 1) return bytes;
  return std::nullopt;
}

bool in_block(const std::array<unsigned char, 16>& address, const std::array<unsigned char, 16>& block,
              unsigned prefix_bits) {
  for (unsigned bit = 0; bit < prefix_bits && bit < 128; ++bit) {
    unsigned mask = 0x80u >> (bit % 8);
    if ((address[bit / 8] & mask) != (block[bit / 8] & mask)) return false;
  }
  return true;
}

bool entry_matches(const Url& url, std::string entry) {
  if (entry == "*") return true;
  // An optional ":port" after a name, an IPv4 address or a bracketed IPv6 address.
  std::optional<unsigned> port;
  auto take_port = [&](std::size_t colon) {
    if (auto number = detail::parse_port(std::string_view(entry).substr(colon + 1))) port = *number;
    entry.erase(colon);
  };
  if (!entry.empty() && entry.front() == '[') {
    auto close = entry.find(']');
    if (close == std::string::npos) return false;
    if (close + 1 < entry.size() && entry[close + 1] == ':') take_port(close + 1);
    entry = entry.substr(1, close - 1) + entry.substr(close + 1);
  } else if (std::count(entry.begin(), entry.end(), ':') == 1) {
    take_port(entry.find(':'));
  }
  if (port && *port != url.port) return false;

  if (auto slash = entry.find('/'); slash != std::string::npos) {
    auto block = parse_address(entry.substr(0, slash));
    auto host = parse_address(url.host);
    unsigned bits = 0;
    auto digits = std::string_view(entry).substr(slash + 1);
    auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), bits);
    if (!block || !host || ec != std::errc() || end != digits.data() + digits.size()) return false;
    bool v4_block = entry.find(':') == std::string::npos;
    return in_block(*host, *block, v4_block ? 96 + std::min(bits, 32u) : std::min(bits, 128u));
  }
  if (auto address = parse_address(entry)) {
    auto host = parse_address(url.host);
    return host && *host == *address;
  }
  if (entry.rfind("*.", 0) == 0) entry.erase(0, 2);
  if (!entry.empty() && entry.front() == '.') entry.erase(0, 1);
  if (entry.empty()) return false;
  const std::string& host = url.host;
  return host == entry ||
         (host.size() > entry.size() && host.compare(host.size() - entry.size(), entry.size(), entry) == 0 &&
          host[host.size() - entry.size() - 1] == '.');
}

}  // namespace

std::string HttpProxy::to_string() const {
  const char* scheme = protocol == Protocol::socks5    ? "socks5://"
                       : protocol == Protocol::socks5h ? "socks5h://"
                                                       : "http://";
  return scheme + detail::host_port(host, port);
}

std::string HttpProxy::authorization() const {
  if (username.empty()) return {};
  return "Basic " + base64(username + ":" + password);
}

Result<HttpProxy> parse_proxy_url(std::string_view text) {
  HttpProxy proxy;
  std::string_view rest = text;
  if (auto scheme_end = text.find("://"); scheme_end != std::string_view::npos) {
    std::string scheme = detail::lower(text.substr(0, scheme_end));
    if (scheme == "socks5") {
      proxy.protocol = HttpProxy::Protocol::socks5;
    } else if (scheme == "socks5h") {
      proxy.protocol = HttpProxy::Protocol::socks5h;
    } else if (scheme != "http") {
      return invalid("scheme '" + scheme +
                     "' is not supported (http://, which tunnels with CONNECT, socks5:// or "
                     "socks5h://)");
    }
    rest = text.substr(scheme_end + 3);
  }
  auto authority_end = rest.find_first_of("/?#");
  std::string_view authority = rest.substr(0, authority_end);
  if (authority_end != std::string_view::npos && rest.substr(authority_end) != "/") {
    return invalid("a path, query or fragment has no meaning for a proxy");
  }
  if (auto at = authority.rfind('@'); at != std::string_view::npos) {
    std::string_view user_info = authority.substr(0, at);
    authority = authority.substr(at + 1);
    auto colon = user_info.find(':');
    auto user = percent_decode(user_info.substr(0, colon));
    auto password = percent_decode(colon == std::string_view::npos ? "" : user_info.substr(colon + 1));
    if (!user || !password) return invalid("bad percent-encoding in the user info");
    if (user->empty()) return invalid("user info without a user name");
    proxy.username = std::move(*user);
    proxy.password = std::move(*password);
  }
  detail::Authority parts;
  if (const char* why = detail::split_authority(authority, parts)) return invalid(why);
  proxy.host = std::move(parts.host);
  if (proxy.host.empty()) return invalid("missing host");
  for (unsigned char c : proxy.host) {
    if (c <= 0x20 || c == 0x7f) return invalid("invalid character in host");
  }
  const bool socks = proxy.protocol != HttpProxy::Protocol::http;
  if (socks && (proxy.username.size() > 255 || proxy.password.size() > 255))
    return invalid("a SOCKS5 user name or password is at most 255 bytes (RFC 1929)");
  proxy.port = socks ? 1080 : 80;
  if (parts.port) {
    auto port = detail::parse_port(*parts.port);
    if (!port) return invalid("invalid port '" + std::string(*parts.port) + "'");
    proxy.port = *port;
  }
  return proxy;
}

bool proxy_bypassed(const Url& url, std::string_view no_proxy) {
  std::size_t i = 0;
  while (i < no_proxy.size()) {
    auto end = no_proxy.find_first_of(", \t", i);
    if (end == std::string_view::npos) end = no_proxy.size();
    if (end > i && entry_matches(url, detail::lower(no_proxy.substr(i, end - i)))) return true;
    i = end + 1;
  }
  return false;
}

Result<std::optional<HttpProxy>> choose_proxy(const Url& url, const ProxyOptions& options,
                                              const EnvironmentLookup& lookup) {
  if (!url.unix_socket.empty()) return std::optional<HttpProxy>{};
  if (!options.url.empty()) {
    auto proxy = parse_proxy_url(options.url);
    if (!proxy) return proxy.error();
    return std::optional<HttpProxy>(std::move(proxy.value()));
  }
  if (!options.from_environment) return std::optional<HttpProxy>{};
  auto get = [&](const char* name) -> const char* {
    const char* value = lookup ? lookup(name) : std::getenv(name);
    return value && *value ? value : nullptr;
  };
  auto first = [&](std::initializer_list<const char*> names) -> std::pair<const char*, const char*> {
    for (const char* name : names) {
      if (const char* value = get(name)) return {name, value};
    }
    return {nullptr, nullptr};
  };
  auto [name, value] = url.secure ? first({"https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"})
                                  : first({"http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"});
  if (!value) return std::optional<HttpProxy>{};
  auto [_, no_proxy] = first({"no_proxy", "NO_PROXY"});
  if (no_proxy && proxy_bypassed(url, no_proxy)) return std::optional<HttpProxy>{};
  auto proxy = parse_proxy_url(value);
  if (!proxy) return Error(errc::invalid_option, std::string(name) + ": " + proxy.error().detail);
  return std::optional<HttpProxy>(std::move(proxy.value()));
}

}  // namespace wscengine
