// The websocketpp adapter: wscengine::Connection over the bridge to websocketpp.
//
// websocketpp is push-based: it reads the socket itself and hands whole messages to
// a handler on an I/O thread. This adapter queues them for the engine's pull-based
// reads (try_read / async_wait_readable / read) and pauses websocketpp's socket
// reads while the queue holds `read_ahead_limit` bytes, so that a paused or slow
// engine applies back-pressure to the peer instead of buffering without limit.
#include <wscengine/asio.hpp>
#include <wscengine/detail/control_waiter.hpp>
#include <wscengine/version.hpp>
#include <wscengine/websocketpp.hpp>

#include <boost/asio/ip/address.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>

#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <future>
#include <mutex>
#include <optional>

#include "wspp_bridge.hpp"

namespace wscengine::websocketpp {
namespace {

namespace net = boost::asio;
namespace bridge = websocketpp_adapter::bridge;

class State;
// The connection whose on_message is waking its reader inline on this thread: a wait
// that reader arms meanwhile is woken by a post (see State::on_message).
thread_local const State* t_delivering = nullptr;

constexpr const char* kUserAgent = "wscengine/" WSCENGINE_VERSION_STRING " (websocketpp)";
constexpr const char* kMarkerPrefix = "wscengine-ack-";

bool is_address(const std::string& host) {
  boost::system::error_code ec;
  net::ip::make_address(host, ec);
  return !ec;
}

Error dial_error(const bridge::DialOutcome& o, const DialRequest& dial) {
  const Url& url = dial.url;
  std::string where = dial.proxy ? "proxy " + dial.proxy->to_string() : url.authority();
  std::string request = "GET " + url.to_string();
  switch (o.failure) {
    case bridge::Failure::none:
      return {};
    case bridge::Failure::invalid_url:
      return Error(errc::invalid_url, o.detail);
    case bridge::Failure::invalid_option:
      return Error(errc::invalid_option, o.detail);
    case bridge::Failure::dns:
      return Error(errc::dns_failure,
                   (dial.proxy ? "resolving proxy '" + dial.proxy->host : "resolving '" + url.host) + "': " + o.detail);
    case bridge::Failure::proxy: {
      Error refused(errc::proxy_failed, where + " " + o.detail);
      refused.http_status = o.status;
      return refused;
    }
    case bridge::Failure::refused:
      return Error(errc::connection_refused, "connecting to " + where);
    case bridge::Failure::connect:
      return Error(errc::connect_failed, "connecting to " + where + ": " + o.detail);
    case bridge::Failure::tls_handshake:
      return Error(errc::tls_handshake_failed, "with " + url.host + ": " + o.detail);
    case bridge::Failure::tls_verification:
      return Error(errc::tls_verification_failed, "server certificate of " + url.host + ": " + o.detail);
    case bridge::Failure::http_status: {
      Error refused = Error::http(o.status, request + " answered \"" + o.detail + "\"");
      for (const auto& [name, value] : o.headers) refused.http_headers.push_back({name, value});
      return refused;
    }
    case bridge::Failure::handshake:
      return Error(errc::handshake_failed, request + ": " + o.detail);
    case bridge::Failure::timeout:
      return Error(errc::timeout, "opening handshake did not finish in time (" + o.detail + ")");
    case bridge::Failure::io:
      break;
  }
  return Error(errc::io_error, request + ": " + o.detail);
}

// websocketpp 0.8 checks the UTF-8 of every fragment but not that a fragmented text
// message ends between code points: true when `text` stops inside one.
bool ends_inside_code_point(std::string_view text) {
  std::size_t i = text.size(), continuation = 0;
  while (i > 0 && continuation < 4 && (static_cast<unsigned char>(text[i - 1]) & 0xc0) == 0x80) {
    --i;
    ++continuation;
  }
  if (i == 0) return continuation != 0;
  const auto lead = static_cast<unsigned char>(text[i - 1]);
  const std::size_t needed = lead >= 0xf0 ? 3 : lead >= 0xe0 ? 2 : lead >= 0xc0 ? 1 : 0;
  return continuation < needed;
}

/// The connection's state, shared with the library's handlers (which hold it weakly).
class State final : public std::enable_shared_from_this<State> {
 public:
  State(net::io_context& io, WebsocketppOptions options)
      : io_(io), options_(options), strand_(net::make_strand(io)), timer_(strand_), write_watch_(strand_) {}

  // Sends still waiting for their acknowledgement get their outcome (nobody else can).
  ~State() {
    for (auto& [end, done] : unacked_writes_) done(Error(errc::cancelled, "not acknowledged: connection released"));
  }

  // ------------------------------------------------------------ dial

  void async_dial(DialRequest request, Connection::DialHandler done) {
    std::shared_ptr<bridge::Bridge> b;
    bridge::DialParams params;
    {
      std::lock_guard lock(mutex_);
      if (dialled_) return done(Error(errc::already_connected, "dial on a connection that was already dialled"));
      if (aborted_) return done(Error(errc::cancelled, "dial aborted"));
      dialled_ = true;
      if (request.offer_compression) {
        return done(Error(errc::unsupported,
                          "the websocketpp adapter cannot offer permessage-deflate: websocketpp 0.8 does not "
                          "negotiate extensions as a client (turn offer_compression off or use the Beast adapter)"));
      }
      if (request.stream.enabled) {
        return done(Error(errc::unsupported,
                          "the websocketpp adapter cannot stream messages in parts: websocketpp 0.8 hands over "
                          "only whole messages (turn stream.enabled off or use the Beast adapter)"));
      }
      if (!request.url.unix_socket.empty()) {
        return done(Error(errc::unsupported,
                          "the websocketpp adapter cannot connect to a Unix socket: websocketpp 0.8's transport "
                          "is TCP only (use the Beast adapter)"));
      }
      if (request.proxy && request.proxy->protocol != HttpProxy::Protocol::http) {
        return done(Error(errc::unsupported, "the websocketpp adapter cannot use the SOCKS5 proxy " +
                                                 request.proxy->to_string() +
                                                 ": websocketpp 0.8 tunnels only through HTTP CONNECT proxies "
                                                 "(use an http:// proxy or the Beast adapter)"));
      }
      if (!request.addresses.empty() && !request.proxy) {
        return done(Error(errc::unsupported,
                          "the websocketpp adapter cannot connect to chosen addresses: websocketpp sends the "
                          "address it dials as the Host header (use DNS or the Beast adapter)"));
      }
      request_ = std::move(request);
      dial_done_ = std::move(done);
      bridge_ = bridge::make_bridge(io_, request_.url.secure);
      b = bridge_;
      params.uri = request_.url.to_string();  // ws[s]://[host]:port/target (a Unix socket was refused above)
      params.headers.reserve(request_.headers.size());
      for (const auto& h : request_.headers) params.headers.emplace_back(h.name, h.value);
      params.subprotocols = request_.subprotocols;
      params.max_message_size = request_.max_message_size;
      params.verify_peer = request_.tls.verify_peer;
      params.ca_file = request_.tls.ca_file;
      params.ca_pem = std::move(request_.tls.ca_pem);  // the bridge lets it go once its context is built
      params.pinned_public_keys = request_.tls.pinned_public_keys;
      params.verify_callback = request_.tls.verify_callback;
      params.certificate_file = request_.tls.certificate_file;
      params.private_key_file = request_.tls.private_key_file;
      params.private_key_password = request_.tls.private_key_password;
      params.tls13_only = request_.tls.min_version == TlsOptions::Version::tls1_3;
      params.tls_name = request_.tls.server_name.empty() ? request_.url.host : request_.tls.server_name;
      params.session_resumption = request_.tls.session_resumption;
      params.origin_host = request_.url.host;
      params.origin_port = request_.url.port;
      params.send_sni = !is_address(params.tls_name);  // RFC 6066 §3: host names only
      params.handshake_timeout_ms = static_cast<long>(request_.timeout.count());
      params.user_agent = kUserAgent;
      if (request_.proxy) {
        params.proxy_uri = request_.proxy->to_string();
        params.proxy_username = request_.proxy->username;
        params.proxy_password = request_.proxy->password;
      }
    }
    std::weak_ptr<State> weak = shared_from_this();
    net::post(strand_, [weak, timeout = request_.timeout] {
      auto self = weak.lock();
      if (!self) return;
      self->timer_.expires_after(timeout);
      self->timer_.async_wait([weak](const boost::system::error_code& ec) {
        if (auto self = weak.lock(); self && !ec) self->on_dial_timeout();
      });
    });
    bridge::Events events;
    events.dialled = [weak](bridge::DialOutcome o) {
      if (auto self = weak.lock()) self->on_dialled(std::move(o));
    };
    events.message = [weak](bool text, std::string&& payload) {
      auto self = weak.lock();
      return self ? self->on_message(text, std::move(payload)) : true;
    };
    events.pong = [weak](std::string&& payload) {
      if (auto self = weak.lock()) self->on_pong(payload);
    };
    events.answer_ping = [weak](const std::string& payload) {
      auto self = weak.lock();
      if (!self) return false;
      const bool answer = self->is_open();
      if (const auto& report = self->request_.control_frames) {
        report(ControlFrameKind::ping_received, payload);
        // websocketpp queues the pong as this handler returns true, before it reads on.
        if (answer) report(ControlFrameKind::pong_sent, payload);
      }
      return answer;
    };
    events.ended = [weak](bridge::Ending e) {
      if (auto self = weak.lock()) self->on_ended(std::move(e));
    };
    auto immediate = b->dial(std::move(params), std::move(events));
    if (immediate.failure != bridge::Failure::none) finish_dial(dial_error(immediate, request_));
  }

  // ------------------------------------------------------------ reading

  Error try_read(InboundMessage& out) {
    bool resume = false;
    Error result;
    {
      std::lock_guard lock(mutex_);
      if (!dialled_ || !bridge_) return Error(errc::not_connected, "connection not dialled");
      if (!queue_.empty()) {
        auto& next = queue_.front();
        out.type = next.type;
        out.payload.swap(next.payload);
        queued_bytes_ -= out.payload.size();
        queue_.pop_front();
        if (reading_paused_ && queued_bytes_ <= options_.read_ahead_limit / 2 && !ended_) {
          reading_paused_ = false;
          resume = true;
        }
      } else if (failing_ && !ended_) {
        result = Error(errc::would_block);  // the close handshake this side began is not over
      } else if (failure_ && !failure_reported_) {
        failure_reported_ = true;
        result = *failure_;
      } else if (!open_) {
        result = Error::closed(last_close_, closed_detail_);
      } else {
        result = Error(errc::would_block);
      }
    }
    if (resume) bridge_->resume_reading();
    return result;
  }

  void async_wait_readable(Connection::WaitHandler done) {
    // See on_message: whether the message that completes this wait calls it there.
    const bool inline_wake = t_delivering != this && io_.get_executor().running_in_this_thread();
    {
      std::lock_guard lock(mutex_);
      if (!readable_locked()) {
        wait_done_ = std::move(done);
        wake_inline_ = inline_wake;
        return;
      }
    }
    done({});
  }

  void cancel_wait() { complete_wait(Error(errc::cancelled, "wait cancelled")); }

  Error read(InboundMessage& out, std::chrono::milliseconds timeout) {
    {
      std::unique_lock lock(mutex_);
      if (!dialled_ || !bridge_) return Error(errc::not_connected, "connection not dialled");
      if (!changed_.wait_for(lock, timeout, [&] { return readable_locked(); }))
        return Error(errc::timeout, "no message within " + std::to_string(timeout.count()) + " ms");
    }
    return try_read(out);
  }

  // ------------------------------------------------------------ writing, ping, close

  // websocketpp queues writes and never says when they left. So the adapter counts
  // the bytes it handed over and sends a marker ping after every quarter of the
  // limit; the peer's pong for a marker acknowledges everything queued before it.
  // A write waits while more than `max_unacknowledged_bytes` are unacknowledged,
  // and fails (dropping the connection) after `write_timeout`.
  Error write(MessageType type, std::string_view payload) {
    std::shared_ptr<bridge::Bridge> b;
    const std::size_t limit = options_.max_unacknowledged_bytes;
    {
      std::unique_lock lock(mutex_);
      if (!open_) return Error::closed(last_close_, "write on a closed connection");
      if (limit != 0) {
        auto acknowledged_enough = [&] { return !open_ || sent_bytes_ - acked_bytes_ < limit; };
        if (!changed_.wait_for(lock, request_.write_timeout, acknowledged_enough)) {
          lock.unlock();
          abort();  // part of the queue may never go: the connection is unusable
          return Error(errc::timeout, "write made no progress for " + std::to_string(request_.write_timeout.count()) +
                                          " ms: " + std::to_string(limit) + " bytes unacknowledged (peer not reading)");
        }
        if (!open_) return Error::closed(last_close_, "write on a closed connection");
      }
      b = bridge_;
    }
    // websocketpp takes it on the connection's strand (see Bridge::send): wait for that.
    std::promise<std::string> queued;
    b->send(type == MessageType::text, payload, [&queued](std::string failed) { queued.set_value(std::move(failed)); });
    if (auto failed = queued.get_future().get(); !failed.empty()) return refused(failed);
    std::string marker;
    {
      std::lock_guard lock(mutex_);
      sent_bytes_ += counted_size(payload);
      if (limit != 0 && sent_bytes_ - last_marker_at_ >= limit / 4) {
        last_marker_at_ = sent_bytes_;
        markers_.push_back({++marker_count_, sent_bytes_});
        marker = kMarkerPrefix + std::to_string(marker_count_);
      }
    }
    if (!marker.empty()) b->ping(marker, nullptr);
    return {};
  }

  // The send pipeline's write: handed to websocketpp's queue at once. websocketpp
  // never says when bytes left, so (with max_unacknowledged_bytes) `done` waits for
  // the peer's pong to a marker ping sent after the message: a message counts as sent
  // once the peer has it. No acknowledgement for write_timeout fails the connection.
  void async_write(MessageType type, std::string_view payload, Connection::DoneHandler done) {
    async_write_frames(type, payload, MessagePart::whole, std::move(done));
  }
  // A message in parts: each part is one frame, acknowledged as a whole message is.
  void async_write_frames(MessageType type, std::string_view payload, MessagePart part, Connection::DoneHandler done) {
    std::shared_ptr<bridge::Bridge> b;
    {
      std::lock_guard lock(mutex_);
      if (!open_) return done(Error::closed(last_close_, "write on a closed connection"));
      b = bridge_;
    }
    // websocketpp takes it on the connection's strand (see Bridge::send); the rest runs
    // there, once it was queued or refused.
    auto then = [self = shared_from_this(), b, size = counted_size(payload), done = std::move(done)](
                    std::string failed) mutable { self->written(*b, size, failed, std::move(done)); };
    if (part == MessagePart::whole) return b->send(type == MessageType::text, payload, std::move(then));
    b->send_part(type == MessageType::text, payload, part == MessagePart::first, part == MessagePart::last,
                 std::move(then));
  }

  // async_write, once websocketpp queued the message of `size` counted bytes or refused it.
  // What a send websocketpp did not take becomes: text that is not UTF-8 is refused
  // and the connection goes on; anything else means the connection is closing.
  Error refused(const std::string& failed) {
    if (failed == bridge::Bridge::kNotUtf8) return Error(errc::invalid_utf8, failed);
    return closed_error("write failed: " + failed);
  }

  void written(bridge::Bridge& b, std::size_t size, const std::string& failed, Connection::DoneHandler done) {
    if (!failed.empty()) return done(refused(failed));
    if (options_.max_unacknowledged_bytes == 0) return done({});
    std::string marker;
    bool watch = false;
    std::optional<Error> ended;
    {
      std::lock_guard lock(mutex_);
      if (ended_ || aborted_) {
        // It ended meanwhile (finish_all has run): nothing will acknowledge this one. After
        // a clean close handshake it went out all the same: websocketpp took it while
        // open, so ahead of the close frame that ended the connection.
        ended = acknowledged_by_close_ ? Error{}
                : failure_             ? *failure_
                                       : Error::closed(last_close_, "the connection ended before the peer had it");
      } else {
        sent_bytes_ += size;
        if (unacked_writes_.empty()) {
          last_ack_ = std::chrono::steady_clock::now();
          watch = !write_watch_armed_;
          write_watch_armed_ = true;
        }
        unacked_writes_.push_back({sent_bytes_, std::move(done)});
        marker = next_marker_locked(false);
      }
    }
    if (ended) return done(std::move(*ended));
    if (!marker.empty()) b.ping(marker, nullptr);
    if (watch) watch_writes(request_.write_timeout);
  }

  // The pong is awaited without holding a thread: websocketpp's pong handler or a
  // timer on the strand completes it.
  void async_ping(std::string_view payload, std::chrono::milliseconds timeout, Connection::DoneHandler done) {
    if (payload.size() > 125) return done(Error(errc::invalid_option, "ping payload over 125 bytes"));
    std::shared_ptr<bridge::Bridge> b;
    auto w = std::make_shared<Waiter>();
    {
      std::lock_guard lock(mutex_);
      if (!open_) return done(Error::closed(last_close_, "ping on a closed connection"));
      w->pongs_before = pongs_;
      w->done = std::move(done);
      w->what = "no pong within " + std::to_string(timeout.count()) + " ms";
      waiters_.push_back(w);
      b = bridge_;
    }
    start_timer(w, timeout);
    b->ping(payload, [self = shared_from_this(), w, payload = std::string(payload)](std::string failed) {
      if (!failed.empty()) return self->finish(w, self->closed_error("ping failed: " + failed));
      if (self->request_.control_frames) self->request_.control_frames(ControlFrameKind::ping_sent, payload);
    });
  }

  Error ping(std::string_view payload, std::chrono::milliseconds timeout) {
    std::promise<Error> result;
    async_ping(payload, timeout, [&result](Error e) { result.set_value(std::move(e)); });
    return result.get_future().get();
  }

  // The close frame goes out; websocketpp's close handler (the end of the connection)
  // or a timer on the strand completes it.
  void async_close(const CloseFrame& frame, std::chrono::milliseconds timeout, Connection::DoneHandler done) {
    std::shared_ptr<bridge::Bridge> b;
    auto w = std::make_shared<Waiter>();
    Connection::WaitHandler waiting;
    bool ended = false;  // decided under the lock: once w is in waiters_, finish() may complete it any time
    {
      std::lock_guard lock(mutex_);
      if (!open_ || closing_) return done(Error::closed(last_close_, "connection already closed"));
      closing_ = true;
      open_ = false;
      last_close_ = frame;
      closed_detail_ = "connection closed by this side";
      waiting = std::exchange(wait_done_, nullptr);
      b = bridge_;
      w->close = true;
      w->done = std::move(done);
      w->what = "peer did not answer the close frame within " + std::to_string(timeout.count()) + " ms";
      ended = ended_;
      if (ended) {
        w->finished = true;
      } else {
        waiters_.push_back(w);
      }
    }
    changed_.notify_all();
    if (waiting) waiting({});
    // Not w->finished: read here, after the lock, it may already be set by finish() on
    // another thread (the connection ended meanwhile), which completes w itself.
    if (ended) return w->done({});
    start_timer(w, timeout);
    // An error here means the peer's close crossed ours: websocketpp is already
    // closing. Either way the end comes through the close handler.
    b->close(frame.code, frame.reason);
  }

  Error close(const CloseFrame& frame, std::chrono::milliseconds timeout) {
    std::promise<Error> result;
    async_close(frame, timeout, [&result](Error e) { result.set_value(std::move(e)); });
    return result.get_future().get();
  }

  void abort() noexcept {
    std::shared_ptr<bridge::Bridge> b;
    Connection::DialHandler dialling;
    Connection::WaitHandler waiting;
    {
      std::lock_guard lock(mutex_);
      aborted_ = true;
      if (open_) {
        open_ = false;
        last_close_ = {close_code::abnormal, {}};
        closed_detail_ = "connection aborted";
      }
      b = bridge_;
      dialling = std::exchange(dial_done_, nullptr);
      waiting = std::exchange(wait_done_, nullptr);
    }
    if (b) b->abort();
    cancel_timer();
    changed_.notify_all();
    finish_all(Error::closed({close_code::abnormal, {}}, "connection aborted"));
    if (dialling) dialling(Error(errc::cancelled, "dial aborted"));
    if (waiting) waiting({});
  }

  // The engine is done with the connection: drop it unless it already ended. A close
  // handshake this side began (failing the connection) is let finish first, for up to
  // 2 s, so that the close frame is not lost to the drop; sends still unacknowledged
  // then get their outcome from its end (finish_all), where an answered close counts
  // them as sent: failed here, a caller that resends failures (EngineOptions::outage)
  // sent them twice when the close crossed a peer's. Otherwise they get it now (the
  // engine waits for them before it can be destroyed), not when websocketpp lets go of
  // this state.
  void release() noexcept {
    std::shared_ptr<bridge::Bridge> b;
    bool closing = false;
    UnackedWrites unacked;
    Error not_sent;
    {
      std::lock_guard lock(mutex_);
      if (!ended_) b = bridge_;
      closing = closing_;
      if (!(b && closing)) unacked.swap(unacked_writes_);
      // As in finish_all: a peer that answered our close had every message.
      if (!acknowledged_by_close_) not_sent = Error(errc::cancelled, "not acknowledged: connection released");
    }
    for (auto& [end, done] : unacked) done(not_sent);
    if (b && closing) {
      net::post(strand_, [self = shared_from_this(), b] {
        self->timer_.expires_after(std::chrono::seconds(2));
        self->timer_.async_wait([self, b](const boost::system::error_code&) { b->abort(); });
      });
      return;
    }
    if (b) b->abort();
    cancel_timer();
  }

  bool is_open() const noexcept {
    std::lock_guard lock(mutex_);
    return open_;
  }

  Underlying underlying() noexcept {
    std::shared_ptr<bridge::Bridge> b;
    {
      std::lock_guard lock(mutex_);
      b = bridge_;
    }
    if (!b) return {};
    return {&b->underlying_type(), b->underlying_object()};
  }

 private:
  // ------------------------------------------------------------ events (I/O threads)

  void on_dial_timeout() {
    std::shared_ptr<bridge::Bridge> b;
    {
      std::lock_guard lock(mutex_);
      if (!dial_done_) return;
      b = bridge_;
    }
    b->abort();
    finish_dial(Error(errc::timeout,
                      "opening handshake did not finish within " + std::to_string(request_.timeout.count()) + " ms"));
  }

  void on_dialled(bridge::DialOutcome o) {
    if (o.failure != bridge::Failure::none) return finish_dial(dial_error(o, request_));
    HandshakeResponse answer;
    answer.status = o.status;
    for (auto& [name, value] : o.headers) answer.headers.push_back({std::move(name), std::move(value)});
    std::string request = "GET " + request_.url.to_string();
    // RFC 6455 §4.1 (5, 6): a subprotocol or extension the client did not offer
    // fails the connection. websocketpp 0.8 checks neither, so the adapter does.
    auto subprotocol = check_subprotocol_answer(answer.header("Sec-WebSocket-Protocol"), request_.subprotocols);
    if (!subprotocol) return reject(Error(errc::handshake_failed, request + ": " + subprotocol.error().detail));
    answer.subprotocol = std::move(subprotocol.value());
    auto extensions = check_extensions_answer(answer.header("Sec-WebSocket-Extensions"), false);
    if (!extensions) return reject(Error(errc::handshake_failed, request + ": " + extensions.error().detail));
    {
      std::lock_guard lock(mutex_);
      if (!dial_done_) {  // timed out or aborted meanwhile
        bridge_->abort();
        return;
      }
      open_ = true;
    }
    finish_dial(std::move(answer));
  }

  void reject(Error error) {
    std::shared_ptr<bridge::Bridge> b;
    {
      std::lock_guard lock(mutex_);
      b = bridge_;
    }
    b->abort();
    finish_dial(std::move(error));
  }

  void finish_dial(Result<HandshakeResponse> result) {
    Connection::DialHandler done;
    {
      std::lock_guard lock(mutex_);
      done = std::exchange(dial_done_, nullptr);
    }
    cancel_timer();
    if (done) done(std::move(result));
  }

  // websocketpp calls this for each message of the data it read, in one handler.
  // The reader it wakes runs inline only when it waits on an I/O thread and did not
  // arm its wait inside this very handler (a message alone: the low-latency mode's
  // round trip). Otherwise the wake is posted, to run once the handler has queued the
  // rest of what it read: one wake per read instead of one per message. Waking a
  // callback thread per message cost a 64 B feed two thirds of its rate on one core
  // (the woken thread preempted websocketpp's loop for each message).
  bool on_message(bool text, std::string&& payload) {
    bool keep_reading = true;
    bool wake_inline = false;
    Connection::WaitHandler waiting;
    if (text && ends_inside_code_point(payload)) return fail_invalid_utf8();
    {
      std::lock_guard lock(mutex_);
      if (!open_) return true;  // failed by this side meanwhile: dropped (reading goes on for the close reply)
      queued_bytes_ += payload.size();
      InboundMessage m;
      m.type = text ? MessageType::text : MessageType::binary;
      m.payload = std::move(payload);
      queue_.push_back(std::move(m));
      if (queued_bytes_ >= options_.read_ahead_limit) {
        reading_paused_ = true;
        keep_reading = false;
      }
      waiting = std::exchange(wait_done_, nullptr);
      wake_inline = wake_inline_;
    }
    changed_.notify_all();
    if (waiting && wake_inline) {
      const State* outer = std::exchange(t_delivering, this);
      waiting({});
      t_delivering = outer;
    } else if (waiting) {
      net::post(io_, [waiting = std::move(waiting)]() mutable { waiting({}); });
    }
    return keep_reading;
  }

  // The client fails the connection with 1007 (RFC 6455 §8.1): websocketpp sends the
  // close frame; the reader gets errc::invalid_utf8 after the messages before it, once
  // the close handshake is over (see readable_locked).
  bool fail_invalid_utf8() {
    std::shared_ptr<bridge::Bridge> b;
    {
      std::lock_guard lock(mutex_);
      if (!open_) return true;
      open_ = false;
      closing_ = true;
      failing_ = true;
      last_close_ = {close_code::invalid_payload, {}};
      closed_detail_ = "connection failed by this side";
      failure_ = Error(errc::invalid_utf8, "text message is not valid UTF-8 (it ends inside a code point)");
      b = bridge_;
    }
    b->close(close_code::invalid_payload, "invalid UTF-8");
    return true;  // websocketpp reads on for the server's close reply
  }

  void on_pong(const std::string& payload) {
    const bool marker_pong = payload.rfind(kMarkerPrefix, 0) == 0;
    if (request_.control_frames && !marker_pong) request_.control_frames(ControlFrameKind::pong_received, payload);
    std::vector<std::shared_ptr<Waiter>> answered;
    std::vector<Connection::DoneHandler> sent;
    std::string marker;
    std::shared_ptr<bridge::Bridge> b;
    {
      std::lock_guard lock(mutex_);
      ++pongs_;
      for (auto& w : waiters_)
        if (!w->close && pongs_ > w->pongs_before) answered.push_back(w);
      // A pong may answer only the latest of several pings (RFC 6455 §5.5.3): it
      // acknowledges every marker up to its own.
      if (marker_pong) {
        std::uint64_t id = std::strtoull(payload.c_str() + std::strlen(kMarkerPrefix), nullptr, 10);
        while (!markers_.empty() && markers_.front().first <= id) {
          acked_bytes_ = std::max(acked_bytes_, markers_.front().second);
          markers_.pop_front();
        }
        while (!unacked_writes_.empty() && unacked_writes_.front().first <= acked_bytes_) {
          sent.push_back(std::move(unacked_writes_.front().second));
          unacked_writes_.pop_front();
          last_ack_ = std::chrono::steady_clock::now();
        }
        marker = next_marker_locked(false);
        b = bridge_;
      }
    }
    changed_.notify_all();
    for (auto& w : answered) finish(w, {});
    for (auto& done : sent) done({});
    if (!marker.empty() && b) b->ping(marker, nullptr);
  }

  // A marker ping when writes wait for one: none is outstanding, or a quarter of the
  // limit was sent since the last (`always`: one in any case). Empty: none needed.
  std::string next_marker_locked(bool always) {
    const bool needed =
        always || (!unacked_writes_.empty() &&
                   (markers_.empty() || sent_bytes_ - last_marker_at_ >= options_.max_unacknowledged_bytes / 4));
    if (!needed || last_marker_at_ == sent_bytes_) return {};
    last_marker_at_ = sent_bytes_;
    markers_.push_back({++marker_count_, sent_bytes_});
    return kMarkerPrefix + std::to_string(marker_count_);
  }

  // write_timeout for async_write: a timer on the strand while writes wait for their
  // acknowledgement; none for that long fails the connection.
  void watch_writes(std::chrono::steady_clock::duration wait) {
    net::post(strand_, [weak = weak_from_this(), wait] {
      auto self = weak.lock();
      if (!self) return;
      self->write_watch_.expires_after(wait);
      self->write_watch_.async_wait([weak](const boost::system::error_code& ec) {
        if (auto self = weak.lock(); self && !ec) self->check_write_progress();
      });
    });
  }
  void check_write_progress() {
    std::chrono::steady_clock::time_point due;
    {
      std::lock_guard lock(mutex_);
      if (unacked_writes_.empty() || !open_) {
        write_watch_armed_ = false;
        return;
      }
      due = last_ack_ + request_.write_timeout;
      if (std::chrono::steady_clock::now() < due) {
        auto wait = due - std::chrono::steady_clock::now();
        write_watch_armed_ = true;
        return watch_writes(wait);
      }
      failure_ = Error(errc::timeout, "write made no progress for " + std::to_string(request_.write_timeout.count()) +
                                          " ms: nothing acknowledged (peer not reading)");
      failure_reported_ = false;
    }
    abort();  // part of the queue may never go: the connection is unusable
  }

  void on_ended(bridge::Ending e) {
    Connection::WaitHandler waiting;
    cancel_timer();  // a linger after release() (or the dial's timer) is over
    {
      std::lock_guard lock(mutex_);
      ended_ = true;
      // This side's close frame was answered: the peer read everything sent before it.
      if (closing_ && !failing_ && e.close_received) acknowledged_by_close_ = true;
      // The peer's close was answered: websocketpp queues its answer behind every
      // message queued before it, so on a clean end those all went out (to the kernel,
      // as a Beast write completes), before the answer. Failing them would make a
      // caller that resends failures (EngineOptions::outage) send them twice.
      if (!closing_ && e.close_received && e.local_code != close_code::abnormal && e.error.empty())
        acknowledged_by_close_ = true;
      if (open_ && !closing_) {
        open_ = false;
        if (e.close_received) {
          last_close_ = {e.remote_code, std::move(e.remote_reason)};
          closed_detail_ = "peer closed the connection";
        } else {
          last_close_ = {close_code::abnormal, {}};
          closed_detail_ = "connection dropped without a close frame" + (e.error.empty() ? "" : " (" + e.error + ")");
        }
        // websocketpp failed the connection itself: it sent one of these codes and
        // dropped TCP without waiting for the answer. Say why, before the close.
        if (!e.close_received) {
          if (e.local_code == close_code::too_big)
            failure_ = Error(errc::message_too_big,
                             "message over max_message_size (" + std::to_string(request_.max_message_size) + " bytes)");
          else if (e.local_code == close_code::invalid_payload)
            failure_ = Error(errc::invalid_utf8, "text message is not valid UTF-8");
          else if (e.local_code == close_code::protocol_error)
            failure_ =
                Error(errc::protocol_error, e.local_reason.empty() ? "the peer violated RFC 6455" : e.local_reason);
          else if (e.local_code == close_code::internal_error)  // websocketpp's code for some violations
            failure_ = Error(errc::protocol_error,
                             "websocketpp failed the connection with 1011: " +
                                 (e.local_reason.empty() ? std::string("the peer violated RFC 6455") : e.local_reason));
        }
      }
      waiting = std::exchange(wait_done_, nullptr);
    }
    changed_.notify_all();
    finish_all({});  // a close waiting for the end has it; a ping gets `closed`
    if (waiting) waiting({});
  }

  // ------------------------------------------------------------ waiting without a thread

  // Completed by on_pong, on_ended (finish_all), its timer, or abort().
  using Waiter = wscengine::detail::ControlWaiter;

  void start_timer(const std::shared_ptr<Waiter>& w, std::chrono::milliseconds timeout) {
    net::post(strand_, [self = shared_from_this(), w, timeout] {
      {
        std::lock_guard lock(self->mutex_);
        if (w->finished) return;
      }
      w->timer.emplace(self->strand_);
      w->timer->expires_after(timeout);
      w->timer->async_wait([self, w](const boost::system::error_code& ec) {
        if (ec) return;
        if (w->close) {
          std::shared_ptr<bridge::Bridge> b;
          {
            std::lock_guard lock(self->mutex_);
            b = self->bridge_;
          }
          if (b) b->abort();  // no answer: drop it
        }
        self->finish(w, Error(errc::timeout, w->what));
      });
    });
  }

  // Completes `w` once, on the strand (never under mutex_).
  void finish(const std::shared_ptr<Waiter>& w, Error e) {
    {
      std::lock_guard lock(mutex_);
      if (w->finished) return;
      w->finished = true;
      std::erase(waiters_, w);
    }
    net::post(strand_, [w, e = std::move(e)]() mutable {
      if (w->timer) w->timer->cancel();
      auto done = std::move(w->done);
      done(std::move(e));
    });
  }

  // The connection ended: a close has what it waited for (`close_result`); pings end `closed`.
  void finish_all(Error close_result) {
    std::vector<std::shared_ptr<Waiter>> all;
    UnackedWrites unsent;
    Error closed, not_sent;
    {
      std::lock_guard lock(mutex_);
      all = waiters_;
      closed = Error::closed(last_close_, "closed while waiting for a pong");
      not_sent = acknowledged_by_close_ ? Error{}
                 : failure_             ? *failure_
                                        : Error::closed(last_close_, "not acknowledged before the connection ended");
      unsent.swap(unacked_writes_);
    }
    for (auto& w : all) finish(w, w->close ? close_result : closed);
    for (auto& [end, done] : unsent) done(not_sent);
  }

  // ------------------------------------------------------------ helpers

  // After fail_invalid_utf8() the failure waits for the end of the close handshake:
  // the engine ends the session (and a CLI its process) once the reader sees it, and
  // websocketpp writes the close frame later, on its strand.
  bool readable_locked() const {
    return !queue_.empty() || ended_ || (!failing_ && (!open_ || (failure_ && !failure_reported_)));
  }

  std::shared_ptr<bridge::Bridge> open_bridge() {
    std::lock_guard lock(mutex_);
    return open_ ? bridge_ : nullptr;
  }

  Error closed_error(std::string what) {
    std::lock_guard lock(mutex_);
    return Error::closed(last_close_, std::move(what));
  }

  // The timer is only touched on its strand (Asio timers are not thread-safe).
  void cancel_timer() {
    net::post(strand_, [weak = weak_from_this()] {
      if (auto self = weak.lock()) self->timer_.cancel();
    });
  }

  void complete_wait(Error e) {
    Connection::WaitHandler waiting;
    {
      std::lock_guard lock(mutex_);
      waiting = std::exchange(wait_done_, nullptr);
    }
    if (waiting) waiting(std::move(e));
  }

  net::io_context& io_;
  const WebsocketppOptions options_;
  net::strand<net::io_context::executor_type> strand_;
  net::steady_timer timer_;  // the dial timeout (strand_ only)

  mutable std::mutex mutex_;
  std::condition_variable changed_;  // a message, a pong or the end arrived
  bool dialled_ = false;
  bool aborted_ = false;
  DialRequest request_;  // written before the dial starts, read-only after
  std::shared_ptr<bridge::Bridge> bridge_;
  Connection::DialHandler dial_done_;
  Connection::WaitHandler wait_done_;
  bool wake_inline_ = false;  // (mutex_) see on_message
  bool open_ = false;
  bool closing_ = false;  // close() was called
  bool ended_ = false;    // websocketpp reported the end of the connection
  bool failing_ = false;  // this side failed the connection (fail_invalid_utf8)
  std::deque<InboundMessage> queue_;
  std::size_t queued_bytes_ = 0;
  bool reading_paused_ = false;
  std::optional<Error> failure_;  // why websocketpp failed the connection, once
  bool failure_reported_ = false;
  std::uint64_t pongs_ = 0;
  std::vector<std::shared_ptr<Waiter>> waiters_;  // pings and a close waiting
  // Write acknowledgement by marker pings (see write()).
  // A message counts its payload and the smallest frame header: an empty message
  // moves the count too, so a marker sent after it covers it (counting payloads only,
  // its async_write waited for write_timeout, then failed the connection).
  static std::uint64_t counted_size(std::string_view payload) noexcept { return payload.size() + 2; }
  std::uint64_t sent_bytes_ = 0;
  std::uint64_t acked_bytes_ = 0;
  std::uint64_t last_marker_at_ = 0;
  std::uint64_t marker_count_ = 0;
  std::deque<std::pair<std::uint64_t, std::uint64_t>> markers_;  // (id, sent_bytes_ when sent)
  // async_write: (sent_bytes_ after the message, its handler), until a marker covers it.
  // Sends waiting for their acknowledgement: (sent_bytes_ at their end, handler).
  using UnackedWrites = std::deque<std::pair<std::uint64_t, Connection::DoneHandler>>;
  UnackedWrites unacked_writes_;
  std::chrono::steady_clock::time_point last_ack_;  // the last acknowledgement (or the first wait)
  bool write_watch_armed_ = false;
  bool acknowledged_by_close_ = false;  // the peer answered our close: it had every message
  net::steady_timer write_watch_;       // (strand_)
  CloseFrame last_close_{close_code::abnormal, {}};
  std::string closed_detail_ = "connection is closed";
};

class WebsocketppConnection final : public Connection {
 public:
  WebsocketppConnection(net::io_context& io, WebsocketppOptions options)
      : state_(std::make_shared<State>(io, options)) {}
  ~WebsocketppConnection() override { state_->release(); }

  void async_dial(DialRequest request, DialHandler done) override {
    state_->async_dial(std::move(request), std::move(done));
  }
  Error try_read(InboundMessage& out) override { return state_->try_read(out); }
  void async_wait_readable(WaitHandler done) override { state_->async_wait_readable(std::move(done)); }
  void cancel_wait() override { state_->cancel_wait(); }
  Error read(InboundMessage& out, std::chrono::milliseconds timeout) override { return state_->read(out, timeout); }
  Error write(MessageType type, std::string_view payload) override { return state_->write(type, payload); }
  Error ping(std::string_view payload, std::chrono::milliseconds timeout) override {
    return state_->ping(payload, timeout);
  }
  Error close(const CloseFrame& frame, std::chrono::milliseconds timeout) override {
    return state_->close(frame, timeout);
  }
  void async_write_part(MessageType type, std::string_view payload, MessagePart part, DoneHandler done) override {
    state_->async_write_frames(type, payload, part, std::move(done));
  }
  void async_write(MessageType type, std::string_view payload, DoneHandler done) override {
    state_->async_write(type, payload, std::move(done));
  }
  void async_ping(std::string_view payload, std::chrono::milliseconds timeout, DoneHandler done) override {
    state_->async_ping(payload, timeout, std::move(done));
  }
  void async_close(const CloseFrame& frame, std::chrono::milliseconds timeout, DoneHandler done) override {
    state_->async_close(frame, timeout, std::move(done));
  }
  void abort() noexcept override { state_->abort(); }
  bool is_open() const noexcept override { return state_->is_open(); }
  Underlying underlying() noexcept override { return state_->underlying(); }

 private:
  std::shared_ptr<State> state_;
};

class WebsocketppConnector final : public Connector {
 public:
  explicit WebsocketppConnector(WebsocketppOptions options) : options_(options) {}
  std::unique_ptr<Connection> make_connection(Runtime& runtime) override {
    return std::make_unique<WebsocketppConnection>(io_context(runtime), options_);
  }
  std::string_view name() const noexcept override { return "websocketpp"; }
  AdapterCapabilities capabilities() const noexcept override {
    return {
        .compression = false, .write_backpressure = options_.max_unacknowledged_bytes != 0, .streamed_writes = true};
  }

 private:
  WebsocketppOptions options_;
};

}  // namespace

std::shared_ptr<Connector> make_connector(WebsocketppOptions options) {
  return std::make_shared<WebsocketppConnector>(options);
}

TlsStats tls_stats() {
  const auto counts = bridge::tls_counts();
  return {counts.contexts_created, counts.handshakes_full, counts.handshakes_resumed};
}

}  // namespace wscengine::websocketpp
