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
  /// A runtime with threads of its own (Runtime::create).
  explicit RuntimeImpl(const RuntimeOptions& options);
  /// A runtime on the application's io_context (runtime_on): no I/O thread of its
  /// own; `callback_threads` 0 runs callbacks on that io_context too.
  RuntimeImpl(boost::asio::io_context& external, std::size_t callback_threads);
  ~RuntimeImpl();

  RuntimeOptions options;
  std::optional<boost::asio::io_context> owned_io;  // empty on an application's io_context
  boost::asio::io_context& io;
  std::optional<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> io_work;
  std::vector<std::thread> io_threads;
  std::optional<boost::asio::thread_pool> callbacks;  // empty: callbacks run on `io`
};

/// The engine's way into a Runtime's implementation (Runtime befriends it).
struct RuntimeAccess {
  static RuntimeImpl& impl(Runtime& runtime) noexcept { return *runtime.impl_; }
  static std::shared_ptr<Runtime> make(std::unique_ptr<RuntimeImpl> impl) {
    return std::shared_ptr<Runtime>(new Runtime(std::move(impl)));
  }
};

}  // namespace wscengine::detail
