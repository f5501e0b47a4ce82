// Private: following a 3xx answer to the upgrade request (EngineOptions::max_redirects).
// Pure functions, apart from the engine so that every rule is tested on its own.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include <wscengine/connection.hpp>
#include <wscengine/error.hpp>
#include <wscengine/url.hpp>

namespace wscengine::detail {

/// 301, 302, 303, 307 and 308: the statuses a dial follows.
bool is_redirect_status(int status) noexcept;
/// 301 and 308: a redirect the engine remembers for its reconnects.
bool is_permanent_redirect(int status) noexcept;

/// Where a `Location` answered to a request for `from` points, as a WebSocket URL:
/// absolute (ws, wss, http -> ws, https -> wss), scheme-relative ("//host/path"),
/// absolute-path ("/path") or relative to the directory of `from`'s path ("next",
/// "../x"); a fragment is dropped. Errors (`errc::redirect_refused`, saying why): an
/// empty or unparsable location, another scheme, a Unix socket URL, and a redirect
/// from wss to ws (it would send the request in the clear).
Result<Url> redirect_target(const Url& from, std::string_view location);

/// Same scheme, host (case-insensitive) and port.
bool same_origin(const Url& a, const Url& b) noexcept;

/// Makes `request` a request for `to`. When `to` is another origin, drops what was
/// meant for the first one: the Authorization, Cookie and Proxy-Authorization
/// headers, the addresses to connect to instead of resolving (DialRequest::addresses)
/// and a TLS server name set for the old host.
void redirect_request(DialRequest& request, const Url& to);

/// "ws://a/ -> ws://b/ -> ws://a/": the chain of URLs for an error message.
std::string describe_chain(const std::vector<std::string>& urls);

}  // namespace wscengine::detail
