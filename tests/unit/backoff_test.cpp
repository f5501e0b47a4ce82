// The restart loop's delays (EngineOptions::backoff), exactly: growth by `factor`, the
// `max_delay` cap reached and held, jitter within its range, and `reset_after`, with
// the random source and the clock chosen by the test.
#include <gtest/gtest.h>

#include <deque>
#include <random>
#include <vector>

#include "backoff.hpp"

using namespace std::chrono_literals;
using wscengine::BackoffOptions;
using wscengine::detail::RestartBackoff;
using ms = std::chrono::milliseconds;

namespace {

BackoffOptions options(double jitter) {
  BackoffOptions b;
  b.initial_delay = 100ms;
  b.factor = 2.0;
  b.max_delay = 1000ms;
  b.jitter = jitter;
  b.reset_after = 30s;
  return b;
}

// Hands out the given unit values in turn, and counts what was drawn.
struct Draws {
  std::deque<double> values;
  int drawn = 0;
  RestartBackoff::Random source() {
    return [this] {
      ++drawn;
      double v = values.front();
      values.pop_front();
      return v;
    };
  }
};

// A clock the test moves.
struct FakeClock {
  RestartBackoff::Clock::time_point now{};
  RestartBackoff::Now source() {
    return [this] { return now; };
  }
};

}  // namespace

TEST(Backoff, WithoutJitterTheDelaysGrowByTheFactorUpToTheCapAndStayThere) {
  RestartBackoff backoff(options(0.0));
  std::vector<ms> delays;
  for (int i = 0; i < 8; ++i) delays.push_back(backoff.after_failed_attempt());
  EXPECT_EQ(delays, (std::vector<ms>{100ms, 200ms, 400ms, 800ms, 1000ms, 1000ms, 1000ms, 1000ms}));
  EXPECT_EQ(backoff.level(), 8u);
}

TEST(Backoff, JitterTakesItsRandomShareOfTheCappedDelay) {
  Draws draws{{0.0, 0.5, 0.25, 0.999, 0.5, 0.0}};
  RestartBackoff backoff(options(1.0), draws.source());
  std::vector<ms> delays;
  for (int i = 0; i < 6; ++i) delays.push_back(backoff.after_failed_attempt());
  // level bound 100, 200, 400, 800, 1000 (cap), 1000; each less bound * jitter * draw.
  EXPECT_EQ(delays, (std::vector<ms>{100ms, 100ms, 300ms, 0ms, 500ms, 1000ms}));
  EXPECT_EQ(draws.drawn, 6);
}

TEST(Backoff, PartialJitterKeepsTheRestOfTheDelay) {
  Draws draws{{0.999999, 0.999999, 0.0}};
  RestartBackoff backoff(options(0.25), draws.source());
  EXPECT_EQ(backoff.after_failed_attempt(), 75ms);   // 100 less at most 25 %
  EXPECT_EQ(backoff.after_failed_attempt(), 150ms);  // 200 less at most 25 %
  EXPECT_EQ(backoff.after_failed_attempt(), 400ms);  // a draw of 0: the whole bound
}

TEST(Backoff, SeededDelaysAreReproducibleAndEachWithinItsRange) {
  auto seeded = [](std::uint64_t seed) {
    auto engine = std::make_shared<std::mt19937_64>(seed);
    return RestartBackoff::Random([engine] { return std::uniform_real_distribution<double>(0.0, 1.0)(*engine); });
  };
  RestartBackoff a(options(0.5), seeded(42)), b(options(0.5), seeded(42));
  const ms bounds[] = {100ms, 200ms, 400ms, 800ms, 1000ms, 1000ms, 1000ms, 1000ms, 1000ms, 1000ms};
  bool some_jittered = false;
  for (ms bound : bounds) {
    ms d = a.after_failed_attempt();
    EXPECT_EQ(d, b.after_failed_attempt()) << "the same seed gives the same delays";
    EXPECT_LE(d, bound);
    EXPECT_GE(d, bound / 2) << "jitter 0.5 takes at most half";
    some_jittered = some_jittered || d != bound;
  }
  EXPECT_TRUE(some_jittered);
}

TEST(Backoff, ShortLivedSessionsBackOffAndAStableOneResetsTheLevel) {
  FakeClock clock;
  RestartBackoff backoff(options(0.0), {}, clock.source());
  // A server that accepts and drops at once: each session ends within reset_after.
  std::vector<ms> delays;
  for (int i = 0; i < 3; ++i) {
    backoff.opened();
    clock.now += 29s;
    auto d = backoff.after_session(false);
    ASSERT_TRUE(d.has_value()) << "session " << i << " was short-lived";
    delays.push_back(*d);
  }
  EXPECT_EQ(delays, (std::vector<ms>{100ms, 200ms, 400ms}));
  // A failed attempt continues from there.
  EXPECT_EQ(backoff.after_failed_attempt(), 800ms);
  // One that stayed up reset_after: reconnect at once, and the level starts again.
  backoff.opened();
  clock.now += 30s;
  EXPECT_FALSE(backoff.after_session(false).has_value());
  EXPECT_EQ(backoff.level(), 0u);
  EXPECT_EQ(backoff.after_failed_attempt(), 100ms);
}

TEST(Backoff, ARestartAskedForReconnectsAtOnceWithoutRaisingTheLevel) {
  FakeClock clock;
  RestartBackoff backoff(options(0.0), {}, clock.source());
  backoff.after_failed_attempt();
  backoff.after_failed_attempt();
  backoff.opened();
  clock.now += 1s;
  EXPECT_FALSE(backoff.after_session(true).has_value());
  EXPECT_EQ(backoff.level(), 2u) << "short-lived: not reset, not raised";
  backoff.reset();
  EXPECT_EQ(backoff.after_failed_attempt(), 100ms) << "a new start begins at level 1";
}

// The engine's own random source (none injected): full jitter spreads 4,000 capped
// delays over the whole range, evenly enough for a reconnect storm (each tenth of the
// range gets 400 ± 100), and two engines draw differently.
TEST(Backoff, TheDefaultRandomSourceSpreadsTheDelaysEvenly) {
  RestartBackoff first(options(1.0)), second(options(1.0));
  for (int i = 0; i < 4; ++i) (void)first.after_failed_attempt(), (void)second.after_failed_attempt();
  std::vector<int> tenths(10);
  int same = 0;
  for (int i = 0; i < 4000; ++i) {
    ms a = first.after_failed_attempt(), b = second.after_failed_attempt();  // level >= 5: capped at 1000 ms
    ASSERT_GE(a.count(), 0);
    ASSERT_LE(a.count(), 1000);
    ++tenths[std::min<int>(9, static_cast<int>(a.count() / 100))];
    same += a == b;
  }
  for (int t = 0; t < 10; ++t) EXPECT_NEAR(tenths[t], 400, 100) << "tenth " << t;
  EXPECT_LT(same, 100) << "two engines drew the same delays";
}
