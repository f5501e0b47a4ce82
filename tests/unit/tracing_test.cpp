// Tracing through the core hook: span names, parent links, attributes and the trace
// context handed to callbacks (FakeTracer; the OpenTelemetry tracer is issue 3).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <wscengine/memory.hpp>
#include <wscengine/wscengine.hpp>

#include <condition_variable>
#include <set>

#include "support/fake_metrics.hpp"
#include "support/fake_tracer.hpp"
#include "support/recorder.hpp"
#include "support/text.hpp"

using namespace wscengine;
using namespace wscengine::test;

namespace {

class Tracing : public ::testing::Test {
 protected:
  std::shared_ptr<memory::Server> server = memory::Server::create();
  std::shared_ptr<FakeTracer> tracer = std::make_shared<FakeTracer>();
  std::shared_ptr<Recorder> client = std::make_shared<Recorder>();
  std::mutex contexts_mutex;
  std::vector<std::uint64_t> message_contexts;  // span ids seen inside on_message
  // Most tests read one trace end to end; PerMessage* tests use the default.
  TraceGrouping grouping = TraceGrouping::per_start;

  // Keeps the span id each on_message sees in message_contexts.
  void record_message_contexts() {
    client->on_message_hook = [&](Context& ctx, const Message&) {
      std::lock_guard lock(contexts_mutex);
      message_contexts.push_back(fake_span_id(ctx.trace_context()));
    };
  }
  // An engine traced per message and measured, tracing `ratio` of its messages.
  std::unique_ptr<Engine> make_sampled(double ratio, const std::shared_ptr<FakeMetrics>& metrics) {
    EngineOptions o;
    o.url = "ws://sampled.test/";
    o.telemetry.tracer = tracer;
    o.telemetry.metrics = metrics;
    o.telemetry.message_sample_ratio = ratio;
    return std::make_unique<Engine>(o, client, server->connector());
  }
  std::unique_ptr<Engine> make() {
    record_message_contexts();
    EngineOptions o;
    o.url = "ws://user-free.test/feed?token=secret";
    o.telemetry.tracer = tracer;
    o.telemetry.grouping = grouping;
    o.backoff.initial_delay = 1ms;
    return std::make_unique<Engine>(o, client, server->connector());
  }
  SpanRecord one(const std::string& name) {
    auto spans = tracer->named(name);
    EXPECT_EQ(spans.size(), 1u) << name;
    return spans.empty() ? SpanRecord{} : spans[0];
  }
};

}  // namespace

TEST_F(Tracing, ASessionIsOneTreeAndCallbacksSeeTheirSpan) {
  auto engine = make();
  ASSERT_FALSE(engine->start());
  auto peer = server->accept(5s);
  peer->send(MessageType::text, "hello");
  peer->send(MessageType::binary, "xyz");
  ASSERT_TRUE(client->wait_count(Event::message, 2));
  ASSERT_FALSE(engine->stop());
  client->mark_stopped();

  auto start = one("wscengine.start"), open = one("wscengine.open"), on_open = one("wscengine.on_open"),
       run = one("wscengine.run"), shutdown = one("wscengine.shutdown"), on_close = one("wscengine.on_close");
  EXPECT_EQ(start.parent, 0u);
  EXPECT_EQ(open.parent, start.id);
  EXPECT_EQ(on_open.parent, open.id);
  EXPECT_EQ(run.parent, open.id);
  EXPECT_EQ(shutdown.parent, run.id);
  EXPECT_EQ(on_close.parent, shutdown.id);
  EXPECT_EQ(open.attributes["wscengine.url"], "ws://user-free.test:80/feed") << "no query secrets in traces";
  auto messages = tracer->named("wscengine.on_message");
  auto reads = tracer->named("wscengine.read");
  ASSERT_EQ(messages.size(), 2u);
  ASSERT_EQ(reads.size(), 2u) << "a read span per message, none for reads that found nothing";
  for (std::size_t i = 0; i < 2; ++i) {
    // socket → user code: run → read → on_message
    EXPECT_EQ(reads[i].parent, run.id);
    EXPECT_TRUE(reads[i].backdated) << "a read span starts when the read began";
    EXPECT_EQ(messages[i].parent, reads[i].id);
    EXPECT_EQ(messages[i].attributes["wscengine.reader_slot"], "0");
    EXPECT_EQ(messages[i].attributes["wscengine.message.sequence"], std::to_string(i));
    EXPECT_EQ(messages[i].attributes["wscengine.session_id"], "1");
  }
  EXPECT_EQ(messages[0].attributes["wscengine.message.type"], "text");
  EXPECT_EQ(messages[1].attributes["wscengine.message.length"], "3");
  EXPECT_EQ(reads[1].attributes["wscengine.message.length"], "3");
  auto dial = one("wscengine.dial");
  EXPECT_EQ(dial.parent, open.id);
  EXPECT_EQ(dial.attributes["wscengine.http.status"], "101");
  auto close = one("wscengine.close");
  EXPECT_EQ(close.parent, shutdown.id);
  EXPECT_EQ(close.attributes["wscengine.close.sent_code"], "1000");
  EXPECT_EQ(shutdown.events, (std::vector<std::string>{"engine stop"}));
  {
    std::lock_guard lock(contexts_mutex);
    EXPECT_EQ(message_contexts, (std::vector<std::uint64_t>{messages[0].id, messages[1].id}));
  }
  EXPECT_EQ(one("wscengine.stop").parent, run.id);
  for (auto& s : tracer->spans()) EXPECT_TRUE(s.ended) << s.name << " not ended";
  EXPECT_THAT(client->violations(), ::testing::IsEmpty());
}

TEST_F(Tracing, AReconnectHangsOffTheSessionItReplaces) {
  auto engine = make();
  ASSERT_FALSE(engine->start());
  server->accept(5s)->drop();
  ASSERT_TRUE(client->wait_count(Event::open, 2));
  ASSERT_FALSE(engine->stop());
  auto runs = tracer->named("wscengine.run");
  ASSERT_EQ(runs.size(), 2u);
  auto restart = one("wscengine.restart");
  EXPECT_EQ(restart.parent, runs[0].id);
  EXPECT_EQ(runs[1].parent, restart.id);
  auto shutdowns = tracer->named("wscengine.shutdown");
  ASSERT_EQ(shutdowns.size(), 2u);
  EXPECT_EQ(shutdowns[0].attributes["wscengine.close.code"], "1006");
  EXPECT_EQ(shutdowns[0].attributes["wscengine.initiator"], "peer");
  EXPECT_EQ(shutdowns[0].events, (std::vector<std::string>{"connection closed"}));
}

TEST_F(Tracing, RestartErrorsAndReadErrorsAreRecorded) {
  auto engine = make();
  ASSERT_FALSE(engine->start());
  auto peer = server->accept(5s);
  peer->inject_read_error(Error(errc::io_error, "transient"));
  ASSERT_TRUE(client->wait_count(Event::read_error, 1));
  server->fail_next_dials(Error::http(503, "busy"), 2);
  peer->drop();
  ASSERT_TRUE(client->wait_count(Event::open, 2));
  ASSERT_FALSE(engine->stop());
  auto read_error = one("wscengine.on_read_error");
  EXPECT_NE(read_error.error.find("transient"), std::string::npos);
  auto restart_errors = tracer->named("wscengine.on_restart_error");
  ASSERT_EQ(restart_errors.size(), 2u);
  EXPECT_EQ(restart_errors[1].attributes["wscengine.retry_count"], "2");
  EXPECT_NE(restart_errors[0].error.find("503"), std::string::npos);
  auto restarts = tracer->named("wscengine.restart");
  ASSERT_EQ(restarts.size(), 3u);
  EXPECT_NE(restarts[0].error.find("503"), std::string::npos);
  EXPECT_EQ(restart_errors[0].parent, restarts[0].id);
}

TEST_F(Tracing, WithoutATracerCallbacksSeeNoTraceContext) {
  EngineOptions o;
  o.url = "ws://x.test/";
  bool valid = true;
  client->on_open_hook = [&](Context& ctx, const HandshakeResponse&, bool) {
    valid = ctx.trace_context().valid();
    return Error{};
  };
  Engine engine(o, client, server->connector());
  ASSERT_FALSE(engine.start());
  EXPECT_FALSE(valid);
  ASSERT_FALSE(engine.stop());
}

TEST_F(Tracing, CallbacksAndEngineWritesCarryTheCurrentTraceContext) {
  std::uint64_t current_in_on_open = 0, on_open_span = 0;
  client->on_open_hook = [&](Context& ctx, const HandshakeResponse&, bool) {
    current_in_on_open = fake_span_id(current_trace_context());
    on_open_span = fake_span_id(ctx.trace_context());
    return ctx.connection().send_text("login");  // a write inside OnOpen
  };
  auto engine = make();
  ASSERT_FALSE(engine->start());
  auto peer = server->accept(5s);
  ASSERT_FALSE(
      engine->send(MessageType::binary, "from main"));  // per_start: under the run span  // a write from another thread
  EXPECT_FALSE(current_trace_context().valid()) << "no trace context outside callbacks";
  ASSERT_FALSE(engine->stop());
  EXPECT_NE(on_open_span, 0u);
  EXPECT_EQ(current_in_on_open, on_open_span);
  auto writes = tracer->named("wscengine.write");
  ASSERT_EQ(writes.size(), 2u);
  EXPECT_EQ(writes[0].parent, on_open_span);
  EXPECT_EQ(writes[0].attributes["wscengine.message.length"], "5");
  EXPECT_EQ(writes[1].parent, one("wscengine.run").id) << "Engine::send writes under the session's run span";
  EXPECT_EQ(writes[1].attributes["wscengine.message.type"], "binary");
}

TEST_F(Tracing, AnInvalidCloseCodeIsAnOnCloseErrorSpanAndExitIsAnEvent) {
  client->on_close_hook = [](Context& ctx, const std::optional<CloseFrame>&) {
    ctx.exit();
    return std::optional<CloseFrame>(CloseFrame{1005, "reserved"});  // may not be sent
  };
  auto engine = make();
  ASSERT_FALSE(engine->start());
  auto peer = server->accept(5s);
  peer->inject_read_error(Error(errc::io_error, "x"));  // keep the session; then ask it to end
  ASSERT_TRUE(client->wait_count(Event::read_error, 1));
  engine->restart();
  ASSERT_FALSE(engine->wait_stopped(10s));
  auto close_error = one("wscengine.on_close_error");
  auto shutdown = one("wscengine.shutdown");
  EXPECT_EQ(close_error.parent, shutdown.id);
  EXPECT_NE(close_error.error.find("1005"), std::string::npos);
  EXPECT_EQ(shutdown.attributes["wscengine.close.sent_code"], "1001");
  EXPECT_EQ(shutdown.events, (std::vector<std::string>{"engine exit"}));
}

TEST_F(Tracing, ReaderSlotsAreDistinctWhileOnMessageRunsConcurrently) {
  std::mutex m;
  std::condition_variable cv;
  int inside = 0;
  client->on_message_hook = [&](Context&, const Message&) {
    std::unique_lock lock(m);
    ++inside;
    cv.notify_all();
    cv.wait_for(lock, 5s, [&] { return inside >= 3; });  // hold until three run at once
  };
  EngineOptions o;
  o.url = "ws://slots.test/";
  o.reader_slots = 3;
  o.telemetry.tracer = tracer;
  Engine engine(o, client, server->connector());
  ASSERT_FALSE(engine.start());
  auto peer = server->accept(5s);
  for (int i = 0; i < 3; ++i) peer->send(MessageType::text, "m");
  ASSERT_TRUE(client->wait_count(Event::message, 3));
  ASSERT_FALSE(engine.stop());
  std::set<std::string> slots;
  for (auto& s : tracer->named("wscengine.on_message")) slots.insert(s.attributes["wscengine.reader_slot"]);
  EXPECT_EQ(slots, (std::set<std::string>{"0", "1", "2"}));
}

TEST_F(Tracing, TraceparentIsSentWithTheDialWhenAskedFor) {
  EngineOptions o;
  o.url = "ws://tp.test/";
  o.telemetry.tracer = tracer;
  o.telemetry.inject_traceparent = true;
  Engine engine(o, client, server->connector());
  ASSERT_FALSE(engine.start());
  ASSERT_FALSE(engine.stop());
  auto requests = server->dial_requests();
  ASSERT_EQ(requests.size(), 1u);
  std::string sent;
  for (auto& h : requests[0].headers)
    if (h.name == "traceparent") sent = h.value;
  EXPECT_EQ(sent, traceparent(fake_trace_context(one("wscengine.open").id)));
  ASSERT_EQ(one("wscengine.open").id, 2u);  // after wscengine.start
  EXPECT_EQ(sent, "00-00000000000000000000000000000001-0000000000000002-01");
}

TEST(Metrics, ASessionWithAReconnectIsCounted) {
  auto server = memory::Server::create();
  auto metrics = std::make_shared<FakeMetrics>();
  auto client = std::make_shared<Recorder>();
  client->on_open_hook = [](Context& ctx, const HandshakeResponse&, bool) {
    return ctx.connection().send_text("subscribe");
  };
  EngineOptions o;
  o.url = "ws://metrics.test/";
  o.backoff.initial_delay = 1ms;
  o.telemetry.metrics = metrics;
  Engine engine(o, client, server->connector());
  ASSERT_FALSE(engine.start());
  auto peer = server->accept(5s);
  peer->send(MessageType::text, "12345");
  peer->send(MessageType::binary, "123");
  peer->inject_read_error(Error(errc::io_error, "x"));
  ASSERT_TRUE(client->wait_count(Event::read_error, 1));
  server->fail_next_dials(Error(errc::connection_refused, "down"), 1);
  peer->drop();
  ASSERT_TRUE(client->wait_count(Event::open, 2));
  ASSERT_TRUE(wait_state(engine, EngineState::running));  // the state moves once OnOpen has returned
  EXPECT_EQ(metrics->in_state(ConnectionState::open), 1);
  ASSERT_FALSE(engine.stop());
  EXPECT_EQ(metrics->count("received"), 2);
  EXPECT_EQ(metrics->bytes("received"), 8);
  EXPECT_EQ(metrics->count("sent"), 2);
  EXPECT_EQ(metrics->bytes("sent"), 18);
  EXPECT_EQ(metrics->count("on_message"), 2);
  EXPECT_EQ(metrics->count("read_error"), 1);
  EXPECT_EQ(metrics->count("reconnect_attempt"), 2) << "one refused, one that opened";
  EXPECT_EQ(metrics->count("reconnect_success"), 1);
  EXPECT_EQ(metrics->count("dial_ok"), 2);
  EXPECT_EQ(metrics->count("dial_failed"), 1);
  for (auto state : {ConnectionState::dialing, ConnectionState::open, ConnectionState::closing})
    EXPECT_EQ(metrics->in_state(state), 0) << "every state left after stop";
  EXPECT_EQ(metrics->state_errors(), 0);
}

TEST_F(Tracing, PerMessageGroupingMakesEachMessageAndReconnectARootLinkedToItsSession) {
  grouping = TraceGrouping::per_message;  // the default
  EXPECT_EQ(TelemetryOptions{}.grouping, TraceGrouping::per_message);
  auto engine = make();
  ASSERT_FALSE(engine->start());
  auto peer = server->accept(5s);
  peer->send(MessageType::text, "one");
  ASSERT_TRUE(client->wait_count(Event::message, 1));
  ASSERT_FALSE(engine->send(MessageType::text, "out"));
  peer->drop();
  ASSERT_TRUE(client->wait_count(Event::open, 2));
  server->accept(5s)->send(MessageType::text, "two");
  ASSERT_TRUE(client->wait_count(Event::message, 2));
  ASSERT_FALSE(engine->stop());

  auto runs = tracer->named("wscengine.run");
  ASSERT_EQ(runs.size(), 2u);
  auto open = one("wscengine.open"), restart = one("wscengine.restart");
  EXPECT_EQ(open.parent, one("wscengine.start").id) << "the first session still belongs to its start";
  EXPECT_EQ(runs[0].parent, open.id);
  EXPECT_EQ(restart.parent, 0u) << "a reconnect starts a trace of its own";
  EXPECT_EQ(restart.link, runs[0].id) << "linked to the session it replaces";
  EXPECT_EQ(runs[1].parent, restart.id);
  auto reads = tracer->named("wscengine.read"), messages = tracer->named("wscengine.on_message");
  ASSERT_EQ(reads.size(), 3u);  // two messages and the drop
  ASSERT_EQ(messages.size(), 2u);
  EXPECT_EQ(reads[0].parent, 0u);
  EXPECT_EQ(reads[0].link, runs[0].id);
  EXPECT_EQ(messages[0].parent, reads[0].id);
  EXPECT_EQ(messages[1].parent, reads[2].id);
  EXPECT_EQ(reads[2].link, runs[1].id);
  auto writes = tracer->named("wscengine.write");
  ASSERT_EQ(writes.size(), 1u);
  EXPECT_EQ(writes[0].parent, 0u);
  EXPECT_EQ(writes[0].link, runs[0].id) << "Engine::send: a root linked to the session";
  EXPECT_EQ(tracer->named("wscengine.shutdown").at(0).parent, runs[0].id) << "a session's own steps stay in its trace";
}

TEST_F(Tracing, PerMessageWithoutAdapterSpansLinksOnMessageToItsSession) {
  grouping = TraceGrouping::per_message;
  EngineOptions o;
  o.url = "ws://x.test/";
  o.telemetry.tracer = tracer;
  o.telemetry.trace_connection = false;
  Engine engine(o, client, server->connector());
  ASSERT_FALSE(engine.start());
  server->accept(5s)->send(MessageType::text, "m");
  ASSERT_TRUE(client->wait_count(Event::message, 1));
  ASSERT_FALSE(engine.stop());
  EXPECT_TRUE(tracer->named("wscengine.read").empty());
  auto message = one("wscengine.on_message");
  EXPECT_EQ(message.parent, 0u);
  EXPECT_EQ(message.link, one("wscengine.run").id);
}

TEST_F(Tracing, PingsAreSpansAndAMissingPongIsAnError) {
  Error first;
  SessionConnection kept;
  client->on_open_hook = [&](Context& ctx, const HandshakeResponse&, bool) {
    first = ctx.connection().ping("alive?", 2s);
    kept = ctx.connection();
    return Error{};
  };
  auto engine = make();
  ASSERT_FALSE(engine->start());
  auto peer = server->accept(5s);
  peer->answer_pings(false);  // a dead peer from now on
  Error second = kept.ping("still there?", 100ms);
  ASSERT_FALSE(engine->stop());
  EXPECT_FALSE(first) << first.message();
  ASSERT_TRUE(second);
  auto pings = tracer->named("wscengine.ping");
  ASSERT_EQ(pings.size(), 2u);
  EXPECT_EQ(pings[0].parent, one("wscengine.on_open").id);
  EXPECT_TRUE(pings[0].error.empty()) << pings[0].error;
  EXPECT_EQ(pings[1].parent, 0u) << "outside any callback: a root span";
  EXPECT_EQ(pings[1].error, second.message()) << "a failed ping marks its span with the error";
}

// TelemetryOptions::message_sample_ratio = 0: no message is traced or timed, while
// the session's own steps and errors are, and the counters count every message.
TEST_F(Tracing, MessageSampleRatioZeroTracesNoMessageButEverySessionStep) {
  grouping = TraceGrouping::per_message;
  auto metrics = std::make_shared<FakeMetrics>();
  record_message_contexts();
  auto sampled = make_sampled(0, metrics);
  Engine& engine = *sampled;
  ASSERT_FALSE(engine.start());
  auto peer = server->accept(5s);
  constexpr int kMessages = 200, kSends = 50;
  for (int i = 0; i < kMessages; ++i) peer->send(MessageType::text, cat("m", i));
  ASSERT_TRUE(client->wait_count(Event::message, kMessages));
  for (int i = 0; i < kSends; ++i) ASSERT_FALSE(engine.send(MessageType::binary, "out"));
  peer->inject_read_error(Error(errc::io_error, "injected"));
  ASSERT_TRUE(client->wait_count(Event::read_error, 1));
  ASSERT_FALSE(engine.stop());  // after the queued sends went out

  EXPECT_TRUE(tracer->named("wscengine.on_message").empty());
  EXPECT_TRUE(tracer->named("wscengine.write").empty());
  EXPECT_TRUE(tracer->named("wscengine.read").empty()) << "unsampled reads skip the decorator, a failed one too";
  for (const char* step : {"wscengine.start", "wscengine.open", "wscengine.dial", "wscengine.run", "wscengine.on_open",
                           "wscengine.on_read_error", "wscengine.shutdown"})
    EXPECT_EQ(tracer->named(step).size(), 1u) << step;
  {
    std::lock_guard lock(contexts_mutex);
    ASSERT_EQ(message_contexts.size(), static_cast<std::size_t>(kMessages));
    for (auto id : message_contexts) EXPECT_EQ(id, 0u) << "an unsampled on_message has no trace context";
  }
  EXPECT_EQ(metrics->count("received"), kMessages);
  EXPECT_EQ(metrics->count("sent"), kSends);
  EXPECT_EQ(metrics->count("on_message"), 0) << "not timed either";
  EXPECT_EQ(metrics->count("read_error"), 1);
}

// A ratio in between traces about that share of messages, each one whole: its read
// span with its on_message span under it, and its duration measured.
TEST_F(Tracing, MessageSampleRatioTracesThatShareOfMessagesWhole) {
  grouping = TraceGrouping::per_message;
  auto metrics = std::make_shared<FakeMetrics>();
  auto sampled = make_sampled(0.25, metrics);
  Engine& engine = *sampled;
  ASSERT_FALSE(engine.start());
  auto peer = server->accept(5s);
  constexpr int kMessages = 2000;
  for (int i = 0; i < kMessages; ++i) peer->send(MessageType::binary, "x");
  ASSERT_TRUE(client->wait_count(Event::message, kMessages));
  ASSERT_FALSE(engine.stop());

  auto messages = tracer->named("wscengine.on_message");
  // Binomial(2000, 0.25): mean 500, standard deviation 19.4; the bounds are 7.7 of them.
  EXPECT_GE(messages.size(), 350u);
  EXPECT_LE(messages.size(), 650u);
  std::set<std::uint64_t> reads;
  for (const auto& read : tracer->named("wscengine.read"))
    if (read.error.empty() && read.attributes.count("wscengine.message.length")) reads.insert(read.id);
  EXPECT_EQ(reads.size(), messages.size()) << "a read span for each traced message, none for the others";
  for (const auto& m : messages) EXPECT_TRUE(reads.count(m.parent)) << "on_message under its own read";
  EXPECT_EQ(metrics->count("on_message"), static_cast<long>(messages.size())) << "the traced ones are timed";
  EXPECT_EQ(metrics->count("received"), kMessages) << "and every one is counted";
}

// Sampling draws the gaps between sampled messages, per thread. Two engines with other
// ratios whose messages alternate on the one callback thread each keep their own share:
// a gap drawn for one ratio is never spent on the other's messages.
TEST(MessageSampling, EnginesWithOtherRatiosOnOneThreadKeepTheirShares) {
  auto runtime = Runtime::create({1, 1});
  auto tracer = std::make_shared<FakeTracer>();
  struct Side {
    double ratio;
    std::shared_ptr<memory::Server> server = memory::Server::create();
    std::shared_ptr<Recorder> client = std::make_shared<Recorder>();
    std::shared_ptr<FakeMetrics> metrics = std::make_shared<FakeMetrics>();
    std::unique_ptr<Engine> engine{};
    std::shared_ptr<memory::Peer> peer{};
  };
  Side sides[2] = {{0.5}, {0.02}};
  for (auto& side : sides) {
    EngineOptions o;
    o.url = "ws://sampled.test/";
    o.telemetry.tracer = tracer;
    o.telemetry.metrics = side.metrics;
    o.telemetry.message_sample_ratio = side.ratio;
    side.engine = std::make_unique<Engine>(o, side.client, side.server->connector(), runtime);
    ASSERT_FALSE(side.engine->start());
    side.peer = side.server->accept(5s);
    ASSERT_TRUE(side.peer);
  }
  constexpr int kMessages = 3000;
  for (int i = 0; i < kMessages; ++i) {
    for (auto& side : sides) {  // one message of each in turn, on the runtime's one callback thread
      side.peer->send(MessageType::binary, "x");
      ASSERT_TRUE(side.client->wait_count(Event::message, static_cast<std::size_t>(i) + 1)) << i;
    }
  }
  for (auto& side : sides) ASSERT_FALSE(side.engine->stop());
  // Binomial(3000, 0.5): mean 1500, standard deviation 27.4; Binomial(3000, 0.02): mean 60,
  // standard deviation 7.7. The bounds are about 7 of them.
  EXPECT_GE(sides[0].metrics->count("on_message"), 1300);
  EXPECT_LE(sides[0].metrics->count("on_message"), 1700);
  EXPECT_GE(sides[1].metrics->count("on_message"), 10);
  EXPECT_LE(sides[1].metrics->count("on_message"), 115);
  for (auto& side : sides) EXPECT_EQ(side.metrics->count("received"), kMessages) << "every one counted";
}

namespace {

// A connection whose asynchronous operations complete inline, inside the call, as a
// real adapter's do when the connection had already ended (websocketpp's async_close
// after the peer's close crossed ours).
class InlineConnection final : public Connection {
 public:
  void async_dial(DialRequest, DialHandler done) override { done(HandshakeResponse{}); }
  Error try_read(InboundMessage&) override { return Error(errc::would_block, "nothing"); }
  void async_wait_readable(WaitHandler done) override { done({}); }
  void cancel_wait() override {}
  Error read(InboundMessage&, std::chrono::milliseconds) override { return Error(errc::closed, "closed"); }
  Error write(MessageType, std::string_view) override { return {}; }
  Error ping(std::string_view, std::chrono::milliseconds) override { return {}; }
  Error close(const CloseFrame&, std::chrono::milliseconds) override { return {}; }
  void abort() noexcept override {}
  bool is_open() const noexcept override { return true; }
  Underlying underlying() noexcept override { return {}; }
};

class InlineConnector final : public Connector {
 public:
  std::unique_ptr<Connection> make_connection(Runtime&) override { return std::make_unique<InlineConnection>(); }
  std::string_view name() const noexcept override { return "inline"; }
};

}  // namespace

// The engine goes on (and may report the stop) from the completion handler, so the
// decorator's span must have ended by then even when the adapter completes inline.
TEST(TracingDecorator, AnOperationThatCompletesInlineEndsItsSpanBeforeItsHandlerReturns) {
  auto tracer = std::make_shared<FakeTracer>();
  auto runtime = Runtime::create();
  auto connection = instrument(std::make_shared<InlineConnector>(), tracer, nullptr)->make_connection(*runtime);
  auto ended_when_done = [&](const char* name) {
    auto spans = tracer->named(name);
    return spans.size() == 1 && spans[0].ended;
  };
  std::vector<std::string> not_ended;
  connection->async_write(MessageType::text, "x", [&](Error e) {
    EXPECT_FALSE(e);
    if (!ended_when_done("wscengine.write")) not_ended.emplace_back("wscengine.write");
  });
  connection->async_ping("p", 1s, [&](Error e) {
    EXPECT_FALSE(e);
    if (!ended_when_done("wscengine.ping")) not_ended.emplace_back("wscengine.ping");
  });
  connection->async_close({close_code::normal, {}}, 1s, [&](Error e) {
    EXPECT_FALSE(e);
    if (!ended_when_done("wscengine.close")) not_ended.emplace_back("wscengine.close");
  });
  EXPECT_THAT(not_ended, ::testing::IsEmpty());
  EXPECT_EQ(tracer->spans().size(), 3u);
}
