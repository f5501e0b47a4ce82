// wscengine — the W3C trace context value, shared by messages and the tracing hook.
#pragma once

#include <array>
#include <cstdint>
#include <string>

namespace wscengine {

/// W3C trace context of a span. All zero when no tracer is configured.
/// A plain value.
struct TraceContext {
  std::array<std::uint8_t, 16> trace_id{};
  std::array<std::uint8_t, 8> span_id{};
  std::uint8_t flags = 0;
  bool valid() const noexcept {
    for (auto b : span_id)
      if (b) return true;
    return false;
  }
  friend bool operator==(const TraceContext&, const TraceContext&) = default;
};

/// The W3C `traceparent` header value ("00-<trace id>-<span id>-<flags>", lower-case
/// hex) of a valid context. Thread safety: pure.
std::string traceparent(const TraceContext& context);

}  // namespace wscengine
