// wscengine — HTTP/2 connections that carry WebSockets as streams (RFC 8441).
//
// One Session is one TCP (and TLS) connection with one nghttp2 client session. The
// engines of a Runtime that dial one origin with the same TLS options share it, each
// a stream, up to the server's SETTINGS_MAX_CONCURRENT_STREAMS; then another Session
// opens. All HTTP/2 work happens on the Session's strand under its mutex: reading
// the socket into nghttp2, and turning what the streams queued into frames
// (Session::flush, posted by any thread through Http2Link::flush). Handlers and
// notifications run after the mutex is let go, so that the connection code they call
// may take its own locks (which it holds while calling into the link: the lock order
// is connection, then session, then channel).
//
// Flow control: the connection's window is given back as soon as DATA arrives, and
// each stream's only as its WebSocket reads the bytes (no automatic window updates),
// so a stream whose engine does not read stops its own sender and nobody else.
#include "http2_session.hpp"

#include <wscengine/detail/client_tls.hpp>
#include <wscengine/detail/tls_contexts.hpp>
#include <wscengine/telemetry.hpp>
#include <wscengine/version.hpp>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>

#include <nghttp2/nghttp2.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cctype>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <optional>
#include <unordered_map>

namespace wscengine::beast::detail {
namespace {

namespace ssl = net::ssl;
using tcp = net::ip::tcp;

constexpr const char* kUserAgent = "wscengine/" WSCENGINE_VERSION_STRING " (Boost.Beast, HTTP/2)";
// What a stream that is not read may buffer: the sender stops when it is full.
constexpr std::int32_t kStreamWindow = 1 << 20;
// The connection's window: given back at once, so it never stops a stream.
constexpr std::int32_t kConnectionWindow = (1 << 30);
// nghttp2 frames at most this much ahead of the socket.
constexpr std::size_t kWireAhead = 256 * 1024;
// A connection without streams is closed after this long (a reconnect finds it still open).
constexpr auto kIdleClose = std::chrono::seconds(2);
// Streams a connection takes before the server's SETTINGS say how many it allows.
constexpr std::size_t kStreamsBeforeSettings = 100;

class Session;

/// One WebSocket's stream: its open, then its link. Fields other than the atomics
/// belong to its session (its mutex).
struct StreamOp final : Http2Link, std::enable_shared_from_this<StreamOp> {
  StreamOp() = default;
  void flush() override;
  void reset() noexcept override;

  // Weak: a session lives by its own pending operations (its socket's read, while it is
  // open), not by its streams, so that the streams it holds do not keep it alive in a
  // cycle when its io_context goes away with streams still open (their spans then end
  // as the session is destroyed). May change while the stream waits to be submitted.
  std::weak_ptr<Session> session;
  std::shared_ptr<Http2Channel> channel = std::make_shared<Http2Channel>();
  std::shared_ptr<const DialRequest> request;               // what a new connection for it is made from
  std::string origin;                                       // origin_key() of the request
  std::vector<std::pair<std::string, std::string>> fields;  // the extended CONNECT's
  Http2OpenHandler done;                                    // until answered
  std::int32_t id = -1;
  int status = 0;
  std::vector<Header> answer;
  bool deferred = false;           // the data provider waits for bytes
  bool closed = false;             // nghttp2 closed the stream
  bool counted = false;            // in Http2Stats::streams_open
  bool peer_ended = false;         // the server's END_STREAM came
  bool reset_here = false;         // this side sent RST_STREAM
  std::shared_ptr<Tracer> tracer;  // the engine's, for the stream's span
  std::shared_ptr<Metrics> metrics;
  TraceContext trace;          // the dial attempt's span: the stream span's parent
  std::unique_ptr<Span> span;  // "wscengine.http2.stream", while the stream is open
  std::atomic<bool> reset_asked{false};
  std::atomic<bool> dirty{false};
  std::mutex session_mutex;  // `session` while it may change
  std::shared_ptr<Session> current_session() {
    std::lock_guard lock(session_mutex);
    return session.lock();
  }
};

struct Pool {
  std::mutex mutex;
  std::map<std::string, std::vector<std::weak_ptr<Session>>> sessions;
  std::map<std::string, std::chrono::steady_clock::time_point> refused;
  beast::Http2Stats stats;
};
// Never destroyed: a session may end while the process exits.
Pool& pool() {
  static Pool* p = new Pool;
  return *p;
}

// Connections are shared by equal keys: the io_context, the origin, and everything
// that decides how the connection is made (TLS options, addresses, h2c). A verify
// callback cannot be compared: a connection made with one is not shared.
// The origin's part (what the memory of refusals is keyed by, for every runtime).
std::string origin_key(const DialRequest& r) {
  static std::atomic<std::uint64_t> unshared{0};
  const Url& u = r.url;
  const TlsOptions& t = r.tls;
  std::string key;
  auto add = [&key](const std::string& part) {
    key += '\x1f';
    key += part;
  };
  add(u.secure ? "https" : "http");
  add(u.host);
  add(std::to_string(u.port));
  for (const auto& a : r.addresses) add(a);
  add("|");
  if (u.secure) {
    add(t.verify_peer ? "verify" : "no-verify");
    add(t.ca_file);
    add(t.ca_pem);
    add(t.server_name);
    add(t.certificate_file);
    add(t.private_key_file);
    add(t.private_key_password);
    add(t.min_version == TlsOptions::Version::tls1_3 ? "1.3" : "1.2");
    for (const auto& p : t.pinned_public_keys) add(p);
    if (t.verify_callback) add("callback " + std::to_string(++unshared));
  }
  return key;
}
std::string pool_key(net::io_context& io, const std::string& origin) {
  return std::to_string(reinterpret_cast<std::uintptr_t>(&io)) + origin;
}

struct After {
  std::vector<std::pair<Http2OpenHandler, Result<Http2Opened>>> opens;
  std::vector<ReadableHandler> waits;
  std::vector<std::shared_ptr<Outbox>> progressed;
  std::vector<std::shared_ptr<StreamOp>> elsewhere;  // to place on another connection
  std::string refusal;                               // the server's SETTINGS have no extended CONNECT
  int streams_opened = 0;
  int streams_closed = 0;
  void run(const std::shared_ptr<Session>& from);
};

void place(net::io_context& io, const std::shared_ptr<StreamOp>& op, const std::string& key);

class Session final : public std::enable_shared_from_this<Session> {
 public:
  Session(net::io_context& io, std::string key, std::string origin, const DialRequest& r)
      : io_(io),
        key_(std::move(key)),
        origin_(std::move(origin)),
        strand_(net::make_strand(io)),
        resolver_(strand_),
        timer_(strand_),
        ping_timer_(strand_),
        url_(r.url),
        tls_(r.tls),
        tracer_(r.tracer),
        metrics_(r.metrics),
        addresses_(r.addresses),
        connect_timeout_(r.timeout) {}

  // Destroyed with streams open only when its io_context goes away first (a Runtime
  // destroyed while a close was still on its way): what it counted ends here, and the
  // spans of its streams and its own end as they are destroyed.
  ~Session() {
    std::uint64_t open_streams = 0;
    for (auto& [id, op] : streams_) open_streams += op->counted ? 1 : 0;
    if (open_streams != 0) {
      std::lock_guard lock(pool().mutex);
      pool().stats.streams_open -= open_streams;
    }
    forget();
    if (h2_) nghttp2_session_del(h2_);
  }

  const std::string& key() const { return key_; }
  net::io_context& io() { return io_; }

  /// Takes a stream if it has room (the pool's lock is held).
  bool try_admit(const std::shared_ptr<StreamOp>& op) {
    std::lock_guard lock(mutex_);
    if (!accepting_ || suspect_ || admitted_ >= limit_) return false;
    ++admitted_;
    idle_since_.reset();
    if (phase_ == Phase::ready) {
      ready_.push_back(op);  // submitted by the next flush
    } else {
      waiting_.push_back(op);
    }
    return true;
  }

  void start() {
    net::post(strand_, [self = shared_from_this()] { self->connect(); });
  }

  void schedule(const std::shared_ptr<StreamOp>& op) {
    if (!op->dirty.exchange(true)) {
      std::lock_guard lock(dirty_mutex_);
      dirty_.push_back(op);
    }
    if (!flush_posted_.exchange(true)) net::post(strand_, [self = shared_from_this()] { self->flush(); });
  }

 private:
  enum class Phase { connecting, ready, dead };

  // ------------------------------------------------------------ connecting

  void connect() {
    started_ = std::chrono::steady_clock::now();
    if (tracer_) {
      span_ = tracer_->start_span("wscengine.http2.connection", TraceContext{});
      if (span_) {
        span_->set_attribute("wscengine.url", (url_.secure ? "https://" : "http://") + url_.authority() + "/");
        span_->set_attribute("wscengine.http2.cleartext", static_cast<std::int64_t>(!url_.secure));
      }
    }
    timer_.expires_after(connect_timeout_);
    timer_.async_wait([weak = weak_from_this()](const error_code& ec) {
      if (auto self = weak.lock(); self && !ec && self->connecting())
        self->fail(Error(errc::timeout, "HTTP/2 connection to " + self->url_.authority() + " did not open in time"));
    });
    if (url_.secure) {
      // The process's shared context (see tls_contexts.hpp); ALPN, the gate and the
      // session are this connection's, on its SSL object.
      std::string failed;
      tls_context_ = wscengine::detail::process_tls_contexts().get(
          {tls_.ca_file, tls_.ca_pem, tls_.certificate_file, tls_.private_key_file, tls_.private_key_password,
           tls_.min_version == TlsOptions::Version::tls1_3},
          failed);
      if (!tls_context_) return fail(Error(errc::invalid_option, failed));
      if (failed = gate_.configure(tls_.verify_peer, tls_name(), tls_.pinned_public_keys, tls_.verify_callback);
          !failed.empty())
        return fail(Error(errc::invalid_option, failed));
      binding_.gate = gate_.active() ? &gate_ : nullptr;
      binding_.session_key = wscengine::detail::tls_session_key(tls_.session_resumption, url_.host, url_.port,
                                                                tls_name(), tls_.verify_peer, tls_.pinned_public_keys,
                                                                static_cast<bool>(tls_.verify_callback), "h2");
      tls_stream_.emplace(strand_, tls_context_->context());
      static const unsigned char kAlpn[] = "\x02h2\x08http/1.1";
      SSL_set_alpn_protos(tls_stream_->native_handle(), kAlpn, sizeof(kAlpn) - 1);
    } else {
      plain_.emplace(strand_);
    }
    if (addresses_.empty()) {
      resolver_.async_resolve(
          url_.host, std::to_string(url_.port),
          [self = shared_from_this()](const error_code& ec, tcp::resolver::results_type results) {
            if (ec) return self->fail(Error(errc::dns_failure, "resolving '" + self->url_.host + "': " + ec.message()));
            for (const auto& entry : results) self->endpoints_.push_back(entry.endpoint());
            self->connect_next();
          });
      return;
    }
    for (const auto& text : addresses_) {
      error_code bad;
      auto address = net::ip::make_address(text, bad);
      if (bad) return fail(Error(errc::invalid_option, "addresses: '" + text + "' is not an IP address"));
      endpoints_.emplace_back(address, url_.port);
    }
    connect_next();
  }

  tcp::socket& socket() { return tls_stream_ ? tls_stream_->next_layer() : *plain_; }
  std::string tls_name() const { return tls_.server_name.empty() ? url_.host : tls_.server_name; }
  bool connecting() {
    std::lock_guard lock(mutex_);
    return phase_ == Phase::connecting;
  }

  // After fail() (a timeout, every stream cancelled) the steps still under way stop.
  bool dead() {
    std::lock_guard lock(mutex_);
    return phase_ == Phase::dead;
  }

  void connect_next() {
    if (dead()) return;
    if (next_endpoint_ == endpoints_.size()) {
      std::string what = "connecting to " + url_.authority() + ": " + failures_;
      return fail(Error(
          refusals_ == endpoints_.size() && refusals_ > 0 ? errc::connection_refused : errc::connect_failed, what));
    }
    error_code ignored;
    socket().close(ignored);
    socket().async_connect(endpoints_[next_endpoint_], [self = shared_from_this()](const error_code& ec) {
      const auto& ep = self->endpoints_[self->next_endpoint_++];
      if (!ec) return self->on_connected();
      if (ec == net::error::connection_refused) ++self->refusals_;
      if (!self->failures_.empty()) self->failures_ += "; ";
      self->failures_ += ep.address().to_string() + ": " + ec.message();
      self->connect_next();
    });
  }

  void on_connected() {
    if (dead()) return;
    connect_duration_ = std::chrono::steady_clock::now() - started_;
    error_code ignored;
    socket().set_option(tcp::no_delay(true), ignored);
    if (!tls_stream_) return start_http2();
    std::string name = tls_name();
    error_code not_an_address;
    net::ip::make_address(name, not_an_address);
    if (not_an_address && !SSL_set_tlsext_host_name(tls_stream_->native_handle(), name.c_str()))
      return fail(Error(errc::tls_handshake_failed, "cannot set SNI name '" + name + "'"));
    if (tls_.verify_peer) {
      tls_stream_->set_verify_mode(ssl::verify_peer);
      tls_stream_->set_verify_callback(ssl::host_name_verification(name));
    } else {
      tls_stream_->set_verify_mode(gate_.active() ? ssl::verify_peer : ssl::verify_none);
    }
    tls_context_->prepare(tls_stream_->native_handle(), binding_);  // the gate, and the origin's session
    tls_stream_->async_handshake(ssl::stream_base::client, [self = shared_from_this()](const error_code& ec) {
      if (self->dead()) return;
      if (ec) {
        auto why = wscengine::detail::tls_handshake_failure(ec, self->tls_stream_->native_handle(),
                                                            self->tls_.verify_peer, self->gate_, self->url_.host);
        return self->fail(
            Error(why.verification ? errc::tls_verification_failed : errc::tls_handshake_failed, why.detail));
      }
      wscengine::detail::SharedTlsContext::count_handshake(self->tls_stream_->native_handle());
      const unsigned char* chosen = nullptr;
      unsigned int length = 0;
      SSL_get0_alpn_selected(self->tls_stream_->native_handle(), &chosen, &length);
      std::string protocol(reinterpret_cast<const char*>(chosen), length);
      if (protocol != "h2")
        return self->refuse("the server chose " + (protocol.empty() ? std::string("no protocol") : protocol) +
                            " by ALPN, not h2");
      self->start_http2();
    });
  }

  // ------------------------------------------------------------ HTTP/2

  void start_http2() {
    nghttp2_session_callbacks* callbacks = nullptr;
    nghttp2_session_callbacks_new(&callbacks);
    nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks, &Session::on_frame);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(callbacks, &Session::on_data);
    nghttp2_session_callbacks_set_on_stream_close_callback(callbacks, &Session::on_stream_close);
    nghttp2_session_callbacks_set_on_header_callback(callbacks, &Session::on_header);
    nghttp2_option* option = nullptr;
    nghttp2_option_new(&option);
    nghttp2_option_set_no_auto_window_update(option, 1);
    {
      std::lock_guard lock(mutex_);
      nghttp2_session_client_new2(&h2_, callbacks, this, option);
      nghttp2_settings_entry settings[] = {{NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
                                           {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, kStreamWindow}};
      nghttp2_submit_settings(h2_, NGHTTP2_FLAG_NONE, settings, std::size(settings));
      nghttp2_session_set_local_window_size(h2_, NGHTTP2_FLAG_NONE, 0, kConnectionWindow);
    }
    nghttp2_option_del(option);
    nghttp2_session_callbacks_del(callbacks);
    {
      std::lock_guard lock(pool().mutex);
      ++pool().stats.connections_opened;
      ++pool().stats.connections_open;
      counted_ = true;
    }
    if (metrics_) metrics_->http2_connections(1);
    if (span_) span_->add_event("settings sent");
    flush();
    read();
  }

  void read() {
    auto handler = [self = shared_from_this()](const error_code& ec, std::size_t n) { self->on_read(ec, n); };
    if (tls_stream_)
      tls_stream_->async_read_some(net::buffer(read_buffer_), std::move(handler));
    else
      plain_->async_read_some(net::buffer(read_buffer_), std::move(handler));
  }

  void on_read(const error_code& ec, std::size_t n) {
    if (ec)
      return fail(Error(errc::connect_failed, "HTTP/2 connection to " + url_.authority() + " lost: " + ec.message()));
    After after;
    Error fatal;
    {
      std::lock_guard lock(mutex_);
      if (phase_ == Phase::dead) return;
      auto used = nghttp2_session_mem_recv(h2_, reinterpret_cast<const std::uint8_t*>(read_buffer_.data()), n);
      if (used < 0) {
        fatal = Error(errc::protocol_error, std::string("HTTP/2: ") + nghttp2_strerror(static_cast<int>(used)));
      } else {
        submit_ready_locked();
        frame_locked();
      }
      after = std::exchange(after_, {});
    }
    after.run(shared_from_this());
    if (fatal) return fail(std::move(fatal));
    write();
    read();
  }

  // Runs on the strand: what the streams asked for (bytes to send, bytes read,
  // resets), then frames for the socket.
  void flush() {
    flush_posted_ = false;
    std::vector<std::shared_ptr<StreamOp>> dirty;
    {
      std::lock_guard lock(dirty_mutex_);
      dirty.swap(dirty_);
    }
    After after;
    {
      std::lock_guard lock(mutex_);
      for (auto& op : dirty) {
        op->dirty = false;
        serve_locked(op);
      }
      if (phase_ == Phase::ready) submit_ready_locked();
      if (h2_ && phase_ != Phase::dead) frame_locked();  // the preface and SETTINGS too
      after = std::exchange(after_, {});
    }
    after.run(shared_from_this());
    write();
  }

  void serve_locked(const std::shared_ptr<StreamOp>& op) {
    if (op->reset_asked) {
      if (op->done)
        after_.opens.emplace_back(std::exchange(op->done, nullptr),
                                  Error(errc::cancelled, "HTTP/2 stream open cancelled"));
      if (auto it = std::find(waiting_.begin(), waiting_.end(), op); it != waiting_.end()) {
        waiting_.erase(it);
        release_locked();
      } else if (auto ready = std::find(ready_.begin(), ready_.end(), op); ready != ready_.end()) {
        ready_.erase(ready);
        release_locked();
      } else if (op->id >= 0 && !op->closed && h2_) {
        nghttp2_submit_rst_stream(h2_, NGHTTP2_FLAG_NONE, op->id, NGHTTP2_CANCEL);
        op->reset_here = true;
        check_alive_locked();
      }
      return;
    }
    if (op->id < 0 || op->closed || !h2_) return;
    if (end_after_peer_locked(*op)) return;
    std::uint64_t consumed = 0;
    {
      std::lock_guard lock(op->channel->mutex);
      consumed = std::exchange(op->channel->to_consume, 0);
    }
    if (consumed) nghttp2_session_consume_stream(h2_, op->id, static_cast<std::size_t>(consumed));
    if (op->deferred) {
      bool more = false;
      {
        auto& box = *op->channel->outbox;
        std::lock_guard lock(box.mutex);
        more = !box.empty() || box.shut_after;
      }
      if (more) {
        op->deferred = false;
        nghttp2_session_resume_data(h2_, op->id);
      }
    }
  }

  void submit_ready_locked() {
    while (!ready_.empty()) {
      auto op = std::move(ready_.front());
      ready_.pop_front();
      std::vector<nghttp2_nv> nva;
      nva.reserve(op->fields.size());
      for (auto& [name, value] : op->fields)
        nva.push_back({reinterpret_cast<std::uint8_t*>(name.data()), reinterpret_cast<std::uint8_t*>(value.data()),
                       name.size(), value.size(), NGHTTP2_NV_FLAG_NONE});
      nghttp2_data_provider data;
      data.source.ptr = op.get();
      data.read_callback = &Session::read_data;
      const std::int32_t id = nghttp2_submit_request(h2_, nullptr, nva.data(), nva.size(), &data, op.get());
      if (id < 0) {
        release_locked();
        after_.opens.emplace_back(
            std::exchange(op->done, nullptr),
            Error(errc::handshake_failed, std::string("HTTP/2 request refused by nghttp2: ") + nghttp2_strerror(id)));
        continue;
      }
      op->id = id;
      // Only a stream not yet submitted may move to another connection: what it would
      // be opened with is not kept for the stream's life (an idle stream's memory).
      op->request.reset();
      std::vector<std::pair<std::string, std::string>>().swap(op->fields);
      streams_[id] = std::move(op);
    }
  }

  // Frames what nghttp2 has to send, up to kWireAhead bytes ahead of the socket.
  void frame_locked() {
    while (wire_.size() < kWireAhead) {
      const std::uint8_t* data = nullptr;
      auto n = nghttp2_session_mem_send(h2_, &data);
      if (n <= 0) break;  // nothing more (an error here is fatal and surfaces on the next read)
      wire_.append(reinterpret_cast<const char*>(data), static_cast<std::size_t>(n));
    }
  }

  // Sends what was framed, one write at a time (on the strand).
  void write() {
    if (writing_) return;
    {
      std::lock_guard lock(mutex_);
      if (wire_.empty() || phase_ == Phase::dead) return;
      in_flight_.swap(wire_);
      wire_.clear();
    }
    writing_ = true;
    auto handler = [self = shared_from_this()](const error_code& ec, std::size_t) {
      self->writing_ = false;
      self->in_flight_.clear();
      if (self->in_flight_.capacity() > 4 * kWireAhead) std::string().swap(self->in_flight_);
      if (ec)
        return self->fail(
            Error(errc::connect_failed, "HTTP/2 connection to " + self->url_.authority() + " lost: " + ec.message()));
      self->flush();  // the window or the socket may let more go now
    };
    if (tls_stream_)
      net::async_write(*tls_stream_, net::buffer(in_flight_), std::move(handler));
    else
      net::async_write(*plain_, net::buffer(in_flight_), std::move(handler));
  }

  // How a stream ends. The WebSocket's close handshake is over on this side when the
  // engine shuts its sending half (what TCP's FIN does over TCP). Its last bytes (a close
  // frame) go out as DATA, but the stream is not ended with END_STREAM: once the server
  // ended its own half (END_STREAM), the stream closes with RST_STREAM (NO_ERROR), and a
  // connection object let go before that resets it. A server may drop a stream as soon
  // as it ended its half, and RST_STREAM for a dropped stream is harmless, where DATA
  // (even an empty one carrying END_STREAM) is not to every server: Hypercorn 0.13 fails
  // the whole connection, every stream on it, on DATA for a stream it dropped. Bytes not
  // yet sent when the server ended its half are left unsent (nobody reads them).
  // True when the stream was ended here.
  bool end_after_peer_locked(StreamOp& op) {
    if (!op.peer_ended || op.closed || op.id < 0) return false;
    auto& box = *op.channel->outbox;
    {
      std::lock_guard lock(box.mutex);
      if (!box.shut_after) return false;
      box.bytes.clear();
      box.sent = 0;
      if (!box.failure) box.failure = net::error::eof;
    }
    after_.progressed.push_back(op.channel->outbox);
    nghttp2_submit_rst_stream(h2_, NGHTTP2_FLAG_NONE, op.id, NGHTTP2_NO_ERROR);
    op.reset_here = true;
    return true;
  }

  // A stream given up by its engine (a pong that did not come, a dial that timed out)
  // may mean the whole connection is dead. An HTTP/2 PING tells: until its ACK the
  // connection takes no new stream (a redial opens another), and without an ACK within
  // the connect timeout it fails, ending every stream it carries.
  void check_alive_locked() {
    if (ping_outstanding_ || phase_ != Phase::ready) return;
    ping_outstanding_ = true;
    suspect_ = true;
    nghttp2_submit_ping(h2_, NGHTTP2_FLAG_NONE, nullptr);
    ping_timer_.expires_after(connect_timeout_);
    ping_timer_.async_wait([weak = weak_from_this()](const error_code& ec) {
      auto self = weak.lock();
      if (!self || ec) return;
      {
        std::lock_guard lock(self->mutex_);
        if (!self->ping_outstanding_) return;
      }
      self->fail(Error(errc::timeout, "HTTP/2 connection to " + self->url_.authority() +
                                          " did not answer a PING within " +
                                          std::to_string(self->connect_timeout_.count()) + " ms"));
    });
  }

  // ------------------------------------------------------------ nghttp2 callbacks (mutex_ held)

  static Session& of(void* user) { return *static_cast<Session*>(user); }

  StreamOp* stream(std::int32_t id) {
    auto it = streams_.find(id);
    return it == streams_.end() ? nullptr : it->second.get();
  }

  static int on_header(nghttp2_session*, const nghttp2_frame* frame, const std::uint8_t* name, std::size_t namelen,
                       const std::uint8_t* value, std::size_t valuelen, std::uint8_t, void* user) {
    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_RESPONSE) return 0;
    auto* op = of(user).stream(frame->hd.stream_id);
    if (!op) return 0;
    std::string_view n(reinterpret_cast<const char*>(name), namelen);
    std::string_view v(reinterpret_cast<const char*>(value), valuelen);
    if (n == ":status") {
      op->status = std::atoi(std::string(v).c_str());
    } else if (!n.empty() && n.front() != ':') {
      op->answer.push_back({std::string(n), std::string(v)});
    }
    return 0;
  }

  static int on_frame(nghttp2_session*, const nghttp2_frame* frame, void* user) {
    auto& self = of(user);
    switch (frame->hd.type) {
      case NGHTTP2_SETTINGS:
        if ((frame->hd.flags & NGHTTP2_FLAG_ACK) == 0) self.on_settings_locked();
        break;
      case NGHTTP2_HEADERS:
        if (auto* op = self.stream(frame->hd.stream_id); op && frame->headers.cat == NGHTTP2_HCAT_RESPONSE)
          self.on_answer_locked(*op);
        break;
      case NGHTTP2_PING:
        if ((frame->hd.flags & NGHTTP2_FLAG_ACK) != 0) {
          self.ping_outstanding_ = false;
          self.suspect_ = false;
          self.ping_timer_.cancel();
        }
        break;
      case NGHTTP2_GOAWAY:
        // The streams it still serves go on; those not submitted yet go elsewhere.
        self.accepting_ = false;
        for (auto* list : {&self.waiting_, &self.ready_}) {
          for (auto& op : *list) {
            self.after_.elsewhere.push_back(std::move(op));
            --self.admitted_;
          }
          list->clear();
        }
        break;
      default:
        break;
    }
    if ((frame->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0 &&
        (frame->hd.type == NGHTTP2_DATA || frame->hd.type == NGHTTP2_HEADERS)) {
      if (auto* op = self.stream(frame->hd.stream_id)) {
        op->peer_ended = true;
        self.end_inbound_locked(*op, net::error::eof);
        self.end_after_peer_locked(*op);
      }
    }
    return 0;
  }

  void on_settings_locked() {
    limit_ = std::min<std::size_t>(nghttp2_session_get_remote_settings(h2_, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS),
                                   std::numeric_limits<std::size_t>::max());
    if (phase_ != Phase::connecting) return;
    if (nghttp2_session_get_remote_settings(h2_, NGHTTP2_SETTINGS_ENABLE_CONNECT_PROTOCOL) == 0) {
      after_.refusal = "its SETTINGS do not enable the extended CONNECT (SETTINGS_ENABLE_CONNECT_PROTOCOL)";
      return;
    }
    phase_ = Phase::ready;
    timer_.cancel();
    // Streams beyond the server's limit go to another connection.
    while (waiting_.size() > limit_) {
      after_.elsewhere.push_back(std::move(waiting_.back()));
      waiting_.pop_back();
      --admitted_;
    }
    ready_.insert(ready_.end(), waiting_.begin(), waiting_.end());
    waiting_.clear();
  }

  void on_answer_locked(StreamOp& op) {
    if (!op.done) return;
    if (op.status / 100 == 2) {
      op.counted = true;
      after_.streams_opened++;
      if (op.metrics) op.metrics->http2_streams(streams_.size());
      if (op.tracer) {
        op.span =
            op.tracer->start_span("wscengine.http2.stream", op.trace, {}, span_ ? span_->context() : TraceContext{});
        if (op.span) op.span->set_attribute("wscengine.http2.stream_id", static_cast<std::int64_t>(op.id));
      }
      Http2Opened opened{op.channel, op.status, std::move(op.answer), connect_duration_};
      after_.opens.emplace_back(std::exchange(op.done, nullptr), std::move(opened));
      return;
    }
    Error refused =
        Error::http(op.status, "extended CONNECT " + url_.to_string() + " answered " + std::to_string(op.status));
    refused.http_headers = std::move(op.answer);
    after_.opens.emplace_back(std::exchange(op.done, nullptr), std::move(refused));
    nghttp2_submit_rst_stream(h2_, NGHTTP2_FLAG_NONE, op.id, NGHTTP2_CANCEL);
    op.reset_here = true;
  }

  static int on_data(nghttp2_session* h2, std::uint8_t, std::int32_t id, const std::uint8_t* data, std::size_t len,
                     void* user) {
    auto& self = of(user);
    nghttp2_session_consume_connection(h2, len);
    auto* op = self.stream(id);
    if (!op || op->done) {  // nobody reads it: give the window back
      nghttp2_session_consume_stream(h2, id, len);
      return 0;
    }
    std::lock_guard lock(op->channel->mutex);
    op->channel->in.append(reinterpret_cast<const char*>(data), len);
    for (auto& w : op->channel->take_waits_locked()) self.after_.waits.push_back(std::move(w));
    return 0;
  }

  void end_inbound_locked(StreamOp& op, error_code why) {
    std::lock_guard lock(op.channel->mutex);
    if (!op.channel->in_end) op.channel->in_end = why;
    for (auto& w : op.channel->take_waits_locked()) after_.waits.push_back(std::move(w));
  }

  static int on_stream_close(nghttp2_session*, std::int32_t id, std::uint32_t code, void* user) {
    auto& self = of(user);
    auto it = self.streams_.find(id);
    if (it == self.streams_.end()) return 0;
    auto op = std::move(it->second);
    self.streams_.erase(it);
    op->closed = true;
    if (op->counted) self.after_.streams_closed++;
    // nghttp2 reports the code of a reset sent from here too: only the server's is news.
    Error why;
    if (code != NGHTTP2_NO_ERROR && !op->reset_here)
      why = Error(op->done ? errc::handshake_failed : errc::io_error,
                  std::string("the server reset the stream (") + nghttp2_http2_strerror(code) + ")");
    self.close_stream_locked(*op, why);
    self.release_locked();
    return 0;
  }

  // The stream is over: an open still waiting fails with `why`; the channel's reader
  // sees the end (a reset if `why`), its writer a failure.
  void close_stream_locked(StreamOp& op, const Error& why) {
    if (op.span) {
      if (why) op.span->set_error(why);
      op.span->end();
      op.span.reset();
    }
    if (op.done) {
      after_.opens.emplace_back(std::exchange(op.done, nullptr),
                                why ? why : Error(errc::handshake_failed, "the server closed the stream unanswered"));
    }
    end_inbound_locked(op, why ? error_code(net::error::connection_reset) : error_code(net::error::eof));
    auto& box = *op.channel->outbox;
    std::lock_guard lock(box.mutex);
    if (!box.failure) box.failure = net::error::connection_reset;
    after_.progressed.push_back(op.channel->outbox);
  }

  static ssize_t read_data(nghttp2_session*, std::int32_t, std::uint8_t* buf, std::size_t length, std::uint32_t* flags,
                           nghttp2_data_source* source, void* user) {
    auto& self = of(user);
    auto* op = static_cast<StreamOp*>(source->ptr);
    auto& box = *op->channel->outbox;
    std::lock_guard lock(box.mutex);
    const std::size_t n = std::min(length, box.bytes.size() - box.sent);
    std::memcpy(buf, box.bytes.data() + box.sent, n);
    box.sent += n;
    box.delivered += n;
    if (n != 0) {
      box.last_progress = Clock::now();
      self.after_.progressed.push_back(op->channel->outbox);
    }
    (void)flags;  // never END_STREAM: see end_after_peer_locked
    if (box.empty()) {
      box.bytes.clear();
      box.sent = 0;
      if (box.bytes.capacity() > (1u << 20)) std::string().swap(box.bytes);
      if (n == 0) {
        op->deferred = true;
        return NGHTTP2_ERR_DEFERRED;
      }
    }
    return static_cast<ssize_t>(n);
  }

  // ------------------------------------------------------------ the end

  // One stream fewer: a connection left without any closes after kIdleClose.
  void release_locked() {
    if (admitted_ > 0) --admitted_;
    if (admitted_ != 0 || phase_ == Phase::dead) return;
    idle_since_ = Clock::now();
    timer_.expires_after(kIdleClose);
    timer_.async_wait([weak = weak_from_this()](const error_code& ec) {
      auto self = weak.lock();
      if (!self || ec) return;
      {
        std::lock_guard lock(self->mutex_);
        if (self->admitted_ != 0 || !self->idle_since_) return;
        self->accepting_ = false;
      }
      self->fail(Error(errc::closed, "HTTP/2 connection closed: idle"));
    });
  }

  // The server does not do WebSocket over HTTP/2: every open waiting fails, and the
  // origin is remembered (Http2Mode::prefer then goes to HTTP/1.1 at once).
  void refuse(std::string why) {
    {
      std::lock_guard lock(pool().mutex);
      pool().refused[origin_] = std::chrono::steady_clock::now();
      ++pool().stats.refusals;
    }
    fail(Error(errc::handshake_failed, "no WebSocket over HTTP/2 at " + url_.authority() + ": " + why));
  }

  // The connection is over: every stream ends, every open waiting fails with `why`.
  void fail(Error why) {
    After after;
    {
      std::lock_guard lock(mutex_);
      if (phase_ == Phase::dead) return;
      phase_ = Phase::dead;
      accepting_ = false;
      for (auto* list : {&waiting_, &ready_})
        for (auto& op : *list)
          if (op->done) after_.opens.emplace_back(std::exchange(op->done, nullptr), why);
      waiting_.clear();
      ready_.clear();
      for (auto& [id, op] : streams_) {
        op->closed = true;
        if (op->counted) after_.streams_closed++;
        close_stream_locked(*op, why ? why : Error(errc::closed, "HTTP/2 connection closed"));
      }
      streams_.clear();
      admitted_ = 0;
      after = std::exchange(after_, {});
    }
    forget();
    timer_.cancel();
    ping_timer_.cancel();
    if (span_) {
      if (!why.is(errc::closed)) span_->set_error(why);  // an idle close is no failure
      span_->end();
    }
    resolver_.cancel();
    error_code ignored;
    if (plain_ || tls_stream_) {
      socket().shutdown(tcp::socket::shutdown_both, ignored);
      socket().close(ignored);
    }
    after.run(shared_from_this());
  }

  void forget() {
    const std::weak_ptr<Session> self = weak_from_this();
    std::lock_guard lock(pool().mutex);
    if (counted_) {
      --pool().stats.connections_open;
      counted_ = false;
      if (metrics_) metrics_->http2_connections(-1);
    }
    auto it = pool().sessions.find(key_);
    if (it == pool().sessions.end()) return;
    // Compared by owner, never locked: a lock taken here could be the last owner and
    // run this session's destructor under the pool's lock.
    std::erase_if(it->second, [&self](const std::weak_ptr<Session>& w) {
      return w.expired() || (!w.owner_before(self) && !self.owner_before(w));
    });
    if (it->second.empty()) pool().sessions.erase(it);
  }

  net::io_context& io_;
  const std::string key_;     // the pool's: this io_context and origin_
  const std::string origin_;  // origin_key()
  net::strand<net::io_context::executor_type> strand_;
  tcp::resolver resolver_;
  net::steady_timer timer_;       // the connect timeout, then the idle close
  net::steady_timer ping_timer_;  // a PING's answer (check_alive_locked)
  // TLS: this connection's context (the process's for its settings), and what its callbacks reach
  // through the SSL object, all before the stream that refers to them.
  std::shared_ptr<wscengine::detail::SharedTlsContext> tls_context_;
  wscengine::detail::CertificateGate gate_;
  wscengine::detail::TlsBinding binding_;
  std::optional<ssl::stream<tcp::socket>> tls_stream_;
  std::optional<tcp::socket> plain_;
  const Url url_;
  const TlsOptions tls_;
  // Telemetry: the first dial's tracer and metrics; the connection's span, a root that
  // the streams' spans link to (docs/observability.md).
  const std::shared_ptr<Tracer> tracer_;
  const std::shared_ptr<Metrics> metrics_;
  std::unique_ptr<Span> span_;  // (strand; mutex_ once streams exist)
  const std::vector<std::string> addresses_;
  const std::chrono::milliseconds connect_timeout_;
  std::vector<tcp::endpoint> endpoints_;
  std::size_t next_endpoint_ = 0;
  std::size_t refusals_ = 0;
  std::string failures_;
  std::chrono::steady_clock::time_point started_;
  std::chrono::nanoseconds connect_duration_{0};
  std::array<char, 16 * 1024> read_buffer_{};
  std::string in_flight_;  // the bytes the socket is writing (strand)
  bool writing_ = false;   // (strand)
  bool counted_ = false;   // in pool().open (the pool's mutex)

  std::mutex mutex_;  // nghttp2 and everything below
  nghttp2_session* h2_ = nullptr;
  Phase phase_ = Phase::connecting;
  bool accepting_ = true;
  bool suspect_ = false;           // a PING checks the connection: no new streams until its ACK
  bool ping_outstanding_ = false;  //
  std::size_t admitted_ = 0;
  std::size_t limit_ = kStreamsBeforeSettings;
  std::optional<Clock::time_point> idle_since_;
  std::deque<std::shared_ptr<StreamOp>> waiting_;  // for the SETTINGS
  std::deque<std::shared_ptr<StreamOp>> ready_;    // to submit
  std::unordered_map<std::int32_t, std::shared_ptr<StreamOp>> streams_;
  std::string wire_;  // framed, not yet written
  After after_;

  std::mutex dirty_mutex_;
  std::vector<std::shared_ptr<StreamOp>> dirty_;
  std::atomic<bool> flush_posted_{false};

  friend struct After;
};

void After::run(const std::shared_ptr<Session>& from) {
  if (streams_opened != 0 || streams_closed != 0) {
    std::lock_guard lock(pool().mutex);
    pool().stats.streams_opened += static_cast<std::uint64_t>(streams_opened);
    pool().stats.streams_open += static_cast<std::uint64_t>(streams_opened);
    pool().stats.streams_open -= static_cast<std::uint64_t>(streams_closed);
  }
  for (auto& box : progressed)
    if (box->on_progress) box->on_progress();
  for (auto& w : waits) w(error_code{});
  for (auto& [done, result] : opens)
    if (done) done(std::move(result));
  for (auto& op : elsewhere) place(from->io(), op, from->key());
  if (!refusal.empty()) from->refuse(std::move(refusal));
}

void StreamOp::flush() {
  if (auto s = current_session()) s->schedule(shared_from_this());
}

void StreamOp::reset() noexcept {
  reset_asked = true;
  flush();
}

// Puts `op` on a connection with room for it, opening one if none has.
void place(net::io_context& io, const std::shared_ptr<StreamOp>& op, const std::string& key) {
  std::shared_ptr<Session> chosen;
  bool fresh = false;
  std::vector<std::shared_ptr<Session>> looked_at;  // let go after the pool's lock (see forget)
  {
    std::lock_guard lock(pool().mutex);
    auto& list = pool().sessions[key];
    for (auto& weak : list) {
      auto s = weak.lock();
      if (!s) continue;
      looked_at.push_back(s);
      if (s->try_admit(op)) {
        chosen = std::move(s);
        break;
      }
    }
    if (!chosen) {
      ++pool().stats.connections_dialled;
      chosen = std::make_shared<Session>(io, key, op->origin, *op->request);
      chosen->try_admit(op);
      list.push_back(chosen);
      fresh = true;
    }
  }
  {
    std::lock_guard lock(op->session_mutex);
    op->session = chosen;
  }
  if (fresh)
    chosen->start();
  else
    chosen->schedule(op);  // a ready connection submits it on its next flush
}

// The extended CONNECT's fields (RFC 8441 §4): pseudo-headers, then the WebSocket's
// own, then the user's (names in lower case; HTTP/1.1's connection-specific fields
// have no meaning in HTTP/2 and are left out, RFC 9113 §8.2.2).
std::vector<std::pair<std::string, std::string>> connect_fields(const DialRequest& r, const std::string& extensions) {
  std::vector<std::pair<std::string, std::string>> f = {
      {":method", "CONNECT"},    {":protocol", "websocket"},          {":scheme", r.url.secure ? "https" : "http"},
      {":path", r.url.target},   {":authority", r.url.host_header()}, {"sec-websocket-version", "13"},
      {"user-agent", kUserAgent}};
  if (!r.subprotocols.empty()) {
    std::string joined;
    for (const auto& p : r.subprotocols) {
      if (!joined.empty()) joined += ", ";
      joined += p;
    }
    f.emplace_back("sec-websocket-protocol", joined);
  }
  if (!extensions.empty()) f.emplace_back("sec-websocket-extensions", extensions);
  static constexpr std::string_view kLeftOut[] = {"connection",           "upgrade", "keep-alive", "proxy-connection",
                                                  "transfer-encoding",    "te",      "host",       "sec-websocket-key",
                                                  "sec-websocket-version"};
  for (const auto& h : r.headers) {
    std::string name = h.name;
    for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (std::find(std::begin(kLeftOut), std::end(kLeftOut), name) != std::end(kLeftOut)) continue;
    if (name == "user-agent") {
      f[6].second = h.value;
      continue;
    }
    f.emplace_back(std::move(name), h.value);
  }
  return f;
}

}  // namespace

std::shared_ptr<Http2Link> open_http2_stream(net::io_context& io, const DialRequest& request,
                                             const std::string& extensions, Http2OpenHandler done) {
  auto op = std::make_shared<StreamOp>();
  op->request = std::make_shared<const DialRequest>(request);
  op->fields = connect_fields(request, extensions);
  op->done = std::move(done);
  op->origin = origin_key(request);
  op->tracer = request.tracer;
  op->metrics = request.metrics;
  op->trace = request.trace;
  place(io, op, pool_key(io, op->origin));
  return op;
}

bool http2_refused(const DialRequest& request, std::chrono::seconds memory) {
  const auto key = origin_key(request);
  std::lock_guard lock(pool().mutex);
  auto it = pool().refused.find(key);
  if (it == pool().refused.end()) return false;
  if (std::chrono::steady_clock::now() - it->second < memory) return true;
  pool().refused.erase(it);
  return false;
}

}  // namespace wscengine::beast::detail

namespace wscengine::beast {

Http2Stats http2_stats() {
  std::lock_guard lock(detail::pool().mutex);
  return detail::pool().stats;
}

}  // namespace wscengine::beast
