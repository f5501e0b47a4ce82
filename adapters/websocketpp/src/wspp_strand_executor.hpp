// Keeps every step of websocketpp's composed operations on the connection's strand.
// Included by wspp_bridge.cpp before any websocketpp or Asio I/O header, so that the
// specialisation below is seen before the first operation is instantiated.
//
// websocketpp hands Asio handlers wrapped with `io_context::strand::wrap()` and relies
// on the legacy asio_handler_invoke hook to run the intermediate steps of a composed
// operation (each TLS record an ssl::stream read or writes, each partial async_read)
// on that strand. Asio 1.18 (Boost 1.74, Debian 12) skips the hook whenever the I/O
// object's executor is `any_io_executor`, as every socket's is: handler_work then
// dispatches through the socket's executor, so a TLS write's next step ran on one
// io thread while the strand ran websocketpp's read handler (and its TLS shutdown) on
// another, both inside the same SSL object. TSan found it in a wss reconnect storm
// with two io threads. Giving the wrapped handler an associated executor that is the
// strand itself makes handler_work dispatch every step there.
#pragma once

#include <boost/asio/associated_executor.hpp>
#include <boost/asio/detail/wrapped_handler.hpp>
#include <boost/asio/execution/context.hpp>
#include <boost/asio/execution/executor.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/io_context_strand.hpp>
#include <boost/version.hpp>

#include <utility>

// Boost 1.75 made handler_work keep the hook for any_io_executor again.
#if BOOST_VERSION < 107500

namespace wscengine::websocketpp_adapter::bridge {

/// A standard executor (execute, context query, equality) over a legacy
/// io_context::strand: executing a function dispatches it on the strand. A copy of the
/// strand is held (strands are handles to a shared implementation).
class LegacyStrandExecutor {
 public:
  explicit LegacyStrandExecutor(const boost::asio::io_context::strand& strand) noexcept : strand_(strand) {}

  template <class Function>
  void execute(Function&& f) const {
    strand_.dispatch(std::forward<Function>(f));
  }
  boost::asio::execution_context& query(boost::asio::execution::context_t) const noexcept { return strand_.context(); }
  friend bool operator==(const LegacyStrandExecutor& a, const LegacyStrandExecutor& b) noexcept {
    return a.strand_ == b.strand_;
  }
  friend bool operator!=(const LegacyStrandExecutor& a, const LegacyStrandExecutor& b) noexcept { return !(a == b); }

 private:
  mutable boost::asio::io_context::strand strand_;  // dispatch() is not const
};

static_assert(boost::asio::execution::is_executor<LegacyStrandExecutor>::value,
              "handler_work must take it as a standard executor, or it falls back to the hook");

}  // namespace wscengine::websocketpp_adapter::bridge

namespace boost::asio {

template <class Handler, class IsContinuation, class Executor>
struct associated_executor<detail::wrapped_handler<io_context::strand, Handler, IsContinuation>, Executor> {
  using type = wscengine::websocketpp_adapter::bridge::LegacyStrandExecutor;
  static type get(const detail::wrapped_handler<io_context::strand, Handler, IsContinuation>& h,
                  const Executor& = Executor()) noexcept {
    return type(h.dispatcher_);
  }
};

}  // namespace boost::asio

#endif
