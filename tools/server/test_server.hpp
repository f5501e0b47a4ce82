// wscengine — a small Boost.Beast WebSocket server for tests, demos and benchmarks.
// One thread per connection, synchronous Beast: easy to script, not for production.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <wscengine/connection.hpp>
#include <wscengine/error.hpp>
#include <wscengine/message.hpp>

namespace wscengine::tools {

/// Where and how the server listens. A plain value.
struct ServerOptions {
  std::string host = "127.0.0.1";
  std::uint16_t port = 0;  ///< 0 picks a free port
  std::string cert_file;   ///< PEM; with key_file makes the server wss://
  std::string key_file;
  std::string client_ca_file;  ///< PEM; when set, clients must present a certificate it verifies
  bool tls12_only = false;     ///< refuse TLS 1.3 (to test a client's minimum version)
  std::string unix_socket;     ///< listen on this Unix domain socket path instead of host:port
};

/// The server side of one accepted connection, driven by a test script.
/// Thread safety: used by its connection's thread; drop() may be called from any.
class ServerSession {
 public:
  virtual ~ServerSession() = default;
  virtual const std::string& target() const = 0;
  virtual std::optional<std::string> header(const std::string& name) const = 0;
  virtual Error send(MessageType type, std::string_view payload) = 0;
  /// Writes bytes as they are under the WebSocket layer: whole frames the caller
  /// encoded (for benchmarks that must outrun any client).
  virtual Error send_raw(std::string_view bytes) = 0;
  /// Reads one message; the client's close frame comes back as errc::closed with its code.
  virtual Error read(InboundMessage& out, std::chrono::milliseconds timeout) = 0;
  /// Sends a close frame and waits for the client's answer.
  virtual Error close(CloseFrame frame) = 0;
  /// Drops the TCP connection without a close frame.
  virtual void drop() = 0;
  /// Sends a ping frame with this payload (at most 125 bytes).
  virtual Error ping(std::string_view payload) = 0;
  /// The payloads of the pongs read so far (pongs are read while read() runs).
  virtual std::vector<std::string> pongs() const = 0;
  /// Waits until the client sent something, without consuming it. A read that
  /// times out breaks a Beast stream, so scripts that only maybe expect a message
  /// wait here first. (Plain connections; TLS may hold bytes this cannot see.)
  virtual bool wait_readable(std::chrono::milliseconds timeout) = 0;
  /// True when what the client has sent and nobody read yet begins, after any pings
  /// and pongs, with a data or close frame: a read() then returns at once (with the
  /// message, or errc::closed after answering the close) instead of waiting. Never
  /// waits. Plain connections only (false under TLS, whose bytes it cannot see); it
  /// looks at the first 64 KiB not yet read.
  virtual bool message_or_close_waiting() = 0;
  /// What read_digest() saw of one message. A plain value.
  struct Digest {
    MessageType type = MessageType::binary;
    std::uint64_t size = 0;
    std::uint64_t fnv1a = 14695981039346656037ull;  ///< FNV-1a (64-bit) of its bytes
    std::size_t frames = 0;                         ///< the reads it took (at least its frames)
  };
  /// Reads one message of any size in pieces, keeping only its digest: for messages
  /// larger than a test should hold. Errors as read().
  virtual Result<Digest> read_digest(std::chrono::milliseconds timeout) = 0;
};

/// FNV-1a (64-bit) of `bytes`, continued from `hash`. Thread safety: pure.
inline std::uint64_t fnv1a(std::string_view bytes, std::uint64_t hash = 14695981039346656037ull) {
  for (unsigned char c : bytes) hash = (hash ^ c) * 1099511628211ull;
  return hash;
}

/// A WebSocket server on a loopback port. `on_session` runs on its own thread for
/// every accepted connection; `on_request` may refuse an upgrade with an HTTP status.
/// Thread safety: configure before start(); stop() from any thread but the
/// server's own.
class TestServer {
 public:
  explicit TestServer(ServerOptions options = {});
  ~TestServer();
  TestServer(const TestServer&) = delete;
  TestServer& operator=(const TestServer&) = delete;

  /// Return 0 to accept, or an HTTP status to refuse the upgrade with.
  std::function<int(const std::string& target, const std::vector<Header>& headers)> on_request;
  /// Extra headers of every refusal (e.g. Retry-After).
  std::vector<Header> refusal_headers;
  /// Subprotocol to select from the client's offer (empty = none).
  std::string choose_subprotocol;
  std::function<void(ServerSession&)> on_session;

  /// Binds and starts accepting. Returns the port.
  std::uint16_t start();
  void stop();
  std::uint16_t port() const noexcept;
  std::string url(const std::string& target = "/") const;
  /// Connections accepted so far (upgraded or refused).
  std::size_t accepted() const noexcept;
  /// The server name (SNI) the last TLS client sent, "" when it sent none.
  std::string last_sni() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

/// Echoes every message back with its type, until the client closes.
void echo_session(ServerSession& session);

}  // namespace wscengine::tools
