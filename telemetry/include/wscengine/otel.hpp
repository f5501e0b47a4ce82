// wscengine — tracing and metrics over OpenTelemetry (target wscengine::otel).
// Brings in the OpenTelemetry C++ API headers; the core does not need them.
#pragma once

#include <memory>

#include <opentelemetry/metrics/meter_provider.h>
#include <opentelemetry/nostd/shared_ptr.h>
#include <opentelemetry/trace/span_context.h>
#include <opentelemetry/trace/tracer_provider.h>

#include <wscengine/telemetry.hpp>

namespace wscengine::otel {

/// A Tracer for EngineOptions::telemetry that records the engine's spans with
/// OpenTelemetry. `provider` is the engine's own TracerProvider; when null, the
/// global provider (opentelemetry::trace::Provider) at the time of this call is
/// used, so set the global provider first. Spans of a no-op provider are not
/// created at all. Thread safety: the tracer may be shared by any number of engines.
std::shared_ptr<Tracer> make_tracer(
    opentelemetry::nostd::shared_ptr<opentelemetry::trace::TracerProvider> provider = {});

/// A Metrics for EngineOptions::telemetry that records the engine's measurements
/// with OpenTelemetry instruments (see docs/observability.md). `provider` is the
/// engine's own MeterProvider; when null, the global provider
/// (opentelemetry::metrics::Provider) at the time of this call is used.
/// Thread safety: the object may be shared by any number of engines.
std::shared_ptr<Metrics> make_metrics(
    opentelemetry::nostd::shared_ptr<opentelemetry::metrics::MeterProvider> provider = {});

/// Both of the above in one TelemetryOptions (trace_connection on, traceparent
/// off): `options.telemetry = otel::make_telemetry(tracer_provider, meter_provider);`
/// Null providers mean the global ones at the time of this call. A no-op provider
/// (OpenTelemetry's default when nothing is installed) leaves its hook unset, so
/// that telemetry costs nothing until a real provider is configured.
/// Thread safety: pure.
TelemetryOptions make_telemetry(
    opentelemetry::nostd::shared_ptr<opentelemetry::trace::TracerProvider> tracer_provider = {},
    opentelemetry::nostd::shared_ptr<opentelemetry::metrics::MeterProvider> meter_provider = {});

/// True for OpenTelemetry's NoopTracerProvider (the global default). Thread safety: pure.
bool is_noop(const opentelemetry::nostd::shared_ptr<opentelemetry::trace::TracerProvider>& provider);

/// The OpenTelemetry span context of a callback's `ctx.trace_context()`: pass it as
/// StartSpanOptions::parent so that a span the user starts is a child of the
/// engine's callback span. Thread safety: pure.
opentelemetry::trace::SpanContext span_context(const TraceContext& context);

}  // namespace wscengine::otel
