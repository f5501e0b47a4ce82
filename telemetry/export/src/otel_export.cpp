// install_exporters: the SDK providers and exporters chosen by ExportOptions and
// the standard OTEL_* environment variables.
#include <wscengine/otel.hpp>
#include <wscengine/otel_export.hpp>
#include <wscengine/version.hpp>

#include <opentelemetry/exporters/ostream/metric_exporter_factory.h>
#include <opentelemetry/exporters/ostream/span_exporter_factory.h>
#include <opentelemetry/exporters/otlp/otlp_grpc_exporter_factory.h>
#include <opentelemetry/exporters/otlp/otlp_grpc_exporter_options.h>
#include <opentelemetry/exporters/otlp/otlp_grpc_metric_exporter_factory.h>
#include <opentelemetry/exporters/otlp/otlp_grpc_metric_exporter_options.h>
#include <opentelemetry/exporters/otlp/otlp_http_exporter_factory.h>
#include <opentelemetry/exporters/otlp/otlp_http_exporter_options.h>
#include <opentelemetry/exporters/otlp/otlp_http_metric_exporter_factory.h>
#include <opentelemetry/exporters/otlp/otlp_http_metric_exporter_options.h>
#include <opentelemetry/metrics/noop.h>
#include <opentelemetry/metrics/provider.h>
#include <opentelemetry/sdk/metrics/aggregation/aggregation_config.h>
#include <opentelemetry/sdk/metrics/export/periodic_exporting_metric_reader_factory.h>
#include <opentelemetry/sdk/metrics/meter_provider.h>
#include <opentelemetry/sdk/metrics/meter_provider_factory.h>
#include <opentelemetry/sdk/metrics/view/instrument_selector_factory.h>
#include <opentelemetry/sdk/metrics/view/meter_selector_factory.h>
#include <opentelemetry/sdk/metrics/view/view_factory.h>
#include <opentelemetry/sdk/metrics/view/view_registry_factory.h>
#include <opentelemetry/sdk/resource/resource.h>
#include <opentelemetry/sdk/trace/batch_span_processor_factory.h>
#include <opentelemetry/sdk/trace/batch_span_processor_options.h>
#include <opentelemetry/sdk/trace/samplers/always_off_factory.h>
#include <opentelemetry/sdk/trace/samplers/always_on_factory.h>
#include <opentelemetry/sdk/trace/samplers/parent_factory.h>
#include <opentelemetry/sdk/trace/samplers/trace_id_ratio_factory.h>
#include <opentelemetry/sdk/trace/simple_processor_factory.h>
#include <opentelemetry/sdk/trace/tracer_provider.h>
#include <opentelemetry/sdk/trace/tracer_provider_factory.h>
#include <opentelemetry/trace/noop.h>
#include <opentelemetry/trace/provider.h>

#include <cstdlib>
#include <fstream>
#include <iostream>

#include "line_exporters.hpp"

namespace wscengine::otel {
namespace {

namespace nostd = opentelemetry::nostd;
namespace sdktrace = opentelemetry::sdk::trace;
namespace sdkmetrics = opentelemetry::sdk::metrics;
namespace otlp = opentelemetry::exporter::otlp;

std::string env(const char* name) {
  const char* value = std::getenv(name);
  return value ? value : "";
}

// ExportOptions' rule: the option, else OTEL_<SIGNAL>_EXPORTER, else otlp when an
// OTLP endpoint is configured, else none.
std::string choose(const std::string& option, const char* variable, const char* endpoint_variable) {
  if (!option.empty()) return option;
  std::string from_env = env(variable);
  if (!from_env.empty()) return from_env;
  if (!env("OTEL_EXPORTER_OTLP_ENDPOINT").empty() || !env(endpoint_variable).empty()) return "otlp";
  return "none";
}

Result<std::string> otlp_protocol(const char* signal_variable) {
  std::string protocol = env(signal_variable);
  if (protocol.empty()) protocol = env("OTEL_EXPORTER_OTLP_PROTOCOL");
  if (protocol.empty()) protocol = "http/protobuf";
  if (protocol != "grpc" && protocol != "http/protobuf" && protocol != "http/json") {
    return Error(errc::invalid_option, std::string(signal_variable) +
                                           " / OTEL_EXPORTER_OTLP_PROTOCOL: unknown protocol '" + protocol +
                                           "' (grpc, http/protobuf or http/json)");
  }
  return protocol;
}

// The sampler OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG name (the
// OpenTelemetry specification's variables; this SDK version does not read them
// itself). Unset: parentbased_always_on, the SDK's default.
Result<std::unique_ptr<sdktrace::Sampler>> sampler_from_env() {
  std::string name = env("OTEL_TRACES_SAMPLER");
  if (name.empty()) name = "parentbased_always_on";
  std::string arg = env("OTEL_TRACES_SAMPLER_ARG");
  double ratio = 1.0;
  if (name == "traceidratio" || name == "parentbased_traceidratio") {
    char* end = nullptr;
    if (!arg.empty()) ratio = std::strtod(arg.c_str(), &end);
    if (!arg.empty() && (end != arg.c_str() + arg.size() || !(ratio >= 0.0 && ratio <= 1.0))) {
      return Error(errc::invalid_option,
                   "OTEL_TRACES_SAMPLER_ARG: '" + arg + "' is not a ratio in 0..1 (for " + name + ")");
    }
  }
  auto root = [&]() -> std::unique_ptr<sdktrace::Sampler> {
    std::string base = name.rfind("parentbased_", 0) == 0 ? name.substr(12) : name;
    if (base == "always_on") return sdktrace::AlwaysOnSamplerFactory::Create();
    if (base == "always_off") return sdktrace::AlwaysOffSamplerFactory::Create();
    if (base == "traceidratio") return sdktrace::TraceIdRatioBasedSamplerFactory::Create(ratio);
    return nullptr;
  }();
  if (!root) {
    return Error(errc::invalid_option, "OTEL_TRACES_SAMPLER: unknown sampler '" + name +
                                           "' (always_on, always_off, traceidratio, parentbased_always_on, "
                                           "parentbased_always_off or parentbased_traceidratio)");
  }
  if (name.rfind("parentbased_", 0) == 0) return sdktrace::ParentBasedSamplerFactory::Create(std::move(root));
  return root;
}

Error unknown(const std::string& what, const std::string& name) {
  return Error(errc::invalid_option, what + ": unknown exporter '" + name + "' (otlp, console, lines or none)");
}

// Durations of the engine are microseconds to seconds: buckets in seconds over
// that range, instead of the SDK's default (made for milliseconds).
void add_duration_views(sdkmetrics::MeterProvider& provider) {
  auto config = std::make_shared<sdkmetrics::HistogramAggregationConfig>();
  config->boundaries_ = {1e-6, 5e-6, 1e-5, 5e-5, 1e-4, 5e-4, 1e-3, 5e-3, 0.01, 0.05, 0.1, 0.5, 1, 5, 10};
  for (const char* name :
       {"wscengine.on_message.duration", "wscengine.dial.duration", "wscengine.handshake.duration"}) {
    provider.AddView(sdkmetrics::InstrumentSelectorFactory::Create(sdkmetrics::InstrumentType::kHistogram, name, "s"),
                     sdkmetrics::MeterSelectorFactory::Create("wscengine", version_string, ""),
                     sdkmetrics::ViewFactory::Create(name, "", "s", sdkmetrics::AggregationType::kHistogram, config));
  }
}

class InstalledExporters final : public Exporters {
 public:
  ~InstalledExporters() override {
    // The providers shut their exporters down when the last user lets go of them.
    if (tracer_sdk_) {
      tracer_sdk_->ForceFlush();
      opentelemetry::trace::Provider::SetTracerProvider(
          nostd::shared_ptr<opentelemetry::trace::TracerProvider>(new opentelemetry::trace::NoopTracerProvider));
    }
    if (meter_sdk_) {
      meter_sdk_->ForceFlush();
      opentelemetry::metrics::Provider::SetMeterProvider(
          nostd::shared_ptr<opentelemetry::metrics::MeterProvider>(new opentelemetry::metrics::NoopMeterProvider));
    }
  }

  nostd::shared_ptr<opentelemetry::trace::TracerProvider> tracer_provider() const override {
    return tracer_sdk_ ? nostd::shared_ptr<opentelemetry::trace::TracerProvider>(tracer_sdk_)
                       : opentelemetry::trace::Provider::GetTracerProvider();
  }
  nostd::shared_ptr<opentelemetry::metrics::MeterProvider> meter_provider() const override {
    return meter_sdk_ ? nostd::shared_ptr<opentelemetry::metrics::MeterProvider>(meter_sdk_)
                      : opentelemetry::metrics::Provider::GetMeterProvider();
  }
  TelemetryOptions telemetry() const override {
    TelemetryOptions options;
    if (tracer_sdk_) options.tracer = make_tracer(tracer_provider());
    if (meter_sdk_) options.metrics = make_metrics(meter_provider());
    return options;
  }
  std::string describe() const override { return "traces: " + traces_ + ", metrics: " + metrics_; }
  void flush() override {
    if (tracer_sdk_) tracer_sdk_->ForceFlush();
    if (meter_sdk_) meter_sdk_->ForceFlush();
  }

  std::shared_ptr<std::ostream> out;        // the file of console/lines, or stdout
  std::shared_ptr<detail::LineSink> lines;  // "lines" exporters share it: whole blocks, never interleaved
  std::shared_ptr<sdktrace::TracerProvider> tracer_sdk_;
  std::shared_ptr<sdkmetrics::MeterProvider> meter_sdk_;
  std::string traces_ = "none", metrics_ = "none";
};

}  // namespace

Result<std::unique_ptr<Exporters>> install_exporters(const ExportOptions& options) {
  auto installed = std::make_unique<InstalledExporters>();
  std::string traces = choose(options.traces, "OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
  std::string metrics = choose(options.metrics, "OTEL_METRICS_EXPORTER", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT");
  for (const auto& [what, name] :
       {std::pair{"traces (OTEL_TRACES_EXPORTER)", traces}, std::pair{"metrics (OTEL_METRICS_EXPORTER)", metrics}}) {
    if (name != "otlp" && name != "console" && name != "lines" && name != "none") return unknown(what, name);
  }
  if (traces == "console" || traces == "lines" || metrics == "console" || metrics == "lines") {
    if (options.file.empty()) {
      installed->out = std::shared_ptr<std::ostream>(&std::cout, [](std::ostream*) {});
    } else {
      auto file = std::make_shared<std::ofstream>(options.file, std::ios::app);
      if (!*file) return Error(errc::invalid_option, "cannot open telemetry file '" + options.file + "'");
      installed->out = std::move(file);
    }
    installed->lines = std::make_shared<detail::LineSink>(installed->out);
  }

  opentelemetry::sdk::resource::ResourceAttributes attributes;
  if (env("OTEL_SERVICE_NAME").empty() && env("OTEL_RESOURCE_ATTRIBUTES").find("service.name") == std::string::npos)
    attributes.SetAttribute("service.name", options.service_name);
  attributes.SetAttribute("service.version", version_string);
  auto resource = opentelemetry::sdk::resource::Resource::Create(attributes);

  if (traces != "none") {
    auto sampler = sampler_from_env();
    if (!sampler) return sampler.error();
    std::unique_ptr<sdktrace::SpanProcessor> processor;
    if (traces == "otlp") {
      auto protocol = otlp_protocol("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL");
      if (!protocol) return protocol.error();
      auto exporter = protocol.value() == "grpc"
                          ? otlp::OtlpGrpcExporterFactory::Create(otlp::OtlpGrpcExporterOptions())
                          : otlp::OtlpHttpExporterFactory::Create(otlp::OtlpHttpExporterOptions());
      processor =
          sdktrace::BatchSpanProcessorFactory::Create(std::move(exporter), sdktrace::BatchSpanProcessorOptions());
      installed->traces_ = "otlp (" + protocol.value() + ")";
    } else {
      // Local reading: export each span as it ends, in order.
      auto exporter = traces == "lines"
                          ? detail::make_line_span_exporter(installed->lines)
                          : opentelemetry::exporter::trace::OStreamSpanExporterFactory::Create(*installed->out);
      processor = sdktrace::SimpleSpanProcessorFactory::Create(std::move(exporter));
      installed->traces_ = traces + (options.file.empty() ? " (stdout)" : " (" + options.file + ")");
    }
    installed->tracer_sdk_ =
        sdktrace::TracerProviderFactory::Create(std::move(processor), resource, std::move(sampler.value()));
    opentelemetry::trace::Provider::SetTracerProvider(
        nostd::shared_ptr<opentelemetry::trace::TracerProvider>(installed->tracer_sdk_));
  }

  if (metrics != "none") {
    std::unique_ptr<sdkmetrics::PushMetricExporter> exporter;
    if (metrics == "otlp") {
      auto protocol = otlp_protocol("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL");
      if (!protocol) return protocol.error();
      exporter = protocol.value() == "grpc"
                     ? otlp::OtlpGrpcMetricExporterFactory::Create(otlp::OtlpGrpcMetricExporterOptions())
                     : otlp::OtlpHttpMetricExporterFactory::Create(otlp::OtlpHttpMetricExporterOptions());
      installed->metrics_ = "otlp (" + protocol.value() + ")";
    } else {
      exporter = metrics == "lines"
                     ? detail::make_line_metric_exporter(installed->lines)
                     : opentelemetry::exporter::metrics::OStreamMetricExporterFactory::Create(*installed->out);
      installed->metrics_ = metrics + (options.file.empty() ? " (stdout)" : " (" + options.file + ")");
    }
    auto interval = options.metric_interval;
    if (interval.count() == 0) {
      std::string from_env = env("OTEL_METRIC_EXPORT_INTERVAL");
      interval = std::chrono::milliseconds(from_env.empty() ? 10000 : std::strtol(from_env.c_str(), nullptr, 10));
      if (interval.count() <= 0) interval = std::chrono::milliseconds(10000);
    }
    sdkmetrics::PeriodicExportingMetricReaderOptions reader_options;
    reader_options.export_interval_millis = interval;
    reader_options.export_timeout_millis = std::min(interval / 2, std::chrono::milliseconds(30000));
    installed->meter_sdk_ =
        sdkmetrics::MeterProviderFactory::Create(sdkmetrics::ViewRegistryFactory::Create(), resource);
    add_duration_views(*installed->meter_sdk_);
    installed->meter_sdk_->AddMetricReader(
        sdkmetrics::PeriodicExportingMetricReaderFactory::Create(std::move(exporter), reader_options));
    opentelemetry::metrics::Provider::SetMeterProvider(
        nostd::shared_ptr<opentelemetry::metrics::MeterProvider>(installed->meter_sdk_));
  }
  return std::unique_ptr<Exporters>(std::move(installed));
}

}  // namespace wscengine::otel
