// wscengine — Asio access for adapters built on Asio (Beast, websocketpp).
// Including this header brings in Boost.Asio; user code does not need it.
#pragma once

#include <boost/asio/io_context.hpp>

#include <cstddef>
#include <memory>

#include <wscengine/runtime.hpp>

namespace wscengine {

/// The I/O context of a runtime, for adapters that run their sockets on it.
/// Thread safety: the returned context is thread-safe as Asio documents.
boost::asio::io_context& io_context(Runtime& runtime) noexcept;

/// A Runtime on an io_context the application owns and runs: the engines post their
/// I/O and timers there and start no I/O thread. Their callbacks run on that
/// io_context too when `callback_threads` is 0 (then a callback that blocks holds up
/// every connection and timer of the application), else on a pool of that many
/// threads of the runtime's own. options() reports `io_threads` 0.
///
/// What the application must do, since it runs the io_context:
/// - keep running it while an engine on the runtime is running or being destroyed
///   (its stop, close handshake and outstanding handlers run there), and never stop()
///   it with an engine still running;
/// - start engines with Engine::start_background() (or wscengine/coro.hpp's
///   async_start): a blocking start() on a thread that runs the io_context fails with
///   `errc::would_deadlock`;
/// - destroy engines and the runtime outside the io_context's handlers and callbacks
///   (or once run() returned), as with any runtime: an engine's destructor waits for
///   its handlers, which need the io_context.
///
/// Blocking calls (stop(), wait_stopped(), SessionConnection::read and ping) made on a
/// thread running the io_context refuse with `errc::would_deadlock`, as on a runtime's
/// own I/O threads; stop() then still stops the engine in the background.
///
/// Thread safety: as Runtime. `io` must outlive the runtime.
std::shared_ptr<Runtime> runtime_on(boost::asio::io_context& io, std::size_t callback_threads = 0);

}  // namespace wscengine
