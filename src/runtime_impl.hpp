// Private: what a Runtime is made of.
#pragma once

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/thread_pool.hpp>

#include <optional>
#include <thread>
#include <vector>

#include <wscengine/runtime.hpp>

namespace wscengine::detail {

struct RuntimeImpl {
  explicit RuntimeImpl(const RuntimeOptions& options);
  ~RuntimeImpl();

  RuntimeOptions options;
  boost::asio::io_context io;
  std::optional<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> io_work;
  std::vector<std::thread> io_threads;
  boost::asio::thread_pool callbacks;
};

/// The engine's way into a Runtime's implementation (Runtime befriends it).
struct RuntimeAccess {
  static RuntimeImpl& impl(Runtime& runtime) noexcept { return *runtime.impl_; }
};

}  // namespace wscengine::detail
