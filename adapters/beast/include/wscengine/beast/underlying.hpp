// wscengine — the Beast objects behind a connection (includes Beast and OpenSSL).
#pragma once

#include <boost/beast/websocket/stream.hpp>

#include <wscengine/beast/detail/http2_layer.hpp>
#include <wscengine/beast/detail/layers.hpp>
#include <wscengine/beast/detail/tls_layer.hpp>

namespace wscengine::beast {

/// The WebSocket stream of a ws:// connection: `underlying().as<PlainStream>()`.
using PlainStream = boost::beast::websocket::stream<detail::ScanLayer<detail::SocketLayer>>;
/// The WebSocket stream of a wss:// connection: `underlying().as<TlsStream>()`; its
/// TLS layer's `native_handle()` is the connection's `SSL*`.
using TlsStream = boost::beast::websocket::stream<detail::ScanLayer<detail::TlsLayer>>;
/// The WebSocket stream of a connection that is a stream of an HTTP/2 connection
/// (DialRequest::http2): `underlying().as<Http2Stream>()`.
using Http2Stream = boost::beast::websocket::stream<detail::ScanLayer<detail::Http2Layer>>;

}  // namespace wscengine::beast
