// Private: telemetry helpers shared by the engine and the instrumenting decorator.
#pragma once

#include <string>

#include <wscengine/trace_context.hpp>

namespace wscengine::detail {

extern thread_local TraceContext t_current_trace;

/// Sets the thread's current trace context for a scope. Only used when a tracer is
/// configured, so untraced engines never touch the thread-local.
class CurrentTrace {
 public:
  explicit CurrentTrace(const TraceContext& context) : saved_(t_current_trace) { t_current_trace = context; }
  ~CurrentTrace() { t_current_trace = saved_; }
  CurrentTrace(const CurrentTrace&) = delete;
  CurrentTrace& operator=(const CurrentTrace&) = delete;

 private:
  TraceContext saved_;
};

/// The server URL for traces: no user info, no query (tokens often travel there).
std::string traced_url(const std::string& url);

}  // namespace wscengine::detail
