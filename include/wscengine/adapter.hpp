// wscengine — the adapter interface: one WebSocket library behind one API.
//
// For people who write an adapter or drive a connection without an engine. An engine's
// user needs none of it: wscengine/wscengine.hpp does not include this header, and each
// adapter's own header (wscengine/beast.hpp, …) includes it for its make_connector().
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <wscengine/connection.hpp>
#include <wscengine/error.hpp>
#include <wscengine/message.hpp>

namespace wscengine {

class Runtime;

/// One WebSocket connection of some library. The engine never touches a library
/// directly; it drives this interface.
///
/// Reading has three forms so that one thread can serve many connections and the
/// per-message path pays no asynchronous round when data is already buffered:
/// `try_read` returns a buffered complete message or `errc::would_block` without
/// waiting; `async_wait_readable` completes when more data may have arrived;
/// `read` blocks (for users inside callbacks).
///
/// Thread safety: `write`, `ping`, `close`, `abort`, `is_open` and
/// `cancel_wait` may be called from any thread concurrently with each other and
/// with one reader. Reads (`try_read`, `read`) must not run concurrently with each
/// other; the engine serialises them with its read lock. At most one
/// `async_wait_readable` is outstanding. Handlers may run on any thread, even inline.
class Connection {
 public:
  /// Receives the outcome of async_dial, once.
  using DialHandler = std::function<void(Result<HandshakeResponse>)>;
  /// Receives the outcome of async_wait_readable, once.
  using WaitHandler = std::function<void(Error)>;
  /// Receives the outcome of async_write, async_ping or async_close, once.
  using DoneHandler = std::function<void(Error)>;

  virtual ~Connection() = default;

  /// Opens the connection: DNS, TCP, TLS, HTTP upgrade, all within
  /// `request.timeout`. Dialling a connection twice is `errc::already_connected`.
  virtual void async_dial(DialRequest request, DialHandler done) = 0;
  /// Blocking form of async_dial. Never call it on an I/O thread.
  Result<HandshakeResponse> dial(DialRequest request);

  /// Takes the next complete message if one is already buffered, without waiting
  /// for the network. With DialRequest::stream on, it may take a part of a message
  /// instead (InboundMessage::part: first, middle, last; a part may be empty, and a
  /// text part may end inside a code point: the engine carries such bytes over). Errors: `errc::would_block` (nothing
  /// complete yet); `errc::closed` with the close frame (1006 for a drop); 1009/1007/1002 kinds.
  virtual Error try_read(InboundMessage& out) = 0;
  /// Completes (with no error) when data may have arrived, or with an error when
  /// the connection failed or `cancel_wait` was called. Consumes nothing.
  virtual void async_wait_readable(WaitHandler done) = 0;
  /// Completes a pending async_wait_readable with `errc::cancelled`, if any.
  virtual void cancel_wait() = 0;
  /// Blocks until a complete message arrives, the timeout passes
  /// (`errc::timeout`) or the connection fails.
  virtual Error read(InboundMessage& out, std::chrono::milliseconds timeout) = 0;

  /// Sends one whole message. Concurrent writes never interleave their frames.
  virtual Error write(MessageType type, std::string_view payload) = 0;
  /// Sends a ping and waits for its pong (or any pong) until the timeout, even
  /// when nobody is reading.
  virtual Error ping(std::string_view payload, std::chrono::milliseconds timeout) = 0;
  /// Sends a close frame, waits up to `timeout` for the peer's, and drops the
  /// connection. On an already-closed connection: `errc::closed`.
  virtual Error close(const CloseFrame& frame, std::chrono::milliseconds timeout) = 0;
  /// The form of ping() the engine's heartbeat uses: `done` gets what ping() would
  /// return. An adapter waits for the pong without holding a thread (a wait on the
  /// socket and a timer on the I/O threads), so that any number of silent peers costs
  /// no thread. The default calls ping() on the calling thread: adapters override it.
  virtual void async_ping(std::string_view payload, std::chrono::milliseconds timeout, DoneHandler done) {
    done(ping(payload, timeout));
  }
  /// The form of close() the engine uses: `done` gets what close() would return.
  /// As for async_ping, an adapter waits for the peer's close without holding a
  /// thread; the default calls close() on the calling thread.
  virtual void async_close(const CloseFrame& frame, std::chrono::milliseconds timeout, DoneHandler done) {
    done(close(frame, timeout));
  }
  /// The form of write() the engine's send pipeline uses: queues one whole message
  /// and returns without waiting for the network; `done` gets what write() would
  /// return, once: no error when the message's last byte was handed to the kernel
  /// (or, for adapters whose library does not say so, to the library). The payload
  /// is copied if it must wait. Control frames (pongs, the close frame) go ahead of
  /// messages still waiting. `done` may run before async_write returns, on the
  /// calling thread, or later on an I/O thread; it must not block. The default calls
  /// write() on the calling thread: adapters override it.
  virtual void async_write(MessageType type, std::string_view payload, DoneHandler done) { done(write(type, payload)); }
  /// Streamed sends: queues one frame of a message sent in parts, as async_write
  /// queues a whole one. `part` is first (the frame that opens the message with
  /// `type`), middle, or last (the final frame); any may be empty. Between a message's
  /// first and last part the caller queues nothing else on this connection (control
  /// frames still go ahead). Text is sent as it is: a part may end inside a code
  /// point. The default refuses with `errc::unsupported`: adapters with
  /// AdapterCapabilities::streamed_writes override it.
  virtual void async_write_part(MessageType type, std::string_view payload, MessagePart part, DoneHandler done) {
    (void)type, (void)payload, (void)part;
    done(Error(errc::unsupported, "this adapter cannot send a message in parts"));
  }
  /// Drops the connection at once (no close frame) and wakes every blocked call.
  virtual void abort() noexcept = 0;
  /// True from a successful dial until the connection is closed or dropped.
  virtual bool is_open() const noexcept = 0;
  /// The library's own connection object.
  virtual Underlying underlying() noexcept = 0;
};

/// What an adapter's library can do, so that the engine, the tools and the tests
/// ask only for what it has, and docs/adapters.md can list it. A plain value.
struct AdapterCapabilities {
  /// permessage-deflate (RFC 7692) can be offered and negotiated. Without it, a
  /// dial with `offer_compression` fails with `errc::unsupported`.
  bool compression = false;
  /// write() blocks while the peer does not read and fails after
  /// `write_timeout`. Without it, writes are queued in memory and return at once.
  bool write_backpressure = true;
  /// ws+unix:// URLs connect to a Unix domain socket. Without it: `errc::unsupported`.
  bool unix_sockets = false;
  /// DialRequest::addresses is honoured. Without it: `errc::unsupported`.
  bool chosen_addresses = false;
  /// try_read takes bytes from the socket itself, so calling it again can find a
  /// message that arrived meanwhile without any other thread's help. The engine's
  /// `busy_poll` polls only such adapters (in others a message arrives through a
  /// handler of the very I/O thread that would be polling).
  bool polled_reads = false;
  /// DialRequest::proxy may be a SOCKS5 proxy (HttpProxy::Protocol::socks5 or
  /// socks5h). Without it: `errc::unsupported`; HTTP CONNECT proxies work on every
  /// real adapter.
  bool socks5_proxies = false;
  /// DialRequest::stream is honoured: reads may return parts of a message. Without
  /// it, a dial with streaming on fails with `errc::unsupported`.
  bool streamed_reads = false;
  /// async_write_part is honoured: a message can be sent in parts. Without it:
  /// `errc::unsupported`.
  bool streamed_writes = false;
  /// DialRequest::http2 is honoured: WebSocket over HTTP/2 (RFC 8441). Without it the
  /// engine dials with the HTTP/1.1 upgrade when http2 is prefer, and fails the dial
  /// with `errc::unsupported` when it is require.
  bool http2 = false;
};

/// Makes connections of one adapter. Engines call it once per dial attempt.
/// Thread safety: `make_connection` may be called from any thread.
class Connector {
 public:
  virtual ~Connector() = default;
  /// A new, not yet dialled connection whose I/O runs on `runtime`.
  virtual std::unique_ptr<Connection> make_connection(Runtime& runtime) = 0;
  /// A short name for logs and traces, e.g. "beast".
  virtual std::string_view name() const noexcept = 0;
  /// What this adapter's connections can do.
  virtual AdapterCapabilities capabilities() const noexcept { return {}; }
};

/// Checks the server's Sec-WebSocket-Protocol answer against the offer (RFC 6455
/// §4.1): none, or one of the offered. For adapters whose library does not check it.
/// Returns the chosen subprotocol or `errc::handshake_failed` naming it.
/// Thread safety: pure.
Result<std::string> check_subprotocol_answer(std::optional<std::string_view> chosen,
                                             const std::vector<std::string>& offered);

/// Checks the server's Sec-WebSocket-Extensions answer against the offer (RFC 6455
/// §9.1, RFC 7692 §5.1 and §7.1): an extension the client did not offer, an unknown
/// or repeated parameter, or a window size outside 8..15 fails the connection.
/// Returns whether permessage-deflate was negotiated, or `errc::handshake_failed`
/// naming what was wrong. Thread safety: pure.
Result<bool> check_extensions_answer(std::optional<std::string_view> answer, bool offered_deflate);

/// The same, holding the answer to what was offered (RFC 7692 §7.1): a window larger
/// than the offer's server_max_window_bits or client_max_window_bits, and an answer
/// without server_no_context_takeover when it was asked for, fail the connection,
/// naming the parameter. Thread safety: pure.
Result<bool> check_extensions_answer(std::optional<std::string_view> answer, bool offered_deflate,
                                     const DeflateOptions& offer);

/// Checks permessage-deflate parameters: window bits in 9..15, level 0..9, memory
/// level 1..9. Returns "" or what is wrong, naming the field ("deflate.level ...").
/// For adapters checking a DialRequest the before-dial hook may have changed.
/// Thread safety: pure.
std::string check_deflate_options(const DeflateOptions& options);

}  // namespace wscengine
