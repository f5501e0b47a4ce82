// wscengine::otel against the OpenTelemetry SDK with its in-memory span and metric
// exporters: names, parent/child links, attributes and counts for a normal session,
// a reconnect, a read error, a restart error loop and a Stop.
#include <gtest/gtest.h>

#include <opentelemetry/exporters/memory/in_memory_metric_data.h>
#include <opentelemetry/exporters/memory/in_memory_metric_exporter_factory.h>
#include <opentelemetry/exporters/memory/in_memory_span_data.h>
#include <opentelemetry/exporters/memory/in_memory_span_exporter_factory.h>
#include <opentelemetry/sdk/metrics/meter_provider.h>
#include <opentelemetry/sdk/metrics/meter_provider_factory.h>
#include <opentelemetry/sdk/metrics/metric_reader.h>
#include <opentelemetry/sdk/trace/simple_processor_factory.h>
#include <opentelemetry/sdk/trace/tracer_provider.h>
#include <opentelemetry/sdk/trace/tracer_provider_factory.h>

#include <map>
#include <vector>

#include <wscengine/memory.hpp>
#include <wscengine/otel.hpp>
#include <wscengine/wscengine.hpp>

#include "support/recorder.hpp"

using namespace wscengine;
using namespace wscengine::test;
namespace nostd = opentelemetry::nostd;
namespace sdktrace = opentelemetry::sdk::trace;
namespace sdkmetrics = opentelemetry::sdk::metrics;
namespace memexp = opentelemetry::exporter::memory;
using SpanData = sdktrace::SpanData;

namespace {

// Exports to the in-memory exporter on each ForceFlush and never on a timer, so a
// test reads exactly what was recorded before its flush.
class OnDemandReader final : public sdkmetrics::MetricReader {
 public:
  explicit OnDemandReader(std::unique_ptr<sdkmetrics::PushMetricExporter> exporter) : exporter_(std::move(exporter)) {}
  sdkmetrics::AggregationTemporality GetAggregationTemporality(sdkmetrics::InstrumentType) const noexcept override {
    return sdkmetrics::AggregationTemporality::kCumulative;
  }

 private:
  bool OnForceFlush(std::chrono::microseconds) noexcept override {
    return Collect([this](sdkmetrics::ResourceMetrics& metrics) {
      return exporter_->Export(metrics) == opentelemetry::sdk::common::ExportResult::kSuccess;
    });
  }
  bool OnShutDown(std::chrono::microseconds) noexcept override { return true; }
  std::unique_ptr<sdkmetrics::PushMetricExporter> exporter_;
};

class Otel : public ::testing::Test {
 protected:
  std::shared_ptr<memexp::InMemorySpanData> span_data;
  std::shared_ptr<sdktrace::TracerProvider> tracer_provider;
  std::shared_ptr<memexp::SimpleAggregateInMemoryMetricData> metric_data =
      std::make_shared<memexp::SimpleAggregateInMemoryMetricData>();
  std::shared_ptr<sdkmetrics::MeterProvider> meter_provider;
  std::shared_ptr<memory::Server> server = memory::Server::create();
  std::shared_ptr<Recorder> client = std::make_shared<Recorder>();
  std::vector<std::unique_ptr<SpanData>> spans;

  Otel() {
    tracer_provider = sdktrace::TracerProviderFactory::Create(
        sdktrace::SimpleSpanProcessorFactory::Create(memexp::InMemorySpanExporterFactory::Create(span_data)));
    meter_provider = sdkmetrics::MeterProviderFactory::Create();
    meter_provider->AddMetricReader(
        std::make_shared<OnDemandReader>(memexp::InMemoryMetricExporterFactory::Create(metric_data)));
  }

  EngineOptions options() {
    EngineOptions o;
    o.url = "ws://otel.test/feed?token=secret";
    o.backoff.initial_delay = 1ms;
    o.telemetry = otel::make_telemetry(nostd::shared_ptr<opentelemetry::trace::TracerProvider>(tracer_provider),
                                       nostd::shared_ptr<opentelemetry::metrics::MeterProvider>(meter_provider));
    o.telemetry.grouping = TraceGrouping::per_start;  // one trace to follow end to end; see PerMessage
    return o;
  }

  // Exports everything recorded so far; call once the engine is stopped.
  void collect() {
    tracer_provider->ForceFlush();
    metric_data->Clear();  // cumulative: the last export alone holds the totals
    meter_provider->ForceFlush();
    spans = span_data->GetSpans();
  }

  std::vector<const SpanData*> named(const std::string& name) const {
    std::vector<const SpanData*> out;
    for (auto& s : spans)
      if (std::string(s->GetName()) == name) out.push_back(s.get());
    return out;
  }
  const SpanData& one(const std::string& name) const {
    auto found = named(name);
    EXPECT_EQ(found.size(), 1u) << name;
    static const SpanData empty;
    return found.empty() ? empty : *found[0];
  }
  static bool child_of(const SpanData& child, const SpanData& parent) {
    return child.GetParentSpanId() == parent.GetSpanId() && child.GetTraceId() == parent.GetTraceId();
  }
  static std::int64_t int_attribute(const SpanData& span, const std::string& key) {
    auto& attributes = span.GetAttributes();
    auto it = attributes.find(key);
    if (it == attributes.end()) return -1;
    if (auto* v = nostd::get_if<std::int64_t>(&it->second)) return *v;
    return -2;
  }
  static std::string string_attribute(const SpanData& span, const std::string& key) {
    auto& attributes = span.GetAttributes();
    auto it = attributes.find(key);
    if (it == attributes.end()) return "<absent>";
    if (auto* v = nostd::get_if<std::string>(&it->second)) return *v;
    return "<not a string>";
  }
  static std::vector<std::string> events(const SpanData& span) {
    std::vector<std::string> out;
    for (auto& e : span.GetEvents()) out.emplace_back(e.GetName());
    return out;
  }

  // Sum of a counter over all points, or of the points whose attribute `key` is `value`.
  std::int64_t sum(const std::string& metric, const std::string& key = {}, const std::string& value = {}) {
    std::int64_t total = 0;
    for (auto& [attributes, point] : metric_data->Get("wscengine", metric)) {
      if (!key.empty()) {
        auto it = attributes.find(key);
        if (it == attributes.end() || nostd::get<std::string>(it->second) != value) continue;
      }
      if (auto* s = nostd::get_if<sdkmetrics::SumPointData>(&point)) total += nostd::get<std::int64_t>(s->value_);
    }
    return total;
  }
  std::uint64_t histogram_count(const std::string& metric) {
    std::uint64_t count = 0;
    for (auto& [attributes, point] : metric_data->Get("wscengine", metric))
      if (auto* h = nostd::get_if<sdkmetrics::HistogramPointData>(&point)) count += h->count_;
    return count;
  }
};

}  // namespace

TEST_F(Otel, ANormalSessionIsOneTraceFromTheSocketIntoUserCode) {
  client->on_message_hook = [&](Context& ctx, const Message&) {
    auto user_tracer = tracer_provider->GetTracer("user");
    opentelemetry::trace::StartSpanOptions explicit_parent;
    explicit_parent.parent = otel::span_context(ctx.trace_context());
    user_tracer->StartSpan("user.explicit", explicit_parent)->End();
    user_tracer->StartSpan("user.implicit")->End();  // the engine's span is the active one
  };
  {
    Engine engine(options(), client, server->connector());
    ASSERT_FALSE(engine.start());
    auto peer = server->accept(5s);
    peer->send(MessageType::text, "traced");
    peer->send(MessageType::binary, "0123456789");
    ASSERT_TRUE(client->wait_count(Event::message, 2));
    ASSERT_FALSE(engine.stop());
  }
  collect();

  auto &start = one("wscengine.start"), &open = one("wscengine.open"), &dial = one("wscengine.dial"),
       &on_open = one("wscengine.on_open"), &run = one("wscengine.run"), &stop = one("wscengine.stop"),
       &shutdown = one("wscengine.shutdown"), &on_close = one("wscengine.on_close"), &close = one("wscengine.close");
  EXPECT_FALSE(start.GetParentSpanId().IsValid());
  EXPECT_TRUE(child_of(open, start));
  EXPECT_TRUE(child_of(dial, open));
  EXPECT_TRUE(child_of(on_open, open));
  EXPECT_TRUE(child_of(run, open));
  EXPECT_TRUE(child_of(stop, run));
  EXPECT_TRUE(child_of(shutdown, run));
  EXPECT_TRUE(child_of(on_close, shutdown));
  EXPECT_TRUE(child_of(close, shutdown));
  EXPECT_EQ(string_attribute(open, "wscengine.url"), "ws://otel.test:80/feed") << "no query secrets";
  EXPECT_EQ(int_attribute(open, "wscengine.retry_count"), 0);
  EXPECT_EQ(int_attribute(start, "wscengine.auto_reconnect"), 1);
  EXPECT_EQ(int_attribute(dial, "wscengine.http.status"), 101);
  EXPECT_EQ(int_attribute(run, "wscengine.session_id"), 1);
  EXPECT_EQ(int_attribute(close, "wscengine.close.sent_code"), 1000);
  EXPECT_EQ(events(shutdown), (std::vector<std::string>{"engine stop"}));

  auto reads = named("wscengine.read"), messages = named("wscengine.on_message");
  auto explicit_spans = named("user.explicit"), implicit_spans = named("user.implicit");
  ASSERT_EQ(reads.size(), 2u);
  ASSERT_EQ(messages.size(), 2u);
  ASSERT_EQ(explicit_spans.size(), 2u);
  ASSERT_EQ(implicit_spans.size(), 2u);
  for (std::size_t i = 0; i < 2; ++i) {
    EXPECT_TRUE(child_of(*reads[i], run));
    EXPECT_TRUE(child_of(*messages[i], *reads[i]));
    EXPECT_TRUE(child_of(*explicit_spans[i], *messages[i]));
    EXPECT_TRUE(child_of(*implicit_spans[i], *messages[i]));
    EXPECT_EQ(int_attribute(*messages[i], "wscengine.message.sequence"), static_cast<std::int64_t>(i));
    EXPECT_EQ(int_attribute(*messages[i], "wscengine.reader_slot"), 0);
    EXPECT_LE(reads[i]->GetStartTime().time_since_epoch(), messages[i]->GetStartTime().time_since_epoch());
  }
  EXPECT_EQ(string_attribute(*messages[0], "wscengine.message.type"), "text");
  EXPECT_EQ(int_attribute(*messages[1], "wscengine.message.length"), 10);
  EXPECT_EQ(string_attribute(*reads[1], "wscengine.message.type"), "binary");
  for (auto& s : spans) EXPECT_NE(s->GetStatus(), opentelemetry::trace::StatusCode::kError) << s->GetName();

  EXPECT_EQ(sum("wscengine.messages.received"), 2);
  EXPECT_EQ(sum("wscengine.messages.received", "wscengine.message.type", "binary"), 1);
  EXPECT_EQ(sum("wscengine.bytes.received"), 16);
  EXPECT_EQ(histogram_count("wscengine.on_message.duration"), 2u);
  EXPECT_EQ(histogram_count("wscengine.dial.duration"), 1u);
  EXPECT_EQ(sum("wscengine.connections", "wscengine.state", "open"), 0) << "closed after Stop";
  EXPECT_EQ(sum("wscengine.reconnect.attempts"), 0);
}

TEST_F(Otel, AReconnectIsARestartUnderTheSessionItReplaces) {
  client->on_open_hook = [](Context& ctx, const HandshakeResponse&, bool) { return ctx.connection().send_text("sub"); };
  Engine engine(options(), client, server->connector());
  ASSERT_FALSE(engine.start());
  server->accept(5s)->drop();
  ASSERT_TRUE(client->wait_count(Event::open, 2));
  auto peer = server->accept(5s);
  ASSERT_TRUE(wait_state(engine, EngineState::running));  // the state moves once OnOpen has returned
  meter_provider->ForceFlush();
  EXPECT_EQ(sum("wscengine.connections", "wscengine.state", "open"), 1) << "one open connection while running";
  ASSERT_FALSE(engine.stop());
  collect();

  auto runs = named("wscengine.run"), shutdowns = named("wscengine.shutdown");
  ASSERT_EQ(runs.size(), 2u);
  ASSERT_EQ(shutdowns.size(), 2u);
  auto& restart = one("wscengine.restart");
  EXPECT_TRUE(child_of(restart, *runs[0]));
  EXPECT_TRUE(child_of(*runs[1], restart));
  EXPECT_EQ(int_attribute(*shutdowns[0], "wscengine.close.code"), 1006);
  EXPECT_EQ(string_attribute(*shutdowns[0], "wscengine.initiator"), "peer");
  EXPECT_EQ(events(*shutdowns[0]), (std::vector<std::string>{"connection closed"}));
  EXPECT_EQ(named("wscengine.write").size(), 2u);

  EXPECT_EQ(sum("wscengine.reconnect.attempts"), 1);
  EXPECT_EQ(sum("wscengine.reconnect.successes"), 1);
  EXPECT_EQ(sum("wscengine.messages.sent"), 2);
  EXPECT_EQ(sum("wscengine.bytes.sent"), 6);
  EXPECT_EQ(histogram_count("wscengine.dial.duration"), 2u);
  EXPECT_EQ(sum("wscengine.connections", "wscengine.state", "open"), 0);
}

TEST_F(Otel, AReadErrorIsAFailedSpanAndACount) {
  Engine engine(options(), client, server->connector());
  ASSERT_FALSE(engine.start());
  auto peer = server->accept(5s);
  peer->inject_read_error(Error(errc::protocol_error, "bad frame"));
  ASSERT_TRUE(client->wait_count(Event::read_error, 1));
  ASSERT_FALSE(engine.stop());
  collect();

  auto& on_read_error = one("wscengine.on_read_error");
  EXPECT_TRUE(child_of(on_read_error, one("wscengine.run")));
  EXPECT_EQ(on_read_error.GetStatus(), opentelemetry::trace::StatusCode::kError);
  EXPECT_NE(std::string(on_read_error.GetDescription()).find("bad frame"), std::string::npos);
  auto reads = named("wscengine.read");
  ASSERT_EQ(reads.size(), 1u) << "the failed read is a span of its own";
  EXPECT_EQ(reads[0]->GetStatus(), opentelemetry::trace::StatusCode::kError);
  EXPECT_EQ(sum("wscengine.read.errors"), 1);
  EXPECT_EQ(sum("wscengine.read.errors", "wscengine.error.kind", "protocol_error"), 1);
}

TEST_F(Otel, ARestartErrorLoopRecordsEveryAttemptUntilTheLimit) {
  auto o = options();
  o.backoff.max_attempts = 3;
  server->fail_next_dials(Error::http(503, "busy"), 10);
  Engine engine(o, client, server->connector());
  ASSERT_FALSE(engine.start_background());
  ASSERT_FALSE(engine.wait_stopped(10s));
  collect();

  auto attempts = named("wscengine.open"), restarts = named("wscengine.restart");
  auto restart_errors = named("wscengine.on_restart_error"), dials = named("wscengine.dial");
  ASSERT_EQ(attempts.size(), 1u);
  ASSERT_EQ(restarts.size(), 2u);
  ASSERT_EQ(restart_errors.size(), 3u);
  ASSERT_EQ(dials.size(), 3u);
  std::vector<const SpanData*> tries{attempts[0], restarts[0], restarts[1]};
  for (std::size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(tries[i]->GetStatus(), opentelemetry::trace::StatusCode::kError);
    EXPECT_NE(std::string(tries[i]->GetDescription()).find("503"), std::string::npos);
    EXPECT_TRUE(child_of(*dials[i], *tries[i]));
    EXPECT_TRUE(child_of(*restart_errors[i], *tries[i]));
    EXPECT_EQ(int_attribute(*restart_errors[i], "wscengine.retry_count"), static_cast<std::int64_t>(i + 1));
    EXPECT_EQ(int_attribute(*tries[i], "wscengine.retry_count"), static_cast<std::int64_t>(i));
  }
  EXPECT_TRUE(named("wscengine.run").empty());
  EXPECT_EQ(sum("wscengine.reconnect.attempts"), 2);
  EXPECT_EQ(sum("wscengine.reconnect.successes"), 0);
  EXPECT_EQ(histogram_count("wscengine.dial.duration"), 3u);
  EXPECT_EQ(sum("wscengine.connections", "wscengine.state", "dialing"), 0);
}

TEST_F(Otel, PerMessageTracesAreRootsLinkedToTheirSession) {
  auto o = options();
  o.telemetry.grouping = TraceGrouping::per_message;
  client->on_message_hook = [&](Context&, const Message&) {
    tracer_provider->GetTracer("user")->StartSpan("user.implicit")->End();
  };
  {
    Engine engine(o, client, server->connector());
    ASSERT_FALSE(engine.start());
    auto peer = server->accept(5s);
    peer->send(MessageType::text, "a");
    ASSERT_TRUE(client->wait_count(Event::message, 1));
    peer->drop();
    ASSERT_TRUE(client->wait_count(Event::open, 2));
    ASSERT_FALSE(engine.stop());
  }
  collect();
  auto runs = named("wscengine.run");
  ASSERT_EQ(runs.size(), 2u);
  auto links_to = [](const SpanData& span, const SpanData& target) {
    for (auto& link : span.GetLinks())
      if (link.GetSpanContext().span_id() == target.GetSpanId()) return true;
    return false;
  };
  auto reads = named("wscengine.read");
  ASSERT_GE(reads.size(), 1u);
  EXPECT_FALSE(reads[0]->GetParentSpanId().IsValid());
  EXPECT_NE(reads[0]->GetTraceId(), runs[0]->GetTraceId()) << "a message is a trace of its own";
  EXPECT_TRUE(links_to(*reads[0], *runs[0]));
  auto& message = one("wscengine.on_message");
  EXPECT_TRUE(child_of(message, *reads[0]));
  EXPECT_TRUE(child_of(one("user.implicit"), message));
  auto& restart = one("wscengine.restart");
  EXPECT_FALSE(restart.GetParentSpanId().IsValid());
  EXPECT_TRUE(links_to(restart, *runs[0]));
  EXPECT_TRUE(child_of(*runs[1], restart));
}

TEST_F(Otel, WithNoProviderSetTheGlobalNoopProviderIsUsedAndNothingBreaks) {
  EngineOptions o;
  o.url = "ws://otel.test/";
  o.telemetry = otel::make_telemetry();  // global providers: the API's no-op ones here
  Engine engine(o, client, server->connector());
  ASSERT_FALSE(engine.start());
  server->accept(5s)->send(MessageType::text, "x");
  ASSERT_TRUE(client->wait_count(Event::message, 1));
  ASSERT_FALSE(engine.stop());
  collect();
  EXPECT_TRUE(spans.empty());
}

// The message counters are kept per counting thread: engines on runtimes whose
// threads come and go, and reader slots on several threads, all add to one total,
// and what a thread counted stays counted after it ended.
TEST_F(Otel, MessageCountsOfEveryThreadAddUpAndOutliveTheirThreads) {
  constexpr int kEngines = 3, kMessages = 50;
  for (int round = 0; round < kEngines; ++round) {
    auto recorder = std::make_shared<Recorder>();
    auto runtime = Runtime::create({1, 3});  // its threads end with the round
    EngineOptions o = options();
    o.reader_slots = 3;
    {
      Engine engine(o, recorder, server->connector(), runtime);
      ASSERT_FALSE(engine.start());
      auto peer = server->accept(5s);
      for (int i = 0; i < kMessages; ++i) peer->send(MessageType::binary, "1234");
      ASSERT_TRUE(recorder->wait_count(Event::message, kMessages));
      ASSERT_FALSE(engine.send_text("ab"));
      ASSERT_FALSE(engine.stop());
    }
    runtime.reset();
  }
  collect();
  EXPECT_EQ(sum("wscengine.messages.received"), kEngines * kMessages);
  EXPECT_EQ(sum("wscengine.messages.received", "wscengine.message.type", "binary"), kEngines * kMessages);
  EXPECT_EQ(sum("wscengine.bytes.received"), kEngines * kMessages * 4);
  EXPECT_EQ(sum("wscengine.messages.sent"), kEngines);
  EXPECT_EQ(sum("wscengine.bytes.sent"), kEngines * 2);
}
