// The Beast adapter's own objects through underlying(). The adapter contract itself is
// tests/contract/adapter_contract_test.cpp, for every adapter.
#include <gtest/gtest.h>

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

TEST_F(BeastAdapter, UnderlyingIsThePlainStreamForWs) {
  auto c = connector->make_connection(*runtime);
  auto first = c->dial(request());
  ASSERT_TRUE(first) << first.error().message();
  EXPECT_EQ(first->status, 101);
  EXPECT_NE(c->underlying().as<beast::PlainStream>(), nullptr);
  EXPECT_EQ(c->underlying().as<beast::TlsStream>(), nullptr);
}
