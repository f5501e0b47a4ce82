#include <wscengine/asio.hpp>
#include <wscengine/runtime.hpp>

#include <boost/asio/post.hpp>

#include <algorithm>
#include <cstdio>
#include <cstdlib>

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
      io(static_cast<int>(std::max<std::size_t>(1, opts.io_threads))),
      io_work(boost::asio::make_work_guard(io)),
      callbacks(std::max<std::size_t>(1, opts.callback_threads)) {
  options.io_threads = std::max<std::size_t>(1, options.io_threads);
  options.callback_threads = std::max<std::size_t>(1, options.callback_threads);
  for (std::size_t i = 0; i < options.io_threads; ++i) {
    io_threads.emplace_back([this] {
      t_io_runtime = this;
      io.run();
    });
  }
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
  callbacks.join();
  io_work.reset();
  io.stop();
  for (auto& t : io_threads) t.join();
}

}  // namespace detail

Runtime::Runtime(RuntimeOptions options) : impl_(std::make_unique<detail::RuntimeImpl>(options)) {}
Runtime::~Runtime() = default;

std::shared_ptr<Runtime> Runtime::create(RuntimeOptions options) {
  return std::shared_ptr<Runtime>(new Runtime(options));
}

const RuntimeOptions& Runtime::options() const noexcept { return impl_->options; }

void Runtime::post(std::function<void()> task) {
  boost::asio::post(impl_->callbacks, [rt = impl_.get(), task = std::move(task)] {
    t_callback_runtime = rt;
    task();
  });
}

bool Runtime::on_callback_thread() const noexcept { return t_callback_runtime == impl_.get(); }
bool Runtime::on_io_thread() const noexcept { return t_io_runtime == impl_.get(); }

boost::asio::io_context& io_context(Runtime& runtime) noexcept { return detail::RuntimeAccess::impl(runtime).io; }

}  // namespace wscengine
