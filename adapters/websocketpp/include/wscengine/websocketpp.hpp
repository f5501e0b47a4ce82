// wscengine — the websocketpp adapter (target wscengine::websocketpp). This header
// does not include websocketpp; wscengine/websocketpp/underlying.hpp names the
// library's types for users who need them.
#pragma once

#include <cstddef>
#include <memory>

#include <wscengine/connection.hpp>

namespace wscengine::websocketpp {

/// Tuning of the websocketpp adapter. A plain value.
struct WebsocketppOptions {
  /// websocketpp reads ahead of the engine and hands over whole messages; when the
  /// messages waiting for the reader reach this many bytes, socket reads pause until
  /// the reader has taken them (so a paused engine does not buffer without limit).
  std::size_t read_ahead_limit = 1u << 20;
};

/// A connector whose connections use websocketpp 0.8 over Asio: ws:// and wss://
/// (TLS verified against the system store by default, SNI, host name check), extra
/// headers, subprotocols, maximum message size, the handshake response.
///
/// What websocketpp cannot do (see capabilities() and docs/adapters.md): it cannot
/// negotiate permessage-deflate as a client, so `offer_compression` fails the dial
/// with `errc::unsupported`; it queues writes without limit, so write() does not
/// block on a peer that stops reading and `write_timeout` does not apply.
/// Thread safety: the connector may be shared by any number of engines.
std::shared_ptr<Connector> make_connector(WebsocketppOptions options = {});

}  // namespace wscengine::websocketpp
