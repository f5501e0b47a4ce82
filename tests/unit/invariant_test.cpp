// Randomized invariant test: at least 1,000 sessions on the in-memory adapter with
// random drops, close frames, read errors, restart/exit from random callbacks,
// random N and random Stop timing. The Recorder checks every invariant of the
// contract as callbacks run; this test checks the per-session totals.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <map>
#include <random>
#include <set>
#include <thread>

#include <wscengine/memory.hpp>
#include <wscengine/wscengine.hpp>

#include "support/recorder.hpp"

using namespace wscengine;
using namespace wscengine::test;

namespace {

std::uint64_t seed_from_env() {
  if (const char* s = std::getenv("WSCENGINE_SEED")) return std::strtoull(s, nullptr, 10);
  return 20261126;
}

std::string dump(const std::vector<Event>& events) {
  std::string out;
  for (const auto& e : events) {
    if (e.kind == Event::message) continue;
    out +=
        "\n  " + std::to_string(e.kind) + " s" + std::to_string(e.session) + " " + e.payload + " " + e.error.message();
  }
  return out;
}

enum class Action {
  drop,
  peer_close,
  transient_error,
  fatal_error,
  restart_in_message,
  exit_in_message,
  stop,
  restart_in_open
};

}  // namespace

TEST(Invariants, ThousandRandomSessions) {
  const std::uint64_t seed = seed_from_env();
  SCOPED_TRACE("seed " + std::to_string(seed) + " (rerun with WSCENGINE_SEED=" + std::to_string(seed) + ")");
  std::mt19937_64 rng(seed);
  auto runtime = Runtime::create({1, 4});
  std::size_t total_sessions = 0;
  std::size_t runs = 0;

  while (total_sessions < 1000) {
    ++runs;
    auto server = memory::Server::create();
    std::size_t slots = 1 + rng() % 4;
    auto client = std::make_shared<Recorder>(slots);
    std::atomic<int> restart_next_message{0}, exit_next_message{0}, fail_next_open{0}, handled{0};
    client->on_message_hook = [&](Context& ctx, const Message&) {
      if (restart_next_message.exchange(0)) ctx.restart();
      if (exit_next_message.exchange(0)) ctx.exit();
      if (++handled % 7 == 0) std::this_thread::yield();  // vary the interleavings
    };
    std::atomic<int> closes_seen{0};
    client->on_close_hook = [&](Context&, const std::optional<CloseFrame>&) -> std::optional<CloseFrame> {
      if (++closes_seen % 3 == 0) std::this_thread::sleep_for(std::chrono::microseconds(300));  // widen races
      return std::nullopt;
    };
    client->on_open_hook = [&](Context& ctx, const HandshakeResponse&, bool restarting) {
      if (restarting && fail_next_open.exchange(0)) return Error(errc::io_error, "random OnOpen failure");
      return Error{};
    };
    EngineOptions o;
    o.url = "ws://memory.test/";
    o.reader_slots = slots;
    o.backoff.initial_delay = 0ms;
    o.backoff.max_delay = 1ms;
    auto engine = std::make_unique<Engine>(o, client, server->connector(), runtime);
    ASSERT_FALSE(engine->start());
    bool stopped = false;
    for (int round = 0; round < 60 && !stopped; ++round) {
      auto peer = server->accept(10s);
      if (!peer) {
        // The engine stopped on its own (exit) or is still retrying after an OnOpen failure.
        if (engine->state() == EngineState::stopped) break;
        FAIL() << "no connection within 10 s, state " << static_cast<int>(engine->state());
      }
      // Act only once this connection's OnOpen has returned (accept sees the dial first).
      ASSERT_TRUE(client->wait_for([&](const std::vector<Event>& es) {
        return static_cast<std::size_t>(std::count_if(
                   es.begin(), es.end(), [](const Event& e) { return e.kind == Event::open; })) >= server->dial_count();
      }));
      int messages = static_cast<int>(rng() % 20);
      for (int i = 0; i < messages; ++i) peer->send(rng() % 2 ? MessageType::text : MessageType::binary, "m");
      auto action = static_cast<Action>(rng() % 8);
      if (std::getenv("WSCENGINE_TRACE"))
        std::fprintf(stderr, "run %zu round %d N=%zu msgs=%d action=%d\n", runs, round, slots, messages,
                     static_cast<int>(action));
      switch (action) {
        case Action::drop:
          peer->drop();
          break;
        case Action::peer_close:
          peer->send_close({static_cast<std::uint16_t>(4000 + rng() % 100), "r"});
          break;
        case Action::transient_error:
          peer->inject_read_error(Error(errc::io_error, "transient"));
          peer->send(MessageType::text, "after");
          peer->drop();
          break;
        case Action::fatal_error:
          peer->inject_read_error(Error(errc::invalid_utf8, "bad"), true);
          break;
        case Action::restart_in_message:
          restart_next_message = 1;
          peer->send(MessageType::text, "trigger");
          break;
        case Action::restart_in_open: {
          // The next OnOpen fails: its connection is accepted, then closed by the engine.
          std::size_t before = client->count(Event::restart_error);
          fail_next_open = 1;
          peer->drop();
          ASSERT_TRUE(client->wait_count(Event::restart_error, before + 1));
          auto refused = server->accept(10s);
          ASSERT_TRUE(refused);
          ASSERT_TRUE(refused->wait_closed(10s))
              << "dials " << server->dial_count() << " restart errors " << client->count(Event::restart_error)
              << " opens " << client->count(Event::open) << " received " << refused->received().size()
              << dump(client->events());
          break;
        }
        case Action::exit_in_message:
          exit_next_message = 1;
          peer->send(MessageType::text, "trigger");
          ASSERT_FALSE(engine->wait_stopped(10s));
          stopped = true;
          break;
        case Action::stop:
          if (rng() % 2) std::this_thread::sleep_for(std::chrono::microseconds(rng() % 500));
          ASSERT_FALSE(engine->stop());
          stopped = true;
          break;
      }
    }
    ASSERT_FALSE(engine->stop());
    client->mark_stopped();
    engine.reset();
    auto violations = client->violations();
    ASSERT_THAT(violations, ::testing::IsEmpty()) << "run " << runs << " N=" << slots;

    // Per session: sequences are exactly 0..k-1, OnClose once for each opened session.
    std::map<std::uint64_t, std::set<std::uint64_t>> sequences;
    std::map<std::uint64_t, int> closes;
    std::set<std::uint64_t> opened;
    for (const auto& e : client->events()) {
      if (e.kind == Event::message) {
        ASSERT_TRUE(sequences[e.session].insert(e.sequence).second) << "repeated sequence";
      }
      if (e.kind == Event::close) ++closes[e.session];
      if (e.kind == Event::open && !e.error) opened.insert(e.session);
    }
    for (auto& [session, seqs] : sequences) {
      ASSERT_EQ(*seqs.rbegin() + 1, seqs.size()) << "gap in sequences of session " << session;
    }
    for (auto s : opened) ASSERT_EQ(closes[s], 1) << "session " << s;
    ASSERT_EQ(closes.size(), opened.size());
    total_sessions += opened.size();
  }
  RecordProperty("sessions", static_cast<int>(total_sessions));
  RecordProperty("runs", static_cast<int>(runs));
}
