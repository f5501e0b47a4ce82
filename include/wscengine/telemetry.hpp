// wscengine — the tracing and metrics hooks. The core knows only these interfaces;
// the wscengine::otel target implements them with OpenTelemetry. None set = no cost
// beyond a null check.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string_view>

#include <wscengine/error.hpp>
#include <wscengine/message.hpp>
#include <wscengine/trace_context.hpp>

namespace wscengine {

class Connector;  // wscengine/adapter.hpp

/// While alive, makes a span the thread's current one in the tracing library (so a
/// span the user starts without a parent becomes its child). Thread safety: created
/// and destroyed on one thread.
class SpanScope {
 public:
  virtual ~SpanScope() = default;
};

/// One span the engine started; it ends at end() or destruction.
/// Thread safety: used by one thread at a time.
class Span {
 public:
  virtual ~Span() = default;
  /// Sets an integer attribute ("wscengine.…").
  virtual void set_attribute(std::string_view key, std::int64_t value) noexcept = 0;
  /// Sets a string attribute.
  virtual void set_attribute(std::string_view key, std::string_view value) noexcept = 0;
  /// Adds a timestamped event.
  virtual void add_event(std::string_view name) noexcept = 0;
  /// Records the error and marks the span as failed.
  virtual void set_error(const Error& error) noexcept = 0;
  /// This span's trace and span ids.
  virtual TraceContext context() const noexcept = 0;
  /// Ends the span; later calls do nothing.
  virtual void end() noexcept = 0;
  /// Makes this span current on the calling thread until the scope is destroyed;
  /// null when the tracer has no such notion.
  virtual std::unique_ptr<SpanScope> make_current() noexcept { return nullptr; }
};

/// Starts spans for an engine. Span names are "wscengine.<step>"; attributes are
/// under "wscengine." (see docs/observability.md).
/// Thread safety: start_span may be called from any thread concurrently.
class Tracer {
 public:
  using Clock = std::chrono::system_clock;  ///< span times are wall-clock times
  virtual ~Tracer() = default;
  /// `parent` may be invalid: the span is then a root. `start` is the span's start
  /// time when it began before the call (a read known to have happened only once
  /// it returned); the default means now. `link`, when valid, is a span this one
  /// follows from without being its child (a message's root span links to its
  /// session). Null: nothing is recorded and there is no context to hand on (a
  /// no-op tracing library).
  virtual std::unique_ptr<Span> start_span(std::string_view name, const TraceContext& parent,
                                           Clock::time_point start = {}, const TraceContext& link = {}) noexcept = 0;
};

/// Where a connection stands, for the connection-state metric.
enum class ConnectionState : std::uint8_t {
  none,     ///< no connection (stopped, or waiting to retry)
  dialing,  ///< dial + handshake + on_open
  open,     ///< reading; on_message may run
  closing,  ///< shutdown: on_close and the close handshake
};

/// Receives the engine's measurements (see docs/observability.md for the
/// instruments wscengine::otel maps them to).
/// Thread safety: every function may be called from any thread concurrently.
class Metrics {
 public:
  virtual ~Metrics() = default;
  /// One whole message read from the connection (at the adapter boundary).
  virtual void message_received(MessageType type, std::size_t bytes) noexcept = 0;
  /// One whole message written successfully.
  virtual void message_sent(MessageType type, std::size_t bytes) noexcept = 0;
  /// A dial attempt after the first of a start (a reconnect or a retry).
  virtual void reconnect_attempt() noexcept = 0;
  /// A reconnect attempt that opened a session (on_open succeeded).
  virtual void reconnect_success() noexcept = 0;
  /// A read error handed to on_read_error (not a close).
  virtual void read_error(const Error& error) noexcept = 0;
  /// How long one on_message ran.
  virtual void on_message_duration(std::chrono::nanoseconds duration) noexcept = 0;
  /// One dial: DNS + TCP + TLS + HTTP upgrade; `error` empty on success.
  virtual void dial_duration(std::chrono::nanoseconds duration, const Error& error) noexcept = 0;
  /// The part of a successful dial after the TCP connect: TLS + HTTP upgrade.
  /// Reported only by adapters that measure it (HandshakeResponse::connect_duration).
  virtual void handshake_duration(std::chrono::nanoseconds duration) noexcept = 0;
  /// The engine's connection moved from one state to another.
  virtual void connection_state(ConnectionState from, ConnectionState to) noexcept = 0;
  /// A dial followed a redirect (`status`: 301, 302, 303, 307 or 308). Not pure, so
  /// that sinks written before it keep compiling.
  virtual void redirect(int status) noexcept { (void)status; }
  /// WebSocket over HTTP/2: an HTTP/2 connection carrying streams opened (+1) or
  /// ended (-1). Not pure, as redirect().
  virtual void http2_connections(std::int64_t delta) noexcept { (void)delta; }
  /// WebSocket over HTTP/2: a stream opened on a connection that now carries
  /// `streams` (the distribution of streams per connection). Not pure, as redirect().
  virtual void http2_streams(std::uint64_t streams) noexcept { (void)streams; }
};

/// How the engine's spans group into traces.
enum class TraceGrouping : std::uint8_t {
  /// One trace per message (its read, else its on_message, is a root linked to the
  /// session's run span) and one per reconnect (the restart span is a root linked to
  /// the session it replaces). Traces stay small on connections that live for weeks,
  /// and a ratio sampler samples messages, not whole runs. The default.
  per_message,
  /// Everything of a start() in one trace: sessions, reconnects and messages hang
  /// off the start span. Easy to read end to end for short runs and tests; a long
  /// run makes one huge trace, deeper with every reconnect.
  per_start,
};

/// What an engine traces and measures. A plain value.
struct TelemetryOptions {
  /// Spans for every engine step and callback. Null: no tracing, no cost.
  std::shared_ptr<Tracer> tracer{};
  /// Counters, histograms and the connection state. Null: no metrics, no cost.
  std::shared_ptr<Metrics> metrics{};
  /// With a tracer: also span each adapter operation (dial, read, write, ping,
  /// close) through the decorator of instrument(). One extra span per message.
  bool trace_connection = true;
  /// With a tracer: send the W3C `traceparent` header of the dial's span in the
  /// opening handshake, so that a server that reads it joins the trace.
  bool inject_traceparent = false;
  /// How spans group into traces (see TraceGrouping).
  TraceGrouping grouping = TraceGrouping::per_message;
  /// The share of messages, in [0, 1], that are traced (the read, on_message and
  /// send spans of a message) and timed (Metrics::on_message_duration). The engine
  /// chooses each message before any span exists, so a message left out costs one
  /// random number: no call into the tracing library, no span, no attribute.
  /// Sessions, dials, reconnects, closes and errors are always traced, and the
  /// message and byte counters count every message. The tracing library's own
  /// sampler still decides for the messages chosen (docs/observability.md,
  /// "Sampling messages"). 1, the default: every message.
  double message_sample_ratio = 1.0;
};

/// The trace context of the engine step or callback running on this thread: a
/// callback's span, or the session's run span while the engine reads. Invalid
/// elsewhere and when no tracer is configured. Thread safety: per thread.
TraceContext current_trace_context() noexcept;

/// Wraps any connector so that each connection it makes spans dial, read (only
/// reads that return a message or an error), write, ping and close with `tracer`
/// (may be null), and reports messages, bytes and dial times to `metrics` (may be
/// null). A span's parent is current_trace_context() of the calling thread. The
/// engine does this itself from TelemetryOptions; call it to instrument a
/// connection used without an engine. Thread safety: as the inner connector.
std::shared_ptr<Connector> instrument(std::shared_ptr<Connector> inner, std::shared_ptr<Tracer> tracer,
                                      std::shared_ptr<Metrics> metrics);

}  // namespace wscengine
