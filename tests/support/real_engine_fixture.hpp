// Test support: one engine per test over a real adapter (and delivery mode), beside
// the project's test server; stopped and checked for contract violations at the end.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <string>

#include <wscengine/wscengine.hpp>

#include "support/real_adapters.hpp"
#include "support/recorder.hpp"
#include "test_server.hpp"

namespace wscengine::test {

class RealEngineTest : public ::testing::TestWithParam<RealAdapter> {
 protected:
  void TearDown() override {
    stop_and_check(engine, *client);
    server.stop();
  }
  /// Options for `url` in the parameter's delivery mode, with short reconnect delays.
  EngineOptions options(const std::string& url) {
    EngineOptions o;
    o.url = url;
    o.delivery = GetParam().delivery;
    o.backoff.initial_delay = std::chrono::milliseconds(10);
    o.backoff.max_delay = std::chrono::milliseconds(50);
    return o;
  }
  void make(const EngineOptions& o) { engine = std::make_unique<Engine>(o, client, GetParam().make()); }

  tools::TestServer server;
  std::shared_ptr<Recorder> client = std::make_shared<Recorder>();
  std::unique_ptr<Engine> engine;
};

}  // namespace wscengine::test
