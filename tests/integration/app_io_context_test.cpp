// Engines on an io_context the application owns and runs (runtime_on): the
// application's thread does all the I/O, its own timers run in between, the engine
// starts no thread, blocking calls on that thread refuse instead of deadlocking, and
// dozens of engines share it while some of them have no server.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <functional>
#include <mutex>
#include <thread>

#include <wscengine/asio.hpp>
#include <wscengine/wscengine.hpp>

#include "support/loopback.hpp"
#include "support/process.hpp"
#include "support/real_adapters.hpp"
#include "support/real_engine_fixture.hpp"
#include "support/text.hpp"
#include "test_server.hpp"

using namespace wscengine;
using namespace wscengine::test;
using namespace std::chrono_literals;
namespace net = boost::asio;

namespace {

constexpr int kEchoes = 50;
constexpr auto kLimit = 20s;  // each io_context run is bounded by this

std::size_t threads_of_this_process() {
  std::size_t n = 0;
  for ([[maybe_unused]] auto& entry : std::filesystem::directory_iterator("/proc/self/task")) ++n;
  return n;
}

// Asio resolves names on a thread of the io_context's resolver service, once any
// resolver was used. The application's own resolve starts it before the baseline is
// taken, so that the count afterwards sees only what the engine adds.
void start_asios_resolver_thread(net::io_context& io) {
  net::ip::tcp::resolver resolver(io);
  resolver.async_resolve("127.0.0.1", "80", [](const boost::system::error_code&, auto) {});
  io.run_for(5s);
  io.restart();
}

// A client that sends a numbered message for each echo it gets, kEchoes in all, then
// exits; it notes which thread ran each callback.
struct Pinger {
  std::shared_ptr<LambdaClient> client = std::make_shared<LambdaClient>();
  std::mutex mutex;
  std::vector<std::string> received;
  std::vector<std::thread::id> callback_threads;
  std::atomic<bool> closed{false};

  Pinger() {
    client->open = [this](Context& ctx, const HandshakeResponse&, bool) {
      note_thread();
      return ctx.connection().send_text("0");
    };
    client->message = [this](Context& ctx, const Message& m) {
      note_thread();
      std::size_t n;
      {
        std::lock_guard lock(mutex);
        received.emplace_back(m.payload);
        n = received.size();
      }
      if (n < kEchoes) {
        EXPECT_FALSE(ctx.connection().send_text(std::to_string(n)));
      } else {
        ctx.exit();
      }
    };
    client->close = [this](Context&, const std::optional<CloseFrame>&) -> std::optional<CloseFrame> {
      note_thread();
      closed = true;
      return std::nullopt;
    };
  }
  void note_thread() {
    std::lock_guard lock(mutex);
    callback_threads.push_back(std::this_thread::get_id());
  }
  std::vector<std::string> expected() const {
    std::vector<std::string> out;
    for (int i = 0; i < kEchoes; ++i) out.push_back(std::to_string(i));
    return out;
  }
};

// Destroys `engines` with the io_context running on a helper thread: an engine's
// destructor waits for its handlers, which need the io_context (were a run cut short
// by the time limit, they would never run).
template <class Engines>
void destroy_while_running(net::io_context& io, Engines& engines) {
  io.restart();
  auto busy = net::make_work_guard(io);
  std::thread runner([&] { io.run_for(kLimit); });
  engines.clear();
  busy.reset();
  runner.join();
}

// The project's echo server beside each test (the rest of RealEngineTest: options(),
// a Recorder, the check for contract violations at the end).
class AppIoContext : public RealEngineTest {
 protected:
  void SetUp() override {
    server.on_session = [](tools::ServerSession& s) { tools::echo_session(s); };
    server.start();
  }
};

}  // namespace

// The application's thread runs everything: its own timer ticks between the engine's
// I/O, every callback runs on it, and the process has no more threads than before.
// The server is Python `websockets`, in a process of its own: the project's test
// server would add a thread per connection to this process.
TEST_P(AppIoContext, AnEngineRunsOnTheApplicationsThreadWithNoThreadOfItsOwn) {
  ChildProcess python({"/usr/bin/python3", WSCENGINE_PY_SERVER});
  const std::string url = python.first_line(20s) + "/echo";
  ASSERT_NE(url, "/echo") << "the Python websockets server did not start (python3-websockets installed?)";
  net::io_context io;
  start_asios_resolver_thread(io);
  const std::size_t baseline = threads_of_this_process();
  Pinger pinger;
  std::size_t most_threads = 0;
  int ticks = 0;
  {
    auto runtime = runtime_on(io);
    EXPECT_EQ(runtime->options().io_threads, 0u);
    auto engine = std::make_unique<Engine>(options(url), pinger.client, GetParam().make(), runtime);
    EXPECT_EQ(threads_of_this_process(), baseline);
    // A blocking start() on a thread that runs the io_context would wait for itself.
    net::post(io, [&] { EXPECT_TRUE(engine->start().is(errc::would_deadlock)); });
    io.run_for(kLimit);
    io.restart();
    ASSERT_EQ(engine->state(), EngineState::idle);

    net::steady_timer tick(io);
    std::function<void()> arm = [&] {
      tick.expires_after(1ms);
      tick.async_wait([&](const boost::system::error_code& ec) {
        if (ec) return;
        ++ticks;
        most_threads = std::max(most_threads, threads_of_this_process());
        if (engine->state() != EngineState::stopped) arm();
      });
    };
    arm();
    ASSERT_FALSE(engine->start_background());
    const auto began = std::chrono::steady_clock::now();
    io.run_for(kLimit);  // returns by itself once the engine stopped: nothing left to run
    EXPECT_LT(std::chrono::steady_clock::now() - began, kLimit) << "the engine did not stop";
    EXPECT_EQ(engine->state(), EngineState::stopped);
    std::vector<std::unique_ptr<Engine>> engines;
    engines.push_back(std::move(engine));
    destroy_while_running(io, engines);
  }
  EXPECT_GT(ticks, 0) << "the application's timer ran while the engine ran";
  EXPECT_EQ(most_threads, baseline) << "no thread was started for the engine";
  EXPECT_EQ(pinger.received, pinger.expected());
  EXPECT_TRUE(pinger.closed);
  for (auto id : pinger.callback_threads) EXPECT_EQ(id, std::this_thread::get_id());
}

// Blocking calls made on the application's I/O thread refuse instead of waiting for
// the thread they run on; stop() still stops the engine, in the background.
TEST_P(AppIoContext, BlockingCallsOnTheApplicationsThreadRefuseAndStopStillStops) {
  net::io_context io;
  auto runtime = runtime_on(io);
  auto client = std::make_shared<LambdaClient>();
  Error read_error, stop_error;
  client->open = [&](Context& ctx, const HandshakeResponse&, bool) {
    // A callback: the connection is in hand, and this thread runs the io_context.
    InboundMessage m;
    read_error = ctx.connection().read(m, 10ms);
    return Error{};
  };
  auto engine = std::make_unique<Engine>(options(server.url()), client, GetParam().make(), runtime);
  net::steady_timer poll(io);
  std::function<void()> arm = [&] {
    poll.expires_after(1ms);
    poll.async_wait([&](const boost::system::error_code& ec) {
      if (ec) return;
      if (engine->state() != EngineState::running) return arm();
      stop_error = engine->stop();  // a handler of the application's, not a callback
    });
  };
  arm();
  ASSERT_FALSE(engine->start_background());
  io.run_for(kLimit);
  EXPECT_TRUE(read_error.is(errc::would_deadlock)) << read_error.message();
  EXPECT_TRUE(stop_error.is(errc::would_deadlock)) << stop_error.message();
  EXPECT_EQ(engine->state(), EngineState::stopped);
  std::vector<std::unique_ptr<Engine>> engines;
  engines.push_back(std::move(engine));
  destroy_while_running(io, engines);
}

// Callbacks on a pool of the runtime's while the application's thread does the I/O.
TEST_P(AppIoContext, CallbacksMayRunOnAPoolWhileTheApplicationsThreadDoesTheIo) {
  net::io_context io;
  Pinger pinger;
  {
    auto runtime = runtime_on(io, 2);
    EXPECT_EQ(runtime->options().callback_threads, 2u);
    auto engine = std::make_unique<Engine>(options(server.url()), pinger.client, GetParam().make(), runtime);
    ASSERT_FALSE(engine->start_background());
    std::thread app([&] { io.run_for(kLimit); });
    Error waited = engine->wait_stopped(kLimit);
    EXPECT_FALSE(waited) << waited.message();
    app.join();
    engine.reset();
  }
  EXPECT_EQ(pinger.received, pinger.expected());
  if (GetParam().delivery == Delivery::io_thread) return;  // on_message on the I/O thread by design
  for (auto id : pinger.callback_threads) EXPECT_NE(id, std::this_thread::get_id());
}

// Dozens of engines on one application thread, a third of them with no server: the
// live ones finish their exchanges while the dead ones keep retrying, and all stop.
TEST_P(AppIoContext, TwentyFourEnginesShareTheApplicationsThreadWhileEightHaveNoServer) {
  constexpr int kLive = 16, kDead = 8;
  net::io_context io;
  // A port that refuses for the whole test (a stopped server's port could be taken by
  // a test running in parallel, as once happened).
  test::RefusingPort refusing;
  const std::string dead_url = refusing.url();
  std::vector<std::unique_ptr<Pinger>> pingers;
  std::vector<std::unique_ptr<Engine>> engines;
  std::atomic<int> refusals{0};
  {
    auto runtime = runtime_on(io);
    for (int i = 0; i < kLive + kDead; ++i) {
      pingers.push_back(std::make_unique<Pinger>());
      auto o = options(i < kLive ? server.url() : dead_url);
      if (i >= kLive)
        pingers.back()->client->restart_error = [&](Context&, const Error&, std::uint32_t) { ++refusals; };
      engines.push_back(std::make_unique<Engine>(o, pingers.back()->client, GetParam().make(), runtime));
      ASSERT_FALSE(engines.back()->start_background());
    }
    net::steady_timer watch(io);
    std::function<void()> arm = [&] {
      watch.expires_after(2ms);
      watch.async_wait([&](const boost::system::error_code& ec) {
        if (ec) return;
        int live_done = 0;
        for (int i = 0; i < kLive; ++i) live_done += engines[i]->state() == EngineState::stopped;
        if (live_done < kLive || refusals < 2 * kDead) return arm();
        for (int i = kLive; i < kLive + kDead; ++i) engines[i]->exit();
      });
    };
    arm();
    const auto began = std::chrono::steady_clock::now();
    io.run_for(kLimit);
    EXPECT_LT(std::chrono::steady_clock::now() - began, kLimit);
    for (auto& e : engines) EXPECT_EQ(e->state(), EngineState::stopped);
    destroy_while_running(io, engines);
  }
  EXPECT_GE(refusals, 2 * kDead);
  for (int i = 0; i < kLive; ++i) EXPECT_EQ(pingers[i]->received, pingers[i]->expected()) << i;
  for (int i = kLive; i < kLive + kDead; ++i) EXPECT_TRUE(pingers[i]->received.empty());
  for (auto& p : pingers)
    for (auto id : p->callback_threads) EXPECT_EQ(id, std::this_thread::get_id());
}

INSTANTIATE_TEST_SUITE_P(Adapters, AppIoContext, ::testing::ValuesIn(engine_variants()), AdapterName{});
