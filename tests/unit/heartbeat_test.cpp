// Heartbeat (EngineOptions::ping_interval / pong_timeout): a peer that stops answering
// pings is found dead — OnReadError (timeout), OnClose 1006, reconnect — also while
// OnMessage is busy and while the pause lock is held. Bounds are generous: they
// prove detection, not speed.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <thread>

#include <wscengine/memory.hpp>
#include <wscengine/wscengine.hpp>

#include "support/fake_tracer.hpp"
#include "support/recorder.hpp"

using namespace wscengine;
using namespace wscengine::test;

namespace {

class Heartbeat : public ::testing::Test {
 protected:
  std::shared_ptr<memory::Server> server = memory::Server::create();
  std::shared_ptr<Recorder> client = std::make_shared<Recorder>();
  std::unique_ptr<Engine> engine;
  std::shared_ptr<FakeTracer> tracer = std::make_shared<FakeTracer>();  // counts the pings

  void make() {
    EngineOptions o;
    o.url = "ws://heartbeat.test/";
    o.ping_interval = 20ms;
    o.pong_timeout = 50ms;
    o.backoff.initial_delay = 1ms;
    o.telemetry.tracer = tracer;
    engine = std::make_unique<Engine>(o, client, server->connector());
  }
  // The kinds of the callbacks so far, in order.
  std::vector<Event::Kind> kinds() const {
    std::vector<Event::Kind> out;
    for (auto& e : client->events()) out.push_back(e.kind);
    return out;
  }
  void TearDown() override { stop_and_check(engine, *client); }
};

}  // namespace

TEST_F(Heartbeat, AnAnsweringPeerStaysConnected) {
  make();
  ASSERT_FALSE(engine->start());
  auto peer = server->accept(5s);
  for (int i = 0; i < 500 && tracer->named("wscengine.ping").size() < 5; ++i) std::this_thread::sleep_for(10ms);
  EXPECT_GE(tracer->named("wscengine.ping").size(), 5u) << "pings were sent and answered";
  EXPECT_EQ(client->count(Event::close), 0u);
  EXPECT_EQ(client->count(Event::read_error), 0u);
  EXPECT_EQ(engine->state(), EngineState::running);
}

TEST_F(Heartbeat, ASilentPeerIsDroppedReportedAndReconnected) {
  make();
  ASSERT_FALSE(engine->start());
  auto peer = server->accept(5s);
  peer->answer_pings(false);  // half-open: no error, no data, ever
  ASSERT_TRUE(client->wait_count(Event::open, 2, 10s));
  auto errors = client->events_of(Event::read_error);
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_TRUE(errors[0].error.is(errc::timeout)) << errors[0].error.message();
  EXPECT_THAT(errors[0].error.message(), ::testing::HasSubstr("no pong and no data within 50 ms"));
  auto closes = client->events_of(Event::close);
  ASSERT_EQ(closes.size(), 1u);
  ASSERT_TRUE(closes[0].received);
  EXPECT_EQ(closes[0].received->code, close_code::abnormal);
  auto order = kinds();
  EXPECT_EQ(std::vector<Event::Kind>(order.begin(), order.begin() + 4),
            (std::vector<Event::Kind>{Event::open, Event::read_error, Event::close, Event::open}));
}

TEST_F(Heartbeat, APeerThatSendsButNeverAnswersPingsIsAlive) {
  make();
  ASSERT_FALSE(engine->start());
  auto peer = server->accept(5s);
  peer->answer_pings(false);
  // Data every 10 ms for 20 pong timeouts: messages prove the peer alive.
  for (int i = 0; i < 100; ++i) {
    peer->send(MessageType::text, "tick " + std::to_string(i));
    std::this_thread::sleep_for(10ms);
  }
  ASSERT_TRUE(client->wait_count(Event::message, 100));
  EXPECT_GE(tracer->named("wscengine.ping").size(), 3u) << "pings went out and were not answered";
  EXPECT_EQ(client->count(Event::read_error), 0u);
  EXPECT_EQ(client->count(Event::close), 0u);
  // Silence now: dead within a pong timeout or so.
  ASSERT_TRUE(client->wait_count(Event::read_error, 1, 10s));
  EXPECT_TRUE(client->events_of(Event::read_error)[0].error.is(errc::timeout));
}

TEST_F(Heartbeat, DetectedWhileOnMessageIsBusy) {
  std::atomic<bool> cancelled_inside{false};
  client->on_message_hook = [&](Context& ctx, const Message&) {
    // Busy until the engine says the session is ending (bounded).
    for (int i = 0; i < 500 && !ctx.cancelled(); ++i) std::this_thread::sleep_for(10ms);
    cancelled_inside = ctx.cancelled();
  };
  make();
  ASSERT_FALSE(engine->start());
  auto peer = server->accept(5s);
  peer->answer_pings(false);
  peer->send(MessageType::text, "slow");
  ASSERT_TRUE(client->wait_count(Event::open, 2, 10s));
  EXPECT_TRUE(cancelled_inside) << "the dead connection was found while OnMessage ran";
  EXPECT_EQ(client->count(Event::read_error), 1u);
}

TEST_F(Heartbeat, DetectedWhileThePauseLockIsHeld) {
  make();
  ASSERT_FALSE(engine->start());
  auto peer = server->accept(5s);
  {
    PauseGuard paused = engine->pause();
    peer->answer_pings(false);
    EXPECT_TRUE(client->wait_count(Event::close, 1, 10s)) << "found dead with no reader running";
  }
  ASSERT_TRUE(client->wait_count(Event::open, 2, 10s));
  EXPECT_EQ(client->count(Event::read_error), 1u);
}
