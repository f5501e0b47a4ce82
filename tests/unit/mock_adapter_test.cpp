// The engine's conversation with an adapter, checked call by call with GoogleMock.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <future>

#include <wscengine/adapter.hpp>
#include <wscengine/mock.hpp>
#include <wscengine/wscengine.hpp>

#include "support/recorder.hpp"

using namespace wscengine;
using namespace wscengine::test;
using ::testing::_;
using ::testing::InSequence;
using ::testing::Invoke;
using ::testing::NiceMock;
using ::testing::Return;

namespace {
EngineOptions options() {
  EngineOptions o;
  o.url = "ws://mock.test/";
  return o;
}
}  // namespace

TEST(MockAdapter, ClosesWithOnClosesCodeAfterCancellingTheWait) {
  auto connector = std::make_shared<mock::QueueConnector>();
  auto conn = std::make_unique<NiceMock<mock::MockConnection>>();
  auto* c = conn.get();
  std::promise<void> waiting;
  Connection::WaitHandler pending;
  ON_CALL(*c, async_dial(_, _)).WillByDefault(Invoke([](DialRequest, Connection::DialHandler done) {
    done(HandshakeResponse{101, {}, {}, false});
  }));
  ON_CALL(*c, is_open()).WillByDefault(Return(true));
  ON_CALL(*c, try_read(_)).WillByDefault(Return(Error(errc::would_block)));
  EXPECT_CALL(*c, async_wait_readable(_)).WillOnce(Invoke([&](Connection::WaitHandler h) {
    pending = std::move(h);
    waiting.set_value();
  }));
  {
    InSequence order;
    EXPECT_CALL(*c, cancel_wait()).WillOnce(Invoke([&] { pending(Error(errc::cancelled)); }));
    EXPECT_CALL(*c, close(CloseFrame{4100, "custom"}, _)).WillOnce(Return(Error{}));
  }
  connector->push(std::move(conn));
  auto client = std::make_shared<Recorder>();
  client->on_close_hook = [](Context&, const std::optional<CloseFrame>&) { return CloseFrame{4100, "custom"}; };
  Engine engine(options(), client, connector);
  ASSERT_FALSE(engine.start());
  ASSERT_EQ(waiting.get_future().wait_for(std::chrono::seconds(5)), std::future_status::ready);
  ASSERT_FALSE(engine.stop());
}

TEST(MockAdapter, CloseFailureReachesOnCloseError) {
  auto connector = std::make_shared<mock::QueueConnector>();
  auto conn = std::make_unique<NiceMock<mock::MockConnection>>();
  auto* c = conn.get();
  Connection::WaitHandler pending;
  std::mutex m;
  ON_CALL(*c, async_dial(_, _)).WillByDefault(Invoke([](DialRequest, Connection::DialHandler done) {
    done(HandshakeResponse{101, {}, {}, false});
  }));
  ON_CALL(*c, is_open()).WillByDefault(Return(true));
  ON_CALL(*c, try_read(_)).WillByDefault(Return(Error(errc::would_block)));
  ON_CALL(*c, async_wait_readable(_)).WillByDefault(Invoke([&](Connection::WaitHandler h) {
    std::lock_guard lock(m);
    pending = std::move(h);
  }));
  ON_CALL(*c, cancel_wait()).WillByDefault(Invoke([&] {
    Connection::WaitHandler h;
    {
      std::lock_guard lock(m);
      h = std::move(pending);
    }
    if (h) h(Error(errc::cancelled));
  }));
  EXPECT_CALL(*c, close(_, _)).WillOnce(Return(Error(errc::timeout, "peer never answered the close")));
  connector->push(std::move(conn));
  auto client = std::make_shared<Recorder>();
  Engine engine(options(), client, connector);
  ASSERT_FALSE(engine.start());
  ASSERT_FALSE(engine.stop());
  auto errors = client->events_of(Event::close_error);
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_TRUE(errors[0].error.is(errc::timeout));
}

TEST(MockAdapter, NoCloseCallWhenThePeerAlreadyClosed) {
  auto connector = std::make_shared<mock::QueueConnector>();
  auto conn = std::make_unique<NiceMock<mock::MockConnection>>();
  auto* c = conn.get();
  std::atomic<bool> open{true};
  ON_CALL(*c, async_dial(_, _)).WillByDefault(Invoke([](DialRequest, Connection::DialHandler done) {
    done(HandshakeResponse{101, {}, {}, false});
  }));
  ON_CALL(*c, is_open()).WillByDefault(Invoke([&] { return open.load(); }));
  EXPECT_CALL(*c, try_read(_)).WillOnce(Invoke([&](InboundMessage&) {
    open = false;
    return Error::closed({1000, "done"});
  }));
  EXPECT_CALL(*c, close(_, _)).Times(0);
  connector->push(std::move(conn));
  auto client = std::make_shared<Recorder>();
  auto o = options();
  o.auto_reconnect = false;
  Engine engine(o, client, connector);
  ASSERT_FALSE(engine.start());
  ASSERT_TRUE(client->wait_count(Event::close, 1));
  ASSERT_FALSE(engine.wait_stopped(std::chrono::seconds(10)));
}
