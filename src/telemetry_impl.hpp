// Private: telemetry helpers shared by the engine and the instrumenting decorator.
#pragma once

#include <string>

#include <wscengine/trace_context.hpp>

namespace wscengine::detail {

/// Where spans started on this thread go: under `parent`, or, with no parent, as
/// roots linked to `link`.
struct TraceState {
  TraceContext parent;
  TraceContext link;
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
    slot_ = TraceState{parent, link};
  }
  ~CurrentTrace() { slot_ = saved_; }
  CurrentTrace(const CurrentTrace&) = delete;
  CurrentTrace& operator=(const CurrentTrace&) = delete;

 private:
  TraceState& slot_;
  TraceState saved_;
};

/// The server URL for traces: no user info, no query (tokens often travel there).
std::string traced_url(const std::string& url);

}  // namespace wscengine::detail
