// Private: the engine's state machine. See docs/engine-operations.md.
#pragma once

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/container/deque.hpp>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <stop_token>
#include <string>
#include <unordered_map>
#include <vector>

#include <wscengine/adapter.hpp>
#include <wscengine/engine.hpp>

#include "backoff.hpp"
#include "read_lock_fence.hpp"
#include "telemetry_impl.hpp"

namespace wscengine::detail {

/// The engine's queues: per engine and per session, and empty nearly always. A
/// std::deque allocates its map and a first block as soon as it is constructed (about
/// 600 bytes each, three per idle connection); Boost.Container's allocates nothing
/// until its first element.
template <class T>
using Queue = boost::container::deque<T>;

/// Why a session ends; decides what follows its on_close.
enum class EndReason { stop, exit, restart, peer_closed, failed };

class EngineCore;

/// A session's live counters, read by Engine::stats() and SessionConnection::stats()
/// from any thread without a lock. Shared by the session and its send queue, whose
/// completions may outlive the session. Each field has one writer at a time, so an
/// update is a relaxed load and store, no read-modify-write: the reader (in the read
/// lock) for the received ones, the send queue (under its mutex) for the sent and
/// queued ones, the round-trip mutex for the round trips.
struct SessionCounters {
  explicit SessionCounters(std::uint64_t id) : id(id) {}
  static void add(std::atomic<std::uint64_t>& cell, std::uint64_t n) noexcept {
    cell.store(cell.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  static void subtract(std::atomic<std::uint64_t>& cell, std::uint64_t n) noexcept {
    cell.store(cell.load(std::memory_order_relaxed) - n, std::memory_order_relaxed);
  }
  /// A pong came `rtt` after its ping (the heartbeat on an I/O thread, or a user's
  /// ping on any thread: hence the mutex, off the message path).
  void round_trip(std::chrono::nanoseconds rtt) noexcept;
  SessionStats snapshot() const noexcept;

  const std::uint64_t id;
  const std::chrono::steady_clock::time_point opened = std::chrono::steady_clock::now();
  std::atomic<std::uint64_t> messages_received{0}, bytes_received{0}, messages_sent{0}, bytes_sent{0};
  std::atomic<std::uint64_t> queued_messages{0}, queued_bytes{0};
  std::atomic<std::int64_t> rtt_ns{-1}, smoothed_rtt_ns{-1};  // -1: no pong yet
  std::mutex rtt_mutex;
};

/// An engine's totals for Engine::stats(). The sent ones have more than one writer
/// (an old session's send queue may drain while the next session runs), so fetch_add;
/// the received ones one at a time, as a session's (see EngineCore::count_received).
/// Shared with the send queues, whose completions may run after the engine is gone.
struct EngineTotals {
  std::atomic<std::uint64_t> messages_received{0}, bytes_received{0}, messages_sent{0}, bytes_sent{0};
  std::atomic<std::uint64_t> sessions{0}, reconnects{0};
  // Sends held across an outage: written under EngineCore::mutex_, read by stats().
  std::atomic<std::uint64_t> held_messages{0}, held_bytes{0}, sends_expired{0}, sends_dropped{0};
};

/// A send of an engine that holds sends across outages (EngineOptions::outage): held
/// while no session can take it, then handed to a session with a copy of its payload,
/// so that a session that ends before sending it can hold it again.
struct HeldSend {
  std::uint64_t order = 0;  // the engine's send order: held messages go out in it
  MessageType type = MessageType::text;
  std::shared_ptr<const std::string> payload;
  SendHandler done;                                  // the user's, or empty (Engine::send)
  std::chrono::steady_clock::time_point deadline{};  // when held: given up after this
};

/// A session's send queue: messages handed to the adapter whose bytes have not all
/// reached the kernel yet (EngineOptions::send_queue_bytes / send_queue_messages).
/// Shared with the completions of the adapter's async_write, which may outlive the
/// session. It holds no runtime: a completion the adapter destroys on an I/O thread
/// must not end the runtime there. Thread safety: its own mutex.
class SendQueue : public std::enable_shared_from_this<SendQueue> {
 public:
  SendQueue(std::size_t max_bytes, std::size_t max_messages, EngineCore& core,
            std::shared_ptr<SessionCounters> counters, std::shared_ptr<EngineTotals> totals)
      : max_bytes_(max_bytes),
        max_messages_(max_messages),
        core_(core),
        counters_(std::move(counters)),
        totals_(std::move(totals)) {}

  /// Queues one message on `connection`, or refuses it at once (`errc::send_queue_full`,
  /// or the adapter's error when it knows the outcome at once and there is no handler).
  /// `done`, when set, gets the outcome on a callback thread. With `room_timeout` > 0 a
  /// full queue is waited on for up to that long (never on a callback thread).
  /// `over_limits`: taken even beyond the limits (held sends, admitted by their own).
  Error send(Connection& connection, MessageType type, std::string_view payload, SendHandler done,
             std::chrono::milliseconds room_timeout = std::chrono::milliseconds(0), bool over_limits = false);
  /// Payload bytes queued and not yet handed to the kernel.
  std::size_t buffered_amount() const;

  /// Streamed sends (MessageWriter): opens a message sent in parts. Until end_parts(),
  /// the session's other sends are taken (within the limits, copied) and wait behind
  /// it. One such message at a time.
  Error begin_parts();
  /// Queues one part of that message, within the same limits as send(); `whole` for a
  /// message finished before any part was written.
  Error send_part(Connection& connection, MessageType type, std::string_view payload, MessagePart part,
                  SendHandler done);
  /// The message in parts is over (its last part queued, or given up): the sends that
  /// waited behind it go to `connection`, in order.
  void end_parts(Connection& connection);

 private:
  // Admits a send of `size` within the limits (or `over_limits`), counting it queued.
  Error admit_locked(std::unique_lock<std::mutex>& lock, std::size_t size, std::chrono::milliseconds room_timeout,
                     bool over_limits);
  // Hands an admitted send to the adapter (a part with `part`; whole otherwise).
  Error hand(Connection& connection, MessageType type, std::string_view payload, MessagePart part, SendHandler done);
  void finished(std::size_t size, bool sent, bool message_done = true);

  struct Waiting {  // a send taken while a message in parts was open
    MessageType type;
    std::string payload;
    SendHandler done;
  };
  // Held while a send is handed to the adapter, so that the adapter gets them in the
  // order they were let through; never held while waiting for room nor by a completion.
  std::mutex order_mutex_;
  bool in_parts_ = false;   // (mutex_) a message in parts is open
  bool draining_ = false;   // (mutex_) end_parts() is handing waiting_ on
  Queue<Waiting> waiting_;  // (mutex_)

  mutable std::mutex mutex_;
  std::condition_variable room_;
  std::size_t bytes_ = 0;     // (mutex_)
  std::size_t messages_ = 0;  // (mutex_)
  const std::size_t max_bytes_, max_messages_;
  EngineCore& core_;                                 // posts the send handlers; waits for them before it is destroyed
  const std::shared_ptr<SessionCounters> counters_;  // the session's (Engine::stats())
  const std::shared_ptr<EngineTotals> totals_;       // the engine's
};

/// One opened connection, from on_open to on_close. Fields marked (m) are guarded by
/// EngineCore::mutex_.
class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(std::uint64_t id, std::unique_ptr<Connection> connection, std::shared_ptr<Runtime> runtime)
      : id(id),
        counters(std::make_shared<SessionCounters>(id)),
        runtime(std::move(runtime)),
        connection(std::move(connection)),
        untraced_connection(detail::untraced(*this->connection)) {}

  const std::uint64_t id;
  const std::shared_ptr<SessionCounters> counters;  // SessionConnection::stats(), Engine::stats()
  // The connection may reference the runtime's I/O context: keep it alive longer.
  const std::shared_ptr<Runtime> runtime;
  const std::unique_ptr<Connection> connection;
  // `connection` without the telemetry decorator: messages left out by
  // TelemetryOptions::message_sample_ratio are read there (see detail::untraced).
  Connection& untraced_connection;
  std::stop_source stop;
  std::shared_ptr<SendQueue> sends;  // set right after construction, then read-only
  bool streamed_writes = false;      // the adapter sends in parts (set as `sends`)
  // What Context::connection() returns: made once, so a callback's Context costs no
  // reference counting (set right after construction, then read-only).
  SessionConnection handle;

  bool current = false;                            // (m) the engine's running session
  std::atomic<bool> ending{false};                 // (m to write) shutdown requested; the reader's fast path reads it
  EndReason end_reason = EndReason::restart;       // (m)
  std::optional<EndReason> end_requested_in_open;  // (m) restart/exit asked during on_open
  std::optional<CloseFrame> received_close;        // (m)
  CloseInitiator initiator = CloseInitiator::client;  // (m)
  bool reader_running = false;                        // (m) a reader task runs or its wait is armed
  bool finish_scheduled = false;                      // (m) on_close posted
  std::size_t in_flight = 0;                          // (m) on_message running
  std::size_t unsettled = 0;                          // (m) held-mode sends handed to it, outcome not yet known
  // On the heap while unused, as the engine's rare state (EngineCore::start_result_).
  std::unique_ptr<boost::asio::steady_timer> heartbeat;  // (m) next ping, when ping_interval > 0
  std::unique_ptr<Error> dead;                           // (m) why the heartbeat or the watchdog ended it
  std::unique_ptr<boost::asio::steady_timer> watchdog;   // (m) next silence check, when max_silence > 0
  std::uint64_t watchdog_seen = 0;                       // (m) next_sequence at the last check
  std::chrono::milliseconds silent_for{0};               // (m) silence counted so far
  std::unique_ptr<Span> run_span;                        // from on_open's success to the end of shutdown
  TraceContext run_trace;                                // parent of the session's callback spans
  std::atomic<std::uint64_t> next_sequence{0};           // written by the reader in the read lock, read by heartbeat()
  std::atomic<std::uint64_t> parts_read{0};              // streamed parts after a first: as next_sequence
  std::vector<std::unique_ptr<InboundMessage>> free_buffers;  // (m)
  std::vector<std::uint32_t> free_slots;                      // (m) reader slots not in on_message

  // Keyed dispatch (EngineOptions::message_key): a key is in the map while one
  // on_message of it runs; messages of that key read meanwhile wait in its queue and
  // run on the same slot, in sequence order, when it returns.
  struct Parked {
    std::unique_ptr<InboundMessage> buffer;
    std::uint64_t sequence = 0;
    std::uint64_t offset = 0;  // a streamed part's Message::offset
    bool sampled = true;       // TelemetryOptions::message_sample_ratio chose it
  };
  std::unordered_map<std::string, Queue<Parked>> busy_keys;  // (m)
  std::size_t parked = 0;                                    // (m) messages waiting in busy_keys

  // The streamed message being delivered (EngineOptions::stream). Only the reader in
  // the read lock (or alone on the session's one slot) touches it.
  struct Streamed {
    bool open = false;           // its first part was delivered, its last not yet
    std::uint64_t sequence = 0;  // the message's sequence, shared by its parts
    std::uint64_t offset = 0;    // bytes delivered so far
    std::string carry;           // a text part's incomplete last code point, for the next part
    std::string key;             // its key (message_key of the first part; parts are keyed)
  };
  Streamed streamed;
};

/// What the heartbeat and the watchdog count as data read: messages, and the parts of
/// a streamed message after its first (a long message is not silence).
inline std::uint64_t reads_seen(const Session& s) noexcept {
  return s.next_sequence.load(std::memory_order_relaxed) + s.parts_read.load(std::memory_order_relaxed);
}

/// EngineOptions::on_control_frame: what the adapters report (DialRequest::
/// control_frames, on I/O threads, maybe inside their locks) is queued here and handed
/// to the user's function on a callback thread, one event at a time, in order. The
/// round trip of a pong is measured here, from the ping this side sent. Outlives the
/// engine in the adapters' handlers: detach() (before the engine waits for its tasks)
/// makes it drop what comes later.
class ControlFrameRelay : public std::enable_shared_from_this<ControlFrameRelay> {
 public:
  static constexpr std::size_t kMaxWaiting = 1024;
  explicit ControlFrameRelay(EngineCore& core) : core_(core) {}
  /// The sink for the connection of session `session` (DialRequest::control_frames).
  ControlFrameSink sink_for(std::uint64_t session);
  void detach();

 private:
  void seen(std::uint64_t session, ControlFrameKind kind, std::string_view payload);
  void drain();  // a callback thread

  EngineCore& core_;
  std::mutex mutex_;
  bool attached_ = true;              // (mutex_) false once detached
  Queue<ControlFrameEvent> waiting_;  // (mutex_)
  bool draining_ = false;             // (mutex_) a drain is posted or running
  struct SentPing {
    std::uint64_t session;
    std::string payload;
    std::chrono::steady_clock::time_point at;
  };
  Queue<SentPing> pings_;  // (mutex_) sent, not yet answered; the latest 16
};

/// One dial attempt: dial + handshake + on_open under open_timeout.
struct Attempt {
  explicit Attempt(boost::asio::io_context& io) : timer(io) {}
  bool restarting = false;                 // a reconnect attempt (not the first dial of a start)
  std::unique_ptr<Connection> connection;  // until the session takes it
  std::shared_ptr<Session> session;        // during on_open
  bool timed_out = false;                  // (m)
  boost::asio::steady_timer timer;
  std::unique_ptr<Span> span;  // wscengine.open / wscengine.restart
  TraceContext trace;
  DialRequest request;             // the last hop's, for the next one after a redirect
  std::vector<std::string> chain;  // the URLs dialled, when redirected
  bool permanent_so_far = true;    // every redirect so far was 301 or 308
};

class EngineCore : public std::enable_shared_from_this<EngineCore> {
 public:
  EngineCore(EngineOptions options, std::shared_ptr<Client> client, std::shared_ptr<Connector> connector,
             std::shared_ptr<Runtime> runtime);
  ~EngineCore();

  /// `on_result` set: returns at once, and `on_result` gets start()'s result on a
  /// callback thread (Engine::async_start).
  Error start(bool background, std::function<void(Error)> on_result = nullptr);
  Error stop();
  /// Asks for the stop; `done` runs on a callback thread once stopped.
  void stop_async(std::function<void(Error)> done);
  bool request_stop(std::unique_ptr<Span>& span);
  Error wait_stopped(std::chrono::milliseconds timeout);
  void request_end(const std::shared_ptr<Session>& session, EndReason reason);
  void pause();
  /// `granted` runs on a callback thread once this caller holds the read lock.
  void pause_async(std::function<void()> granted);
  /// Engine::async_read: the current session's next message, read for the holder of
  /// the read lock without holding a thread.
  void read_paused_async(std::chrono::milliseconds timeout, std::function<void(Error, InboundMessage)> done);
  void resume();
  bool reader_inside_on_this_thread() const noexcept;
  Error send(MessageType type, std::string_view payload, SendHandler done = nullptr,
             std::chrono::milliseconds room_timeout = std::chrono::milliseconds(0));
  std::size_t buffered_amount() const;
  EngineStats stats() const;
  std::shared_ptr<Session> current_session() const;
  EngineState state() const noexcept;
  std::uint64_t session_id() const noexcept { return session_counter_.load(); }
  const EngineOptions& options() const noexcept { return options_; }
  /// Waits until no task of this engine is queued or running (destruction); control
  /// frames reported after this began are dropped.
  void join_tasks();
  /// Wraps an async_send handler for the adapter: called on an adapter thread, it
  /// posts `done` to the callback threads. Counted from now until it has been called
  /// or destroyed, so that the engine's destruction waits for every send outcome.
  Connection::DoneHandler send_outcome(SendHandler done);

 private:
  using Lock = std::unique_lock<std::mutex>;

  friend class ControlFrameRelay;  // posts its drains as the engine's tasks

  // Tasks and handlers are counted so that destruction can wait for them.
  template <class F>
  void post(F&& f);
  template <class F>
  auto counted(F&& f);

  void begin_attempt(bool restarting, std::uint64_t generation);
  void on_dialed(const std::shared_ptr<Attempt>& attempt, Result<HandshakeResponse> result);
  void attempt_failed(const std::shared_ptr<Attempt>& attempt, Error error);
  void dial(const std::shared_ptr<Attempt>& attempt, DialRequest request);
  void follow_redirect(const std::shared_ptr<Attempt>& attempt, const Error& answer);
  void schedule_retry(std::chrono::milliseconds delay);
  void task_done() noexcept;

  void run_reader(std::shared_ptr<Session> s, Error wait_error);
  void start_reader(const std::shared_ptr<Session>& s, Error wait_error = {});
  void reader_woken(const std::shared_ptr<Session>& s, Error e);
  Error poll_briefly(Session& s, Connection& connection, InboundMessage& buffer);
  Error read_now(Session& s, Connection& connection, InboundMessage& buffer, bool on_io_thread);
  Error read_untraced(Session& s, InboundMessage& buffer, bool on_io_thread);
  bool shape_part(Session& s, InboundMessage& part, std::uint64_t& offset);
  std::uint64_t sequence_of(Session& s, MessagePart part);
  void deliver(const std::shared_ptr<Session>& s, const InboundMessage& inbound, std::uint64_t sequence,
               std::uint64_t offset, std::uint32_t slot, bool sampled);
  bool sample_message() const noexcept;
  std::unique_ptr<InboundMessage> take_buffer_locked(Session& s);
  void stop_reader_locked(const std::shared_ptr<Session>& s);
  void release_slot_locked(Session& s, std::uint32_t slot);
  void leave_read_lock_locked();
  void grant_async_pauser_locked();
  void set_start_result_locked(Error result);
  bool enter_read_lock(const Session& s);
  void leave_read_lock();
  static std::uint64_t take_sequence(Session& s);
  bool handle_read_error(const std::shared_ptr<Session>& s, Error error);
  void kick_reader_locked(const std::shared_ptr<Session>& s);
  void schedule_heartbeat_locked(const std::shared_ptr<Session>& s);
  void heartbeat(const std::shared_ptr<Session>& s);
  void heartbeat_answered(const std::shared_ptr<Session>& s, std::uint64_t read_before, Error error);
  void schedule_watchdog_locked(const std::shared_ptr<Session>& s);
  void watchdog_tick(const std::shared_ptr<Session>& s);
  void report_read_error(const std::shared_ptr<Session>& s, const Error& error);
  /// Keeps `error` as EngineStats::last_error.
  void note_error(const Error& error);
  void count_received(Session& s, std::size_t bytes, bool message_done = true) noexcept;
  /// Whether a reader may start or go on reading for `s` (nothing stops it).
  bool reader_may_run_locked(const Session& s) const;
  std::string message_key(const InboundMessage& inbound, std::uint64_t sequence) const;

  bool request_shutdown_locked(const std::shared_ptr<Session>& s, EndReason reason, std::optional<CloseFrame> received,
                               CloseInitiator who);
  void maybe_finish_locked(const std::shared_ptr<Session>& s);
  void finish_session(std::shared_ptr<Session> s);
  void after_close(std::shared_ptr<Session> s, std::shared_ptr<Span> shutdown_span, EndReason reason,
                   Error close_error);
  void report_close_error(Context& ctx, Span* shutdown_span, const Error& error);
  void set_stopped_locked(Error result);

  // Sends across an outage (EngineOptions::outage; docs/engine-operations.md).
  /// Whether a send now goes to `s` directly: nothing held or unsettled comes first.
  bool sends_go_direct_locked(const Session* s) const;
  /// Whether the engine will open another session that could take a held send.
  bool may_hold_locked() const;
  Error hold_locked(MessageType type, std::string_view payload, SendHandler done);
  void insert_held_locked(HeldSend held);
  void drop_oldest_locked(std::size_t incoming_bytes);
  void give_up_held_locked(HeldSend& held, Error error);
  void give_up_all_held_locked();
  void publish_held_locked();
  void arm_hold_timer_locked();
  void hold_timer_fired();
  /// Hands every held send to the open session, in order (releases the lock meanwhile).
  void flush_held(Lock& lock);
  /// Hands one send to `s`; its outcome comes back to settle().
  void send_tracked(const std::shared_ptr<Session>& s, HeldSend held, std::chrono::milliseconds room_timeout,
                    bool over_limits, Error* refused);
  void settle(const std::shared_ptr<Session>& s, HeldSend held, Error error);
  void unsettle_locked(Session& s);

  template <class F>
  auto call_user(const std::unique_ptr<Span>& span, F&& f);
  template <class F>
  auto traced(const TraceContext& trace, F&& f);
  template <class F>
  auto traced_per_message(const TraceContext& session, F&& f);
  /// A span when a tracer is configured, else nullptr (no cost).
  std::unique_ptr<Span> start_span(std::string_view name, const TraceContext& parent) const;
  std::unique_ptr<Span> start_linked_span(std::string_view name, const TraceContext& session) const;
  void set_connection_state(ConnectionState from, ConnectionState to) const;

  const EngineOptions options_;
  const std::shared_ptr<Client> client_;
  const std::shared_ptr<Connector> connector_;
  const std::shared_ptr<Runtime> runtime_;
#ifdef WSCENGINE_NO_TELEMETRY
  // Telemetry compiled out (CMake WSCENGINE_TELEMETRY=OFF): every branch on these
  // is removed at compile time.
  static constexpr Tracer* tracer_ = nullptr;
  static constexpr Metrics* metrics_ = nullptr;
#else
  Tracer* const tracer_;    // options_.telemetry.tracer, or null
  Metrics* const metrics_;  // options_.telemetry.metrics, or null
#endif
  // TelemetryOptions::message_sample_ratio: sample_all_ when it is 1, else
  // ln(1 - ratio) for sample_message()'s countdown (0 when the ratio is 0).
  const bool sample_all_;
  const double log_unsampled_;

  mutable std::mutex mutex_;
  std::condition_variable state_cv_;  // state changes, pause gate, task count
  EngineState state_ = EngineState::idle;
  bool stop_requested_ = false;
  bool exit_requested_ = false;
  bool background_ = false;
  bool opened_in_run_ = false;  // a session opened since start(): later on_open are restarts
  // Rare or short-lived state lives on the heap, so that an idle engine does not keep
  // its room (an optional keeps the whole object inline; docs/benchmarks.md).
  std::unique_ptr<Error> start_result_;                   // set when a blocking start has its answer
  std::function<void(Error)> start_waiter_;               // async_start's, until start_result_
  std::vector<std::function<void(Error)>> stop_waiters_;  // async_stop's, until stopped
  Queue<std::function<void()>> async_pausers_;            // async_pause's, in turn
  // Engine::async_read's read in progress (one at a time: the read lock has one holder).
  struct PausedRead {
    explicit PausedRead(boost::asio::io_context& io) : timer(io) {}
    std::shared_ptr<Session> session;
    std::function<void(Error, InboundMessage)> done;
    boost::asio::steady_timer timer;
    bool waiting = false;  // its wait on the connection is armed
    // Its try_read runs (outside mutex_): a timeout or resume() meanwhile only asks
    // for the end (end_asked), and the step ends the read when its read returns, with
    // the message it took if it took one (never dropped), then resumes if asked.
    bool reading = false;
    std::optional<Error> end_asked;
    bool resume_after = false;
  };
  std::shared_ptr<PausedRead> paused_read_;  // (m)
  void paused_read_step(const std::shared_ptr<PausedRead>& read, Error wait_error);
  void finish_paused_read_locked(const std::shared_ptr<PausedRead>& read, Error error, InboundMessage message);
  void arm_paused_read_locked(const std::shared_ptr<PausedRead>& read);
  void end_paused_read_locked(const std::shared_ptr<PausedRead>& read, Error why);
  void resume_locked();
  std::shared_ptr<Session> current_;
  std::shared_ptr<Attempt> attempt_;
  std::unique_ptr<Url> redirected_url_;  // where a permanent redirect pointed; reset by start()
  std::unique_ptr<boost::asio::steady_timer> retry_timer_;
  // From start() until stopped, a running engine is outstanding work of its io_context,
  // as an Asio operation is: an application's io_context (runtime_on) keeps running
  // while the only work in hand is a callback on the pool or a handshake's answer.
  std::optional<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> io_work_;
  std::uint32_t retry_count_ = 0;  // failed attempts in a row (on_restart_error, max_attempts)
  RestartBackoff backoff_;         // (m) the delays between attempts
  // busy_poll is set and the adapter's try_read can find new bytes by itself.
  const bool polls_;
  std::atomic<std::uint64_t> session_counter_{0};
  TraceContext start_trace_;     // (m) parent of the first attempt of a start
  TraceContext last_run_trace_;  // (m) parent of the restart after a session
  // Tasks and handlers not yet run. Increments need no mutex: while join_tasks
  // waits, only tasks that are counted themselves add more.
  std::atomic<std::size_t> pending_tasks_{0};
  std::mutex tasks_mutex_;              // decrements and join_tasks
  std::condition_variable tasks_idle_;  // pending_tasks_ reached zero
  std::uint64_t generation_ = 0;        // one per start(): stale tasks of an earlier run do nothing

  // The read lock: a user's PauseGuard or a reader inside try_read/on_read_error.
  // user_paused_ and pausers_waiting_ change under mutex_; so does reader_inside_,
  // except that a reader keeping its slot enters and leaves without it
  // (enter_read_lock, leave_read_lock): a Dekker pair with pause(), ordered by the
  // fences of fence_mode_ (read_lock_fence.hpp).
  const FenceMode fence_mode_;
  std::atomic<bool> user_paused_{false};
  std::atomic<bool> reader_inside_{false};
  std::atomic<std::size_t> pausers_waiting_{0};
  std::shared_ptr<Session> parked_reader_;

  const std::shared_ptr<ControlFrameRelay> control_relay_;  // on_control_frame is set

  // Sends across an outage: all (m).
  const bool holds_sends_;             // options_.outage.mode is not fail
  Queue<HeldSend> held_;               // by order
  std::size_t held_bytes_ = 0;         // payload bytes in held_
  std::uint64_t send_order_ = 0;       // the last order given
  std::size_t retired_unsettled_ = 0;  // unsettled sends of sessions no longer current
  bool flushing_ = false;              // flush_held() runs
  std::unique_ptr<boost::asio::steady_timer> hold_timer_;
  bool hold_timer_armed_ = false;

  // Engine::stats(): the totals, and the rest under stats_mutex_, which no message takes.
  const std::shared_ptr<EngineTotals> totals_ = std::make_shared<EngineTotals>();
  mutable std::mutex stats_mutex_;
  std::shared_ptr<SessionCounters> latest_counters_;     // (stats_mutex_) the open session's, or the last one's
  bool session_open_ = false;                            // (stats_mutex_) latest_counters_ is the open session's
  std::unique_ptr<Error> last_error_;                    // (stats_mutex_)
  std::chrono::system_clock::time_point last_error_at_;  // (stats_mutex_)
};

}  // namespace wscengine::detail
