// The Beast adapter on its own, against the project's server: the adapter contract.
#include <gtest/gtest.h>

#include <future>

#include <wscengine/beast.hpp>
#include <wscengine/beast/underlying.hpp>
#include <wscengine/wscengine.hpp>

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

TEST_F(BeastAdapter, DialTwiceIsAlreadyConnected) {
  auto c = connector->make_connection(*runtime);
  auto first = c->dial(request());
  ASSERT_TRUE(first) << first.error().message();
  EXPECT_EQ(first->status, 101);
  EXPECT_TRUE(c->is_open());
  auto second = c->dial(request());
  ASSERT_FALSE(second);
  EXPECT_TRUE(second.error().is(errc::already_connected));
  EXPECT_NE(c->underlying().as<beast::PlainStream>(), nullptr);
  EXPECT_EQ(c->underlying().as<beast::TlsStream>(), nullptr);
}

TEST_F(BeastAdapter, TryReadWaitsForNothingAndTheWaitCompletesWhenDataArrives) {
  auto c = connector->make_connection(*runtime);
  ASSERT_TRUE(c->dial(request()));
  InboundMessage m;
  EXPECT_TRUE(c->try_read(m).is(errc::would_block));
  std::promise<Error> woke;
  c->async_wait_readable([&](Error e) { woke.set_value(e); });
  ASSERT_FALSE(c->write(MessageType::binary, "abc"));  // echoed back
  auto f = woke.get_future();
  ASSERT_EQ(f.wait_for(5s), std::future_status::ready);
  EXPECT_FALSE(f.get());
  Error e;
  for (int i = 0; i < 100 && (e = c->try_read(m)).is(errc::would_block); ++i) std::this_thread::sleep_for(10ms);
  ASSERT_FALSE(e) << e.message();
  EXPECT_EQ(m.type, MessageType::binary);
  EXPECT_EQ(m.payload, "abc");
}

TEST_F(BeastAdapter, CancelWaitCompletesThePendingWait) {
  auto c = connector->make_connection(*runtime);
  ASSERT_TRUE(c->dial(request()));
  std::promise<Error> woke;
  c->async_wait_readable([&](Error e) { woke.set_value(e); });
  c->cancel_wait();
  auto f = woke.get_future();
  ASSERT_EQ(f.wait_for(5s), std::future_status::ready);
  EXPECT_TRUE(f.get().is(errc::cancelled));
}

TEST_F(BeastAdapter, BlockingReadTimesOutThenReads) {
  auto c = connector->make_connection(*runtime);
  ASSERT_TRUE(c->dial(request()));
  InboundMessage m;
  EXPECT_TRUE(c->read(m, 50ms).is(errc::timeout));
  ASSERT_FALSE(c->write(MessageType::text, "hello"));
  ASSERT_FALSE(c->read(m, 5s));
  EXPECT_EQ(m.payload, "hello");
}

TEST_F(BeastAdapter, PingWaitsForThePongEvenWithNobodyReading) {
  auto c = connector->make_connection(*runtime);
  ASSERT_TRUE(c->dial(request()));
  Error e = c->ping("are you there", 5s);
  EXPECT_FALSE(e) << e.message();
}

TEST_F(BeastAdapter, CloseTwiceIsClosed) {
  auto c = connector->make_connection(*runtime);
  ASSERT_TRUE(c->dial(request()));
  EXPECT_FALSE(c->close({close_code::normal, "bye"}, 5s));
  EXPECT_FALSE(c->is_open());
  EXPECT_TRUE(c->close({close_code::normal, "again"}, 5s).is(errc::closed));
  EXPECT_TRUE(c->write(MessageType::text, "late").is(errc::closed));
}

TEST_F(BeastAdapter, AbortWakesABlockedRead) {
  auto c = connector->make_connection(*runtime);
  ASSERT_TRUE(c->dial(request()));
  auto reader = std::async(std::launch::async, [&] {
    InboundMessage m;
    return c->read(m, 30s);
  });
  std::this_thread::sleep_for(50ms);
  auto t0 = std::chrono::steady_clock::now();
  c->abort();
  ASSERT_EQ(reader.wait_for(5s), std::future_status::ready);
  EXPECT_TRUE(reader.get().is(errc::closed));
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 5s);
}

TEST_F(BeastAdapter, DialTimeoutAgainstASilentServer) {
  // A listener that accepts TCP but never answers the upgrade.
  tools::ServerOptions silent_options;
  tools::TestServer silent(silent_options);
  silent.on_request = [](const std::string&, const std::vector<Header>&) {
    std::this_thread::sleep_for(1s);
    return 503;
  };
  silent.start();
  auto c = connector->make_connection(*runtime);
  DialRequest r = request();
  r.url = parse_url(silent.url("/")).value();
  r.timeout = 300ms;
  auto t0 = std::chrono::steady_clock::now();
  auto result = c->dial(r);
  ASSERT_FALSE(result);
  EXPECT_TRUE(result.error().is(errc::timeout)) << result.error().message();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 2s);
}
