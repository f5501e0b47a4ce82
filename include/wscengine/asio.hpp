// wscengine — Asio access for adapters built on Asio (Beast, websocketpp).
// Including this header brings in Boost.Asio; user code does not need it.
#pragma once

#include <boost/asio/io_context.hpp>

#include <wscengine/runtime.hpp>

namespace wscengine {

/// The I/O context of a runtime, for adapters that run their sockets on it.
/// Thread safety: the returned context is thread-safe as Asio documents.
boost::asio::io_context& io_context(Runtime& runtime) noexcept;

}  // namespace wscengine
