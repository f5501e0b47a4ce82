// EngineOptions::on_control_frame on every real adapter against Python `websockets`:
// the server's pings and our answers, our pings and the server's pongs with their round
// trip, dozens of engines on one runtime (some with a frozen peer), and an observer
// that falls behind.
#include <gtest/gtest.h>

#include <wscengine/wscengine.hpp>

#include <condition_variable>
#include <csignal>
#include <functional>
#include <future>
#include <mutex>
#include <string>
#include <vector>

#include "support/process.hpp"
#include "support/real_adapters.hpp"
#include "support/recorder.hpp"
#include "support/text.hpp"

using namespace wscengine;
using namespace wscengine::test;

namespace {

// The events one engine's observer was given, in the order it was given them.
class FrameLog {
 public:
  std::function<void(const ControlFrameEvent&)> observer() {
    return [this](const ControlFrameEvent& event) {
      if (hold_first_) {
        std::shared_future<void> hold;
        {
          std::lock_guard lock(mutex_);
          if (!held_once_) hold = release_.get_future().share();
          held_once_ = true;
        }
        if (hold.valid()) hold.wait();
      }
      std::lock_guard lock(mutex_);
      events_.push_back(event);
      changed_.notify_all();
    };
  }
  /// The first event the observer is given blocks it until release().
  void hold_first() { hold_first_ = true; }
  void release() { release_.set_value(); }

  bool wait_for(const std::function<bool(const std::vector<ControlFrameEvent>&)>& done,
                std::chrono::milliseconds timeout = 20s) {
    std::unique_lock lock(mutex_);
    return changed_.wait_for(lock, timeout, [&] { return done(events_); });
  }
  std::vector<ControlFrameEvent> events() {
    std::lock_guard lock(mutex_);
    return events_;
  }

 private:
  std::mutex mutex_;
  std::condition_variable changed_;
  std::vector<ControlFrameEvent> events_;
  bool hold_first_ = false;
  bool held_once_ = false;
  std::promise<void> release_;
};

// The index of the first event of `kind` with `payload`, or -1.
long index_of(const std::vector<ControlFrameEvent>& events, ControlFrameKind kind, const std::string& payload) {
  for (std::size_t i = 0; i < events.size(); ++i)
    if (events[i].kind == kind && events[i].payload == payload) return static_cast<long>(i);
  return -1;
}

std::function<bool(const std::vector<ControlFrameEvent>&)> has(ControlFrameKind kind, const std::string& payload) {
  return [kind, payload](const std::vector<ControlFrameEvent>& events) { return index_of(events, kind, payload) >= 0; };
}

bool has_message(const Recorder& client, const std::string& payload) {
  return client.wait_for([&](const std::vector<Event>& events) {
    for (const auto& e : events)
      if (e.kind == Event::message && e.payload == payload) return true;
    return false;
  });
}

class ControlFrames : public ::testing::TestWithParam<RealAdapter> {
 protected:
  void SetUp() override {
    server_ = std::make_unique<ChildProcess>(std::vector<std::string>{"/usr/bin/python3", WSCENGINE_PY_SERVER});
    base_ = server_->first_line(20s);
    ASSERT_FALSE(base_.empty()) << "the Python websockets server did not start (python3-websockets installed?)";
  }
  EngineOptions options(const std::string& path, FrameLog& log) {
    EngineOptions o;
    o.url = base_ + path;
    o.auto_reconnect = false;
    o.on_control_frame = log.observer();
    return o;
  }

  std::unique_ptr<ChildProcess> server_;
  std::string base_;
};

}  // namespace

// The server pings: the observer hears of its ping, then of our pong, before the
// server (which waited for that pong) sends its next message. Our ping: its pong comes
// with a round trip no longer than the ping took. An unsolicited pong has none.
TEST_P(ControlFrames, BothWaysAreReportedInOrderWithTheRoundTrip) {
  FrameLog log;
  auto client = std::make_shared<Recorder>();
  auto engine = std::make_unique<Engine>(options("/ping/hello%20there", log), client, GetParam().make());
  ASSERT_FALSE(engine->start());
  ASSERT_TRUE(has_message(*client, "pong hello there")) << "the server never had our pong";
  ASSERT_TRUE(log.wait_for(has(ControlFrameKind::pong_received, "unasked")));
  auto events = log.events();
  const long ping = index_of(events, ControlFrameKind::ping_received, "hello there");
  const long pong = index_of(events, ControlFrameKind::pong_sent, "hello there");
  ASSERT_GE(ping, 0);
  EXPECT_EQ(pong, ping + 1) << "the answer is reported right after the ping";
  const long unasked = index_of(events, ControlFrameKind::pong_received, "unasked");
  EXPECT_GT(unasked, pong);
  EXPECT_FALSE(events[static_cast<std::size_t>(unasked)].round_trip) << "it answers no ping of ours";
  for (const auto& e : events) {
    EXPECT_EQ(e.session, 1u);
    EXPECT_EQ(e.missed, 0u);
  }

  const auto before = std::chrono::steady_clock::now();
  ASSERT_FALSE(engine->connection().ping(std::string("\x00mine\xff", 6), 10s));
  const auto took = std::chrono::steady_clock::now() - before;
  ASSERT_TRUE(log.wait_for(has(ControlFrameKind::pong_received, std::string("\x00mine\xff", 6))));
  events = log.events();
  const long sent = index_of(events, ControlFrameKind::ping_sent, std::string("\x00mine\xff", 6));
  const long answer = index_of(events, ControlFrameKind::pong_received, std::string("\x00mine\xff", 6));
  ASSERT_GE(sent, 0);
  EXPECT_GT(answer, sent);
  const auto& round_trip = events[static_cast<std::size_t>(answer)].round_trip;
  ASSERT_TRUE(round_trip);
  EXPECT_GT(round_trip->count(), 0);
  EXPECT_LE(*round_trip, took);
  ASSERT_FALSE(engine->stop());
  client->mark_stopped();
  EXPECT_TRUE(client->violations().empty());
}

// Two dozen engines on one runtime of two I/O threads: sixteen whose server pings each
// with its own payload, eight with a heartbeat whose server is then frozen (SIGSTOP).
// Each live engine hears of its own ping and pong only; each frozen one is found dead
// by its heartbeat, its last event the ping that was never answered.
TEST_P(ControlFrames, DozensOfEnginesEachHearOfTheirOwnWhileSomePeersAreFrozen) {
  constexpr int kLive = 16, kFrozen = 8;
  ChildProcess frozen_server({"/usr/bin/python3", WSCENGINE_PY_SERVER});
  const std::string frozen_base = frozen_server.first_line(20s);
  ASSERT_FALSE(frozen_base.empty());
  auto runtime = Runtime::create({2, 2});
  std::vector<std::unique_ptr<FrameLog>> logs;
  std::vector<std::shared_ptr<Recorder>> clients;
  std::vector<std::unique_ptr<Engine>> engines;
  for (int i = 0; i < kLive + kFrozen; ++i) {
    logs.push_back(std::make_unique<FrameLog>());
    EngineOptions o = i < kLive ? options(cat("/ping/engine", i), *logs.back()) : options("/echo", *logs.back());
    if (i >= kLive) {
      o.url = frozen_base + "/echo";
      o.ping_interval = 100ms;
      o.pong_timeout = 500ms;
    }
    clients.push_back(std::make_shared<Recorder>());
    engines.push_back(std::make_unique<Engine>(o, clients.back(), GetParam().make(), runtime));
  }
  for (int i = kLive; i < kLive + kFrozen; ++i) ASSERT_FALSE(engines[i]->start()) << i;
  for (int i = kLive; i < kLive + kFrozen; ++i)
    ASSERT_TRUE(logs[i]->wait_for(has(ControlFrameKind::pong_received, ""))) << "heartbeat of " << i;
  frozen_server.signal(SIGSTOP);
  for (int i = 0; i < kLive; ++i) ASSERT_FALSE(engines[i]->start_background()) << i;

  for (int i = 0; i < kLive; ++i) {
    SCOPED_TRACE(i);
    ASSERT_TRUE(has_message(*clients[i], cat("pong engine", i)));
    ASSERT_TRUE(logs[i]->wait_for(has(ControlFrameKind::pong_received, "unasked")));
    auto events = logs[i]->events();
    EXPECT_EQ(index_of(events, ControlFrameKind::pong_sent, cat("engine", i)),
              index_of(events, ControlFrameKind::ping_received, cat("engine", i)) + 1);
    EXPECT_EQ(events.size(), 3u) << "its ping, its pong and the unasked pong: nothing of another engine";
  }
  for (int i = kLive; i < kLive + kFrozen; ++i) {
    SCOPED_TRACE(i);
    ASSERT_TRUE(clients[i]->wait_count(Event::read_error, 1, 20s)) << "the frozen peer was never found dead";
    EXPECT_TRUE(clients[i]->events_of(Event::read_error)[0].error.is(errc::timeout));
    ASSERT_FALSE(engines[i]->wait_stopped(20s));
    auto events = logs[i]->events();
    ASSERT_FALSE(events.empty());
    EXPECT_EQ(events.back().kind, ControlFrameKind::ping_sent) << "the unanswered ping";
  }
  frozen_server.signal(SIGCONT);
  for (int i = 0; i < kLive + kFrozen; ++i) {
    EXPECT_FALSE(engines[i]->stop()) << i;
    clients[i]->mark_stopped();
    EXPECT_TRUE(clients[i]->violations().empty()) << i;
  }
}

// An observer that blocks on its first event: the server's 1,500 pings are answered
// meanwhile (the server says so in a message); once it goes on, it is given the events
// that waited (1,024, and the one it held), in order, and each one after which events
// were left out counts them as missed: none is lost from the count. The queue may fill
// before the observer's task takes the first event (a slow runtime, as under ASan): then
// event 1023 counts those left out until the task took it, and event 1024 the rest.
TEST_P(ControlFrames, AnObserverThatFallsBehindIsToldWhatItMissed) {
  constexpr int kPings = 1500;
  FrameLog log;
  log.hold_first();
  auto client = std::make_shared<Recorder>();
  auto runtime = Runtime::create({1, 2});  // on_message runs while the observer blocks
  auto engine = std::make_unique<Engine>(options(cat("/pings/", kPings), log), client, GetParam().make(), runtime);
  ASSERT_FALSE(engine->start());
  ASSERT_TRUE(client->wait_count(Event::message, 1, 60s));
  EXPECT_EQ(client->events_of(Event::message)[0].payload, cat("answered ", kPings));
  log.release();
  const std::size_t all = 2 * kPings;  // each ping and its pong
  auto accounted = [&](const std::vector<ControlFrameEvent>& events) {
    std::size_t n = 0;
    for (const auto& e : events) n += 1 + e.missed;
    return n;
  };
  ASSERT_TRUE(log.wait_for([&](const auto& events) { return accounted(events) == all; }, 30s))
      << accounted(log.events()) << " of " << all;
  auto events = log.events();
  EXPECT_GE(events.size(), 1024u);
  EXPECT_LE(events.size(), 1025u);
  EXPECT_GT(events.back().missed, 0u) << "the last one counts the rest";
  for (std::size_t i = 0; i + 2 < events.size(); ++i) EXPECT_EQ(events[i].missed, 0u) << i;
  // Every event stands where it stood on the wire: the pings came, and were answered, in
  // order (ping p0, pong p0, ping p1, ...), and `missed` skips exactly the ones left out.
  std::size_t on_wire = 0;
  for (std::size_t i = 0; i < events.size(); ++i) {
    SCOPED_TRACE(i);
    const auto expected_kind = on_wire % 2 == 0 ? ControlFrameKind::ping_received : ControlFrameKind::pong_sent;
    EXPECT_EQ(events[i].kind, expected_kind) << "at " << on_wire << " on the wire";
    EXPECT_EQ(events[i].payload, cat("p", on_wire / 2));
    on_wire += 1 + events[i].missed;
  }
  EXPECT_EQ(on_wire, all);
  ASSERT_FALSE(engine->stop());
  client->mark_stopped();
  EXPECT_TRUE(client->violations().empty());
}

INSTANTIATE_TEST_SUITE_P(Adapters, ControlFrames, ::testing::ValuesIn(real_adapters()), AdapterName());
