// The engine with the Beast adapter against Python `websockets`, a server no one here wrote.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <wscengine/beast.hpp>
#include <wscengine/wscengine.hpp>

#include "support/process.hpp"
#include "support/recorder.hpp"

using namespace wscengine;
using namespace wscengine::test;
using ::testing::IsEmpty;

namespace {

class PythonPeer : public ::testing::Test {
 protected:
  void SetUp() override {
    server_ = std::make_unique<ChildProcess>(std::vector<std::string>{"/usr/bin/python3", WSCENGINE_PY_SERVER});
    base_ = server_->first_line(20s);
    ASSERT_FALSE(base_.empty()) << "the Python websockets server did not start (python3-websockets installed?)";
  }
  void TearDown() override { stop_and_check(engine, *client); }
  void make(const std::string& path, bool reconnect = true) {
    EngineOptions o;
    o.url = base_ + path;
    o.auto_reconnect = reconnect;
    o.backoff.initial_delay = 10ms;
    o.subprotocols = {"chat.v1"};
    engine = std::make_unique<Engine>(o, client, beast::make_connector());
  }

  std::unique_ptr<ChildProcess> server_;
  std::string base_;
  std::shared_ptr<Recorder> client = std::make_shared<Recorder>();
  std::unique_ptr<Engine> engine;
};

}  // namespace

TEST_F(PythonPeer, EchoBothTypes) {
  std::string subprotocol;
  client->on_open_hook = [&](Context&, const HandshakeResponse& r, bool) {
    subprotocol = r.subprotocol;
    return Error{};
  };
  make("/echo");
  ASSERT_FALSE(engine->start());
  EXPECT_EQ(subprotocol, "chat.v1");
  ASSERT_FALSE(engine->send_text("héllo"));
  ASSERT_FALSE(engine->send_binary(std::string("\x00\x01\x02", 3)));
  ASSERT_FALSE(engine->send_text(std::string(200000, 'z')));
  ASSERT_TRUE(client->wait_count(Event::message, 3));
  auto m = client->events_of(Event::message);
  EXPECT_EQ(m[0].payload, "héllo");
  EXPECT_EQ(m[1].payload, std::string("\x00\x01\x02", 3));
  EXPECT_EQ(m[2].payload.size(), 200000u);
}

TEST_F(PythonPeer, CloseCodeReachesOnClose) {
  make("/close/4002", false);
  ASSERT_FALSE(engine->start());
  ASSERT_FALSE(engine->wait_stopped(10s));
  auto close = client->events_of(Event::close);
  ASSERT_EQ(close.size(), 1u);
  ASSERT_TRUE(close[0].received);
  EXPECT_EQ(*close[0].received, (CloseFrame{4002, "bye from python"}));
  EXPECT_EQ(client->events_of(Event::message)[0].payload, "hello");
}

TEST_F(PythonPeer, DropIs1006AndReconnects) {
  make("/drop");
  ASSERT_FALSE(engine->start());
  ASSERT_TRUE(client->wait_count(Event::open, 2));
  auto close = client->events_of(Event::close);
  ASSERT_GE(close.size(), 1u);
  ASSERT_TRUE(close[0].received);
  EXPECT_EQ(close[0].received->code, close_code::abnormal);
}

TEST_F(PythonPeer, ReconnectAfterTheServerRestarts) {
  make("/echo");
  ASSERT_FALSE(engine->start());
  server_->kill();  // the Python server dies: drop, then refused reconnects
  ASSERT_TRUE(client->wait_count(Event::close, 1));
  // The first attempt may still reach the dying process's backlog (then it is reset);
  // once the process is gone every attempt is refused.
  ASSERT_TRUE(client->wait_for([](const std::vector<Event>& es) {
    for (const auto& e : es)
      if (e.kind == Event::restart_error && e.error.is(errc::connection_refused)) return true;
    return false;
  }));
}

TEST_F(PythonPeer, StopClosesNormally) {
  make("/echo");
  ASSERT_FALSE(engine->start());
  ASSERT_FALSE(engine->stop());
  client->mark_stopped();
  EXPECT_EQ(client->count(Event::close_error), 0u);
  auto close = client->events_of(Event::close);
  ASSERT_EQ(close.size(), 1u);
  EXPECT_EQ(close[0].initiator, CloseInitiator::client);
}
