// wscengine — the Boost.Beast adapter (target wscengine::beast). This header does
// not include Beast; wscengine/beast/underlying.hpp does, for users who need the
// library's own objects.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>

#include <wscengine/adapter.hpp>

namespace wscengine::beast {

/// Tuning of the Beast adapter. A plain value.
struct BeastOptions {
  /// The most bytes read from the socket at once when data is waiting. Reads start
  /// at 1 KiB and grow (x4) up to this each time one fills its space, so that an
  /// idle connection that only ever got small messages holds a 1 KiB read buffer.
  std::size_t read_chunk = 64 * 1024;
  /// Http2Mode::prefer: how long an origin found without WebSocket over HTTP/2 is
  /// dialled over HTTP/1.1 straight away, before HTTP/2 is tried there again.
  std::chrono::seconds http2_fallback_memory{300};
};

/// A connector whose connections use Boost.Beast: ws:// and wss:// (TLS verified
/// against the system store by default, SNI, host name check), extra headers,
/// subprotocols, permessage-deflate offer, maximum message size, and WebSocket over
/// HTTP/2 (RFC 8441: DialRequest::http2), engines of one Runtime sharing connections.
/// Thread safety: the connector may be shared by any number of engines.
std::shared_ptr<Connector> make_connector(BeastOptions options = {});

/// TLS contexts and handshakes of the process (see TlsStats). Thread safety: any thread.
TlsStats tls_stats();

/// The HTTP/2 connections that carry WebSockets as streams (DialRequest::http2) in
/// this process, counted since it started. A plain value.
struct Http2Stats {
  std::uint64_t connections_dialled = 0;  ///< connections begun (DNS, TCP, TLS)
  std::uint64_t connections_opened = 0;   ///< ... of which spoke HTTP/2
  std::uint64_t connections_open = 0;     ///< open now
  std::uint64_t streams_opened = 0;       ///< WebSockets the servers accepted as streams
  std::uint64_t streams_open = 0;         ///< open now
  std::uint64_t refusals = 0;             ///< servers found without WebSocket over HTTP/2
};

/// A snapshot of Http2Stats. Thread safety: any thread.
Http2Stats http2_stats();

}  // namespace wscengine::beast
