#include "fault_proxy.hpp"

#include <string>

#include "support/loopback.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <stdexcept>

namespace wscengine::faults {

struct FaultProxy::Link {
  int client = -1;
  int server = -1;
  Fault fault = Fault::pass;  // fixed at accept, except blackhole/reset (from the proxy)
  std::atomic<bool> blackholed{false};
  std::atomic<bool> reset{false};
  std::atomic<std::size_t> to_client{0};      // server-to-client bytes forwarded
  std::atomic<std::size_t> cut_at{SIZE_MAX};  // server-to-client byte count to stop at
  std::mutex hold_mutex;
  bool holding = false;  // server bytes go to `withheld` (hold_to_clients)
  std::string withheld;  // held server bytes, from `released` on not handed on yet
  std::size_t released = 0;
};

namespace {

int connect_loopback(std::uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return -1;
  }
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

bool send_all(int fd, const char* p, std::size_t n) {
  while (n != 0) {
    ssize_t sent = ::send(fd, p, n, MSG_NOSIGNAL);
    if (sent <= 0) return false;
    p += sent;
    n -= static_cast<std::size_t>(sent);
  }
  return true;
}

void reset_socket(int fd) {
  linger l{1, 0};  // close with RST
  ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
  ::shutdown(fd, SHUT_RDWR);
}

}  // namespace

FaultProxy::FaultProxy(std::uint16_t upstream_port) : upstream_(upstream_port) {
  listen_fd_ = test::listen_loopback(port_);
  acceptor_ = std::thread([this] { accept_loop(); });
}

FaultProxy::~FaultProxy() {
  stopping_ = true;
  ::shutdown(listen_fd_, SHUT_RDWR);
  acceptor_.join();
  {
    std::lock_guard lock(mutex_);
    for (auto& link : links_) {
      ::shutdown(link->client, SHUT_RDWR);
      ::shutdown(link->server, SHUT_RDWR);
    }
  }
  for (auto& t : threads_) t.join();  // the acceptor is gone: no new threads
  for (auto& link : links_) {
    ::close(link->client);
    ::close(link->server);
  }
  ::close(listen_fd_);
}

std::string FaultProxy::url(const std::string& target) const {
  return "ws://127.0.0.1:" + std::to_string(port_) + target;
}

void FaultProxy::set(Fault fault) {
  fault_ = fault;
  if (fault != Fault::blackhole && fault != Fault::reset) return;
  std::lock_guard lock(mutex_);
  for (auto& link : links_) (fault == Fault::blackhole ? link->blackholed : link->reset) = true;
}

void FaultProxy::set_for_next(Fault fault) {
  fault_ = fault;
  fault_once_ = true;
}

void FaultProxy::cut_open_links_after(std::size_t more_bytes) {
  std::lock_guard lock(mutex_);
  for (auto& link : links_) link->cut_at = link->to_client + more_bytes;
}

void FaultProxy::hold_to_clients() {
  std::lock_guard lock(mutex_);
  for (auto& link : links_) {
    std::lock_guard hold(link->hold_mutex);
    link->holding = true;
  }
}

std::string FaultProxy::held_to_client() const {
  std::lock_guard lock(mutex_);
  if (links_.empty()) return {};
  std::lock_guard hold(links_.front()->hold_mutex);
  return links_.front()->withheld;
}

// Hands on up to `bytes` of what `link` holds, in one write (its hold_mutex held).
void FaultProxy::hand_on_held_locked(Link& link, std::size_t bytes) {
  const std::size_t n = std::min(bytes, link.withheld.size() - link.released);
  if (n != 0 && send_all(link.client, link.withheld.data() + link.released, n)) {
    link.released += n;
    link.to_client += n;
    bytes_to_clients_ += n;
    ++writes_to_clients_;
  }
}

void FaultProxy::release_to_client(std::size_t bytes) {
  std::lock_guard lock(mutex_);
  if (links_.empty()) return;
  std::lock_guard hold(links_.front()->hold_mutex);
  hand_on_held_locked(*links_.front(), bytes);
}

void FaultProxy::pass_to_clients() {
  std::lock_guard lock(mutex_);
  for (auto& link : links_) {
    std::lock_guard hold(link->hold_mutex);
    link->holding = false;
    hand_on_held_locked(*link, SIZE_MAX);
    link->withheld.clear();
    link->released = 0;
  }
}

void FaultProxy::accept_loop() {
  while (!stopping_) {
    pollfd p{listen_fd_, POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    int client = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (client < 0) continue;
    ++accepted_;
    int one = 1;
    ::setsockopt(client, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    int server = connect_loopback(upstream_);
    if (server < 0) {
      ::close(client);
      continue;
    }
    auto link = std::make_shared<Link>();
    link->client = client;
    link->server = server;
    link->fault = fault_;
    if (fault_once_.exchange(false)) fault_ = Fault::pass;
    if (link->fault == Fault::cut_after) link->cut_at = cut_after_.load();
    if (link->fault == Fault::blackhole) link->blackholed = true;
    if (link->fault == Fault::reset) link->reset = true;
    std::lock_guard lock(mutex_);
    links_.push_back(link);
    threads_.emplace_back([this, link] { forward(link); });
  }
}

void FaultProxy::forward(std::shared_ptr<Link> link) {
  char buffer[65536];
  std::string held;  // Fault::coalesce: server bytes not handed on yet
  for (;;) {
    if (link->reset) {
      reset_socket(link->client);
      ::shutdown(link->server, SHUT_RDWR);
      return;
    }
    if (link->blackholed) {  // keep both open, move nothing, until the proxy goes
      if (stopping_) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
      continue;
    }
    pollfd p[2] = {{link->client, POLLIN, 0}, {link->server, POLLIN, 0}};
    const int ready = ::poll(p, 2, held.empty() ? 50 : 20);
    if (ready < 0) return;
    if (ready == 0 && !held.empty()) {  // the server has been quiet: hand on all it sent
      const bool ok = send_all(link->client, held.data(), held.size());
      bytes_to_clients_ += held.size();
      ++writes_to_clients_;
      held.clear();
      if (!ok) return;
      continue;
    }
    for (int side = 0; side < 2; ++side) {
      if (!(p[side].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      if (link->blackholed || link->reset) break;
      int from = side == 0 ? link->client : link->server;
      int to = side == 0 ? link->server : link->client;
      ssize_t n = ::recv(from, buffer, sizeof buffer, 0);
      if (n <= 0) {  // one side ended: end the other (a FIN, as the peer did)
        if (side == 1 && !held.empty()) {
          bytes_to_clients_ += held.size();
          ++writes_to_clients_;
          send_all(to, held.data(), held.size());
          held.clear();
        }
        ::shutdown(to, SHUT_WR);
        ::shutdown(from, SHUT_RD);
        if (n < 0 || stopping_) return;
        // Keep forwarding the other direction until it ends too.
        pollfd rest{side == 0 ? link->server : link->client, POLLIN, 0};
        int rest_to = side == 0 ? link->client : link->server;
        while (!stopping_ && ::poll(&rest, 1, 100) >= 0) {
          if (!(rest.revents & (POLLIN | POLLHUP | POLLERR))) continue;
          ssize_t m = ::recv(rest.fd, buffer, sizeof buffer, 0);
          if (m <= 0 || !send_all(rest_to, buffer, static_cast<std::size_t>(m))) break;
        }
        ::shutdown(rest_to, SHUT_WR);
        return;
      }
      auto size = static_cast<std::size_t>(n);
      if (side == 1 && link->cut_at != SIZE_MAX) {
        std::size_t cut = link->cut_at, sent = link->to_client;
        std::size_t allowed = cut > sent ? cut - sent : 0;
        if (size >= allowed) {
          send_all(to, buffer, allowed);
          link->to_client += allowed;
          ::shutdown(link->client, SHUT_RDWR);  // truncated here
          ::shutdown(link->server, SHUT_RDWR);
          return;
        }
      }
      if (side == 1) {
        std::lock_guard hold(link->hold_mutex);
        if (link->holding) {
          link->withheld.append(buffer, size);
          continue;
        }
      }
      if (link->fault == Fault::delay) std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms_.load()));
      if (side == 1 && link->fault == Fault::coalesce) {
        held.append(buffer, size);
        link->to_client += size;
        continue;
      }
      bool ok = true;
      if (link->fault == Fault::slice) {
        for (std::size_t i = 0; ok && i < size; ++i) ok = send_all(to, buffer + i, 1);
      } else {
        ok = send_all(to, buffer, size);
      }
      if (side == 1) {
        link->to_client += size;
        bytes_to_clients_ += size;
        writes_to_clients_ += link->fault == Fault::slice ? size : 1;
      }
      if (!ok) {
        ::shutdown(from, SHUT_RDWR);
        return;
      }
    }
  }
}

}  // namespace wscengine::faults
