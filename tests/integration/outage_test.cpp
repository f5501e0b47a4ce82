// Sends across an outage (EngineOptions::outage) over real sockets: a server that
// restarts sessions in the middle of a stream of numbered sends, one that refuses
// connections for longer than the hold lasts, drop-oldest, the hold's limits, stop,
// and dozens of engines on one runtime, some of whose servers stay down.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <mutex>
#include <numeric>
#include <set>
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
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;

namespace {

// What a server read, across all its sessions: the numbers the payloads begin with.
// Each session is its own TCP connection with its own server thread: the server may
// still read the last messages of an old connection after the first ones of the new,
// so order is checked per session and between sessions, not in arrival order.
struct Ledger {
  std::mutex mutex;
  std::vector<int> received;
  std::set<int> sessions_seen;                 // the sessions that read a message
  std::map<int, std::vector<int>> by_session;  // what each session read, in its order
  int sessions = 0;

  void add(int n, int session) {
    std::lock_guard lock(mutex);
    received.push_back(n);
    sessions_seen.insert(session);
    by_session[session].push_back(n);
  }
  std::map<int, std::vector<int>> sessions_read() {
    std::lock_guard lock(mutex);
    return by_session;
  }
  std::size_t sessions_with_messages() {
    std::lock_guard lock(mutex);
    return sessions_seen.size();
  }
  std::vector<int> snapshot() {
    std::lock_guard lock(mutex);
    return received;
  }
  std::size_t size() {
    std::lock_guard lock(mutex);
    return received.size();
  }
};

// A payload that begins with `n`, in the three frame length classes (7-, 16- and
// 64-bit lengths): most small, every 7th 300 bytes, every 50th 70,000 bytes.
std::string numbered(int n) {
  std::string p = std::to_string(n);
  p += ' ';  // appended: GCC 12 warns falsely (-Wrestrict) on std::string + literal
  const std::size_t size = n % 50 == 0 ? 70000 : n % 7 == 0 ? 300 : 0;
  if (p.size() < size) p.resize(size, 'x');
  return p;
}

// Reads numbered messages into `ledger`. Each of the first `restarts` sessions ends
// after `per_session` messages: the server sends a close (1012, service restart) and
// reads on until the client's close, so every message the client wrote before its
// close is counted, and none it wrote after can be.
void restarting_sink(tools::ServerSession& s, const std::shared_ptr<Ledger>& ledger, int per_session, int restarts) {
  int session = 0;
  {
    std::lock_guard lock(ledger->mutex);
    session = ++ledger->sessions;
  }
  int here = 0;
  bool closing = false;
  InboundMessage m;
  while (!s.read(m, 20s)) {
    ledger->add(std::stoi(m.payload), session);
    if (!closing && session <= restarts && ++here == per_session) {
      s.send_raw(std::string("\x88\x02\x03\xf4", 4));  // close 1012, written below the server's stream
      closing = true;
    }
  }
}

// The outcome of each numbered async_send: what its completion said.
struct Outcomes {
  std::mutex mutex;
  std::map<int, Error> by_number;

  SendHandler handler(int n) {
    return [this, n](Error e) {
      std::lock_guard lock(mutex);
      by_number.emplace(n, std::move(e));
    };
  }
  std::size_t size() {
    std::lock_guard lock(mutex);
    return by_number.size();
  }
  std::vector<int> with(errc kind) {
    std::lock_guard lock(mutex);
    std::vector<int> out;
    for (auto& [n, e] : by_number)
      if (e.is(kind)) out.push_back(n);
    return out;
  }
  std::vector<int> sent() {
    std::lock_guard lock(mutex);
    std::vector<int> out;
    for (auto& [n, e] : by_number)
      if (!e) out.push_back(n);
    return out;
  }
};

std::vector<int> range(int first, int last) {
  std::vector<int> v(static_cast<std::size_t>(last - first + 1));
  std::iota(v.begin(), v.end(), first);
  return v;
}

// "missing: 17 42" for a failure message.
std::string missing_from(const std::vector<int>& got, int total) {
  std::set<int> seen(got.begin(), got.end());
  std::string out = "missing:";
  for (int n = 1; n <= total; ++n)
    if (!seen.count(n)) {
      out += ' ';
      out += std::to_string(n);
    }
  // Where the order first breaks, with its neighbours and the session each came in (a
  // duplicate and a reordering read differently there).
  out += "; ";
  out += std::to_string(got.size());
  out += " received";
  for (std::size_t i = 0; i < got.size(); ++i) {
    if (got[i] == static_cast<int>(i) + 1) continue;
    out += "; first break at #";
    out += std::to_string(i);
    out += ':';
    for (std::size_t j = i < 4 ? 0 : i - 4; j < std::min(got.size(), i + 5); ++j) {
      out += ' ';
      out += std::to_string(got[j]);
    }
    break;
  }
  return out;
}

class Outage : public RealEngineTest {
 protected:
  EngineOptions holding(const std::string& url, OutageSends mode) {
    auto o = options(url);
    o.outage.mode = mode;
    return o;
  }
  // Upgrades are answered 503 while `refusing` is set.
  void refuse_while(const std::shared_ptr<std::atomic<bool>>& refusing) {
    server.on_request = [refusing](const std::string&, const std::vector<Header>&) {
      return refusing->load() ? 503 : 0;
    };
  }
  // Every number 1..total arrived once and in order, on both adapters: websocketpp takes
  // each message on its strand, so none lands behind the answer to a peer's close.
  void expect_once_in_order(Ledger& ledger, int total) {
    wait_until([&] { return ledger.size() >= static_cast<std::size_t>(total); }, 20s);
    auto got = ledger.snapshot();
    std::vector<int> sorted = got;
    std::sort(sorted.begin(), sorted.end());
    EXPECT_EQ(std::adjacent_find(sorted.begin(), sorted.end()), sorted.end()) << "a message arrived twice";
    EXPECT_THAT(sorted, ElementsAreArray(range(1, total))) << missing_from(got, total);
    // In order within each session, and every session's messages after the last of the
    // sessions before it.
    int last_of_earlier = 0;
    for (auto& [session, numbers] : ledger.sessions_read()) {
      for (std::size_t i = 1; i < numbers.size(); ++i)
        ASSERT_LT(numbers[i - 1], numbers[i]) << "session " << session << ", out of order at " << i;
      if (numbers.empty()) continue;
      EXPECT_GT(numbers.front(), last_of_earlier) << "session " << session << " overtook an earlier one";
      last_of_earlier = numbers.back();
    }
  }
  Outcomes outcomes;
};

}  // namespace

// The server restarts the session five times in the middle of a stream of 600 numbered
// sends from another thread: every message arrives exactly once and in order, those a
// session could not send before it ended are held and sent by the next one.
TEST_P(Outage, HeldSendsArriveOnceAndInOrderAcrossServerRestarts) {
  auto ledger = std::make_shared<Ledger>();
  server.on_session = [ledger](tools::ServerSession& s) { restarting_sink(s, ledger, 60, 5); };
  server.start();
  make(holding(server.url(), OutageSends::hold));
  ASSERT_FALSE(engine->start());
  constexpr int total = 600;
  for (int n = 1; n <= total; ++n) {
    ASSERT_FALSE(engine->async_send(MessageType::text, numbered(n), outcomes.handler(n))) << n;
    if (n % 5 == 0) std::this_thread::sleep_for(1ms);  // a stream, not one burst
    // However fast or slow the machine, the stream crosses restarts: the server closes a
    // session after 60 messages, and each third is sent once the session for it began.
    if (n == total / 3 || n == 2 * total / 3) {
      const int sessions = n == total / 3 ? 2 : 3;
      ASSERT_TRUE(wait_until([&] {
        std::lock_guard lock(ledger->mutex);
        return ledger->sessions >= sessions;
      })) << n;
    }
  }
  ASSERT_TRUE(wait_until([&] { return outcomes.size() == total; })) << outcomes.size() << " outcomes";
  EXPECT_THAT(outcomes.sent(), ElementsAreArray(range(1, total)));
  expect_once_in_order(*ledger, total);
  EXPECT_GE(ledger->sessions_with_messages(), 3u);  // the stream crossed restarts
  const EngineStats stats = engine->stats();
  EXPECT_EQ(stats.held_messages, 0u);
  EXPECT_EQ(stats.held_bytes, 0u);
  EXPECT_EQ(stats.sends_expired, 0u);
  EXPECT_EQ(stats.traffic.messages_sent, std::uint64_t{total});
}

// Sends while the server refuses every connection for longer than max_age: each is
// reported expired through its completion, never sent; later ones go out once the
// server is back.
TEST_P(Outage, SendsHeldLongerThanMaxAgeExpireThroughTheirCompletion) {
  auto ledger = std::make_shared<Ledger>();
  auto refusing = std::make_shared<std::atomic<bool>>(true);
  refuse_while(refusing);
  server.on_session = [ledger](tools::ServerSession& s) { restarting_sink(s, ledger, 0, 0); };
  server.start();
  auto o = holding(server.url(), OutageSends::hold);
  o.outage.max_age = 300ms;
  make(o);
  ASSERT_FALSE(engine->start_background());
  for (int n = 1; n <= 5; ++n) ASSERT_FALSE(engine->async_send(MessageType::text, numbered(n), outcomes.handler(n)));
  EXPECT_EQ(engine->stats().held_messages + outcomes.size(), 5u);
  ASSERT_TRUE(wait_until([&] { return outcomes.size() == 5; }));
  EXPECT_THAT(outcomes.with(errc::expired), ElementsAreArray(range(1, 5)));
  {
    std::lock_guard lock(outcomes.mutex);
    EXPECT_THAT(outcomes.by_number[1].message(), HasSubstr("outage.max_age (300 ms)"));
  }
  EXPECT_EQ(engine->stats().sends_expired, 5u);
  EXPECT_EQ(engine->stats().held_messages, 0u);
  refusing->store(false);
  for (int n = 6; n <= 8; ++n) ASSERT_FALSE(engine->async_send(MessageType::text, numbered(n), outcomes.handler(n)));
  ASSERT_TRUE(wait_until([&] { return ledger->size() >= 3; }));
  EXPECT_THAT(ledger->snapshot(), ElementsAreArray(range(6, 8)));
  EXPECT_GE(server.accepted(), 2u);  // refused at least once before
}

// drop_oldest: beyond max_messages the oldest held sends make room (errc::dropped, in
// order), and the newest four go out once the server takes the connection.
TEST_P(Outage, DropOldestKeepsTheNewestAndReportsTheRest) {
  auto ledger = std::make_shared<Ledger>();
  auto refusing = std::make_shared<std::atomic<bool>>(true);
  refuse_while(refusing);
  server.on_session = [ledger](tools::ServerSession& s) { restarting_sink(s, ledger, 0, 0); };
  server.start();
  auto o = holding(server.url(), OutageSends::drop_oldest);
  o.outage.max_messages = 4;
  make(o);
  ASSERT_FALSE(engine->start_background());
  for (int n = 1; n <= 10; ++n) ASSERT_FALSE(engine->async_send(MessageType::text, numbered(n), outcomes.handler(n)));
  ASSERT_TRUE(wait_until([&] { return outcomes.size() == 6; }));
  EXPECT_THAT(outcomes.with(errc::dropped), ElementsAreArray(range(1, 6)));
  EngineStats stats = engine->stats();
  EXPECT_EQ(stats.held_messages, 4u);
  EXPECT_EQ(stats.held_bytes, numbered(7).size() + numbered(8).size() + numbered(9).size() + numbered(10).size());
  EXPECT_EQ(stats.sends_dropped, 6u);
  refusing->store(false);
  ASSERT_TRUE(wait_until([&] { return outcomes.size() == 10; }));
  EXPECT_THAT(outcomes.sent(), ElementsAreArray(range(7, 10)));
  ASSERT_TRUE(wait_until([&] { return ledger->size() >= 4; }));
  EXPECT_THAT(ledger->snapshot(), ElementsAreArray(range(7, 10)));
}

// hold: a send beyond the limits is refused at once with a message naming them, and
// nothing held is lost for it; stop() gives up what is held with errc::cancelled.
TEST_P(Outage, TheHoldRefusesBeyondItsLimitsAndStopCancelsWhatItHolds) {
  auto refusing = std::make_shared<std::atomic<bool>>(true);
  refuse_while(refusing);
  server.start();
  auto o = holding(server.url(), OutageSends::hold);
  o.outage.max_messages = 3;
  make(o);
  ASSERT_FALSE(engine->start_background());
  for (int n = 1; n <= 3; ++n) ASSERT_FALSE(engine->async_send(MessageType::text, numbered(n), outcomes.handler(n)));
  Error refused = engine->send(MessageType::text, "4");
  EXPECT_TRUE(refused.is(errc::send_queue_full)) << refused.message();
  EXPECT_THAT(refused.message(), HasSubstr("3 messages (6 bytes) are held for the next session"));
  EXPECT_EQ(engine->stats().held_messages, 3u);
  EXPECT_EQ(outcomes.size(), 0u);
  EXPECT_FALSE(engine->stop());
  ASSERT_TRUE(wait_until([&] { return outcomes.size() == 3; }));
  EXPECT_THAT(outcomes.with(errc::cancelled), ElementsAreArray(range(1, 3)));
  EXPECT_EQ(engine->stats().held_messages, 0u);
  EXPECT_TRUE(engine->send(MessageType::text, "5").is(errc::not_running));
}

// The default is unchanged: between sessions a send fails at once.
TEST_P(Outage, WithoutAHoldASendBetweenSessionsFailsAtOnce) {
  auto refusing = std::make_shared<std::atomic<bool>>(true);
  refuse_while(refusing);
  server.start();
  make(options(server.url()));
  ASSERT_FALSE(engine->start_background());
  EXPECT_TRUE(engine->send(MessageType::text, "1").is(errc::not_connected));
  EXPECT_EQ(engine->stats().held_messages, 0u);
}

// 24 engines on one runtime, each streaming 150 numbered sends: 16 to servers that
// restart their sessions, 8 to servers that stay down. The first 16 get every message
// once and in order; the 8 see every send expire; neither group delays the other.
TEST_P(Outage, DozensOfEnginesOnOneRuntimeSomeOfThemWithoutAServer) {
  constexpr int live = 16, dead = 8, total = 150;
  auto runtime = Runtime::create({1, 4});
  auto refusing = std::make_shared<std::atomic<bool>>(true);
  tools::TestServer down;
  down.on_request = [refusing](const std::string&, const std::vector<Header>&) { return refusing->load() ? 503 : 0; };
  down.start();
  std::vector<std::shared_ptr<Ledger>> ledgers;
  for (int i = 0; i < live; ++i) ledgers.push_back(std::make_shared<Ledger>());
  server.on_session = [ledgers](tools::ServerSession& s) {
    const int which = std::stoi(s.target().substr(1));
    restarting_sink(s, ledgers[static_cast<std::size_t>(which)], 40, 2);
  };
  server.start();
  std::vector<std::shared_ptr<Recorder>> clients;
  std::vector<std::unique_ptr<Engine>> engines;
  std::vector<std::unique_ptr<Outcomes>> outcomes_of;
  for (int i = 0; i < live + dead; ++i) {
    std::string target = "/";
    target += std::to_string(i);
    auto o = holding(i < live ? server.url(target) : down.url("/"), OutageSends::hold);
    o.outage.max_age = i < live ? 30s : 200ms;
    clients.push_back(std::make_shared<Recorder>());
    engines.push_back(std::make_unique<Engine>(o, clients.back(), GetParam().make(), runtime));
    outcomes_of.push_back(std::make_unique<Outcomes>());
    ASSERT_FALSE(engines.back()->start_background());
  }
  for (int n = 1; n <= total; ++n) {
    for (int i = 0; i < live + dead; ++i) {
      ASSERT_FALSE(engines[i]->async_send(MessageType::text, numbered(n), outcomes_of[i]->handler(n)));
    }
    if (n % 10 == 0) std::this_thread::sleep_for(1ms);
  }
  for (int i = 0; i < live + dead; ++i) {
    ASSERT_TRUE(wait_until([&] { return outcomes_of[i]->size() == total; })) << "engine " << i;
    if (i < live) {
      EXPECT_THAT(outcomes_of[i]->sent(), ElementsAreArray(range(1, total))) << "engine " << i;
      SCOPED_TRACE(i);
      expect_once_in_order(*ledgers[i], total);
    } else {
      EXPECT_THAT(outcomes_of[i]->with(errc::expired), ElementsAreArray(range(1, total))) << "engine " << i;
    }
  }
  for (std::size_t i = 0; i < engines.size(); ++i) stop_and_check(engines[i], *clients[i]);
  down.stop();
}

INSTANTIATE_TEST_SUITE_P(Adapters, Outage, ::testing::ValuesIn(engine_variants()), AdapterName());
