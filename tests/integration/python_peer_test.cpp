// The engine on every real adapter against Python `websockets`, a server no one here wrote.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <wscengine/wscengine.hpp>

#include "support/fake_metrics.hpp"
#include "support/fake_tracer.hpp"
#include "support/process.hpp"
#include "support/real_adapters.hpp"
#include "support/recorder.hpp"
#include "support/test_pki.hpp"
#include "support/text.hpp"

using namespace wscengine;
using namespace wscengine::test;
using ::testing::IsEmpty;

namespace {

class PythonPeer : public ::testing::TestWithParam<RealAdapter> {
 protected:
  void SetUp() override {
    server_ = std::make_unique<ChildProcess>(std::vector<std::string>{"/usr/bin/python3", WSCENGINE_PY_SERVER});
    base_ = server_->first_line(20s);
    ASSERT_FALSE(base_.empty()) << "the Python websockets server did not start (python3-websockets installed?)";
  }
  void TearDown() override { stop_and_check(engine, *client); }
  void make(const std::string& path, bool reconnect = true) {
    EngineOptions o;
    o.url = base_ + path;
    o.auto_reconnect = reconnect;
    o.backoff.initial_delay = 10ms;
    o.subprotocols = {"chat.v1"};
    engine = std::make_unique<Engine>(o, client, GetParam().make());
  }

  std::unique_ptr<ChildProcess> server_;
  std::string base_;
  std::shared_ptr<Recorder> client = std::make_shared<Recorder>();
  std::unique_ptr<Engine> engine;
};

}  // namespace

TEST_P(PythonPeer, EchoBothTypes) {
  std::string subprotocol;
  client->on_open_hook = [&](Context&, const HandshakeResponse& r, bool) {
    subprotocol = r.subprotocol;
    return Error{};
  };
  make("/echo");
  ASSERT_FALSE(engine->start());
  EXPECT_EQ(subprotocol, "chat.v1");
  ASSERT_FALSE(engine->send_text("héllo"));
  ASSERT_FALSE(engine->send_binary(std::string("\x00\x01\x02", 3)));
  ASSERT_FALSE(engine->send_text(std::string(200000, 'z')));
  ASSERT_TRUE(client->wait_count(Event::message, 3));
  auto m = client->events_of(Event::message);
  EXPECT_EQ(m[0].payload, "héllo");
  EXPECT_EQ(m[1].payload, std::string("\x00\x01\x02", 3));
  EXPECT_EQ(m[2].payload.size(), 200000u);
}

TEST_P(PythonPeer, CloseCodeReachesOnClose) {
  make("/close/4002", false);
  ASSERT_FALSE(engine->start());
  ASSERT_FALSE(engine->wait_stopped(10s));
  auto close = client->events_of(Event::close);
  ASSERT_EQ(close.size(), 1u);
  ASSERT_TRUE(close[0].received);
  EXPECT_EQ(*close[0].received, (CloseFrame{4002, "bye from python"}));
  EXPECT_EQ(client->events_of(Event::message)[0].payload, "hello");
}

TEST_P(PythonPeer, DropIs1006AndReconnects) {
  make("/drop");
  ASSERT_FALSE(engine->start());
  ASSERT_TRUE(client->wait_count(Event::open, 2));
  auto close = client->events_of(Event::close);
  ASSERT_GE(close.size(), 1u);
  ASSERT_TRUE(close[0].received);
  EXPECT_EQ(close[0].received->code, close_code::abnormal);
}

TEST_P(PythonPeer, ReconnectAfterTheServerRestarts) {
  make("/echo");
  ASSERT_FALSE(engine->start());
  server_->kill();  // the Python server dies: drop, then refused reconnects
  ASSERT_TRUE(client->wait_count(Event::close, 1));
  // The first attempt may still reach the dying process's backlog (then it is reset);
  // once the process is gone every attempt is refused.
  ASSERT_TRUE(client->wait_for([](const std::vector<Event>& es) {
    for (const auto& e : es)
      if (e.kind == Event::restart_error && e.error.is(errc::connection_refused)) return true;
    return false;
  }));
}

TEST_P(PythonPeer, StopClosesNormally) {
  make("/echo");
  ASSERT_FALSE(engine->start());
  ASSERT_FALSE(engine->stop());
  client->mark_stopped();
  EXPECT_EQ(client->count(Event::close_error), 0u);
  auto close = client->events_of(Event::close);
  ASSERT_EQ(close.size(), 1u);
  EXPECT_EQ(close[0].initiator, CloseInitiator::client);
}

TEST_P(PythonPeer, TheServerSeesTraceparentAndEveryStepIsTracedOverARealSocket) {
  auto tracer = std::make_shared<FakeTracer>();
  EngineOptions o;
  o.url = base_ + "/header/traceparent";
  o.telemetry.tracer = tracer;
  o.telemetry.inject_traceparent = true;
  engine = std::make_unique<Engine>(o, client, GetParam().make());
  ASSERT_FALSE(engine->start());
  ASSERT_TRUE(client->wait_count(Event::message, 1));
  ASSERT_FALSE(engine->send_text("echo me"));
  ASSERT_TRUE(client->wait_count(Event::message, 2));
  ASSERT_FALSE(engine->stop());

  auto named = [&](const char* name) { return tracer->named(name); };
  ASSERT_EQ(named("wscengine.open").size(), 1u);
  auto open = named("wscengine.open")[0];
  EXPECT_EQ(client->events_of(Event::message)[0].payload, traceparent(fake_trace_context(open.id)))
      << "the server received the open span's context";
  auto dials = named("wscengine.dial");
  ASSERT_EQ(dials.size(), 1u);
  EXPECT_EQ(dials[0].parent, open.id);
  EXPECT_EQ(dials[0].attributes["wscengine.http.status"], "101");
  auto run = named("wscengine.run").at(0);
  auto reads = named("wscengine.read"), messages = named("wscengine.on_message");
  ASSERT_EQ(reads.size(), 2u);
  ASSERT_EQ(messages.size(), 2u);
  for (std::size_t i = 0; i < 2; ++i) {  // per message (the default): roots linked to the session
    EXPECT_EQ(reads[i].parent, 0u);
    EXPECT_EQ(reads[i].link, run.id);
    EXPECT_EQ(messages[i].parent, reads[i].id);
  }
  EXPECT_EQ(reads[1].attributes["wscengine.message.length"], "7");
  auto writes = named("wscengine.write");
  ASSERT_EQ(writes.size(), 1u);
  EXPECT_EQ(writes[0].link, run.id);
  auto closes = named("wscengine.close");
  ASSERT_EQ(closes.size(), 1u);
  EXPECT_EQ(closes[0].parent, named("wscengine.shutdown").at(0).id);
  EXPECT_TRUE(closes[0].error.empty()) << closes[0].error;
  for (auto& s : tracer->spans()) EXPECT_TRUE(s.ended) << s.name;
}

// TelemetryOptions::message_sample_ratio over a real socket: with 0, the echoes and
// sends have no span and no timing, and every one is counted.
TEST_P(PythonPeer, UnsampledMessagesAreCountedButNotTracedOverARealSocket) {
  auto tracer = std::make_shared<FakeTracer>();
  auto metrics = std::make_shared<FakeMetrics>();
  EngineOptions o;
  o.url = base_ + "/echo";
  o.telemetry.tracer = tracer;
  o.telemetry.metrics = metrics;
  o.telemetry.message_sample_ratio = 0;
  engine = std::make_unique<Engine>(o, client, GetParam().make());
  ASSERT_FALSE(engine->start());
  constexpr int kMessages = 20;
  for (int i = 0; i < kMessages; ++i) ASSERT_FALSE(engine->send_text(cat("m", i)));
  ASSERT_TRUE(client->wait_count(Event::message, kMessages));
  ASSERT_FALSE(engine->stop());
  EXPECT_TRUE(tracer->named("wscengine.on_message").empty());
  EXPECT_TRUE(tracer->named("wscengine.write").empty());
  EXPECT_TRUE(tracer->named("wscengine.read").empty());
  EXPECT_EQ(tracer->named("wscengine.run").size(), 1u);
  EXPECT_EQ(tracer->named("wscengine.shutdown").size(), 1u);
  EXPECT_EQ(metrics->count("received"), kMessages);
  EXPECT_EQ(metrics->count("sent"), kMessages);
  EXPECT_EQ(metrics->count("on_message"), 0);
}

// Public-key pins against Python `websockets` over TLS, two dozen engines on one
// runtime: those pinned to the server's or its CA's key exchange messages; those
// pinned to an unrelated key are refused, once each (the restart loop does not retry
// a certificate that will not change), and never open.
TEST_P(PythonPeer, PinnedEnginesOnOneRuntimeOpenOrAreRefusedEachOnItsOwn) {
  TestPki pki = make_test_pki();
  ChildProcess secure({"/usr/bin/python3", WSCENGINE_PY_SERVER, "--tls", pki.server_chain, pki.server_key});
  std::string wss = secure.first_line(20s);
  ASSERT_EQ(wss.rfind("wss://", 0), 0u) << wss;
  auto runtime = Runtime::create({1, 2});
  constexpr int kEngines = 24;
  auto refused = [](int i) { return i % 3 == 2; };
  std::vector<std::shared_ptr<Recorder>> clients;
  std::vector<std::unique_ptr<Engine>> engines;
  for (int i = 0; i < kEngines; ++i) {
    EngineOptions o;
    o.url = wss + "/echo";
    o.tls.ca_file = pki.ca_file;
    o.tls.pinned_public_keys = {refused(i) ? pki.unrelated_pin : i % 3 == 0 ? pki.server_pin : pki.ca_pin};
    o.backoff.initial_delay = 10ms;
    clients.push_back(std::make_shared<Recorder>());
    engines.push_back(std::make_unique<Engine>(o, clients.back(), GetParam().make(), runtime));
    ASSERT_FALSE(engines.back()->start_background());
  }
  for (int i = 0; i < kEngines; ++i) {
    SCOPED_TRACE(i);
    if (refused(i)) {
      ASSERT_FALSE(engines[i]->wait_stopped(20s));
      ASSERT_EQ(clients[i]->count(Event::restart_error), 1u);
      Error e = clients[i]->events_of(Event::restart_error)[0].error;
      EXPECT_TRUE(e.is(errc::tls_verification_failed)) << e.message();
      EXPECT_THAT(e.message(), ::testing::HasSubstr(pki.server_pin));
      EXPECT_EQ(clients[i]->count(Event::open), 0u);
    } else {
      ASSERT_TRUE(clients[i]->wait_count(Event::open, 1));
      ASSERT_TRUE(wait_state(*engines[i], EngineState::running));
      ASSERT_FALSE(engines[i]->send_text(cat("pinned ", i)));
    }
  }
  for (int i = 0; i < kEngines; ++i) {
    if (refused(i)) continue;
    SCOPED_TRACE(i);
    ASSERT_TRUE(clients[i]->wait_count(Event::message, 1));
    EXPECT_EQ(clients[i]->events_of(Event::message)[0].payload, cat("pinned ", i));
  }
  for (int i = 0; i < kEngines; ++i) {
    EXPECT_FALSE(engines[i]->stop());
    clients[i]->mark_stopped();
    EXPECT_THAT(clients[i]->violations(), IsEmpty());
  }
}

INSTANTIATE_TEST_SUITE_P(Adapters, PythonPeer, ::testing::ValuesIn(real_adapters()), AdapterName());
