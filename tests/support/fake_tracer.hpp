// Test support: a Tracer that records spans in memory, to check names, links and
// attributes without OpenTelemetry.
#pragma once

#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include <wscengine/telemetry.hpp>

namespace wscengine::test {

struct SpanRecord {
  std::string name;
  std::uint64_t id = 0;
  std::uint64_t parent = 0;  // 0: root
  std::uint64_t link = 0;    // 0: none
  std::map<std::string, std::string> attributes;
  std::vector<std::string> events;
  std::string error;
  bool ended = false;
  bool backdated = false;  // started with an explicit start time
};

/// Thread safety: start_span and the accessors may be called from any thread.
class FakeTracer final : public Tracer {
 public:
  std::unique_ptr<Span> start_span(std::string_view name, const TraceContext& parent, Clock::time_point start = {},
                                   const TraceContext& link = {}) noexcept override;
  std::vector<SpanRecord> spans() const;
  std::vector<SpanRecord> named(const std::string& name) const;
  SpanRecord by_id(std::uint64_t id) const;

 private:
  friend class FakeSpan;
  void update(std::uint64_t id, const std::function<void(SpanRecord&)>& change);
  mutable std::mutex mutex_;
  std::vector<SpanRecord> spans_;
};

/// The span id a TraceContext carries in FakeTracer's encoding.
std::uint64_t fake_span_id(const TraceContext& context);
/// The TraceContext of FakeTracer's span `id` (trace id 1, sampled).
TraceContext fake_trace_context(std::uint64_t id);

}  // namespace wscengine::test
