// The Beast adapter's per-connection FIFO: order, release on pop, bounded storage.
#include <gtest/gtest.h>

#include <memory>
#include <string>

#include <wscengine/beast/detail/fifo.hpp>

using wscengine::beast::detail::Fifo;

TEST(Fifo, KeepsOrderAcrossCompactionsWhileNeverEmptying) {
  Fifo<int> q;
  int next_in = 0, next_out = 0;
  // Two in, one out, for a long time: the queue never empties, so only compaction
  // keeps the storage in step with the size.
  for (int round = 0; round < 10000; ++round) {
    q.push_back(next_in++);
    q.push_back(next_in++);
    ASSERT_EQ(q.front(), next_out);
    q.pop_front();
    ++next_out;
  }
  EXPECT_EQ(q.size(), 10000u);
  while (!q.empty()) {
    ASSERT_EQ(q.front(), next_out++);
    q.pop_front();
  }
  EXPECT_EQ(next_out, next_in);
}

TEST(Fifo, PopReleasesWhatTheElementHeldAtOnce) {
  Fifo<std::shared_ptr<int>> q;
  auto first = std::make_shared<int>(1);
  q.push_back(first);
  q.push_back(std::make_shared<int>(2));
  EXPECT_EQ(first.use_count(), 2);
  q.pop_front();
  EXPECT_EQ(first.use_count(), 1) << "a popped element kept its resources";
}

TEST(Fifo, ClearFailsNothingAndIterationSeesOnlyWhatIsQueued) {
  Fifo<std::string> q;
  for (int i = 0; i < 5; ++i) q.push_back(std::to_string(i));
  q.pop_front();
  q.pop_front();
  std::string seen;
  for (auto& s : q) seen += s;
  EXPECT_EQ(seen, "234");
  q.clear();
  EXPECT_TRUE(q.empty());
  EXPECT_EQ(q.size(), 0u);
  q.push_back("again");
  EXPECT_EQ(q.front(), "again");
}
