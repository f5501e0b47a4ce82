#include "support/fake_tracer.hpp"

#include <functional>

namespace wscengine::test {

std::uint64_t fake_span_id(const TraceContext& context) {
  std::uint64_t id = 0;
  for (auto b : context.span_id) id = (id << 8) | b;
  return id;
}

TraceContext fake_trace_context(std::uint64_t id) {
  TraceContext context;
  for (int i = 0; i < 8; ++i) context.span_id[7 - i] = static_cast<std::uint8_t>(id >> (8 * i));
  context.trace_id[15] = 1;
  context.flags = 1;
  return context;
}

class FakeSpan final : public Span {
 public:
  FakeSpan(FakeTracer& tracer, std::uint64_t id) : tracer_(tracer), id_(id), context_(fake_trace_context(id)) {}
  ~FakeSpan() override { end(); }
  void set_attribute(std::string_view key, std::int64_t value) noexcept override {
    tracer_.update(id_, [&](SpanRecord& r) { r.attributes[std::string(key)] = std::to_string(value); });
  }
  void set_attribute(std::string_view key, std::string_view value) noexcept override {
    tracer_.update(id_, [&](SpanRecord& r) { r.attributes[std::string(key)] = std::string(value); });
  }
  void add_event(std::string_view name) noexcept override {
    tracer_.update(id_, [&](SpanRecord& r) { r.events.emplace_back(name); });
  }
  void set_error(const Error& error) noexcept override {
    tracer_.update(id_, [&](SpanRecord& r) { r.error = error.message(); });
  }
  TraceContext context() const noexcept override { return context_; }
  void end() noexcept override {
    tracer_.update(id_, [&](SpanRecord& r) { r.ended = true; });
  }

 private:
  FakeTracer& tracer_;
  std::uint64_t id_;
  TraceContext context_;
};

std::unique_ptr<Span> FakeTracer::start_span(std::string_view name, const TraceContext& parent, Clock::time_point start,
                                             const TraceContext& link) noexcept {
  std::lock_guard lock(mutex_);
  SpanRecord r;
  r.name = std::string(name);
  r.id = spans_.size() + 1;
  r.parent = parent.valid() ? fake_span_id(parent) : 0;
  r.backdated = start != Clock::time_point{};
  r.link = link.valid() ? fake_span_id(link) : 0;
  spans_.push_back(r);
  return std::make_unique<FakeSpan>(*this, r.id);
}

void FakeTracer::update(std::uint64_t id, const std::function<void(SpanRecord&)>& change) {
  std::lock_guard lock(mutex_);
  change(spans_[id - 1]);
}

std::vector<SpanRecord> FakeTracer::spans() const {
  std::lock_guard lock(mutex_);
  return spans_;
}

std::vector<SpanRecord> FakeTracer::named(const std::string& name) const {
  std::vector<SpanRecord> out;
  for (auto& s : spans())
    if (s.name == name) out.push_back(s);
  return out;
}

SpanRecord FakeTracer::by_id(std::uint64_t id) const {
  std::lock_guard lock(mutex_);
  return id == 0 || id > spans_.size() ? SpanRecord{} : spans_[id - 1];
}

}  // namespace wscengine::test
