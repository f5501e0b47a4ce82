// Tracing through the core hook: span names, parent links, attributes and the trace
// context handed to callbacks (FakeTracer; the OpenTelemetry tracer is issue 3).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <wscengine/memory.hpp>
#include <wscengine/wscengine.hpp>

#include "support/fake_tracer.hpp"
#include "support/recorder.hpp"

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

  std::unique_ptr<Engine> make() {
    client->on_message_hook = [&](Context& ctx, const Message&) {
      std::lock_guard lock(contexts_mutex);
      message_contexts.push_back(fake_span_id(ctx.trace_context()));
    };
    EngineOptions o;
    o.url = "ws://user-free.test/feed?token=secret";
    o.tracer = tracer;
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
  ASSERT_EQ(messages.size(), 2u);
  for (std::size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(messages[i].parent, run.id);
    EXPECT_EQ(messages[i].attributes["wscengine.message.sequence"], std::to_string(i));
    EXPECT_EQ(messages[i].attributes["wscengine.session_id"], "1");
  }
  EXPECT_EQ(messages[0].attributes["wscengine.message.type"], "text");
  EXPECT_EQ(messages[1].attributes["wscengine.message.length"], "3");
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
