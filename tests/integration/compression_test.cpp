// permessage-deflate (RFC 7692) with every parameter combination, against servers no
// one here wrote: Python `websockets` and Node `ws`, every engine at once on one
// runtime. Messages that compress well (a feed's ticks, 1,000 of them through one
// context) and badly (noise), small and large, each must come back as it was sent,
// and each server must have answered what was asked. The Beast adapter only: the
// websocketpp adapter refuses compression (docs/adapters.md).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <condition_variable>
#include <mutex>

#include <wscengine/beast.hpp>
#include <wscengine/wscengine.hpp>

#include "support/process.hpp"
#include "support/recorder.hpp"
#include "support/text.hpp"

using namespace wscengine;
using namespace wscengine::test;
using namespace std::chrono_literals;
using ::testing::HasSubstr;

namespace {

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr int kTicks = 200;  // the sanitizers' threads are several times slower
constexpr int kNoise = 2;
constexpr std::size_t kLarge = 256u << 10;
#else
constexpr int kTicks = 1000;
constexpr int kNoise = 8;
constexpr std::size_t kLarge = 1u << 20;
#endif

std::string noise(std::size_t n, std::uint32_t seed) {
  std::string out(n, '\0');
  for (auto& c : out) {
    seed = seed * 1664525u + 1013904223u;
    c = static_cast<char>(seed >> 24);
  }
  return out;
}

// What one engine sends, in order: ticks, noise, one large compressible message.
std::vector<std::pair<MessageType, std::string>> script() {
  std::vector<std::pair<MessageType, std::string>> out;
  for (int i = 0; i < kTicks; ++i)
    out.emplace_back(MessageType::text, cat("{\"type\":\"tick\",\"symbol\":\"BTC-USD\",\"seq\":", i,
                                            ",\"price\":", 40000 + i % 97, ".", i % 10, "}"));
  for (int i = 0; i < kNoise; ++i) out.emplace_back(MessageType::binary, noise(65536, static_cast<std::uint32_t>(i)));
  std::string large;
  while (large.size() < kLarge) large += cat("row ", large.size(), ": the same words again and again; ");
  out.emplace_back(MessageType::text, large);
  out.emplace_back(MessageType::text, "x");  // one byte, under any min_size
  return out;
}

// One engine's view: what the server answered and what came back.
struct Echoes {
  std::mutex mutex;
  std::condition_variable changed;
  std::string answered;
  bool open = false;
  std::vector<std::pair<MessageType, std::string>> received;
  std::vector<std::string> errors;

  bool wait(std::size_t count, std::chrono::seconds timeout) {
    std::unique_lock lock(mutex);
    return changed.wait_for(lock, timeout, [&] { return received.size() >= count || !errors.empty(); }) &&
           errors.empty();
  }
};

std::shared_ptr<LambdaClient> client_for(const std::shared_ptr<Echoes>& echoes) {
  auto client = std::make_shared<LambdaClient>();
  client->open = [echoes](Context&, const HandshakeResponse& answer, bool) {
    std::lock_guard lock(echoes->mutex);
    echoes->answered = answer.header("Sec-WebSocket-Extensions").value_or("<none>");
    echoes->open = true;
    echoes->changed.notify_all();
    return Error{};
  };
  client->message = [echoes](Context&, const Message& m) {
    std::lock_guard lock(echoes->mutex);
    echoes->received.emplace_back(m.type, std::string(m.payload));
    echoes->changed.notify_all();
  };
  client->read_error = [echoes](Context&, const Error& e) {
    std::lock_guard lock(echoes->mutex);
    echoes->errors.push_back(e.message());
    echoes->changed.notify_all();
  };
  return client;
}

}  // namespace

TEST(Compression, EveryParameterCombinationAgainstPythonAndNodeOnOneRuntime) {
  ChildProcess python({"/usr/bin/python3", WSCENGINE_PY_SERVER});
  ChildProcess node({"node", WSCENGINE_NODE_SERVER, "--deflate"});
  const std::string servers[] = {python.first_line(20s), node.first_line(20s)};
  ASSERT_FALSE(servers[0].empty()) << "the Python websockets server did not start";
  ASSERT_FALSE(servers[1].empty()) << "the Node ws server did not start";
  const auto sent = script();

  auto runtime = Runtime::create({2, 2});
  struct One {
    std::string server;
    DeflateOptions deflate;
    std::shared_ptr<Echoes> echoes = std::make_shared<Echoes>();
    std::unique_ptr<Engine> engine;
  };
  std::vector<One> all;
  for (const auto& server : servers) {
    for (int combination = 0; combination < 16; ++combination) {
      One one;
      one.server = server;
      one.deflate.server_max_window_bits = combination & 1 ? 10 : 15;
      one.deflate.client_max_window_bits = combination & 2 ? 9 : 15;
      one.deflate.server_no_context_takeover = (combination & 4) != 0;
      one.deflate.client_no_context_takeover = (combination & 8) != 0;
      one.deflate.level = combination % 10;
      one.deflate.min_size = combination % 3 == 0 ? 64 : 0;
      EngineOptions o;
      o.url = server + "/echo";
      o.offer_compression = true;
      o.deflate = one.deflate;
      o.delivery = combination % 2 ? Delivery::io_thread : Delivery::callback_pool;
      one.engine = std::make_unique<Engine>(o, client_for(one.echoes), beast::make_connector(), runtime);
      all.push_back(std::move(one));
    }
  }
  for (auto& one : all) ASSERT_FALSE(one.engine->start_background());
  for (auto& one : all) {
    SCOPED_TRACE(one.server);
    ASSERT_TRUE(wait_state(*one.engine, EngineState::running, 20s));
    for (const auto& [type, payload] : sent) ASSERT_FALSE(one.engine->send(type, payload));
  }
  for (auto& one : all) {
    const DeflateOptions& d = one.deflate;
    SCOPED_TRACE(cat(one.server, " server_max_window_bits ", int(d.server_max_window_bits), " client_max_window_bits ",
                     int(d.client_max_window_bits), " server_no_context_takeover ", d.server_no_context_takeover,
                     " client_no_context_takeover ", d.client_no_context_takeover, " level ", d.level, " min_size ",
                     d.min_size));
    ASSERT_TRUE(one.echoes->wait(sent.size(), 60s)) << (one.echoes->errors.empty() ? "" : one.echoes->errors[0]);
    std::lock_guard lock(one.echoes->mutex);
    ASSERT_EQ(one.echoes->received.size(), sent.size());
    for (std::size_t i = 0; i < sent.size(); ++i) {
      ASSERT_EQ(one.echoes->received[i].first, sent[i].first) << "message " << i;
      ASSERT_TRUE(one.echoes->received[i].second == sent[i].second) << "message " << i << " came back changed";
    }
    const std::string& answer = one.echoes->answered;
    EXPECT_THAT(answer, HasSubstr("permessage-deflate"));
    if (d.server_max_window_bits < 15) {
      EXPECT_THAT(answer, HasSubstr("server_max_window_bits=10"));
    }
    if (d.server_no_context_takeover) {
      EXPECT_THAT(answer, HasSubstr("server_no_context_takeover"));
    }
  }
  for (auto& one : all) EXPECT_FALSE(one.engine->stop());
}
