// Test support: listening sockets on 127.0.0.1 for the tests' own servers.
#pragma once

#include <cstdint>

namespace wscengine::test {

/// A TCP socket listening on 127.0.0.1 at a free port (close-on-exec, address
/// reuse); `port` receives the port. Throws std::runtime_error if it cannot.
/// Thread safety: pure, apart from the socket it makes.
int listen_loopback(std::uint16_t& port, int backlog = 16);

/// A loopback TCP port that nothing listens on (bound, read, closed).
std::uint16_t unused_port();

}  // namespace wscengine::test
