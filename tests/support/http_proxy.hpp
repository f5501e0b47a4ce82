// Test support: proxies on loopback — tinyproxy and microsocks (real ones, from
// Debian) and a canned responder that answers every CONNECT with the same bytes.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <thread>

#include "support/loopback.hpp"
#include "support/process.hpp"

namespace wscengine::test {

/// A tinyproxy process on 127.0.0.1, optionally with Basic authentication.
/// `ok()` is false (and `error()` says why) when it could not start.
/// Thread safety: one owner.
class Tinyproxy {
 public:
  explicit Tinyproxy(std::string username = {}, std::string password = {});
  ~Tinyproxy();
  bool ok() const { return error_.empty() && port_ != 0; }
  const std::string& error() const { return error_; }
  std::uint16_t port() const { return port_; }
  /// "http://127.0.0.1:port", with the credentials when `with_credentials`.
  std::string url(bool with_credentials = true) const;
  /// What tinyproxy logged so far.
  std::string log() const;

 private:
  std::string dir_, username_, password_, error_;
  std::uint16_t port_ = 0;
  std::unique_ptr<ChildProcess> process_;
};

/// A microsocks process (a SOCKS5 server, from Debian) on 127.0.0.1, optionally with
/// a user name and password. `ok()` is false (and `error()` says why) when it could
/// not start. Thread safety: one owner.
class Microsocks {
 public:
  explicit Microsocks(std::string username = {}, std::string password = {});
  ~Microsocks();
  bool ok() const { return error_.empty() && port_ != 0; }
  const std::string& error() const { return error_; }
  std::uint16_t port() const { return port_; }
  /// "socks5h://127.0.0.1:port" (or `scheme`), with the credentials when `with_credentials`.
  std::string url(const std::string& scheme = "socks5h", bool with_credentials = true) const;

 private:
  std::string username_, password_, error_;
  std::uint16_t port_ = 0;
  std::unique_ptr<ChildProcess> process_;
};

/// Answers every connection's first request head with `answer`, then closes.
/// Thread safety: one owner.
class CannedHttpServer {
 public:
  explicit CannedHttpServer(std::string answer);
  ~CannedHttpServer();
  std::uint16_t port() const { return port_; }

 private:
  std::string answer_;
  int listener_ = -1;
  std::uint16_t port_ = 0;
  std::thread thread_;
};

}  // namespace wscengine::test
