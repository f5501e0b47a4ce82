// Live statistics (Engine::stats(), SessionConnection::stats()) over real sockets:
// exact counts against our echo server and Python `websockets`, round trips from the
// heartbeat, the send queue of a peer that does not read, sessions, reconnects and the
// last error, readers on other threads during a feed, and many engines on one runtime.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <thread>

#include <wscengine/wscengine.hpp>

#include "support/process.hpp"
#include "support/real_engine_fixture.hpp"
#include "support/recorder.hpp"
#include "support/text.hpp"
#include "test_server.hpp"

using namespace wscengine;
using namespace wscengine::test;
using namespace std::chrono_literals;
using ::testing::IsEmpty;
using Clock = std::chrono::steady_clock;

namespace {

// Polls `engine.stats()` until `done` holds or 20 s pass (see wait_until).
template <class Pred>
bool stats_reach(const Engine& engine, Pred done, std::chrono::milliseconds limit = 20s) {
  return wait_until([&] { return done(engine.stats()); }, limit);
}

class Stats : public RealEngineTest {
 protected:
  // Sends `sizes` and waits for their echoes; returns the payload bytes sent.
  std::uint64_t echo_all(const std::vector<std::size_t>& sizes) {
    std::uint64_t bytes = 0;
    const std::size_t before = client->count(Event::message);
    for (std::size_t i = 0; i < sizes.size(); ++i) {
      EXPECT_FALSE(engine->send(i % 2 ? MessageType::binary : MessageType::text, std::string(sizes[i], 'x')));
      bytes += sizes[i];
    }
    EXPECT_TRUE(client->wait_count(Event::message, before + sizes.size()));
    return bytes;
  }
};

// Every size class of length (7-, 16- and 64-bit): messages and payload bytes counted
// exactly both ways, for the engine and for its session, and the send queue empty.
void expect_exact_echo_counts(const Engine& engine, std::uint64_t messages, std::uint64_t bytes) {
  ASSERT_TRUE(stats_reach(engine, [&](const EngineStats& s) {
    return s.traffic.messages_sent == messages && s.traffic.messages_received == messages;
  })) << engine.stats().traffic.messages_sent;
  EngineStats s = engine.stats();
  EXPECT_EQ(s.traffic.bytes_sent, bytes);
  EXPECT_EQ(s.traffic.bytes_received, bytes);
  EXPECT_EQ(s.session.traffic.messages_received, messages);
  EXPECT_EQ(s.session.traffic.bytes_sent, bytes);
  EXPECT_EQ(s.session.queued_bytes, 0u);
  EXPECT_EQ(s.session.queued_messages, 0u);
  EXPECT_EQ(s.session.session_id, engine.session_id());
  EXPECT_EQ(s.sessions, 1u);
  EXPECT_EQ(s.reconnects, 0u);
  EXPECT_FALSE(s.last_error) << s.last_error->message();
  EXPECT_FALSE(s.rtt) << "no ping was sent";
}

const std::vector<std::size_t> kSizes = {0, 1, 125, 126, 65535, 65536, 200000};

}  // namespace

TEST_P(Stats, CountsMessagesAndBytesExactlyAgainstOurEchoServer) {
  server.on_session = tools::echo_session;
  server.start();
  make(options(server.url("/")));
  ASSERT_FALSE(engine->start());
  ASSERT_TRUE(wait_state(*engine, EngineState::running));
  const EngineStats fresh = engine->stats();
  EXPECT_EQ(fresh.traffic.messages_received, 0u);
  EXPECT_EQ(fresh.session.session_id, engine->session_id());
  const std::uint64_t bytes = echo_all(kSizes);
  expect_exact_echo_counts(*engine, kSizes.size(), bytes);
  // The session's own view, from its connection, is the same session.
  SessionStats session = engine->connection().stats();
  EXPECT_EQ(session.session_id, engine->session_id());
  EXPECT_EQ(session.traffic.bytes_received, bytes);
  EXPECT_GE(engine->stats().session.age, fresh.session.age);
}

TEST_P(Stats, CountsMessagesAndBytesExactlyAgainstPythonWebsockets) {
  ChildProcess python({"/usr/bin/python3", WSCENGINE_PY_SERVER});
  const std::string base = python.first_line(20s);
  ASSERT_FALSE(base.empty()) << "the Python websockets server did not start";
  make(options(base + "/echo"));
  ASSERT_FALSE(engine->start());
  ASSERT_TRUE(wait_state(*engine, EngineState::running));
  const std::uint64_t bytes = echo_all(kSizes);
  expect_exact_echo_counts(*engine, kSizes.size(), bytes);
}

// The heartbeat's pings give the round trip, last and smoothed; so does a user's ping.
TEST_P(Stats, PingsGiveTheRoundTrip) {
  server.on_session = tools::echo_session;
  server.start();
  auto o = options(server.url("/"));
  o.ping_interval = 20ms;
  make(o);
  ASSERT_FALSE(engine->start());
  ASSERT_TRUE(stats_reach(*engine, [](const EngineStats& s) { return s.rtt && s.smoothed_rtt; }));
  EngineStats s = engine->stats();
  EXPECT_GT(s.rtt->count(), 0);
  EXPECT_LT(*s.rtt, 5s);
  EXPECT_EQ(s.session.rtt.has_value(), true);
  EXPECT_EQ(s.traffic.messages_sent, 0u) << "pings are not messages";

  stop_and_check(engine, *client);
  client = std::make_shared<Recorder>();
  make(options(server.url("/")));  // no heartbeat
  ASSERT_FALSE(engine->start());
  ASSERT_TRUE(wait_state(*engine, EngineState::running));
  EXPECT_FALSE(engine->stats().rtt);
  ASSERT_FALSE(engine->connection().ping("hello", 5s));
  EXPECT_TRUE(engine->stats().rtt) << "a user's ping measures it too";
  EXPECT_TRUE(engine->connection().stats().smoothed_rtt);
}

// A peer that does not read: what waits in the send queue is visible, and equals
// buffered_amount() once the queue is full and nothing moves.
TEST_P(Stats, TheSendQueueOfAPeerThatDoesNotRead) {
  auto release = std::make_shared<std::atomic<bool>>(false);  // the session may outlive the test body
  server.on_session = [release](tools::ServerSession&) {
    for (int i = 0; i < 4000 && !*release; ++i) std::this_thread::sleep_for(5ms);
  };
  server.start();
  auto o = options(server.url("/"));
  o.send_queue_bytes = 1 << 20;
  o.write_timeout = 60s;
  o.auto_reconnect = false;
  make(o);
  ASSERT_FALSE(engine->start());
  ASSERT_TRUE(wait_state(*engine, EngineState::running));
  const std::string chunk(64 << 10, 'q');
  int sent = 0;
  for (; sent < 10000; ++sent) {
    Error e = engine->send(MessageType::binary, chunk);
    if (e.is(errc::send_queue_full)) break;
    ASSERT_FALSE(e) << e.message();
  }
  ASSERT_LT(sent, 10000) << "the queue never filled";
  EngineStats s = engine->stats();
  EXPECT_GT(s.session.queued_messages, 0u);
  EXPECT_GT(s.session.queued_bytes, 0u);
  EXPECT_LE(s.session.queued_bytes, o.send_queue_bytes + chunk.size());
  EXPECT_EQ(s.session.queued_messages + s.traffic.messages_sent, static_cast<std::uint64_t>(sent))
      << "each accepted message is queued or sent";
  *release = true;
}

// Sessions, reconnects and the last error across a drop; the session's counts start
// again while the engine's totals go on.
TEST_P(Stats, SessionsReconnectsAndTheLastError) {
  auto sessions = std::make_shared<std::atomic<int>>(0);
  server.on_session = [sessions](tools::ServerSession& s) {
    if (++*sessions == 1) {
      s.send(MessageType::text, "one");
      s.send(MessageType::text, "two");
      s.send_raw(std::string("\x81\x02\xc3\x28", 4));  // invalid UTF-8: the client fails it with 1007
      InboundMessage m;
      s.read(m, 5s);
      return;
    }
    s.send(MessageType::text, "three");
    InboundMessage m;
    s.read(m, 20s);
  };
  server.start();
  make(options(server.url("/")));
  const auto before = std::chrono::system_clock::now();
  ASSERT_FALSE(engine->start());
  ASSERT_TRUE(client->wait_count(Event::open, 2));
  ASSERT_TRUE(stats_reach(*engine, [](const EngineStats& s) { return s.traffic.messages_received == 3; }));
  EngineStats s = engine->stats();
  EXPECT_EQ(s.sessions, 2u);
  EXPECT_EQ(s.reconnects, 1u);
  EXPECT_EQ(s.session.session_id, engine->session_id());
  EXPECT_EQ(s.session.traffic.messages_received, 1u) << "the second session's own count";
  EXPECT_EQ(s.session.traffic.bytes_received, 5u);
  EXPECT_EQ(s.traffic.bytes_received, 3u + 3u + 5u);
  ASSERT_TRUE(s.last_error);
  EXPECT_TRUE(s.last_error->is(errc::invalid_utf8)) << s.last_error->message();
  EXPECT_GE(s.last_error_at, before);
  EXPECT_LE(s.last_error_at, std::chrono::system_clock::now());
  ASSERT_FALSE(engine->stop());
  client->mark_stopped();
  EXPECT_EQ(engine->stats().session.session_id, 0u) << "no session once stopped";
  EXPECT_EQ(engine->stats().traffic.messages_received, 3u) << "the totals stay";
}

// Threads that read the statistics as fast as they can while a feed runs see counts
// that never go back, and the final ones exact (TSan checks the reads race nothing).
TEST_P(Stats, ReadersOnOtherThreadsSeeMonotonicCounts) {
  constexpr int kMessages = 5000;
  server.on_session = [](tools::ServerSession& s) {
    for (int i = 0; i < kMessages; ++i) {
      if (s.send(MessageType::text, cat("m", i))) return;
    }
    InboundMessage m;
    s.read(m, 20s);
  };
  server.start();
  make(options(server.url("/")));
  std::atomic<bool> done{false};
  std::atomic<int> backwards{0};
  std::atomic<std::uint64_t> reads{0};
  std::vector<std::thread> readers;
  for (int t = 0; t < 2; ++t) {
    readers.emplace_back([&] {
      std::uint64_t last = 0;
      while (!done) {
        EngineStats s = engine->stats();
        if (s.traffic.messages_received < last) ++backwards;
        last = s.traffic.messages_received;
        ++reads;
      }
    });
  }
  client->on_message_hook = [&](Context& ctx, const Message&) {
    SessionStats mine = ctx.connection().stats();  // from inside a callback: no deadlock
    if (mine.traffic.messages_received == 0) ++backwards;
  };
  ASSERT_FALSE(engine->start());
  ASSERT_TRUE(client->wait_count(Event::message, kMessages, 60s));
  done = true;
  for (auto& t : readers) t.join();
  EXPECT_EQ(backwards, 0);
  EXPECT_GT(reads, 0u);
  EXPECT_EQ(engine->stats().traffic.messages_received, static_cast<std::uint64_t>(kMessages));
}

// Two dozen engines on one runtime, some fed, some silent: each counts its own.
TEST_P(Stats, ManyEnginesOnOneRuntimeEachCountTheirOwn) {
  server.on_session = [](tools::ServerSession& s) {
    const int n = std::stoi(s.target().substr(1));
    for (int i = 0; i < n; ++i) {
      if (s.send(MessageType::binary, std::string(static_cast<std::size_t>(i), 'b'))) return;
    }
    InboundMessage m;
    s.read(m, 20s);
  };
  server.start();
  auto runtime = Runtime::create({1, 2});
  constexpr int kEngines = 24;
  auto messages_of = [](int i) { return i % 4 == 0 ? 0 : 10 * i; };
  std::vector<std::shared_ptr<Recorder>> clients;
  std::vector<std::unique_ptr<Engine>> engines;
  for (int i = 0; i < kEngines; ++i) {
    clients.push_back(std::make_shared<Recorder>());
    engines.push_back(std::make_unique<Engine>(options(server.url(cat("/", messages_of(i)))), clients.back(),
                                               GetParam().make(), runtime));
    ASSERT_FALSE(engines.back()->start_background());
  }
  for (int i = 0; i < kEngines; ++i) {
    SCOPED_TRACE(i);
    const std::uint64_t n = static_cast<std::uint64_t>(messages_of(i));
    ASSERT_TRUE(clients[i]->wait_count(Event::open, 1, 20s));
    ASSERT_TRUE(clients[i]->wait_count(Event::message, n, 20s));
    // on_open is recorded before it returns, and a session counts once it returned.
    ASSERT_TRUE(stats_reach(*engines[i],
                            [&](const EngineStats& s) { return s.traffic.messages_received == n && s.sessions == 1; }));
    EXPECT_EQ(engines[i]->stats().traffic.bytes_received, n == 0 ? 0 : n * (n - 1) / 2) << "sizes 0..n-1";
    EXPECT_EQ(engines[i]->stats().sessions, 1u);
  }
  for (int i = 0; i < kEngines; ++i) {
    EXPECT_FALSE(engines[i]->stop());
    clients[i]->mark_stopped();
    EXPECT_THAT(clients[i]->violations(), IsEmpty());
  }
}

INSTANTIATE_TEST_SUITE_P(Adapters, Stats, ::testing::ValuesIn(engine_variants()), AdapterName());
