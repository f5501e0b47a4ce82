// The engine's Metrics over OpenTelemetry instruments (names in docs/observability.md).
#include <wscengine/otel.hpp>
#include <wscengine/version.hpp>

#include <opentelemetry/context/context.h>
#include <opentelemetry/metrics/async_instruments.h>
#include <opentelemetry/metrics/meter.h>
#include <opentelemetry/metrics/noop.h>
#include <opentelemetry/metrics/observer_result.h>
#include <opentelemetry/metrics/provider.h>
#include <opentelemetry/metrics/sync_instruments.h>
#include <opentelemetry/trace/provider.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <map>
#include <mutex>
#include <utility>
#include <vector>

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

// A short stable token for the attribute ("connection_refused"), not the sentence.
std::string error_kind(const Error& error) {
  if (error.code.category() == error_category()) return std::string(to_string(static_cast<errc>(error.code.value())));
  return std::string(error.code.category().name()) + ":" + std::to_string(error.code.value());
}

double seconds(std::chrono::nanoseconds d) { return std::chrono::duration<double>(d).count(); }

using Total = std::atomic<std::int64_t>;
using ByType = std::array<Total, 2>;  // text, binary
using Observer = nostd::shared_ptr<metrics_api::ObserverResultT<std::int64_t>>;

std::size_t index(MessageType type) { return type == MessageType::text ? 0 : 1; }

// One thread's message counts for one Meter. Only its owning thread writes them
// (a plain load and store, no locked instruction); collection reads them from
// another thread, hence atomics with relaxed order.
struct ThreadCounts {
  ByType received{}, sent{};
  Total bytes_received{0}, bytes_sent{0};
  std::atomic<bool> owned{true};  // false once its thread ended: another may adopt it

  static void add(Total& total, std::int64_t n) noexcept {
    total.store(total.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
};

// Per-message counts are read by asynchronous (observable) instruments at collection
// time: an SDK counter Add per message costs a hash and a lock (the benchmark
// measured five times the engine's own per-message work). They are kept per thread:
// an atomic add shared by every engine's reader threads is a locked instruction on
// one contended cache line, which cost a feed with sampled tracing a tenth of its
// rate (bench/telemetry_bench). The counts belong to the Meter, not to one Metrics
// object: every engine measured through one provider adds to the same totals, and
// totals stay reported after an engine or a thread is gone (cumulative counters
// never drop).
struct MeterCounts {
  std::mutex threads_mutex;
  std::vector<std::unique_ptr<ThreadCounts>> threads;  // (threads_mutex) never shrinks
  Total reconnect_attempts{0}, reconnect_successes{0};
  std::array<Total, 4> in_state{};              // connections by ConnectionState
  nostd::shared_ptr<metrics_api::Meter> meter;  // keeps the Meter, and so its address (the key), alive
  std::vector<nostd::shared_ptr<metrics_api::ObservableInstrument>> instruments;

  template <Total MeterCounts::*total>
  static void observe_total(metrics_api::ObserverResult result, void* self) noexcept {
    nostd::get<Observer>(result)->Observe((static_cast<MeterCounts*>(self)->*total).load(std::memory_order_relaxed));
  }
  // The sum over every thread's counts.
  template <class Read>
  std::int64_t sum(Read read) {
    std::lock_guard lock(threads_mutex);
    std::int64_t total = 0;
    for (const auto& t : threads) total += read(*t).load(std::memory_order_relaxed);
    return total;
  }
  template <Total ThreadCounts::*total>
  static void observe_thread_total(metrics_api::ObserverResult result, void* self) noexcept {
    nostd::get<Observer>(result)->Observe(
        static_cast<MeterCounts*>(self)->sum([](ThreadCounts& t) -> Total& { return t.*total; }));
  }
  template <ByType ThreadCounts::*counts>
  static void observe_by_type(metrics_api::ObserverResult result, void* self) noexcept {
    for (auto type : {MessageType::text, MessageType::binary}) {
      auto total =
          static_cast<MeterCounts*>(self)->sum([&](ThreadCounts& t) -> Total& { return (t.*counts)[index(type)]; });
      nostd::get<Observer>(result)->Observe(total, {{"wscengine.message.type", type_name(type)}});
    }
  }
  // The calling thread's counts: a block of a thread that ended, else a new one.
  ThreadCounts* claim() {
    std::lock_guard lock(threads_mutex);
    for (const auto& t : threads) {
      bool ended = false;
      if (t->owned.compare_exchange_strong(ended, true, std::memory_order_acquire)) return t.get();
    }
    threads.push_back(std::make_unique<ThreadCounts>());
    return threads.back().get();
  }
  // A current value: connections in each state.
  static void observe_connections(metrics_api::ObserverResult result, void* self) noexcept {
    auto& counts = static_cast<MeterCounts*>(self)->in_state;
    for (auto state : {ConnectionState::dialing, ConnectionState::open, ConnectionState::closing}) {
      nostd::get<Observer>(result)->Observe(counts[static_cast<std::size_t>(state)].load(std::memory_order_relaxed),
                                            {{"wscengine.state", state_name(state)}});
    }
  }
  void observe(nostd::shared_ptr<metrics_api::ObservableInstrument> instrument,
               metrics_api::ObservableCallbackPtr callback) {
    instrument->AddCallback(callback, this);
    instruments.push_back(std::move(instrument));
  }

  explicit MeterCounts(nostd::shared_ptr<metrics_api::Meter> m) : meter(std::move(m)) {
    observe(meter->CreateInt64ObservableCounter("wscengine.messages.received",
                                                "Whole messages read from the connection", "{message}"),
            &observe_by_type<&ThreadCounts::received>);
    observe(meter->CreateInt64ObservableCounter("wscengine.messages.sent", "Whole messages written successfully",
                                                "{message}"),
            &observe_by_type<&ThreadCounts::sent>);
    observe(meter->CreateInt64ObservableCounter("wscengine.bytes.received", "Payload bytes of messages read", "By"),
            &observe_thread_total<&ThreadCounts::bytes_received>);
    observe(meter->CreateInt64ObservableCounter("wscengine.bytes.sent", "Payload bytes of messages written", "By"),
            &observe_thread_total<&ThreadCounts::bytes_sent>);
    observe(meter->CreateInt64ObservableCounter("wscengine.reconnect.attempts",
                                                "Dial attempts after the first of a start", "{attempt}"),
            &observe_total<&MeterCounts::reconnect_attempts>);
    observe(meter->CreateInt64ObservableCounter("wscengine.reconnect.successes",
                                                "Reconnect attempts that opened a session", "{attempt}"),
            &observe_total<&MeterCounts::reconnect_successes>);
    observe(meter->CreateInt64ObservableUpDownCounter("wscengine.connections",
                                                      "Connections by state (dialing, open, closing)", "{connection}"),
            &observe_connections);
  }
};

// One MeterCounts per Meter, for the life of the process: the SDK may call the
// callbacks until its provider is gone, even during exit, so they are never freed
// (one small object per provider used).
MeterCounts& counts_of(const nostd::shared_ptr<metrics_api::Meter>& meter) {
  static auto* mutex = new std::mutex;
  static auto* registry = new std::map<const metrics_api::Meter*, MeterCounts*>;
  std::lock_guard lock(*mutex);
  auto& counts = (*registry)[meter.get()];
  if (!counts) counts = new MeterCounts(meter);
  return *counts;
}

// This thread's counts for `counts`. A thread counts for one or two Meters in
// practice: a short list, with the last one looked up first. The last one is also kept
// in two plain thread_locals, so that a message's lookup needs no initialisation guard
// (the list has a destructor, and so one).
thread_local MeterCounts* t_last_meter = nullptr;
thread_local ThreadCounts* t_last_counts = nullptr;

[[gnu::noinline]] ThreadCounts& find_counts_of_this_thread(MeterCounts& counts) {
  struct Mine {
    std::vector<std::pair<MeterCounts*, ThreadCounts*>> all;
    ~Mine() {  // the thread ends: its counts stay in the totals, free to adopt
      t_last_meter = nullptr;
      t_last_counts = nullptr;
      for (auto& [meter, t] : all) t->owned.store(false, std::memory_order_release);
    }
  };
  thread_local Mine mine;
  auto found = std::find_if(mine.all.begin(), mine.all.end(), [&](const auto& e) { return e.first == &counts; });
  ThreadCounts* t = found != mine.all.end() ? found->second : mine.all.emplace_back(&counts, counts.claim()).second;
  t_last_meter = &counts;
  t_last_counts = t;
  return *t;
}

ThreadCounts& counts_of_this_thread(MeterCounts& counts) {
  if (t_last_meter == &counts) return *t_last_counts;
  return find_counts_of_this_thread(counts);
}

class OtelMetrics final : public Metrics {
 public:
  explicit OtelMetrics(const nostd::shared_ptr<metrics_api::Meter>& meter)
      : counts_(counts_of(meter)),
        read_errors_(meter->CreateUInt64Counter("wscengine.read.errors", "Errors handed to on_read_error", "{error}")),
        redirects_(meter->CreateUInt64Counter("wscengine.redirects", "Redirects followed by a dial", "{redirect}")),
        http2_connections_(meter->CreateInt64UpDownCounter(
            "wscengine.http2.connections", "HTTP/2 connections carrying WebSocket streams", "{connection}")),
        http2_streams_(meter->CreateDoubleHistogram("wscengine.http2.streams_per_connection",
                                                    "Streams an HTTP/2 connection carries, at each stream opened",
                                                    "{stream}")),
        on_message_duration_(
            meter->CreateDoubleHistogram("wscengine.on_message.duration", "Time spent in on_message", "s")),
        dial_duration_(
            meter->CreateDoubleHistogram("wscengine.dial.duration", "DNS + TCP + TLS + HTTP upgrade of one dial", "s")),
        handshake_duration_(meter->CreateDoubleHistogram("wscengine.handshake.duration",
                                                         "TLS + HTTP upgrade part of a successful dial", "s")) {}

  void message_received(MessageType type, std::size_t bytes) noexcept override {
    ThreadCounts& mine = counts_of_this_thread(counts_);
    ThreadCounts::add(mine.received[index(type)], 1);
    ThreadCounts::add(mine.bytes_received, static_cast<std::int64_t>(bytes));
  }
  void message_sent(MessageType type, std::size_t bytes) noexcept override {
    ThreadCounts& mine = counts_of_this_thread(counts_);
    ThreadCounts::add(mine.sent[index(type)], 1);
    ThreadCounts::add(mine.bytes_sent, static_cast<std::int64_t>(bytes));
  }
  void reconnect_attempt() noexcept override { counts_.reconnect_attempts.fetch_add(1, std::memory_order_relaxed); }
  void reconnect_success() noexcept override { counts_.reconnect_successes.fetch_add(1, std::memory_order_relaxed); }
  void read_error(const Error& error) noexcept override {
    std::string kind = error_kind(error);
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
    std::string kind = error_kind(error);
    dial_duration_->Record(seconds(duration),
                           {{"wscengine.outcome", "error"}, {"wscengine.error.kind", nostd::string_view(kind)}},
                           no_context());
  }
  void handshake_duration(std::chrono::nanoseconds duration) noexcept override {
    handshake_duration_->Record(seconds(duration), no_context());
  }
  void redirect(int status) noexcept override {
    redirects_->Add(1, {{"wscengine.http.status", static_cast<std::int64_t>(status)}});
  }
  void http2_connections(std::int64_t delta) noexcept override { http2_connections_->Add(delta); }
  void http2_streams(std::uint64_t streams) noexcept override {
    http2_streams_->Record(static_cast<double>(streams), no_context());
  }
  void connection_state(ConnectionState from, ConnectionState to) noexcept override {
    counts_.in_state[static_cast<std::size_t>(from)].fetch_sub(1, std::memory_order_relaxed);
    counts_.in_state[static_cast<std::size_t>(to)].fetch_add(1, std::memory_order_relaxed);
  }

 private:
  MeterCounts& counts_;
  nostd::unique_ptr<metrics_api::Counter<std::uint64_t>> read_errors_, redirects_;
  nostd::unique_ptr<metrics_api::UpDownCounter<std::int64_t>> http2_connections_;
  nostd::unique_ptr<metrics_api::Histogram<double>> http2_streams_;
  nostd::unique_ptr<metrics_api::Histogram<double>> on_message_duration_, dial_duration_, handshake_duration_;
};

}  // namespace

std::shared_ptr<Metrics> make_metrics(nostd::shared_ptr<metrics_api::MeterProvider> provider) {
  if (!provider) provider = metrics_api::Provider::GetMeterProvider();
  return std::make_shared<OtelMetrics>(provider->GetMeter("wscengine", version_string));
}

TelemetryOptions make_telemetry(nostd::shared_ptr<opentelemetry::trace::TracerProvider> tracer_provider,
                                nostd::shared_ptr<metrics_api::MeterProvider> meter_provider) {
  if (!tracer_provider) tracer_provider = opentelemetry::trace::Provider::GetTracerProvider();
  if (!meter_provider) meter_provider = metrics_api::Provider::GetMeterProvider();
  // OpenTelemetry's no-op providers record nothing: leave the hooks unset, so that
  // the engine pays nothing for them.
  TelemetryOptions options;
  if (!is_noop(tracer_provider)) options.tracer = make_tracer(std::move(tracer_provider));
  if (!dynamic_cast<const metrics_api::NoopMeterProvider*>(meter_provider.get()))
    options.metrics = make_metrics(std::move(meter_provider));
  return options;
}

}  // namespace wscengine::otel
