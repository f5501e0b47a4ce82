#include "support/http_proxy.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <sstream>

namespace wscengine::test {
namespace {

bool accepts_connections(std::uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  ::close(fd);
  return ok;
}

// Polls until something listens on 127.0.0.1:port (a proxy just started).
bool listens_within(std::uint16_t port, std::chrono::seconds limit) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    if (accepts_connections(port)) return true;
    ::poll(nullptr, 0, 20);
  }
  return false;
}

}  // namespace

Tinyproxy::Tinyproxy(std::string username, std::string password)
    : dir_(temp_dir()), username_(std::move(username)), password_(std::move(password)) {
  if (::access("/usr/bin/tinyproxy", X_OK) != 0) {
    error_ = "tinyproxy is not installed (scripts/setup-debian.sh installs tinyproxy-bin)";
    return;
  }
  // A free port for it: tinyproxy cannot report the one it got. Another process
  // could take it in between; the start-up check below would then fail clearly.
  std::uint16_t port = unused_port();
  {
    std::ofstream conf(dir_ + "/tinyproxy.conf");
    conf << "Port " << port << "\nListen 127.0.0.1\nAllow 127.0.0.1\nTimeout 30\nMaxClients 64\n"
         << "LogLevel Connect\nLogFile \"" << dir_ << "/tinyproxy.log\"\nPidFile \"" << dir_ << "/tinyproxy.pid\"\n";
    if (!username_.empty()) conf << "BasicAuth " << username_ << " " << password_ << "\n";
  }
  process_ = std::make_unique<ChildProcess>(
      std::vector<std::string>{"/usr/bin/tinyproxy", "-d", "-c", dir_ + "/tinyproxy.conf"});
  if (listens_within(port, std::chrono::seconds(10))) {
    port_ = port;
    return;
  }
  error_ = "tinyproxy did not listen on 127.0.0.1:" + std::to_string(port) + " within 10 s; its log: " + log();
}

Tinyproxy::~Tinyproxy() {
  if (process_) process_->kill();
}

std::string Tinyproxy::url(bool with_credentials) const {
  std::string credentials = with_credentials && !username_.empty() ? username_ + ":" + password_ + "@" : "";
  return "http://" + credentials + "127.0.0.1:" + std::to_string(port_);
}

std::string Tinyproxy::log() const {
  std::ifstream in(dir_ + "/tinyproxy.log");
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

Microsocks::Microsocks(std::string username, std::string password)
    : username_(std::move(username)), password_(std::move(password)) {
  if (::access("/usr/bin/microsocks", X_OK) != 0) {
    error_ = "microsocks is not installed (scripts/setup-debian.sh installs it)";
    return;
  }
  // As for tinyproxy: a free port chosen here, then a check that it listens.
  std::uint16_t port = unused_port();
  std::vector<std::string> argv{"/usr/bin/microsocks", "-i", "127.0.0.1", "-p", std::to_string(port)};
  if (!username_.empty()) argv.insert(argv.end(), {"-u", username_, "-P", password_});
  process_ = std::make_unique<ChildProcess>(argv);
  if (listens_within(port, std::chrono::seconds(10))) {
    port_ = port;
    return;
  }
  error_ = "microsocks did not listen on 127.0.0.1:" + std::to_string(port) + " within 10 s";
}

Microsocks::~Microsocks() {
  if (process_) process_->kill();
}

std::string Microsocks::url(const std::string& scheme, bool with_credentials) const {
  std::string credentials = with_credentials && !username_.empty() ? username_ + ":" + password_ + "@" : "";
  return scheme + "://" + credentials + "127.0.0.1:" + std::to_string(port_);
}

CannedHttpServer::CannedHttpServer(std::string answer) : answer_(std::move(answer)) {
  listener_ = listen_loopback(port_);
  thread_ = std::thread([this] {
    for (;;) {
      int fd = ::accept(listener_, nullptr, nullptr);
      if (fd < 0) return;  // shut down
      std::string head;
      char buffer[1024];
      while (head.find("\r\n\r\n") == std::string::npos) {
        pollfd p{fd, POLLIN, 0};
        if (::poll(&p, 1, 5000) <= 0) break;
        ssize_t n = ::recv(fd, buffer, sizeof buffer, 0);
        if (n <= 0) break;
        head.append(buffer, static_cast<std::size_t>(n));
      }
      (void)::send(fd, answer_.data(), answer_.size(), MSG_NOSIGNAL);
      ::shutdown(fd, SHUT_WR);
      ::close(fd);
    }
  });
}

CannedHttpServer::~CannedHttpServer() {
  ::shutdown(listener_, SHUT_RDWR);
  thread_.join();
  ::close(listener_);
}

}  // namespace wscengine::test
