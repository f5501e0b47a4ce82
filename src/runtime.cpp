#include <wscengine/asio.hpp>
#include <wscengine/runtime.hpp>

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <utility>

#include "runtime_impl.hpp"

namespace wscengine {
namespace {
// Which runtime's thread this is, so that blocking calls can refuse to deadlock.
thread_local const detail::RuntimeImpl* t_callback_runtime = nullptr;
thread_local const detail::RuntimeImpl* t_io_runtime = nullptr;
}  // namespace

namespace detail {

RuntimeImpl::RuntimeImpl(const RuntimeOptions& opts)
    : options(opts),
      owned_io(std::in_place, static_cast<int>(std::max<std::size_t>(1, opts.io_threads))),
      io(*owned_io),
      io_work(boost::asio::make_work_guard(io)),
      callbacks(std::in_place, std::max<std::size_t>(1, opts.callback_threads)) {
  options.io_threads = std::max<std::size_t>(1, options.io_threads);
  options.callback_threads = std::max<std::size_t>(1, options.callback_threads);
  // Asio creates its timer service and the epoll reactor under nested locks on first use;
  // created here, before any thread runs, no engine's first timer takes those locks in
  // an order another thread's reverses (ThreadSanitizer saw such a cycle).
  { boost::asio::steady_timer create_services(io); }
  for (std::size_t i = 0; i < options.io_threads; ++i) {
    io_threads.emplace_back([this] {
      t_io_runtime = this;
      io.run();
    });
  }
}

RuntimeImpl::RuntimeImpl(boost::asio::io_context& external, std::size_t callback_threads)
    : options{.io_threads = 0, .callback_threads = callback_threads}, io(external) {
  if (callback_threads != 0) callbacks.emplace(callback_threads);
}

RuntimeImpl::~RuntimeImpl() {
  if (t_callback_runtime == this || t_io_runtime == this) {
    // A thread cannot join itself: say so instead of failing in undefined ways.
    std::fputs(
        "wscengine: a Runtime was destroyed on one of its own threads (destroy engines and runtimes "
        "outside their callbacks)\n",
        stderr);
    std::abort();
  }
  if (callbacks) callbacks->join();
  if (!owned_io) return;  // the application's io_context: it runs and stops it
  io_work.reset();
  io.stop();
  for (auto& t : io_threads) t.join();
}

}  // namespace detail

Runtime::Runtime(RuntimeOptions options) : impl_(std::make_unique<detail::RuntimeImpl>(options)) {}
Runtime::Runtime(std::unique_ptr<detail::RuntimeImpl> impl) noexcept : impl_(std::move(impl)) {}
Runtime::~Runtime() = default;

std::shared_ptr<Runtime> Runtime::create(RuntimeOptions options) {
  return std::shared_ptr<Runtime>(new Runtime(options));
}

const RuntimeOptions& Runtime::options() const noexcept { return impl_->options; }

void Runtime::post(std::function<void()> task) {
  auto run = [rt = impl_.get(), task = std::move(task)] {
    // On the application's io_context the thread is not the runtime's: the mark
    // lasts for the task only.
    const detail::RuntimeImpl* saved = std::exchange(t_callback_runtime, rt);
    task();
    t_callback_runtime = saved;
  };
  if (impl_->callbacks) {
    boost::asio::post(*impl_->callbacks, std::move(run));
  } else {
    boost::asio::post(impl_->io, std::move(run));
  }
}

bool Runtime::on_callback_thread() const noexcept { return t_callback_runtime == impl_.get(); }
bool Runtime::on_io_thread() const noexcept {
  return t_io_runtime == impl_.get() || (!impl_->owned_io && impl_->io.get_executor().running_in_this_thread());
}

boost::asio::io_context& io_context(Runtime& runtime) noexcept { return detail::RuntimeAccess::impl(runtime).io; }

std::shared_ptr<Runtime> runtime_on(boost::asio::io_context& io, std::size_t callback_threads) {
  return detail::RuntimeAccess::make(std::make_unique<detail::RuntimeImpl>(io, callback_threads));
}

}  // namespace wscengine
