// Keyed in-order dispatch (EngineOptions::message_key): one OnMessage at a time per
// key, in sequence order; different keys in parallel across the slots; nothing read
// is dropped. Run under ThreadSanitizer by scripts/test.sh.
#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include <wscengine/memory.hpp>
#include <wscengine/wscengine.hpp>

#include "support/recorder.hpp"
#include "support/text.hpp"

using namespace wscengine;
using namespace wscengine::test;

namespace {

// Messages are "<key>:<n>" where n counts that key's messages from 0.
std::string key_of(const Message& m) { return std::string(m.payload.substr(0, m.payload.find(':'))); }
int number_of(std::string_view payload) { return std::stoi(std::string(payload.substr(payload.find(':') + 1))); }

class Keyed : public ::testing::Test {
 protected:
  std::shared_ptr<memory::Server> server = memory::Server::create();
  std::mutex mutex;
  std::map<std::string, int> next;  // the number each key must show next
  std::map<std::string, std::uint64_t> last_sequence;
  std::set<std::string> running;  // keys inside OnMessage now
  std::vector<std::string> violations;
  std::atomic<int> delivered{0}, concurrent{0}, most_concurrent{0};
  std::function<void(const Message&)> work = [](const Message&) {};

  std::shared_ptr<LambdaClient> client() {
    auto c = std::make_shared<LambdaClient>();
    c->message = [this](Context&, const Message& m) {
      std::string key = key_of(m);
      {
        std::lock_guard lock(mutex);
        // std::string appends: GCC 12 warns falsely (-Wrestrict) on "literal" + std::string.
        if (!running.insert(key).second)
          violations.push_back(std::string("key ").append(key).append(" ran twice at once"));
        if (number_of(m.payload) != next[key])
          violations.push_back(std::string("key ").append(key).append(" out of order at ").append(m.payload));
        auto it = last_sequence.find(key);
        if (it != last_sequence.end() && it->second >= m.sequence)
          violations.push_back(std::string("sequence went back for ").append(key));
        last_sequence[key] = m.sequence;
        ++next[key];
      }
      int now = ++concurrent;
      for (int seen = most_concurrent; now > seen && !most_concurrent.compare_exchange_weak(seen, now);) {
      }
      work(m);
      --concurrent;
      {
        std::lock_guard lock(mutex);
        running.erase(key);
      }
      ++delivered;
    };
    return c;
  }
  EngineOptions options(std::size_t slots) {
    EngineOptions o;
    o.url = "ws://keyed.test/";
    o.reader_slots = slots;
    o.message_key = key_of;
    return o;
  }
  bool wait_delivered(int n) {
    for (int i = 0; i < 2000 && delivered < n; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    return delivered >= n;
  }
};

}  // namespace

TEST_F(Keyed, SameKeyInOrderOneAtATimeManyKeysEightSlots) {
  constexpr int kKeys = 40, kMessages = 4000;
  work = [](const Message& m) {
    // Uneven work, so that slots finish out of order.
    if (m.sequence % 7 == 0) std::this_thread::sleep_for(std::chrono::microseconds(200));
  };
  Engine engine(options(8), client(), server->connector());
  ASSERT_FALSE(engine.start());
  auto peer = server->accept(5s);
  std::mt19937 random(7);
  std::map<std::string, int> sent;
  for (int i = 0; i < kMessages; ++i) {
    // A few hot keys and a long tail, like a market feed.
    std::string key = test::cat("k", random() % 4 == 0 ? random() % 3 : random() % kKeys);
    peer->send(MessageType::text, key + ":" + std::to_string(sent[key]++));
  }
  ASSERT_TRUE(wait_delivered(kMessages));
  ASSERT_FALSE(engine.stop());
  std::lock_guard lock(mutex);
  EXPECT_TRUE(violations.empty()) << violations.front();
  EXPECT_EQ(next, sent) << "every key saw all its messages";
  EXPECT_GT(most_concurrent.load(), 1) << "different keys ran in parallel";
  EXPECT_LE(most_concurrent.load(), 8);
}

TEST_F(Keyed, DifferentKeysRunAtTheSameTime) {
  // Deterministic: "a" waits inside OnMessage until "b" is running too.
  std::mutex m;
  std::condition_variable cv;
  bool a_in = false, b_in = false, both = false;
  work = [&](const Message& msg) {
    std::unique_lock lock(m);
    (key_of(msg) == "a" ? a_in : b_in) = true;
    cv.notify_all();
    if (cv.wait_for(lock, 5s, [&] { return a_in && b_in; })) both = true;
  };
  Engine engine(options(2), client(), server->connector());
  ASSERT_FALSE(engine.start());
  auto peer = server->accept(5s);
  peer->send(MessageType::text, "a:0");
  peer->send(MessageType::text, "a:1");  // waits for a:0, does not block b
  peer->send(MessageType::text, "b:0");
  ASSERT_TRUE(wait_delivered(3));
  ASSERT_FALSE(engine.stop());
  EXPECT_TRUE(both);
  std::lock_guard lock(mutex);
  EXPECT_TRUE(violations.empty()) << violations.front();
}

TEST_F(Keyed, OneHotKeyPastTheWaitingLimitStaysInOrder) {
  constexpr int kMessages = 5000;  // more than the 1024 that may wait for a key
  Engine engine(options(4), client(), server->connector());
  ASSERT_FALSE(engine.start());
  auto peer = server->accept(5s);
  for (int i = 0; i < kMessages; ++i) peer->send(MessageType::text, "hot:" + std::to_string(i));
  ASSERT_TRUE(wait_delivered(kMessages));
  ASSERT_FALSE(engine.stop());
  std::lock_guard lock(mutex);
  EXPECT_TRUE(violations.empty()) << violations.front();
  EXPECT_EQ(next["hot"], kMessages);
  EXPECT_EQ(most_concurrent.load(), 1);
}

TEST_F(Keyed, StoppingDeliversWhatWasReadBeforeOnClose) {
  std::atomic<int> closes{0}, delivered_at_close{-1};
  auto c = client();
  c->close = [&](Context&, const std::optional<CloseFrame>&) {
    delivered_at_close = delivered.load();
    ++closes;
    return std::optional<CloseFrame>{};
  };
  work = [](const Message&) { std::this_thread::sleep_for(std::chrono::microseconds(100)); };
  Engine engine(options(4), c, server->connector());
  ASSERT_FALSE(engine.start());
  auto peer = server->accept(5s);
  for (int i = 0; i < 2000; ++i) peer->send(MessageType::text, test::cat("k", i % 3, ":", i / 3));
  ASSERT_TRUE(wait_delivered(50));
  ASSERT_FALSE(engine.stop());
  EXPECT_EQ(closes, 1);
  EXPECT_EQ(delivered_at_close.load(), delivered.load()) << "no OnMessage after OnClose";
  std::lock_guard lock(mutex);
  EXPECT_TRUE(violations.empty()) << violations.front();
}
