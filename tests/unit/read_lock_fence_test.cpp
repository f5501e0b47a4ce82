// The read lock's fast path (a reader keeping its slot enters and leaves the lock
// without the engine's mutex, a Dekker pair with pause(), read_lock_fence.hpp): in
// both fence modes, pausers that race a stream of messages never overlap a read.
#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <thread>

#include <wscengine/memory.hpp>
#include <wscengine/wscengine.hpp>

#if defined(__linux__)
#include <linux/membarrier.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

#include "read_lock_fence.hpp"
#include "support/recorder.hpp"

using namespace wscengine;
using namespace wscengine::test;
using detail::FenceMode;

namespace {

// Counts the reads the engine makes while the test says it holds the read lock. The
// test's own reads by hand go through read(), the engine's reader through try_read().
struct ReadWatch {
  std::atomic<bool> held{false};
  std::atomic<int> reads_while_held{0};
};

class WatchedConnection final : public Connection {
 public:
  WatchedConnection(std::unique_ptr<Connection> inner, std::shared_ptr<ReadWatch> watch)
      : inner_(std::move(inner)), watch_(std::move(watch)) {}
  void async_dial(DialRequest request, DialHandler done) override {
    inner_->async_dial(std::move(request), std::move(done));
  }
  Error try_read(InboundMessage& out) override {
    watch_->reads_while_held += watch_->held.load();
    Error e = inner_->try_read(out);
    watch_->reads_while_held += watch_->held.load();
    return e;
  }
  void async_wait_readable(WaitHandler done) override { inner_->async_wait_readable(std::move(done)); }
  void cancel_wait() override { inner_->cancel_wait(); }
  Error read(InboundMessage& out, std::chrono::milliseconds timeout) override { return inner_->read(out, timeout); }
  Error write(MessageType type, std::string_view payload) override { return inner_->write(type, payload); }
  Error ping(std::string_view payload, std::chrono::milliseconds timeout) override {
    return inner_->ping(payload, timeout);
  }
  Error close(const CloseFrame& frame, std::chrono::milliseconds timeout) override {
    return inner_->close(frame, timeout);
  }
  void async_ping(std::string_view payload, std::chrono::milliseconds timeout, DoneHandler done) override {
    inner_->async_ping(payload, timeout, std::move(done));
  }
  void async_close(const CloseFrame& frame, std::chrono::milliseconds timeout, DoneHandler done) override {
    inner_->async_close(frame, timeout, std::move(done));
  }
  void async_write(MessageType type, std::string_view payload, DoneHandler done) override {
    inner_->async_write(type, payload, std::move(done));
  }
  void abort() noexcept override { inner_->abort(); }
  bool is_open() const noexcept override { return inner_->is_open(); }
  Underlying underlying() noexcept override { return inner_->underlying(); }

 private:
  std::unique_ptr<Connection> inner_;
  std::shared_ptr<ReadWatch> watch_;
};

class WatchedConnector final : public Connector {
 public:
  WatchedConnector(std::shared_ptr<Connector> inner, std::shared_ptr<ReadWatch> watch)
      : inner_(std::move(inner)), watch_(std::move(watch)) {}
  std::unique_ptr<Connection> make_connection(Runtime& runtime) override {
    return std::make_unique<WatchedConnection>(inner_->make_connection(runtime), watch_);
  }
  std::string_view name() const noexcept override { return inner_->name(); }
  AdapterCapabilities capabilities() const noexcept override { return inner_->capabilities(); }

 private:
  std::shared_ptr<Connector> inner_;
  std::shared_ptr<ReadWatch> watch_;
};

// Engines built inside the scope use `mode`; the process's choice comes back after.
class FenceModeScope {
 public:
  explicit FenceModeScope(FenceMode mode) { detail::set_fence_mode_for_testing(mode); }
  ~FenceModeScope() { detail::set_fence_mode_for_testing(FenceMode::asymmetric); }
  FenceModeScope(const FenceModeScope&) = delete;
  FenceModeScope& operator=(const FenceModeScope&) = delete;
};

std::string mode_name(FenceMode mode) { return mode == FenceMode::asymmetric ? "Asymmetric" : "Symmetric"; }

}  // namespace

// The benchmark's figures rely on the fast mode: wherever the kernel offers
// membarrier's private expedited command, the engine uses it.
TEST(ReadLockFence, AsymmetricWhereverTheKernelOffersMembarrier) {
#if defined(__linux__) && defined(SYS_membarrier)
  const long commands = syscall(SYS_membarrier, MEMBARRIER_CMD_QUERY, 0, 0);
  const bool offered = commands >= 0 && (commands & MEMBARRIER_CMD_PRIVATE_EXPEDITED) != 0;
#else
  const bool offered = false;
#endif
  EXPECT_EQ(detail::fence_mode(), offered ? FenceMode::asymmetric : FenceMode::symmetric);
  {
    FenceModeScope symmetric(FenceMode::symmetric);
    EXPECT_EQ(detail::fence_mode(), FenceMode::symmetric);
  }
  EXPECT_EQ(detail::fence_mode(), offered ? FenceMode::asymmetric : FenceMode::symmetric);
}

class ReadLockRace : public ::testing::TestWithParam<std::tuple<FenceMode, Delivery>> {};

// A peer streams messages without pause while the test takes the read lock again and
// again, by pause() and by async_pause(), and reads one message by hand each time it
// can: the engine's reader never reads while the lock is held, and every message is
// taken once, in order (by on_message or by hand). Sequence numbers have no gap.
TEST_P(ReadLockRace, PausersRacingAStreamNeverOverlapARead) {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  constexpr int total = 20000, pauses = 200;
#else
  constexpr int total = 100000, pauses = 1000;
#endif
  const auto [mode, delivery] = GetParam();
  FenceModeScope scope(mode);
  auto watch = std::make_shared<ReadWatch>();
  auto server = memory::Server::create();
  auto client = std::make_shared<Recorder>();
  EngineOptions o;
  o.delivery = delivery;
  o.url = "ws://memory.test/race";
  o.open_timeout = 5s;
  auto engine = std::make_unique<Engine>(o, client, std::make_shared<WatchedConnector>(server->connector(), watch));
  ASSERT_FALSE(engine->start());
  auto peer = server->accept(5s);
  ASSERT_NE(peer, nullptr);

  std::atomic<int> sent{0};
  std::thread sender([&] {
    for (int i = 0; i < total; ++i) {
      peer->send(MessageType::text, std::to_string(i));
      sent = i + 1;
      if (i % 64 == 0) std::this_thread::yield();  // let the pausers in between bursts
    }
  });
  std::vector<int> by_hand;
  auto hold = [&](PauseGuard guard) {
    watch->held = true;
    InboundMessage m;
    // Only while the sender still sends: after its last message there may be none.
    if (sent.load() < total && !engine->connection().read(m, 5s)) by_hand.push_back(std::stoi(m.payload));
    watch->held = false;
    guard.unlock();
  };
  bool granted_every_time = true;
  for (int p = 0; p < pauses && granted_every_time; ++p) {
    if (p % 2 == 0) {
      hold(engine->pause());
    } else {
      // Shared with the callback: it may still run after a failed wait.
      auto granted = std::make_shared<std::promise<PauseGuard>>();
      auto got = granted->get_future();
      engine->async_pause([granted](PauseGuard g) { granted->set_value(std::move(g)); });
      granted_every_time = got.wait_for(10s) == std::future_status::ready;
      if (granted_every_time) hold(got.get());
    }
  }
  sender.join();  // also after a failure: a joinable thread must not be destroyed
  ASSERT_TRUE(granted_every_time) << "async_pause() was not granted within 10 s";
  EXPECT_EQ(watch->reads_while_held.load(), 0);
  ASSERT_TRUE(client->wait_count(Event::message, static_cast<std::size_t>(total) - by_hand.size(), 30s));
  auto dispatched = client->events_of(Event::message);
  EXPECT_TRUE(each_taken_once_in_order(dispatched, by_hand, total));
  for (std::size_t i = 0; i < dispatched.size(); ++i) ASSERT_EQ(dispatched[i].sequence, i);
  EXPECT_FALSE(engine->stop());
}

INSTANTIATE_TEST_SUITE_P(Modes, ReadLockRace,
                         ::testing::Combine(::testing::Values(FenceMode::asymmetric, FenceMode::symmetric),
                                            ::testing::Values(Delivery::callback_pool, Delivery::io_thread)),
                         [](const auto& info) {
                           return mode_name(std::get<0>(info.param)) +
                                  (std::get<1>(info.param) == Delivery::io_thread ? "IoThread" : "CallbackPool");
                         });
