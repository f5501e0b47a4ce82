// What telemetry costs on the engine's hot path: messages/s through the in-memory
// adapter (no network, so the engine's own work dominates) for
//   compiled out        the engine built with WSCENGINE_NO_TELEMETRY
//   compiled in, unset  EngineOptions::telemetry left empty (the default)
//   no provider         wscengine::otel with OpenTelemetry's global no-op providers
//   SDK + batch         the OpenTelemetry SDK: batch span processor, periodic metric
//                       reader, exporters that discard (the SDK's cost, not an export's);
//                       then the same with engine spans only, and with metrics only
// `runs` rounds each run every variant once (so the machine's slow moments are
// shared); the median per variant is reported with its ratio to the compiled-out
// engine. The compiled-out engine is a second executable, run by this
// one, because one program cannot hold two builds of the engine.
//
//   telemetry_bench [--messages=N] [--runs=R] [--size=BYTES]
#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <wscengine/memory.hpp>
#include <wscengine/wscengine.hpp>

#ifndef WSCENGINE_BENCH_COMPILED_OUT
#include <opentelemetry/sdk/common/global_log_handler.h>
#include <opentelemetry/sdk/metrics/export/periodic_exporting_metric_reader_factory.h>
#include <opentelemetry/sdk/metrics/meter_provider.h>
#include <opentelemetry/sdk/metrics/meter_provider_factory.h>
#include <opentelemetry/sdk/metrics/push_metric_exporter.h>
#include <opentelemetry/sdk/resource/resource.h>
#include <opentelemetry/sdk/trace/batch_span_processor_factory.h>
#include <opentelemetry/sdk/trace/batch_span_processor_options.h>
#include <opentelemetry/sdk/trace/exporter.h>
#include <opentelemetry/sdk/trace/samplers/always_on_factory.h>
#include <opentelemetry/sdk/trace/samplers/parent_factory.h>
#include <opentelemetry/sdk/trace/samplers/trace_id_ratio_factory.h>
#include <opentelemetry/sdk/trace/span_data.h>
#include <opentelemetry/sdk/trace/tracer_provider.h>
#include <opentelemetry/sdk/trace/tracer_provider_factory.h>

#include <wscengine/otel.hpp>
#endif

using namespace wscengine;
using namespace std::chrono_literals;

namespace {

struct Config {
  std::size_t messages = 1000000;
  int runs = 5;
  std::size_t size = 64;
  std::string only;  // run only the variants whose name contains this (for perf)
};

class CountingClient final : public Client {
 public:
  void on_message(Context&, const Message& message) override {
    bytes_ += message.payload.size();
    if (++count_ == target_) {
      std::lock_guard lock(mutex_);
      done_.notify_all();
    }
  }
  void expect(std::size_t n) {
    count_ = 0;
    target_ = n;
  }
  bool wait(std::chrono::seconds timeout) {
    std::unique_lock lock(mutex_);
    return done_.wait_for(lock, timeout, [&] { return count_.load() >= target_; });
  }

 private:
  std::atomic<std::size_t> count_{0};
  std::size_t target_ = 0;
  std::size_t bytes_ = 0;  // touches the payload like a real handler would
  std::mutex mutex_;
  std::condition_variable done_;
};

// One measurement: N messages queued while the engine is paused, then timed from
// the release of the pause until on_message has seen the last one.
double messages_per_second(const Config& config, const TelemetryOptions& telemetry) {
  auto server = memory::Server::create();
  auto client = std::make_shared<CountingClient>();
  EngineOptions options;
  options.url = "ws://bench.test/";
  options.telemetry = telemetry;
  Engine engine(options, client, server->connector());
  if (Error e = engine.start()) {
    std::fprintf(stderr, "start: %s\n", e.message().c_str());
    std::exit(1);
  }
  auto peer = server->accept(5s);
  std::string payload(config.size, 'x');
  client->expect(config.messages);
  auto start = std::chrono::steady_clock::now();
  {
    PauseGuard paused = engine.pause();
    for (std::size_t i = 0; i < config.messages; ++i) peer->send(MessageType::binary, payload);
    start = std::chrono::steady_clock::now();
  }
  if (!client->wait(120s)) {
    std::fprintf(stderr, "timed out\n");
    std::exit(1);
  }
  auto took = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  (void)engine.stop();
  return static_cast<double>(config.messages) / took;
}

Config warm_up_of(const Config& config) {
  Config warm_up = config;
  warm_up.messages = config.messages / 10 + 1;
  warm_up.runs = 1;
  return warm_up;
}

double median_of_runs(const Config& config, const TelemetryOptions& telemetry) {
  (void)messages_per_second(warm_up_of(config), telemetry);
  std::vector<double> results;
  for (int i = 0; i < config.runs; ++i) results.push_back(messages_per_second(config, telemetry));
  std::sort(results.begin(), results.end());
  return results[results.size() / 2];
}

Config parse(int argc, char** argv) {
  Config config;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    auto number = [&](const char* flag) -> long {
      std::string prefix = std::string(flag) + "=";
      return arg.rfind(prefix, 0) == 0 ? std::strtol(arg.c_str() + prefix.size(), nullptr, 10) : -1;
    };
    if (long v = number("--messages"); v > 0) {
      config.messages = static_cast<std::size_t>(v);
    } else if (long v = number("--runs"); v > 0) {
      config.runs = static_cast<int>(v);
    } else if (long v = number("--size"); v > 0) {
      config.size = static_cast<std::size_t>(v);
    } else if (arg.rfind("--only=", 0) == 0) {
      config.only = arg.substr(7);
    } else {
      std::fprintf(stderr, "usage: %s [--messages=N] [--runs=R] [--size=BYTES] [--only=TEXT]\n", argv[0]);
      std::exit(2);
    }
  }
  return config;
}

#ifndef WSCENGINE_BENCH_COMPILED_OUT
namespace nostd = opentelemetry::nostd;
namespace sdktrace = opentelemetry::sdk::trace;
namespace sdkmetrics = opentelemetry::sdk::metrics;

class DiscardingSpanExporter final : public sdktrace::SpanExporter {
 public:
  std::unique_ptr<sdktrace::Recordable> MakeRecordable() noexcept override {
    return std::make_unique<sdktrace::SpanData>();
  }
  opentelemetry::sdk::common::ExportResult Export(
      const nostd::span<std::unique_ptr<sdktrace::Recordable>>& spans) noexcept override {
    exported += spans.size();
    return opentelemetry::sdk::common::ExportResult::kSuccess;
  }
  bool ForceFlush(std::chrono::microseconds) noexcept override { return true; }
  bool Shutdown(std::chrono::microseconds) noexcept override { return true; }
  std::atomic<std::size_t> exported{0};
};

class DiscardingMetricExporter final : public sdkmetrics::PushMetricExporter {
 public:
  opentelemetry::sdk::common::ExportResult Export(const sdkmetrics::ResourceMetrics&) noexcept override {
    return opentelemetry::sdk::common::ExportResult::kSuccess;
  }
  sdkmetrics::AggregationTemporality GetAggregationTemporality(sdkmetrics::InstrumentType) const noexcept override {
    return sdkmetrics::AggregationTemporality::kCumulative;
  }
  bool ForceFlush(std::chrono::microseconds) noexcept override { return true; }
  bool Shutdown(std::chrono::microseconds) noexcept override { return true; }
};

double run_compiled_out(const Config& config) {
  std::string command = std::string(WSCENGINE_BENCH_COMPILED_OUT_BINARY) +
                        " --messages=" + std::to_string(config.messages) + " --runs=" + std::to_string(config.runs) +
                        " --size=" + std::to_string(config.size);
  FILE* child = ::popen(command.c_str(), "r");
  if (!child) return 0;
  double value = 0;
  if (std::fscanf(child, "compiled_out %lf", &value) != 1) value = 0;
  ::pclose(child);
  return value;
}
#endif

}  // namespace

int main(int argc, char** argv) {
  Config config = parse(argc, argv);
#ifdef WSCENGINE_BENCH_COMPILED_OUT
  std::printf("compiled_out %.1f\n", median_of_runs(config, {}));
  return 0;
#else
  std::printf("telemetry_bench: %zu messages of %zu bytes, median of %d rounds, in-memory adapter\n", config.messages,
              config.size, config.runs);
  opentelemetry::sdk::common::internal_log::GlobalLogHandler::SetLogLevel(
      opentelemetry::sdk::common::internal_log::LogLevel::Error);
  // Spans go through a batch processor to an exporter that discards them: the SDK's
  // cost, not an export's. One provider per sampler.
  auto tracer_provider_with = [](std::unique_ptr<sdktrace::Sampler> sampler) {
    sdktrace::BatchSpanProcessorOptions batch;
    batch.max_queue_size = 1 << 20;  // room for a whole run: a dropped span would be work not measured
    batch.max_export_batch_size = 4096;
    batch.schedule_delay_millis = 50ms;
    std::shared_ptr<sdktrace::TracerProvider> provider = sdktrace::TracerProviderFactory::Create(
        sdktrace::BatchSpanProcessorFactory::Create(std::make_unique<DiscardingSpanExporter>(), batch),
        opentelemetry::sdk::resource::Resource::Create({}), std::move(sampler));
    return nostd::shared_ptr<opentelemetry::trace::TracerProvider>(provider);
  };
  auto every_span = tracer_provider_with(sdktrace::AlwaysOnSamplerFactory::Create());
  auto ratio_sampled = tracer_provider_with(
      sdktrace::ParentBasedSamplerFactory::Create(sdktrace::TraceIdRatioBasedSamplerFactory::Create(0.001)));
  std::shared_ptr<sdkmetrics::MeterProvider> meter_provider = sdkmetrics::MeterProviderFactory::Create();
  sdkmetrics::PeriodicExportingMetricReaderOptions reader;
  reader.export_interval_millis = 1000ms;
  reader.export_timeout_millis = 500ms;
  meter_provider->AddMetricReader(
      sdkmetrics::PeriodicExportingMetricReaderFactory::Create(std::make_unique<DiscardingMetricExporter>(), reader));
  nostd::shared_ptr<opentelemetry::metrics::MeterProvider> meters(meter_provider);
  TelemetryOptions full = otel::make_telemetry(every_span, meters);
  TelemetryOptions sdk_sampler = otel::make_telemetry(ratio_sampled, meters);
  TelemetryOptions engine_sampled = full;
  engine_sampled.message_sample_ratio = 0.001;
  TelemetryOptions none_sampled = full;
  none_sampled.message_sample_ratio = 0;
  TelemetryOptions engine_spans_only = full;
  engine_spans_only.trace_connection = false;
  engine_spans_only.metrics = nullptr;
  TelemetryOptions metrics_only;
  metrics_only.metrics = full.metrics;

  struct Variant {
    const char* name;
    std::optional<TelemetryOptions> telemetry;  // nullopt: the compiled-out executable
    std::vector<double> results;
  };
  std::vector<Variant> variants = {
      {"telemetry compiled out (baseline)", std::nullopt, {}},
      {"compiled in, telemetry unset", TelemetryOptions{}, {}},
      {"OpenTelemetry, no provider (global no-op)", otel::make_telemetry(), {}},
      {"SDK, every message traced", full, {}},
      {"SDK, SDK ratio sampler 1/1000", sdk_sampler, {}},
      {"SDK, message_sample_ratio 1/1000", engine_sampled, {}},
      {"SDK, message_sample_ratio 0", none_sampled, {}},
      {"SDK, engine spans only (no adapter spans)", engine_spans_only, {}},
      {"SDK, metrics only", metrics_only, {}},
  };
  if (!config.only.empty()) {
    std::erase_if(variants, [&](const Variant& v) {
      return v.telemetry && std::string(v.name).find(config.only) == std::string::npos;
    });
  }
  // Rounds run every variant once, so that the machine's slow and fast moments are
  // shared by all of them rather than landing on one.
  Config one_run = config;
  one_run.runs = 1;
  for (auto& v : variants)
    if (v.telemetry) (void)messages_per_second(warm_up_of(config), *v.telemetry);
  for (int round = 0; round < config.runs; ++round) {
    for (auto& v : variants)
      v.results.push_back(v.telemetry ? messages_per_second(config, *v.telemetry) : run_compiled_out(one_run));
  }
  auto median = [](std::vector<double> r) {
    std::sort(r.begin(), r.end());
    return r[r.size() / 2];
  };
  // The cost per message: the time a message takes beyond the compiled-out engine's.
  double base = median(variants[0].results);
  std::printf("%-44s %14s %10s %12s\n", "variant", "messages/s", "ratio", "ns/message");
  for (auto& v : variants) {
    double value = median(v.results);
    double extra_ns = value > 0 && base > 0 ? (1e9 / value - 1e9 / base) : 0.0;
    std::printf("%-44s %14.0f %10.3f %12.1f\n", v.name, value, base > 0 ? value / base : 0.0, extra_ns);
  }
  double compiled_out = base;
  return compiled_out > 0 ? 0 : 1;
#endif
}
