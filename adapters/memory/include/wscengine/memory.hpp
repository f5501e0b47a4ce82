// wscengine — the in-memory adapter: a deterministic server and connections in
// one process, for tests. No sockets, no threads of its own.
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <wscengine/adapter.hpp>

namespace wscengine::memory {

namespace detail {
struct Pipe;
struct ServerState;
}  // namespace detail

/// The server side of one in-memory connection. Everything it sends is delivered to
/// the client in order.
///
/// Thread safety: all member functions may be called from any thread.
class Peer {
 public:
  /// Adapter-internal: the server makes peers as clients dial it.
  explicit Peer(std::shared_ptr<detail::Pipe> pipe);

  /// Queues a message for the client.
  void send(MessageType type, std::string payload);
  /// Queues a close frame: the client reads `errc::closed` with this frame.
  void send_close(CloseFrame frame);
  /// Drops the connection: the client reads `errc::closed` with 1006.
  void drop();
  /// The client's next read fails with `error`. With `fail_connection` the
  /// connection is closed after it (as a library does for 1009/1007/1002).
  void inject_read_error(Error error, bool fail_connection = false);
  /// When false, pings wait for their timeout (a dead peer).
  void answer_pings(bool answer);

  /// Messages the client wrote, oldest first.
  std::vector<InboundMessage> received() const;
  /// Waits until the client wrote at least `count` messages.
  bool wait_received(std::size_t count, std::chrono::milliseconds timeout) const;
  /// The close frame the client sent, once it did.
  std::optional<CloseFrame> client_close() const;
  /// Waits until the client closed or aborted the connection.
  bool wait_closed(std::chrono::milliseconds timeout) const;
  /// True until either side closed or dropped the connection.
  bool is_open() const;

 private:
  std::shared_ptr<detail::Pipe> pipe_;
};

/// An in-memory WebSocket server. Its connector dials it whatever the URL.
///
/// Thread safety: all member functions may be called from any thread.
class Server {
 public:
  /// A new server with no connections.
  static std::shared_ptr<Server> create();
  /// Adapter-internal: use create().
  explicit Server(std::shared_ptr<detail::ServerState> state);

  /// A connector whose connections dial this server.
  std::shared_ptr<Connector> connector() const;
  /// The next `count` dials fail with `error` (e.g. Error::http(503)).
  void fail_next_dials(Error error, std::size_t count = 1);
  /// The next `count` dials never answer until aborted (exercises open_timeout).
  void hang_next_dials(std::size_t count = 1);
  /// The response successful dials return (default: status 101, no headers).
  void set_handshake_response(HandshakeResponse response);
  /// Waits for the next successful dial and returns its server side.
  std::shared_ptr<Peer> accept(std::chrono::milliseconds timeout);
  /// Dial attempts so far (failed ones included).
  std::size_t dial_count() const;
  /// The requests of the dials so far (the latest 100).
  std::vector<DialRequest> dial_requests() const;

 private:
  std::shared_ptr<detail::ServerState> state_;
};

}  // namespace wscengine::memory
