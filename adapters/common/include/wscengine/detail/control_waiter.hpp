// wscengine — adapter internals shared by the real adapters.
#pragma once

#include <boost/asio/steady_timer.hpp>

#include <cstdint>
#include <optional>
#include <string>

#include <wscengine/adapter.hpp>

namespace wscengine::detail {

/// A ping waiting for its pong, or a close for the peer's close (or the end of the
/// connection), without a thread: the adapter completes it on its I/O threads from
/// what the socket brings, from its timer, or when the connection is aborted.
/// Thread safety: `finished` under the adapter's connection mutex; `timer` only on
/// the adapter's strand.
struct ControlWaiter {
  Connection::DoneHandler done;
  std::uint64_t pongs_before = 0;  ///< a ping: pongs counted when it was sent
  bool close = false;              ///< a close handshake, not a ping
  bool finished = false;
  std::optional<boost::asio::steady_timer> timer;
  std::string what;  ///< the timeout's message
};

}  // namespace wscengine::detail
