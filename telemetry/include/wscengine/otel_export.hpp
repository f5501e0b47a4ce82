// wscengine — where telemetry goes, for the CLI, the examples and users who want the
// usual OpenTelemetry setup in one call (target wscengine::otel_export). Links the
// OpenTelemetry SDK and its OTLP, ostream exporters; the core and wscengine::otel do not.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include <opentelemetry/metrics/meter_provider.h>
#include <opentelemetry/nostd/shared_ptr.h>
#include <opentelemetry/trace/tracer_provider.h>

#include <wscengine/error.hpp>
#include <wscengine/telemetry.hpp>

namespace wscengine::otel {

/// Which exporters to install. Each choice is one of:
/// - "otlp": the SDK's OTLP exporter; the protocol comes from
///   OTEL_EXPORTER_OTLP_[TRACES_|METRICS_]PROTOCOL ("http/protobuf", the default,
///   "http/json" or "grpc"), the endpoint, headers and the rest from the standard
///   OTEL_EXPORTER_OTLP_* variables, which the SDK reads itself;
/// - "console": the SDK's ostream exporter (one multi-line block per span or metric);
/// - "lines": one line per span or metric point, for reading by eye;
/// - "none": nothing.
/// "console" and "lines" write to `file` when set, else to standard output.
/// A plain value.
struct ExportOptions {
  /// Empty: OTEL_TRACES_EXPORTER; when that is unset, "otlp" if an OTLP endpoint
  /// variable is set, else "none".
  std::string traces{};
  /// Empty: OTEL_METRICS_EXPORTER, with the same fallback as `traces`.
  std::string metrics{};
  /// Output file of "console" and "lines"; empty = standard output.
  std::string file{};
  /// service.name of the resource, unless OTEL_SERVICE_NAME says otherwise.
  std::string service_name = "wscengine";
  /// Period of metric exports. Zero: OTEL_METRIC_EXPORT_INTERVAL, else 10 s.
  std::chrono::milliseconds metric_interval{0};
};

/// The installed tracer and meter providers, also set as OpenTelemetry's global
/// ones. Destruction flushes what is buffered, shuts the exporters down and
/// restores the no-op globals. Thread safety: the providers are thread-safe; the
/// object itself is created and destroyed on one thread.
class Exporters {
 public:
  virtual ~Exporters() = default;
  /// The tracer provider of the chosen trace exporter.
  virtual opentelemetry::nostd::shared_ptr<opentelemetry::trace::TracerProvider> tracer_provider() const = 0;
  /// The meter provider of the chosen metrics exporter.
  virtual opentelemetry::nostd::shared_ptr<opentelemetry::metrics::MeterProvider> meter_provider() const = 0;
  /// TelemetryOptions over these providers (tracer and metrics null where "none").
  virtual TelemetryOptions telemetry() const = 0;
  /// One line for logs, e.g. "traces: otlp (grpc), metrics: none".
  virtual std::string describe() const = 0;
  /// Exports everything recorded so far.
  virtual void flush() = 0;
};

/// Creates the providers and exporters that `options` and the OTEL_* environment
/// ask for. Errors: `errc::invalid_option` for an unknown exporter or protocol
/// name (the message names the variable), or a file that cannot be opened.
Result<std::unique_ptr<Exporters>> install_exporters(const ExportOptions& options);

}  // namespace wscengine::otel
