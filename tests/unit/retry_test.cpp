// The restart loop's retry policy and backoff (issue 6): what is not retried, the
// server's Retry-After, backoff after short-lived connections, reset after a stable one.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <future>

#include <wscengine/memory.hpp>
#include <wscengine/wscengine.hpp>

#include "support/memory_engine_fixture.hpp"

using namespace wscengine;
using namespace wscengine::test;
using ::testing::HasSubstr;

namespace {

class RetryTest : public MemoryEngineTest {
 protected:
  std::shared_ptr<memory::Peer> start() { return start(options()); }
  std::shared_ptr<memory::Peer> start(EngineOptions o) {
    make(o);
    return start_and_accept();
  }
  static Error refused(int status, std::vector<Header> headers = {}) {
    Error e = Error::http(status, "GET ws://memory.test/feed answered");
    e.http_headers = std::move(headers);
    return e;
  }
};

}  // namespace

TEST(RetryPolicy, TheDefaultGivesUpOnlyOnWhatRetryingCannotChange) {
  BackoffOptions b;
  for (int status : {400, 401, 403, 404, 405, 410, 426, 300, 301, 302, 307, 308}) {
    auto d = default_retry_policy(Error::http(status), 1, b);
    EXPECT_FALSE(d.retry) << status;
    EXPECT_THAT(d.reason, HasSubstr(std::to_string(status)));
  }
  EXPECT_THAT(default_retry_policy(Error::http(302), 1, b).reason, HasSubstr("max_redirects"));
  for (int status : {408, 429, 500, 502, 503, 504, 409, 418})
    EXPECT_TRUE(default_retry_policy(Error::http(status), 1, b).retry) << status;
  EXPECT_FALSE(default_retry_policy(Error(errc::redirect_refused, "a loop"), 1, b).retry);
  EXPECT_FALSE(default_retry_policy(Error(errc::tls_verification_failed), 1, b).retry);
  EXPECT_FALSE(default_retry_policy(Error(errc::invalid_url), 1, b).retry);
  for (errc e : {errc::connection_refused, errc::dns_failure, errc::timeout, errc::tls_handshake_failed,
                 errc::handshake_failed, errc::open_failed, errc::io_error})
    EXPECT_TRUE(default_retry_policy(Error(e), 7, b).retry) << to_string(e);
}

TEST(RetryPolicy, RetryAfterInSecondsOrAsADateIsHonouredUpToTheCap) {
  BackoffOptions b;
  Error e = Error::http(503);
  e.http_headers = {{"retry-after", " 7 "}};
  EXPECT_EQ(retry_after(e), std::chrono::milliseconds(7000));
  EXPECT_EQ(default_retry_policy(e, 1, b).at_least, std::chrono::milliseconds(7000));
  e.http_headers = {{"Retry-After", "86400"}};
  EXPECT_EQ(default_retry_policy(e, 1, b).at_least, b.max_retry_after);
  e.http_headers = {{"Retry-After", "Sun, 06 Nov 1994 08:49:37 GMT"}};  // in the past: no wait
  EXPECT_EQ(retry_after(e), std::chrono::milliseconds(0));
  e.http_headers = {{"Retry-After", "Fri, 31 Dec 20"}};
  EXPECT_EQ(retry_after(e), std::nullopt);
  e.http_headers = {{"Retry-After", "soon"}};
  EXPECT_EQ(retry_after(e), std::nullopt);
  EXPECT_EQ(default_retry_policy(e, 1, b).at_least, std::chrono::milliseconds(0));
  for (int status : {408, 429, 500, 503}) {  // busy or failing for now: the server says when to come back
    Error busy = Error::http(status);
    busy.http_headers = {{"Retry-After", "9"}};
    EXPECT_EQ(default_retry_policy(busy, 1, b).at_least, std::chrono::milliseconds(9000)) << status;
  }
  Error conflict = Error::http(409);
  conflict.http_headers = {{"Retry-After", "9"}};
  EXPECT_EQ(default_retry_policy(conflict, 1, b).at_least, std::chrono::milliseconds(0)) << "408, 429 and 5xx only";
}

TEST_F(RetryTest, A403AfterADropIsNotRetriedAndTheCallbackSaysSo) {
  auto peer = start();
  server->fail_next_dials(refused(403), 100);
  peer->drop();
  ASSERT_FALSE(engine->wait_stopped(10s));
  EXPECT_EQ(engine->state(), EngineState::stopped);
  auto errors = client->events_of(Event::restart_error);
  ASSERT_EQ(errors.size(), 1u) << "one attempt, then the engine stops";
  EXPECT_EQ(errors[0].error.http_status, 403);
  EXPECT_THAT(errors[0].error.message(), HasSubstr("not retried"));
  EXPECT_EQ(server->dial_count(), 2u);
}

TEST_F(RetryTest, AUserPolicyMayRetryA403AndDecideWhenToStop) {
  auto o = options();
  std::atomic<int> asked{0};
  o.retry_policy = [&](const Error& e, std::uint32_t retry) {
    ++asked;
    EXPECT_EQ(e.http_status, 403);
    return retry < 3 ? RetryDecision::again() : RetryDecision::give_up("enough");
  };
  auto peer = start(o);
  server->fail_next_dials(refused(403), 100);
  peer->drop();
  ASSERT_FALSE(engine->wait_stopped(10s));
  EXPECT_EQ(asked, 3);
  auto errors = client->events_of(Event::restart_error);
  ASSERT_EQ(errors.size(), 3u);
  EXPECT_THAT(errors[2].error.message(), HasSubstr("not retried: enough"));
  EXPECT_THAT(errors[1].error.message(), ::testing::Not(HasSubstr("not retried")));
}

TEST_F(RetryTest, RetryAfterOfA503DelaysTheNextAttempt) {
  auto peer = start();
  server->fail_next_dials(refused(503, {{"Retry-After", "1"}}), 1);
  auto t0 = std::chrono::steady_clock::now();
  peer->drop();
  auto next = server->accept(10s);
  ASSERT_TRUE(next) << "it reconnects after the Retry-After";
  EXPECT_GE(std::chrono::steady_clock::now() - t0, 950ms) << "not before the server said";
  EXPECT_EQ(client->count(Event::restart_error), 1u);
}

TEST_F(RetryTest, TheAttemptLimitIsNamedInTheLastError) {
  auto o = options();
  o.backoff.max_attempts = 2;
  auto peer = start(o);
  server->fail_next_dials(Error(errc::connection_refused, "connecting to memory.test:80"), 100);
  peer->drop();
  ASSERT_FALSE(engine->wait_stopped(10s));
  auto errors = client->events_of(Event::restart_error);
  ASSERT_EQ(errors.size(), 2u);
  EXPECT_THAT(errors[1].error.message(), HasSubstr("not retried: backoff.max_attempts (2)"));
}

TEST_F(RetryTest, ConnectionsThatDropAtOnceBackOffAndAStableOneResetsIt) {
  auto o = options();
  o.backoff.initial_delay = 40ms;
  o.backoff.max_delay = 1s;
  o.backoff.jitter = 0;  // exact delays: 40, 80, 160 ms
  o.backoff.reset_after = 300ms;
  auto peer = start(o);
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < 3; ++i) {  // the server accepts, then drops at once
    peer->drop();
    peer = server->accept(5s);
    ASSERT_TRUE(peer);
  }
  auto flapping = std::chrono::steady_clock::now() - t0;
  EXPECT_GE(flapping, 280ms) << "40 + 80 + 160 ms of backoff between the short-lived connections";
  // This one stays up longer than reset_after: the next drop reconnects at once.
  ASSERT_TRUE(client->wait_count(Event::open, 4));
  std::this_thread::sleep_for(400ms);
  auto t1 = std::chrono::steady_clock::now();
  peer->drop();
  ASSERT_TRUE(server->accept(5s));
  EXPECT_LT(std::chrono::steady_clock::now() - t1, 2s) << "no backoff after a stable connection";
  EXPECT_EQ(client->count(Event::restart_error), 0u);
}

TEST_F(RetryTest, StopReturnsAfterStopTimeoutWhenACallbackDoesNotReturn) {
  std::promise<void> release;
  auto released = release.get_future().share();
  std::promise<void> entered;
  client->on_message_hook = [&](Context&, const Message&) {
    entered.set_value();
    released.wait_for(10s);
  };
  auto o = options();
  o.stop_timeout = 200ms;
  auto peer = start(o);
  peer->send(MessageType::text, "blocks OnMessage");
  ASSERT_EQ(entered.get_future().wait_for(5s), std::future_status::ready);
  auto t0 = std::chrono::steady_clock::now();
  Error e = engine->stop();
  EXPECT_TRUE(e.is(errc::timeout)) << e.message();
  EXPECT_THAT(e.message(), HasSubstr("stop_timeout"));
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 3s);
  release.set_value();
  EXPECT_FALSE(engine->wait_stopped(10s)) << "it stops once the callback returns";
  EXPECT_EQ(client->count(Event::close), 1u);
}
