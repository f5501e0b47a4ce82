// The Boost.Beast adapter. All of Beast is compiled in this one translation unit.
//
// Read path: when data arrives (an async wait on the socket, no thread held while
// idle), `try_read` pumps what the socket has into the ScanLayer's buffer without
// waiting; every complete message already buffered is then read: a plain single
// frame straight from the buffer (read_whole_frame_locked), anything else by Beast's
// cheap synchronous read. One asynchronous round per burst of data, not per message.
#include <wscengine/asio.hpp>
#include <wscengine/beast.hpp>
#include <wscengine/beast/underlying.hpp>
#include <wscengine/detail/client_tls.hpp>
#include <wscengine/detail/control_waiter.hpp>
#include <wscengine/detail/tls_contexts.hpp>
#include <wscengine/version.hpp>

#include "http2_session.hpp"

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/detail/utf8_checker.hpp>
#include <boost/beast/websocket/ssl.hpp>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <array>
#include <atomic>
#include <cctype>
#include <condition_variable>
#include <cstring>
#include <future>
#include <limits>
#include <mutex>
#include <optional>
#include <random>
#include <sstream>

namespace wscengine::beast {
namespace {

namespace net = boost::asio;
namespace ssl = boost::asio::ssl;
namespace ws = boost::beast::websocket;
namespace http = boost::beast::http;
using detail::Clock;
using detail::ScanLayer;
using detail::SocketLayer;
using error_code = boost::system::error_code;

constexpr const char* kUserAgent = "wscengine/" WSCENGINE_VERSION_STRING " (Boost.Beast)";

// Most text is ASCII, which is valid UTF-8: 32 bytes per step (four words OR-ed, one
// test), before the full check.
bool ascii(const unsigned char* p, std::size_t n) noexcept {
  constexpr std::uint64_t kHighBits = 0x8080808080808080ull;
  auto word = [p](std::size_t at) {
    std::uint64_t w;
    std::memcpy(&w, p + at, 8);
    return w;
  };
  std::size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    if (((word(i) | word(i + 8) | word(i + 16) | word(i + 24)) & kHighBits) != 0) return false;
  }
  std::uint64_t rest = 0;
  for (; i + 8 <= n; i += 8) rest |= word(i);
  for (; i < n; ++i) rest |= p[i];
  return (rest & kHighBits) == 0;
}

// The header fields of an HTTP response (a refusal's, or the 101's), in order.
template <class Message>
std::vector<Header> headers_of(const Message& message) {
  std::vector<Header> out;
  for (const auto& field : message) out.push_back({std::string(field.name_string()), std::string(field.value())});
  return out;
}

Error tls_error(const wscengine::detail::TlsFailure& why) {
  return Error(why.verification ? errc::tls_verification_failed : errc::tls_handshake_failed, why.detail);
}

bool is_drop(const error_code& ec) {
  return ec == net::error::eof || ec == net::error::connection_reset || ec == net::error::broken_pipe ||
         ec == net::error::connection_aborted || ec == net::error::not_connected || ec == net::error::shut_down ||
         ec == net::error::operation_aborted || ec == net::ssl::error::stream_truncated ||
         ec == boost::beast::error::timeout;
}

/// The transport under a connection's WebSocket, chosen at dial time.
enum class Transport {
  plain,  // TCP or a Unix socket
  tls,    // TLS over it
  http2,  // a stream of a shared HTTP/2 connection (RFC 8441; http2_session.hpp)
};

// The permessage-deflate offer as Beast words it (RFC 7692 §7.1), for the extended
// CONNECT, which carries it as a header of its own.
std::string deflate_offer(const DeflateOptions& d) {
  std::string offer = "permessage-deflate";
  if (d.server_max_window_bits < 15) offer += "; server_max_window_bits=" + std::to_string(d.server_max_window_bits);
  offer += "; client_max_window_bits";
  if (d.client_max_window_bits < 15) offer += "=" + std::to_string(d.client_max_window_bits);
  if (d.server_no_context_takeover) offer += "; server_no_context_takeover";
  if (d.client_no_context_takeover) offer += "; client_no_context_takeover";
  return offer;
}

/// The connection over one transport, chosen at dial time.
template <Transport Kind>
class StreamImpl final : public Connection, public std::enable_shared_from_this<StreamImpl<Kind>> {
  static constexpr bool Tls = Kind == Transport::tls;
  static constexpr bool H2 = Kind == Transport::http2;
  using Next = std::conditional_t<H2, detail::Http2Layer, std::conditional_t<Tls, detail::TlsLayer, SocketLayer>>;
  using Bottom = std::conditional_t<H2, detail::Http2Layer, SocketLayer>;
  using WsStream = ws::stream<ScanLayer<Next>>;

 public:
  StreamImpl(net::io_context& io, const BeastOptions& options)
      : io_(io), options_(options), strand_(net::make_strand(io)), write_watch_(strand_) {}

  ~StreamImpl() override {
    Completions ready;
    fail_sends_locked(Error(errc::cancelled, "not sent: connection destroyed"), ready);  // no other owner is left
    run(ready);
    complete_wait({});
    complete_dial(Error(errc::cancelled, "connection destroyed while dialling"));
    if constexpr (H2) {
      if (link_) link_->reset();  // nothing if the stream ended already
    } else if (ws_ && lowest().socket().is_open()) {
      if (half_closed_ && !aborted_) {
        lowest().set_low_water(1);  // the drain waits for every byte, to the end
        linger(std::move(lowest().socket()));
      } else {
        error_code ignored;
        lowest().socket().close(ignored);
      }
    }
  }

  // RFC 6455 §7.1.1: after its close frame the client waits for the server to
  // close TCP. Closing at once with the server's reply still in flight makes the
  // kernel answer it with a reset, which can destroy our close frame at the server.
  // So the socket drains in the background (no thread held) for up to 2 s.
  static void linger(detail::Socket socket) {
    struct Linger {
      explicit Linger(detail::Socket s) : socket(std::move(s)), timer(socket.get_executor()) {}
      detail::Socket socket;
      net::steady_timer timer;
      std::array<char, 4096> scratch;
    };
    auto state = std::make_shared<Linger>(std::move(socket));
    state->timer.expires_after(std::chrono::seconds(2));
    state->timer.async_wait([state](const error_code&) {
      error_code ignored;
      state->socket.close(ignored);
    });
    struct Drain {
      std::shared_ptr<Linger> state;
      void operator()(const error_code& ec, std::size_t) const {
        if (ec) {
          state->timer.cancel();
          return;
        }
        state->socket.async_read_some(net::buffer(state->scratch), *this);
      }
    };
    Drain{state}(error_code{}, 0);
  }

  // ------------------------------------------------------------ dial

  void async_dial(DialRequest request, Connection::DialHandler done) override {
    {
      std::lock_guard lock(handler_mutex_);
      dial_done_ = std::move(done);
    }
    dial_ = std::make_unique<DialState>(strand_);
    dial_->request = std::move(request);
    dial_started_ = std::chrono::steady_clock::now();
    max_message_ = dial_->request.max_message_size;
    streamed_ = dial_->request.stream.enabled;
    part_size_ = dial_->request.stream.max_part_size;
    stream_max_ = static_cast<std::size_t>(dial_->request.stream.max_message_size);
    // Streamed, a frame read without Beast is a whole message: at most one part.
    direct_max_ = streamed_ ? std::min(max_message_, part_size_) : max_message_;
    read_buffer_ = boost::beast::flat_buffer(max_message_ + 1);
    read_limit_ = dial_->request.max_message_size + options_.read_chunk;
    control_frames_ = std::move(dial_->request.control_frames);
    write_timeout_ = dial_->request.write_timeout;
    if constexpr (Tls) {
      // The process's context for these settings (trust store loaded once); what
      // differs per connection is set on its SSL object (secure_or_upgrade).
      const auto& tls = dial_->request.tls;
      std::string failed;
      tls_context_ = wscengine::detail::process_tls_contexts().get(
          {tls.ca_file, tls.ca_pem, tls.certificate_file, tls.private_key_file, tls.private_key_password,
           tls.min_version == TlsOptions::Version::tls1_3},
          failed);
      if (!tls_context_) return complete_dial(Error(errc::invalid_option, failed));
      if (failed =
              certificate_gate_.configure(tls.verify_peer, tls_name(), tls.pinned_public_keys, tls.verify_callback);
          !failed.empty())
        return complete_dial(Error(errc::invalid_option, failed));
      tls_binding_.gate = certificate_gate_.active() ? &certificate_gate_ : nullptr;
      tls_binding_.session_key = wscengine::detail::tls_session_key(
          tls.session_resumption, dial_->request.url.host, dial_->request.url.port, tls_name(), tls.verify_peer,
          tls.pinned_public_keys, static_cast<bool>(tls.verify_callback), "http/1.1");
      ws_.emplace(strand_, tls_context_->context());
    } else {
      ws_.emplace(strand_);
    }
    if constexpr (!H2) {
      // The context holds the parsed store: the PEM text (a system bundle is over 200
      // KiB) need not stay with every connection. (HTTP/2 reads it when its stream opens.)
      std::string().swap(dial_->request.tls.ca_pem);
    }
    ws_->read_message_max(max_message_);
    ws_->auto_fragment(false);
    if (dial_->request.offer_compression) {
      if (auto bad = check_deflate_options(dial_->request.deflate); !bad.empty())
        return complete_dial(Error(errc::invalid_option, bad));
      const DeflateOptions& d = dial_->request.deflate;
      ws::permessage_deflate pmd;
      pmd.client_enable = true;
      pmd.server_max_window_bits = d.server_max_window_bits;
      pmd.client_max_window_bits = d.client_max_window_bits;
      pmd.server_no_context_takeover = d.server_no_context_takeover;
      pmd.client_no_context_takeover = d.client_no_context_takeover;
      pmd.compLevel = d.level;
      pmd.memLevel = d.memory_level;
      ws_->set_option(pmd);
    }
    ws_->set_option(ws::stream_base::decorator([this](ws::request_type& req) {
      req.set(http::field::user_agent, kUserAgent);
      for (const auto& h : dial_->request.headers) req.set(h.name, h.value);
      if (!dial_->request.subprotocols.empty()) {
        std::string joined;
        for (const auto& p : dial_->request.subprotocols) joined += (joined.empty() ? "" : ", ") + p;
        req.set(http::field::sec_websocket_protocol, joined);
      }
    }));
    stream_built_.store(true, std::memory_order_release);  // cancel_dial_ops may look at ws_ now
    auto self = this->shared_from_this();
    dial_->timer.expires_after(dial_->request.timeout);
    dial_->timer.async_wait([self](const error_code& ec) {
      if (ec) return;
      self->timed_out_ = true;
      self->cancel_dial_ops();
    });
    net::post(strand_, [self] {
      if (self->aborted_) return self->fail_dial(Error(errc::cancelled, "aborted"));
      if constexpr (H2)
        self->open_stream();
      else
        self->find_endpoints();
    });
  }

  // ------------------------------------------------------------ HTTP/2: a stream

  // The extended CONNECT on a shared HTTP/2 connection (RFC 8441 §4), then Beast's
  // handshake, which the layer answers from the CONNECT's response (http2_layer.hpp).
  void open_stream() {
    std::weak_ptr<StreamImpl> weak = this->shared_from_this();
    auto link = detail::open_http2_stream(
        io_, dial_->request, dial_->request.offer_compression ? deflate_offer(dial_->request.deflate) : std::string(),
        [weak, strand = strand_](Result<detail::Http2Opened> opened) {
          net::post(strand, [weak, opened = std::move(opened)]() mutable {
            if (auto self = weak.lock()) self->on_stream_opened(std::move(opened));
          });
        });
    std::lock_guard lock(link_mutex_);
    link_ = std::move(link);
  }

  // The stream's link, from any thread (abort() may run while the strand sets it).
  std::shared_ptr<detail::Http2Link> current_link() const {
    std::lock_guard lock(link_mutex_);
    return link_;
  }

  void on_stream_opened(Result<detail::Http2Opened> opened) {
    if constexpr (H2) {
      if (!opened) return fail_dial(opened.error());
      auto& layer = ws_->next_layer().next_layer();
      layer.attach(opened->channel, link_);
      open_ever_ = true;
      layer.outbox()->on_progress = [weak = this->weak_from_this()] {
        if (auto self = weak.lock()) self->on_outbox_progress();
      };
      connect_duration_ = opened->connect_duration;
      http2_status_ = opened->status;
      layer.answer_handshake(opened->headers);
      http2_headers_ = std::move(opened->headers);
      if (aborted_) return fail_dial(Error(errc::cancelled, "aborted"));
      upgrade();
    }
  }

  // ------------------------------------------------------------ route: where to connect

  // A Unix socket, the proxy, the caller's addresses, or every address DNS gives.
  void find_endpoints() {
    const Url& url = dial_->request.url;
    if (!url.unix_socket.empty()) {
      destination_ = "Unix socket " + url.unix_socket;
      dial_->endpoints.emplace_back(net::local::stream_protocol::endpoint(url.unix_socket));
      return connect_next();
    }
    if (dial_->request.proxy) {
      destination_ = "proxy " + dial_->request.proxy->to_string();
      return resolve(dial_->request.proxy->host, dial_->request.proxy->port);
    }
    destination_ = url.authority();
    if (dial_->request.addresses.empty()) return resolve(url.host, url.port);
    for (const auto& text : dial_->request.addresses) {
      error_code bad;
      auto address = net::ip::make_address(text, bad);
      if (bad) return fail_dial(Error(errc::invalid_option, "addresses: '" + text + "' is not an IP address"));
      dial_->endpoints.emplace_back(net::ip::tcp::endpoint(address, url.port));
    }
    connect_next();
  }

  void resolve(const std::string& host, std::uint16_t port) {
    auto self = this->shared_from_this();
    dial_->resolver.async_resolve(
        host, std::to_string(port), [self, host](const error_code& ec, net::ip::tcp::resolver::results_type results) {
          if (ec) {
            std::string what = self->dial_->request.proxy ? "resolving proxy '" : "resolving '";
            return self->fail_dial(Error(errc::dns_failure, what + host + "': " + ec.message()));
          }
          for (const auto& entry : results) self->dial_->endpoints.emplace_back(entry.endpoint());
          self->connect_next();
        });
  }

  static std::string describe(const detail::Socket::endpoint_type& ep) {
    if (ep.protocol().family() == AF_UNIX) return "Unix socket";
    const auto* sa = ep.data();
    if (sa->sa_family == AF_INET) {
      net::ip::tcp::endpoint v4;
      std::memcpy(v4.data(), sa, sizeof(sockaddr_in));
      return v4.address().to_string();
    }
    net::ip::tcp::endpoint v6;
    std::memcpy(v6.data(), sa, sizeof(sockaddr_in6));
    return "[" + v6.address().to_string() + "]";
  }

  // Tries the endpoints in order until one accepts; the error lists every failure.
  void connect_next() {
    if (next_endpoint_ == dial_->endpoints.size()) return fail_connect();
    error_code ignored;
    lowest().socket().close(ignored);
    auto self = this->shared_from_this();
    lowest().socket().async_connect(dial_->endpoints[next_endpoint_], [self](const error_code& ec) {
      const auto& ep = self->dial_->endpoints[self->next_endpoint_++];
      if (!ec) return self->on_connected(ep);
      if (ec == net::error::connection_refused) ++self->refusals_;
      if (!self->dial_->connect_failures.empty()) self->dial_->connect_failures += "; ";
      self->dial_->connect_failures += describe(ep) + ": " + ec.message();
      if (self->timed_out_ || self->aborted_)
        return self->fail_dial(Error(errc::connect_failed, "connecting to " + self->destination_));
      self->connect_next();
    });
  }

  void fail_connect() {
    std::string what = "connecting to " + destination_;
    if (dial_->endpoints.size() > 1)
      what += " (tried " + std::to_string(dial_->endpoints.size()) + " addresses: " + dial_->connect_failures + ")";
    else if (!dial_->connect_failures.empty() && refusals_ == 0)
      what += ": " + dial_->connect_failures;
    if (refusals_ == dial_->endpoints.size() && refusals_ > 0) return fail_dial(Error(errc::connection_refused, what));
    fail_dial(Error(errc::connect_failed, what));
  }

  void on_connected(const detail::Socket::endpoint_type& ep) {
    connect_duration_ = std::chrono::steady_clock::now() - dial_started_;
    error_code ignored;
    if (ep.protocol().family() != AF_UNIX) {
      lowest().socket().set_option(net::ip::tcp::no_delay(true), ignored);
      lowest().enable_low_water();
    }
    lowest().owner = this->weak_from_this();
    lowest().outbox()->on_progress = [weak = this->weak_from_this()] {
      if (auto self = weak.lock()) self->on_outbox_progress();
    };
    fd_ = lowest().socket().native_handle();
    if (aborted_) ::shutdown(fd_, SHUT_RDWR);
    if (dial_->request.proxy && dial_->request.url.unix_socket.empty()) {
      if (dial_->request.proxy->protocol != HttpProxy::Protocol::http) return open_socks();
      return open_tunnel();
    }
    secure_or_upgrade();
  }

  // ------------------------------------------------------------ SOCKS5 tunnel

  // RFC 1928: a greeting with the methods we can do (no authentication; user name and
  // password, RFC 1929, when we have them), the proxy's choice, then CONNECT to the
  // server by name (socks5h: the proxy resolves it) or by address (socks5: resolved
  // here). Each step's bytes go through dial_->tunnel_request out and dial_->tunnel_reply in.
  void open_socks() {
    const bool credentials = !dial_->request.proxy->username.empty();
    dial_->tunnel_request = credentials ? std::string("\x05\x02\x00\x02", 4) : std::string("\x05\x01\x00", 3);
    socks_exchange(2, [](Self& self) { self.on_socks_method(); });
  }

  using Self = StreamImpl;
  // Writes dial_->tunnel_request, then reads exactly `answer` bytes into dial_->tunnel_reply.
  template <class Then>
  void socks_exchange(std::size_t answer, Then next) {
    auto self = this->shared_from_this();
    net::async_write(lowest(), net::buffer(dial_->tunnel_request),
                     [self, answer, next](const error_code& ec, std::size_t) {
                       if (ec) return self->fail_tunnel("sending to the SOCKS5 proxy: " + ec.message());
                       self->socks_read(answer, next);
                     });
  }
  template <class Then>
  void socks_read(std::size_t n, Then next) {
    auto self = this->shared_from_this();
    dial_->tunnel_reply.resize(n);
    net::async_read(lowest(), net::buffer(dial_->tunnel_reply), [self, next](const error_code& ec, std::size_t) {
      if (ec) return self->fail_tunnel("no valid SOCKS5 answer: " + ec.message());
      next(*self);
    });
  }
  std::uint8_t reply(std::size_t i) const { return static_cast<std::uint8_t>(dial_->tunnel_reply[i]); }

  void on_socks_method() {
    if (reply(0) != 5) return fail_tunnel("not a SOCKS5 proxy (it answered version " + std::to_string(reply(0)) + ")");
    if (reply(1) == 0) return socks_connect();
    if (reply(1) == 2 && !dial_->request.proxy->username.empty()) {
      const auto& p = *dial_->request.proxy;  // lengths checked by parse_proxy_url
      dial_->tunnel_request = std::string(1, '\x01') + static_cast<char>(p.username.size()) + p.username +
                              static_cast<char>(p.password.size()) + p.password;
      return socks_exchange(2, [](Self& self) {
        if (self.reply(1) != 0)
          return self.fail_tunnel("refused the user name and password (RFC 1929 status " +
                                  std::to_string(self.reply(1)) + ")");
        self.socks_connect();
      });
    }
    if (reply(1) == 2) return fail_tunnel("asks for a user name and password, and the proxy URL has none");
    return fail_tunnel(dial_->request.proxy->username.empty()
                           ? "accepts no connection without authentication (method 0xFF)"
                           : "accepts neither no authentication nor a user name and password (method 0xFF)");
  }

  void socks_connect() {
    const Url& url = dial_->request.url;
    error_code not_address;
    auto literal = net::ip::make_address(url.host, not_address);
    if (!not_address) return socks_request(literal);
    if (dial_->request.proxy->protocol == HttpProxy::Protocol::socks5h) return socks_request(std::nullopt);
    // socks5://: the name is resolved here and the proxy gets an address.
    auto self = this->shared_from_this();
    dial_->resolver.async_resolve(
        url.host, std::to_string(url.port), [self](const error_code& ec, net::ip::tcp::resolver::results_type results) {
          if (ec || results.empty()) {
            return self->fail_dial(Error(errc::dns_failure, "resolving '" + self->dial_->request.url.host +
                                                                "' for the SOCKS5 proxy: " + ec.message()));
          }
          self->socks_request(results.begin()->endpoint().address());
        });
  }

  void socks_request(const std::optional<net::ip::address>& address) {
    const Url& url = dial_->request.url;
    dial_->tunnel_request = std::string("\x05\x01\x00", 3);  // CONNECT
    if (!address) {
      dial_->tunnel_request += '\x03';
      dial_->tunnel_request += static_cast<char>(url.host.size());  // at most 255: checked below
      dial_->tunnel_request += url.host;
    } else if (address->is_v4()) {
      auto bytes = address->to_v4().to_bytes();
      dial_->tunnel_request += '\x01';
      dial_->tunnel_request.append(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    } else {
      auto bytes = address->to_v6().to_bytes();
      dial_->tunnel_request += '\x04';
      dial_->tunnel_request.append(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    }
    if (!address && url.host.size() > 255) return fail_tunnel("the host name is longer than SOCKS5 allows (255)");
    dial_->tunnel_request += static_cast<char>(url.port >> 8);
    dial_->tunnel_request += static_cast<char>(url.port & 0xff);
    // The answer: version, status, reserved, the bound address's type and first byte.
    socks_exchange(5, [](Self& self) { self.on_socks_answer(); });
  }

  void on_socks_answer() {
    if (reply(0) != 5) return fail_tunnel("answered CONNECT with version " + std::to_string(reply(0)));
    if (std::uint8_t status = reply(1); status != 0) {
      static constexpr const char* kWhy[] = {
          "succeeded",           "general failure",       "connection not allowed by its rules",
          "network unreachable", "host unreachable",      "connection refused",
          "TTL expired",         "command not supported", "address type not supported"};
      std::string why = status < std::size(kWhy) ? kWhy[status] : "unknown status";
      return fail_dial(Error(errc::proxy_failed, destination_ + " answered CONNECT " + dial_->request.url.authority() +
                                                     " with " + std::to_string(status) + " (" + why + ")"));
    }
    // The rest of the bound address (we do not use it) and its port.
    std::size_t rest = reply(3) == 1 ? 3 + 2 : reply(3) == 4 ? 15 + 2 : reply(3) == 3 ? reply(4) + 2 : 0;
    if (rest == 0) return fail_tunnel("answered with an unknown address type " + std::to_string(reply(3)));
    socks_read(rest, [](Self& self) {
      self.dial_->tunnel_reply.clear();
      self.dial_->tunnel_reply.shrink_to_fit();
      self.secure_or_upgrade();
    });
  }

  // ------------------------------------------------------------ proxy tunnel

  // RFC 9110 §9.3.6: CONNECT host:port; any 2xx answer turns the connection into
  // a tunnel to the server, through which TLS and the upgrade then run.
  void open_tunnel() {
    std::string authority = dial_->request.url.authority();
    dial_->tunnel_request =
        "CONNECT " + authority + " HTTP/1.1\r\nHost: " + authority + "\r\nUser-Agent: " + kUserAgent + "\r\n";
    if (auto credentials = dial_->request.proxy->authorization(); !credentials.empty())
      dial_->tunnel_request += "Proxy-Authorization: " + credentials + "\r\n";
    dial_->tunnel_request += "\r\n";
    auto self = this->shared_from_this();
    net::async_write(lowest(), net::buffer(dial_->tunnel_request), [self](const error_code& ec, std::size_t) {
      if (ec) return self->fail_tunnel("sending CONNECT: " + ec.message());
      self->dial_->tunnel_answer.emplace();
      self->dial_->tunnel_answer->header_limit(16 * 1024);
      http::async_read_header(self->lowest(), self->dial_->tunnel_buffer, *self->dial_->tunnel_answer,
                              [self](const error_code& ec, std::size_t) { self->on_tunnel_answer(ec); });
    });
  }

  void on_tunnel_answer(const error_code& ec) {
    if (ec) return fail_tunnel("no valid answer to CONNECT: " + ec.message());
    const auto& answer = dial_->tunnel_answer->get();
    int status = answer.result_int();
    if (status / 100 != 2) {
      Error refused(errc::proxy_failed, destination_ + " answered CONNECT " + dial_->request.url.authority() +
                                            " with " + std::to_string(status) + " " + std::string(answer.reason()));
      refused.http_status = status;
      refused.http_headers = headers_of(answer);
      return fail_dial(std::move(refused));
    }
    // The server speaks only after our ClientHello or upgrade request.
    if (dial_->tunnel_buffer.size() != 0)
      return fail_tunnel("sent data after its 2xx answer, before the tunnel was used");
    dial_->tunnel_answer.reset();
    secure_or_upgrade();
  }

  // The name the server's certificate must carry (and SNI sends, unless an address).
  std::string tls_name() const {
    return dial_->request.tls.server_name.empty() ? dial_->request.url.host : dial_->request.tls.server_name;
  }

  void fail_tunnel(std::string why) { fail_dial(Error(errc::proxy_failed, destination_ + ": " + why)); }

  // ------------------------------------------------------------ TLS and upgrade

  void secure_or_upgrade() {
    auto self = this->shared_from_this();
    if constexpr (Tls) {
      auto& tls = ws_->next_layer().next_layer();
      std::string name = tls_name();
      error_code not_an_address;
      net::ip::make_address(name, not_an_address);
      // RFC 6066 §3: SNI carries host names only, never address literals.
      if (not_an_address && !SSL_set_tlsext_host_name(tls.native_handle(), name.c_str())) {
        return fail_dial(Error(errc::tls_handshake_failed, "cannot set SNI name '" + name + "'"));
      }
      if (dial_->request.tls.verify_peer) {
        SSL_set_verify(tls.native_handle(), SSL_VERIFY_PEER, nullptr);
        // OpenSSL checks the name as part of the chain (RFC 6125: DNS names, no
        // partial wildcards; an address against the certificate's IP entries).
        X509_VERIFY_PARAM* check = SSL_get0_param(tls.native_handle());
        X509_VERIFY_PARAM_set_hostflags(check, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        const bool set = not_an_address ? X509_VERIFY_PARAM_set1_host(check, name.c_str(), name.size()) == 1
                                        : X509_VERIFY_PARAM_set1_ip_asc(check, name.c_str()) == 1;
        if (!set) return fail_dial(Error(errc::tls_handshake_failed, "cannot check the name '" + name + "'"));
      } else {
        // Pins and the verify callback run in OpenSSL's verification, which
        // SSL_VERIFY_NONE skips; their gate accepts a chain that does not verify.
        SSL_set_verify(tls.native_handle(), certificate_gate_.active() ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, nullptr);
      }
      tls_context_->prepare(tls.native_handle(), tls_binding_);  // the gate, and the origin's session
      tls.async_handshake([self](const error_code& ec) { self->on_tls(ec); });
    } else {
      upgrade();
    }
  }

  void on_tls(const error_code& ec) {
    if constexpr (Tls) {
      SSL* ssl = ws_->next_layer().next_layer().native_handle();
      if (ec)
        return fail_dial(tls_error(wscengine::detail::tls_handshake_failure(
            ec, ssl, dial_->request.tls.verify_peer, certificate_gate_, dial_->request.url.host)));
      wscengine::detail::SharedTlsContext::count_handshake(ssl);
    }
    upgrade();
  }

  void upgrade() {
    auto self = this->shared_from_this();
    ws_->async_handshake(dial_->response, dial_->request.url.host_header(), dial_->request.url.target,
                         [self](const error_code& ec) { self->on_upgraded(ec); });
  }

  void on_upgraded(const error_code& ec) {
    std::string what = "GET " + dial_->request.url.to_string();
    if (ec == ws::error::upgrade_declined) {
      Error refused = Error::http(dial_->response.result_int(),
                                  what + " answered \"" + std::string(dial_->response.reason()) + "\"");
      refused.http_headers = headers_of(dial_->response);
      return fail_dial(std::move(refused));
    }
    if (ec) return fail_dial(Error(errc::handshake_failed, what + ": " + ec.message()));
    HandshakeResponse answer;
    answer.status = dial_->response.result_int();
    answer.connect_duration = connect_duration_;
    answer.headers = headers_of(dial_->response);
    if constexpr (H2) {  // the answer is the extended CONNECT's, not the 101 made from it
      answer.status = http2_status_;
      answer.headers = std::move(http2_headers_);
      answer.http2 = true;
    }
    // Beast checks neither the subprotocol nor the extension parameters.
    auto subprotocol = check_subprotocol_answer(answer.header("Sec-WebSocket-Protocol"), dial_->request.subprotocols);
    if (!subprotocol) return fail_dial(Error(errc::handshake_failed, what + ": " + subprotocol.error().detail));
    answer.subprotocol = std::move(subprotocol.value());
    auto deflate = check_extensions_answer(answer.header("Sec-WebSocket-Extensions"), dial_->request.offer_compression,
                                           dial_->request.deflate);
    if (!deflate) return fail_dial(Error(errc::handshake_failed, what + ": " + deflate.error().detail));
    answer.compression = deflate.value();
    if constexpr (!H2) {
      error_code ignored;
      lowest().socket().non_blocking(true, ignored);
    }
    ws_->next_layer().scanner().set_compression(answer.compression);
    ws_->next_layer().scanner().record_pongs(static_cast<bool>(control_frames_));
    beast_messages_ = ws_->next_layer().start_scanning();
    // Compressed frames need Beast's inflate state: every read goes through Beast.
    direct_reads_ = !answer.compression;
    // Which messages this side frames itself, uncompressed (write_uncompressed_locked):
    // every one without compression, or when Beast would misread the answer.
    plain_below_ = answer.compression && beast_keeps_the_offer(*answer.header("Sec-WebSocket-Extensions"))
                       ? dial_->request.deflate.min_size
                       : std::numeric_limits<std::size_t>::max();
    // Large payloads then go from the kernel straight into the message's string
    // (not when streamed: a message that spans reads then comes in parts).
    if (direct_reads_ && !streamed_) ws_->next_layer().divert_payloads(kDivertPayloadsFrom, max_message_);
    {
      std::lock_guard lock(mutex_);
      answer_pings_locked();  // pings that came with the 101 response
    }
    dial_->timer.cancel();
    open_ = !aborted_;
    if (aborted_) return fail_dial(Error(errc::cancelled, "aborted"));
    release_dial_state();
    complete_dial(std::move(answer));
  }

  // What only the dial needed is not kept for the connection's life: an idle
  // connection's memory is mostly what stays here (docs/benchmarks.md).
  void release_dial_state() { dial_.reset(); }

  void fail_dial(Error error) {
    if (dial_) dial_->timer.cancel();
    if (timed_out_)
      error = Error(errc::timeout, "opening handshake did not finish in time (" + error.message() + ")");
    else if (aborted_)
      error = Error(errc::cancelled, "dial aborted (" + error.message() + ")");
    if constexpr (H2) {
      if (link_) link_->reset();
    } else {
      error_code ignored;
      lowest().socket().close(ignored);
    }
    complete_dial(std::move(error));
  }

  // Runs on the strand. An abort() during async_dial posts this while the dial may
  // still be building ws_ on its own thread: the stream is looked at only once built
  // (the dial then sees aborted_ on the strand and stops by itself).
  void cancel_dial_ops() {
    if (dial_) dial_->resolver.cancel();
    if constexpr (H2) {
      if (link_) link_->reset();
    } else {
      error_code ignored;
      if (stream_built_.load(std::memory_order_acquire) && ws_) lowest().socket().cancel(ignored);
    }
  }

  void complete_dial(Result<HandshakeResponse> result) {
    Connection::DialHandler done;
    {
      std::lock_guard lock(handler_mutex_);
      done = std::exchange(dial_done_, nullptr);
    }
    if (done) done(std::move(result));
  }

  // ------------------------------------------------------------ reading

  Error try_read(InboundMessage& out) override {
    std::lock_guard lock(mutex_);
    if (!open_) return closed_error_locked();
    if (!ready_locked()) {
      pump_locked(/*reader=*/true);
      if (!ready_locked()) return Error(errc::would_block);
    }
    return streamed_ ? read_streamed_locked(out) : read_locked(out);
  }

  void async_wait_readable(Connection::WaitHandler done) override {
    {
      std::lock_guard lock(mutex_);
      // A pump that stopped at a message may have left records in OpenSSL that the
      // socket will not announce: read now, and pump then.
      if (open_ && !ready_locked() && !ws_->next_layer().stopped_at_a_message()) {
        {
          std::lock_guard handlers(handler_mutex_);
          wait_done_ = std::move(done);
        }
        std::weak_ptr<StreamImpl> weak = this->shared_from_this();
        bottom().async_wait_readable([weak](const error_code& ec) {
          if (auto self = weak.lock())
            self->complete_wait(ec && ec != net::error::operation_aborted ? Error(errc::io_error, ec.message())
                                                                          : Error{});
        });
        // The mark is lowered once the wait is armed: Asio arms it by asking epoll
        // whether the socket is readable under the mark still raised for reading
        // (no), and lowering it then wakes the wait at once if enough bytes are
        // there. Lowered first, it would wake the I/O thread for nothing (no wait
        // yet), and again when the wait is armed.
        ws_->next_layer().low_water_for_waiting(part_bytes_missing_locked());
        ws_->next_layer().release_idle_buffer();
        return;
      }
    }
    done({});  // a message is buffered, or the connection closed: read now
  }

  void cancel_wait() override { complete_wait(Error(errc::cancelled, "wait cancelled")); }

  void complete_wait(Error e) {
    Connection::WaitHandler done;
    {
      std::lock_guard lock(handler_mutex_);
      done = std::exchange(wait_done_, nullptr);
    }
    if (done) done(std::move(e));
  }

  // Reading by hand (on_open, under a PauseGuard): reads what is buffered; waits for
  // more with an asynchronous wait on the socket, completed on an I/O thread, so the
  // caller's thread sleeps on a condition (portable: no poll()). Never on an I/O thread.
  Error read(InboundMessage& out, std::chrono::milliseconds timeout) override {
    auto deadline = Clock::now() + timeout;
    for (;;) {
      {
        std::lock_guard lock(mutex_);
        if (!open_) return closed_error_locked();
        if (!ready_locked()) pump_locked();
        if (ready_locked()) {
          Error e = streamed_ ? read_streamed_locked(out) : read_locked(out);
          if (!e.is(errc::would_block)) return e;
        }
        ws_->next_layer().low_water_for_waiting(part_bytes_missing_locked());
      }
      if (Clock::now() >= deadline || !wait_readable_until(deadline))
        return Error(errc::timeout, "no message within " + std::to_string(timeout.count()) + " ms");
    }
  }

  // True when the socket became readable (or failed) before `deadline`. A wait that
  // outlives it completes later into a state nobody watches.
  bool wait_readable_until(Clock::time_point deadline) {
    struct Signal {
      std::mutex mutex;
      std::condition_variable cv;
      bool fired = false;
    };
    auto signal = std::make_shared<Signal>();
    net::post(strand_, [self = this->shared_from_this(), signal] {
      self->bottom().async_wait_readable([signal](const error_code&) {
        std::lock_guard lock(signal->mutex);
        signal->fired = true;
        signal->cv.notify_all();
      });
    });
    std::unique_lock lock(signal->mutex);
    return signal->cv.wait_until(lock, deadline, [&] { return signal->fired; });
  }

  // ------------------------------------------------------------ writing, ping, close

  // The send pipeline. A message is encoded into the socket at once when nothing
  // waits before it (what the kernel does not take goes to the outbox, sent by the
  // I/O thread as the socket becomes writable); else it waits in pending_, as
  // plaintext, and is encoded when the outbox has drained. So the outbox holds at
  // most the rest of one message, and pongs and the close frame, written straight
  // into it, go ahead of every message still pending (under TLS too: records are
  // encrypted in the order they go out). The stream lock is held only while Beast
  // encodes: reads and pongs go on while the peer is slow to read (full duplex).
  void async_write(MessageType type, std::string_view payload, DoneHandler done) override {
    write_frames(type, payload, MessagePart::whole, std::move(done));
  }
  // A message in parts: each part is one frame, queued as a whole message is (Beast's
  // write_some keeps the continuation opcodes).
  void async_write_part(MessageType type, std::string_view payload, MessagePart part, DoneHandler done) override {
    write_frames(type, payload, part, std::move(done));
  }

  void write_frames(MessageType type, std::string_view payload, MessagePart part, DoneHandler done) {
    std::optional<Error> now;
    bool must_wait = false;
    {
      std::lock_guard lock(mutex_);
      if (!open_) {
        now = Error::closed(last_close_, "write on a closed connection");
      } else if (pending_.empty() && outbox_empty_locked()) {
        now = encode_locked(type, payload, part, done);  // nullopt: `done` waits in deliveries_
      } else {
        must_wait = true;
      }
    }
    if (now) return done(std::move(*now));
    if (!must_wait) return;
    // It must wait: the copy is made outside the stream lock (readers need it), then
    // queued; the outbox may have drained meanwhile, so encode what now can go.
    PendingWrite queued{type, std::string(payload), std::move(done), part};
    Completions ready;
    {
      std::lock_guard lock(mutex_);
      if (!open_) {
        ready.emplace_back(std::move(queued.done), Error::closed(last_close_, "write on a closed connection"));
      } else {
        pending_.push_back(std::move(queued));
        while (!pending_.empty() && outbox_empty_locked()) encode_next_locked(ready);
      }
    }
    run(ready);
  }

  // Waits (on the caller's thread, never on an I/O thread) until the message reached
  // the kernel; a peer that does not read fails it after write_timeout.
  Error write(MessageType type, std::string_view payload) override {
    std::promise<Error> result;
    auto outcome = result.get_future();
    async_write(type, payload, [&result](Error e) { result.set_value(std::move(e)); });
    return outcome.get();
  }

  void async_ping(std::string_view payload, std::chrono::milliseconds timeout, DoneHandler done) override {
    Error refused;
    {
      std::lock_guard lock(mutex_);
      if (!open_) {
        refused = Error::closed(last_close_, "ping on a closed connection");
      } else if (payload.size() > 125) {
        refused = Error(errc::invalid_option, "ping payload over 125 bytes");
      } else {
        error_code ec;
        ws_->ping(ws::ping_data(payload.data(), payload.size()), ec);
        if (!ec && control_frames_) control_frames_(ControlFrameKind::ping_sent, payload);
        if (!ec) {
          auto w = std::make_shared<Waiter>();
          w->done = std::move(done);
          w->pongs_before = ws_->next_layer().scanner().pongs();
          w->what = "no pong within " + std::to_string(timeout.count()) + " ms";
          return start_waiter_locked(std::move(w), timeout);
        }
        fail_locked();
        refused = Error::closed(last_close_, "ping failed: " + ec.message());
      }
    }
    done(std::move(refused));
  }

  Error ping(std::string_view payload, std::chrono::milliseconds timeout) override {
    std::promise<Error> result;
    async_ping(payload, timeout, [&result](Error e) { result.set_value(std::move(e)); });
    return result.get_future().get();
  }

  // The close frame goes out (through the outbox); the peer's close is then awaited
  // without holding a thread: a wait on the socket and a timer, on the I/O threads.
  void async_close(const CloseFrame& frame, std::chrono::milliseconds timeout, DoneHandler done) override {
    Error result;
    Completions ready;
    bool waiting = false;
    {
      std::lock_guard lock(mutex_);
      if (!ws_ || !open_) {
        result = Error::closed(last_close_, "connection already closed");
      } else {
        // A graceful close sends what is queued first; what the close timeout cuts
        // off is reported to its sender.
        while (!pending_.empty()) encode_next_locked(ready);
        open_ = false;  // nothing more is read or written but the close handshake
        last_close_ = frame;
        ws::close_reason reason;
        reason.code = frame.code;
        reason.reason = frame.reason;
        error_code ec;
        ws_->next_layer().set_no_wait(true);  // Beast reads for the answer: only what is here already
        ws_->close(reason, ec);
        ws_->next_layer().set_no_wait(false);
        if (ec == net::error::would_block) {
          auto w = std::make_shared<Waiter>();
          w->done = std::move(done);
          w->close = true;
          w->what = "peer did not answer the close frame within " + std::to_string(timeout.count()) + " ms";
          start_waiter_locked(w, timeout);
          settle_waiters_locked();  // the answer may be among the bytes read already
          waiting = true;
        } else {
          if (ec && !is_drop(ec) && ec != ws::error::closed)
            result = Error(errc::io_error, "close handshake: " + ec.message());
          fail_locked();
        }
      }
    }
    run(ready);
    if (waiting) return;
    complete_wait({});
    done(std::move(result));
  }

  Error close(const CloseFrame& frame, std::chrono::milliseconds timeout) override {
    std::promise<Error> result;
    async_close(frame, timeout, [&result](Error e) { result.set_value(std::move(e)); });
    return result.get_future().get();
  }

  void abort() noexcept override {
    aborted_ = true;
    Completions ready;
    {
      std::lock_guard lock(mutex_);
      open_ = false;
      for (auto& w : std::vector<std::shared_ptr<Waiter>>(waiters_))
        finish_waiter_locked(w, Error::closed({close_code::abnormal, {}}, "connection aborted"));
      fail_sends_locked(Error::closed({close_code::abnormal, {}}, "not sent: connection aborted"), ready);
    }
    run(ready);
    kill_transport();
    auto self = this->shared_from_this();
    net::post(strand_, [self] { self->cancel_dial_ops(); });
    complete_wait({});
  }

  bool is_open() const noexcept override { return open_; }

  Underlying underlying() noexcept override { return {&typeid(WsStream), ws_ ? &*ws_ : nullptr}; }

 private:
  SocketLayer& lowest() { return ws_->next_layer().lowest(); }
  // The layer at the bottom: the socket's, or the HTTP/2 stream's.
  Bottom& bottom() {
    if constexpr (H2)
      return ws_->next_layer().next_layer();
    else
      return lowest();
  }
  // Drops the transport at once: the socket both ways, or the HTTP/2 stream (reset).
  void kill_transport() {
    if constexpr (H2) {
      if (auto link = current_link()) link->reset();
    } else if (int fd = fd_.load(); fd >= 0) {
      ::shutdown(fd, SHUT_RDWR);
    }
  }

  // Reads what the socket has, then answers the pings the scanner took out of the
  // stream (Beast would answer them only while reading a message).
  //
  // The socket's low-water mark: the engine's reader (`reader`, from try_read) raises
  // it while large frames stream and lowers it as it arms its own wait. Any other
  // read (the waiters', reading by hand) may run while a wait is armed, the reader's
  // or the waiters', with a mark for the bytes the frame lacked then: after it the
  // mark comes down to what is still to come. So does it after the reader's read
  // while the waiters' wait is armed.
  void pump_locked(bool reader = false) {
    auto& layer = ws_->next_layer();
    if (reader) layer.low_water_for_reading();
    layer.pump(options_.read_chunk, buffer_limit_locked());
    if (!reader || watching_) layer.low_water_for_waiting(part_bytes_missing_locked());
    answer_pings_locked();
    if (!waiters_.empty()) settle_waiters_locked();
  }
  // In order, and only the pings every frame before which was accepted (the scanner
  // holds back those behind a compressed message until it was read). The pongs it
  // recorded for control_frames_ are reported in their place among them.
  void answer_pings_locked() {
    auto& scanner = ws_->next_layer().scanner();
    if (!scanner.has_control() || !open_) return;
    bool failed = false;
    for (const auto& frame : scanner.take_control(consumed_)) {
      if (frame.pong) {
        control_frames_(ControlFrameKind::pong_received, frame.payload);
        continue;
      }
      if (control_frames_) control_frames_(ControlFrameKind::ping_received, frame.payload);
      if (failed) continue;  // the connection failed: the next read reports it
      error_code ec;
      ws_->pong(ws::ping_data(frame.payload.data(), frame.payload.size()), ec);  // never waits (the outbox)
      failed = static_cast<bool>(ec);
      if (!failed && control_frames_) control_frames_(ControlFrameKind::pong_sent, frame.payload);
    }
  }

  // A read can take something now without waiting for the socket: a whole message
  // or close frame, a violation or a transport error to report, a full buffer; or,
  // streamed, the next part.
  bool ready_locked() const {
    const auto& layer = ws_->next_layer();
    return layer.scanner().events() > consumed_ || layer.scanner().broken() || layer.transport_error() ||
           layer.buffered() >= buffer_limit_locked() ||
           (streamed_ && streams_locked() && front_locked() == Front::part);
  }

  // Streamed, a part is ready once a part's bytes are buffered: a wait must wake by
  // then, whatever is left of the frame (see ScanLayer::low_water_for_waiting).
  std::uint64_t part_bytes_missing_locked() const {
    if (!streamed_) return ~std::uint64_t{0};
    const std::size_t buffered = ws_->next_layer().buffered();
    return buffered < part_size_ ? part_size_ - buffered : 0;
  }

  // How many bytes the buffer holds at most. A message read whole must fit in it
  // (max_message_size and a read more); a message read in parts needs a part and a
  // read, so that streaming a message of any size holds little (and the buffer is
  // never grown and given back over and over).
  std::size_t buffer_limit_locked() const {
    if (streamed_ && streams_locked() && front_locked() != Front::whole)
      return std::min(read_limit_, part_size_ + options_.read_chunk);
    return read_limit_;
  }

  // ------------------------------------------------------------ streamed reads
  //
  // DialRequest::stream: a message is read in parts with Beast's read_some, which
  // checks and reports everything as its whole read does (UTF-8 across parts, 1002,
  // 1009 against stream.max_message_size, the close frame). A synchronous Beast read
  // must never wait for the socket (the ScanLayer would block an I/O thread), so it
  // runs only when the buffer lets it finish: front_locked() looks at the frames there.
  // Two facts make that exact. The ScanLayer gives Beast at most the rest of the frame
  // it reads (frame_left()); and every read_some has at least kBeastReadSpace bytes of
  // room, more than Beast's own read buffer holds, so that buffer is empty after each
  // read: between reads Beast holds no bytes the adapter cannot see. Compressed
  // messages are inflated whole (Beast's inflate may read again after it produced
  // output, so its progress cannot be checked from outside), and so would be messages
  // Beast's buffer began with the 101 response (none since ScanLayer::capture keeps
  // them out of it).

  // More room than Beast 1.74's read buffer (139 + 1536 bytes).
  static constexpr std::size_t kBeastReadSpace = 2048;

  enum class Front {
    wait,   // more bytes are needed
    part,   // Beast's read_some can read on without waiting
    whole,  // the next message is compressed: read whole
  };

  // Streamed reads apply: the next message is not one Beast's buffer began.
  bool streams_locked() const { return mid_message_ || (consumed_ >= beast_messages_ && ws_->next_layer().precise()); }

  // What the frames at the front of the buffer allow a read to do (see above).
  Front front_locked() const {
    const auto& layer = ws_->next_layer();
    if (layer.frame_left() > 0) return layer.buffered() > 0 ? Front::part : Front::wait;
    auto bytes = layer.buffered_data();
    const auto* p = static_cast<const unsigned char*>(bytes.data());
    const std::size_t n = bytes.size();
    std::size_t at = 0;
    for (;;) {
      auto frame = detail::peek_frame_header(p + at, n - at);
      if (frame.length == 0) return Front::wait;
      const std::size_t payload_here = n - at - frame.length;
      const unsigned opcode = p[at] & 0x0f;
      if ((opcode & 0x08) != 0) {  // a control frame: Beast handles it whole, then reads on
        if (payload_here < frame.payload) return Front::wait;
        if (opcode == 0x08) return Front::part;  // the close: the read reports it
        at += frame.length + static_cast<std::size_t>(frame.payload);
        continue;
      }
      if (!mid_message_ && (p[at] & 0x40) != 0) return Front::whole;  // RSV1: compressed
      if (frame.payload == 0) {
        if ((p[at] & 0x80) != 0) return Front::part;  // an empty last frame ends the message
        at += frame.length;                           // an empty frame: Beast reads on
        continue;
      }
      return payload_here > 0 ? Front::part : Front::wait;
    }
  }

  Error read_streamed_locked(InboundMessage& out) {
    if (!mid_message_) {
      if (read_whole_frame_locked(out)) return {};
      if (!streams_locked() || front_locked() == Front::whole) {
        // Whole, within max_message_size; only once it is all here (ready_locked()
        // may have said yes for a part that is not this).
        const auto& layer = ws_->next_layer();
        if (layer.scanner().events() <= consumed_ && !layer.scanner().broken() && !layer.transport_error() &&
            layer.buffered() < read_limit_)
          return Error(errc::would_block);
        ws_->read_message_max(max_message_);
        return read_locked(out);
      }
      ws_->read_message_max(stream_max_);  // 0: no bound
    }
    return read_part_locked(out);
  }

  // Reads what the buffer has of the current message, up to a part. A violation or a
  // transport error ahead is read through, so that Beast reports it.
  Error read_part_locked(InboundMessage& out) {
    auto& layer = ws_->next_layer();
    const bool report = layer.scanner().broken() || layer.transport_error();
    const bool first = !mid_message_;
    out.payload.resize(part_size_);
    std::size_t size = 0;
    bool done = false;
    error_code ec;
    while (part_size_ - size >= kBeastReadSpace && (report || front_locked() == Front::part)) {
      size += ws_->read_some(net::buffer(out.payload.data() + size, part_size_ - size), ec);
      if (ec) break;
      mid_message_ = true;
      if (ws_->is_message_done()) {
        done = true;
        break;
      }
    }
    if (ec) {
      mid_message_ = false;
      out.payload.clear();
      ++consumed_;
      return read_failed_locked(ec);
    }
    out.payload.resize(size);
    if (!mid_message_ || (size == 0 && !done)) return Error(errc::would_block);
    out.type = ws_->got_text() ? MessageType::text : MessageType::binary;
    if (out.type == MessageType::text) {  // the message's last bytes so far (see fail_cut_code_point_locked)
      if (first) text_tail_.clear();
      text_tail_.append(out.payload, size - std::min<std::size_t>(size, 4));
      if (text_tail_.size() > 4) text_tail_.erase(0, text_tail_.size() - 4);
      if (done && detail::incomplete_code_point(reinterpret_cast<const unsigned char*>(text_tail_.data()),
                                                text_tail_.size()) != 0) {
        mid_message_ = false;
        ++consumed_;
        out.payload.clear();
        return fail_cut_code_point_locked();
      }
    }
    if (done) {
      out.part = first ? MessagePart::whole : MessagePart::last;
      mid_message_ = false;
      ++consumed_;
      answer_pings_locked();  // pings that came meanwhile
    } else {
      out.part = first ? MessagePart::first : MessagePart::middle;
    }
    return {};
  }

  // A pump outside the reader (ping) may have taken the bytes the reader's socket
  // wait was waiting for: wake it so that it reads them.
  Error wake_reader_locked() {
    if (ready_locked()) {
      std::lock_guard lock(handler_mutex_);
      if (wait_done_)
        net::post(strand_, [weak = this->weak_from_this()] {
          if (auto self = weak.lock()) self->complete_wait({});
        });
    }
    return {};
  }
  void wake_reader() { complete_wait({}); }

  // The common message, read without Beast: one whole unfragmented, unmasked text or
  // binary frame without RSV bits, minimal length encoding, within max_message_size,
  // valid UTF-8 if text, at the front of the buffer while Beast holds no bytes
  // (between_frames(), and the messages that came with the 101 already read).
  // Pongs in front are skipped (the scanner counted them). Anything else returns
  // false and Beast reads it, reporting violations and closing as it does.
  bool read_whole_frame_locked(InboundMessage& out) {
    auto& layer = ws_->next_layer();
    if (!direct_reads_ || consumed_ < beast_messages_ || !layer.between_frames()) return false;
    for (;;) {
      auto bytes = layer.buffered_data();
      const auto* p = static_cast<const unsigned char*>(bytes.data());
      auto frame = detail::peek_frame_header(p, bytes.size());
      if (frame.length == 0 || frame.masked || !frame.minimal_length) return false;
      const std::size_t header = frame.length;
      const std::uint64_t len = frame.payload;
      // A large payload may have been received into a string of its own (see
      // ScanLayer::divert_payloads): then only the header is in the buffer, and the
      // bytes behind it (which may be as many as the payload) are the next frames.
      std::string* diverted = layer.diverted_payload(header);
      if (!diverted && bytes.size() - header < len) return false;
      if (p[0] == 0x8a && len <= 125) {  // a pong
        layer.discard(header + static_cast<std::size_t>(len));
        continue;
      }
      if ((p[0] != 0x81 && p[0] != 0x82) || len > direct_max_) return false;
      const auto* payload = diverted ? reinterpret_cast<const unsigned char*>(diverted->data()) : p + header;
      // The scanner checks the UTF-8 of every uncompressed text message it is fed and
      // is broken from the first that fails: unbroken, this one is valid already.
      if (p[0] == 0x81 && layer.scanner().broken() && !ascii(payload, static_cast<std::size_t>(len))) {
        ws::detail::utf8_checker utf8;
        if (!utf8.write(payload, static_cast<std::size_t>(len)) || !utf8.finish()) return false;
      }
      out.type = p[0] == 0x81 ? MessageType::text : MessageType::binary;
      out.part = MessagePart::whole;
      if (diverted) {
        layer.take_diverted(out.payload);  // no copy: the string changes hands
        layer.discard(header);
      } else {
        // clear + append: the string's capacity is reused, and append skips the
        // overlap checks of assign (measured in bench/profile.md).
        out.payload.clear();
        out.payload.append(reinterpret_cast<const char*>(payload), static_cast<std::size_t>(len));
        layer.discard(header + static_cast<std::size_t>(len));
      }
      ++consumed_;
      return true;
    }
  }

  Error read_locked(InboundMessage& out) {
    if (read_whole_frame_locked(out)) return {};
    // Beast reads into a flat_buffer, then the payload is copied out. Reading into
    // the string directly costs more for small messages: a dynamic string buffer
    // grows by resize(), which zero-fills every chunk Beast prepares (a memset of
    // ~1.5 KiB per 64-byte message, 4 % of the time in the profile).
    read_buffer_.clear();
    error_code ec;
    ws_->read(read_buffer_, ec);
    if (!ec) {
      ++consumed_;
      auto data = read_buffer_.cdata();
      if (ws_->got_text() &&
          detail::incomplete_code_point(static_cast<const unsigned char*>(data.data()), data.size()) != 0) {
        read_buffer_.clear();
        return fail_cut_code_point_locked();
      }
      answer_pings_locked();  // pings that came meanwhile, or behind this message
      out.type = ws_->got_text() ? MessageType::text : MessageType::binary;
      out.part = MessagePart::whole;
      out.payload.assign(static_cast<const char*>(data.data()), data.size());
      if (read_buffer_.capacity() > detail::kKeptMessageBuffer)
        read_buffer_ = boost::beast::flat_buffer(max_message_ + 1);
      return {};
    }
    read_buffer_.clear();
    ++consumed_;
    return read_failed_locked(ec);
  }

  // Beast 1.74 checks that a text message ends between code points only when its last
  // frame has payload: "\xe2\x82" then an empty final frame passes. The adapter fails
  // such a message itself, as Beast fails other invalid text: the close frame with
  // 1007, then the connection is over.
  Error fail_cut_code_point_locked() {
    ws::close_reason reason;
    reason.code = close_code::invalid_payload;
    reason.reason = "text ends inside a code point";
    error_code ignored;
    ws_->next_layer().set_no_wait(true);  // the frame goes out; the peer's answer is not awaited
    ws_->close(reason, ignored);
    ws_->next_layer().set_no_wait(false);
    last_close_ = CloseFrame{close_code::abnormal, {}};
    fail_locked();
    return Error(errc::invalid_utf8, "text message is not valid UTF-8: it ends inside a code point");
  }

  // A read failed: what happened, as the engine reports it.
  Error read_failed_locked(const error_code& ec) {
    if (ec == ws::error::closed) {
      auto reason = ws_->reason();
      last_close_ =
          CloseFrame{static_cast<std::uint16_t>(reason.code), std::string(reason.reason.data(), reason.reason.size())};
      fail_locked();
      return Error::closed(last_close_, "peer closed the connection");
    }
    if (is_drop(ec) || ec == net::error::timed_out) {
      last_close_ = CloseFrame{close_code::abnormal, {}};
      fail_locked();
      return Error::closed(last_close_, "connection dropped without a close frame (" + ec.message() + ")");
    }
    Error error;
    if (ec == ws::error::message_too_big || ec == ws::error::buffer_overflow) {
      const auto limit = ws_->read_message_max();
      error = Error(errc::message_too_big,
                    streamed_ && limit != max_message_
                        ? "streamed message over stream.max_message_size (" + std::to_string(limit) + " bytes)"
                        : "message over max_message_size (" + std::to_string(max_message_) + " bytes)");
    } else if (ec == ws::error::bad_frame_payload) {
      error = Error(errc::invalid_utf8, "text message is not valid UTF-8");
    } else if (ec.category() == make_error_code(ws::error::closed).category() ||
               ec == ws::condition::protocol_violation) {
      error = Error(errc::protocol_error, ec.message());
    } else {
      error = Error(errc::io_error, ec.message());
    }
    if (!ws_->is_open()) {
      last_close_ = CloseFrame{close_code::abnormal, {}};
      fail_locked();
    }
    return error;
  }

  // The connection is unusable from now on. Half-close (see teardown in layers.hpp);
  // the descriptor closes with the connection object.
  void fail_locked() {
    open_ = false;
    half_closed_ = true;
    if constexpr (H2) {
      if (open_ever_ && current_link()) bottom().shutdown_write();  // END_STREAM after what waits in the outbox
    } else if (fd_.load() >= 0) {
      lowest().shutdown_write();  // after what waits in the outbox
    }
  }

  // ------------------------------------------------------------ waiting without a thread

  // Completed by settle_waiters_locked, its timer, or abort(); each holds the
  // connection until it completes.
  using Waiter = wscengine::detail::ControlWaiter;

  void start_waiter_locked(std::shared_ptr<Waiter> w, std::chrono::milliseconds timeout) {
    waiters_.push_back(w);
    auto self = this->shared_from_this();
    net::post(strand_, [self, w, timeout] {
      {
        std::lock_guard lock(self->mutex_);
        if (w->finished) return;  // its completion, posted after this, finds no timer
      }
      w->timer.emplace(self->strand_);
      w->timer->expires_after(timeout);
      w->timer->async_wait([self, w](const error_code& ec) {
        if (ec) return;
        Completions unsent;
        {
          std::lock_guard lock(self->mutex_);
          if (w->close && !w->finished) {
            // No answer in time: the connection is dropped, and what is still queued
            // (a peer that does not read) is reported not sent.
            self->fail_locked();
            self->fail_sends_locked(
                Error::closed({close_code::abnormal, {}}, "not sent: the close handshake timed out"), unsent);
            self->kill_transport();
          }
          self->finish_waiter_locked(w, Error(errc::timeout, w->what));
        }
        run(unsent);
      });
    });
    watch_locked();
  }

  // Completes `w` once: its handler runs on the strand, never under the stream lock.
  void finish_waiter_locked(const std::shared_ptr<Waiter>& w, Error e) {
    if (w->finished) return;
    w->finished = true;
    std::erase(waiters_, w);
    if (w->close) fail_locked();
    net::post(strand_, [self = this->shared_from_this(), w, e = std::move(e)]() mutable {
      if (w->timer) w->timer->cancel();
      auto done = std::move(w->done);
      done(std::move(e));
      if (w->close) self->complete_wait({});
    });
  }

  // What the bytes read so far decide for the waiters.
  void settle_waiters_locked() {
    auto& layer = ws_->next_layer();
    for (auto& w : std::vector<std::shared_ptr<Waiter>>(waiters_)) {
      if (w->close) {
        if (layer.scanner().close_seen() || layer.transport_error())
          finish_waiter_locked(w, {});
        else if (layer.buffered() >= buffer_limit_locked())
          layer.discard(layer.buffered());  // nobody reads it any more
      } else if (layer.scanner().pongs() > w->pongs_before || layer.buffered() >= buffer_limit_locked()) {
        finish_waiter_locked(w, {});  // a pong, or data flowing: the peer is alive
      } else if (layer.transport_error()) {
        finish_waiter_locked(w,
                             Error::closed({close_code::abnormal, {}}, "connection dropped while waiting for a pong"));
      }
    }
  }

  // One wait on the socket for all waiters; what it brings is read into the scan
  // buffer (the reader takes the messages from there).
  void watch_locked() {
    if (watching_ || waiters_.empty()) return;
    watching_ = true;
    ws_->next_layer().low_water_for_waiting(part_bytes_missing_locked());
    auto self = this->shared_from_this();
    bottom().async_wait_readable([self](const error_code& ec) {
      std::lock_guard lock(self->mutex_);
      self->watching_ = false;
      if (ec) {
        for (auto& w : std::vector<std::shared_ptr<Waiter>>(self->waiters_))
          self->finish_waiter_locked(w,
                                     Error::closed({close_code::abnormal, {}}, "connection dropped: " + ec.message()));
        return;
      }
      self->pump_locked();               // brings the mark down: the reader's wait may be armed
      (void)self->wake_reader_locked();  // the reader's own wait may have lost these bytes to this pump
      self->watch_locked();
    });
  }

  // ------------------------------------------------------------ the send pipeline

  struct PendingWrite {
    MessageType type;
    std::string payload;
    DoneHandler done;
    MessagePart part = MessagePart::whole;  // a frame of a message sent in parts
  };
  struct Delivery {
    std::uint64_t end;  // the outbox's byte count once the message's last byte is in it
    DoneHandler done;
  };
  using Completions = std::vector<std::pair<DoneHandler, Error>>;
  static void run(Completions& ready) {
    for (auto& [done, e] : ready) done(std::move(e));
  }

  bool outbox_empty_locked() {
    auto& outbox = *bottom().outbox();
    std::lock_guard lock(outbox.mutex);
    return outbox.empty();
  }

  // Whether Beast will compress as the offer promised. The offer's
  // client_max_window_bits=N and client_no_context_takeover bind the client even when
  // the answer is silent on them (RFC 7692 §7.1.1.2, §7.1.2.2), but Beast (1.74)
  // compresses with what the answer says: a 15-bit window, its context kept. When
  // the answer is silent on one the offer made, this connection sends uncompressed
  // (the server inflates nothing; what it sends is still inflated here).
  bool beast_keeps_the_offer(std::string_view answer) const {
    std::string lower(answer);
    for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    const DeflateOptions& d = dial_->request.deflate;
    if (d.client_max_window_bits < 15 && lower.find("client_max_window_bits") == std::string::npos) return false;
    if (d.client_no_context_takeover && lower.find("client_no_context_takeover") == std::string::npos) return false;
    return true;
  }

  // A message, or a part of one, as one uncompressed frame (RSV1 clear), framed and
  // masked here (RFC 6455 §5.2, §5.3) and written beside Beast. Every frame when no
  // compression was negotiated: the same bytes Beast writes, without Beast's 4 KiB
  // write buffer, which it allocates at a connection's first write and keeps for the
  // connection's life (every idle connection that ever sent held one). With
  // compression, the messages that go uncompressed: Beast (Boost 1.74) has no
  // per-message switch, and RFC 7692 §6 lets any message go uncompressed; Beast's
  // deflate window never sees it, so its context stays what the server's inflater
  // holds.
  void write_uncompressed_locked(MessageType type, std::string_view payload, MessagePart part, error_code& ec) {
    std::array<std::uint8_t, 14> header{};
    std::size_t n = 0;
    const bool opens = part == MessagePart::whole || part == MessagePart::first;
    const bool ends = part == MessagePart::whole || part == MessagePart::last;
    header[n++] = static_cast<std::uint8_t>((ends ? 0x80 : 0x00) | (!opens                      ? 0x0
                                                                    : type == MessageType::text ? 0x1
                                                                                                : 0x2));
    if (payload.size() < 126) {
      header[n++] = static_cast<std::uint8_t>(0x80 | payload.size());
    } else if (payload.size() <= 0xFFFF) {
      header[n++] = 0x80 | 126;
      for (int shift = 8; shift >= 0; shift -= 8) header[n++] = static_cast<std::uint8_t>(payload.size() >> shift);
    } else {
      header[n++] = 0x80 | 127;
      for (int shift = 56; shift >= 0; shift -= 8)
        header[n++] = static_cast<std::uint8_t>(static_cast<std::uint64_t>(payload.size()) >> shift);
    }
    const std::uint32_t key =
        static_cast<std::uint32_t>(mask_keys_()) ^ (static_cast<std::uint32_t>(mask_keys_()) << 16);
    std::uint8_t mask[4];
    for (int i = 0; i < 4; ++i) mask[i] = header[n++] = static_cast<std::uint8_t>(key >> (8 * i));
    // Masked a chunk at a time into this thread's scratch (the socket layer takes every
    // byte it is given: what the kernel does not take waits in its outbox). A chunk is
    // a multiple of 4 bytes, so the mask lines up across chunks.
    thread_local std::vector<std::uint8_t> scratch;
    const std::size_t first = std::min(payload.size(), kMaskChunk);
    if (scratch.size() < first) scratch.resize(first);
    mask_bytes(scratch.data(), payload.data(), first, mask);
    std::array<net::const_buffer, 2> frame{net::buffer(header.data(), n), net::buffer(scratch.data(), first)};
    net::write(ws_->next_layer(), frame, ec);
    for (std::size_t at = first; !ec && at < payload.size(); at += kMaskChunk) {
      const std::size_t size = std::min(payload.size() - at, kMaskChunk);
      mask_bytes(scratch.data(), payload.data() + at, size, mask);
      net::write(ws_->next_layer(), net::buffer(scratch.data(), size), ec);
    }
  }
  static constexpr std::size_t kMaskChunk = 64 * 1024;
  static_assert(kMaskChunk % 4 == 0);

  // out[i] = in[i] ^ mask[i % 4], eight bytes at a time.
  static void mask_bytes(std::uint8_t* out, const char* in, std::size_t size, const std::uint8_t (&mask)[4]) {
    std::uint8_t eight[8];
    for (int i = 0; i < 8; ++i) eight[i] = mask[i & 3];
    std::uint64_t wide;
    std::memcpy(&wide, eight, 8);
    std::size_t i = 0;
    for (; i + 8 <= size; i += 8) {
      std::uint64_t word;
      std::memcpy(&word, in + i, 8);
      word ^= wide;
      std::memcpy(out + i, &word, 8);
    }
    for (; i < size; ++i) out[i] = static_cast<std::uint8_t>(in[i]) ^ mask[i & 3];
  }

  // Encodes one message into the socket layer. Returns its outcome when it is known
  // now (the kernel took it all, or the connection failed); else `done` waits in
  // deliveries_ for the outbox to drain past it.
  std::optional<Error> encode_locked(MessageType type, std::string_view payload, MessagePart part, DoneHandler& done) {
    error_code ec;
    if (part == MessagePart::whole ? payload.size() < plain_below_
                                   : plain_below_ == std::numeric_limits<std::size_t>::max()) {
      // Uncompressed: no compression, a small message, or an answer Beast would misread
      // (see above). With compression, a message in parts is compressed as Beast does
      // unless it may never be.
      write_uncompressed_locked(type, payload, part, ec);
    } else if (part == MessagePart::whole) {
      ws_->text(type == MessageType::text);
      ws_->write(net::buffer(payload.data(), payload.size()), ec);
    } else {
      if (part == MessagePart::first) ws_->text(type == MessageType::text);
      ws_->write_some(part == MessagePart::last, net::buffer(payload.data(), payload.size()), ec);
    }
    if (ec) {
      // A failed write may have sent part of a frame: the connection is unusable.
      fail_locked();
      return Error::closed(last_close_, "write failed: " + ec.message());
    }
    auto& outbox = *bottom().outbox();
    std::lock_guard lock(outbox.mutex);
    if (outbox.delivered >= outbox.queued) return Error{};
    deliveries_.push_back({outbox.queued, std::move(done)});
    arm_write_watch_locked();
    return std::nullopt;
  }
  void encode_next_locked(Completions& ready) {
    auto next = std::move(pending_.front());
    pending_.pop_front();
    if (auto now = encode_locked(next.type, next.payload, next.part, next.done))
      ready.emplace_back(std::move(next.done), *now);
  }

  // The kernel took bytes from the outbox, or the socket failed (on the strand).
  void on_outbox_progress() {
    Completions ready;
    {
      std::lock_guard lock(mutex_);
      std::uint64_t delivered = 0;
      error_code failure;
      {
        auto& outbox = *bottom().outbox();
        std::lock_guard box(outbox.mutex);
        delivered = outbox.delivered;
        failure = outbox.failure;
      }
      while (!deliveries_.empty() && deliveries_.front().end <= delivered) {
        ready.emplace_back(std::move(deliveries_.front().done), Error{});
        deliveries_.pop_front();
      }
      if (failure) {
        fail_locked();
        fail_sends_locked(Error::closed(last_close_, "write failed: " + failure.message()), ready);
      } else {
        // One message at a time while the kernel takes each at once.
        while (!pending_.empty() && open_ && outbox_empty_locked()) encode_next_locked(ready);
      }
    }
    run(ready);
  }

  // Every message not yet handed to the kernel fails with `why` (those the kernel took
  // meanwhile succeed: a message is never reported failed after it went out whole).
  void fail_sends_locked(const Error& why, Completions& ready) {
    std::uint64_t delivered = 0;
    // Deliveries exist only once the connection opened, after the dial built ws_ (and
    // published it with open_ under mutex_). Before that, ws_ may be under construction
    // by the dial on another thread (an abort() during the dial): do not look at it.
    if (!deliveries_.empty() && ws_) {
      auto& outbox = *bottom().outbox();
      std::lock_guard box(outbox.mutex);
      delivered = outbox.delivered;
    }
    for (auto& d : deliveries_) ready.emplace_back(std::move(d.done), d.end <= delivered ? Error{} : why);
    deliveries_.clear();
    for (auto& p : pending_) ready.emplace_back(std::move(p.done), why);
    pending_.clear();
  }

  // write_timeout: a timer on the strand while bytes wait in the outbox; it fails the
  // connection when the kernel took nothing for that long (the peer does not read).
  void arm_write_watch_locked() {
    if (write_watch_armed_ || write_timeout_.count() == 0) return;
    write_watch_armed_ = true;
    net::post(strand_, [self = this->shared_from_this()] { self->watch_writes(self->write_timeout_); });
  }
  void watch_writes(Clock::duration wait) {
    write_watch_.expires_after(wait);
    write_watch_.async_wait([weak = this->weak_from_this()](const error_code& ec) {
      if (auto self = weak.lock(); self && !ec) self->check_write_progress();
    });
  }
  void check_write_progress() {
    Clock::time_point last;
    {
      std::lock_guard lock(mutex_);
      auto& outbox = *bottom().outbox();
      std::lock_guard box(outbox.mutex);
      if (outbox.empty() || outbox.failure || aborted_) {
        write_watch_armed_ = false;
        return;
      }
      last = outbox.last_progress;
    }
    auto due = last + write_timeout_;
    if (auto now = Clock::now(); now < due) return watch_writes(due - now);
    fail_for(Error(errc::timeout,
                   "write made no progress for " + std::to_string(write_timeout_.count()) + " ms (peer not reading)"));
  }

  // This side gives up on the connection (a write that made no progress): dropped,
  // every send still waiting fails with `why`, and the reader gets `why` once before
  // the close (1006).
  void fail_for(Error why) {
    Completions ready;
    {
      std::lock_guard lock(mutex_);
      if (!failure_) failure_ = why;
      open_ = false;
      last_close_ = CloseFrame{close_code::abnormal, {}};
      fail_sends_locked(why, ready);
      for (auto& w : std::vector<std::shared_ptr<Waiter>>(waiters_))
        finish_waiter_locked(w, Error::closed(last_close_, "connection failed: " + failure_->message()));
    }
    kill_transport();
    run(ready);
    complete_wait({});
  }

  Error closed_error_locked() {
    if (failure_) {
      Error e = std::move(*failure_);
      failure_.reset();
      return e;
    }
    return Error::closed(last_close_, "connection is closed");
  }
  Error closed_error(std::string what) {
    std::lock_guard lock(mutex_);
    return Error::closed(last_close_, std::move(what));
  }

  net::io_context& io_;
  const BeastOptions options_;
  net::strand<net::io_context::executor_type> strand_;
  std::size_t next_endpoint_ = 0;                       // strand
  std::size_t refusals_ = 0;                            // strand
  std::string destination_;                             // host:port, proxy or socket, for errors
  std::chrono::steady_clock::time_point dial_started_;  // strand
  std::chrono::nanoseconds connect_duration_{0};        // strand
  // What only the dial needs (strand), from async_dial until the connection is open:
  // on the heap, so that an open connection does not keep its room (about 1.5 KB).
  struct DialState {
    explicit DialState(const net::strand<net::io_context::executor_type>& strand) : resolver(strand), timer(strand) {}
    net::ip::tcp::resolver resolver;
    net::steady_timer timer;  // DialRequest::timeout
    DialRequest request;
    std::vector<detail::Socket::endpoint_type> endpoints;  // where to connect, in order
    std::string connect_failures;                          // "address: why; …"
    std::string tunnel_request;                            // the CONNECT request while it is written
    std::string tunnel_reply;                              // a SOCKS5 answer while it is read
    boost::beast::flat_buffer tunnel_buffer;
    std::optional<http::response_parser<http::empty_body>> tunnel_answer;
    http::response<http::string_body> response;  // the upgrade's
  };
  std::unique_ptr<DialState> dial_;
  // TLS: the gate and binding the shared context's callbacks reach through the SSL
  // object, and the context, all declared before ws_ (whose SSL object refers to them).
  wscengine::detail::CertificateGate certificate_gate_;
  wscengine::detail::TlsBinding tls_binding_;
  std::shared_ptr<wscengine::detail::SharedTlsContext> tls_context_;
  std::optional<WsStream> ws_;
  std::size_t max_message_ = 0;
  std::size_t read_limit_ = 0;
  bool streamed_ = false;       // DialRequest::stream (set before the dial)
  std::size_t part_size_ = 0;   // its max_part_size
  std::size_t stream_max_ = 0;  // its max_message_size (the request is let go after the dial)
  std::size_t direct_max_ = 0;  // read_whole_frame_locked takes frames up to this
  bool mid_message_ = false;    // streamed: Beast is inside a message read in parts (mutex_)
  std::string text_tail_;       // streamed: the last bytes (at most 4) of the text message so far (mutex_)
  // Payloads this large that span reads skip the scan buffer (one copy instead of two).
  static constexpr std::size_t kDivertPayloadsFrom = 16 * 1024;
  // Messages Beast reads land here (mutex_); kept up to detail::kKeptMessageBuffer.
  boost::beast::flat_buffer read_buffer_;
  std::chrono::milliseconds write_timeout_{10'000};
  ControlFrameSink control_frames_;  // set at the dial; called under mutex_

  mutable std::mutex mutex_;                      // the WebSocket stream and its layers
  std::uint64_t consumed_ = 0;                    // read events taken (mutex_)
  std::vector<std::shared_ptr<Waiter>> waiters_;  // pings and a close waiting (mutex_)
  detail::Fifo<PendingWrite> pending_;            // messages not encoded yet (mutex_)
  detail::Fifo<Delivery> deliveries_;             // encoded, not all in the kernel (mutex_)
  bool write_watch_armed_ = false;                // (mutex_)
  net::steady_timer write_watch_;                 // write_timeout (strand_)
  bool watching_ = false;                         // a socket wait for them is armed (mutex_)
  std::optional<Error> failure_;                  // why this side dropped it, reported once (mutex_)
  std::uint64_t beast_messages_ = 0;              // messages Beast's own buffer began (mutex_)
  bool direct_reads_ = false;                     // read_whole_frame_locked may run (mutex_)
  // Whole messages shorter go out framed here, uncompressed: all of them (max) without
  // compression; deflate's min_size with it (set before the first write).
  std::size_t plain_below_ = 0;
  std::minstd_rand mask_keys_{std::random_device{}()};  // masks of the frames written here (mutex_)
  CloseFrame last_close_{close_code::abnormal, {}};     // (mutex_)

  std::mutex handler_mutex_;  // never held while calling out; taken on I/O threads
  Connection::DialHandler dial_done_;
  Connection::WaitHandler wait_done_;

  std::atomic<bool> open_{false};
  std::atomic<bool> aborted_{false};
  std::atomic<bool> stream_built_{false};  ///< async_dial has built ws_ (see cancel_dial_ops)
  std::atomic<bool> timed_out_{false};
  std::atomic<bool> half_closed_{false};
  std::atomic<int> fd_{-1};
  // HTTP/2 only: the stream's link (set on the strand by open_stream; read on the
  // strand, or elsewhere through current_link()), and the extended CONNECT's answer
  // until the dial reports it.
  mutable std::mutex link_mutex_;
  std::shared_ptr<detail::Http2Link> link_;
  int http2_status_ = 0;
  std::vector<Header> http2_headers_;
  std::atomic<bool> open_ever_{false};  // the stream was attached (fail_locked may end it)
};

/// Chooses the transport at dial time (the before-dial hook may change the URL), and
/// with Http2Mode::prefer falls back to the HTTP/1.1 upgrade when the origin turns
/// out to have no WebSocket over HTTP/2.
class BeastConnection final : public Connection {
 public:
  BeastConnection(net::io_context& io, BeastOptions options) : io_(io), options_(options) {}

  void async_dial(DialRequest request, DialHandler done) override {
    std::string refusal;
    const bool h2 = wants_http2(request, refusal);
    if (!refusal.empty()) return done(Error(errc::unsupported, refusal));
    std::shared_ptr<Connection> stream;
    {
      std::lock_guard lock(mutex_);
      if (stream_) return done(Error(errc::already_connected, "dial on a connection that was already dialled"));
      if (aborted_) return done(Error(errc::cancelled, "dial aborted"));
      stream_ = make_stream(h2, request.url.secure);
      stream = stream_;
    }
    if (!h2 || request.http2 != Http2Mode::prefer) return stream->async_dial(std::move(request), std::move(done));
    // prefer: a server found without RFC 8441 is dialled again over HTTP/1.1, within
    // what is left of the dial's time.
    auto started = Clock::now();
    auto again = std::make_shared<DialRequest>(request);
    stream->async_dial(std::move(request),
                       [this, again, started, done = std::move(done)](Result<HandshakeResponse> answer) mutable {
                         if (answer || !detail::http2_refused(*again, options_.http2_fallback_memory))
                           return done(std::move(answer));
                         auto spent = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started);
                         if (spent >= again->timeout) return done(std::move(answer));
                         again->timeout -= spent;
                         std::shared_ptr<Connection> fallback;
                         {
                           std::lock_guard lock(mutex_);
                           if (aborted_) return done(Error(errc::cancelled, "dial aborted"));
                           stream_ = make_stream(false, again->url.secure);
                           fallback = stream_;
                         }
                         fallback->async_dial(std::move(*again), std::move(done));
                       });
  }
  // After a successful dial the engine's calls happen after this write (through
  // the dial's completion), so reading stream_ without the mutex is ordered.
  Error try_read(InboundMessage& out) override { return stream_ ? stream_->try_read(out) : not_dialled(); }
  void async_wait_readable(WaitHandler done) override {
    if (stream_) return stream_->async_wait_readable(std::move(done));
    done(not_dialled());
  }
  void cancel_wait() override {
    if (auto s = get()) s->cancel_wait();
  }
  Error read(InboundMessage& out, std::chrono::milliseconds timeout) override {
    return stream_ ? stream_->read(out, timeout) : not_dialled();
  }
  Error write(MessageType type, std::string_view payload) override {
    return stream_ ? stream_->write(type, payload) : not_dialled();
  }
  Error ping(std::string_view payload, std::chrono::milliseconds timeout) override {
    return stream_ ? stream_->ping(payload, timeout) : not_dialled();
  }
  Error close(const CloseFrame& frame, std::chrono::milliseconds timeout) override {
    return stream_ ? stream_->close(frame, timeout) : not_dialled();
  }
  void async_write(MessageType type, std::string_view payload, DoneHandler done) override {
    if (stream_) return stream_->async_write(type, payload, std::move(done));
    done(not_dialled());
  }
  void async_write_part(MessageType type, std::string_view payload, MessagePart part, DoneHandler done) override {
    if (stream_) return stream_->async_write_part(type, payload, part, std::move(done));
    done(not_dialled());
  }
  void async_ping(std::string_view payload, std::chrono::milliseconds timeout, DoneHandler done) override {
    if (stream_) return stream_->async_ping(payload, timeout, std::move(done));
    done(not_dialled());
  }
  void async_close(const CloseFrame& frame, std::chrono::milliseconds timeout, DoneHandler done) override {
    if (stream_) return stream_->async_close(frame, timeout, std::move(done));
    done(not_dialled());
  }
  void abort() noexcept override {
    std::shared_ptr<Connection> s;
    {
      std::lock_guard lock(mutex_);
      aborted_ = true;
      s = stream_;
    }
    if (s) s->abort();
  }
  bool is_open() const noexcept override {
    auto s = get();
    return s && s->is_open();
  }
  Underlying underlying() noexcept override { return stream_ ? stream_->underlying() : Underlying{}; }

 private:
  static Error not_dialled() { return Error(errc::not_connected, "connection not dialled"); }

  // Whether this dial opens an HTTP/2 stream; `refusal` says why require cannot.
  bool wants_http2(const DialRequest& r, std::string& refusal) const {
    if (r.http2 == Http2Mode::off) return false;
    const char* why = !r.url.unix_socket.empty() ? "not over a Unix socket"
                      : r.proxy                  ? "not through a proxy"
                      : !r.url.secure && !r.http2_cleartext
                          ? "not over ws:// without http2_cleartext (HTTP/2 with prior knowledge)"
                          : nullptr;
    if (why) {
      if (r.http2 == Http2Mode::require) refusal = std::string("WebSocket over HTTP/2: ") + why;
      return false;
    }
    return r.http2 == Http2Mode::require || !detail::http2_refused(r, options_.http2_fallback_memory);
  }

  std::shared_ptr<Connection> make_stream(bool h2, bool secure) {
    if (h2) return std::make_shared<StreamImpl<Transport::http2>>(io_, options_);
    if (secure) return std::make_shared<StreamImpl<Transport::tls>>(io_, options_);
    return std::make_shared<StreamImpl<Transport::plain>>(io_, options_);
  }
  std::shared_ptr<Connection> get() const {
    std::lock_guard lock(mutex_);
    return stream_;
  }

  net::io_context& io_;
  const BeastOptions options_;
  mutable std::mutex mutex_;
  std::shared_ptr<Connection> stream_;
  bool aborted_ = false;
};

class BeastConnector final : public Connector {
 public:
  explicit BeastConnector(BeastOptions options) : options_(options) {}
  std::unique_ptr<Connection> make_connection(Runtime& runtime) override {
    return std::make_unique<BeastConnection>(io_context(runtime), options_);
  }
  std::string_view name() const noexcept override { return "beast"; }
  AdapterCapabilities capabilities() const noexcept override {
    return {.compression = true,
            .write_backpressure = true,
            .unix_sockets = true,
            .chosen_addresses = true,
            .polled_reads = true,
            .socks5_proxies = true,
            .streamed_reads = true,
            .streamed_writes = true,
            .http2 = true};
  }

 private:
  BeastOptions options_;
};

}  // namespace

std::shared_ptr<Connector> make_connector(BeastOptions options) { return std::make_shared<BeastConnector>(options); }

TlsStats tls_stats() {
  const auto& c = wscengine::detail::tls_counters();
  return {c.contexts_created.load(), c.handshakes_full.load(), c.handshakes_resumed.load()};
}

}  // namespace wscengine::beast
