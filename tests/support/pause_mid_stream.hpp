// Test support: takes the pause lock in the middle of a stream of messages, while
// OnMessage runs, and checks that no OnMessage starts while it is held.
#pragma once

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <future>
#include <string>
#include <vector>

#include <wscengine/wscengine.hpp>

namespace wscengine::test {

/// The stream: round r sends `burst` messages, then one more while the test holds the
/// pause lock; every payload is the message's number (0, 1, 2, …). The OnMessage of
/// each round's first message waits until the test has paused, so the lock is taken
/// while the reader is busy and the rest of the burst is (typically) buffered.
/// Thread safety: on_message from the engine's threads, the rest from the test's thread.
class PauseMidStream {
 public:
  PauseMidStream(int rounds, int burst) : burst_(burst) {
    for (int r = 0; r < rounds; ++r) {
      reached_.emplace_back();
      go_.emplace_back();
      returned_.emplace_back();
      reached_futures_.push_back(reached_.back().get_future());
      go_futures_.push_back(go_.back().get_future());
      returned_futures_.push_back(returned_.back().get_future());
    }
  }

  /// Install as the client's OnMessage hook.
  void on_message(const Message& m) {
    started_while_paused_ += paused_.load();
    int n = std::stoi(std::string(m.payload));
    if (n % (burst_ + 1) != 0) return;
    auto r = static_cast<std::size_t>(n / (burst_ + 1));
    if (r >= reached_.size()) return;
    reached_[r].set_value();
    (void)go_futures_[r].wait_for(std::chrono::seconds(10));  // bounded: a test never hangs
    returned_[r].set_value();
  }

  /// Waits for round r's first OnMessage, takes the pause lock while it runs, lets it
  /// return and waits until it has (a reader that ignored the lock would go on to the
  /// rest of the burst now). Empty guard when the message never came.
  PauseGuard pause_in_round(Engine& engine, int r) {
    auto i = static_cast<std::size_t>(r);
    if (reached_futures_[i].wait_for(std::chrono::seconds(10)) != std::future_status::ready) {
      ADD_FAILURE() << "round " << r << ": its first message was never dispatched";
      return PauseGuard();
    }
    PauseGuard guard = engine.pause();
    paused_ = true;
    go_[i].set_value();
    (void)returned_futures_[i].wait_for(std::chrono::seconds(10));
    return guard;
  }

  /// Call before letting go of the guard.
  void unpausing() { paused_ = false; }

  /// One round after its burst was sent: pauses mid-burst, has `send_one` send one
  /// more message (so at least one is unread while paused), reads one message by
  /// hand and keeps its number (by_hand()), lets go. False after a test failure.
  bool read_one_by_hand(Engine& engine, int r, const std::function<void()>& send_one) {
    PauseGuard pause = pause_in_round(engine, r);
    if (!pause.owns_lock()) return false;
    send_one();
    InboundMessage m;
    Error e = engine.connection().read(m, std::chrono::seconds(5));
    unpausing();
    if (e) {
      ADD_FAILURE() << "round " << r << ": reading by hand: " << e.message();
      return false;
    }
    by_hand_.push_back(std::stoi(m.payload));
    return true;
  }
  /// The numbers of the messages read by hand, in order.
  const std::vector<int>& by_hand() const { return by_hand_; }

  /// OnMessage calls that started while the test held the pause lock.
  int started_while_paused() const { return started_while_paused_.load(); }

 private:
  const int burst_;
  std::vector<std::promise<void>> reached_, go_, returned_;
  std::vector<std::future<void>> reached_futures_, go_futures_, returned_futures_;
  std::atomic<bool> paused_{false};
  std::atomic<int> started_while_paused_{0};
  std::vector<int> by_hand_;
};

}  // namespace wscengine::test
