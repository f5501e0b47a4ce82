// A loopback TCP proxy that injects faults between a client and a server: it can
// pass, delay, slice into 1-byte writes, coalesce (what the server sent in one write),
// blackhole (stop forwarding without closing:
// a half-open connection), reset, and close the client side after a given number of
// server-to-client bytes (truncating a frame or the handshake anywhere).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

namespace wscengine::faults {

/// What the proxy does to the connections it accepts from now on (and, for
/// blackhole and reset, to the ones it carries). Thread safety: all members of
/// FaultProxy may be called from any thread.
enum class Fault {
  pass,       ///< forward as is
  delay,      ///< wait `delay` before forwarding each chunk
  slice,      ///< forward one byte per write
  coalesce,   ///< hold the server's bytes until it is quiet for 20 ms, then one write
  blackhole,  ///< stop forwarding both ways; keep both sockets open
  reset,      ///< close the client socket with a TCP reset
  cut_after,  ///< close the client side once `cut_after_bytes` server bytes went through
};

class FaultProxy {
 public:
  /// Listens on 127.0.0.1 (a free port) and forwards to 127.0.0.1:`upstream_port`.
  explicit FaultProxy(std::uint16_t upstream_port);
  ~FaultProxy();
  FaultProxy(const FaultProxy&) = delete;
  FaultProxy& operator=(const FaultProxy&) = delete;

  std::uint16_t port() const noexcept { return port_; }
  std::string url(const std::string& target = "/") const;

  /// Applies to new connections; blackhole and reset apply at once to open ones too.
  void set(Fault fault);
  /// Applies `fault` to the next accepted connection only; later ones pass.
  void set_for_next(Fault fault);
  /// Open connections are cut once `more_bytes` further server bytes went through.
  void cut_open_links_after(std::size_t more_bytes);
  void set_delay(std::chrono::milliseconds delay) { delay_ms_ = delay.count(); }
  /// For Fault::cut_after: server-to-client bytes (counted per connection) to let through.
  void set_cut_after(std::size_t bytes) { cut_after_ = bytes; }
  /// Open connections stop handing the server's bytes on: they are kept, in order,
  /// until release_to_clients() (the links stay open; the client sees nothing more).
  void hold_to_clients();
  /// A copy of the server bytes held so far on the first open connection.
  std::string held_to_client() const;
  /// Hands on the next `bytes` held server bytes of the first open connection in
  /// one write (fewer when fewer are held); they stay held from then on.
  void release_to_client(std::size_t bytes);
  /// Hands on what open connections hold and stops holding.
  void pass_to_clients();
  /// Connections accepted so far.
  std::size_t accepted() const noexcept { return accepted_; }
  /// Server-to-client bytes forwarded, and in how many writes, over every connection.
  std::size_t bytes_to_clients() const noexcept { return bytes_to_clients_; }
  std::size_t writes_to_clients() const noexcept { return writes_to_clients_; }

 private:
  struct Link;
  void accept_loop();
  void forward(std::shared_ptr<Link> link);
  void hand_on_held_locked(Link& link, std::size_t bytes);

  int listen_fd_ = -1;
  std::uint16_t port_ = 0;
  std::uint16_t upstream_;
  std::atomic<Fault> fault_{Fault::pass};
  std::atomic<bool> fault_once_{false};
  std::atomic<long long> delay_ms_{0};
  std::atomic<std::size_t> cut_after_{0};
  std::atomic<std::size_t> accepted_{0};
  std::atomic<std::size_t> bytes_to_clients_{0}, writes_to_clients_{0};
  std::atomic<bool> stopping_{false};
  mutable std::mutex mutex_;
  std::list<std::shared_ptr<Link>> links_;
  std::list<std::thread> threads_;
  std::thread acceptor_;
};

}  // namespace wscengine::faults
