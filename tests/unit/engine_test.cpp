// One or more tests per rule of the engine contract, on the in-memory adapter.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <set>
#include <thread>

#include <wscengine/asio.hpp>
#include <wscengine/memory.hpp>
#include <wscengine/wscengine.hpp>

#include <boost/asio/post.hpp>

#include "support/fake_tracer.hpp"
#include "support/memory_engine_fixture.hpp"
#include "support/pause_mid_stream.hpp"
#include "support/text.hpp"

using namespace wscengine;
using namespace wscengine::test;
using ::testing::IsEmpty;

namespace {

// Every test runs in both delivery modes (Delivery::io_thread: on_message on the
// runtime's I/O thread, which the in-memory adapter wakes like a socket would).
class EngineTest : public MemoryEngineTest, public ::testing::WithParamInterface<Delivery> {
 protected:
  EngineTest() { delivery = GetParam(); }
};

std::string delivery_name(Delivery d) { return d == Delivery::io_thread ? "IoThread" : "CallbackPool"; }

}  // namespace

// ------------------------------------------------------------ Start, OnOpen

TEST_P(EngineTest, StartReturnsAfterOnOpenAndMessagesArriveInOrder) {
  std::atomic<bool> open_returned{false};
  client->on_open_hook = [&](Context&, const HandshakeResponse& r, bool restarting) {
    EXPECT_EQ(r.status, 101);
    EXPECT_FALSE(restarting);
    std::this_thread::sleep_for(20ms);  // Start must wait for this
    open_returned = true;
    return Error{};
  };
  make();
  auto peer = start_and_accept();
  EXPECT_TRUE(open_returned.load());
  EXPECT_EQ(engine->state(), EngineState::running);
  for (int i = 0; i < 100; ++i) peer->send(MessageType::text, test::cat("m", i));
  ASSERT_TRUE(client->wait_count(Event::message, 100));
  auto messages = client->events_of(Event::message);
  for (int i = 0; i < 100; ++i) {
    EXPECT_EQ(messages[i].payload, test::cat("m", i));
    EXPECT_EQ(messages[i].sequence, static_cast<std::uint64_t>(i));
  }
}

TEST_P(EngineTest, OnOpenMayReadAndWriteByHandBeforeReadersRun) {
  client->on_open_hook = [&](Context& ctx, const HandshakeResponse&, bool) {
    EXPECT_FALSE(ctx.connection().send_text("login"));
    InboundMessage reply;
    Error e = ctx.connection().read(reply, 5s);
    EXPECT_FALSE(e) << e.message();
    EXPECT_EQ(reply.payload, "welcome");
    return Error{};
  };
  make();
  std::thread server_side([&] {
    auto peer = server->accept(5s);
    ASSERT_TRUE(peer);
    ASSERT_TRUE(peer->wait_received(1, 5s));
    EXPECT_EQ(peer->received()[0].payload, "login");
    peer->send(MessageType::text, "welcome");
    peer->send(MessageType::text, "first feed message");
  });
  ASSERT_FALSE(engine->start());
  server_side.join();
  ASSERT_TRUE(client->wait_count(Event::message, 1));
  auto messages = client->events_of(Event::message);
  ASSERT_EQ(messages.size(), 1u);  // "welcome" was read by hand, not dispatched
  EXPECT_EQ(messages[0].payload, "first feed message");
  EXPECT_EQ(messages[0].sequence, 0u);
}

TEST_P(EngineTest, OnOpenErrorAtStartIsReturnedWithoutRestartOrOnClose) {
  client->on_open_hook = [](Context&, const HandshakeResponse&, bool) {
    return Error(errc::io_error, "login refused");
  };
  make();
  Error e = engine->start();
  ASSERT_TRUE(e.is(errc::open_failed)) << e.message();
  EXPECT_NE(e.message().find("login refused"), std::string::npos);
  auto peer = server->accept(1s);
  ASSERT_TRUE(peer);
  EXPECT_TRUE(peer->wait_closed(1s));  // the connection was closed
  EXPECT_EQ(engine->state(), EngineState::stopped);
  EXPECT_EQ(server->dial_count(), 1u);
  EXPECT_EQ(client->count(Event::close), 0u);
  EXPECT_EQ(client->count(Event::restart_error), 0u);
}

TEST_P(EngineTest, DialFailureAtStartCarriesHttpStatus) {
  server->fail_next_dials(Error::http(503, "GET /feed"));
  make();
  Error e = engine->start();
  ASSERT_TRUE(e.is(errc::http_status));
  EXPECT_EQ(e.http_status, 503);
  EXPECT_EQ(server->dial_count(), 1u);
  EXPECT_EQ(engine->state(), EngineState::stopped);
}

TEST_P(EngineTest, OnOpenErrorWhileRestartingRetriesUntilItSucceeds) {
  std::atomic<int> opens{0};
  client->on_open_hook = [&](Context&, const HandshakeResponse&, bool restarting) {
    int n = ++opens;
    if (n == 2 || n == 3) return Error(errc::io_error, "subscribe failed");
    return Error{};
  };
  make();
  auto peer = start_and_accept();
  peer->drop();
  ASSERT_TRUE(client->wait_for([](const std::vector<Event>& es) {
    int ok = 0;
    for (auto& e : es)
      if (e.kind == Event::open && !e.error) ++ok;
    return ok == 2;
  }));
  auto errors = client->events_of(Event::restart_error);
  ASSERT_EQ(errors.size(), 2u);
  EXPECT_EQ(errors[0].retry, 1u);
  EXPECT_EQ(errors[1].retry, 2u);
  EXPECT_TRUE(errors[0].error.is(errc::open_failed));
  EXPECT_EQ(client->count(Event::close), 1u);  // only the session that opened
  auto opens_ev = client->events_of(Event::open);
  EXPECT_TRUE(opens_ev.back().restarting);
}

TEST_P(EngineTest, ExitInOnOpenWhileRestartingStopsTheLoop) {
  std::atomic<int> opens{0};
  client->on_open_hook = [&](Context& ctx, const HandshakeResponse&, bool) {
    if (++opens == 2) {
      ctx.exit();
      return Error(errc::io_error, "give up");
    }
    return Error{};
  };
  make();
  auto peer = start_and_accept();
  peer->drop();
  ASSERT_FALSE(engine->wait_stopped(10s));
  EXPECT_EQ(opens.load(), 2);
  EXPECT_EQ(client->count(Event::restart_error), 0u);
}

TEST_P(EngineTest, OpenTimeoutCoversAHangingDial) {
  server->hang_next_dials(1);
  auto o = options();
  o.open_timeout = 200ms;
  make(o);
  auto t0 = std::chrono::steady_clock::now();
  Error e = engine->start();
  EXPECT_TRUE(e.is(errc::timeout)) << e.message();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 5s);
}

TEST_P(EngineTest, OpenTimeoutCoversOnOpen) {
  auto o = options();
  o.open_timeout = 200ms;
  client->on_open_hook = [](Context& ctx, const HandshakeResponse&, bool) {
    InboundMessage m;
    return ctx.connection().read(m, 30s);  // never answered: the timeout must wake it
  };
  make(o);
  auto t0 = std::chrono::steady_clock::now();
  Error e = engine->start();
  EXPECT_TRUE(e.is(errc::timeout)) << e.message();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 5s);
  EXPECT_EQ(client->count(Event::close), 0u);
}

TEST_P(EngineTest, BeforeDialHookChangesTheRequestOnEveryAttempt) {
  auto o = options();
  std::atomic<int> calls{0};
  o.before_dial = [&](DialRequest& r, std::uint32_t attempt) {
    r.headers.push_back({"Authorization", "Bearer token-" + std::to_string(++calls)});
    r.url.target = "/feed?attempt=" + std::to_string(attempt);
    return Error{};
  };
  make(o);
  auto peer = start_and_accept();
  peer->drop();
  ASSERT_TRUE(server->accept(5s));
  auto requests = server->dial_requests();
  ASSERT_GE(requests.size(), 2u);
  EXPECT_EQ(requests[0].headers.back().value, "Bearer token-1");
  EXPECT_EQ(requests[1].headers.back().value, "Bearer token-2");
  EXPECT_EQ(requests[0].url.target, "/feed?attempt=0");
}

TEST_P(EngineTest, StartTwiceIsAnError) {
  make();
  start_and_accept();
  EXPECT_TRUE(engine->start().is(errc::already_started));
}

// There is no connection to restart: the loop goes on by its backoff, no attempt is
// added or skipped.
TEST_P(EngineTest, RestartInsideOnRestartErrorChangesNothing) {
  server->fail_next_dials(Error(errc::connection_refused, "not yet"), 2);
  client->on_restart_error_hook = [](Context& ctx, const Error&, std::uint32_t) { ctx.restart(); };
  make();
  EXPECT_FALSE(engine->start_background());
  ASSERT_TRUE(client->wait_count(Event::open, 1));
  auto errors = client->events_of(Event::restart_error);
  ASSERT_EQ(errors.size(), 2u);
  EXPECT_EQ(errors[0].retry, 1u);
  EXPECT_EQ(errors[1].retry, 2u);
  // The session stays: a message after it arrives on session 1, and no dial followed.
  auto peer = server->accept(5s);
  ASSERT_TRUE(peer);
  peer->send(MessageType::text, "still here");
  ASSERT_TRUE(client->wait_count(Event::message, 1));
  EXPECT_EQ(server->dial_count(), 3u);
  EXPECT_EQ(engine->session_id(), 1u);
  EXPECT_EQ(client->count(Event::close), 0u);
}

TEST_P(EngineTest, BackgroundStartRetriesUntilTheServerAnswers) {
  server->fail_next_dials(Error(errc::connection_refused, "not yet"), 3);
  make();
  EXPECT_FALSE(engine->start_background());
  ASSERT_TRUE(client->wait_count(Event::open, 1));
  auto errors = client->events_of(Event::restart_error);
  ASSERT_EQ(errors.size(), 3u);
  EXPECT_EQ(errors[2].retry, 3u);
  EXPECT_TRUE(errors[0].error.is(errc::connection_refused));
  EXPECT_FALSE(client->events_of(Event::open)[0].restarting);
}

// ------------------------------------------------------------ OnClose

TEST_P(EngineTest, PeerCloseReachesOnCloseAndReconnects) {
  make();
  auto peer = start_and_accept();
  peer->send_close({4000, "bye"});
  ASSERT_TRUE(client->wait_count(Event::open, 2));
  auto closes = client->events_of(Event::close);
  ASSERT_EQ(closes.size(), 1u);
  ASSERT_TRUE(closes[0].received);
  EXPECT_EQ(closes[0].received->code, 4000);
  EXPECT_EQ(closes[0].received->reason, "bye");
  EXPECT_EQ(closes[0].initiator, CloseInitiator::peer);
  EXPECT_TRUE(client->events_of(Event::open)[1].restarting);
  EXPECT_EQ(engine->session_id(), 2u);
}

TEST_P(EngineTest, DropIsReportedAs1006) {
  make();
  auto peer = start_and_accept();
  peer->drop();
  ASSERT_TRUE(client->wait_count(Event::close, 1));
  auto close = client->events_of(Event::close)[0];
  ASSERT_TRUE(close.received);
  EXPECT_EQ(close.received->code, close_code::abnormal);
  EXPECT_EQ(close.initiator, CloseInitiator::peer);
}

TEST_P(EngineTest, WithoutAutoReconnectAPeerCloseStopsTheEngine) {
  auto o = options();
  o.auto_reconnect = false;
  make(o);
  auto peer = start_and_accept();
  peer->send_close({1000, ""});
  ASSERT_TRUE(client->wait_count(Event::close, 1));
  ASSERT_FALSE(engine->wait_stopped(10s));
  EXPECT_EQ(server->dial_count(), 1u);
}

TEST_P(EngineTest, StopClosesWith1000AndIsIdempotent) {
  make();
  auto peer = start_and_accept();
  ASSERT_FALSE(engine->stop());
  client->mark_stopped();
  auto close = client->events_of(Event::close);
  ASSERT_EQ(close.size(), 1u);
  EXPECT_FALSE(close[0].received);
  EXPECT_EQ(close[0].initiator, CloseInitiator::client);
  ASSERT_TRUE(peer->client_close());
  EXPECT_EQ(peer->client_close()->code, close_code::normal);
  EXPECT_FALSE(engine->stop());
  EXPECT_EQ(engine->state(), EngineState::stopped);
  peer->send(MessageType::text, "late");  // nothing may reach the client now
  // Destroying the engine waits for every task it posted: a callback it had let through
  // would have run by then.
  engine.reset();
  EXPECT_EQ(client->count(Event::message), 0u);
}

TEST_P(EngineTest, OnCloseChoosesTheCloseCode) {
  client->on_close_hook = [](Context&, const std::optional<CloseFrame>&) { return CloseFrame{4001, "shutting down"}; };
  make();
  auto peer = start_and_accept();
  ASSERT_FALSE(engine->stop());
  client->mark_stopped();
  ASSERT_TRUE(peer->client_close());
  EXPECT_EQ(*peer->client_close(), (CloseFrame{4001, "shutting down"}));
}

TEST_P(EngineTest, AnUnsendableCloseCodeIsReportedAndReplacedBy1001) {
  client->on_close_hook = [](Context&, const std::optional<CloseFrame>&) { return CloseFrame{1006, "not sendable"}; };
  make();
  auto peer = start_and_accept();
  ASSERT_FALSE(engine->stop());
  client->mark_stopped();
  ASSERT_TRUE(peer->client_close());
  EXPECT_EQ(peer->client_close()->code, close_code::going_away);
  auto errors = client->events_of(Event::close_error);
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_NE(errors[0].payload.find("1006"), std::string::npos);
}

TEST_P(EngineTest, OnCloseMayStillWriteAndItsContextIsCancelled) {
  client->on_close_hook = [](Context& ctx, const std::optional<CloseFrame>&) {
    EXPECT_TRUE(ctx.cancelled());
    EXPECT_FALSE(ctx.connection().send_text("goodbye"));
    return std::nullopt;
  };
  make();
  auto peer = start_and_accept();
  ASSERT_FALSE(engine->stop());
  client->mark_stopped();
  ASSERT_EQ(peer->received().size(), 1u);
  EXPECT_EQ(peer->received()[0].payload, "goodbye");
}

TEST_P(EngineTest, RestartFromOnMessageClosesWith1001AndReconnects) {
  client->on_message_hook = [](Context& ctx, const Message& m) {
    if (m.payload == "restart") ctx.restart();
  };
  make();
  auto peer = start_and_accept();
  peer->send(MessageType::text, "restart");
  auto second = server->accept(5s);
  ASSERT_TRUE(second);
  ASSERT_TRUE(peer->client_close());
  EXPECT_EQ(peer->client_close()->code, close_code::going_away);
  ASSERT_TRUE(client->wait_count(Event::open, 2));
  EXPECT_EQ(client->events_of(Event::close)[0].initiator, CloseInitiator::client);
}

TEST_P(EngineTest, RestartAndExitFromAnotherThread) {
  make();
  auto peer = start_and_accept();
  std::thread([&] { engine->restart(); }).join();
  auto second = server->accept(5s);
  ASSERT_TRUE(second);
  ASSERT_TRUE(client->wait_count(Event::open, 2));
  EXPECT_EQ(peer->client_close().value_or(CloseFrame{}).code, close_code::going_away);
  std::thread([&] { engine->exit(); }).join();  // does not wait
  ASSERT_FALSE(engine->wait_stopped(10s));
  EXPECT_EQ(client->count(Event::close), 2u);
  EXPECT_EQ(server->dial_count(), 2u);
}

TEST_P(EngineTest, ExitFromOnMessageStops) {
  client->on_message_hook = [](Context& ctx, const Message&) { ctx.exit(); };
  make();
  auto peer = start_and_accept();
  peer->send(MessageType::text, "x");
  ASSERT_FALSE(engine->wait_stopped(10s));
  EXPECT_EQ(server->dial_count(), 1u);
  EXPECT_EQ(client->count(Event::close), 1u);
}

TEST_P(EngineTest, StopFromInsideEveryCallbackDoesNotDeadlock) {
  // OnMessage
  client->on_message_hook = [&](Context&, const Message&) { EXPECT_FALSE(engine->stop()); };
  make();
  auto peer = start_and_accept();
  peer->send(MessageType::text, "x");
  ASSERT_FALSE(engine->wait_stopped(10s));
  // OnClose
  client->on_message_hook = nullptr;
  client->on_close_hook = [&](Context&, const std::optional<CloseFrame>&) {
    EXPECT_FALSE(engine->stop());
    EXPECT_TRUE(engine->start().is(errc::already_started));
    return std::nullopt;
  };
  peer = start_and_accept();
  peer->drop();
  ASSERT_FALSE(engine->wait_stopped(10s));
  // OnRestartError
  client->on_close_hook = nullptr;
  client->on_restart_error_hook = [&](Context&, const Error&, std::uint32_t) { EXPECT_FALSE(engine->stop()); };
  peer = start_and_accept();
  server->fail_next_dials(Error(errc::connection_refused), 10);
  peer->drop();
  ASSERT_FALSE(engine->wait_stopped(10s));
  EXPECT_EQ(client->count(Event::restart_error), 1u);
}

TEST_P(EngineTest, DestroyingARunningEngineStopsIt) {
  make();
  auto peer = start_and_accept();
  engine.reset();
  client->mark_stopped();
  EXPECT_EQ(client->count(Event::close), 1u);
  ASSERT_TRUE(peer->client_close());
  EXPECT_EQ(peer->client_close()->code, close_code::normal);
}

// ------------------------------------------------------------ OnReadError

TEST_P(EngineTest, ReadErrorOnAnOpenConnectionKeepsReading) {
  make();
  auto peer = start_and_accept();
  peer->send(MessageType::text, "a");
  peer->inject_read_error(Error(errc::io_error, "transient"));
  peer->send(MessageType::text, "b");
  ASSERT_TRUE(client->wait_count(Event::message, 2));
  auto errors = client->events_of(Event::read_error);
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_TRUE(errors[0].error.is(errc::io_error));
  EXPECT_EQ(client->count(Event::close), 0u);
  EXPECT_EQ(client->events_of(Event::message)[1].sequence, 1u);
}

TEST_P(EngineTest, ReadErrorThatClosedTheConnectionRestarts) {
  make();
  auto peer = start_and_accept();
  peer->inject_read_error(Error(errc::message_too_big, "2 MiB > 1 MiB"), /*fail_connection=*/true);
  ASSERT_TRUE(client->wait_count(Event::open, 2));
  ASSERT_EQ(client->count(Event::read_error), 1u);
  auto close = client->events_of(Event::close)[0];
  EXPECT_FALSE(close.received);
  EXPECT_EQ(close.initiator, CloseInitiator::client);
}

TEST_P(EngineTest, RestartRequestedInOnReadErrorRestarts) {
  client->on_read_error_hook = [](Context& ctx, const Error&) { ctx.restart(); };
  make();
  auto peer = start_and_accept();
  peer->inject_read_error(Error(errc::protocol_error, "bad frame"));
  ASSERT_TRUE(server->accept(5s));
  ASSERT_TRUE(client->wait_count(Event::open, 2));
}

TEST_P(EngineTest, ExceptionInOnMessageBecomesAReadError) {
  client->on_message_hook = [](Context&, const Message& m) {
    if (m.payload == "boom") throw std::runtime_error("handler bug");
  };
  make();
  auto peer = start_and_accept();
  peer->send(MessageType::text, "boom");
  peer->send(MessageType::text, "fine");
  ASSERT_TRUE(client->wait_count(Event::read_error, 1));
  EXPECT_NE(client->events_of(Event::read_error)[0].payload.find("handler bug"), std::string::npos);
  ASSERT_TRUE(client->wait_for([](const std::vector<Event>& es) {
    for (auto& e : es)
      if (e.kind == Event::message && e.payload == "fine") return true;
    return false;
  }));
}

// ------------------------------------------------------------ Restart loop

TEST_P(EngineTest, RestartErrorsCountAndExitStopsTheLoop) {
  client->on_restart_error_hook = [](Context& ctx, const Error&, std::uint32_t n) {
    if (n == 3) ctx.exit();
  };
  make();
  auto peer = start_and_accept();
  server->fail_next_dials(Error::http(502, "bad gateway"), 100);
  peer->drop();
  ASSERT_FALSE(engine->wait_stopped(10s));
  auto errors = client->events_of(Event::restart_error);
  ASSERT_EQ(errors.size(), 3u);
  for (std::uint32_t i = 0; i < 3; ++i) {
    EXPECT_EQ(errors[i].retry, i + 1);
    EXPECT_EQ(errors[i].error.http_status, 502);
  }
  EXPECT_EQ(server->dial_count(), 4u);
}

TEST_P(EngineTest, AttemptLimitStopsTheLoop) {
  auto o = options();
  o.backoff.max_attempts = 2;
  make(o);
  auto peer = start_and_accept();
  server->fail_next_dials(Error(errc::connection_refused), 100);
  peer->drop();
  ASSERT_FALSE(engine->wait_stopped(10s));
  EXPECT_EQ(client->count(Event::restart_error), 2u);
}

TEST_P(EngineTest, StopCancelsAPendingBackoffAtOnce) {
  auto o = options();
  o.backoff.initial_delay = 60s;
  o.backoff.max_delay = 60s;
  o.backoff.jitter = 0;
  o.backoff.reset_after = 0ms;  // the drop reconnects at once; the refused dial backs off 60 s
  make(o);
  auto peer = start_and_accept();
  server->fail_next_dials(Error(errc::connection_refused), 100);
  peer->drop();
  ASSERT_TRUE(client->wait_count(Event::restart_error, 1));
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_FALSE(engine->stop());
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 5s);  // not the 60 s backoff
  EXPECT_EQ(engine->state(), EngineState::stopped);
}

// ------------------------------------------------------------ Reader slots, pause, writes

TEST_P(EngineTest, AtMostNOnMessageRunAtOnceAndNIsReached) {
  make(options(), 4);
  std::mutex m;
  std::condition_variable cv;
  int running = 0;
  bool released = false;
  client->on_message_hook = [&](Context&, const Message&) {
    std::unique_lock lock(m);
    ++running;
    cv.notify_all();
    cv.wait_for(lock, 10s, [&] { return released; });
    --running;
  };
  auto peer = start_and_accept();
  for (int i = 0; i < 12; ++i) peer->send(MessageType::text, std::to_string(i));
  {
    std::unique_lock lock(m);
    ASSERT_TRUE(cv.wait_for(lock, 10s, [&] { return running == 4; })) << "4 slots never ran at once";
    released = true;
    cv.notify_all();
  }
  ASSERT_TRUE(client->wait_count(Event::message, 12));
  EXPECT_EQ(client->max_concurrent_messages(), 4);
  std::vector<bool> seen(12);  // sequence numbers: each exactly once
  for (auto& e : client->events_of(Event::message)) {
    ASSERT_LT(e.sequence, 12u);
    EXPECT_FALSE(seen[e.sequence]);
    seen[e.sequence] = true;
  }
  engine->stop();
  client->on_message_hook = nullptr;
}

// The limit is the engine's, not the pool's: a runtime with more callback threads than
// slots, a flood of messages, and OnMessage held. The spare threads are then shown idle
// (a definite signal: tasks posted after the N-th OnMessage began, one per spare thread,
// all run at once, which they cannot while an extra OnMessage holds a spare thread; the
// engine posted its hand-off before that OnMessage began, so it runs first), and every
// OnMessage ran in a slot numbered below N, no two at once in the same slot.
TEST_P(EngineTest, TheSlotLimitHoldsOnARuntimeWithMoreCallbackThreadsThanSlots) {
  constexpr std::size_t kSlots = 3, kThreads = 8, kMessages = 30;
  constexpr int kSpare = static_cast<int>(kThreads - kSlots);
  auto tracer = std::make_shared<FakeTracer>();
  // The threads that run on_message: callback threads, or I/O threads (io_thread).
  const bool on_io = delivery == Delivery::io_thread;
  auto runtime = on_io ? Runtime::create({kThreads, 1}) : Runtime::create({1, kThreads});
  auto post_to_spare = [&](std::function<void()> task) {
    if (on_io) return boost::asio::post(io_context(*runtime), std::move(task));
    runtime->post(std::move(task));
  };
  EngineOptions o = options();
  o.reader_slots = kSlots;
  o.telemetry.tracer = tracer;
  client = std::make_shared<Recorder>(kSlots);
  engine = std::make_unique<Engine>(o, client, server->connector(), runtime);
  // Shared with the callbacks and tasks, which may outlive a failed assertion here.
  struct Sync {
    std::mutex m;
    std::condition_variable cv;
    int running = 0, spare_running = 0;
    bool released = false;
    void release() {
      std::lock_guard lock(m);
      released = true;
      cv.notify_all();
    }
  };
  auto sync = std::make_shared<Sync>();
  struct ReleaseOnExit {
    std::shared_ptr<Sync> sync;
    ~ReleaseOnExit() { sync->release(); }
  } release_on_exit{sync};
  client->on_message_hook = [sync](Context&, const Message&) {
    std::unique_lock lock(sync->m);
    ++sync->running;
    sync->cv.notify_all();
    sync->cv.wait_for(lock, 10s, [&] { return sync->released; });
    --sync->running;
  };
  auto peer = start_and_accept();
  for (std::size_t i = 0; i < kMessages; ++i) peer->send(MessageType::text, std::to_string(i));
  std::unique_lock lock(sync->m);
  ASSERT_TRUE(sync->cv.wait_for(lock, 10s, [&] { return sync->running == static_cast<int>(kSlots); }));
  for (int i = 0; i < kSpare; ++i) {
    post_to_spare([sync] {
      std::unique_lock task_lock(sync->m);
      ++sync->spare_running;
      sync->cv.notify_all();
      sync->cv.wait_for(task_lock, 10s, [&] { return sync->spare_running == kSpare || sync->released; });
    });
  }
  EXPECT_TRUE(sync->cv.wait_for(lock, 10s, [&] { return sync->spare_running == kSpare; }))
      << "a spare callback thread stayed busy: " << sync->running << " OnMessage running with " << kSlots << " slots";
  EXPECT_EQ(sync->running, static_cast<int>(kSlots));
  lock.unlock();
  sync->release();
  ASSERT_TRUE(client->wait_count(Event::message, kMessages));
  EXPECT_EQ(client->max_concurrent_messages(), static_cast<int>(kSlots));
  EXPECT_FALSE(engine->stop());
  client->on_message_hook = nullptr;
  auto spans = tracer->named("wscengine.on_message");
  ASSERT_EQ(spans.size(), kMessages);
  std::set<std::string> slots;
  for (const auto& span : spans) {
    ASSERT_TRUE(span.attributes.count("wscengine.reader_slot"));
    EXPECT_LT(std::stoul(span.attributes.at("wscengine.reader_slot")), kSlots);
    slots.insert(span.attributes.at("wscengine.reader_slot"));
  }
  EXPECT_EQ(slots.size(), kSlots) << "every slot was used";
}

TEST_P(EngineTest, PauseStopsReadingAndAllowsReadingByHand) {
  std::atomic<bool> paused{false};
  std::atomic<int> dispatched_while_paused{0}, hooks_done{0};
  client->on_message_hook = [&](Context&, const Message&) {
    if (paused.load()) ++dispatched_while_paused;
    ++hooks_done;
  };
  make();
  auto peer = start_and_accept();
  peer->send(MessageType::text, "before");
  // The Recorder counts a message before its hook runs: wait for the hook itself, or
  // the first message's hook could run after `paused` is set (ASan's timing did that).
  ASSERT_TRUE(wait_until([&] { return hooks_done.load() == 1; }));
  {
    PauseGuard pause = engine->pause();
    ASSERT_TRUE(pause.owns_lock());
    paused = true;
    EXPECT_FALSE(engine->send_text("request"));
    ASSERT_TRUE(peer->wait_received(1, 5s));
    peer->send(MessageType::text, "response");
    peer->send(MessageType::text, "later");
    // The engine holds no message back: reading by hand gets the response, then the
    // next one, both already buffered while the readers stood still.
    InboundMessage reply;
    ASSERT_FALSE(engine->connection().read(reply, 5s));
    EXPECT_EQ(reply.payload, "response");
    peer->send(MessageType::text, "after");
    ASSERT_FALSE(engine->connection().read(reply, 5s));
    EXPECT_EQ(reply.payload, "later");
    paused = false;
  }
  ASSERT_TRUE(client->wait_count(Event::message, 2));
  EXPECT_EQ(dispatched_while_paused.load(), 0) << "on_message ran while the pause lock was held";
  auto messages = client->events_of(Event::message);
  ASSERT_EQ(messages.size(), 2u);
  EXPECT_EQ(messages[1].payload, "after");
  EXPECT_EQ(messages[1].sequence, 1u) << "messages read by hand take no sequence number";
  // The Recorder counts a message before its hook runs: stop before the hook's locals go.
  EXPECT_FALSE(engine->stop());
}

// With Delivery::io_thread, on_message runs on an I/O thread, where a read by hand
// would wait for the I/O that thread serves: it is refused, and the answer reaches
// on_message instead.
TEST_P(EngineTest, PausedUserReadsTheResponseByHand) {
  std::promise<Error> got;
  InboundMessage reply;
  client->on_message_hook = [&](Context& ctx, const Message& m) {
    if (m.payload != "ask") return;
    PauseGuard pause = ctx.pause();  // from inside OnMessage, N = 1: must not deadlock
    EXPECT_FALSE(ctx.connection().send_text("question"));
    got.set_value(ctx.connection().read(reply, 5s));
  };
  make();
  auto peer = start_and_accept();
  peer->send(MessageType::text, "ask");
  ASSERT_TRUE(peer->wait_received(1, 5s));
  peer->send(MessageType::text, "answer");
  peer->send(MessageType::text, "after");
  auto answer = got.get_future();
  ASSERT_EQ(answer.wait_for(5s), std::future_status::ready);
  Error e = answer.get();
  if (delivery == Delivery::io_thread) {
    EXPECT_TRUE(e.is(errc::would_deadlock)) << e.message();
    ASSERT_TRUE(client->wait_count(Event::message, 3));
    EXPECT_EQ(client->events_of(Event::message)[1].payload, "answer");
    EXPECT_EQ(client->events_of(Event::message)[2].payload, "after");
    EXPECT_EQ(client->events_of(Event::message)[2].sequence, 2u);
  } else {
    ASSERT_FALSE(e) << e.message();
    EXPECT_EQ(reply.payload, "answer");
    EXPECT_TRUE(client->wait_count(Event::message, 2));
    EXPECT_EQ(client->events_of(Event::message)[1].payload, "after");
    EXPECT_EQ(client->events_of(Event::message)[1].sequence, 1u);
  }
  // The Recorder counts a message before its hook runs: stop before the hook's locals go.
  EXPECT_FALSE(engine->stop());
}

// The pause lock taken while OnMessage runs in the middle of a burst, again and again,
// with a message read by hand each time: no OnMessage starts while it is held, and
// every message is taken once, in order.
TEST_P(EngineTest, PausingWhileMessagesStreamLosesNothing) {
  constexpr int rounds = 100, burst = 30;
  PauseMidStream stream(rounds, burst);
  client->on_message_hook = [&](Context&, const Message& m) { stream.on_message(m); };
  make();
  auto peer = start_and_accept();
  int sent = 0;
  auto send_next = [&] { peer->send(MessageType::text, std::to_string(sent++)); };
  for (int r = 0; r < rounds; ++r) {
    for (int i = 0; i < burst; ++i) send_next();
    ASSERT_TRUE(stream.read_one_by_hand(*engine, r, send_next));
  }
  EXPECT_EQ(stream.started_while_paused(), 0);
  ASSERT_TRUE(client->wait_count(Event::message, static_cast<std::size_t>(sent - rounds)));
  EXPECT_TRUE(each_taken_once_in_order(client->events_of(Event::message), stream.by_hand(), sent));
}

TEST_P(EngineTest, StopWhilePausedDoesNotWaitForTheUser) {
  make();
  auto peer = start_and_accept();
  PauseGuard pause = engine->pause();
  ASSERT_FALSE(engine->stop());
  EXPECT_EQ(client->count(Event::close), 1u);
  pause.unlock();
  client->mark_stopped();
}

TEST_P(EngineTest, WritesFromManyThreadsArriveWhole) {
  make();
  auto peer = start_and_accept();
  constexpr int threads = 8, per_thread = 200;
  std::vector<std::thread> writers;
  for (int t = 0; t < threads; ++t) {
    writers.emplace_back([&, t] {
      for (int i = 0; i < per_thread; ++i) ASSERT_FALSE(engine->send_text(test::cat("t", t, ":", i)));
    });
  }
  for (auto& w : writers) w.join();
  ASSERT_TRUE(peer->wait_received(threads * per_thread, 5s));
  std::vector<int> next(threads, 0);
  for (auto& m : peer->received()) {
    auto colon = m.payload.find(':');
    int t = std::stoi(m.payload.substr(1, colon - 1));
    EXPECT_EQ(std::stoi(m.payload.substr(colon + 1)), next[t]++);  // per-thread order kept
  }
}

// not_running: nothing will send it until start(); not_connected: the engine is
// between sessions and a later send may succeed.
TEST_P(EngineTest, SendOutsideARunIsNotRunningAndBetweenSessionsNotConnected) {
  make();
  EXPECT_TRUE(engine->send_text("x").is(errc::not_running)) << "before start()";
  auto peer = start_and_accept();
  ASSERT_TRUE(peer);
  server->hang_next_dials();  // the next session never opens: the engine stays between sessions
  peer->drop();
  ASSERT_TRUE(client->wait_count(Event::close, 1));
  // The session is over once the next dial began (bounded wait for that signal).
  for (int i = 0; i < 5000 && server->dial_count() < 2; ++i) std::this_thread::sleep_for(1ms);
  ASSERT_EQ(server->dial_count(), 2u);
  Error between = engine->send_text("x");
  EXPECT_TRUE(between.is(errc::not_connected)) << between.message();
  EXPECT_EQ(engine->state(), EngineState::restarting);
  EXPECT_FALSE(engine->stop());
  Error after = engine->send_text("x");
  EXPECT_TRUE(after.is(errc::not_running)) << "after stop(): " << after.message();
}

TEST_P(EngineTest, ManyEnginesShareOneRuntime) {
  auto runtime = Runtime::create({1, 4});
  std::vector<std::shared_ptr<Recorder>> clients;
  std::vector<std::unique_ptr<Engine>> engines;
  for (int i = 0; i < 20; ++i) {
    clients.push_back(std::make_shared<Recorder>());
    engines.push_back(std::make_unique<Engine>(options(), clients.back(), server->connector(), runtime));
    ASSERT_FALSE(engines.back()->start());
  }
  std::vector<std::shared_ptr<memory::Peer>> peers;
  for (int i = 0; i < 20; ++i) peers.push_back(server->accept(5s));
  for (auto& p : peers) p->send(MessageType::binary, "tick");
  for (auto& c : clients) ASSERT_TRUE(c->wait_count(Event::message, 1));
  for (auto& e : engines) EXPECT_FALSE(e->stop());
  for (auto& c : clients) {
    c->mark_stopped();
    EXPECT_THAT(c->violations(), IsEmpty());
  }
}

TEST_P(EngineTest, AbortingAKeptConnectionEndsTheSessionAsADropAndReconnects) {
  std::mutex m;
  SessionConnection kept;
  client->on_open_hook = [&](Context& ctx, const HandshakeResponse&, bool) {
    std::lock_guard lock(m);
    kept = ctx.connection();
    return Error{};
  };
  make();
  auto peer = start_and_accept();
  SessionConnection first;
  {
    std::lock_guard lock(m);
    first = kept;
  }
  first.abort();  // e.g. a heartbeat found the peer dead: no close handshake
  ASSERT_TRUE(client->wait_count(Event::open, 2));
  auto closes = client->events_of(Event::close);
  ASSERT_EQ(closes.size(), 1u);
  ASSERT_TRUE(closes[0].received);
  EXPECT_EQ(closes[0].received->code, close_code::abnormal);
  EXPECT_FALSE(first.is_open());
  first.abort();  // on an ended session: nothing
  Error late = first.send_text("x");
  EXPECT_TRUE(late.is(errc::not_connected) || late.is(errc::closed)) << late.message();
}

TEST_P(EngineTest, ConnectionIsTheCurrentSessionsAndStaysBoundToIt) {
  make();
  EXPECT_TRUE(engine->connection().send_text("x").is(errc::not_connected)) << "before the first session";
  auto peer = start_and_accept();
  SessionConnection first = engine->connection();
  EXPECT_EQ(first.session_id(), 1u);
  ASSERT_FALSE(first.send_text("hello"));
  ASSERT_TRUE(peer->wait_received(1, 5s));
  peer->drop();
  ASSERT_TRUE(client->wait_count(Event::open, 2));
  ASSERT_TRUE(wait_state(*engine, EngineState::running));
  EXPECT_EQ(engine->connection().session_id(), 2u);
  EXPECT_TRUE(first.send_text("late")) << "the kept connection belongs to session 1";
}

// ------------------------------------------------------------ from inside every callback

// Each of the six callbacks calls each engine operation that could wait for the
// engine: every call returns (stop/exit/restart ask and return, pause takes the
// read lock or an empty guard, send never waits, wait_stopped is refused with
// would_deadlock), and the test thread can still stop and destroy the engine.
namespace {

enum class Where { on_open, on_message, on_read_error, on_close, on_close_error, on_restart_error };
enum class What { stop, exit, restart, pause, send, wait_stopped };

std::string name_of(Where w) {
  const char* names[] = {"OnOpen", "OnMessage", "OnReadError", "OnClose", "OnCloseError", "OnRestartError"};
  return names[static_cast<int>(w)];
}
std::string name_of(What w) {
  const char* names[] = {"Stop", "Exit", "Restart", "Pause", "Send", "WaitStopped"};
  return names[static_cast<int>(w)];
}

// What the operation did, "ok" when it did what the contract says.
std::string perform(Engine& engine, What what) {
  switch (what) {
    case What::stop:
      return engine.stop() ? "stop() failed" : "ok";
    case What::exit:
      engine.exit();
      return "ok";
    case What::restart:
      engine.restart();
      return "ok";
    case What::pause: {
      PauseGuard guard = engine.pause();
      return "ok";
    }
    case What::send: {
      Error e = engine.send_text("from a callback");
      return !e || e.is(errc::not_connected) || e.is(errc::closed) ? "ok" : "send: " + e.message();
    }
    case What::wait_stopped: {
      Error e = engine.wait_stopped(std::chrono::seconds(10));
      return e.is(errc::would_deadlock) ? "ok" : "wait_stopped: " + e.message();
    }
  }
  return "?";
}

class FromInsideEveryCallback : public ::testing::TestWithParam<std::tuple<Where, What, Delivery>> {};

}  // namespace

TEST_P(FromInsideEveryCallback, TheCallReturnsAndTheEngineStillStops) {
  const auto [where, what, delivery] = GetParam();
  auto server = memory::Server::create();
  auto client = std::make_shared<LambdaClient>();
  std::unique_ptr<Engine> engine;
  std::promise<std::string> outcome;
  std::atomic<bool> acted{false};
  auto act = [&](Where here) {
    if (here != where || acted.exchange(true)) return;
    outcome.set_value(perform(*engine, what));
  };
  client->open = [&](Context&, const HandshakeResponse&, bool) {
    act(Where::on_open);
    return Error{};
  };
  client->message = [&](Context&, const Message&) { act(Where::on_message); };
  client->read_error = [&](Context&, const Error&) { act(Where::on_read_error); };
  client->close = [&](Context&, const std::optional<CloseFrame>&) -> std::optional<CloseFrame> {
    act(Where::on_close);
    if (where == Where::on_close_error) return CloseFrame{close_code::abnormal, "not sendable"};
    return std::nullopt;
  };
  client->close_error = [&](Context&, const Error&) { act(Where::on_close_error); };
  client->restart_error = [&](Context&, const Error&, std::uint32_t) { act(Where::on_restart_error); };

  EngineOptions o;
  o.url = "ws://memory.test/feed";
  o.backoff.initial_delay = 1ms;
  o.backoff.max_delay = 5ms;
  o.open_timeout = 5s;
  o.stop_timeout = 5s;
  o.delivery = delivery;
  engine = std::make_unique<Engine>(o, client, server->connector());
  (void)engine->start();  // stop, exit or restart inside OnOpen may fail the start itself
  auto peer = server->accept(5s);
  switch (where) {
    case Where::on_open:
      break;
    case Where::on_message:
      ASSERT_TRUE(peer);
      peer->send(MessageType::text, "x");
      break;
    case Where::on_read_error:
      ASSERT_TRUE(peer);
      peer->inject_read_error(Error(errc::io_error, "transient"));
      break;
    case Where::on_close:
      ASSERT_TRUE(peer);
      peer->drop();
      break;
    case Where::on_close_error:
      engine->restart();  // OnClose answers with an unsendable code: OnCloseError
      break;
    case Where::on_restart_error:
      ASSERT_TRUE(peer);
      server->fail_next_dials(Error(errc::connection_refused, "refused"), 3);
      peer->drop();
      break;
  }
  auto result = outcome.get_future();
  ASSERT_EQ(result.wait_for(10s), std::future_status::ready) << "the callback never ran, or its call never returned";
  EXPECT_EQ(result.get(), "ok");
  EXPECT_FALSE(engine->stop()) << "the engine could not be stopped afterwards";
  engine.reset();
}

INSTANTIATE_TEST_SUITE_P(Engine, FromInsideEveryCallback,
                         ::testing::Combine(::testing::Values(Where::on_open, Where::on_message, Where::on_read_error,
                                                              Where::on_close, Where::on_close_error,
                                                              Where::on_restart_error),
                                            ::testing::Values(What::stop, What::exit, What::restart, What::pause,
                                                              What::send, What::wait_stopped),
                                            ::testing::Values(Delivery::callback_pool, Delivery::io_thread)),
                         [](const auto& info) {
                           return name_of(std::get<0>(info.param)) + name_of(std::get<1>(info.param)) +
                                  delivery_name(std::get<2>(info.param));
                         });

INSTANTIATE_TEST_SUITE_P(Deliveries, EngineTest, ::testing::Values(Delivery::callback_pool, Delivery::io_thread),
                         [](const auto& info) { return delivery_name(info.param); });

// ------------------------------------------------------------ Delivery::io_thread fairness

// Two engines on one I/O thread: one has 10,000 messages waiting, the other gets one
// while the first is reading them. The busy one yields its I/O thread after a turn of
// messages (256), so the other's on_message runs long before the busy one is done.
TEST(LowLatencyDelivery, ABusyConnectionYieldsItsIoThreadToTheOthers) {
  constexpr int kBuffered = 10000;
  auto runtime = Runtime::create({1, 2});
  auto busy_server = memory::Server::create();
  auto other_server = memory::Server::create();
  EngineOptions o;
  o.url = "ws://memory.test/feed";
  o.delivery = Delivery::io_thread;
  std::atomic<int> busy_count{0};
  std::promise<int> busy_count_when_other_ran;
  std::shared_ptr<memory::Peer> other_peer;
  auto busy = std::make_shared<LambdaClient>();
  busy->message = [&](Context&, const Message&) {
    if (busy_count.fetch_add(1) == 0) other_peer->send(MessageType::text, "now");  // wakes the other engine
  };
  auto other = std::make_shared<LambdaClient>();
  other->message = [&](Context&, const Message&) { busy_count_when_other_ran.set_value(busy_count.load()); };
  Engine other_engine(o, other, other_server->connector(), runtime);
  Engine busy_engine(o, busy, busy_server->connector(), runtime);
  ASSERT_FALSE(other_engine.start());
  other_peer = other_server->accept(5s);
  ASSERT_TRUE(other_peer);
  std::shared_ptr<memory::Peer> busy_peer;
  {
    PauseGuard paused = busy_engine.pause();  // every message is buffered before reading starts
    ASSERT_FALSE(busy_engine.start());
    busy_peer = busy_server->accept(5s);
    ASSERT_TRUE(busy_peer);
    for (int i = 0; i < kBuffered; ++i) busy_peer->send(MessageType::text, "m");
  }
  auto seen = busy_count_when_other_ran.get_future();
  ASSERT_EQ(seen.wait_for(10s), std::future_status::ready);
  EXPECT_LT(seen.get(), 1000) << "the other engine waited for most of the busy one's messages";
  EXPECT_FALSE(busy_engine.stop());
  EXPECT_FALSE(other_engine.stop());
}
