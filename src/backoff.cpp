#include "backoff.hpp"

#include "random.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>

namespace wscengine::detail {

RestartBackoff::RestartBackoff(const BackoffOptions& options, Random random, Now now)
    : options_(options), random_(std::move(random)), now_(std::move(now)) {
  if (!random_) {
    // Eight bytes of state held in the std::function itself. A std::mt19937_64 per
    // engine was 2.5 KB of every idle connection's memory.
    random_ = [generator = SplitMix64()]() mutable { return generator.unit(); };
  }
  if (!now_) now_ = [] { return Clock::now(); };
}

std::chrono::milliseconds RestartBackoff::delay(std::uint32_t level) {
  const auto& b = options_;
  double delay = static_cast<double>(b.initial_delay.count()) *
                 std::pow(b.factor, static_cast<double>(std::max<std::uint32_t>(level, 1) - 1));
  delay = std::min(delay, static_cast<double>(b.max_delay.count()));
  if (b.jitter > 0) delay -= delay * b.jitter * random_();
  return std::chrono::milliseconds(static_cast<std::int64_t>(delay));
}

std::chrono::milliseconds RestartBackoff::after_failed_attempt() { return delay(++level_); }

void RestartBackoff::opened() { opened_at_ = now_(); }

std::optional<std::chrono::milliseconds> RestartBackoff::after_session(bool restart_requested) {
  const bool short_lived = now_() - opened_at_ < options_.reset_after;
  if (!short_lived) level_ = 0;
  if (restart_requested || !short_lived) return std::nullopt;
  return delay(++level_);
}

}  // namespace wscengine::detail
