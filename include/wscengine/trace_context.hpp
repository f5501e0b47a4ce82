// wscengine — the W3C trace context value, shared by messages and the tracing hook.
#pragma once

#include <array>
#include <cstdint>
#include <string>

namespace wscengine {

/// W3C trace context of a span. All zero when no tracer is configured.
/// A plain value.
struct TraceContext {
  std::array<std::uint8_t, 16> trace_id{};  ///< the trace this span belongs to
  std::array<std::uint8_t, 8> span_id{};    ///< the span
  std::uint8_t flags = 0;                   ///< W3C trace flags (01 = sampled)
  /// True when the span id is not all zero.
  bool valid() const noexcept {
    for (auto b : span_id)
      if (b) return true;
    return false;
  }
  /// Same ids and flags.
  friend bool operator==(const TraceContext&, const TraceContext&) = default;
};

/// The W3C `traceparent` header value ("00-<trace id>-<span id>-<flags>", lower-case
/// hex) of a valid context. Thread safety: pure.
std::string traceparent(const TraceContext& context);

}  // namespace wscengine
