// Private: telemetry helpers shared by the engine and the instrumenting decorator.
#pragma once

#include <string>

#include <wscengine/adapter.hpp>
#include <wscengine/trace_context.hpp>

namespace wscengine::detail {

/// Where spans started on this thread go: under `parent`, or, with no parent, as
/// roots linked to `link`. `sampled` false: the message being sent was left out by
/// TelemetryOptions::message_sample_ratio, so the adapter starts no write span for
/// it (see SampledOut). Unsampled reads do not go through the decorator at all.
struct TraceState {
  TraceContext parent;
  TraceContext link;
  bool sampled = true;
};

/// The thread's current trace state. A function, not an extern thread_local: GCC's
/// UBSan reports a false null store through the TLS wrapper of an extern one.
TraceState& current_trace() noexcept;

/// Sets the thread's current trace state for a scope. Only used when a tracer is
/// configured, so untraced engines never touch the thread-local.
class CurrentTrace {
 public:
  explicit CurrentTrace(const TraceContext& parent, const TraceContext& link = {})
      : slot_(current_trace()), saved_(slot_) {
    slot_ = TraceState{parent, link, true};
  }
  ~CurrentTrace() { slot_ = saved_; }
  CurrentTrace(const CurrentTrace&) = delete;
  CurrentTrace& operator=(const CurrentTrace&) = delete;

 private:
  TraceState& slot_;
  TraceState saved_;
};

/// Marks the message read or sent in this scope as left out by sampling: one flag,
/// not a copy of the trace state (this runs for most messages of a sampled feed).
class SampledOut {
 public:
  SampledOut() : slot_(current_trace()), saved_(slot_.sampled) { slot_.sampled = false; }
  ~SampledOut() { slot_.sampled = saved_; }
  SampledOut(const SampledOut&) = delete;
  SampledOut& operator=(const SampledOut&) = delete;

 private:
  TraceState& slot_;
  bool saved_;
};

/// The connection under the instrumenting decorator of instrument(), else
/// `connection` itself: the engine reads a message left out by sampling there,
/// without the decorator's checks, and counts it itself.
Connection& untraced(Connection& connection) noexcept;

/// The server URL for traces: no user info, no query (tokens often travel there).
std::string traced_url(const std::string& url);

}  // namespace wscengine::detail
