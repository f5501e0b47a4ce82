// wscengine — the engine's operations as Asio asynchronous operations, for C++20
// coroutines (co_await with boost::asio::use_awaitable, the default) or any other Asio
// completion token. Including this header brings in Boost.Asio.
//
// Built on the engine's own non-blocking calls (Engine::async_start, async_send,
// async_pause, async_read, async_stop): the callbacks stay the primary interface and
// run as before; a coroutine drives the same engine.
//
// Thread safety: each function may be called from any thread, as the Engine call under
// it; its completion runs on the completion handler's executor (the coroutine's).
#pragma once

#include <utility>  // first: Boost 1.74's awaitable.hpp uses std::exchange without it

#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <chrono>
#include <memory>
#include <string>
#include <string_view>
#include <tuple>

#include <wscengine/engine.hpp>

namespace wscengine::coro {

namespace detail {

/// Wraps an Asio completion handler as the copyable function the engine takes: the
/// engine calls it on a callback thread, and the handler runs on its own executor (the
/// coroutine's), which is kept from running out of work meanwhile.
/// Thread safety: its copies share one handler; any thread may call one of them, once.
template <class Handler>
class Completion {
 public:
  /// Takes the handler and keeps its executor from running out of work.
  explicit Completion(Handler handler) : state_(std::make_shared<State>(std::move(handler))) {}

  /// Runs the handler with `args` on its executor (posted; called once).
  template <class... Args>
  void operator()(Args&&... args) const {
    auto state = state_;
    auto executor = state->work.get_executor();
    boost::asio::post(executor,
                      [state = std::move(state), args = std::make_tuple(std::forward<Args>(args)...)]() mutable {
                        std::apply(state->handler, std::move(args));
                      });
  }

 private:
  struct State {
    explicit State(Handler h)
        : work(boost::asio::make_work_guard(boost::asio::get_associated_executor(h))), handler(std::move(h)) {}
    boost::asio::executor_work_guard<boost::asio::associated_executor_t<Handler>> work;
    Handler handler;
  };
  std::shared_ptr<State> state_;
};

}  // namespace detail

/// Starts `engine` and completes, with what Engine::start() would return, once the
/// first session is open (on_open returned) or the first attempt failed. Never blocks
/// a thread: use it on any executor, a runtime_on io_context's included.
/// Signature: void(Error).
template <class Token = boost::asio::use_awaitable_t<>>
auto async_start(Engine& engine, Token&& token = Token{}) {
  return boost::asio::async_initiate<Token, void(Error)>(
      [&engine](auto handler) {
        detail::Completion<decltype(handler)> done(std::move(handler));
        if (Error refused = engine.async_start(done)) done(std::move(refused));
      },
      token);
}

/// Sends one message and completes with its outcome (Engine::async_send: no error once
/// its last byte was handed to the kernel), or at once with the refusal.
/// The payload is copied before this returns (an awaitable starts later, when
/// co_awaited). Signature: void(Error).
template <class Token = boost::asio::use_awaitable_t<>>
auto async_send(Engine& engine, MessageType type, std::string_view payload, Token&& token = Token{}) {
  return boost::asio::async_initiate<Token, void(Error)>(
      [&engine, type, payload = std::string(payload)](auto handler) {
        detail::Completion<decltype(handler)> done(std::move(handler));
        if (Error refused = engine.async_send(type, payload, done)) done(std::move(refused));
      },
      token);
}

/// Takes the read lock without blocking (Engine::async_pause): completes with the
/// guard; readers resume once it is released. Signature: void(PauseGuard).
template <class Token = boost::asio::use_awaitable_t<>>
auto async_pause(Engine& engine, Token&& token = Token{}) {
  return boost::asio::async_initiate<Token, void(PauseGuard)>(
      [&engine](auto handler) { engine.async_pause(detail::Completion<decltype(handler)>(std::move(handler))); },
      token);
}

/// Reads the current session's next message for the holder of the read lock
/// (Engine::async_read): completes with the error (`errc::timeout` after `timeout`)
/// and the message. Signature: void(Error, InboundMessage).
template <class Token = boost::asio::use_awaitable_t<>>
auto async_read(Engine& engine, std::chrono::milliseconds timeout, Token&& token = Token{}) {
  return boost::asio::async_initiate<Token, void(Error, InboundMessage)>(
      [&engine, timeout](auto handler) {
        engine.async_read(timeout, detail::Completion<decltype(handler)>(std::move(handler)));
      },
      token);
}

/// Stops `engine` as Engine::stop() does and completes once it is stopped.
/// Signature: void(Error).
template <class Token = boost::asio::use_awaitable_t<>>
auto async_stop(Engine& engine, Token&& token = Token{}) {
  return boost::asio::async_initiate<Token, void(Error)>(
      [&engine](auto handler) { engine.async_stop(detail::Completion<decltype(handler)>(std::move(handler))); }, token);
}

}  // namespace wscengine::coro
