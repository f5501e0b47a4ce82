#include <wscengine/engine.hpp>

#include <boost/asio/post.hpp>

#include <algorithm>
#include <cmath>
#include <exception>
#include <optional>
#include <thread>
#include <type_traits>

#include "engine_core.hpp"
#include "random.hpp"
#include "redirect.hpp"
#include "runtime_impl.hpp"
#include "telemetry_impl.hpp"

namespace wscengine {
namespace detail {
namespace {

// The engine whose callback this thread is running, and whether it is the reader
// inside the read lock: lets stop()/start()/pause() avoid waiting for themselves.
thread_local const EngineCore* t_callback_engine = nullptr;
thread_local const EngineCore* t_reader_engine = nullptr;
// Set while a reader arms its wait: an adapter that completes the wait at once (data
// came meanwhile) calls the handler inside async_wait_readable, where reading inline
// would recurse; the handler posts instead.
thread_local bool t_arming_wait = false;

// A ratio in (0, 1) as ln(1 - ratio), what the sampling countdown draws its gaps with;
// 0 for a ratio of 0 (nothing is sampled) or 1 (everything is).
double log_of_unsampled_share(double ratio) {
  if (!(ratio > 0) || ratio >= 1.0) return 0;
  return std::log1p(-ratio);
}

struct CallbackScope {
  explicit CallbackScope(const EngineCore* core) : saved(t_callback_engine) { t_callback_engine = core; }
  ~CallbackScope() { t_callback_engine = saved; }
  const EngineCore* saved;
};

// RFC 6455 §7.4: which codes an endpoint may send, and the 123-byte reason limit.
Error validate_close_frame(const CloseFrame& frame) {
  auto code = frame.code;
  bool sendable = (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1011) || (code >= 3000 && code <= 4999);
  if (!sendable) {
    return Error(errc::invalid_option, "on_close returned close code " + std::to_string(code) +
                                           ", which may not be sent (RFC 6455 §7.4); sent 1001 instead");
  }
  if (frame.reason.size() > 123) {
    return Error(errc::invalid_option, "on_close returned a close reason of " + std::to_string(frame.reason.size()) +
                                           " bytes (at most 123); sent 1001 instead");
  }
  return {};
}

std::string what_of(std::exception_ptr e) {
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& ex) {
    return ex.what();
  } catch (...) {
    return "unknown exception";
  }
}

// The runtime of an engine made without one: on_message runs on callback threads
// (max(2, reader_slots) of them), or with Delivery::io_thread on I/O threads (one per
// reader slot, so that N on_message can run at once there too).
std::shared_ptr<Runtime> own_runtime(const EngineOptions& options) {
  if (options.delivery == Delivery::io_thread) return Runtime::create({options.reader_slots, 2});
  return Runtime::create({1, std::max<std::size_t>(2, options.reader_slots)});
}

}  // namespace

EngineCore::EngineCore(EngineOptions options, std::shared_ptr<Client> client, std::shared_ptr<Connector> connector,
                       std::shared_ptr<Runtime> runtime)
    : options_(std::move(options)),
      client_(std::move(client)),
#ifdef WSCENGINE_NO_TELEMETRY
      connector_(std::move(connector)),
      runtime_(runtime ? std::move(runtime) : own_runtime(options_)),
#else
      connector_(instrument(std::move(connector),
                            options_.telemetry.trace_connection ? options_.telemetry.tracer : nullptr,
                            options_.telemetry.metrics)),
      runtime_(runtime ? std::move(runtime) : own_runtime(options_)),
      tracer_(options_.telemetry.tracer.get()),
      metrics_(options_.telemetry.metrics.get()),
#endif
      sample_all_(options_.telemetry.message_sample_ratio >= 1.0),
      log_unsampled_(log_of_unsampled_share(options_.telemetry.message_sample_ratio)),
      backoff_(options_.backoff),
      polls_(options_.busy_poll.count() > 0 && connector_->capabilities().polled_reads),
      fence_mode_(fence_mode()),
      control_relay_(options_.on_control_frame ? std::make_shared<ControlFrameRelay>(*this) : nullptr),
      holds_sends_(options_.outage.mode != OutageSends::fail) {
}

EngineCore::~EngineCore() = default;

// Decrements under tasks_mutex_ and notifies before unlocking: join_tasks sees zero
// only once it holds the mutex, so the unlock is the last touch of `this` (once the
// count is zero the engine may be destroyed).
void EngineCore::task_done() noexcept {
  std::lock_guard lock(tasks_mutex_);
  if (pending_tasks_.fetch_sub(1, std::memory_order_acq_rel) == 1) tasks_idle_.notify_all();
}

// Safe to call with mutex_ held. The task's captures (sessions, attempts) are
// destroyed before it counts as done: once the count reaches zero the engine may be
// destroyed, and a capture outliving it could end the runtime on its own thread.
template <class F>
void EngineCore::post(F&& f) {
  pending_tasks_.fetch_add(1, std::memory_order_relaxed);
  runtime_->post([this, fn = std::optional<std::decay_t<F>>(std::forward<F>(f))]() mutable {
    {
      CallbackScope scope(this);
      (*fn)();
    }
    fn.reset();
    task_done();
  });
}

// Wraps an adapter or timer handler, called once: counted until it has run, its
// captures released first (as in post).
template <class F>
auto EngineCore::counted(F&& f) {
  pending_tasks_.fetch_add(1, std::memory_order_relaxed);
  return [this, fn = std::optional<std::decay_t<F>>(std::forward<F>(f))](auto&&... args) mutable {
    (*fn)(std::forward<decltype(args)>(args)...);
    fn.reset();
    task_done();
  };
}

Connection::DoneHandler EngineCore::send_outcome(SendHandler done) {
  // Shared by the copies std::function may make; the count ends with the last copy,
  // after the user's handler (and what it captured) is gone.
  struct Pending {
    Pending(EngineCore* core, SendHandler done) : core(core), done(std::move(done)) {}
    Pending(const Pending&) = delete;
    Pending& operator=(const Pending&) = delete;
    EngineCore* const core;
    SendHandler done;
    ~Pending() {
      done = nullptr;
      core->task_done();
    }
  };
  pending_tasks_.fetch_add(1, std::memory_order_relaxed);
  auto pending = std::make_shared<Pending>(this, std::move(done));
  return [pending](Error e) {
    if (!pending->done) return;
    pending->core->post([done = std::move(pending->done), e = std::move(e)]() mutable { done(std::move(e)); });
    pending->done = nullptr;
  };
}

void EngineCore::join_tasks() {
  if (control_relay_) control_relay_->detach();  // no task may be added once the wait begins
  std::unique_lock lock(tasks_mutex_);
  tasks_idle_.wait(lock, [&] { return pending_tasks_.load(std::memory_order_acquire) == 0; });
}

std::unique_ptr<Span> EngineCore::start_span(std::string_view name, const TraceContext& parent) const {
  return tracer_ ? tracer_->start_span(name, parent) : nullptr;
}

// A span that belongs to `session`: its child with TraceGrouping::per_start, else a
// root of its own trace linked to it.
std::unique_ptr<Span> EngineCore::start_linked_span(std::string_view name, const TraceContext& session) const {
  if (!tracer_) return nullptr;
  if (options_.telemetry.grouping == TraceGrouping::per_start) return tracer_->start_span(name, session);
  return tracer_->start_span(name, {}, {}, session);
}

TraceContext trace_of(const std::unique_ptr<Span>& span) { return span ? span->context() : TraceContext{}; }

void EngineCore::set_connection_state(ConnectionState from, ConnectionState to) const {
  if (metrics_) metrics_->connection_state(from, to);
}

// Runs a user callback; with a span, makes it the thread's current span (for
// current_trace_context(), the instrumenting decorator and the tracing library).
template <class F>
auto EngineCore::call_user(const std::unique_ptr<Span>& span, F&& f) {
  CallbackScope scope(this);
  if (!span) return f();
  CurrentTrace current(span->context());
  auto active = span->make_current();
  return f();
}

// Runs an engine step that may reach the adapter (dial, read, close) with `trace`
// as the thread's current trace context, so that adapter spans nest under it.
template <class F>
auto EngineCore::traced(const TraceContext& trace, F&& f) {
  if (!tracer_) return f();
  CurrentTrace current(trace);
  return f();
}

// As traced(), for per-message work of a session (reads, Engine::send): with
// TraceGrouping::per_message the adapter's spans are roots linked to the session.
template <class F>
auto EngineCore::traced_per_message(const TraceContext& session, F&& f) {
  if (!tracer_) return f();
  if (options_.telemetry.grouping == TraceGrouping::per_start) return traced(session, std::forward<F>(f));
  CurrentTrace current({}, session);
  return f();
}

// Whether the next message is traced and timed (TelemetryOptions::message_sample_ratio).
// Each message is sampled with probability p, independently: drawn as the gaps
// between sampled messages (geometric: 1 + floor(ln U / ln(1 - p))), so that a
// message left out costs a decrement rather than a random number. The countdown is
// the thread's; a message of an engine with another ratio draws a fresh gap for it,
// which leaves every message's chance p (the gaps have no memory). Per thread: readers
// of many engines and senders on any thread draw without sharing a cache line.
namespace {

struct SampleCountdown {
  double log_unsampled;  // the ratio `left` was drawn for
  std::uint64_t left;    // messages up to and including the next sampled one
  std::uint64_t random;  // SplitMix64 state; 0 until seeded
};
thread_local SampleCountdown t_sample_countdown{0, 0, 0};  // plain: no initialisation guard on each use

// The number of messages up to and including the next sampled one.
std::uint64_t sample_gap(double log_unsampled) noexcept {
  auto& countdown = t_sample_countdown;
  if (countdown.random == 0) countdown.random = SplitMix64().next() | 1;
  const double unit = static_cast<double>((SplitMix64::next(countdown.random) >> 11) + 1) * 0x1.0p-53;  // (0, 1]
  const double skipped = std::floor(std::log(unit) / log_unsampled);
  return skipped < 0x1.0p62 ? static_cast<std::uint64_t>(skipped) + 1 : std::uint64_t{1} << 62;
}

// A message that ends the countdown, or the first of a ratio on this thread.
[[gnu::noinline]] bool sample_at_end_of_countdown(double log_unsampled) noexcept {
  auto& countdown = t_sample_countdown;
  if (countdown.log_unsampled != log_unsampled) {
    countdown.log_unsampled = log_unsampled;
    countdown.left = sample_gap(log_unsampled);
    if (--countdown.left != 0) return false;
  }
  countdown.left = sample_gap(log_unsampled);
  return true;
}

}  // namespace

inline bool EngineCore::sample_message() const noexcept {
  if (sample_all_) return true;
  if (log_unsampled_ == 0) return false;  // ratio 0
  auto& countdown = t_sample_countdown;
  if (countdown.log_unsampled == log_unsampled_ && countdown.left > 1) {
    --countdown.left;
    return false;
  }
  return sample_at_end_of_countdown(log_unsampled_);
}

EngineState EngineCore::state() const noexcept {
  Lock lock(mutex_);
  return state_;
}

// ---------------------------------------------------------------- start / stop

Error EngineCore::start(bool background, std::function<void(Error)> on_result) {
  Lock lock(mutex_);
  if (state_ != EngineState::idle && state_ != EngineState::stopped) {
    return Error(errc::already_started, "start() while the engine is " +
                                            std::string(state_ == EngineState::stopping ? "stopping" : "running"));
  }
  const bool blocks = !background && !on_result;
  if (blocks && t_callback_engine != nullptr && runtime_->on_callback_thread() &&
      runtime_->options().callback_threads < 2) {
    return Error(errc::would_deadlock, "blocking start() on the only callback thread; use start_background()");
  }
  if (blocks && runtime_->on_io_thread()) {
    return Error(errc::would_deadlock, "blocking start() on one of the runtime's I/O threads; use start_background()");
  }
  state_ = EngineState::starting;
  io_work_.emplace(RuntimeAccess::impl(*runtime_).io.get_executor());
  stop_requested_ = exit_requested_ = false;
  background_ = background;
  start_waiter_ = std::move(on_result);
  retry_count_ = 0;
  backoff_.reset();
  redirected_url_.reset();  // a permanent redirect lasts for the reconnects of one start
  opened_in_run_ = false;
  start_result_.reset();
  std::uint64_t generation = ++generation_;
  auto span = start_span("wscengine.start", {});
  if (span) {
    span->set_attribute("wscengine.auto_reconnect", static_cast<std::int64_t>(options_.auto_reconnect));
    span->set_attribute("wscengine.background", static_cast<std::int64_t>(background));
  }
  start_trace_ = trace_of(span);
  lock.unlock();
  post([this, generation] { begin_attempt(false, generation); });
  if (!blocks) return {};
  lock.lock();
  state_cv_.wait(lock, [&] { return start_result_ != nullptr; });
  Error result = *start_result_;
  if (span && result) span->set_error(result);
  return result;
}

void EngineCore::stop_async(std::function<void(Error)> done) {
  {
    Lock lock(mutex_);
    if (state_ == EngineState::idle || state_ == EngineState::stopped)
      return post([done = std::move(done)] { done({}); });
    stop_waiters_.push_back(std::move(done));
  }
  std::unique_ptr<Span> span;  // ends with the request: the wait is the caller's
  request_stop(span);
}

Error EngineCore::stop() {
  std::unique_ptr<Span> span;
  if (!request_stop(span)) return {};
  if (t_callback_engine == this) return {};  // acts like exit: never wait for ourselves
  if (runtime_->on_io_thread()) {
    return Error(errc::would_deadlock,
                 "stop() on one of the runtime's I/O threads does not wait: the engine stops in the background");
  }
  Lock lock(mutex_);
  if (!state_cv_.wait_for(lock, options_.stop_timeout, [&] { return state_ == EngineState::stopped; })) {
    Error e(errc::timeout, "stop() did not finish within stop_timeout (a callback still running?)");
    if (span) span->set_error(e);
    return e;
  }
  return {};
}

// Asks the engine to stop; false when it is idle or stopped (nothing to do). `span` gets
// the stop's span when traced.
bool EngineCore::request_stop(std::unique_ptr<Span>& span) {
  std::shared_ptr<Session> to_cancel;
  {
    Lock lock(mutex_);
    if (state_ == EngineState::idle || state_ == EngineState::stopped) return false;
    span = start_span("wscengine.stop", current_ ? current_->run_trace : TraceContext{});
    stop_requested_ = exit_requested_ = true;
    if (state_ != EngineState::stopping) state_ = EngineState::stopping;
    if (current_ && request_shutdown_locked(current_, EndReason::stop, std::nullopt, CloseInitiator::client)) {
      to_cancel = current_;
    }
    if (attempt_) {
      if (attempt_->connection) attempt_->connection->abort();
      if (attempt_->session) {
        attempt_->session->connection->abort();
        to_cancel = attempt_->session;
      }
    }
    if (retry_timer_) retry_timer_->cancel();
  }
  if (to_cancel) to_cancel->stop.request_stop();
  return true;
}

Error EngineCore::wait_stopped(std::chrono::milliseconds timeout) {
  if (t_callback_engine == this)
    return Error(errc::would_deadlock, "wait_stopped() inside a callback of the same engine");
  if (runtime_->on_io_thread())
    return Error(errc::would_deadlock, "wait_stopped() on one of the runtime's I/O threads");
  Lock lock(mutex_);
  if (!state_cv_.wait_for(lock, timeout,
                          [&] { return state_ == EngineState::stopped || state_ == EngineState::idle; })) {
    return Error(errc::timeout, "engine still running after " + std::to_string(timeout.count()) + " ms");
  }
  return {};
}

void EngineCore::request_end(const std::shared_ptr<Session>& s, EndReason reason) {
  std::shared_ptr<Session> to_cancel;
  {
    Lock lock(mutex_);
    if (reason == EndReason::exit) {
      exit_requested_ = true;
      if (retry_timer_) retry_timer_->cancel();
    }
    std::shared_ptr<Session> target = s ? s : current_;
    if (!target) return;  // between sessions: exit is recorded, restart has nothing to do
    if (attempt_ && attempt_->session == target) {
      // During on_open: acted on once on_open returns.
      if (!target->end_requested_in_open || reason == EndReason::exit) target->end_requested_in_open = reason;
      target->stop.request_stop();
      return;
    }
    if (target->current && request_shutdown_locked(target, reason, std::nullopt, CloseInitiator::client)) {
      to_cancel = target;
    } else if (target->ending && (reason == EndReason::exit)) {
      target->end_reason = EndReason::exit;
    }
  }
  if (to_cancel) to_cancel->stop.request_stop();
}

void EngineCore::set_stopped_locked(Error result) {
  state_ = EngineState::stopped;
  current_.reset();
  attempt_.reset();
  retry_timer_.reset();
  io_work_.reset();
  if (holds_sends_) give_up_all_held_locked();  // no session will take them any more
  if (!start_result_) set_start_result_locked(result ? result : Error(errc::cancelled, "stopped before connecting"));
  state_cv_.notify_all();
  for (auto& waiter : std::exchange(stop_waiters_, {})) post([waiter = std::move(waiter)] { waiter({}); });
}

// mutex_ held: a blocking start() returns `result`, an async_start's handler gets it.
void EngineCore::set_start_result_locked(Error result) {
  start_result_ = std::make_unique<Error>(result);
  state_cv_.notify_all();
  if (start_waiter_) post([waiter = std::exchange(start_waiter_, nullptr), result] { waiter(result); });
}

// ---------------------------------------------------------------- attempts

void EngineCore::begin_attempt(bool restarting, std::uint64_t generation) {
  auto attempt = std::make_shared<Attempt>(RuntimeAccess::impl(*runtime_).io);
  attempt->restarting = restarting;
  {
    Lock lock(mutex_);
    if (generation != generation_) return;  // a task of an earlier start
    if (stop_requested_ || exit_requested_) {
      set_stopped_locked(Error(errc::cancelled, "stopped before connecting"));
      return;
    }
    attempt_ = attempt;
    // A restart follows the last session (or the start, while none has opened).
    attempt->span = restarting ? start_linked_span("wscengine.restart", opened_in_run_ ? last_run_trace_ : start_trace_)
                               : start_span("wscengine.open", start_trace_);
    if (attempt->span) {
      attempt->span->set_attribute("wscengine.url", traced_url(options_.url));
      attempt->span->set_attribute("wscengine.retry_count", static_cast<std::int64_t>(retry_count_));
    }
    attempt->trace = trace_of(attempt->span);
  }
  if (metrics_) {
    if (restarting) metrics_->reconnect_attempt();
    metrics_->connection_state(ConnectionState::none, ConnectionState::dialing);
  }
  DialRequest request;
  {
    Lock lock(mutex_);
    request.url = redirected_url_ ? *redirected_url_ : parse_url(options_.url).value();  // validated at construction
  }
  request.headers = options_.headers;
  request.subprotocols = options_.subprotocols;
  request.offer_compression = options_.offer_compression;
  request.deflate = options_.deflate;
  request.max_message_size = options_.max_message_size;
  request.stream = options_.stream;
  request.http2 = options_.http2;
  request.http2_cleartext = options_.http2_cleartext;
  request.tls = options_.tls;
  request.addresses = options_.addresses;
  request.timeout = options_.open_timeout;
  request.write_timeout = options_.write_timeout;
  request.tracer = options_.telemetry.tracer;
  request.metrics = options_.telemetry.metrics;
  request.trace = attempt->trace;
  if (control_relay_) request.control_frames = control_relay_->sink_for(session_counter_.load() + 1);
  if (options_.telemetry.inject_traceparent && attempt->trace.valid()) {
    request.headers.push_back({"traceparent", traceparent(attempt->trace)});
  }
  auto proxy = choose_proxy(request.url, options_.proxy);
  if (!proxy) return attempt_failed(attempt, proxy.error());
  request.proxy = std::move(proxy.value());
  if (options_.before_dial) {
    Error hook_error;
    try {
      hook_error = call_user(attempt->span, [&] { return options_.before_dial(request, retry_count_); });
    } catch (...) {
      hook_error = Error(errc::invalid_option, "before_dial threw: " + what_of(std::current_exception()));
    }
    if (hook_error) return attempt_failed(attempt, std::move(hook_error));
  }
  {
    Lock lock(mutex_);
    attempt->timer.expires_after(options_.open_timeout);  // for every hop of the attempt
// GCC 12 sees the std::optional in counted() as maybe uninitialised once Asio's
// handler storage is inlined here (a false positive: it is engaged on construction).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
    attempt->timer.async_wait(counted([this, attempt](const boost::system::error_code& ec) {
      if (ec) return;  // cancelled: the attempt finished in time
      Lock lock(mutex_);
      attempt->timed_out = true;
      if (attempt->connection) attempt->connection->abort();
      if (attempt->session) {
        attempt->session->connection->abort();  // wakes a blocked read in on_open
        auto s = attempt->session;
        lock.unlock();
        s->stop.request_stop();
      }
    }));
#pragma GCC diagnostic pop
  }
  dial(attempt, std::move(request));
}

// One hop of an attempt: a new connection dials `request`.
void EngineCore::dial(const std::shared_ptr<Attempt>& attempt, DialRequest request) {
  if (request.http2 != Http2Mode::off && !connector_->capabilities().http2) {
    if (request.http2 == Http2Mode::require)
      return on_dialed(attempt, Error(errc::unsupported, std::string("the ") + std::string(connector_->name()) +
                                                             " adapter has no WebSocket over HTTP/2"));
    request.http2 = Http2Mode::off;  // prefer: the HTTP/1.1 upgrade
  }
  auto connection = connector_->make_connection(*runtime_);
  Connection* raw = connection.get();
  {
    Lock lock(mutex_);
    attempt->connection = std::move(connection);
    if (stop_requested_ || exit_requested_ || attempt->timed_out) raw->abort();
  }
  attempt->request = request;  // a redirect dials it again, changed
  traced(attempt->trace, [&] {
    raw->async_dial(
        std::move(request), counted([this, attempt](Result<HandshakeResponse> result) {
          post([this, attempt, result = std::move(result)]() mutable { on_dialed(attempt, std::move(result)); });
        }));
  });
}

void EngineCore::on_dialed(const std::shared_ptr<Attempt>& attempt, Result<HandshakeResponse> result) {
  std::shared_ptr<Session> s;
  bool restarting = false;
  {
    Lock lock(mutex_);
    if (!result) {
      Error e = result.error();
      if (!attempt->timed_out && e.is(errc::http_status) && is_redirect_status(e.http_status) &&
          options_.max_redirects > 0) {
        lock.unlock();
        return follow_redirect(attempt, e);
      }
      if (attempt->timed_out) {
        e = Error(errc::timeout, "dial + handshake did not finish within open_timeout (" +
                                     std::to_string(options_.open_timeout.count()) + " ms): " + e.message());
      }
      lock.unlock();
      attempt->timer.cancel();
      return attempt_failed(attempt, std::move(e));
    }
    restarting = opened_in_run_;
    s = std::make_shared<Session>(session_counter_ + 1, std::move(attempt->connection), runtime_);
    s->handle = SessionConnection(s);
    s->sends = std::make_shared<SendQueue>(options_.send_queue_bytes, options_.send_queue_messages, *this, s->counters,
                                           totals_);
    s->streamed_writes = connector_->capabilities().streamed_writes;
    session_counter_.store(s->id);
    attempt->session = s;
  }
  Context ctx(*this, s.get());
  auto open_span = start_span("wscengine.on_open", attempt->trace);
  if (open_span) {
    open_span->set_attribute("wscengine.session_id", static_cast<std::int64_t>(s->id));
    open_span->set_attribute("wscengine.restarting", static_cast<std::int64_t>(restarting));
    ctx.set_trace_context(open_span->context());
  }
  Error open_error;
  try {
    open_error = call_user(open_span, [&] { return client_->on_open(ctx, result.value(), restarting); });
  } catch (...) {
    open_error = Error(errc::io_error, "on_open threw: " + what_of(std::current_exception()));
  }
  attempt->timer.cancel();
  if (open_span && open_error) open_span->set_error(open_error);
  open_span.reset();
  Lock lock(mutex_);
  bool timed_out = attempt->timed_out;
  attempt->session.reset();
  if (timed_out || open_error) {
    Error e = timed_out ? Error(errc::timeout, "dial + handshake + on_open did not finish within open_timeout (" +
                                                   std::to_string(options_.open_timeout.count()) + " ms)")
                        : Error(errc::open_failed, open_error.message());
    if (s->end_requested_in_open == EndReason::exit) exit_requested_ = true;
    lock.unlock();
    if (!s->connection->is_open()) return attempt_failed(attempt, std::move(e));
    // The close handshake holds no thread; the attempt fails once it is over.
    s->connection->async_close(
        {close_code::going_away, "on_open failed"}, options_.close_timeout,
        counted([this, attempt, s, e = std::move(e)](Error) mutable {
          post([this, attempt, e = std::move(e)]() mutable { attempt_failed(attempt, std::move(e)); });
        }));
    return;
  }
  attempt_.reset();
  current_ = s;
  s->current = true;
  opened_in_run_ = true;
  totals_->sessions.fetch_add(1, std::memory_order_relaxed);
  if (restarting) totals_->reconnects.fetch_add(1, std::memory_order_relaxed);
  {
    std::lock_guard stats_lock(stats_mutex_);
    latest_counters_ = s->counters;
    session_open_ = true;
  }
  for (std::size_t slot = options_.reader_slots; slot-- > 0;) s->free_slots.push_back(static_cast<std::uint32_t>(slot));
  if (metrics_) {
    if (restarting) metrics_->reconnect_success();
    metrics_->connection_state(ConnectionState::dialing, ConnectionState::open);
  }
  s->run_span = start_span("wscengine.run", attempt->trace);
  if (s->run_span) {
    s->run_span->set_attribute("wscengine.session_id", static_cast<std::int64_t>(s->id));
    s->run_span->set_attribute("wscengine.reader_slots", static_cast<std::int64_t>(options_.reader_slots));
  }
  s->run_trace = trace_of(s->run_span);
  last_run_trace_ = s->run_trace;
  attempt->span.reset();  // the open (or restart) step is done
  retry_count_ = 0;
  backoff_.opened();
  state_ = stop_requested_ ? EngineState::stopping : EngineState::running;
  if (!start_result_) set_start_result_locked({});
  std::optional<EndReason> pending = s->end_requested_in_open;
  if (stop_requested_)
    pending = EndReason::stop;
  else if (exit_requested_)
    pending = EndReason::exit;
  if (pending) {
    request_shutdown_locked(s, *pending, std::nullopt, CloseInitiator::client);
    return;  // stop token already requested
  }
  s->reader_running = true;
  schedule_heartbeat_locked(s);
  schedule_watchdog_locked(s);
  lock.unlock();
  start_reader(s);
  if (holds_sends_) {  // right after on_open returned, in send order
    lock.lock();
    flush_held(lock);
  }
}

// ---------------------------------------------------------------- heartbeat

void EngineCore::schedule_heartbeat_locked(const std::shared_ptr<Session>& s) {
  if (options_.ping_interval.count() == 0 || s->ending) return;
  if (!s->heartbeat) s->heartbeat = std::make_unique<boost::asio::steady_timer>(RuntimeAccess::impl(*runtime_).io);
  s->heartbeat->expires_after(options_.ping_interval);
  s->heartbeat->async_wait(counted([this, s](const boost::system::error_code& ec) {
    if (!ec) heartbeat(s);
  }));
}

// On an I/O thread, and no thread waits for the pong: the adapter's async_ping
// completes when it comes, when pong_timeout passes, or when the connection ends. So
// any number of dead peers costs no thread, and each is found within ping_interval +
// pong_timeout. Adapters answer pings and take pongs even when no reader runs.
void EngineCore::heartbeat(const std::shared_ptr<Session>& s) {
  std::uint64_t read_before = 0;
  {
    Lock lock(mutex_);
    if (s->ending || !s->current) return;
    read_before = reads_seen(*s);
  }
  const auto sent = std::chrono::steady_clock::now();
  traced(s->run_trace, [&] {
    s->connection->async_ping({}, options_.pong_timeout, counted([this, s, read_before, sent](Error error) {
                                if (!error) s->counters->round_trip(std::chrono::steady_clock::now() - sent);
                                heartbeat_answered(s, read_before, std::move(error));
                              }));
  });
}

void EngineCore::heartbeat_answered(const std::shared_ptr<Session>& s, std::uint64_t read_before, Error error) {
  Lock lock(mutex_);
  if (s->ending) return;
  if (!error) return schedule_heartbeat_locked(s);
  if (error.is(errc::closed) || !s->connection->is_open()) return;  // the reader sees the close
  // Messages read meanwhile prove the peer alive, even one too busy (or too simple)
  // to answer pings: only a connection with no pong and no data at all is dead.
  if (reads_seen(*s) != read_before) return schedule_heartbeat_locked(s);
  s->dead = std::make_unique<Error>(errc::timeout,
                                    "no pong and no data within " + std::to_string(options_.pong_timeout.count()) +
                                        " ms of a ping: the connection is dead (" + error.message() + ")");
  bool fresh =
      request_shutdown_locked(s, EndReason::failed, CloseFrame{close_code::abnormal, {}}, CloseInitiator::client);
  lock.unlock();
  s->connection->abort();  // no close handshake with a dead peer; wakes a blocked reader
  if (fresh) s->stop.request_stop();
}

// ---------------------------------------------------------------- stale-data watchdog

namespace {
std::chrono::milliseconds watchdog_step(std::chrono::milliseconds max_silence) {
  return std::max(max_silence / 4, std::chrono::milliseconds(1));
}
}  // namespace

// GCC 12 at -O3, inlining Asio's completion of this handler, takes the captures in
// counted()'s std::optional for uninitialised; they are set before the wait is armed.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
void EngineCore::schedule_watchdog_locked(const std::shared_ptr<Session>& s) {
  if (options_.max_silence.count() == 0 || s->ending) return;
  if (!s->watchdog) s->watchdog = std::make_unique<boost::asio::steady_timer>(RuntimeAccess::impl(*runtime_).io);
  s->watchdog->expires_after(watchdog_step(options_.max_silence));
  s->watchdog->async_wait(counted([this, s](const boost::system::error_code& ec) {
    if (!ec) watchdog_tick(s);
  }));
}
#pragma GCC diagnostic pop

// On an I/O thread, a few times per max_silence: counts the silence since the last
// data message read, from the reader's message count (no clock on the message path).
void EngineCore::watchdog_tick(const std::shared_ptr<Session>& s) {
  Lock lock(mutex_);
  if (s->ending || !s->current) return;
  const std::uint64_t read = s->next_sequence.load(std::memory_order_relaxed);
  const std::uint64_t seen = reads_seen(*s);  // the parts of a streamed message count too
  // Not reading (paused, or every slot in on_message) is not the peer's silence.
  const bool reading =
      !user_paused_ && pausers_waiting_.load(std::memory_order_relaxed) == 0 && s->in_flight < options_.reader_slots;
  if (seen != s->watchdog_seen || !reading || read < options_.max_silence_after) {
    s->watchdog_seen = seen;
    s->silent_for = std::chrono::milliseconds(0);
    return schedule_watchdog_locked(s);
  }
  s->silent_for += watchdog_step(options_.max_silence);
  if (s->silent_for < options_.max_silence) return schedule_watchdog_locked(s);
  s->dead = std::make_unique<Error>(
      errc::stale, "no data message for " + std::to_string(s->silent_for.count()) + " ms (max_silence " +
                       std::to_string(options_.max_silence.count()) + " ms, after " + std::to_string(read) +
                       " messages in this session): restarting it");
  bool fresh = request_shutdown_locked(s, EndReason::failed, std::nullopt, CloseInitiator::client);
  lock.unlock();
  if (fresh) s->stop.request_stop();
}

// A 3xx answer: the same attempt dials the Location (EngineOptions::max_redirects),
// or fails with errc::redirect_refused naming the chain of URLs (without queries,
// where tokens travel).
void EngineCore::follow_redirect(const std::shared_ptr<Attempt>& attempt, const Error& answer) {
  const int status = answer.http_status;
  DialRequest request = std::move(attempt->request);
  if (attempt->chain.empty()) attempt->chain.push_back(request.url.to_string());
  auto span = start_span("wscengine.redirect", attempt->trace);
  if (span) {
    span->set_attribute("wscengine.http.status", static_cast<std::int64_t>(status));
    span->set_attribute("wscengine.url", traced_url(request.url.to_string()));
  }
  auto refuse = [&](const std::string& why) {
    std::vector<std::string> shown;
    for (const auto& url : attempt->chain) shown.push_back(traced_url(url));
    Error e(errc::redirect_refused, why + ": " + describe_chain(shown));
    e.http_status = status;
    e.http_headers = answer.http_headers;
    if (span) span->set_error(e);
    span.reset();
    attempt->timer.cancel();
    attempt_failed(attempt, std::move(e));
  };
  auto location = answer.http_header("location");
  if (!location) return refuse("HTTP " + std::to_string(status) + " without a Location header");
  auto target = redirect_target(request.url, *location);
  if (!target) return refuse(target.error().detail);
  std::string next = target->to_string();
  const bool loop = std::find(attempt->chain.begin(), attempt->chain.end(), next) != attempt->chain.end();
  attempt->chain.push_back(next);
  if (loop) return refuse("a redirect loop");
  if (attempt->chain.size() - 1 > options_.max_redirects)
    return refuse("more than max_redirects (" + std::to_string(options_.max_redirects) + ") redirects");
  if (span) span->set_attribute("wscengine.redirect.location", traced_url(next));
  if (metrics_) metrics_->redirect(status);
  attempt->permanent_so_far = attempt->permanent_so_far && is_permanent_redirect(status);
  if (attempt->permanent_so_far) {
    Lock lock(mutex_);
    redirected_url_ = std::make_unique<Url>(target.value());
  }
  redirect_request(request, target.value());
  auto proxy = choose_proxy(request.url, options_.proxy);  // the proxy rules of the new URL
  if (!proxy) {
    span.reset();
    attempt->timer.cancel();
    return attempt_failed(attempt, proxy.error());
  }
  request.proxy = std::move(proxy.value());
  span.reset();
  dial(attempt, std::move(request));
}

void EngineCore::attempt_failed(const std::shared_ptr<Attempt>& attempt, Error error) {
  if (attempt->span) {
    attempt->span->set_error(error);
    attempt->span.reset();
  }
  set_connection_state(ConnectionState::dialing, ConnectionState::none);
  Lock lock(mutex_);
  if (attempt_ == attempt) attempt_.reset();
  if (stop_requested_ || exit_requested_) return set_stopped_locked(std::move(error));
  if (!opened_in_run_ && !background_) {  // start() reports it
    lock.unlock();
    note_error(error);
    lock.lock();
    return set_stopped_locked(std::move(error));
  }
  std::uint32_t retry = ++retry_count_;
  state_ = EngineState::restarting;
  lock.unlock();
  // Decide first, so that on_restart_error hears whether this was the last attempt.
  RetryDecision decision;
  try {
    decision = options_.retry_policy ? options_.retry_policy(error, retry)
                                     : default_retry_policy(error, retry, options_.backoff);
  } catch (...) {
    decision = RetryDecision::again();  // a policy that throws does not stop reconnecting
  }
  bool exhausted = options_.backoff.max_attempts != 0 && retry >= options_.backoff.max_attempts;
  if (!decision.retry || exhausted) {
    error.detail += (error.detail.empty() ? "" : "; ") + std::string("not retried: ") +
                    (decision.retry ? "backoff.max_attempts (" + std::to_string(options_.backoff.max_attempts) +
                                          ") failed attempts in a row"
                                    : decision.reason);
  }
  note_error(error);
  Context ctx(*this, nullptr);
  auto span = start_span("wscengine.on_restart_error", attempt->trace);
  if (span) {
    span->set_attribute("wscengine.retry_count", static_cast<std::int64_t>(retry));
    span->set_attribute("wscengine.will_retry", static_cast<std::int64_t>(decision.retry && !exhausted));
    span->set_error(error);
    ctx.set_trace_context(span->context());
  }
  try {
    call_user(span, [&] { client_->on_restart_error(ctx, error, retry); });
  } catch (...) {
  }
  lock.lock();
  if (stop_requested_ || exit_requested_) return set_stopped_locked(std::move(error));
  if (!decision.retry) return set_stopped_locked(std::move(error));
  if (exhausted) return set_stopped_locked(Error(errc::attempts_exhausted, error.message()));
  schedule_retry(std::max(backoff_.after_failed_attempt(), decision.at_least));
}

// Called with mutex_ held.
void EngineCore::schedule_retry(std::chrono::milliseconds delay) {
  retry_timer_ = std::make_unique<boost::asio::steady_timer>(RuntimeAccess::impl(*runtime_).io);
  retry_timer_->expires_after(delay);
  retry_timer_->async_wait(counted([this, generation = generation_](const boost::system::error_code&) {
    post([this, generation] { begin_attempt(true, generation); });  // it stops if Stop/exit came first
  }));
}

// ---------------------------------------------------------------- reading

// Messages read ahead while their key is busy, at most: beyond, reading pauses until
// an on_message of a busy key returns (memory stays bounded behind one slow key).
constexpr std::size_t kMaxParkedMessages = 1024;

bool EngineCore::reader_may_run_locked(const Session& s) const {
  return !s.ending && !s.reader_running && s.in_flight < options_.reader_slots && !user_paused_ &&
         s.parked < kMaxParkedMessages;
}

// The user's key extractor. Runs under the read lock (one reader at a time), not
// under mutex_; a key extractor that throws puts its messages under the empty key.
std::string EngineCore::message_key(const InboundMessage& inbound, std::uint64_t sequence) const {
  try {
    return options_.message_key(Message{inbound.type, sequence, inbound.payload});
  } catch (...) {
    return {};
  }
}

void EngineCore::kick_reader_locked(const std::shared_ptr<Session>& s) {
  if (!reader_may_run_locked(*s)) return;
  s->reader_running = true;
  start_reader(s);
}

// A reader task: on a callback thread, or with Delivery::io_thread on an I/O thread
// (so that on_message always runs on an I/O thread in that mode).
void EngineCore::start_reader(const std::shared_ptr<Session>& s, Error wait_error) {
  if (options_.delivery != Delivery::io_thread) {
    return post([this, s, wait_error = std::move(wait_error)]() mutable { run_reader(s, std::move(wait_error)); });
  }
  boost::asio::post(RuntimeAccess::impl(*runtime_).io, counted([this, s, wait_error = std::move(wait_error)]() mutable {
                      CallbackScope scope(this);
                      run_reader(s, std::move(wait_error));
                    }));
}

// The network woke a waiting reader (or its wait failed or was cancelled). By default
// the read goes to a callback thread; with Delivery::io_thread the I/O thread that saw
// the data reads and delivers itself. Never inline for a cancelled wait (cancel_wait
// runs under mutex_) or inside async_wait_readable itself (t_arming_wait): then the
// reader is posted (to the I/O context in that mode).
void EngineCore::reader_woken(const std::shared_ptr<Session>& s, Error e) {
  const bool cancelled = e.is(errc::cancelled);
  Error wait_error = cancelled ? Error{} : std::move(e);
  if (options_.delivery == Delivery::io_thread && !cancelled && !t_arming_wait && runtime_->on_io_thread()) {
    CallbackScope scope(this);
    return run_reader(s, std::move(wait_error));
  }
  start_reader(s, std::move(wait_error));
}

// EngineOptions::busy_poll: tries the read again until a message came or the time is
// up, so that a message that follows soon is taken without a wake-up. Gives up early
// when the session is asked to end.
Error EngineCore::poll_briefly(Session& s, Connection& connection, InboundMessage& buffer) {
  const auto deadline = std::chrono::steady_clock::now() + options_.busy_poll;
  Error e;
  do {
    e = connection.try_read(buffer);
  } while (e.is(errc::would_block) && !s.stop.stop_requested() && std::chrono::steady_clock::now() < deadline);
  return e;
}

// One read of what the connection has: would_block when nothing came (after the
// busy poll of the low-latency mode).
Error EngineCore::read_now(Session& s, Connection& connection, InboundMessage& buffer, bool on_io_thread) {
  buffer.part = MessagePart::whole;  // an adapter that never streams leaves it as it is
  Error e = connection.try_read(buffer);
  if (e.is(errc::would_block) && on_io_thread && polls_) e = poll_briefly(s, connection, buffer);
  return e;
}

// A message left out by sampling: read past the telemetry decorator, counted here.
Error EngineCore::read_untraced(Session& s, InboundMessage& buffer, bool on_io_thread) {
  Error e = read_now(s, s.untraced_connection, buffer, on_io_thread);
  if (!e && metrics_) metrics_->message_received(buffer.type, buffer.payload.size());
  return e;
}

// Low-latency delivery: an I/O thread reads at most this many messages of one
// connection in a row, then lets the other handlers of its io_context run.
constexpr std::size_t kIoThreadTurn = 256;

void EngineCore::run_reader(std::shared_ptr<Session> s, Error wait_error) {
  // One slot and no keys (the default): the reader keeps slot 0 and its buffer from one
  // message to the next, so a message costs one engine lock round (after on_message)
  // instead of two; the read lock is let go after the read with an atomic store.
  const bool keeps_slot = options_.reader_slots == 1 && !options_.message_key;
  // Delivery::io_thread, woken on an I/O thread: this turn's messages so far.
  const bool on_io_thread = options_.delivery == Delivery::io_thread && runtime_->on_io_thread();
  std::size_t turn = 0;
  std::unique_ptr<InboundMessage> buffer;
  bool entered = false;       // the previous round already took the read lock for this one
  bool holding_slot = false;  // keeps_slot: this reader still counts in in_flight, on `slot`
  std::uint32_t slot = 0;
  // After a read (mutex_ held): the slot kept for it and its buffer go back.
  auto give_back_locked = [&] {
    if (holding_slot) release_slot_locked(*s, slot);
    holding_slot = false;
    s->free_buffers.push_back(std::move(buffer));
  };
  for (;;) {
    if (!entered) {
      Lock lock(mutex_);
      // Ending, every slot busy or too many parked (an on_message returning starts a
      // reader again), or paused (resume() does).
      if (s->ending || s->in_flight >= options_.reader_slots || s->parked >= kMaxParkedMessages || user_paused_)
        return stop_reader_locked(s);
      reader_inside_ = true;
      buffer = take_buffer_locked(*s);
    }
    entered = false;
    t_reader_engine = this;
    // A message left out by sampling is read past the telemetry decorator (no span,
    // no look at the thread's trace state) and counted here.
    bool sampled = sample_message();
    // Built in place (no assignment of an Error per message).
    Error error =
        sampled ? traced_per_message(s->run_trace, [&] { return read_now(*s, *s->connection, *buffer, on_io_thread); })
                : read_untraced(*s, *buffer, on_io_thread);
    if (wait_error) {  // the wait for the network failed: report it unless data came anyway
      if (error.is(errc::would_block)) error = std::move(wait_error);
      wait_error = Error{};
    }
    if (error && !error.is(errc::would_block)) {
      bool keep_reading = handle_read_error(s, std::move(error));
      t_reader_engine = nullptr;
      Lock lock(mutex_);
      give_back_locked();
      leave_read_lock_locked();
      if (keep_reading) continue;
      return stop_reader_locked(s);
    }
    // A streamed part (still in the read lock): what on_message gets of it, if anything.
    std::uint64_t offset = 0;
    if (!error && buffer->part != MessagePart::whole && !shape_part(*s, *buffer, offset)) {
      entered = true;  // nothing to deliver yet (an empty part): read on, still in the read lock
      continue;
    }
    const MessagePart part = error ? MessagePart::whole : buffer->part;
    t_reader_engine = nullptr;
    Lock lock(mutex_, std::defer_lock);
    std::uint64_t sequence = 0;
    std::string key;
    // The parts of a streamed message are keyed, so that with several slots they run
    // in order, one at a time (under the first part's message_key, or the empty key).
    bool keyed = false;
    if (holding_slot && !error) {
      // Nothing else can run for this session meanwhile (one slot, ours): no lock.
      leave_read_lock();
      sequence = sequence_of(*s, part);
      count_received(*s, buffer->payload.size(), part == MessagePart::whole || part == MessagePart::last);
    } else {
      // Still the only reader: next_sequence changes only under the read lock.
      if (!error) {
        keyed = options_.message_key || part != MessagePart::whole;
        if (part == MessagePart::middle || part == MessagePart::last) {
          key = s->streamed.key;
        } else if (options_.message_key) {
          key = message_key(*buffer, s->next_sequence.load(std::memory_order_relaxed));
        }
        if (part == MessagePart::first) s->streamed.key = key;
      }
      lock.lock();
      leave_read_lock_locked();
      if (error) {  // would_block: wait for the network without holding a thread
        give_back_locked();
        if (s->ending) return stop_reader_locked(s);
        t_arming_wait = true;
        s->connection->async_wait_readable(counted([this, s](Error e) { reader_woken(s, std::move(e)); }));
        t_arming_wait = false;
        return;
      }
      if (holding_slot) release_slot_locked(*s, slot);
      holding_slot = false;
      sequence = sequence_of(*s, part);
      count_received(*s, buffer->payload.size(), part == MessagePart::whole || part == MessagePart::last);
      if (keyed) {
        auto [entry, fresh] = s->busy_keys.try_emplace(key);
        if (!fresh) {  // its key is busy: it runs after the running one, on that slot
          entry->second.push_back({std::move(buffer), sequence, offset, sampled});
          ++s->parked;
          continue;  // read on (the checks at the top of the loop decide)
        }
      }
      ++s->in_flight;
      slot = s->free_slots.back();
      s->free_slots.pop_back();
      bool hand_off = s->in_flight < options_.reader_slots && !s->ending;
      if (!hand_off) s->reader_running = false;
      lock.unlock();
      if (hand_off) start_reader(s);  // another slot reads while we dispatch
    }
    for (;;) {
      deliver(s, *buffer, sequence, offset, slot, sampled);
      if (holding_slot) break;  // (never keyed) see below: no engine lock, as a rule
      lock.lock();
      if (!keyed) break;
      // Keyed: run what waited for this key, in order, on this slot (even while
      // shutting down: those messages were read and are not dropped).
      auto entry = s->busy_keys.find(key);
      if (entry->second.empty()) {
        s->busy_keys.erase(entry);
        break;
      }
      Session::Parked next = std::move(entry->second.front());
      entry->second.pop_front();
      --s->parked;
      s->free_buffers.push_back(std::move(buffer));
      buffer = std::move(next.buffer);
      sequence = next.sequence;
      offset = next.offset;
      sampled = next.sampled;
      kick_reader_locked(s);  // a reader stopped by the parked limit may go on
      lock.unlock();
    }
    // An I/O thread's turn is over: the reader goes on in a fresh handler, after the
    // others that wait on this io_context.
    const bool turn_over = on_io_thread && ++turn == kIoThreadTurn;
    // Keeping the slot from the message before: nothing else changes this session's
    // reader state meanwhile, so the next message needs only the read lock, entered
    // without mutex_ unless a pauser, the end of the session or the turn's end is in
    // the way (then the checks below decide, under mutex_).
    if (holding_slot) {
      if (!turn_over && enter_read_lock(*s)) {
        entered = true;
        continue;
      }
      lock.lock();
    }
    // Under mutex_: either read the next message on this slot, or return the slot and
    // the buffer and stop or enter the read lock for the next message (the checks at
    // the top of the loop, done here).
    if (keeps_slot && !turn_over && !s->ending && !user_paused_) {
      s->reader_running = true;  // (for one slot, the checks of reader_may_run_locked)
      reader_inside_ = true;
      holding_slot = true;
      entered = true;
      continue;
    }
    if (holding_slot) s->reader_running = false;  // it ran since the slot was kept
    holding_slot = false;
    release_slot_locked(*s, slot);  // the slot of the message just delivered
    s->free_buffers.push_back(std::move(buffer));
    if (!reader_may_run_locked(*s)) {
      // Another thread may be the reader now (a hand-off); if none is, this one stops.
      if (!s->reader_running) stop_reader_locked(s);
      return;
    }
    s->reader_running = true;  // this thread becomes the reader again: no post per message
    if (turn_over) {
      start_reader(s);
      return;
    }
    reader_inside_ = true;
    buffer = take_buffer_locked(*s);
    entered = true;
  }
}

// The session's reader stops (mutex_ held; this thread was the reader). A paused one is
// parked for resume(); an ending session may finish now. Otherwise an on_message that
// returns starts a reader again.
void EngineCore::stop_reader_locked(const std::shared_ptr<Session>& s) {
  s->reader_running = false;
  if (user_paused_ && !s->ending) parked_reader_ = s;
  maybe_finish_locked(s);
}

void EngineCore::release_slot_locked(Session& s, std::uint32_t slot) {
  --s.in_flight;
  s.free_slots.push_back(slot);
}

// The reader lets go of the read lock (called with mutex_ held).
void EngineCore::leave_read_lock_locked() {
  reader_inside_ = false;
  if (pausers_waiting_) {
    state_cv_.notify_all();
    grant_async_pauser_locked();
  }
}

// A reader keeping its slot enters the read lock without the engine lock: it stores
// its flag, then looks for a pauser (pause() stores its flag, then looks for the
// reader). Either the pauser sees reader_inside_, or the reader sees user_paused_ and
// backs out. With FenceMode::asymmetric the reader's side costs no locked instruction:
// pause() makes every running thread pass a full barrier (membarrier) instead.
bool EngineCore::enter_read_lock(const Session& s) {
  if (fence_mode_ == FenceMode::asymmetric) {
    reader_inside_.store(true, std::memory_order_relaxed);
    std::atomic_signal_fence(std::memory_order_seq_cst);  // program order; membarrier does the rest
  } else {
    reader_inside_.store(true);
  }
  if (!user_paused_.load() && !s.ending.load()) return true;
  leave_read_lock();  // wakes a pauser that saw the flag
  return false;
}

// The same way out: either the pauser sees reader_inside_ false, or the reader sees
// the pauser waiting and wakes it.
void EngineCore::leave_read_lock() {
  if (fence_mode_ == FenceMode::asymmetric) {
    reader_inside_.store(false, std::memory_order_release);
    std::atomic_signal_fence(std::memory_order_seq_cst);
    if (pausers_waiting_.load(std::memory_order_relaxed) == 0) return;
  } else {
    reader_inside_.store(false);
    if (pausers_waiting_.load() == 0) return;
  }
  Lock lock(mutex_);
  state_cv_.notify_all();
  grant_async_pauser_locked();
}

// Only the reader inside the read lock numbers messages; heartbeat() reads the count.
std::uint64_t EngineCore::take_sequence(Session& s) {
  std::uint64_t sequence = s.next_sequence.load(std::memory_order_relaxed);
  s.next_sequence.store(sequence + 1, std::memory_order_relaxed);
  return sequence;
}

// The sequence of a message, or of a streamed part: its message's.
std::uint64_t EngineCore::sequence_of(Session& s, MessagePart part) {
  if (part == MessagePart::middle || part == MessagePart::last) {
    s.parts_read.store(s.parts_read.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    return s.streamed.sequence;
  }
  const std::uint64_t sequence = take_sequence(s);
  if (part == MessagePart::first) s.streamed.sequence = sequence;
  return sequence;
}

namespace {
// How many bytes at the end of valid UTF-8 text begin a code point that is not
// complete yet (0 to 3).
std::size_t incomplete_code_point(std::string_view text) noexcept {
  const std::size_t n = text.size();
  for (std::size_t back = 1; back <= 4 && back <= n; ++back) {
    const auto c = static_cast<unsigned char>(text[n - back]);
    if ((c & 0xc0) == 0x80) continue;  // a continuation byte: the lead byte is further back
    const std::size_t length = c < 0x80 ? 1 : (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3 : 4;
    return length > back ? back : 0;
  }
  return 0;
}
}  // namespace

// Streamed messages (in the read lock): turns the part the adapter read into the part
// on_message gets. A text part's incomplete last code point moves to the next part,
// so that every part is valid UTF-8 on its own (the adapter checked the whole
// message). Returns false when nothing is left to deliver (an empty part that is not
// the last); a message whose only non-empty part is its last is delivered whole.
bool EngineCore::shape_part(Session& s, InboundMessage& m, std::uint64_t& offset) {
  auto& st = s.streamed;
  if (!st.carry.empty()) {
    m.payload.insert(0, st.carry);
    st.carry.clear();
  }
  const bool last = m.part == MessagePart::last;
  if (!last && m.type == MessageType::text) {
    const std::size_t cut = incomplete_code_point(m.payload);
    st.carry.assign(m.payload, m.payload.size() - cut, cut);
    m.payload.resize(m.payload.size() - cut);
  }
  if (!last && m.payload.empty()) return false;
  if (st.open) {
    m.part = last ? MessagePart::last : MessagePart::middle;
  } else {
    m.part = last ? MessagePart::whole : MessagePart::first;
  }
  offset = st.offset;
  st.offset = last ? 0 : st.offset + m.payload.size();
  st.open = !last;
  return true;
}

// Still in the read lock, or alone on the session's one slot: the only writer of the
// session's received counters. A streamed part counts its bytes; its message counts
// with its last part.
void EngineCore::count_received(Session& s, std::size_t bytes, bool message_done) noexcept {
  const std::uint64_t messages = message_done ? 1 : 0;
  SessionCounters::add(s.counters->messages_received, messages);
  SessionCounters::add(s.counters->bytes_received, bytes);
  // One writer at a time, as for the session's: the only reader of a single slot, or
  // under mutex_; and a session finishes (the next one begins) only once its readers
  // have let their slots go, after counting. A locked add per message cost more than
  // the rest of the count.
  SessionCounters::add(totals_->messages_received, messages);
  SessionCounters::add(totals_->bytes_received, bytes);
}

std::unique_ptr<InboundMessage> EngineCore::take_buffer_locked(Session& s) {
  if (s.free_buffers.empty()) return std::make_unique<InboundMessage>();
  auto buffer = std::move(s.free_buffers.back());
  s.free_buffers.pop_back();
  return buffer;
}

void EngineCore::deliver(const std::shared_ptr<Session>& s, const InboundMessage& inbound, std::uint64_t sequence,
                         std::uint64_t offset, std::uint32_t slot, bool sampled) {
  Message message{inbound.type, sequence, inbound.payload, inbound.part, offset};
  Context ctx(*this, s.get());
  std::unique_ptr<Span> span;
  // A child of the read that took it off the socket, when adapter reads are traced.
  if (tracer_ && sampled) {
    span = inbound.trace.valid() ? tracer_->start_span("wscengine.on_message", inbound.trace)
                                 : start_linked_span("wscengine.on_message", s->run_trace);
  }
  if (span) {
    span->set_attribute("wscengine.session_id", static_cast<std::int64_t>(s->id));
    span->set_attribute("wscengine.message.type", message.is_text() ? "text" : "binary");
    span->set_attribute("wscengine.message.length", static_cast<std::int64_t>(message.payload.size()));
    span->set_attribute("wscengine.message.sequence", static_cast<std::int64_t>(sequence));
    span->set_attribute("wscengine.reader_slot", static_cast<std::int64_t>(slot));
    if (message.part != MessagePart::whole) {
      span->set_attribute("wscengine.message.part", message.part == MessagePart::first    ? "first"
                                                    : message.part == MessagePart::middle ? "middle"
                                                                                          : "last");
      span->set_attribute("wscengine.message.offset", static_cast<std::int64_t>(offset));
    }
    ctx.set_trace_context(span->context());
  }
  const bool timed = metrics_ && sampled;
  std::chrono::steady_clock::time_point started;
  if (timed) started = std::chrono::steady_clock::now();
  std::exception_ptr thrown;  // a pointer, not an optional<Error>: see bench/profile.md
  try {
    call_user(span, [&] { client_->on_message(ctx, message); });
  } catch (...) {
    thrown = std::current_exception();
  }
  if (timed) metrics_->on_message_duration(std::chrono::steady_clock::now() - started);
  if (thrown) {
    Error error(errc::io_error, "on_message threw: " + what_of(thrown));
    if (span) span->set_error(error);
    if (metrics_) metrics_->read_error(error);
    note_error(error);
    try {
      call_user(span, [&] { client_->on_read_error(ctx, error); });
    } catch (...) {
    }
  }
}

// Returns true when reading continues on the same connection.
bool EngineCore::handle_read_error(const std::shared_ptr<Session>& s, Error error) {
  if (error.is(errc::closed)) {
    Lock lock(mutex_);
    CloseFrame received = error.close.value_or(CloseFrame{close_code::abnormal, {}});
    bool fresh = request_shutdown_locked(s, EndReason::peer_closed, received, CloseInitiator::peer);
    lock.unlock();
    if (fresh) s->stop.request_stop();
    return false;
  }
  report_read_error(s, error);  // runs under the read lock
  Lock lock(mutex_);
  if (s->ending) return false;
  if (!s->connection->is_open()) {
    // The adapter failed the connection (1009, 1007, 1002…): the client closed it.
    bool fresh = request_shutdown_locked(s, EndReason::failed, std::nullopt, CloseInitiator::client);
    lock.unlock();
    if (fresh) s->stop.request_stop();
    return false;
  }
  return true;
}

void EngineCore::report_read_error(const std::shared_ptr<Session>& s, const Error& error) {
  Context ctx(*this, s.get());
  auto span = start_span("wscengine.on_read_error", s->run_trace);
  if (span) {
    span->set_attribute("wscengine.session_id", static_cast<std::int64_t>(s->id));
    span->set_error(error);
    ctx.set_trace_context(span->context());
  }
  if (metrics_) metrics_->read_error(error);
  note_error(error);
  try {
    call_user(span, [&] { client_->on_read_error(ctx, error); });
  } catch (...) {
  }
}

void EngineCore::note_error(const Error& error) {
  auto now = std::chrono::system_clock::now();
  std::lock_guard stats_lock(stats_mutex_);
  last_error_ = std::make_unique<Error>(error);
  last_error_at_ = now;
}

// ---------------------------------------------------------------- shutdown

bool EngineCore::request_shutdown_locked(const std::shared_ptr<Session>& s, EndReason reason,
                                         std::optional<CloseFrame> received, CloseInitiator who) {
  if (s->ending) {
    if (reason == EndReason::stop || reason == EndReason::exit) s->end_reason = reason;
    return false;
  }
  s->ending = true;
  if (s->heartbeat) s->heartbeat->cancel();
  if (s->watchdog) s->watchdog->cancel();
  set_connection_state(ConnectionState::open, ConnectionState::closing);
  s->end_reason = reason;
  s->received_close = std::move(received);
  s->initiator = who;
  if (state_ == EngineState::running)
    state_ = reason == EndReason::stop || reason == EndReason::exit ? EngineState::stopping : EngineState::restarting;
  s->connection->cancel_wait();
  maybe_finish_locked(s);
  return true;
}

void EngineCore::maybe_finish_locked(const std::shared_ptr<Session>& s) {
  if (!s->ending || s->reader_running || s->in_flight != 0 || s->finish_scheduled) return;
  s->finish_scheduled = true;
  post([this, s] { finish_session(s); });
}

void EngineCore::finish_session(std::shared_ptr<Session> s) {
  s->stop.request_stop();
  Context ctx(*this, s.get());
  auto shutdown_span = start_span("wscengine.shutdown", s->run_trace);
  auto close_span = start_span("wscengine.on_close", trace_of(shutdown_span));
  if (close_span) ctx.set_trace_context(close_span->context());
  std::optional<CloseFrame> received;
  std::optional<Error> dead;
  EndReason reason;
  {
    Lock lock(mutex_);
    ctx.set_initiator(s->initiator);
    received = s->received_close;
    reason = s->end_reason;
    if (s->dead) dead = *s->dead;
  }
  // No reader runs any more: the heartbeat's verdict reaches on_read_error first.
  if (dead) report_read_error(s, *dead);
  if (shutdown_span) {
    shutdown_span->set_attribute("wscengine.session_id", static_cast<std::int64_t>(s->id));
    shutdown_span->set_attribute("wscengine.initiator", ctx.initiator() == CloseInitiator::peer ? "peer" : "client");
    if (received) {
      shutdown_span->set_attribute("wscengine.close.code", static_cast<std::int64_t>(received->code));
      if (!received->reason.empty()) shutdown_span->set_attribute("wscengine.close.reason", received->reason);
      shutdown_span->add_event("connection closed");
    }
  }
  std::optional<CloseFrame> reply;
  try {
    reply = call_user(close_span, [&] { return client_->on_close(ctx, received); });
  } catch (...) {
  }
  close_span.reset();
  {
    Lock lock(mutex_);
    reason = s->end_reason;  // exit/stop may have come during on_close
  }
  if (!s->connection->is_open()) return after_close(std::move(s), std::move(shutdown_span), reason, {});
  CloseFrame frame = reply.value_or(reason == EndReason::stop ? CloseFrame{close_code::normal, {}}
                                                              : CloseFrame{close_code::going_away, {}});
  if (Error invalid = validate_close_frame(frame)) {
    report_close_error(ctx, shutdown_span.get(), invalid);
    frame = CloseFrame{close_code::going_away, {}};
  }
  if (shutdown_span) shutdown_span->set_attribute("wscengine.close.sent_code", static_cast<std::int64_t>(frame.code));
  // The close handshake holds no thread: the rest runs on a callback thread once the
  // peer answered, close_timeout passed, or the connection dropped.
  const TraceContext shutdown_trace = trace_of(shutdown_span);
  std::shared_ptr<Span> span(std::move(shutdown_span));
  traced(shutdown_trace, [&] {
    s->connection->async_close(
        frame, options_.close_timeout, counted([this, s, span = std::move(span), reason](Error close_error) mutable {
          post(
              [this, s = std::move(s), span = std::move(span), reason, close_error = std::move(close_error)]() mutable {
                after_close(std::move(s), std::move(span), reason, std::move(close_error));
              });
        }));
  });
}

// On a callback thread, after the close handshake (or with none): on_close_error if it
// failed, then stop or restart.
void EngineCore::after_close(std::shared_ptr<Session> s, std::shared_ptr<Span> shutdown_span, EndReason reason,
                             Error close_error) {
  // Sends still waiting behind a message in parts that never finished: they fail on the
  // closed connection (and are held again with OutageSends::hold).
  s->sends->end_parts(*s->connection);
  if (close_error && !close_error.is(errc::closed)) {
    if (shutdown_span) shutdown_span->set_error(close_error);
    Context ctx(*this, s.get());
    {
      Lock lock(mutex_);
      ctx.set_initiator(s->initiator);
    }
    report_close_error(ctx, shutdown_span.get(), close_error);
  }
  {
    Lock lock(mutex_);
    reason = s->end_reason;  // exit/stop may have come meanwhile
  }
  if (shutdown_span && (reason == EndReason::exit || reason == EndReason::stop)) {
    shutdown_span->add_event(reason == EndReason::exit ? "engine exit" : "engine stop");
  }
  shutdown_span.reset();
  s->run_span.reset();
  set_connection_state(ConnectionState::closing, ConnectionState::none);
  {
    std::lock_guard stats_lock(stats_mutex_);
    if (latest_counters_ == s->counters) session_open_ = false;
  }
  Lock lock(mutex_);
  if (s->current) retired_unsettled_ += s->unsettled;
  s->current = false;
  if (current_ == s) current_.reset();
  if (parked_reader_ == s) parked_reader_.reset();
  reason = s->end_reason;
  bool stop_now = stop_requested_ || exit_requested_ || reason == EndReason::stop || reason == EndReason::exit ||
                  (reason != EndReason::restart && !options_.auto_reconnect);
  if (stop_now) return set_stopped_locked(Error(errc::cancelled, "stopped"));
  state_ = EngineState::restarting;
  // A connection that stayed up resets the backoff and is replaced at once; one that
  // ended soon after opening (a server that accepts, then drops) backs off further.
  if (auto delay = backoff_.after_session(reason == EndReason::restart)) return schedule_retry(*delay);
  post([this, generation = generation_] { begin_attempt(true, generation); });
}

void EngineCore::report_close_error(Context& ctx, Span* shutdown_span, const Error& error) {
  note_error(error);
  auto span = start_span("wscengine.on_close_error", shutdown_span ? shutdown_span->context() : TraceContext{});
  if (span) {
    span->set_error(error);
    ctx.set_trace_context(span->context());
  }
  try {
    call_user(span, [&] { client_->on_close_error(ctx, error); });
  } catch (...) {
  }
}

// ---------------------------------------------------------------- pause, send

bool EngineCore::reader_inside_on_this_thread() const noexcept { return t_reader_engine == this; }

void EngineCore::pause() {
  Lock lock(mutex_);
  ++pausers_waiting_;
  state_cv_.wait(lock, [&] { return !user_paused_; });
  user_paused_ = true;
  heavy_fence(fence_mode_);  // against enter_read_lock, which takes no mutex_
  state_cv_.wait(lock, [&] { return !reader_inside_; });
  --pausers_waiting_;
}

void EngineCore::pause_async(std::function<void()> granted) {
  Lock lock(mutex_);
  async_pausers_.push_back(std::move(granted));
  ++pausers_waiting_;  // a reader leaving the read lock takes mutex_ and grants it
  grant_async_pauser_locked();
}

// mutex_ held: the first async_pause in line gets the read lock once it is free.
void EngineCore::grant_async_pauser_locked() {
  if (async_pausers_.empty() || user_paused_ || reader_inside_) return;
  user_paused_ = true;
  heavy_fence(fence_mode_);  // against enter_read_lock, which takes no mutex_
  if (reader_inside_) {
    // A reader entered meanwhile. It either saw user_paused_ and backs out, or reads
    // one message; either way its leave_read_lock sees this pauser waiting and grants.
    user_paused_ = false;
    return;
  }
  --pausers_waiting_;
  post([granted = std::move(async_pausers_.front())] { granted(); });
  async_pausers_.pop_front();
}

// ---------------------------------------------------------------- async_read

// Under the read lock no reader arms a wait on the connection (a woken one parks): the
// read arms its own, after cancelling one a reader may have left armed (that reader
// then parks). Every step runs on a callback thread; the handler runs once.
void EngineCore::read_paused_async(std::chrono::milliseconds timeout, std::function<void(Error, InboundMessage)> done) {
  auto read = std::make_shared<PausedRead>(RuntimeAccess::impl(*runtime_).io);
  read->done = std::move(done);
  Lock lock(mutex_);
  auto refuse = [&](Error e) { post([read, e = std::move(e)] { read->done(e, {}); }); };
  if (!user_paused_) return refuse(Error(errc::invalid_option, "async_read() needs the read lock: pause() first"));
  if (paused_read_) return refuse(Error(errc::invalid_option, "async_read() while another is in progress"));
  if (!current_) return refuse(Error(errc::not_connected, "async_read() between sessions"));
  read->session = current_;
  paused_read_ = read;
  read->timer.expires_after(timeout);
// GCC 12's false positive on counted()'s std::optional once Asio's completion is
// inlined (as in begin_attempt).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
  read->timer.async_wait(counted([this, read, timeout](const boost::system::error_code& ec) {
    if (ec) return;
    Lock lock(mutex_);
    end_paused_read_locked(read, Error(errc::timeout, "no message within " + std::to_string(timeout.count()) + " ms"));
  }));
#pragma GCC diagnostic pop
  read->session->connection->cancel_wait();  // a reader's wait, if one is armed: it parks
  post([this, read] { paused_read_step(read, {}); });
}

// On a callback thread: reads what is buffered, or waits for more. The read runs only
// while the read is still current: a step that was overtaken by resume() must not
// take a message the readers are about to read (it would be lost).
void EngineCore::paused_read_step(const std::shared_ptr<PausedRead>& read, Error wait_error) {
  {
    Lock lock(mutex_);
    read->waiting = false;
    if (paused_read_ != read) return;  // finished meanwhile (timeout, resume)
    read->reading = true;
  }
  InboundMessage message;
  Error e = read->session->connection->try_read(message);
  Lock lock(mutex_);
  read->reading = false;
  if (!e) {
    finish_paused_read_locked(read, {}, std::move(message));
  } else if (read->end_asked) {
    finish_paused_read_locked(read, std::move(*read->end_asked), {});
  } else if (!e.is(errc::would_block)) {
    finish_paused_read_locked(read, std::move(e), {});
  } else if (wait_error && !wait_error.is(errc::cancelled)) {
    finish_paused_read_locked(read, std::move(wait_error), {});
  } else if (read->session->ending || !read->session->connection->is_open()) {
    finish_paused_read_locked(read, Error(errc::closed, "the session ended during async_read()"), {});
  } else {
    return arm_paused_read_locked(read);
  }
  if (read->resume_after) resume_locked();
}

// A timeout or resume() ends the read; while its try_read runs, the step does.
void EngineCore::end_paused_read_locked(const std::shared_ptr<PausedRead>& read, Error why) {
  if (!read->reading) return finish_paused_read_locked(read, std::move(why), {});
  if (!read->end_asked) read->end_asked = std::move(why);
}

void EngineCore::arm_paused_read_locked(const std::shared_ptr<PausedRead>& read) {
  read->waiting = true;
  // The wait may complete inside this call (mutex_ held): the step is posted.
  read->session->connection->async_wait_readable(
      counted([this, read](Error e) { post([this, read, e = std::move(e)] { paused_read_step(read, e); }); }));
}

void EngineCore::finish_paused_read_locked(const std::shared_ptr<PausedRead>& read, Error error,
                                           InboundMessage message) {
  if (paused_read_ != read) return;
  paused_read_.reset();
  read->timer.cancel();
  if (read->waiting) read->session->connection->cancel_wait();  // its handler finds it finished
  post([read, error = std::move(error), message = std::move(message)]() mutable {
    read->done(std::move(error), std::move(message));
  });
}

void EngineCore::resume() {
  Lock lock(mutex_);
  // A read still in progress ends before a reader may arm its own wait; one whose
  // try_read runs right now ends when it returns, and hands the read lock on then.
  if (auto read = paused_read_) {
    end_paused_read_locked(read, Error(errc::cancelled, "the read lock was released during async_read()"));
    if (paused_read_ == read) {
      read->resume_after = true;
      return;
    }
  }
  resume_locked();
}

void EngineCore::resume_locked() {
  user_paused_ = false;
  if (pausers_waiting_) state_cv_.notify_all();
  grant_async_pauser_locked();
  if (user_paused_) return;  // handed on: the parked reader stays parked
  if (auto s = std::move(parked_reader_)) {
    parked_reader_.reset();
    kick_reader_locked(s);
  }
}

std::shared_ptr<Session> EngineCore::current_session() const {
  Lock lock(mutex_);
  return current_;
}

Error EngineCore::send(MessageType type, std::string_view payload, SendHandler done,
                       std::chrono::milliseconds room_timeout) {
  std::shared_ptr<Session> s;
  HeldSend tracked;
  {
    Lock lock(mutex_);
    s = current_;
    if (!s && (state_ == EngineState::idle || state_ == EngineState::stopped)) {
      return Error(errc::not_running, "the engine is not running: start() it first");
    }
    if (holds_sends_) {
      if (!sends_go_direct_locked(s.get())) {
        if (may_hold_locked()) return hold_locked(type, payload, std::move(done));
      } else {
        tracked = HeldSend{++send_order_, type, std::make_shared<const std::string>(payload), std::move(done), {}};
        ++s->unsettled;
      }
    }
  }
  if (!s) return Error(errc::not_connected, "no open session");
  if (room_timeout.count() > 0 && runtime_->on_io_thread()) room_timeout = std::chrono::milliseconds(0);  // never wait
  auto send_now = [&] {
    if (!tracked.payload) return s->sends->send(*s->connection, type, payload, std::move(done), room_timeout);
    Error refused;
    send_tracked(s, std::move(tracked), room_timeout, false, &refused);
    return refused;
  };
  if (tracer_ && !sample_message()) {  // the decorator starts no write span for it
    SampledOut out;
    return send_now();
  }
  return traced_per_message(s->run_trace, send_now);
}

// ---------------------------------------------------------------- sends across an outage

bool EngineCore::sends_go_direct_locked(const Session* s) const {
  return s && !s->ending && held_.empty() && !flushing_ && retired_unsettled_ == 0;
}

bool EngineCore::may_hold_locked() const {
  return !stop_requested_ && !exit_requested_ &&
         (state_ == EngineState::starting || state_ == EngineState::running || state_ == EngineState::restarting);
}

Error EngineCore::hold_locked(MessageType type, std::string_view payload, SendHandler done) {
  const OutageOptions& limits = options_.outage;
  const bool over =
      !held_.empty() && (held_.size() + 1 > limits.max_messages || held_bytes_ + payload.size() > limits.max_bytes);
  if (over && limits.mode == OutageSends::hold) {
    return Error(errc::send_queue_full, std::to_string(held_.size()) + " messages (" + std::to_string(held_bytes_) +
                                            " bytes) are held for the next session; limits outage.max_messages " +
                                            std::to_string(limits.max_messages) + ", outage.max_bytes " +
                                            std::to_string(limits.max_bytes));
  }
  HeldSend held{++send_order_, type, std::make_shared<const std::string>(payload), std::move(done),
                std::chrono::steady_clock::now() + limits.max_age};
  insert_held_locked(std::move(held));
  return {};
}

// Held sends stay in send order: one a session could not send is older than the ones
// held since, and goes before them.
void EngineCore::insert_held_locked(HeldSend held) {
  const std::size_t size = held.payload->size();
  auto at = std::upper_bound(held_.begin(), held_.end(), held.order,
                             [](std::uint64_t order, const HeldSend& h) { return order < h.order; });
  held_.insert(at, std::move(held));
  held_bytes_ += size;
  publish_held_locked();
  // Each message it drops leaves the published counts in give_up_held_locked.
  if (options_.outage.mode == OutageSends::drop_oldest) drop_oldest_locked(0);
  arm_hold_timer_locked();
}

void EngineCore::drop_oldest_locked(std::size_t incoming_bytes) {
  const OutageOptions& limits = options_.outage;
  // The newest always stays, even when it alone is over max_bytes.
  while (held_.size() > 1 && (held_.size() > limits.max_messages || held_bytes_ + incoming_bytes > limits.max_bytes)) {
    HeldSend& oldest = held_.front();
    held_bytes_ -= oldest.payload->size();
    totals_->sends_dropped.fetch_add(1, std::memory_order_relaxed);
    give_up_held_locked(oldest, Error(errc::dropped,
                                      "held for the next session and dropped for newer ones (outage "
                                      "limits " +
                                          std::to_string(limits.max_messages) + " messages, " +
                                          std::to_string(limits.max_bytes) + " bytes)"));
    held_.pop_front();
  }
}

void EngineCore::give_up_all_held_locked() {
  for (auto& held : held_) {
    give_up_held_locked(held, Error(errc::cancelled, "the engine stopped before a session could send it"));
  }
  held_.clear();
  held_bytes_ = 0;
  publish_held_locked();
  if (hold_timer_) hold_timer_->cancel();
}

// The statistics stop counting it before its completion can run: a completion that
// reads engine.stats() sees it gone (the caller erases it from held_ next).
void EngineCore::give_up_held_locked(HeldSend& held, Error error) {
  totals_->held_messages.fetch_sub(1, std::memory_order_relaxed);
  totals_->held_bytes.fetch_sub(held.payload->size(), std::memory_order_relaxed);
  if (held.done) post([done = std::move(held.done), e = std::move(error)]() mutable { done(std::move(e)); });
}

void EngineCore::publish_held_locked() {
  totals_->held_messages.store(held_.size(), std::memory_order_relaxed);
  totals_->held_bytes.store(held_bytes_, std::memory_order_relaxed);
}

// One timer for every held send: it wakes at the earliest deadline, but no more often
// than every max_age / 32, so that n sends held at n different times cost no n wake-ups.
void EngineCore::arm_hold_timer_locked() {
  if (hold_timer_armed_ || held_.empty()) return;
  auto earliest = std::min_element(held_.begin(), held_.end(), [](const HeldSend& a, const HeldSend& b) {
                    return a.deadline < b.deadline;
                  })->deadline;
  auto soonest = std::chrono::steady_clock::now() + std::max<std::chrono::steady_clock::duration>(
                                                        options_.outage.max_age / 32, std::chrono::milliseconds(1));
  if (!hold_timer_) hold_timer_ = std::make_unique<boost::asio::steady_timer>(RuntimeAccess::impl(*runtime_).io);
  hold_timer_->expires_at(std::max(earliest, soonest));
  hold_timer_armed_ = true;
  hold_timer_->async_wait(counted([this](const boost::system::error_code&) { hold_timer_fired(); }));
}

void EngineCore::hold_timer_fired() {
  Lock lock(mutex_);
  hold_timer_armed_ = false;
  const auto now = std::chrono::steady_clock::now();
  const auto age = std::to_string(options_.outage.max_age.count());
  for (auto it = held_.begin(); it != held_.end();) {
    if (it->deadline > now) {
      ++it;
      continue;
    }
    held_bytes_ -= it->payload->size();
    totals_->sends_expired.fetch_add(1, std::memory_order_relaxed);
    give_up_held_locked(
        *it, Error(errc::expired, "held for the next session for longer than outage.max_age (" + age + " ms)"));
    it = held_.erase(it);
  }
  publish_held_locked();
  arm_hold_timer_locked();
}

void EngineCore::flush_held(Lock& lock) {
  if (flushing_) return;  // the running flush takes what is held now too
  flushing_ = true;
  for (;;) {
    std::shared_ptr<Session> s = current_;
    if (!s || s->ending || held_.empty() || retired_unsettled_ != 0) break;
    Queue<HeldSend> batch;
    batch.swap(held_);
    held_bytes_ = 0;
    publish_held_locked();
    s->unsettled += batch.size();
    lock.unlock();
    traced_per_message(s->run_trace, [&] {
      for (auto& held : batch) send_tracked(s, std::move(held), std::chrono::milliseconds(0), true, nullptr);
    });
    lock.lock();
  }
  flushing_ = false;
}

void EngineCore::send_tracked(const std::shared_ptr<Session>& s, HeldSend held, std::chrono::milliseconds room_timeout,
                              bool over_limits, Error* refused) {
  const MessageType type = held.type;
  auto payload = held.payload;
  // The handler is shared: a refusal at once leaves it unused, and the send is settled here.
  auto pending = std::make_shared<HeldSend>(std::move(held));
  Error e = s->sends->send(
      *s->connection, type, *payload,
      [this, s, pending](Error outcome) { settle(s, std::move(*pending), std::move(outcome)); }, room_timeout,
      over_limits);
  if (!e) return;
  Lock lock(mutex_);
  unsettle_locked(*s);
  if (refused) *refused = std::move(e);
}

namespace {
// The send failed because its session ended (not because of the message itself).
bool session_ended_it(const Error& e) {
  return e.is(errc::closed) || e.is(errc::cancelled) || e.is(errc::timeout) || e.is(errc::io_error) ||
         e.is(errc::not_connected) || e.is(errc::connection_lost);
}
}  // namespace

// On a callback thread: the outcome of a send handed to session `s`. One the session's
// end cut off is held again, in its place, for the next session.
void EngineCore::settle(const std::shared_ptr<Session>& s, HeldSend held, Error error) {
  Lock lock(mutex_);
  unsettle_locked(*s);
  if (error && session_ended_it(error) && may_hold_locked()) {
    held.deadline = std::chrono::steady_clock::now() + options_.outage.max_age;
    insert_held_locked(std::move(held));
  } else if (held.done) {
    lock.unlock();
    held.done(std::move(error));
    lock.lock();
  }
  flush_held(lock);
}

void EngineCore::unsettle_locked(Session& s) {
  --s.unsettled;
  if (!s.current) --retired_unsettled_;
}

std::size_t EngineCore::buffered_amount() const {
  auto s = current_session();
  return s ? s->sends->buffered_amount() : 0;
}

// ---------------------------------------------------------------- the send queue

Error SendQueue::admit_locked(std::unique_lock<std::mutex>& lock, std::size_t size,
                              std::chrono::milliseconds room_timeout, bool over_limits) {
  auto has_room = [&] {
    return over_limits || (messages_ < max_messages_ && (messages_ == 0 || bytes_ + size <= max_bytes_));
  };
  if (!has_room() && (room_timeout.count() <= 0 || !room_.wait_for(lock, room_timeout, has_room))) {
    return Error(errc::send_queue_full, std::to_string(messages_) + " messages (" + std::to_string(bytes_) +
                                            " bytes) wait to be sent; limits " + std::to_string(max_messages_) +
                                            " messages, " + std::to_string(max_bytes_) + " bytes");
  }
  ++messages_;
  bytes_ += size;
  SessionCounters::add(counters_->queued_messages, 1);
  SessionCounters::add(counters_->queued_bytes, size);
  return {};
}

Error SendQueue::send(Connection& connection, MessageType type, std::string_view payload, SendHandler done,
                      std::chrono::milliseconds room_timeout, bool over_limits) {
  {
    std::unique_lock lock(mutex_);
    if (Error refused = admit_locked(lock, payload.size(), room_timeout, over_limits)) return refused;
  }
  // Handed on in the order the adapter gets them: a message in parts begun meanwhile
  // cannot have its frames overtaken by this one (it waits instead).
  std::lock_guard order(order_mutex_);
  {
    std::lock_guard lock(mutex_);
    if (in_parts_ || draining_) {  // behind a message in parts: it waits (a copy)
      waiting_.push_back({type, std::string(payload), std::move(done)});
      return {};
    }
  }
  return hand(connection, type, payload, MessagePart::whole, std::move(done));
}

Error SendQueue::hand(Connection& connection, MessageType type, std::string_view payload, MessagePart part,
                      SendHandler done) {
  const std::size_t size = payload.size();
  const bool message_done = part == MessagePart::whole || part == MessagePart::last;
  auto write = [&](Connection::DoneHandler handler) {
    if (part == MessagePart::whole) return connection.async_write(type, payload, std::move(handler));
    connection.async_write_part(type, payload, part, std::move(handler));
  };
  // The adapter may complete inline: then a send without a handler returns its error.
  if (done) {
    write([queue = shared_from_this(), size, message_done, outcome = core_.send_outcome(std::move(done))](Error e) {
      queue->finished(size, !e, message_done);
      outcome(std::move(e));
    });
    return {};
  }
  // Without a handler, an outcome the adapter knows at once (it completed inline) is
  // send()'s result; a later one reaches nobody (the connection's end is reported).
  struct Inline {
    Error error;
    std::atomic<bool> done{false};
  };
  auto now = std::make_shared<Inline>();
  write([queue = shared_from_this(), size, message_done, now](Error e) {
    queue->finished(size, !e, message_done);
    now->error = std::move(e);
    now->done.store(true, std::memory_order_release);
  });
  return now->done.load(std::memory_order_acquire) ? now->error : Error{};
}

Error SendQueue::begin_parts() {
  std::lock_guard order(order_mutex_);  // after the sends being handed on now
  std::lock_guard lock(mutex_);
  if (in_parts_)
    return Error(errc::invalid_option, "a message is already being sent in parts on this session: finish() it first");
  if (draining_)
    return Error(errc::send_queue_full,
                 "the sends that waited behind the last message in parts are being handed on: begin again");
  in_parts_ = true;
  return {};
}

Error SendQueue::send_part(Connection& connection, MessageType type, std::string_view payload, MessagePart part,
                           SendHandler done) {
  {
    std::unique_lock lock(mutex_);
    if (Error refused = admit_locked(lock, payload.size(), std::chrono::milliseconds(0), false)) return refused;
  }
  std::lock_guard order(order_mutex_);
  return hand(connection, type, payload, part, std::move(done));
}

void SendQueue::end_parts(Connection& connection) {
  {
    std::lock_guard lock(mutex_);
    in_parts_ = false;
    if (draining_) return;  // another thread hands them on
    draining_ = true;
  }
  // Sends taken meanwhile wait too (draining_), so that none overtakes those before it.
  std::lock_guard order(order_mutex_);
  for (;;) {
    Queue<Waiting> batch;
    {
      std::lock_guard lock(mutex_);
      if (waiting_.empty()) {
        draining_ = false;
        return;
      }
      batch.swap(waiting_);
    }
    for (auto& w : batch) {
      Error e = hand(connection, w.type, w.payload, MessagePart::whole, std::move(w.done));
      (void)e;  // without a handler, a later outcome reaches nobody either
    }
  }
}

// A part of a message in parts counts its bytes as sent; its message counts with the last.
void SendQueue::finished(std::size_t size, bool sent, bool message_done) {
  const std::uint64_t messages = sent && message_done ? 1 : 0;
  {
    std::lock_guard lock(mutex_);
    --messages_;
    bytes_ -= size;
    SessionCounters::subtract(counters_->queued_messages, 1);
    SessionCounters::subtract(counters_->queued_bytes, size);
    if (sent) {
      SessionCounters::add(counters_->messages_sent, messages);
      SessionCounters::add(counters_->bytes_sent, size);
    }
  }
  if (sent) {
    totals_->messages_sent.fetch_add(messages, std::memory_order_relaxed);
    totals_->bytes_sent.fetch_add(size, std::memory_order_relaxed);
  }
  room_.notify_all();
}

std::size_t SendQueue::buffered_amount() const {
  std::lock_guard lock(mutex_);
  return bytes_;
}

// ---------------------------------------------------------------- statistics

void SessionCounters::round_trip(std::chrono::nanoseconds rtt) noexcept {
  std::lock_guard lock(rtt_mutex);
  const std::int64_t now = rtt.count();
  const std::int64_t before = smoothed_rtt_ns.load(std::memory_order_relaxed);
  rtt_ns.store(now, std::memory_order_relaxed);
  smoothed_rtt_ns.store(before < 0 ? now : before - before / 8 + now / 8, std::memory_order_relaxed);
}

namespace {
std::optional<std::chrono::nanoseconds> nanoseconds_if_set(const std::atomic<std::int64_t>& cell) {
  std::int64_t ns = cell.load(std::memory_order_relaxed);
  if (ns < 0) return std::nullopt;
  return std::chrono::nanoseconds(ns);
}
}  // namespace

SessionStats SessionCounters::snapshot() const noexcept {
  SessionStats out;
  out.session_id = id;
  out.age = std::chrono::steady_clock::now() - opened;
  out.traffic.messages_received = messages_received.load(std::memory_order_relaxed);
  out.traffic.bytes_received = bytes_received.load(std::memory_order_relaxed);
  out.traffic.messages_sent = messages_sent.load(std::memory_order_relaxed);
  out.traffic.bytes_sent = bytes_sent.load(std::memory_order_relaxed);
  out.queued_messages = queued_messages.load(std::memory_order_relaxed);
  out.queued_bytes = queued_bytes.load(std::memory_order_relaxed);
  out.rtt = nanoseconds_if_set(rtt_ns);
  out.smoothed_rtt = nanoseconds_if_set(smoothed_rtt_ns);
  return out;
}

EngineStats EngineCore::stats() const {
  EngineStats out;
  out.traffic.messages_received = totals_->messages_received.load(std::memory_order_relaxed);
  out.traffic.bytes_received = totals_->bytes_received.load(std::memory_order_relaxed);
  out.traffic.messages_sent = totals_->messages_sent.load(std::memory_order_relaxed);
  out.traffic.bytes_sent = totals_->bytes_sent.load(std::memory_order_relaxed);
  out.sessions = totals_->sessions.load(std::memory_order_relaxed);
  out.reconnects = totals_->reconnects.load(std::memory_order_relaxed);
  out.held_messages = totals_->held_messages.load(std::memory_order_relaxed);
  out.held_bytes = totals_->held_bytes.load(std::memory_order_relaxed);
  out.sends_expired = totals_->sends_expired.load(std::memory_order_relaxed);
  out.sends_dropped = totals_->sends_dropped.load(std::memory_order_relaxed);
  std::shared_ptr<SessionCounters> latest;
  bool open = false;
  {
    std::lock_guard stats_lock(stats_mutex_);
    latest = latest_counters_;
    open = session_open_;
    if (last_error_) out.last_error = *last_error_;
    out.last_error_at = last_error_at_;
  }
  if (latest) {
    SessionStats session = latest->snapshot();
    out.rtt = session.rtt;
    out.smoothed_rtt = session.smoothed_rtt;
    if (open) out.session = session;
  }
  return out;
}

// ---------------------------------------------------------------- control frames

ControlFrameSink ControlFrameRelay::sink_for(std::uint64_t session) {
  return [relay = shared_from_this(), session](ControlFrameKind kind, std::string_view payload) {
    relay->seen(session, kind, payload);
  };
}

void ControlFrameRelay::detach() {
  std::lock_guard lock(mutex_);
  attached_ = false;
  waiting_.clear();
}

void ControlFrameRelay::seen(std::uint64_t session, ControlFrameKind kind, std::string_view payload) {
  const auto now = std::chrono::steady_clock::now();
  std::lock_guard lock(mutex_);
  if (!attached_) return;
  ControlFrameEvent event{kind, std::string(payload), session, std::nullopt, 0};
  if (kind == ControlFrameKind::ping_sent) {
    if (pings_.size() == 16) pings_.pop_front();
    pings_.push_back({session, event.payload, now});
  } else if (kind == ControlFrameKind::pong_received) {
    // A pong answers the latest ping with its payload (RFC 6455 §5.5.3): that one and
    // every ping before it are settled.
    for (auto it = pings_.rbegin(); it != pings_.rend(); ++it) {
      if (it->session == session && it->payload == payload) {
        event.round_trip = now - it->at;
        pings_.erase(pings_.begin(), it.base());
        break;
      }
    }
  }
  if (waiting_.size() >= kMaxWaiting) {  // the observer fell behind: counted on the last one waiting
    ++waiting_.back().missed;
    return;
  }
  waiting_.push_back(std::move(event));
  if (!std::exchange(draining_, true)) core_.post([relay = shared_from_this()] { relay->drain(); });
}

void ControlFrameRelay::drain() {
  const auto& observer = core_.options().on_control_frame;  // the engine is alive: this is its task
  for (;;) {
    ControlFrameEvent event;
    {
      std::lock_guard lock(mutex_);
      if (waiting_.empty()) {
        draining_ = false;
        return;
      }
      event = std::move(waiting_.front());
      waiting_.pop_front();
    }
    try {
      observer(event);
    } catch (...) {  // the engine goes on; a control frame's report is not worth a session
    }
  }
}

}  // namespace detail

// ---------------------------------------------------------------- Engine

Engine::Engine(EngineOptions options, std::shared_ptr<Client> client, std::shared_ptr<Connector> connector,
               std::shared_ptr<Runtime> runtime) {
  if (Error e = options.validate()) throw InvalidOptions(e);
  if (!client) throw InvalidOptions(Error(errc::invalid_option, "client is null"));
  if (!connector) throw InvalidOptions(Error(errc::invalid_option, "connector is null"));
  core_ = std::make_shared<detail::EngineCore>(std::move(options), std::move(client), std::move(connector),
                                               std::move(runtime));
}

Engine::~Engine() {
  (void)core_->stop();
  core_->join_tasks();
}

Error Engine::start() { return core_->start(false); }
Error Engine::start_background() { return core_->start(true); }
Error Engine::async_start(std::function<void(Error)> done) {
  if (!done) return Error(errc::invalid_option, "async_start needs a handler");
  return core_->start(false, std::move(done));
}
void Engine::async_stop(std::function<void(Error)> done) {
  if (!done) done = [](Error) {};
  core_->stop_async(std::move(done));
}
void Engine::async_read(std::chrono::milliseconds timeout, std::function<void(Error, InboundMessage)> done) {
  if (done) core_->read_paused_async(timeout, std::move(done));
}
void Engine::async_pause(std::function<void(PauseGuard)> done) {
  if (done) core_->pause_async([core = core_, done = std::move(done)] { done(PauseGuard(core)); });
}
Error Engine::stop() { return core_->stop(); }
Error Engine::wait_stopped(std::chrono::milliseconds timeout) { return core_->wait_stopped(timeout); }
void Engine::restart() { core_->request_end(nullptr, detail::EndReason::restart); }
void Engine::exit() { core_->request_end(nullptr, detail::EndReason::exit); }
PauseGuard Engine::pause() {
  if (core_->reader_inside_on_this_thread()) return PauseGuard();
  core_->pause();
  return PauseGuard(core_);
}
Error Engine::send(MessageType type, std::string_view payload) { return core_->send(type, payload); }
Error Engine::send(MessageType type, std::string_view payload, std::chrono::milliseconds room_timeout) {
  return core_->send(type, payload, nullptr, room_timeout);
}
Error Engine::async_send(MessageType type, std::string_view payload, SendHandler done) {
  if (!done) return Error(errc::invalid_option, "async_send needs a handler");
  return core_->send(type, payload, std::move(done));
}
std::future<Error> Engine::async_send(MessageType type, std::string_view payload) {
  auto promise = std::make_shared<std::promise<Error>>();
  auto outcome = promise->get_future();
  if (Error e = core_->send(type, payload, [promise](Error e) { promise->set_value(std::move(e)); }))
    promise->set_value(std::move(e));
  return outcome;
}
std::size_t Engine::buffered_amount() const { return core_->buffered_amount(); }
EngineStats Engine::stats() const { return core_->stats(); }
SessionConnection Engine::connection() const { return SessionConnection(core_->current_session()); }
Result<MessageWriter> Engine::begin_message(MessageType type) {
  auto s = core_->current_session();
  if (!s) return Error(errc::not_connected, "no open session");
  return s->handle.begin_message(type);
}
EngineState Engine::state() const noexcept { return core_->state(); }
std::uint64_t Engine::session_id() const noexcept { return core_->session_id(); }
const EngineOptions& Engine::options() const noexcept { return core_->options(); }

}  // namespace wscengine
