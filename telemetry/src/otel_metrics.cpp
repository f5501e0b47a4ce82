// The engine's Metrics over OpenTelemetry instruments (names in docs/observability.md).
#include <wscengine/otel.hpp>
#include <wscengine/version.hpp>

#include <opentelemetry/context/context.h>
#include <opentelemetry/metrics/async_instruments.h>
#include <opentelemetry/metrics/meter.h>
#include <opentelemetry/metrics/observer_result.h>
#include <opentelemetry/metrics/provider.h>
#include <opentelemetry/metrics/sync_instruments.h>

#include <array>
#include <atomic>

namespace wscengine::otel {
namespace {

namespace nostd = opentelemetry::nostd;
namespace metrics_api = opentelemetry::metrics;

const char* type_name(MessageType type) { return type == MessageType::text ? "text" : "binary"; }

const char* state_name(ConnectionState state) {
  switch (state) {
    case ConnectionState::dialing:
      return "dialing";
    case ConnectionState::open:
      return "open";
    case ConnectionState::closing:
      return "closing";
    case ConnectionState::none:
      break;
  }
  return "none";
}

// The ABI v1 Record needs a context (for exemplars); the engine has no
// OpenTelemetry context of its own.
const opentelemetry::context::Context& no_context() {
  static const opentelemetry::context::Context empty;
  return empty;
}

double seconds(std::chrono::nanoseconds d) { return std::chrono::duration<double>(d).count(); }

class OtelMetrics final : public Metrics {
 public:
  explicit OtelMetrics(nostd::shared_ptr<metrics_api::Meter> meter)
      : messages_received_(meter->CreateUInt64Counter("wscengine.messages.received",
                                                      "Whole messages read from the connection", "{message}")),
        messages_sent_(
            meter->CreateUInt64Counter("wscengine.messages.sent", "Whole messages written successfully", "{message}")),
        bytes_received_(meter->CreateUInt64Counter("wscengine.bytes.received", "Payload bytes of messages read", "By")),
        bytes_sent_(meter->CreateUInt64Counter("wscengine.bytes.sent", "Payload bytes of messages written", "By")),
        reconnect_attempts_(meter->CreateUInt64Counter("wscengine.reconnect.attempts",
                                                       "Dial attempts after the first of a start", "{attempt}")),
        reconnect_successes_(meter->CreateUInt64Counter("wscengine.reconnect.successes",
                                                        "Reconnect attempts that opened a session", "{attempt}")),
        read_errors_(meter->CreateUInt64Counter("wscengine.read.errors", "Errors handed to OnReadError", "{error}")),
        on_message_duration_(
            meter->CreateDoubleHistogram("wscengine.on_message.duration", "Time spent in OnMessage", "s")),
        dial_duration_(
            meter->CreateDoubleHistogram("wscengine.dial.duration", "DNS + TCP + TLS + HTTP upgrade of one dial", "s")),
        handshake_duration_(meter->CreateDoubleHistogram("wscengine.handshake.duration",
                                                         "TLS + HTTP upgrade part of a successful dial", "s")),
        connections_(meter->CreateInt64ObservableUpDownCounter(
            "wscengine.connections", "Connections by state (dialing, open, closing)", "{connection}")) {
    connections_->AddCallback(&OtelMetrics::observe_connections, this);
  }
  ~OtelMetrics() override { connections_->RemoveCallback(&OtelMetrics::observe_connections, this); }
  OtelMetrics(const OtelMetrics&) = delete;
  OtelMetrics& operator=(const OtelMetrics&) = delete;

  void message_received(MessageType type, std::size_t bytes) noexcept override {
    messages_received_->Add(1, {{"wscengine.message.type", type_name(type)}});
    bytes_received_->Add(bytes);
  }
  void message_sent(MessageType type, std::size_t bytes) noexcept override {
    messages_sent_->Add(1, {{"wscengine.message.type", type_name(type)}});
    bytes_sent_->Add(bytes);
  }
  void reconnect_attempt() noexcept override { reconnect_attempts_->Add(1); }
  void reconnect_success() noexcept override { reconnect_successes_->Add(1); }
  void read_error(const Error& error) noexcept override {
    std::string kind = error.code.message();
    read_errors_->Add(1, {{"wscengine.error.kind", nostd::string_view(kind)}});
  }
  void on_message_duration(std::chrono::nanoseconds duration) noexcept override {
    on_message_duration_->Record(seconds(duration), no_context());
  }
  void dial_duration(std::chrono::nanoseconds duration, const Error& error) noexcept override {
    if (!error) {
      dial_duration_->Record(seconds(duration), {{"wscengine.outcome", "ok"}}, no_context());
      return;
    }
    std::string kind = error.code.message();
    dial_duration_->Record(seconds(duration),
                           {{"wscengine.outcome", "error"}, {"wscengine.error.kind", nostd::string_view(kind)}},
                           no_context());
  }
  void handshake_duration(std::chrono::nanoseconds duration) noexcept override {
    handshake_duration_->Record(seconds(duration), no_context());
  }
  void connection_state(ConnectionState from, ConnectionState to) noexcept override {
    in_state_[static_cast<std::size_t>(from)].fetch_sub(1, std::memory_order_relaxed);
    in_state_[static_cast<std::size_t>(to)].fetch_add(1, std::memory_order_relaxed);
  }

 private:
  nostd::unique_ptr<metrics_api::Counter<std::uint64_t>> messages_received_, messages_sent_, bytes_received_,
      bytes_sent_, reconnect_attempts_, reconnect_successes_, read_errors_;
  nostd::unique_ptr<metrics_api::Histogram<double>> on_message_duration_, dial_duration_, handshake_duration_;
  // The state is a current value, read at collection: an asynchronous instrument
  // over counts kept here (summed over every engine sharing this object).
  static void observe_connections(metrics_api::ObserverResult result, void* self) noexcept {
    auto& counts = static_cast<OtelMetrics*>(self)->in_state_;
    auto observer = nostd::get<nostd::shared_ptr<metrics_api::ObserverResultT<std::int64_t>>>(result);
    for (auto state : {ConnectionState::dialing, ConnectionState::open, ConnectionState::closing}) {
      observer->Observe(counts[static_cast<std::size_t>(state)].load(std::memory_order_relaxed),
                        {{"wscengine.state", state_name(state)}});
    }
  }

  std::array<std::atomic<std::int64_t>, 4> in_state_{};  // by ConnectionState
  nostd::shared_ptr<metrics_api::ObservableInstrument> connections_;
};

}  // namespace

std::shared_ptr<Metrics> make_metrics(nostd::shared_ptr<metrics_api::MeterProvider> provider) {
  if (!provider) provider = metrics_api::Provider::GetMeterProvider();
  return std::make_shared<OtelMetrics>(provider->GetMeter("wscengine", version_string));
}

TelemetryOptions make_telemetry(nostd::shared_ptr<opentelemetry::trace::TracerProvider> tracer_provider,
                                nostd::shared_ptr<metrics_api::MeterProvider> meter_provider) {
  TelemetryOptions options;
  options.tracer = make_tracer(std::move(tracer_provider));
  options.metrics = make_metrics(std::move(meter_provider));
  return options;
}

}  // namespace wscengine::otel
