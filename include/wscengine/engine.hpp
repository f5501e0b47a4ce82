// wscengine — the engine: owns one logical connection to one URL.
#pragma once

#include <cstdint>
#include <future>
#include <memory>
#include <stdexcept>
#include <string_view>

#include <wscengine/client.hpp>
#include <wscengine/connection.hpp>
#include <wscengine/error.hpp>
#include <wscengine/options.hpp>
#include <wscengine/runtime.hpp>
#include <wscengine/stats.hpp>

namespace wscengine {

class Connector;  // wscengine/adapter.hpp

/// Thrown by the Engine constructor when EngineOptions::validate() fails; `error()`
/// names the field. Thread safety: a plain exception object.
class InvalidOptions : public std::invalid_argument {
 public:
  /// Carries the validation error; what() is its message.
  explicit InvalidOptions(const Error& error) : std::invalid_argument(error.message()), error_(error) {}
  /// The validation error (`errc::invalid_option` or `errc::invalid_url`).
  const Error& error() const noexcept { return error_; }

 private:
  Error error_;
};

/// Where an engine is in its life (see docs/engine-operations.md).
enum class EngineState {
  idle,        ///< constructed, never started
  starting,    ///< first dial + on_open in progress
  running,     ///< a session is open and readers run
  restarting,  ///< between sessions: shutting down, waiting, or re-dialling
  stopping,    ///< stop() or exit() in progress
  stopped,     ///< stopped; start() may be called again
};

/// Owns one logical connection to one URL: dials, runs the reader slots, calls the
/// client's callbacks, shuts down, reconnects with backoff, stops. See
/// docs/engine-operations.md.
///
/// Thread safety: every member function may be called from any thread, including
/// from inside the engine's own callbacks, without deadlock. stop() called from a
/// callback of this engine acts like exit() and does not wait. Destroying a
/// running engine stops it; do not destroy it from one of its own callbacks.
class Engine {
 public:
  /// Throws InvalidOptions if `options` fail validation. With no runtime, the
  /// engine makes its own: one I/O thread and max(2, reader_slots) callback threads,
  /// or with Delivery::io_thread reader_slots I/O threads and 2 callback threads.
  Engine(EngineOptions options, std::shared_ptr<Client> client, std::shared_ptr<Connector> connector,
         std::shared_ptr<Runtime> runtime = nullptr);
  /// Stops the engine (as stop()), then waits until every task it posted, and every
  /// async_send handler, has run. Never destroy an engine inside its own callbacks.
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  /// Blocks until the first connection is open, on_open returned and the readers
  /// run; or returns the error (dial, TLS, HTTP status, on_open's error, timeout).
  /// No restart loop on failure. `errc::already_started` if running.
  Error start();
  /// start() without blocking, for event loops and coroutines (wscengine/coro.hpp): the
  /// same first attempt, and `done` gets what start() would return, once, on a callback
  /// thread. Returns an error, and never calls `done`, when the start is refused at once
  /// (`errc::already_started`).
  Error async_start(std::function<void(Error)> done);
  /// Returns at once; dials in the background and keeps retrying with backoff
  /// (each failure goes to on_restart_error) until connected, exit or stop.
  Error start_background();
  /// Graceful and idempotent: stop reading, on_close (client-initiated), close
  /// handshake, then return once stopped or after stop_timeout (`errc::timeout`).
  /// From inside a callback of this engine it does not wait.
  Error stop();
  /// stop() without blocking: asks the engine to stop as stop() does, and `done` runs
  /// once, on a callback thread, when it is stopped (posted at once when it is not
  /// running). Any thread, callbacks and I/O threads included. A null `done`: the stop
  /// is asked for and nothing waits.
  void async_stop(std::function<void(Error)> done);
  /// Blocks until the engine is stopped (by exit(), stop(), a peer close without
  /// auto-reconnect, or an exhausted restart loop) or the timeout passes
  /// (`errc::timeout`). From a callback of this engine: `errc::would_deadlock`.
  Error wait_stopped(std::chrono::milliseconds timeout);
  /// Asks the current session to close and reconnect (as ctx.restart()).
  void restart();
  /// Asks the engine to close and stop without waiting (as ctx.exit()).
  void exit();
  /// Takes the read lock (see PauseGuard).
  PauseGuard pause();
  /// pause() without blocking: `done` gets the guard once the read lock is this
  /// caller's, on a callback thread. Callers get it in turn. A null `done` takes nothing.
  void async_pause(std::function<void(PauseGuard)> done);
  /// The current session's next message, for the holder of the read lock (a
  /// PauseGuard from pause() or async_pause()), without holding a thread while it
  /// waits: `done` gets it, or the error, once, on a callback thread. Errors:
  /// `errc::timeout` after `timeout`, `errc::not_connected` between sessions,
  /// `errc::closed` when the session ends first, `errc::cancelled` when the guard is
  /// released first, `errc::invalid_option` without the read lock or while another
  /// async_read runs. Messages not read this way stay queued for on_message (a
  /// message the read took at the instant the guard went is its result, never
  /// dropped; the readers start once that read returned). A null `done` reads nothing.
  void async_read(std::chrono::milliseconds timeout, std::function<void(Error, InboundMessage)> done);
  /// Queues one message on the current session's send queue and returns at once,
  /// from any thread, callbacks included: it never waits for the network. Errors
  /// known at once: `errc::not_running` before start() and once stopped,
  /// `errc::not_connected` between sessions (unless EngineOptions::outage holds the
  /// message for the next session), `errc::send_queue_full` (see
  /// EngineOptions::send_queue_bytes and OutageOptions), `errc::closed`. A message that fails
  /// later (the connection drops, `write_timeout`) is reported by async_send only;
  /// the connection's end reaches on_read_error / on_close as usual.
  Error send(MessageType type, std::string_view payload);
  /// send(), but a full queue is waited on for up to `room_timeout` (then
  /// `errc::send_queue_full`). For threads of your own: never call it from a callback.
  Error send(MessageType type, std::string_view payload, std::chrono::milliseconds room_timeout);
  /// Queues one message; `done` gets the outcome once, on a callback thread: no error
  /// when its last byte was handed to the kernel, or why it was not sent (the
  /// connection failed or closed first, the close timeout cut it off). Returns an
  /// error, and never calls `done`, when the message is refused at once (as send()).
  /// A message held across an outage (EngineOptions::outage) gets its outcome once a
  /// session sent it, or `errc::expired`, `errc::dropped` or `errc::cancelled`.
  /// The outcome of a message the end of a session decided may run just after
  /// stop() returned: keep what `done` uses alive until it ran. The engine's
  /// destructor returns only after every `done` has run.
  Error async_send(MessageType type, std::string_view payload, SendHandler done);
  /// async_send() with a future: ready with the outcome, or at once with the refusal.
  std::future<Error> async_send(MessageType type, std::string_view payload);
  /// Payload bytes sent on the current session and not yet handed to the kernel.
  std::size_t buffered_amount() const;
  /// send() of a text message.
  Error send_text(std::string_view text) { return send(MessageType::text, text); }
  /// send() of a binary message.
  Error send_binary(std::string_view bytes) { return send(MessageType::binary, bytes); }
  /// The current session's connection, to keep for sending, reading under a
  /// PauseGuard or pinging from another thread; empty (every call fails with
  /// `errc::not_connected`) between sessions. It stays bound to that session.
  SessionConnection connection() const;
  /// Begins a message sent in parts on the current session (see MessageWriter);
  /// `errc::not_connected` between sessions (a message in parts is never held).
  Result<MessageWriter> begin_message(MessageType type);

  /// Live statistics: totals since construction, the open session (messages, bytes,
  /// the send queue, its age, ping round trips), reconnects and the last error. Takes
  /// no lock the message path takes: cheap from any thread at any rate.
  EngineStats stats() const;

  /// Where the engine is in its life cycle (see docs/engine-operations.md).
  EngineState state() const noexcept;
  /// Id of the current or last session (0 before the first).
  std::uint64_t session_id() const noexcept;
  /// The options the engine was made with.
  const EngineOptions& options() const noexcept;

 private:
  std::shared_ptr<detail::EngineCore> core_;
};

}  // namespace wscengine
