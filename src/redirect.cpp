#include "redirect.hpp"

#include <algorithm>

#include "authority.hpp"

namespace wscengine::detail {
namespace {

Error refused(std::string why) { return Error(errc::redirect_refused, std::move(why)); }

bool header_is(const Header& h, std::string_view name) { return lower(h.name) == lower(name); }

// RFC 3986 §5.2.4: removes the "." and ".." segments of a path that starts with '/'.
std::string remove_dot_segments(std::string_view path) {
  std::vector<std::string_view> kept;
  bool ends_as_directory = false;  // the last segment was "." or "..": the result ends with '/'
  for (std::size_t start = 1;;) {
    std::size_t end = path.find('/', start);
    const bool last = end == std::string_view::npos;
    std::string_view segment = path.substr(start, last ? std::string_view::npos : end - start);
    if (segment == "..") {
      if (!kept.empty()) kept.pop_back();
      ends_as_directory = last;
    } else if (segment == ".") {
      ends_as_directory = last;
    } else {
      kept.push_back(segment);  // may be empty: "/a/" keeps its slash
      ends_as_directory = false;
    }
    if (last) break;
    start = end + 1;
  }
  std::string out;
  for (auto segment : kept) (out += '/') += segment;
  if (out.empty() || ends_as_directory) out += '/';
  return out;
}

}  // namespace

bool is_redirect_status(int status) noexcept {
  return status == 301 || status == 302 || status == 303 || status == 307 || status == 308;
}

bool is_permanent_redirect(int status) noexcept { return status == 301 || status == 308; }

Result<Url> redirect_target(const Url& from, std::string_view location) {
  // Surrounding spaces are not part of the value; a fragment never goes on the wire.
  while (!location.empty() && (location.front() == ' ' || location.front() == '\t')) location.remove_prefix(1);
  while (!location.empty() && (location.back() == ' ' || location.back() == '\t')) location.remove_suffix(1);
  location = location.substr(0, location.find('#'));
  if (location.empty()) return refused("the redirect has no Location");
  std::string absolute;
  std::string scheme_prefix = from.secure ? "wss:" : "ws:";
  if (auto colon = location.find(':');
      colon != std::string_view::npos && location.find_first_of("/?") > colon) {  // has a scheme
    std::string scheme = lower(location.substr(0, colon));
    std::string_view rest = location.substr(colon + 1);
    if (scheme == "http" || scheme == "ws") {
      absolute = "ws:" + std::string(rest);
    } else if (scheme == "https" || scheme == "wss") {
      absolute = "wss:" + std::string(rest);
    } else {
      return refused("the redirect's Location '" + std::string(location) + "' is not a ws, wss, http or https URL");
    }
  } else if (location.substr(0, 2) == "//") {  // scheme-relative
    absolute = scheme_prefix + std::string(location);
  } else if (!from.unix_socket.empty()) {
    return refused("a redirect on a Unix socket URL is not followed");
  } else {
    std::string base = (from.secure ? "wss://" : "ws://") + from.host_header();
    std::string path;
    std::string_view query;
    std::string_view rel = location;
    if (auto q = rel.find('?'); q != std::string_view::npos) {
      query = rel.substr(q);
      rel = rel.substr(0, q);
    }
    if (!rel.empty() && rel.front() == '/') {
      path = std::string(rel);
    } else {
      std::string_view from_path = std::string_view(from.target).substr(0, from.target.find('?'));
      path = std::string(from_path.substr(0, from_path.rfind('/') + 1));
      if (rel.empty()) {  // "?x": the same path, another query
        path = std::string(from_path);
      } else {
        path += rel;
      }
    }
    absolute = base + remove_dot_segments(path) + std::string(query);
  }
  auto url = parse_url(absolute);
  if (!url) return refused("the redirect's Location '" + std::string(location) + "': " + url.error().message());
  if (!url->unix_socket.empty()) return refused("a redirect to a Unix socket URL is not followed");
  if (from.secure && !url->secure) {
    return refused("a redirect from " + from.to_string() + " to " + url->to_string() +
                   " would leave TLS (wss to ws); not followed");
  }
  return url;
}

bool same_origin(const Url& a, const Url& b) noexcept {
  return a.secure == b.secure && a.port == b.port && lower(a.host) == lower(b.host) && a.unix_socket == b.unix_socket;
}

void redirect_request(DialRequest& request, const Url& to) {
  if (!same_origin(request.url, to)) {
    std::erase_if(request.headers, [](const Header& h) {
      return header_is(h, "authorization") || header_is(h, "cookie") || header_is(h, "proxy-authorization");
    });
    request.addresses.clear();
    request.tls.server_name.clear();
  }
  request.url = to;
}

std::string describe_chain(const std::vector<std::string>& urls) {
  std::string out;
  for (const auto& u : urls) out += (out.empty() ? "" : " -> ") + u;
  return out;
}

}  // namespace wscengine::detail
