// The coroutine interface (wscengine/coro.hpp) and the non-blocking calls under it
// (Engine::async_start, async_pause, async_read, async_stop) over real sockets:
// request/response at every length class, timeouts and errors that end a read, the
// readers going on afterwards, and two dozen coroutines on one application thread
// while a third of them have no server.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <utility>  // first: Boost 1.74's awaitable.hpp uses std::exchange without it

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <future>
#include <string>

#include <wscengine/asio.hpp>
#include <wscengine/coro.hpp>
#include <wscengine/wscengine.hpp>

#include "support/loopback.hpp"
#include "support/real_adapters.hpp"
#include "support/real_engine_fixture.hpp"
#include "support/recorder.hpp"
#include "support/text.hpp"
#include "test_server.hpp"

using namespace wscengine;
using namespace wscengine::test;
using namespace std::chrono_literals;
namespace net = boost::asio;

namespace {

constexpr auto kLimit = 20s;  // each io_context run is bounded by this

// Payload sizes in every length class of a frame header: 7-bit, 16-bit, 64-bit.
const std::vector<std::size_t> kSizes = {0, 1, 125, 126, 300, 65535, 65536, 70000};

std::string payload_of(std::size_t size, std::size_t round) {
  std::string p(size, static_cast<char>('a' + round % 26));
  if (size >= 4) p.replace(0, 4, std::to_string(1000 + round % 9000));
  return p;
}

// Asks and reads `rounds` answers by hand; returns how many matched their request.
net::awaitable<int> ask(Engine& engine, int rounds) {
  int matched = 0;
  for (int i = 0; i < rounds; ++i) {
    PauseGuard paused = co_await coro::async_pause(engine);
    const std::string question = payload_of(kSizes[i % kSizes.size()], i);
    const auto type = i % 2 ? MessageType::binary : MessageType::text;
    if (Error e = co_await coro::async_send(engine, type, question)) {
      ADD_FAILURE() << "send " << i << ": " << e.message();
      co_return matched;
    }
    auto [error, answer] = co_await coro::async_read(engine, 10s);
    if (error) {
      ADD_FAILURE() << "read " << i << ": " << error.message();
      co_return matched;
    }
    if (answer.payload == question && answer.type == type) ++matched;
  }
  co_return matched;
}

// The project's echo server beside each test (the rest of RealEngineTest: options(),
// a Recorder, the check for contract violations at the end).
class Coroutines : public RealEngineTest {
 protected:
  void SetUp() override {
    server.on_session = [](tools::ServerSession& s) { tools::echo_session(s); };
    server.start();
  }
  // Runs `io` until its work is done or kLimit passed; false when the limit cut it.
  static bool run(net::io_context& io) {
    const auto began = std::chrono::steady_clock::now();
    io.run_for(kLimit);
    return std::chrono::steady_clock::now() - began < kLimit;
  }
};

}  // namespace

// A coroutine starts the engine, asks 40 questions of every length class and reads
// each answer by hand under the read lock, then stops it: nothing reaches on_message.
TEST_P(Coroutines, RequestResponseAtEveryLengthClassThenStop) {
  net::io_context io;
  Engine engine(options(server.url()), client, GetParam().make(), runtime_on(io));
  int matched = -1;
  Error started, stopped(errc::io_error, "not run");
  net::co_spawn(
      io,
      [&]() -> net::awaitable<void> {
        started = co_await coro::async_start(engine);
        if (started) co_return;
        EXPECT_EQ(engine.state(), EngineState::running);
        matched = co_await ask(engine, 40);
        stopped = co_await coro::async_stop(engine);
        EXPECT_EQ(engine.state(), EngineState::stopped);
      },
      net::detached);
  EXPECT_TRUE(run(io)) << "the conversation did not end";
  EXPECT_FALSE(started) << started.message();
  EXPECT_FALSE(stopped) << stopped.message();
  EXPECT_EQ(matched, 40);
  EXPECT_EQ(client->count(Event::message), 0u);
  EXPECT_THAT(client->violations(), ::testing::IsEmpty());
}

// async_start completes with the first attempt's error, as start() returns it.
TEST_P(Coroutines, AStartThatFailsCompletesWithTheError) {
  // A port that refuses for the whole test (a stopped server's port could be taken by
  // a test running in parallel, as once happened).
  test::RefusingPort refusing;
  const std::string dead_url = refusing.url();
  net::io_context io;
  Engine engine(options(dead_url), client, GetParam().make(), runtime_on(io));
  Error started;
  net::co_spawn(
      io, [&]() -> net::awaitable<void> { started = co_await coro::async_start(engine); }, net::detached);
  EXPECT_TRUE(run(io));
  EXPECT_TRUE(started.is(errc::connection_refused)) << started.message();
  EXPECT_EQ(engine.state(), EngineState::stopped);
}

// A start still waiting (the server accepts TCP and never answers the upgrade) ends with
// the stop: cancelled.
TEST_P(Coroutines, AStopEndsAStartStillWaiting) {
  net::io_context io;
  net::ip::tcp::acceptor silent(io, {net::ip::address_v4::loopback(), 0});
  net::ip::tcp::socket accepted(io);
  silent.async_accept(accepted, [](const boost::system::error_code&) {});
  Engine engine(options(cat("ws://127.0.0.1:", silent.local_endpoint().port(), "/")), client, GetParam().make(),
                runtime_on(io));
  Error started(errc::io_error, "not run"), stopped(errc::io_error, "not run");
  net::co_spawn(
      io, [&]() -> net::awaitable<void> { started = co_await coro::async_start(engine); }, net::detached);
  net::co_spawn(
      io,
      [&]() -> net::awaitable<void> {
        while (!accepted.is_open()) {  // the dial reached the server: the start now waits
          net::steady_timer tick(io, 1ms);
          co_await tick.async_wait(net::use_awaitable);
        }
        stopped = co_await coro::async_stop(engine);
        accepted.close();
        silent.close();
      },
      net::detached);
  EXPECT_TRUE(run(io));
  EXPECT_TRUE(started.is(errc::cancelled)) << started.message();
  EXPECT_FALSE(stopped) << stopped.message();
  EXPECT_EQ(engine.state(), EngineState::stopped);
}

// A read that times out leaves the connection as it was: the next request is answered,
// and once the guard is released the readers deliver to on_message again.
TEST_P(Coroutines, AReadThatTimesOutLeavesTheReadersWorking) {
  net::io_context io;
  Engine engine(options(server.url()), client, GetParam().make(), runtime_on(io, 2));
  Error timed_out, refused;
  int matched = -1;
  net::co_spawn(
      io,
      [&]() -> net::awaitable<void> {
        if (Error e = co_await coro::async_start(engine)) co_return;
        {
          auto [e, m] = co_await coro::async_read(engine, 50ms);  // no read lock
          refused = e;
        }
        {
          PauseGuard paused = co_await coro::async_pause(engine);
          auto [e, m] = co_await coro::async_read(engine, 50ms);  // nothing was asked
          timed_out = e;
        }
        matched = co_await ask(engine, 3);
        co_await coro::async_send(engine, MessageType::text, "to on_message");
      },
      net::detached);
  std::thread app([&] { io.run_for(kLimit); });
  EXPECT_TRUE(client->wait_count(Event::message, 1));
  EXPECT_FALSE(engine.stop());
  app.join();
  EXPECT_TRUE(refused.is(errc::invalid_option)) << refused.message();
  EXPECT_TRUE(timed_out.is(errc::timeout)) << timed_out.message();
  EXPECT_EQ(matched, 3);
  auto messages = client->events_of(Event::message);
  ASSERT_EQ(messages.size(), 1u);
  EXPECT_EQ(messages[0].payload, "to on_message");
}

// Releasing the guard ends a read in progress (cancelled), and the readers take the
// answer it was waiting for.
TEST_P(Coroutines, ReleasingTheGuardEndsAReadInProgress) {
  Engine engine(options(server.url()), client, GetParam().make());
  ASSERT_FALSE(engine.start());
  PauseGuard paused = engine.pause();
  std::promise<Error> outcome;
  engine.async_read(10s, [&](Error e, InboundMessage) { outcome.set_value(std::move(e)); });
  paused.unlock();
  auto result = outcome.get_future();
  ASSERT_EQ(result.wait_for(kLimit), std::future_status::ready);
  EXPECT_TRUE(result.get().is(errc::cancelled));
  ASSERT_FALSE(engine.send_text("after"));
  ASSERT_TRUE(client->wait_count(Event::message, 1));
  EXPECT_EQ(client->events_of(Event::message)[0].payload, "after");
  EXPECT_FALSE(engine.stop());
}

// The same, round after round: the read's own step, still queued when the guard goes,
// must not take the next message from the readers (CI once saw it lost that way).
TEST_P(Coroutines, ReleasingTheGuardRightAwayLosesNoLaterMessage) {
  Engine engine(options(server.url()), client, GetParam().make());
  ASSERT_FALSE(engine.start());
  constexpr int kRounds = 150;
  for (int round = 1; round <= kRounds; ++round) {
    PauseGuard paused = engine.pause();
    std::promise<Error> outcome;
    engine.async_read(10s, [&](Error e, InboundMessage) { outcome.set_value(std::move(e)); });
    paused.unlock();
    auto result = outcome.get_future();
    ASSERT_EQ(result.wait_for(kLimit), std::future_status::ready) << "round " << round;
    EXPECT_TRUE(result.get().is(errc::cancelled)) << "round " << round;
    ASSERT_FALSE(engine.send_text(std::to_string(round)));
    ASSERT_TRUE(client->wait_count(Event::message, static_cast<std::size_t>(round))) << "round " << round;
  }
  auto messages = client->events_of(Event::message);
  ASSERT_EQ(messages.size(), static_cast<std::size_t>(kRounds));
  for (int i = 0; i < kRounds; ++i) EXPECT_EQ(messages[static_cast<std::size_t>(i)].payload, std::to_string(i + 1));
  EXPECT_FALSE(engine.stop());
}

// Null handlers: a pause takes nothing (the read lock stays free: a message reaches
// on_message), a read reads nothing, a stop is asked for with nothing waiting.
TEST_P(Coroutines, NullHandlersTakeNothingAndAStopStillStops) {
  Engine engine(options(server.url()), client, GetParam().make());
  ASSERT_FALSE(engine.start());
  engine.async_pause(nullptr);
  engine.async_read(10ms, nullptr);
  ASSERT_FALSE(engine.send_text("to on_message"));
  ASSERT_TRUE(client->wait_count(Event::message, 1));
  engine.async_stop(nullptr);
  EXPECT_FALSE(engine.wait_stopped(kLimit));
  EXPECT_EQ(engine.state(), EngineState::stopped);
}

// A session that ends while a read waits ends the read at once (not at its timeout).
TEST_P(Coroutines, ASessionThatEndsDuringAReadEndsTheRead) {
  tools::TestServer dropper;
  dropper.on_session = [](tools::ServerSession& s) {
    InboundMessage m;
    (void)s.read(m, 10s);
    s.drop();
  };
  dropper.start();
  auto o = options(dropper.url());
  o.auto_reconnect = false;
  Engine engine(o, client, GetParam().make());
  ASSERT_FALSE(engine.start());
  PauseGuard paused = engine.pause();
  std::promise<Error> outcome;
  const auto began = std::chrono::steady_clock::now();
  engine.async_read(15s, [&](Error e, InboundMessage) { outcome.set_value(std::move(e)); });
  // websocketpp may see the drop before it has recorded the send: then the send itself
  // says the connection closed. Either way the read must end.
  Error sent = engine.send_text("drop me");
  EXPECT_TRUE(!sent || sent.is(errc::closed)) << sent.message();
  auto result = outcome.get_future();
  ASSERT_EQ(result.wait_for(kLimit), std::future_status::ready);
  Error e = result.get();
  EXPECT_TRUE(e) << "the read ended without a message";
  EXPECT_FALSE(e.is(errc::timeout)) << e.message();
  EXPECT_LT(std::chrono::steady_clock::now() - began, 10s);
  paused.unlock();
  EXPECT_FALSE(engine.wait_stopped(kLimit));
}

// Two dozen coroutines on one application thread, eight of them for engines with no
// server: the live ones finish their conversations, the dead ones' starts fail.
TEST_P(Coroutines, TwentyFourCoroutinesOnOneThreadWhileEightHaveNoServer) {
  constexpr int kLive = 16, kDead = 8, kRounds = 16;
  // A port that refuses for the whole test (a stopped server's port could be taken by
  // a test running in parallel, as once happened).
  test::RefusingPort refusing;
  const std::string dead_url = refusing.url();
  net::io_context io;
  std::vector<int> matched(kLive + kDead, -1);
  std::vector<Error> starts(kLive + kDead);
  {
    auto runtime = runtime_on(io);
    std::vector<std::unique_ptr<Engine>> engines;
    for (int i = 0; i < kLive + kDead; ++i) {
      engines.push_back(std::make_unique<Engine>(options(i < kLive ? server.url() : dead_url),
                                                 std::make_shared<Recorder>(), GetParam().make(), runtime));
      net::co_spawn(
          io,
          [&, i]() -> net::awaitable<void> {
            Engine& engine = *engines[i];
            starts[i] = co_await coro::async_start(engine);
            if (starts[i]) co_return;
            matched[i] = co_await ask(engine, kRounds);
            co_await coro::async_stop(engine);
          },
          net::detached);
    }
    EXPECT_TRUE(run(io));
    for (auto& e : engines) EXPECT_EQ(e->state(), EngineState::stopped);
  }
  for (int i = 0; i < kLive; ++i) {
    EXPECT_FALSE(starts[i]) << i << ": " << starts[i].message();
    EXPECT_EQ(matched[i], kRounds) << i;
  }
  for (int i = kLive; i < kLive + kDead; ++i) EXPECT_TRUE(starts[i].is(errc::connection_refused)) << i;
}

INSTANTIATE_TEST_SUITE_P(Adapters, Coroutines, ::testing::ValuesIn(engine_variants()), AdapterName{});
