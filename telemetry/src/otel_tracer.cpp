#include <wscengine/otel.hpp>
#include <wscengine/version.hpp>

#include <array>
#include <map>
#include <string>
#include <utility>

#include <opentelemetry/nostd/span.h>
#include <opentelemetry/trace/noop.h>
#include <opentelemetry/trace/provider.h>
#include <opentelemetry/trace/scope.h>
#include <opentelemetry/trace/span.h>
#include <opentelemetry/trace/span_context_kv_iterable_view.h>
#include <opentelemetry/trace/tracer.h>

namespace wscengine::otel {
namespace {

namespace nostd = opentelemetry::nostd;
namespace trace = opentelemetry::trace;

nostd::string_view view(std::string_view s) { return {s.data(), s.size()}; }

class OtelScope final : public SpanScope {
 public:
  explicit OtelScope(trace::Scope scope) : scope_(std::move(scope)) {}

 private:
  trace::Scope scope_;
};

class OtelSpan final : public Span {
 public:
  explicit OtelSpan(nostd::shared_ptr<trace::Span> span) : span_(std::move(span)) {}
  ~OtelSpan() override { end(); }

  void set_attribute(std::string_view key, std::int64_t value) noexcept override {
    span_->SetAttribute(view(key), value);
  }
  void set_attribute(std::string_view key, std::string_view value) noexcept override {
    span_->SetAttribute(view(key), view(value));
  }
  void add_event(std::string_view name) noexcept override { span_->AddEvent(view(name)); }
  void set_error(const Error& error) noexcept override {
    std::string message = error.message();
    span_->SetStatus(trace::StatusCode::kError, message);
    span_->SetAttribute("wscengine.error", view(message));
  }
  std::unique_ptr<SpanScope> make_current() noexcept override {
    return std::make_unique<OtelScope>(trace::Tracer::WithActiveSpan(span_));
  }
  TraceContext context() const noexcept override {
    TraceContext out;
    auto c = span_->GetContext();
    c.trace_id().CopyBytesTo(nostd::span<std::uint8_t, 16>(out.trace_id.data(), 16));
    c.span_id().CopyBytesTo(nostd::span<std::uint8_t, 8>(out.span_id.data(), 8));
    out.flags = c.trace_flags().flags();
    return out;
  }
  void end() noexcept override {
    if (!ended_) {
      ended_ = true;
      span_->End();
    }
  }

 private:
  nostd::shared_ptr<trace::Span> span_;
  bool ended_ = false;
};

class OtelTracer final : public Tracer {
 public:
  explicit OtelTracer(nostd::shared_ptr<trace::TracerProvider> provider)
      : tracer_(provider->GetTracer("wscengine", version_string)) {}

  std::unique_ptr<Span> start_span(std::string_view name, const TraceContext& parent, Clock::time_point start,
                                   const TraceContext& link) noexcept override {
    trace::StartSpanOptions options;
    options.kind = trace::SpanKind::kInternal;
    if (parent.valid()) options.parent = span_context(parent);
    if (start != Clock::time_point{}) {
      options.start_system_time = opentelemetry::common::SystemTimestamp(start);
      // The steady start as far back as the system one (the SDK takes durations from it).
      options.start_steady_time =
          opentelemetry::common::SteadyTimestamp(std::chrono::steady_clock::now() - (Clock::now() - start));
    }
    nostd::shared_ptr<trace::Span> span;
    if (link.valid()) {
      using Attributes = std::map<std::string, opentelemetry::common::AttributeValue>;
      std::array<std::pair<trace::SpanContext, Attributes>, 1> links{{{span_context(link), Attributes{}}}};
      span = tracer_->StartSpan(view(name), Attributes{}, links, options);
    } else {
      span = tracer_->StartSpan(view(name), options);
    }
    // A no-op tracer's span has no context: nothing to record or to hand on.
    if (!span->GetContext().IsValid()) return nullptr;
    return std::make_unique<OtelSpan>(std::move(span));
  }

 private:
  const nostd::shared_ptr<trace::Tracer> tracer_;
};

}  // namespace

std::shared_ptr<Tracer> make_tracer(nostd::shared_ptr<trace::TracerProvider> provider) {
  if (!provider) provider = trace::Provider::GetTracerProvider();
  return std::make_shared<OtelTracer>(std::move(provider));
}

bool is_noop(const nostd::shared_ptr<trace::TracerProvider>& provider) {
  return dynamic_cast<const trace::NoopTracerProvider*>(provider.get()) != nullptr;
}

trace::SpanContext span_context(const TraceContext& context) {
  return trace::SpanContext(trace::TraceId(nostd::span<const std::uint8_t, 16>(context.trace_id.data(), 16)),
                            trace::SpanId(nostd::span<const std::uint8_t, 8>(context.span_id.data(), 8)),
                            trace::TraceFlags(context.flags), /*is_remote=*/false);
}

}  // namespace wscengine::otel
