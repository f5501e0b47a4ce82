// wscengine — Beast adapter internals: HTTP/2 connections that carry WebSockets as
// streams (RFC 8441), shared by the engines of one Runtime that dial one origin.
// libnghttp2 does the HTTP/2 framing; Asio the sockets and TLS. Not public API.
#pragma once

#include <boost/asio/io_context.hpp>

#include <wscengine/adapter.hpp>
#include <wscengine/beast.hpp>
#include <wscengine/beast/detail/http2_layer.hpp>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace wscengine::beast::detail {

/// A WebSocket stream the server accepted (a 2xx answer to the extended CONNECT).
struct Http2Opened {
  std::shared_ptr<Http2Channel> channel;
  int status = 200;
  std::vector<Header> headers;                   ///< the answer's fields (lower-case names), pseudo-headers left out
  std::chrono::nanoseconds connect_duration{0};  ///< DNS + TCP of the connection, when this dial made it
};

/// Receives the outcome of open_http2_stream, once, on an I/O thread, with no lock held.
using Http2OpenHandler = std::function<void(Result<Http2Opened>)>;

/// Opens a WebSocket as a stream of an HTTP/2 connection to the origin of `request`:
/// an open connection of this io_context with room for another stream, or a new one
/// (DNS, TCP, TLS with ALPN h2 or h2c with prior knowledge; the server's SETTINGS must
/// carry SETTINGS_ENABLE_CONNECT_PROTOCOL). Then the extended CONNECT with the
/// request's headers, subprotocols and `extensions` (the permessage-deflate offer).
/// An answer other than 2xx is `errc::http_status`; a server without RFC 8441 is
/// `errc::handshake_failed`, and the origin is then remembered (see http2_refused).
/// The link's reset() cancels the open, or resets the stream once open.
std::shared_ptr<Http2Link> open_http2_stream(boost::asio::io_context& io, const DialRequest& request,
                                             const std::string& extensions, Http2OpenHandler done);

/// True when the origin of `request` (with its TLS options; in any runtime) recently turned out not to
/// speak WebSocket over HTTP/2: Http2Mode::prefer then dials HTTP/1.1 straight away.
/// Remembered for `memory` from the refusal.
bool http2_refused(const DialRequest& request, std::chrono::seconds memory);

}  // namespace wscengine::beast::detail
