// Test support: an engine over the in-memory adapter with a Recorder client, fast
// backoff, and the contract's invariants checked when the test ends.
#pragma once

#include <gtest/gtest.h>

#include <memory>

#include <wscengine/memory.hpp>
#include <wscengine/wscengine.hpp>

#include "support/recorder.hpp"

namespace wscengine::test {

/// Base fixture: `make()` builds the engine, `start_and_accept()` starts it and
/// returns the server side of its connection. Thread safety: the test's thread.
class MemoryEngineTest : public ::testing::Test {
 protected:
  std::shared_ptr<memory::Server> server = memory::Server::create();
  std::shared_ptr<Recorder> client = std::make_shared<Recorder>();
  std::unique_ptr<Engine> engine;

  // The delivery mode the fixture's engines use (tests parameterised by it set it).
  Delivery delivery = Delivery::callback_pool;

  EngineOptions options() const {
    EngineOptions o;
    o.delivery = delivery;
    o.url = "ws://memory.test/feed";
    o.backoff.initial_delay = 1ms;
    o.backoff.max_delay = 5ms;
    o.open_timeout = 5s;
    return o;
  }
  void make() { make(options()); }
  void make(EngineOptions o, std::size_t slots = 1) {
    o.reader_slots = slots;
    if (slots != 1) client = std::make_shared<Recorder>(slots);
    engine = std::make_unique<Engine>(o, client, server->connector());
  }
  std::shared_ptr<memory::Peer> start_and_accept() {
    Error e = engine->start();
    EXPECT_FALSE(e) << e.message();
    auto peer = server->accept(5s);
    EXPECT_NE(peer, nullptr);
    return peer;
  }
  void TearDown() override { stop_and_check(engine, *client); }
};

}  // namespace wscengine::test
