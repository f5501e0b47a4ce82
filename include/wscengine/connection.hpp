// wscengine — what a dial asks for (DialRequest, TlsOptions) and what the server answered
// (HandshakeResponse). The adapter interface that carries them is in wscengine/adapter.hpp.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <typeinfo>
#include <vector>

#include <wscengine/certificate.hpp>
#include <wscengine/error.hpp>
#include <wscengine/proxy.hpp>
#include <wscengine/trace_context.hpp>
#include <wscengine/url.hpp>

namespace wscengine {

class Tracer;   // wscengine/telemetry.hpp
class Metrics;  // wscengine/telemetry.hpp

/// TLS settings for wss://. Verification is on by default, against the system's
/// trust store, with SNI and a host name check. A plain value.
struct TlsOptions {
  /// Check the server certificate chain and host name. Turning this off makes the
  /// connection open to anyone on the path; it exists for tests and lab servers.
  bool verify_peer = true;
  /// PEM file of trusted CAs to use instead of the system store; empty (and no
  /// ca_pem) = the system store.
  std::string ca_file{};
  /// Trusted CA certificates as PEM text (one or more), for certificates that come
  /// from configuration rather than a file; trusted together with ca_file, and like it
  /// instead of the system store.
  std::string ca_pem{};
  /// Name to send in SNI and to check in the certificate; empty = the URL's host.
  std::string server_name{};
  /// Mutual TLS: the client's certificate chain (PEM) and its private key (PEM),
  /// both empty for none. `private_key_password` decrypts an encrypted key.
  std::string certificate_file{};
  std::string private_key_file{};      ///< the client certificate's key (PEM), with certificate_file
  std::string private_key_password{};  ///< decrypts an encrypted private_key_file
  /// TLS protocol versions.
  enum class Version : std::uint8_t {
    tls1_2,  ///< TLS 1.2 (RFC 5246)
    tls1_3   ///< TLS 1.3 (RFC 8446)
  };
  /// The oldest TLS version to accept.
  Version min_version = Version::tls1_2;
  /// Public-key pins ("sha256/BASE64", as HPKP and curl's --pinnedpubkey; see
  /// PeerCertificate::public_key_pin): when not empty, the server is accepted only if
  /// one of these keys is in its verified chain (the leaf, an intermediate or the
  /// root). Checked on top of verify_peer, never instead: a pinned key in an expired
  /// chain still fails. With verify_peer off only the leaf's key counts. A mismatch
  /// fails with errc::tls_verification_failed, which the default retry policy does not
  /// retry.
  std::vector<std::string> pinned_public_keys{};
  /// Decides each TLS handshake after the checks above, seeing the chain and their
  /// verdict; empty = their verdict stands. See CertificateVerifier.
  CertificateVerifier verify_callback{};
  /// Resume TLS sessions on reconnect (TLS 1.3 tickets, TLS 1.2 session IDs): the
  /// last session of each origin is kept in the connector's shared TLS context and
  /// offered by the next connection there, which then does an abbreviated handshake.
  /// Sessions are kept per host, port, server name, verify_peer and pins; never with
  /// a verify_callback (a resumed handshake shows no certificate for it to decide on).
  bool session_resumption = true;
};

/// The TLS work of the process's connections on the adapters built on Asio (Beast and
/// websocketpp share these counts), since the process started. A plain value.
struct TlsStats {
  std::uint64_t contexts_created = 0;    ///< TLS contexts built (one per distinct set of TLS settings in the process)
  std::uint64_t handshakes_full = 0;     ///< handshakes that verified a certificate
  std::uint64_t handshakes_resumed = 0;  ///< abbreviated handshakes (TlsOptions::session_resumption)
};

/// permessage-deflate (RFC 7692) as the client offers it when compression is offered.
/// The defaults ask for nothing (32 KiB windows and context takeover both ways, like
/// browsers). Window sizes are 2^N bytes, N in 9..15: zlib cannot compress with an
/// 8-bit window, so no peer built on it can honour 8. A plain value.
struct DeflateOptions {
  /// The largest window the server may compress with. Below 15 it is offered as
  /// server_max_window_bits=N (the memory this client needs to inflate, per
  /// connection), and an answer above N fails the handshake.
  std::uint8_t server_max_window_bits = 15;
  /// The largest window this client compresses with, offered as
  /// client_max_window_bits=N; the server may lower it in its answer, never raise it.
  std::uint8_t client_max_window_bits = 15;
  /// Ask the server to start every message with an empty window (less memory on both
  /// sides, worse compression of similar messages). A server that does not say it
  /// agrees fails the handshake.
  bool server_no_context_takeover = false;
  /// Start each message this client sends with an empty window, and say so.
  bool client_no_context_takeover = false;
  /// zlib compression level of what this client sends: 0 (stored) to 9 (smallest).
  int level = 8;
  /// zlib memory level: 1 (least memory, slowest) to 9.
  int memory_level = 4;
  /// Messages this client sends shorter than this many bytes go uncompressed (RSV1
  /// clear): deflate often adds bytes to small messages. 0 = compress every message.
  std::size_t min_size = 0;
};

/// Streamed messages (EngineOptions::stream): inbound messages handed over in parts
/// as they arrive, so that a message of any size needs no buffer of its size. Off by
/// default. With it on, a message that is complete when its read begins and no larger
/// than `max_part_size` still comes whole; any other comes in parts of at most
/// `max_part_size` bytes (MessagePart). EngineOptions::max_message_size then bounds
/// what is buffered and the messages read whole (compressed ones: they are inflated
/// whole); `max_message_size` here bounds a streamed message's total. Adapters
/// without AdapterCapabilities::streamed_reads refuse a dial with it on
/// (`errc::unsupported`). A plain value.
struct StreamOptions {
  bool enabled = false;                   ///< deliver messages in parts as they arrive
  std::size_t max_part_size = 64u << 10;  ///< at most this many bytes per part; at least 4096
  /// A streamed message whose total grows beyond this fails with 1009; 0 (the
  /// default): no bound.
  std::uint64_t max_message_size = 0;
};

/// WebSocket over HTTP/2 (RFC 8441): whether a dial opens the WebSocket as a stream of
/// an HTTP/2 connection that engines on one Runtime share with each other, one
/// connection per origin (and TLS options), up to the server's
/// SETTINGS_MAX_CONCURRENT_STREAMS each. See docs/adapters.md, "WebSocket over HTTP/2".
enum class Http2Mode : std::uint8_t {
  off,     ///< the HTTP/1.1 upgrade only (the default)
  prefer,  ///< HTTP/2 where the server offers it (ALPN h2 and SETTINGS_ENABLE_CONNECT_PROTOCOL), else HTTP/1.1
  require  ///< HTTP/2 or the dial fails with errc::handshake_failed; errc::unsupported on adapters without it
};

/// Which control frame an adapter saw, and which way it went.
enum class ControlFrameKind : std::uint8_t {
  ping_received,  ///< the server's ping
  pong_sent,      ///< the adapter's answer to it (queued ahead of waiting messages)
  ping_sent,      ///< a ping of this side: the heartbeat's or SessionConnection::ping's
  pong_received   ///< the server's pong, solicited or not
};

/// A ping or pong on the wire, as EngineOptions::on_control_frame reports it. A plain
/// value; thread safety as for any value type.
struct ControlFrameEvent {
  ControlFrameKind kind = ControlFrameKind::ping_received;  ///< what it was and which way it went
  std::string payload{};                                    ///< 0..125 bytes, any bytes
  std::uint64_t session = 0;                                ///< the session it belongs to (Context::session_id)
  /// pong_received: the time since the latest unanswered ping of this session with the
  /// same payload was sent; nullopt for a pong that answers none (unsolicited), and
  /// for the other kinds.
  std::optional<std::chrono::nanoseconds> round_trip{};
  /// Events of this engine left out right after this one because the observer fell
  /// behind (1024 were waiting for it); 0 normally.
  std::uint64_t missed = 0;
};

/// How an adapter reports the control frames it sees (DialRequest::control_frames).
/// Called on an I/O thread, possibly inside the adapter's own lock: it must return
/// quickly, never block and never call the connection.
using ControlFrameSink = std::function<void(ControlFrameKind kind, std::string_view payload)>;

/// Everything an adapter needs to open one connection. The engine fills it from
/// EngineOptions and lets the before-dial hook change it. A plain value.
struct DialRequest {
  Url url{};                                 ///< where to connect
  std::vector<Header> headers{};             ///< extra handshake headers
  std::vector<std::string> subprotocols{};   ///< offered in Sec-WebSocket-Protocol
  bool offer_compression = false;            ///< offer permessage-deflate
  DeflateOptions deflate{};                  ///< its parameters, when offered
  std::size_t max_message_size = 16u << 20;  ///< larger messages fail with 1009
  StreamOptions stream{};                    ///< inbound messages in parts (see StreamOptions)
  TlsOptions tls{};                          ///< for wss://
  /// Tunnel through this HTTP proxy (CONNECT); none = connect directly. The
  /// engine fills it from EngineOptions::proxy. Not used for a Unix socket URL.
  std::optional<HttpProxy> proxy{};
  /// Connect to these addresses, in order, instead of resolving the URL's host
  /// (like curl's --resolve); the Host header, SNI and the certificate check still
  /// use the URL's host. Empty = DNS, trying every address it returns in order.
  /// Not used with a proxy (the proxy resolves the host).
  std::vector<std::string> addresses{};
  /// WebSocket over HTTP/2 (see Http2Mode). Over ws:// it is used only with
  /// `http2_cleartext`; through a proxy or a Unix socket, never (prefer then means
  /// HTTP/1.1, require fails with errc::unsupported).
  Http2Mode http2 = Http2Mode::off;
  /// ws:// URLs speak HTTP/2 in clear text with prior knowledge (h2c, RFC 9113 §3.3)
  /// when `http2` is on: only for servers known to take it.
  bool http2_cleartext = false;
  /// What the adapter traces and measures of its own: the HTTP/2 connection a stream
  /// opens on (docs/observability.md). The engine sets them from
  /// EngineOptions::telemetry, and `trace` to the dial attempt's span; null: none.
  std::shared_ptr<Tracer> tracer{};
  std::shared_ptr<Metrics> metrics{};  ///< see `tracer`
  TraceContext trace{};                ///< see `tracer`
  /// Told of every ping and pong of the connection once it is open, in the order
  /// they crossed the wire on each side (see ControlFrameSink); empty (the default):
  /// none, at no cost. The engine sets it when EngineOptions::on_control_frame is set.
  /// The websocketpp adapter's own acknowledgement pings (payload `wscengine-ack-…`)
  /// and their pongs are not reported.
  ControlFrameSink control_frames{};
  std::chrono::milliseconds timeout{10'000};        ///< DNS + connect + proxy + TLS + upgrade
  std::chrono::milliseconds write_timeout{10'000};  ///< a blocked write fails after this
};

/// The server's answer to the opening handshake. A plain value; thread safety as
/// for any value type.
struct HandshakeResponse {
  int status = 0;                 ///< 101 on success (200 over HTTP/2)
  std::vector<Header> headers{};  ///< the response header fields, in order
  std::string subprotocol{};      ///< the one the server chose, or empty
  bool compression = false;       ///< permessage-deflate was negotiated
  bool http2 = false;             ///< the WebSocket is a stream of an HTTP/2 connection (RFC 8441)
  /// How long DNS + TCP connect took; the rest of the dial was TLS and the HTTP
  /// upgrade. Zero when the adapter does not measure it.
  std::chrono::nanoseconds connect_duration{0};

  /// The first header with this name (case-insensitive), or nullopt.
  std::optional<std::string_view> header(std::string_view name) const;
};

/// The library object behind a connection, for users who need it. `type` names it
/// (for example typeid(wscengine::beast::PlainStream)); `object` points to it.
/// Using the object bypasses the adapter's locking: only do so where no reader runs
/// and no other thread writes.
struct Underlying {
  const std::type_info* type = nullptr;  ///< the object's type, or null when there is none
  void* object = nullptr;                ///< the object, or null
  /// The object as a `T`, or null when it is not one.
  template <class T>
  T* as() const noexcept {
    return type && *type == typeid(T) ? static_cast<T*>(object) : nullptr;
  }
};

}  // namespace wscengine
