// wscengine — Beast adapter internals: a first-in first-out queue for per-connection
// queues that are empty nearly always.
#pragma once

#include <cstddef>
#include <utility>
#include <vector>

namespace wscengine::beast::detail {

/// A FIFO queue that allocates nothing until its first push and gives its memory
/// back when it empties after a burst. A std::deque allocates about 600 bytes as soon
/// as it is constructed: three per connection cost more than the rest of an idle
/// connection's adapter state. Thread safety: none (its owner's lock).
template <class T>
class Fifo {
 public:
  bool empty() const noexcept { return head_ == items_.size(); }
  std::size_t size() const noexcept { return items_.size() - head_; }
  T& front() noexcept { return items_[head_]; }
  const T& front() const noexcept { return items_[head_]; }
  void push_back(T value) { items_.push_back(std::move(value)); }

  /// Removes the front element (what it still holds is released now).
  void pop_front() {
    items_[head_] = T{};
    if (++head_ == items_.size()) {
      clear();
    } else if (head_ >= kCompactFrom && head_ * 2 >= items_.size()) {
      // Half of the storage is spent: move the rest down (amortised O(1) a pop), so
      // that a queue that never quite empties does not grow without bound.
      items_.erase(items_.begin(), items_.begin() + static_cast<std::ptrdiff_t>(head_));
      head_ = 0;
    }
  }

  void clear() noexcept {
    if (items_.capacity() > kKeptCapacity) {
      std::vector<T>().swap(items_);
    } else {
      items_.clear();
    }
    head_ = 0;
  }

  auto begin() noexcept { return items_.begin() + static_cast<std::ptrdiff_t>(head_); }
  auto end() noexcept { return items_.end(); }

 private:
  static constexpr std::size_t kCompactFrom = 32;
  static constexpr std::size_t kKeptCapacity = 64;
  std::vector<T> items_;
  std::size_t head_ = 0;  // items_[0, head_) are popped
};

}  // namespace wscengine::beast::detail
