// The boundary between the websocketpp adapter (C++20) and websocketpp itself.
//
// websocketpp 0.8.2 does not compile as C++20 with GCC 12 (template-id
// constructors, removed in C++20), so the library lives in one C++17 translation
// unit (wspp_bridge.cpp) behind this header, which uses only standard types and the
// Asio I/O context. The C++20 side (wspp_connection.cpp) implements
// wscengine::Connection over it. Nothing here is public.
#pragma once

#include <boost/asio/io_context.hpp>
#include <wscengine/certificate.hpp>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <typeinfo>
#include <utility>
#include <vector>

namespace wscengine::websocketpp_adapter::bridge {

using HeaderList = std::vector<std::pair<std::string, std::string>>;

/// What went wrong, in the adapter's terms; the C++20 side maps it onto errc.
enum class Failure {
  none,
  invalid_url,
  invalid_option,
  dns,
  refused,
  connect,
  tls_handshake,
  tls_verification,
  http_status,
  handshake,
  timeout,
  proxy,  ///< the proxy refused the tunnel or did not answer CONNECT
  io,
};

/// One opening handshake to perform.
struct DialParams {
  std::string uri;  ///< ws://host:port/target (IPv6 bracketed)
  HeaderList headers;
  std::vector<std::string> subprotocols;
  std::size_t max_message_size = 0;
  bool verify_peer = true;
  std::string ca_file;
  std::string ca_pem;                           ///< CA certificates as PEM text
  std::vector<std::string> pinned_public_keys;  ///< "sha256/BASE64" public-key pins
  CertificateVerifier verify_callback;          ///< the user's last word on the chain
  std::string certificate_file;                 ///< mutual TLS
  std::string private_key_file;
  std::string private_key_password;
  bool tls13_only = false;
  std::string tls_name;            ///< the name to check in the certificate
  bool session_resumption = true;  ///< TlsOptions::session_resumption
  std::string origin_host;         ///< the server's host and port (sessions are kept per origin)
  unsigned short origin_port = 0;
  bool send_sni = true;  ///< false for address literals (RFC 6066 §3)
  long handshake_timeout_ms = 10'000;
  std::string user_agent;
  std::string proxy_uri;  ///< http://host:port to tunnel through with CONNECT, or empty
  std::string proxy_username;
  std::string proxy_password;
};

/// The result of a dial, success or not.
struct DialOutcome {
  Failure failure = Failure::none;
  std::string detail;
  int status = 0;  ///< HTTP status when a response arrived (the proxy's, for Failure::proxy)
  HeaderList headers;
  std::string subprotocol;
};

/// How the connection ended (the close handler's view).
struct Ending {
  bool close_received = false;  ///< the peer sent a close frame
  std::uint16_t remote_code = 1006;
  std::string remote_reason;
  std::uint16_t local_code = 1006;  ///< the code we sent (or 1006)
  std::string local_reason;         ///< the reason we sent (websocketpp's words when it failed us)
  std::string error;                ///< websocketpp's error, empty when none
};

/// Called on I/O threads. `message` returns false to stop reading until
/// Bridge::resume_reading() (it takes effect before the next socket read).
struct Events {
  std::function<void(DialOutcome)> dialled;
  std::function<bool(bool text, std::string&& payload)> message;
  std::function<void(std::string&& payload)> pong;
  /// Whether to answer this ping (false once the connection is failing: after a
  /// violation the client sends its close frame and nothing else).
  std::function<bool(const std::string& payload)> answer_ping;
  std::function<void(Ending)> ended;
};

/// One websocketpp client connection with its own endpoint.
/// Thread safety: every member may be called from any thread.
class Bridge {
 public:
  virtual ~Bridge() = default;
  /// Starts the handshake. Returns a failure at once for what cannot even start
  /// (bad URI); otherwise `events.dialled` reports the outcome.
  virtual DialOutcome dial(DialParams params, Events events) = 0;
  /// What a send or ping became: "" once websocketpp queued it, else its reason
  /// (kNotUtf8 for text that is not UTF-8).
  using Queued = std::function<void(std::string)>;
  /// The reason a send of text that is not valid UTF-8 is refused with.
  static constexpr std::string_view kNotUtf8 = "text is not valid UTF-8: not sent";
  /// Queues one whole message. It is framed at once on the calling thread (copied,
  /// masked; invalid UTF-8 in text is refused there, `queued` running at once);
  /// websocketpp takes the frame on the connection's strand (inline when the caller
  /// may run there), where its read handler changes the connection's state:
  /// websocketpp reads that state in send() under a lock its own writers do not take.
  /// So a message is either queued ahead of any close frame or refused, never queued
  /// behind one and lost. `queued` (may be null) otherwise runs on the strand.
  virtual void send(bool text, std::string_view payload, Queued queued) = 0;
  /// Queues one frame of a message sent in parts (`first`: it opens a text or binary
  /// message; `last`: it ends it), framed as send() frames a whole message. Text is
  /// not checked here (a part may end inside a code point).
  virtual void send_part(bool text, std::string_view payload, bool first, bool last, Queued queued) = 0;
  /// A ping, the same way.
  virtual void ping(std::string_view payload, Queued queued) = 0;
  /// Starts the close handshake (on the connection's strand; returns at once).
  virtual std::string close(std::uint16_t code, std::string_view reason) = 0;
  /// Shuts the socket down at once (no close frame); a dial still in DNS or TCP
  /// connect is stopped when the socket appears.
  virtual void abort() noexcept = 0;
  virtual void resume_reading() = 0;
  virtual const std::type_info& underlying_type() const noexcept = 0;
  virtual void* underlying_object() noexcept = 0;
};

std::shared_ptr<Bridge> make_bridge(boost::asio::io_context& io, bool tls);

/// The process's TLS counts (wscengine::TlsStats, which this C++17 side cannot name).
struct TlsCounts {
  std::uint64_t contexts_created = 0;
  std::uint64_t handshakes_full = 0;
  std::uint64_t handshakes_resumed = 0;
};
TlsCounts tls_counts();

}  // namespace wscengine::websocketpp_adapter::bridge
