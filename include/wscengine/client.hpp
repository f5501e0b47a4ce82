// wscengine — the user's side: the six callbacks and their context.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <future>
#include <memory>
#include <optional>
#include <stop_token>
#include <string_view>

#include <wscengine/connection.hpp>
#include <wscengine/error.hpp>
#include <wscengine/message.hpp>
#include <wscengine/stats.hpp>
#include <wscengine/telemetry.hpp>

namespace wscengine {

namespace detail {
class EngineCore;
class Session;
}  // namespace detail

class Engine;

/// Who closed a session.
enum class CloseInitiator {
  client,  ///< stop(), restart(), exit(), or a failed heartbeat
  peer,    ///< the server's close frame, or the network (drop)
};

/// The read lock held as an RAII guard. While a PauseGuard lives no reader slot
/// reads, so the holder may read and write on the connection by hand
/// (request/response without ids). Release it to resume reading. Taking it waits
/// only for a read in progress, never for the network.
///
/// Thread safety: one guard is owned by one thread; guards taken on the same
/// engine exclude each other. Movable, not copyable.
class PauseGuard {
 public:
  /// An empty guard that holds nothing.
  PauseGuard() = default;
  /// Takes over `other`'s lock; `other` becomes empty.
  PauseGuard(PauseGuard&& other) noexcept;
  /// Releases this guard's lock, then takes over `other`'s.
  PauseGuard& operator=(PauseGuard&& other) noexcept;
  ~PauseGuard();
  /// Resumes reading now instead of at destruction.
  void unlock();
  /// False for an empty guard, or one taken where the read lock is already held
  /// (inside on_read_error), which then releases nothing.
  bool owns_lock() const noexcept { return core_ != nullptr; }

 private:
  friend class Engine;   // Engine::pause()
  friend class Context;  // Context::pause()
  explicit PauseGuard(std::shared_ptr<detail::EngineCore> core);

  std::shared_ptr<detail::EngineCore> core_;
};

/// Receives the outcome of an asynchronous send, once, on a callback thread.
using SendHandler = std::function<void(Error)>;

/// A message sent in parts (SessionConnection::begin_message, Engine::begin_message),
/// for a message too large to hold whole or made while it is sent: write() each part,
/// then finish(). Each part goes out as one frame as soon as the queue takes it;
/// control frames (pongs, pings, the close) still go ahead of what is queued. The
/// session's other sends, from any thread, are taken meanwhile (within the send
/// queue's limits, as copies) and go out after the last part, in order. A part that
/// does not fit the queue is refused with `errc::send_queue_full` and may be written
/// again: the queue holds at most `send_queue_bytes`, so a message of any size costs
/// only what is in flight. Text is sent as written (parts may cut code points); a
/// peer fails invalid text with 1007. Destroyed before finish(), the writer drops the
/// connection (a peer would otherwise wait for the rest forever, or take a cut message
/// for whole): the session ends as a drop and the sends that waited fail (or are held
/// again with OutageSends::hold). The adapter must have
/// AdapterCapabilities::streamed_writes (Beast, websocketpp, memory).
///
/// Thread safety: one writer is used by one thread at a time; movable, not copyable.
class MessageWriter {
 public:
  /// Bound to no message: every call fails with `errc::not_connected`.
  MessageWriter() = default;
  /// Takes over `other`'s message; `other` becomes empty.
  MessageWriter(MessageWriter&& other) noexcept;
  /// Gives up this writer's message (see the class), then takes over `other`'s.
  MessageWriter& operator=(MessageWriter&& other) noexcept;
  ~MessageWriter();
  /// Queues the next part and returns at once, never waiting for the network. With
  /// `done`, its outcome comes there (once the part reached the kernel) and the call
  /// returns only refusals.
  Error write(std::string_view part, SendHandler done = {});
  /// Queues the last part (it may be empty): the message is whole, and the sends that
  /// waited behind it go. The writer is then done; on a refusal
  /// (`errc::send_queue_full`) it is not, and finish() may be called again.
  Error finish(std::string_view last_part = {}, SendHandler done = {});
  /// True from begin_message until finish() took the last part.
  bool active() const noexcept { return active_; }

 private:
  friend class SessionConnection;  // begin_message()
  MessageWriter(std::weak_ptr<detail::Session> session, MessageType type);
  Error send(std::string_view part, bool last, SendHandler done);
  void give_up() noexcept;

  std::weak_ptr<detail::Session> session_;
  MessageType type_ = MessageType::binary;
  bool active_ = false;
  bool started_ = false;  // its first part was queued
};

/// The connection of one session, for sending and (in on_open or while paused)
/// reading by hand. Copyable; a copy does not keep the session alive: once the
/// session is over every call fails (`errc::not_connected`, or `errc::closed` while
/// the ended session is still being released).
///
/// Thread safety: send and ping may be called from any thread at any time; whole
/// messages never interleave. read must be called only where no reader runs
/// (on_open, on_close, or under a PauseGuard).
class SessionConnection {
 public:
  /// Bound to no session: every call fails with `errc::not_connected`.
  SessionConnection() = default;

  /// Queues one whole message and returns at once (see Engine::send): never waits
  /// for the network; `errc::send_queue_full` when the session's queue is at its limit.
  Error send(MessageType type, std::string_view payload) const;
  /// As Engine::async_send, on this session.
  Error async_send(MessageType type, std::string_view payload, SendHandler done) const;
  /// As Engine::async_send with a future, on this session.
  std::future<Error> async_send(MessageType type, std::string_view payload) const;
  /// Payload bytes sent on this session and not yet handed to the kernel.
  std::size_t buffered_amount() const noexcept;
  /// Begins a message sent in parts (see MessageWriter). Refused with
  /// `errc::invalid_option` while another one is being sent on this session, and with
  /// `errc::unsupported` when the adapter cannot send in parts.
  Result<MessageWriter> begin_message(MessageType type) const;
  /// send() of a text message.
  Error send_text(std::string_view text) const { return send(MessageType::text, text); }
  /// send() of a binary message.
  Error send_binary(std::string_view bytes) const { return send(MessageType::binary, bytes); }
  /// Reads the next message by hand (on_open, on_close, or under a PauseGuard) into
  /// `out`, an InboundMessage that owns its bytes (on_message gets the borrowed Message).
  Error read(InboundMessage& out, std::chrono::milliseconds timeout) const;
  /// Sends a ping and waits for a pong.
  Error ping(std::string_view payload, std::chrono::milliseconds timeout) const;
  /// Drops the connection at once, without a close handshake: for a peer found
  /// dead (no pong). The session then ends as a drop (on_close with 1006) and the
  /// engine reconnects if auto_reconnect is on.
  void abort() const noexcept;
  /// True while the session's connection is open.
  bool is_open() const noexcept;
  /// This session's statistics (a snapshot without a lock; see SessionStats), also
  /// after it ended while the engine still holds it; session_id 0 when bound to none
  /// or once the session is gone.
  SessionStats stats() const noexcept;
  /// The session's id, or 0 when bound to none.
  std::uint64_t session_id() const noexcept;
  /// The adapter's library object (see Underlying::as).
  Underlying underlying() const noexcept;

 private:
  friend class Engine;              // Engine::connection()
  friend class detail::EngineCore;  // binds each session's connection
  explicit SessionConnection(std::weak_ptr<detail::Session> session);

  std::weak_ptr<detail::Session> session_;
};

/// What every callback receives: the connection, the session id, the trace
/// context, a cancellation token, and the restart/exit/pause controls. Valid only
/// during the callback; copy `connection()` to keep sending later.
///
/// Thread safety: use it on the callback's thread. restart() and exit() may also
/// be called from other threads through Engine.
class Context {
 public:
  /// The session's connection (empty in on_restart_error, whose attempt failed).
  const SessionConnection& connection() const noexcept { return *connection_; }
  /// Sessions are numbered 1, 2, … per engine; 0 when there is none.
  std::uint64_t session_id() const noexcept;
  /// The trace context of the span running this callback.
  const TraceContext& trace_context() const noexcept { return trace_; }
  /// Requested when the session starts to shut down; on_close's token is already
  /// requested. Blocking work in callbacks should watch it.
  std::stop_token stop_token() const noexcept;
  /// stop_token().stop_requested().
  bool cancelled() const noexcept { return stop_token().stop_requested(); }

  /// Ask the engine to close this connection and reconnect.
  void restart();
  /// Ask the engine to close this connection and stop for good.
  void exit();
  /// Takes the read lock (see PauseGuard).
  PauseGuard pause();

  /// on_close only: who closed the session.
  CloseInitiator initiator() const noexcept { return initiator_; }

 private:
  friend class detail::EngineCore;  // makes one per callback and sets what it reports
  // The engine keeps `session` alive while the callback runs (a Context holds no
  // reference of its own: none per message).
  Context(detail::EngineCore& core, detail::Session* session);
  void set_initiator(CloseInitiator who) noexcept { initiator_ = who; }
  void set_trace_context(const TraceContext& trace) noexcept { trace_ = trace; }

  detail::EngineCore* core_;
  detail::Session* session_;
  const SessionConnection* connection_;
  TraceContext trace_;
  CloseInitiator initiator_ = CloseInitiator::client;
};

/// The user's client: six callbacks. Override what you need; only on_message is
/// required. Callbacks never run concurrently with themselves except on_message
/// (up to reader_slots at once). An exception escaping on_open fails the open;
/// one escaping on_message is reported to on_read_error as
/// `errc::io_error` and reading goes on; others are swallowed.
///
/// Thread safety: callbacks run on the runtime's callback threads (on_message and
/// on_read_error on its I/O threads with Delivery::io_thread); make the client's own
/// state safe for reader_slots > 1.
class Client {
 public:
  virtual ~Client() = default;

  /// After each (re)connect, before any reader runs. Read and write by hand here
  /// (log in, subscribe). Return an error to refuse the connection.
  virtual Error on_open(Context& ctx, const HandshakeResponse& response, bool restarting);
  /// One complete message. `message.payload` is valid until this returns.
  virtual void on_message(Context& ctx, const Message& message) = 0;
  /// A read failed for a reason other than the connection closing. Runs under the
  /// read lock. Reading resumes after it unless restart/exit was asked or the
  /// connection is closed.
  virtual void on_read_error(Context& ctx, const Error& error);
  /// Exactly once per opened session. `received` is the peer's close frame, 1006
  /// for a drop, or nullopt when the engine closes. Return the frame to send, or
  /// nullopt for the default (1000 for stop(), 1001 otherwise).
  virtual std::optional<CloseFrame> on_close(Context& ctx, const std::optional<CloseFrame>& received);
  /// Closing the connection failed during shutdown.
  virtual void on_close_error(Context& ctx, const Error& error);
  /// A reconnect attempt failed; `retry_count` counts failed attempts in a row.
  /// Call ctx.exit() to stop retrying; ctx.restart() does nothing here (there is no
  /// connection to close, and the next attempt follows the backoff). When the restart loop gives up after this
  /// (the retry policy said so — by default on HTTP 400/401/403/404/405/410/426, a
  /// redirect not followed or a certificate that does not verify — or
  /// `backoff.max_attempts` is reached), the error's
  /// detail ends with "not retried: <why>" and the engine stops after it returns.
  virtual void on_restart_error(Context& ctx, const Error& error, std::uint32_t retry_count);
};

/// A Client made of lambdas; unset ones do what Client's defaults do.
/// Thread safety: as Client.
class LambdaClient final : public Client {
 public:
  std::function<Error(Context&, const HandshakeResponse&, bool)> open{};  ///< on_open
  std::function<void(Context&, const Message&)> message{};                ///< on_message
  std::function<void(Context&, const Error&)> read_error{};               ///< on_read_error
  /// on_close
  std::function<std::optional<CloseFrame>(Context&, const std::optional<CloseFrame>&)> close{};
  std::function<void(Context&, const Error&)> close_error{};                   ///< on_close_error
  std::function<void(Context&, const Error&, std::uint32_t)> restart_error{};  ///< on_restart_error

  Error on_open(Context& ctx, const HandshakeResponse& r, bool restarting) override;
  void on_message(Context& ctx, const Message& m) override;
  void on_read_error(Context& ctx, const Error& e) override;
  std::optional<CloseFrame> on_close(Context& ctx, const std::optional<CloseFrame>& received) override;
  void on_close_error(Context& ctx, const Error& e) override;
  void on_restart_error(Context& ctx, const Error& e, std::uint32_t n) override;
};

}  // namespace wscengine
