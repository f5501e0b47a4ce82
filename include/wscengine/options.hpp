// wscengine — engine options, validated at construction.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <wscengine/connection.hpp>
#include <wscengine/error.hpp>
#include <wscengine/telemetry.hpp>

namespace wscengine {

/// When and how often the restart loop tries again. The delay at backoff level k
/// (k = 1 after the first failure) is `min(max_delay, initial_delay * factor^(k-1))`,
/// then reduced by a random part of up to `jitter` of itself (1.0, the default, is
/// "full jitter": a uniformly random delay up to that bound, which spreads the
/// reconnects of many clients after a server restart).
///
/// The level grows with every failed attempt and with every connection that ended
/// within `reset_after` of opening (a server that accepts and drops at once is not
/// hammered); a connection that stayed up that long resets it, and its end is
/// followed by an immediate reconnect. A plain value.
struct BackoffOptions {
  std::chrono::milliseconds initial_delay = std::chrono::milliseconds(100);  ///< the first delay before jitter
  double factor = 2.0;                                               ///< each level multiplies the delay by this
  std::chrono::milliseconds max_delay = std::chrono::seconds(30);    ///< the delay never grows beyond this
  double jitter = 1.0;                                               ///< in [0, 1]
  std::uint32_t max_attempts = 0;                                    ///< failed attempts in a row; 0 = no limit
  std::chrono::milliseconds reset_after = std::chrono::seconds(30);  ///< a connection up this long resets the backoff
  /// A server's Retry-After (429, 503) is honoured up to this long.
  std::chrono::milliseconds max_retry_after = std::chrono::minutes(10);
};

/// What the restart loop does after a failed attempt. A plain value.
struct RetryDecision {
  bool retry = true;  ///< try again (after the backoff delay), or stop
  /// Wait at least this long before the next attempt (the backoff delay applies too).
  std::chrono::milliseconds at_least{0};
  /// Why not, when `retry` is false: becomes part of the error the engine stops with.
  std::string reason{};

  /// Try again, waiting at least `at_least` (and the backoff delay).
  static RetryDecision again(std::chrono::milliseconds at_least = {}) { return {true, at_least, {}}; }
  /// Stop, saying why.
  static RetryDecision give_up(std::string reason) { return {false, {}, std::move(reason)}; }
};

/// The server's Retry-After on a refused handshake (delta-seconds or an HTTP date),
/// or nullopt. Thread safety: pure.
std::optional<std::chrono::milliseconds> retry_after(const Error& error);

/// The restart loop's default policy. Gives up on what retrying cannot change:
/// HTTP 400, 401, 403, 404, 405, 410 and 426, a 3xx that was not followed (redirects
/// off) or a refused redirect (`errc::redirect_refused`), a proxy's 403 and 407, a
/// server certificate that does not verify, an invalid URL or option, an unsupported
/// feature. Honours Retry-After on 408, 429 and 5xx (up to
/// `backoff.max_retry_after`). Retries everything else with backoff.
/// Thread safety: pure.
RetryDecision default_retry_policy(const Error& error, std::uint32_t retry, const BackoffOptions& backoff);

/// Which thread runs on_message (see docs/engine-operations.md, "Delivery modes").
enum class Delivery {
  /// The default. The I/O thread that sees data arrive hands the read to a callback
  /// thread, which reads the message and runs on_message. I/O threads never run user
  /// code, so a slow on_message delays only its own connection. Costs one hand-off
  /// between threads (a wake-up) per burst of messages.
  callback_pool,
  /// Low latency. The I/O thread that sees data arrive reads the message and runs
  /// on_message (and on_read_error) itself: one wake-up per message, as a blocking
  /// read loop has, and no thread hand-off. The price: while on_message runs, that
  /// I/O thread serves nothing else, so a slow on_message delays every connection,
  /// timer and heartbeat that thread serves (an engine with a Runtime of its own
  /// delays only itself). Keep on_message short, or give latency-critical engines
  /// their own Runtime. A busy connection gives the I/O thread back to the others
  /// after 256 messages in a row. In on_message, calls that wait for the network
  /// (SessionConnection::read and ping, a blocking start(), stop() and
  /// wait_stopped() of another engine) return `errc::would_deadlock` instead of
  /// waiting (stop() still asks the engine to stop); Engine::send() with a
  /// room_timeout does not wait for room. send() and async_send() never wait.
  io_thread,
};

/// What Engine::send() and async_send() do while no session is open (see
/// docs/engine-operations.md, "Sends across an outage").
enum class OutageSends {
  /// The default: a send between sessions fails at once with `errc::not_connected`.
  fail,
  /// Hold the message (up to OutageOptions::max_bytes and max_messages; beyond,
  /// `errc::send_queue_full` at once) and send it, in send order, right after the next
  /// on_open returned. A message held longer than max_age is given up: its completion
  /// gets `errc::expired`. Messages a session had queued and could not send before it
  /// ended are held again, ahead of the newer ones.
  hold,
  /// As hold, but a send beyond the limits is taken and the oldest held messages make
  /// room: their completions get `errc::dropped`. For feeds where the latest matters.
  drop_oldest,
};

/// Sends across an outage: EngineOptions::outage. A plain value.
struct OutageOptions {
  OutageSends mode = OutageSends::fail;  ///< fail (the default), hold or drop_oldest
  /// Payload bytes held at most. A message larger than this is still held when
  /// nothing else is.
  std::size_t max_bytes = 1u << 20;
  std::size_t max_messages = 4096;  ///< messages held at most
  /// A message is given up (`errc::expired`) once held this long; checked every
  /// max_age / 32, so it expires within 1/32 of max_age after its time.
  std::chrono::milliseconds max_age = std::chrono::seconds(30);
};

/// Everything an engine is told. Defaults are stated here once; docs quote them.
/// `validate()` is called by the Engine constructor. A plain value.
struct EngineOptions {
  /// ws:// or wss:// URL of the server.
  std::string url{};
  /// Reader slots N: at most N on_message run at once; N = 1 keeps arrival order.
  std::size_t reader_slots = 1;
  /// Keyed in-order dispatch for N > 1: messages with the same key (an instrument,
  /// a room, a device) run one at a time in sequence order; different keys run in
  /// parallel across the slots. Called once per message by the reader, before
  /// on_message, with the message's sequence; keep it cheap and pure. A key
  /// extractor that throws puts the message under the empty key. Messages read
  /// while their key is busy wait (at most 1024 in all; then reading pauses).
  /// Empty (the default): no keys, any N messages may run at once.
  std::function<std::string(const Message& message)> message_key{};
  /// Which thread runs on_message: a callback thread (the default) or, for the
  /// lowest latency, the I/O thread that read it (see Delivery).
  Delivery delivery = Delivery::callback_pool;
  /// With Delivery::io_thread only: after a read finds nothing, the I/O thread tries
  /// again for this long before it waits for the network (zero, the default: it
  /// waits at once). A message that arrives meanwhile is taken without a wake-up,
  /// which takes microseconds off a request/response round trip. The price: the I/O
  /// thread spins (CPU while it polls, up to this long after every burst of
  /// messages), serving nothing else meanwhile, and a pause() or a shutdown waits up
  /// to this long for the poll. At most 1 ms. Only for adapters whose reads poll the
  /// socket (AdapterCapabilities::polled_reads: Beast); others ignore it.
  std::chrono::microseconds busy_poll{0};
  /// Reconnect after a peer close or a drop. restart() requests reconnect regardless.
  bool auto_reconnect = true;
  /// Dial + handshake + on_open must finish within this.
  std::chrono::milliseconds open_timeout = std::chrono::seconds(10);
  /// The close handshake (send close, wait for the peer's) must finish within this.
  std::chrono::milliseconds close_timeout = std::chrono::seconds(5);
  /// stop() returns after this even if the engine has not stopped yet.
  std::chrono::milliseconds stop_timeout = std::chrono::seconds(15);
  /// A write that cannot make progress (peer not reading) fails the connection after
  /// this: messages waiting to be sent fail with `errc::timeout`, and so does the next
  /// read (on_read_error) before on_close with 1006. Reading goes on until then.
  std::chrono::milliseconds write_timeout = std::chrono::seconds(10);
  /// The send queue of a session: messages sent and not yet handed to the kernel.
  /// A send that would take it over either limit fails at once with
  /// `errc::send_queue_full` (nothing is queued, nothing blocks). A message larger
  /// than `send_queue_bytes` is still taken when the queue is empty.
  std::size_t send_queue_bytes = 16u << 20;
  /// See send_queue_bytes.
  std::size_t send_queue_messages = 65536;
  /// What Engine::send() does between sessions: fail (the default), or hold the
  /// message for the next session (see OutageSends). Holding costs a copy of every
  /// message sent, and a completion on a callback thread for each, until it is sent.
  OutageOptions outage{};
  /// Heartbeat: send a ping this long after the last one was answered; zero (the
  /// default) sends none. A ping with neither a pong nor any message read within
  /// `pong_timeout` means the connection is dead (a half-open TCP connection sends no error, ever): the engine
  /// drops it, calls on_read_error with `errc::timeout`, then on_close with 1006, and
  /// reconnects as after any drop. It works while on_message is busy and while the
  /// pause lock is held: the ping, and the wait for its pong, run on the runtime's
  /// I/O threads, and no callback thread waits for them.
  std::chrono::milliseconds ping_interval{0};
  std::chrono::milliseconds pong_timeout = std::chrono::seconds(10);  ///< see ping_interval
  /// Stale-data watchdog, for feeds that keep answering pings while their data stops:
  /// when no data message is read for this long (pings and pongs do not count), the
  /// session is restarted: on_read_error with `errc::stale`, then on_close, a close
  /// frame with 1001, and a reconnect as after any failure. Zero (the default) turns it
  /// off. Checked every max_silence / 4 on an I/O thread, so silence is found after
  /// 1 to 1.25 times max_silence. Time in which the engine does not read (the pause
  /// lock held, every reader slot in on_message) does not count as silence.
  std::chrono::milliseconds max_silence{0};
  /// The watchdog starts counting only after this many data messages of the session
  /// (0: from on_open), for feeds that are quiet until subscribed.
  std::uint64_t max_silence_after = 0;
  BackoffOptions backoff{};  ///< delays between reconnect attempts
  /// Decides after each failed attempt (after on_restart_error) whether to try again.
  /// Empty: default_retry_policy. Runs on a callback thread.
  std::function<RetryDecision(const Error& error, std::uint32_t retry)> retry_policy{};

  /// A 301, 302, 303, 307 or 308 answer to the upgrade is followed, within the same
  /// attempt and open_timeout, up to this many times; 0 turns it off (a 3xx then ends
  /// the attempt with `errc::http_status`). `http://` and `https://` locations become
  /// `ws://` and `wss://`; relative ones resolve against the URL asked for. Not
  /// followed, `errc::redirect_refused` with the chain of URLs: a loop, more than
  /// this many, wss to ws, another scheme. Going to another origin (scheme, host,
  /// port), the request drops its Authorization, Cookie and Proxy-Authorization
  /// headers, `addresses` and `tls.server_name`. A permanent redirect (301, 308) is
  /// remembered for this engine's reconnects until the next start(). At most 20.
  std::uint32_t max_redirects = 5;
  std::vector<Header> headers{};            ///< extra handshake headers
  std::vector<std::string> subprotocols{};  ///< offered subprotocols
  bool offer_compression = false;           ///< offer permessage-deflate (parameters: `deflate`)
  /// permessage-deflate's parameters (RFC 7692) when offer_compression is on: window
  /// sizes, context takeover, level, and a size below which messages go uncompressed.
  DeflateOptions deflate{};
  std::size_t max_message_size = 16u << 20;  ///< larger inbound messages close with 1009
  /// Streamed messages: on_message gets a message in parts as it arrives
  /// (Message::part), so a message of any size needs no buffer of its size. Off by
  /// default. See StreamOptions and docs/engine-operations.md, "Streamed messages".
  StreamOptions stream{};
  TlsOptions tls{};  ///< certificate verification, mutual TLS, minimum version
  /// WebSocket over HTTP/2 (RFC 8441): off (the default), prefer or require. Engines
  /// on one Runtime that dial the same origin share one HTTP/2 connection, each a
  /// stream of it. See Http2Mode and docs/adapters.md, "WebSocket over HTTP/2".
  Http2Mode http2 = Http2Mode::off;
  /// With `http2` on, ws:// URLs speak HTTP/2 with prior knowledge (h2c); without it
  /// they use the HTTP/1.1 upgrade (and require is refused by validate()).
  bool http2_cleartext = false;
  /// HTTP CONNECT proxy: an explicit one, or (the default) HTTPS_PROXY /
  /// HTTP_PROXY / ALL_PROXY / NO_PROXY from the environment, read at every dial.
  /// The choice lands in DialRequest::proxy, which before_dial may change.
  ProxyOptions proxy{};
  /// Connect to these addresses instead of resolving the URL's host (see
  /// DialRequest::addresses). Empty = DNS.
  std::vector<std::string> addresses{};

  /// Runs before every dial attempt (the first and each reconnect), on a callback
  /// thread; may change the URL, headers or anything else in the request (fresh
  /// tokens after a reconnect). `attempt` counts the failed attempts in a row before
  /// this one: 0 for the first dial of a start and for the first redial after a
  /// session ended (a success resets it). Returning an error fails the attempt with it.
  std::function<Error(DialRequest& request, std::uint32_t attempt)> before_dial{};

  /// Told of every ping and pong on the wire, both ways (ControlFrameEvent: the
  /// server's pings and this side's answers, the heartbeat's and
  /// SessionConnection::ping's pings and the server's pongs, with the round trip).
  /// Runs on a callback thread, one event at a time per engine, in the order the
  /// frames crossed the wire; it must not block for long (events wait for it, up to
  /// 1024, then are left out and counted in ControlFrameEvent::missed). An exception
  /// escaping it is ignored. Empty (the default): adapters report nothing, at no cost.
  /// Thread safety: one call at a time per engine; engines sharing state in it lock it.
  std::function<void(const ControlFrameEvent& event)> on_control_frame{};

  /// Tracing and metrics (see docs/observability.md). All null by default: no
  /// telemetry and no cost. wscengine::otel provides both over OpenTelemetry.
  TelemetryOptions telemetry{};

  /// Checks every field; the error names the field and the rule.
  Error validate() const;
};

}  // namespace wscengine
