// Test support: a Client that records every callback and checks the contract's
// invariants as they happen.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include <wscengine/wscengine.hpp>

namespace wscengine::test {

using namespace std::chrono_literals;

/// One recorded callback.
struct Event {
  enum Kind { open, message, read_error, close, close_error, restart_error } kind;
  std::uint64_t session = 0;
  std::string payload;  // message payload or error message
  std::uint64_t sequence = 0;
  std::optional<CloseFrame> received;  // OnClose
  CloseInitiator initiator = CloseInitiator::client;
  bool restarting = false;
  std::uint32_t retry = 0;
  Error error;
};

/// Records callbacks; hooks let a test act inside them. Invariant violations are
/// collected in `violations()` (every test asserts it is empty).
/// Thread safety: all members may be called from any thread.
class Recorder : public Client {
 public:
  explicit Recorder(std::size_t reader_slots = 1) : slots_(reader_slots) {}

  std::function<Error(Context&, const HandshakeResponse&, bool)> on_open_hook;
  std::function<void(Context&, const Message&)> on_message_hook;
  std::function<void(Context&, const Error&)> on_read_error_hook;
  std::function<std::optional<CloseFrame>(Context&, const std::optional<CloseFrame>&)> on_close_hook;
  std::function<void(Context&, const Error&, std::uint32_t)> on_restart_error_hook;

  Error on_open(Context& ctx, const HandshakeResponse& r, bool restarting) override;
  void on_message(Context& ctx, const Message& m) override;
  void on_read_error(Context& ctx, const Error& e) override;
  std::optional<CloseFrame> on_close(Context& ctx, const std::optional<CloseFrame>& received) override;
  void on_close_error(Context& ctx, const Error& e) override;
  void on_restart_error(Context& ctx, const Error& e, std::uint32_t n) override;

  std::vector<Event> events() const;
  std::vector<Event> events_of(Event::Kind kind) const;
  std::size_t count(Event::Kind kind) const;
  std::vector<std::string> violations() const;
  /// Waits until `pred(events)` holds or the timeout passes.
  bool wait_for(const std::function<bool(const std::vector<Event>&)>& pred,
                std::chrono::milliseconds timeout = 10s) const;
  bool wait_count(Event::Kind kind, std::size_t n, std::chrono::milliseconds timeout = 10s) const;
  /// Marks that Stop() returned or the engine was destroyed: any later callback is a violation.
  void mark_stopped();
  void mark_started();
  int max_concurrent_messages() const { return max_in_message_.load(); }

 private:
  void record(Event e);
  void violation(std::string what);
  struct SessionState {
    bool open_returned = false;
    bool open_succeeded = false;
    bool closed = false;
    std::uint64_t next_sequence = 0;
    // Streamed messages whose first part came and last not yet: sequence -> bytes so
    // far, and whether one of its parts is in on_message now.
    std::map<std::uint64_t, std::pair<std::uint64_t, bool>> streaming;
  };
  SessionState& state_locked(std::uint64_t session);

  const std::size_t slots_;
  mutable std::mutex mutex_;
  mutable std::condition_variable cv_;
  std::vector<Event> events_;
  std::vector<std::string> violations_;
  std::vector<std::pair<std::uint64_t, SessionState>> sessions_;
  std::uint64_t open_session_ = 0;  // session whose OnClose has not returned yet
  bool stopped_ = false;
  std::atomic<int> in_message_{0};
  std::atomic<int> max_in_message_{0};
};

/// Stops and destroys the engine, then checks the recorder saw no contract
/// violation (what every engine test ends with).
inline void stop_and_check(std::unique_ptr<Engine>& engine, Recorder& client) {
  if (engine) {
    EXPECT_FALSE(engine->stop());
    client.mark_stopped();
    engine.reset();
  }
  std::string all;
  for (const auto& v : client.violations()) all += "\n  " + v;
  EXPECT_TRUE(all.empty()) << "contract violations:" << all;
}

/// Checks a stream of messages whose payloads are the numbers 0..total-1: each was
/// taken exactly once, by OnMessage (`dispatched`) or by hand while paused
/// (`by_hand`), and each of the two took them in increasing order.
::testing::AssertionResult each_taken_once_in_order(const std::vector<Event>& dispatched,
                                                    const std::vector<int>& by_hand, int total);

/// Polls `done()` every millisecond until it holds or `timeout` passes: for states
/// with no event to wait on (a bounded wait for a definite state, not a sleep).
template <class Pred>
bool wait_until(Pred done, std::chrono::milliseconds timeout = 20s) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

/// Polls until the engine is in `state` (state changes have no event to wait on).
inline bool wait_state(const Engine& engine, EngineState state, std::chrono::milliseconds timeout = 10s) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (engine.state() != state) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

}  // namespace wscengine::test
