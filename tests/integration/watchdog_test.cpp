// The stale-data watchdog (EngineOptions::max_silence) over real sockets: a Python
// `websockets` server that answers pings but sends nothing, feeds slower and faster
// than the limit, the arming count, the pause lock, and many engines on one runtime.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include <wscengine/wscengine.hpp>

#include "support/fake_metrics.hpp"
#include "support/fake_tracer.hpp"
#include "support/process.hpp"
#include "support/real_engine_fixture.hpp"
#include "support/recorder.hpp"
#include "support/text.hpp"
#include "test_server.hpp"

using namespace wscengine;
using namespace wscengine::test;
using namespace std::chrono_literals;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using Clock = std::chrono::steady_clock;

namespace {

// A feed: `count` messages "tick <i>", `gap` apart, then a normal close (or, with
// `count` 0, nothing until the client goes).
void feed(tools::ServerSession& s, int count, std::chrono::milliseconds gap) {
  for (int i = 0; i < count; ++i) {
    if (s.send(MessageType::text, cat("tick ", i))) return;
    std::this_thread::sleep_for(gap);
  }
  s.close({close_code::normal, "done"});
}

class Watchdog : public RealEngineTest {};

}  // namespace

// Python `websockets` answers pings and sends nothing on /echo: the heartbeat keeps the
// connection alive, the watchdog restarts it, with errc::stale, and it reconnects.
TEST_P(Watchdog, ASilentPeerThatAnswersPingsIsRestartedAsStale) {
  ChildProcess python({"/usr/bin/python3", WSCENGINE_PY_SERVER});
  const std::string base = python.first_line(20s);
  ASSERT_FALSE(base.empty()) << "the Python websockets server did not start";
  auto o = options(base + "/echo");
  o.ping_interval = 50ms;
  o.pong_timeout = 1s;
  o.max_silence = 300ms;
  auto metrics = std::make_shared<FakeMetrics>();
  auto tracer = std::make_shared<FakeTracer>();
  o.telemetry.metrics = metrics;
  o.telemetry.tracer = tracer;
  make(o);
  const auto opened = Clock::now();
  ASSERT_FALSE(engine->start());
  ASSERT_TRUE(client->wait_count(Event::read_error, 1));
  const auto found = Clock::now() - opened;
  ASSERT_TRUE(client->wait_count(Event::open, 2)) << "the stale session was not followed by a new one";
  Error stale = client->events_of(Event::read_error)[0].error;
  EXPECT_TRUE(stale.is(errc::stale)) << stale.message();
  EXPECT_THAT(stale.message(), HasSubstr("max_silence 300 ms"));
  EXPECT_GE(found, 300ms);
  EXPECT_GE(metrics->count("read_error_stale"), 1) << "the restart is counted by its kind";
  auto traced = tracer->named("wscengine.on_read_error");
  ASSERT_FALSE(traced.empty());
  EXPECT_THAT(traced[0].error, HasSubstr("max_silence 300 ms")) << "and traced with its reason";
  auto closes = client->events_of(Event::close);
  ASSERT_GE(closes.size(), 1u);
  EXPECT_EQ(closes[0].initiator, CloseInitiator::client);
}

// A feed slower than the limit goes stale between two messages; one faster than it
// never does, and its normal close is the definite end.
TEST_P(Watchdog, AFeedSlowerThanTheLimitGoesStaleAFasterOneDoesNot) {
  server.on_session = [](tools::ServerSession& s) {
    feed(s, s.target() == "/slow" ? 3 : 40, s.target() == "/slow" ? 1500ms : 20ms);
  };
  server.start();
  auto o = options(server.url("/fast"));
  // 30 times the fast feed's gap: a thread the sanitizers slow on 2 shared cores
  // must not make the fast feed look stale.
  o.max_silence = 600ms;
  o.auto_reconnect = false;
  make(o);
  ASSERT_FALSE(engine->start());
  ASSERT_TRUE(client->wait_count(Event::close, 1));
  EXPECT_EQ(client->count(Event::message), 40u);
  EXPECT_EQ(client->count(Event::read_error), 0u) << client->events_of(Event::read_error)[0].error.message();
  ASSERT_FALSE(engine->wait_stopped(10s));
  stop_and_check(engine, *client);

  client = std::make_shared<Recorder>();
  o.url = server.url("/slow");
  make(o);
  ASSERT_FALSE(engine->start());
  ASSERT_TRUE(client->wait_count(Event::read_error, 1));
  EXPECT_TRUE(client->events_of(Event::read_error)[0].error.is(errc::stale));
  EXPECT_EQ(client->count(Event::message), 1u) << "stale in the first 1500 ms gap";
}

// max_silence_after: silence before the N-th message does not count; after it, it does.
TEST_P(Watchdog, TheWatchdogArmsAfterTheGivenNumberOfMessages) {
  server.on_session = [](tools::ServerSession& s) {
    s.send(MessageType::text, "one");
    s.send(MessageType::text, "two");
    std::this_thread::sleep_for(700ms);  // silent, but only two messages seen
    s.send(MessageType::text, "three");
    InboundMessage m;
    s.read(m, 20s);  // silent until the client goes
  };
  server.start();
  auto o = options(server.url("/"));
  o.max_silence = 200ms;
  o.max_silence_after = 3;
  o.auto_reconnect = false;
  make(o);
  ASSERT_FALSE(engine->start());
  ASSERT_TRUE(client->wait_count(Event::read_error, 1));
  std::vector<std::string> order;
  for (const auto& e : client->events())
    if (e.kind == Event::message || e.kind == Event::read_error)
      order.push_back(e.kind == Event::message ? e.payload : "stale");
  EXPECT_EQ(order, (std::vector<std::string>{"one", "two", "three", "stale"}));
  EXPECT_THAT(client->events_of(Event::read_error)[0].error.message(), HasSubstr("after 3 messages"));
}

// Holding the pause lock is the user's own silence: it does not count.
TEST_P(Watchdog, TimeUnderThePauseLockIsNotSilence) {
  server.on_session = [](tools::ServerSession& s) { feed(s, 60, 20ms); };
  server.start();
  auto o = options(server.url("/"));
  o.max_silence = 400ms;  // 20 times the feed's gap
  o.auto_reconnect = false;
  make(o);
  ASSERT_FALSE(engine->start());
  ASSERT_TRUE(client->wait_count(Event::message, 5));
  {
    auto paused = engine->pause();
    std::this_thread::sleep_for(1600ms);  // four times max_silence without a read
  }
  ASSERT_TRUE(client->wait_count(Event::close, 1));
  EXPECT_EQ(client->count(Event::message), 60u);
  EXPECT_EQ(client->count(Event::read_error), 0u);
}

// Two dozen engines on one runtime: those on a silent peer go stale and reconnect;
// those on live feeds get every message and no error.
TEST_P(Watchdog, ManyEnginesOnOneRuntimeOnlyTheSilentOnesGoStale) {
  server.on_session = [](tools::ServerSession& s) {
    if (s.target() == "/silent") {
      InboundMessage m;
      s.read(m, 20s);
      return;
    }
    feed(s, 50, 20ms);
  };
  server.start();
  auto runtime = Runtime::create({1, 2});
  constexpr int kEngines = 24;
  auto silent = [](int i) { return i % 3 == 0; };
  std::vector<std::shared_ptr<Recorder>> clients;
  std::vector<std::unique_ptr<Engine>> engines;
  for (int i = 0; i < kEngines; ++i) {
    auto o = options(server.url(silent(i) ? "/silent" : "/live"));
    o.max_silence = 1s;  // 50 times the live feeds' gap, with 24 connections on 2 cores
    o.auto_reconnect = silent(i);
    clients.push_back(std::make_shared<Recorder>());
    engines.push_back(std::make_unique<Engine>(o, clients.back(), GetParam().make(), runtime));
    ASSERT_FALSE(engines.back()->start_background());
  }
  for (int i = 0; i < kEngines; ++i) {
    SCOPED_TRACE(i);
    if (silent(i)) {
      ASSERT_TRUE(clients[i]->wait_count(Event::open, 2, 20s));
      EXPECT_TRUE(clients[i]->events_of(Event::read_error)[0].error.is(errc::stale));
    } else {
      ASSERT_TRUE(clients[i]->wait_count(Event::close, 1, 20s));
      EXPECT_EQ(clients[i]->count(Event::message), 50u);
      EXPECT_EQ(clients[i]->count(Event::read_error), 0u);
    }
  }
  for (int i = 0; i < kEngines; ++i) {
    EXPECT_FALSE(engines[i]->stop());
    clients[i]->mark_stopped();
    EXPECT_THAT(clients[i]->violations(), IsEmpty());
  }
}

INSTANTIATE_TEST_SUITE_P(Adapters, Watchdog, ::testing::ValuesIn(engine_variants()), AdapterName());
