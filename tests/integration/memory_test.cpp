// Contract: memory does not grow with the number of messages handled or of
// reconnects survived. (The original Go engine leaked ~575 bytes per message.)
#include <gtest/gtest.h>
#include <malloc.h>

#include <atomic>
#include <thread>

#include <wscengine/beast.hpp>
#include <wscengine/memory.hpp>
#include <wscengine/wscengine.hpp>

#include "test_server.hpp"

using namespace wscengine;
using namespace std::chrono_literals;

namespace {

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
// Sanitizers keep freed memory in quarantine and replace malloc: count, don't weigh.
constexpr bool kHeapMeasurable = false;
constexpr int kMessages = 100'000;
constexpr int kReconnects = 100;
#else
constexpr bool kHeapMeasurable = true;
constexpr int kMessages = 1'000'000;
constexpr int kReconnects = 1'000;
#endif

// Bytes in use from the heap, small blocks and mmap-ed large ones.
std::size_t heap_in_use() {
  auto info = mallinfo2();
  return info.uordblks + info.hblkhd;
}

bool wait_until(const std::function<bool()>& done, std::chrono::seconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

}  // namespace

TEST(Memory, AMillionMessagesDoNotGrowTheHeap) {
  tools::TestServer server;
  server.on_session = [](tools::ServerSession& s) {
    std::string payload(64, 'm');
    for (int i = 0; i < kMessages; ++i) {
      if (s.send(MessageType::binary, payload)) return;
    }
    InboundMessage m;
    s.read(m, 60s);
  };
  server.start();
  std::atomic<int> received{0};
  std::atomic<bool> sequence_ok{true};
  auto client = std::make_shared<LambdaClient>();
  client->message = [&](Context&, const Message& m) {
    int n = received.fetch_add(1, std::memory_order_relaxed);
    if (m.sequence != static_cast<std::uint64_t>(n) || m.payload.size() != 64) sequence_ok = false;
  };
  EngineOptions o;
  o.url = server.url("/");
  Engine engine(o, client, beast::make_connector());
  ASSERT_FALSE(engine.start());
  ASSERT_TRUE(wait_until([&] { return received.load() >= kMessages / 10; }, 120s));
  std::size_t warm = heap_in_use();
  ASSERT_TRUE(wait_until([&] { return received.load() >= kMessages; }, 300s)) << received.load() << " messages";
  std::size_t after = heap_in_use();
  EXPECT_TRUE(sequence_ok.load());
  EXPECT_FALSE(engine.stop());
  if (kHeapMeasurable) {
    EXPECT_LT(after, warm + (1u << 20)) << "heap grew by " << (after - warm) << " bytes over "
                                        << (kMessages - kMessages / 10) << " messages";
  }
  RecordProperty("heap_growth_bytes", static_cast<int>(after > warm ? after - warm : 0));
}

TEST(Memory, ReconnectsDoNotGrowTheHeap) {
  auto server = memory::Server::create();
  std::atomic<int> opens{0}, closes{0};
  auto client = std::make_shared<LambdaClient>();
  client->open = [&](Context&, const HandshakeResponse&, bool) {
    ++opens;
    return Error{};
  };
  client->message = [](Context&, const Message&) {};
  client->close = [&](Context&, const std::optional<CloseFrame>&) -> std::optional<CloseFrame> {
    ++closes;
    return std::nullopt;
  };
  EngineOptions o;
  o.url = "ws://memory.test/";
  o.backoff.initial_delay = 0ms;
  Engine engine(o, client, server->connector());
  ASSERT_FALSE(engine.start());
  std::size_t warm = 0;
  for (int i = 0; i < kReconnects; ++i) {
    auto peer = server->accept(10s);
    ASSERT_TRUE(peer) << "reconnect " << i;
    ASSERT_TRUE(wait_until([&] { return opens.load() > i; }, 10s));
    peer->send(MessageType::text, "one message per session");
    peer->drop();
    if (i == kReconnects / 10) warm = heap_in_use();
  }
  ASSERT_TRUE(wait_until([&] { return closes.load() >= kReconnects; }, 30s));
  std::size_t after = heap_in_use();
  EXPECT_FALSE(engine.stop());
  if (kHeapMeasurable) {
    EXPECT_LT(after, warm + (256u << 10)) << "heap grew by " << (after - warm) << " bytes over reconnects";
  }
}
