// Test support: listening sockets on 127.0.0.1 for the tests' own servers.
#pragma once

#include <cstdint>
#include <string>

namespace wscengine::test {

/// A TCP socket listening on 127.0.0.1 at a free port (close-on-exec, address
/// reuse); `port` receives the port. Throws std::runtime_error if it cannot.
/// Thread safety: pure, apart from the socket it makes.
int listen_loopback(std::uint16_t& port, int backlog = 16);

/// A loopback TCP port that nothing listens on (bound, read, closed). Another process
/// may take it afterwards: for a port that must keep refusing, use RefusingPort.
std::uint16_t unused_port();

/// A loopback TCP port that refuses connections for as long as this object lives: a
/// socket is bound to it and never listens, so no other process (parallel tests) can
/// take the port meanwhile. Thread safety: construct and destroy on one thread;
/// port() and url() from any.
class RefusingPort {
 public:
  RefusingPort();
  ~RefusingPort();
  RefusingPort(const RefusingPort&) = delete;
  RefusingPort& operator=(const RefusingPort&) = delete;
  std::uint16_t port() const noexcept { return port_; }
  /// ws://127.0.0.1:PORT/
  std::string url() const;

 private:
  int fd_ = -1;
  std::uint16_t port_ = 0;
};

}  // namespace wscengine::test
