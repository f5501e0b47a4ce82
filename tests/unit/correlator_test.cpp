// Correlator: every request ends exactly once — answer, timeout, connection lost or
// cancelled — from any thread, and nothing is left behind.
#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <map>
#include <mutex>
#include <random>
#include <thread>

#include <wscengine/correlator.hpp>
#include <wscengine/memory.hpp>
#include <wscengine/wscengine.hpp>

#include "support/recorder.hpp"

using namespace wscengine;
using namespace wscengine::test;

namespace {

// Answers look like "<id>:<body>".
std::optional<std::string> id_before_colon(const Message& m) {
  auto colon = m.payload.find(':');
  if (colon == std::string_view::npos) return std::nullopt;
  return std::string(m.payload.substr(0, colon));
}

Message text(std::string_view payload) { return Message{MessageType::text, 0, payload}; }

}  // namespace

TEST(Correlator, AnAnswerCompletesItsRequestAndOthersPassThrough) {
  Correlator rpc(id_before_colon);
  auto answer = rpc.expect("7", 5s);
  EXPECT_EQ(rpc.pending(), 1u);
  EXPECT_FALSE(rpc.deliver(text("not an answer")));
  EXPECT_FALSE(rpc.deliver(text("8:someone else's")));
  EXPECT_TRUE(rpc.deliver(text("7:pong")));
  ASSERT_EQ(answer.wait_for(1s), std::future_status::ready);
  auto r = answer.get();
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(r->payload, "7:pong");
  EXPECT_EQ(rpc.pending(), 0u);
  EXPECT_FALSE(rpc.deliver(text("7:late duplicate"))) << "an id is answered once";
}

TEST(Correlator, NoAnswerInTimeIsATimeout) {
  Correlator rpc(id_before_colon);
  auto started = std::chrono::steady_clock::now();
  auto answer = rpc.expect("1", 50ms);
  ASSERT_EQ(answer.wait_for(5s), std::future_status::ready);
  auto r = answer.get();
  ASSERT_FALSE(r);
  EXPECT_TRUE(r.error().is(errc::timeout)) << r.error().message();
  EXPECT_GE(std::chrono::steady_clock::now() - started, 50ms);
  EXPECT_EQ(rpc.pending(), 0u);
  EXPECT_FALSE(rpc.deliver(text("1:too late")));
}

TEST(Correlator, ConnectionLostFailsEveryPendingRequest) {
  Correlator rpc(id_before_colon);
  std::vector<std::future<Result<InboundMessage>>> answers;
  for (int i = 0; i < 3; ++i) answers.push_back(rpc.expect(std::to_string(i), 10s));
  rpc.connection_lost();
  for (auto& a : answers) {
    ASSERT_EQ(a.wait_for(1s), std::future_status::ready);
    auto r = a.get();
    ASSERT_FALSE(r);
    EXPECT_TRUE(r.error().is(errc::connection_lost)) << r.error().message();
  }
  EXPECT_EQ(rpc.pending(), 0u);
}

TEST(Correlator, ADuplicateIdFailsAndLeavesTheFirstWaiting) {
  Correlator rpc(id_before_colon);
  auto first = rpc.expect("x", 10s);
  auto second = rpc.expect("x", 10s);
  ASSERT_EQ(second.wait_for(1s), std::future_status::ready);
  auto r = second.get();
  ASSERT_FALSE(r);
  EXPECT_TRUE(r.error().is(errc::invalid_option));
  EXPECT_EQ(rpc.pending(), 1u);
  EXPECT_TRUE(rpc.deliver(text("x:ok")));
  EXPECT_TRUE(first.get());
}

TEST(Correlator, DestructionCancelsWhatIsPending) {
  std::atomic<int> cancelled{0};
  {
    Correlator rpc(id_before_colon);
    for (int i = 0; i < 5; ++i)
      rpc.expect(std::to_string(i), 10s, [&](Result<InboundMessage> r) {
        if (!r && r.error().is(errc::cancelled)) ++cancelled;
      });
  }
  EXPECT_EQ(cancelled, 5);
}

TEST(Correlator, ASendThatFailsEndsTheRequestAtOnce) {
  Correlator rpc(id_before_colon);
  SessionConnection none;  // no session
  auto answer = rpc.request(none, "1", "1:ping", 10s);
  ASSERT_EQ(answer.wait_for(1s), std::future_status::ready);
  auto r = answer.get();
  ASSERT_FALSE(r);
  EXPECT_TRUE(r.error().is(errc::not_connected));
  EXPECT_EQ(rpc.pending(), 0u);
}

// Many threads register, answer, time out and lose the connection at once; every
// request must end exactly once. Run under ThreadSanitizer by scripts/test.sh.
TEST(Correlator, EveryRequestEndsExactlyOnceUnderConcurrency) {
  constexpr int kThreads = 8, kPerThread = 200;
  Correlator rpc(id_before_colon);
  std::mutex m;
  std::condition_variable ended;
  std::map<std::string, int> ends;
  std::map<std::string, std::string> how;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 random(static_cast<unsigned>(t));
      for (int i = 0; i < kPerThread; ++i) {
        std::string id = std::to_string(t) + "-" + std::to_string(i);
        auto timeout = random() % 3 == 0 ? std::chrono::milliseconds(random() % 3) : std::chrono::milliseconds(10'000);
        rpc.expect(id, timeout, [&, id](Result<InboundMessage> r) {
          std::lock_guard lock(m);
          ++ends[id];
          how[id] = r ? "answer" : std::string(to_string(static_cast<errc>(r.error().code.value())));
          ended.notify_all();
        });
        if (random() % 2 == 0) {
          std::string answer = id + ":done";
          rpc.deliver(text(answer));
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  rpc.connection_lost();
  // Every request has ended, or is ending: a timeout the timer thread took just
  // before connection_lost() runs its callback on that thread (bounded wait).
  std::unique_lock lock(m);
  ended.wait_for(lock, 5s, [&] { return ends.size() == static_cast<std::size_t>(kThreads * kPerThread); });
  EXPECT_EQ(ends.size(), static_cast<std::size_t>(kThreads * kPerThread));
  std::map<std::string, int> kinds;
  for (auto& [id, n] : ends) {
    EXPECT_EQ(n, 1) << id << " ended " << n << " times";
    ++kinds[how[id]];
  }
  EXPECT_GT(kinds["answer"], 0);
  EXPECT_GT(kinds["connection_lost"], 0);
  EXPECT_EQ(rpc.pending(), 0u);
}

TEST(Correlator, OverTheEngineAnswersMatchAndADropFailsWhatWaits) {
  auto server = memory::Server::create();
  Correlator rpc(id_before_colon);
  auto client = std::make_shared<Recorder>();
  std::mutex m;
  SessionConnection connection;
  client->on_open_hook = [&](Context& ctx, const HandshakeResponse&, bool) {
    std::lock_guard lock(m);
    connection = ctx.connection();
    return Error{};
  };
  client->on_message_hook = [&](Context&, const Message& message) { rpc.deliver(message); };
  client->on_close_hook = [&](Context&, const std::optional<CloseFrame>&) {
    rpc.connection_lost();
    return std::optional<CloseFrame>{};
  };
  EngineOptions o;
  o.url = "ws://rpc.test/";
  o.auto_reconnect = false;
  Engine engine(o, client, server->connector());
  ASSERT_FALSE(engine.start());
  auto peer = server->accept(5s);
  SessionConnection kept;
  {
    std::lock_guard lock(m);
    kept = connection;
  }
  auto answered = rpc.request(kept, "1", "1:what time is it", 5s);
  ASSERT_TRUE(peer->wait_received(1, 5s));
  EXPECT_EQ(peer->received()[0].payload, "1:what time is it");
  peer->send(MessageType::text, "1:noon");
  auto r = answered.get();
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(r->payload, "1:noon");

  auto waiting = rpc.request(kept, "2", "2:and now?", 5s);
  ASSERT_TRUE(peer->wait_received(2, 5s));
  peer->drop();
  auto lost = waiting.get();
  ASSERT_FALSE(lost);
  EXPECT_TRUE(lost.error().is(errc::connection_lost)) << lost.error().message();
  ASSERT_FALSE(engine.wait_stopped(5s));
}
