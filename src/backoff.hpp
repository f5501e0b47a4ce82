// Private: the restart loop's pacing (EngineOptions::backoff), apart from the engine so
// that its exact delays can be tested with a chosen random source and clock.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>

#include <wscengine/options.hpp>

namespace wscengine::detail {

/// The backoff level and the delays it gives. The level grows with every failed
/// attempt and with every session that ended within `reset_after` of opening; a session
/// that stayed up that long resets it. Thread safety: none (the engine's mutex).
class RestartBackoff {
 public:
  using Clock = std::chrono::steady_clock;
  /// Uniformly distributed in [0, 1): how much of the jitter a delay gets.
  using Random = std::function<double()>;
  using Now = std::function<Clock::time_point()>;

  /// `random` and `now` default to a randomly seeded generator and the steady clock.
  explicit RestartBackoff(const BackoffOptions& options, Random random = {}, Now now = {});

  /// A new start(): level 0.
  void reset() noexcept { level_ = 0; }
  /// After a failed attempt: one level up, and the delay before the next attempt.
  std::chrono::milliseconds after_failed_attempt();
  /// A session opened now.
  void opened();
  /// After a session ended: nullopt to reconnect at once (it was stable, which resets
  /// the level, or a restart was asked for), else the delay (one level up).
  std::optional<std::chrono::milliseconds> after_session(bool restart_requested);
  /// `min(max_delay, initial_delay * factor^(level-1))` less a random part of up to
  /// `jitter` of itself. Level >= 1.
  std::chrono::milliseconds delay(std::uint32_t level);
  std::uint32_t level() const noexcept { return level_; }

 private:
  const BackoffOptions options_;
  Random random_;
  Now now_;
  std::uint32_t level_ = 0;
  Clock::time_point opened_at_{};
};

}  // namespace wscengine::detail
