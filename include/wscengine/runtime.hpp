// wscengine — the threads engines run on.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>

namespace wscengine {

namespace detail {
struct RuntimeImpl;
struct RuntimeAccess;
}  // namespace detail

/// Sizes of a Runtime's two thread groups.
struct RuntimeOptions {
  /// Threads that wait on sockets and timers. One serves thousands of connections.
  /// 0 in the options() of a runtime on an application's io_context (runtime_on in
  /// wscengine/asio.hpp), whose threads are the application's.
  std::size_t io_threads = 1;
  /// Threads that run user callbacks. At least the largest reader_slots of the
  /// engines sharing the runtime, so that N on_message can really run at once. 0 only
  /// with runtime_on: callbacks then run on the application's io_context.
  std::size_t callback_threads = 2;
};

/// The I/O context and the callback thread pool that engines run on. Many engines
/// may share one Runtime; an idle connection holds no thread of its own (it waits
/// in the I/O context). Create with `Runtime::create`; an engine made without one
/// creates its own. runtime_on (wscengine/asio.hpp) makes one on an io_context the
/// application runs.
///
/// Thread safety: all member functions may be called from any thread. Destroy it
/// only after every engine using it is destroyed, and never from one of its threads.
class Runtime {
 public:
  /// Starts the I/O and callback threads.
  static std::shared_ptr<Runtime> create(RuntimeOptions options = {});
  ~Runtime();
  Runtime(const Runtime&) = delete;
  Runtime& operator=(const Runtime&) = delete;

  /// The options it was created with.
  const RuntimeOptions& options() const noexcept;
  /// Runs `task` on a callback thread.
  void post(std::function<void()> task);
  /// True on one of this runtime's callback threads.
  bool on_callback_thread() const noexcept;
  /// True on one of this runtime's I/O threads.
  bool on_io_thread() const noexcept;

  // Adapters reach the I/O context through io_context() in wscengine/asio.hpp.

 private:
  friend struct detail::RuntimeAccess;  // the engine and io_context(): the implementation
  explicit Runtime(RuntimeOptions options);
  explicit Runtime(std::unique_ptr<detail::RuntimeImpl> impl) noexcept;
  std::unique_ptr<detail::RuntimeImpl> impl_;
};

}  // namespace wscengine
