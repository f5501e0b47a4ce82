// The Beast adapter's own objects through underlying(). The adapter contract itself is
// tests/contract/adapter_contract_test.cpp, for every adapter.
#include <gtest/gtest.h>

#include <sys/socket.h>

#include <atomic>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <wscengine/beast.hpp>
#include <wscengine/beast/underlying.hpp>
#include <wscengine/wscengine.hpp>

#include "frames.hpp"
#include "support/recorder.hpp"
#include "support/test_pki.hpp"
#include "support/text.hpp"
#include "test_server.hpp"

using namespace wscengine;
using namespace std::chrono_literals;

namespace {

class BeastAdapter : public ::testing::Test {
 protected:
  void SetUp() override {
    server.on_session = tools::echo_session;
    server.start();
  }
  DialRequest request() {
    DialRequest r;
    r.url = parse_url(server.url("/adapter")).value();
    r.timeout = 5s;
    return r;
  }
  std::shared_ptr<Runtime> runtime = Runtime::create({1, 1});
  tools::TestServer server;
  std::shared_ptr<Connector> connector = beast::make_connector();
};

}  // namespace

TEST_F(BeastAdapter, UnderlyingIsThePlainStreamForWs) {
  auto c = connector->make_connection(*runtime);
  auto first = c->dial(request());
  ASSERT_TRUE(first) << first.error().message();
  EXPECT_EQ(first->status, 101);
  EXPECT_NE(c->underlying().as<beast::PlainStream>(), nullptr);
  EXPECT_EQ(c->underlying().as<beast::TlsStream>(), nullptr);
}

// ------------------------------------------------------------------ low-water mark
//
// While a large frame is partly received, the Beast adapter raises its socket's
// SO_RCVLOWAT, so that neither the I/O thread nor the reader wakes for every arrival
// of bytes that cannot finish the frame (docs/engine-operations.md, "Waking up for
// large frames"). The mark must never make a wait sleep through the frame's end:
// these tests send the rest of a frame with nothing behind it, no further frame and
// no FIN, so that a mark one byte too high never wakes the reader.

namespace {

std::string patterned(std::size_t size) {
  std::string s(size, '\0');
  for (std::size_t i = 0; i < size; ++i) s[i] = static_cast<char>((i * 7 + i / 251) & 0xff);
  return s;
}

// SO_RCVLOWAT of the socket under the engine's current connection (the kernel's
// value: read from this thread without touching the adapter's state).
int low_water_of(int fd) {
  int mark = 0;
  socklen_t size = sizeof mark;
  return ::getsockopt(fd, SOL_SOCKET, SO_RCVLOWAT, &mark, &size) == 0 ? mark : -1;
}

int socket_of(Engine& engine, bool tls) {
  auto underlying = engine.connection().underlying();
  if (tls) {
    auto* ws = underlying.as<beast::TlsStream>();
    return ws ? ws->next_layer().lowest().socket().native_handle() : -1;
  }
  auto* ws = underlying.as<beast::PlainStream>();
  return ws ? ws->next_layer().lowest().socket().native_handle() : -1;
}

// Polls (bounded) until `done` holds; the condition is a definite state, not a delay.
template <class Condition>
bool eventually(Condition done, std::chrono::milliseconds within = 10s) {
  const auto deadline = std::chrono::steady_clock::now() + within;
  while (!done()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

// One step of the server's script, released by the test.
struct Gate {
  std::promise<void> open;
  std::shared_future<void> opened = open.get_future().share();
  bool wait() const { return opened.wait_for(20s) == std::future_status::ready; }
};

enum class Rest { whole, byte_by_byte_tail, coalesced_with_ping_and_next };

std::string rest_name(Rest r) {
  switch (r) {
    case Rest::whole:
      return "whole";
    case Rest::byte_by_byte_tail:
      return "byte_by_byte_tail";
    case Rest::coalesced_with_ping_and_next:
      return "coalesced_with_ping_and_next";
  }
  return "?";
}

struct LowWaterCase {
  bool tls = false;
  Delivery delivery = Delivery::callback_pool;
  Rest rest = Rest::whole;
};

class LowWater : public ::testing::TestWithParam<LowWaterCase> {};

}  // namespace

// Sizes of every length class at or above the mark's threshold: 16-bit (40,000 and
// 65,535) and 64-bit (65,536 and 1 MiB). The server sends a frame's header and its
// first quarter, and waits until the client waits with a raised mark, no higher than
// what is still to come; then the rest (whole, with its last 64 bytes one write each,
// or together with a ping and the next frame), and nothing more. The message must
// arrive whole, the ping be answered, and a small frame sent afterwards arrive too
// (the mark is back at 1 between frames).
TEST_P(LowWater, AWaitInsideALargeFrameWakesOnItsLastByteWithNothingBehindIt) {
  const LowWaterCase param = GetParam();
  const std::vector<std::size_t> sizes = {40000, 65535, 65536, std::size_t{1} << 20};
  test::TestPki pki;
  tools::ServerOptions server_options;
  if (param.tls) {
    pki = test::make_test_pki();
    server_options.cert_file = pki.server_chain;
    server_options.key_file = pki.server_key;
  }
  tools::TestServer server(server_options);
  std::vector<std::unique_ptr<Gate>> rest_gates, next_gates;
  for (std::size_t i = 0; i < sizes.size(); ++i) {
    rest_gates.push_back(std::make_unique<Gate>());
    next_gates.push_back(std::make_unique<Gate>());
  }
  server.on_session = [&](tools::ServerSession& s) {
    for (std::size_t i = 0; i < sizes.size(); ++i) {
      const std::string frame = tools::server_frame(0x82, patterned(sizes[i]));
      const std::size_t first = frame.size() - sizes[i] + sizes[i] / 4;  // the header and a quarter
      if (s.send_raw(frame.substr(0, first))) return;
      if (!rest_gates[i]->wait()) return;
      const std::string next = test::cat("after ", i);
      switch (param.rest) {
        case Rest::whole:
          if (s.send_raw(frame.substr(first))) return;
          break;
        case Rest::byte_by_byte_tail:
          if (s.send_raw(frame.substr(first, frame.size() - first - 64))) return;
          for (std::size_t b = frame.size() - 64; b < frame.size(); ++b)
            if (s.send_raw(frame.substr(b, 1))) return;
          break;
        case Rest::coalesced_with_ping_and_next:
          if (s.send_raw(frame.substr(first) + tools::server_frame(0x89, "beat") + tools::server_frame(0x81, next)))
            return;
          break;
      }
      if (!next_gates[i]->wait()) return;
      if (param.rest != Rest::coalesced_with_ping_and_next && s.send(MessageType::text, next)) return;
    }
    InboundMessage ignored;
    (void)s.read(ignored, 20s);  // the client's close
  };
  server.start();

  std::atomic<int> pongs_sent{0};
  EngineOptions o;
  o.url = param.tls ? test::cat("wss://localhost:", server.port(), "/") : server.url("/");
  if (param.tls) o.tls.ca_file = pki.ca_file;
  o.auto_reconnect = false;
  o.delivery = param.delivery;
  o.max_message_size = 2u << 20;
  o.on_control_frame = [&](const ControlFrameEvent& e) {
    if (e.kind == ControlFrameKind::pong_sent) pongs_sent.fetch_add(1);
  };
  auto recorder = std::make_shared<test::Recorder>();
  Engine engine(o, recorder, beast::make_connector());
  ASSERT_FALSE(engine.start());
  const int fd = socket_of(engine, param.tls);
  ASSERT_GE(fd, 0);

  std::size_t messages = 0;
  for (std::size_t i = 0; i < sizes.size(); ++i) {
    SCOPED_TRACE(test::cat("size ", sizes[i]));
    const std::size_t still_to_come = sizes[i] - sizes[i] / 4;
    int seen = 0;
    const bool raised = eventually([&] {
      seen = low_water_of(fd);
      return seen > 1 && static_cast<std::size_t>(seen) <= still_to_come;
    });
    EXPECT_TRUE(raised) << "the mark while waiting inside the frame: " << seen << ", " << still_to_come
                        << " bytes still to come";
    rest_gates[i]->open.set_value();
    ASSERT_TRUE(recorder->wait_count(test::Event::message, ++messages, 20s));
    EXPECT_TRUE(recorder->events_of(test::Event::message)[messages - 1].payload == patterned(sizes[i]));
    next_gates[i]->open.set_value();
    ASSERT_TRUE(recorder->wait_count(test::Event::message, ++messages, 20s));
    EXPECT_EQ(recorder->events_of(test::Event::message)[messages - 1].payload, test::cat("after ", i));
    if (param.rest == Rest::coalesced_with_ping_and_next) {
      EXPECT_TRUE(eventually([&] { return pongs_sent.load() == static_cast<int>(i + 1); }));
    }
  }
  EXPECT_FALSE(engine.stop());
  recorder->mark_stopped();
  EXPECT_TRUE(recorder->violations().empty());
  EXPECT_EQ(recorder->count(test::Event::read_error), 0u);
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, LowWater,
    ::testing::Values(LowWaterCase{false, Delivery::callback_pool, Rest::whole},
                      LowWaterCase{false, Delivery::callback_pool, Rest::byte_by_byte_tail},
                      LowWaterCase{false, Delivery::callback_pool, Rest::coalesced_with_ping_and_next},
                      LowWaterCase{false, Delivery::io_thread, Rest::whole},
                      LowWaterCase{true, Delivery::callback_pool, Rest::whole},
                      LowWaterCase{true, Delivery::callback_pool, Rest::byte_by_byte_tail},
                      LowWaterCase{true, Delivery::callback_pool, Rest::coalesced_with_ping_and_next},
                      LowWaterCase{true, Delivery::io_thread, Rest::whole}),
    [](const ::testing::TestParamInfo<LowWaterCase>& info) {
      return test::cat(info.param.tls ? "wss_" : "ws_",
                       info.param.delivery == Delivery::io_thread ? "io_thread_" : "callback_pool_",
                       rest_name(info.param.rest));
    });

// Dozens of connections on one runtime (one I/O thread, two callback threads). Eight
// peers stall inside a large frame (a quarter sent, the connection left open): their
// readers wait with raised marks. Sixteen others meanwhile stream 40 messages of
// 64 KiB each, every one sent in three pieces, and all arrive whole and in order.
// Then the stalled peers send the rest of their frames, with nothing behind, and
// those messages arrive too.
TEST(LowWaterIsolation, ConnectionsStalledInsideLargeFramesDoNotHoldTheOthers) {
  constexpr int kStalled = 8, kFlowing = 16, kMessages = 40;
  constexpr std::size_t kSize = 65536;
  const std::string payload = patterned(kSize);
  Gate release;
  tools::TestServer server;
  server.on_session = [&](tools::ServerSession& s) {
    const bool stalled = s.target() == "/stalled";
    if (stalled) {
      const std::string frame = tools::server_frame(0x82, payload);
      const std::size_t first = frame.size() - kSize + kSize / 4;  // the header and a quarter
      if (s.send_raw(frame.substr(0, first))) return;
      if (!release.wait()) return;
      if (s.send_raw(frame.substr(first))) return;
    } else {
      for (int m = 0; m < kMessages; ++m) {
        std::string bytes = tools::server_frame(0x82, payload);
        bytes[bytes.size() - 1] = static_cast<char>(m);  // each message its own
        const std::size_t third = bytes.size() / 3;
        if (s.send_raw(bytes.substr(0, third)) || s.send_raw(bytes.substr(third, third)) ||
            s.send_raw(bytes.substr(2 * third)))
          return;
      }
    }
    InboundMessage ignored;
    (void)s.read(ignored, 30s);  // the client's close
  };
  server.start();
  auto runtime = Runtime::create({1, 2});
  auto connector = beast::make_connector();
  std::vector<std::shared_ptr<test::Recorder>> recorders;
  std::vector<std::unique_ptr<Engine>> engines;
  for (int i = 0; i < kStalled + kFlowing; ++i) {
    EngineOptions o;
    o.url = server.url(i < kStalled ? "/stalled" : "/flowing");
    o.auto_reconnect = false;
    recorders.push_back(std::make_shared<test::Recorder>());
    engines.push_back(std::make_unique<Engine>(o, recorders.back(), connector, runtime));
    ASSERT_FALSE(engines.back()->start());
  }
  // The stalled ones wait inside their frame with a raised mark (a definite state).
  for (int i = 0; i < kStalled; ++i) {
    const int fd = socket_of(*engines[i], false);
    EXPECT_TRUE(eventually([&] { return low_water_of(fd) > 1; })) << "engine " << i;
  }
  for (int i = kStalled; i < kStalled + kFlowing; ++i) {
    ASSERT_TRUE(recorders[i]->wait_count(test::Event::message, kMessages, 30s)) << "engine " << i;
    auto got = recorders[i]->events_of(test::Event::message);
    for (int m = 0; m < kMessages; ++m) {
      ASSERT_EQ(got[m].payload.size(), kSize);
      EXPECT_EQ(got[m].payload.back(), static_cast<char>(m)) << "engine " << i;
    }
  }
  for (int i = 0; i < kStalled; ++i) EXPECT_EQ(recorders[i]->count(test::Event::message), 0u);
  release.open.set_value();
  for (int i = 0; i < kStalled; ++i) {
    ASSERT_TRUE(recorders[i]->wait_count(test::Event::message, 1, 20s)) << "engine " << i;
    EXPECT_TRUE(recorders[i]->events_of(test::Event::message)[0].payload == payload);
  }
  for (std::size_t i = 0; i < engines.size(); ++i) {
    EXPECT_FALSE(engines[i]->stop());
    recorders[i]->mark_stopped();
    EXPECT_TRUE(recorders[i]->violations().empty());
  }
}
