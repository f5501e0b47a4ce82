// Private: the engine's small random numbers (backoff jitter, message sampling).
#pragma once

#include <cstdint>
#include <random>

namespace wscengine::detail {

/// SplitMix64: eight bytes of state and a few multiplications per number. Enough for
/// jitter and sampling (not for anything secret). Thread safety: none.
class SplitMix64 {
 public:
  /// Seeded from std::random_device.
  SplitMix64() : state_((std::uint64_t{std::random_device{}()} << 32) ^ std::random_device{}()) {}
  explicit SplitMix64(std::uint64_t seed) : state_(seed) {}

  std::uint64_t next() noexcept { return next(state_); }
  /// The generator over state kept elsewhere (a plain thread_local).
  static std::uint64_t next(std::uint64_t& state) noexcept {
    std::uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  /// Uniform in [0, 1).
  double unit() noexcept { return static_cast<double>(next() >> 11) * 0x1.0p-53; }

 private:
  std::uint64_t state_;
};

}  // namespace wscengine::detail
