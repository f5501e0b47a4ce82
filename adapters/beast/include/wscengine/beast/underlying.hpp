// wscengine — the Beast objects behind a connection (includes Beast and OpenSSL).
#pragma once

#include <boost/asio/ssl/stream.hpp>
#include <boost/beast/websocket/stream.hpp>

#include <wscengine/beast/detail/layers.hpp>

namespace wscengine::beast {

/// The WebSocket stream of a ws:// connection: `underlying().as<PlainStream>()`.
using PlainStream = boost::beast::websocket::stream<detail::ScanLayer<detail::SocketLayer>>;
/// The WebSocket stream of a wss:// connection: `underlying().as<TlsStream>()`.
using TlsStream = boost::beast::websocket::stream<detail::ScanLayer<boost::asio::ssl::stream<detail::SocketLayer>>>;

}  // namespace wscengine::beast
