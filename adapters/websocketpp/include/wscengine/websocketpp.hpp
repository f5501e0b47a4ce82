// wscengine — the websocketpp adapter (target wscengine::websocketpp). This header
// does not include websocketpp; wscengine/websocketpp/underlying.hpp names the
// library's types for users who need them.
#pragma once

#include <cstddef>
#include <memory>

#include <wscengine/adapter.hpp>

namespace wscengine::websocketpp {

/// Tuning of the websocketpp adapter. A plain value.
struct WebsocketppOptions {
  /// websocketpp reads ahead of the engine and hands over whole messages; when the
  /// messages waiting for the reader reach this many bytes, socket reads pause until
  /// the reader has taken them (so a paused engine does not buffer without limit).
  std::size_t read_ahead_limit = 1u << 20;
  /// websocketpp queues writes in memory and never says when they left. The adapter
  /// sends a marker ping after every quarter of this many bytes; the peer's pong
  /// acknowledges what was queued before it. A write waits while more than this is
  /// unacknowledged and fails after `write_timeout` (peer not reading). 0 turns it
  /// off: writes are then queued without limit.
  std::size_t max_unacknowledged_bytes = 4u << 20;
};

/// A connector whose connections use websocketpp 0.8 over Asio: ws:// and wss://
/// (TLS verified against the system store by default, SNI, host name check), extra
/// headers, subprotocols, maximum message size, the handshake response.
///
/// What websocketpp cannot do (see capabilities() and docs/adapters.md): it cannot
/// negotiate permessage-deflate as a client, so `offer_compression` fails the dial
/// with `errc::unsupported`. Write back-pressure comes from the peer's pongs to the
/// adapter's marker pings (`max_unacknowledged_bytes`), so it needs a peer that
/// answers pings, as RFC 6455 §5.5.2 requires.
/// Thread safety: the connector may be shared by any number of engines.
std::shared_ptr<Connector> make_connector(WebsocketppOptions options = {});

/// TLS contexts and handshakes of the process (see TlsStats). Thread safety: any thread.
TlsStats tls_stats();

}  // namespace wscengine::websocketpp
