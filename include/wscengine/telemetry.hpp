// wscengine — the tracing hook. The core knows only this interface; the
// wscengine::otel target implements it with OpenTelemetry. No tracer = no cost.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string_view>

#include <wscengine/error.hpp>

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

/// One span the engine started; it ends at end() or destruction.
/// Thread safety: used by one thread at a time.
class Span {
 public:
  virtual ~Span() = default;
  virtual void set_attribute(std::string_view key, std::int64_t value) noexcept = 0;
  virtual void set_attribute(std::string_view key, std::string_view value) noexcept = 0;
  virtual void add_event(std::string_view name) noexcept = 0;
  /// Records the error and marks the span as failed.
  virtual void set_error(const Error& error) noexcept = 0;
  virtual TraceContext context() const noexcept = 0;
  virtual void end() noexcept = 0;
};

/// Starts spans for an engine. Span names are "wscengine.<step>"; attributes are
/// under "wscengine." (see docs/observability.md).
/// Thread safety: start_span may be called from any thread concurrently.
class Tracer {
 public:
  virtual ~Tracer() = default;
  /// `parent` may be invalid: the span is then a root.
  virtual std::unique_ptr<Span> start_span(std::string_view name, const TraceContext& parent) noexcept = 0;
};

}  // namespace wscengine
