// wscengine — Beast adapter internals: the layer under the WebSocket stream when the
// WebSocket is a stream of an HTTP/2 connection (RFC 8441).
//
//   websocket::stream< ScanLayer< Http2Layer > >  ──  Http2Channel  ──  HTTP/2 session
//
// The layer never touches a socket: it reads the DATA the session received for its
// stream (Http2Channel's inbound bytes) and writes into the stream's Outbox, which the
// session turns into DATA frames as the stream's flow-control window allows. It keeps
// the SocketLayer's contract (reads and writes never wait), so everything above it,
// the scanner, the reader, the send pipeline and write_timeout, works unchanged.
// The HTTP/1.1 upgrade Beast's handshake performs is answered here from the extended
// CONNECT's response (see answer_handshake): Beast then speaks RFC 6455 frames over
// the stream as over a socket.
#pragma once

#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/websocket/detail/hybi13.hpp>

#include <wscengine/beast/detail/layers.hpp>
#include <wscengine/error.hpp>

#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace wscengine::beast::detail {

/// Waits for the stream to become readable: a handler per wait, completed once.
using ReadableHandler = std::function<void(const error_code&)>;

/// The bytes of one WebSocket's HTTP/2 stream, shared by the layer (the connection's
/// side) and the HTTP/2 session (the side that speaks to the network). Thread
/// safety: the inbound fields under `mutex`, the outbox under its own.
struct Http2Channel {
  std::mutex mutex;
  std::string in;                                               // DATA received, read from in_at on
  std::size_t in_at = 0;                                        //
  error_code in_end;                                            // the stream ended: eof (END_STREAM) or a reset
  std::uint64_t to_consume = 0;                                 // read, not yet given back to the flow-control window
  std::vector<ReadableHandler> waits;                           // completed when bytes or the end arrive
  std::shared_ptr<Outbox> outbox = std::make_shared<Outbox>();  // shut_after: END_STREAM once sent

  /// The waits to complete now (the caller runs them without the lock).
  std::vector<ReadableHandler> take_waits_locked() { return std::exchange(waits, {}); }
  bool readable_locked() const { return in_at < in.size() || in_end; }
};

/// A stream's handle on its HTTP/2 connection. Thread safety: any thread.
class Http2Link {
 public:
  virtual ~Http2Link() = default;
  /// The channel changed (bytes to send, bytes read, END_STREAM asked): the session
  /// acts on it on its own thread soon.
  virtual void flush() = 0;
  /// Gives the stream up: RST_STREAM (CANCEL), or, before the stream was opened, the
  /// open is cancelled (its handler gets errc::cancelled).
  virtual void reset() noexcept = 0;
};

/// The layer under the ScanLayer for a WebSocket over HTTP/2. Thread safety: as
/// SocketLayer (one reader and one writer at once; the channel has its locks).
class Http2Layer {
 public:
  using executor_type = net::strand<net::io_context::executor_type>;

  explicit Http2Layer(const executor_type& ex) : executor_(ex) {}

  executor_type get_executor() noexcept { return executor_; }

  /// Binds the layer to its opened stream.
  void attach(std::shared_ptr<Http2Channel> channel, std::shared_ptr<Http2Link> link) {
    channel_ = std::move(channel);
    link_ = std::move(link);
  }
  const std::shared_ptr<Http2Channel>& channel() const noexcept { return channel_; }
  const std::shared_ptr<Http2Link>& link() const noexcept { return link_; }
  const std::shared_ptr<Outbox>& outbox() const noexcept { return channel_->outbox; }

  /// When set, a read that would wait returns would_block at once (see SocketLayer).
  bool no_wait = false;

  /// The response Beast's handshake reads: a 101 built from the extended CONNECT's
  /// answer (`headers`: the 2xx response's fields) and the key Beast sends. Beast then
  /// checks it as any upgrade (subprotocol, permessage-deflate parameters).
  void answer_handshake(std::vector<Header> headers) { answer_headers_ = std::move(headers); }

  template <class MutableBuffers>
  std::size_t read_some(const MutableBuffers& buffers, error_code& ec) {
    std::size_t n = 0;
    bool give_back = false;
    {
      std::lock_guard lock(channel_->mutex);
      auto& c = *channel_;
      if (c.in_at < c.in.size()) {
        n = net::buffer_copy(buffers, net::buffer(c.in.data() + c.in_at, c.in.size() - c.in_at));
        c.in_at += n;
        if (c.in_at == c.in.size()) {
          c.in.clear();
          c.in_at = 0;
          if (c.in.capacity() > kKeptMessageBuffer) std::string().swap(c.in);
        }
        // Window updates in batches: every 16 KiB read, and whenever the stream's
        // bytes are all read (so that a sender waiting on a small window goes on).
        c.to_consume += n;
        give_back = c.to_consume >= kConsumeBatch || c.in.empty();
        ec = {};
      } else if (c.in_end) {
        ec = c.in_end;
      } else {
        ec = no_wait ? error_code(net::error::would_block) : error_code(net::error::timed_out);
      }
    }
    if (give_back) link_->flush();
    return n;
  }
  template <class MutableBuffers>
  std::size_t read_some(const MutableBuffers& buffers) {
    return or_throw([&](error_code& ec) { return read_some(buffers, ec); });
  }

  /// Takes every byte into the outbox; the session sends them as the window allows.
  template <class ConstBuffers>
  std::size_t write_some(const ConstBuffers& buffers, error_code& ec) {
    const std::size_t size = net::buffer_size(buffers);
    {
      auto& box = *channel_->outbox;
      std::lock_guard lock(box.mutex);
      if (box.failure) {
        ec = box.failure;
        return 0;
      }
      if (box.empty()) {
        box.bytes.clear();
        box.sent = 0;
        box.last_progress = Clock::now();  // write_timeout counts from here
      }
      append_from(buffers, 0, box.bytes);
      box.queued += size;
    }
    link_->flush();
    ec = {};
    return size;
  }
  template <class ConstBuffers>
  std::size_t write_some(const ConstBuffers& buffers) {
    return or_throw([&](error_code& ec) { return write_some(buffers, ec); });
  }

  // Beast's handshake: the upgrade request is taken (its key is all that matters:
  // the extended CONNECT carried the rest), and the answer is the 101 built from it.
  template <class ConstBuffers, class Handler>
  void async_write_some(const ConstBuffers& buffers, Handler&& handler) {
    const std::size_t size = net::buffer_size(buffers);
    append_from(buffers, 0, request_);
    net::post(executor_, [h = std::forward<Handler>(handler), size]() mutable { h(error_code{}, size); });
  }
  template <class MutableBuffers, class Handler>
  void async_read_some(const MutableBuffers& buffers, Handler&& handler) {
    if (!answered_) build_answer();
    std::size_t n = net::buffer_copy(buffers, net::buffer(answer_.data() + answer_at_, answer_.size() - answer_at_));
    answer_at_ += n;
    error_code ec = n == 0 ? error_code(net::error::eof) : error_code{};
    if (answer_at_ == answer_.size()) {
      std::string().swap(answer_);
      std::string().swap(request_);
    }
    net::post(executor_, [h = std::forward<Handler>(handler), ec, n]() mutable { h(ec, n); });
  }

  /// END_STREAM once what waits in the outbox is sent (the WebSocket's TCP FIN).
  void shutdown_write() {
    {
      std::lock_guard lock(channel_->outbox->mutex);
      channel_->outbox->shut_after = true;
    }
    link_->flush();
  }

  /// Completes `handler` when bytes or the stream's end are there (at once if so).
  void async_wait_readable(ReadableHandler handler) {
    {
      std::lock_guard lock(channel_->mutex);
      if (!channel_->readable_locked()) {
        channel_->waits.push_back(std::move(handler));
        return;
      }
    }
    net::post(executor_, [h = std::move(handler)] { h(error_code{}); });
  }

 private:
  static constexpr std::uint64_t kConsumeBatch = 16 * 1024;

  void build_answer() {
    answered_ = true;
    std::string key;
    const auto at = request_.find("\r\nSec-WebSocket-Key: ");
    if (at != std::string::npos) {
      const auto from = at + 21;
      key = request_.substr(from, request_.find("\r\n", from) - from);
    }
    boost::beast::websocket::detail::sec_ws_accept_type accept;
    boost::beast::websocket::detail::make_sec_ws_accept(accept, key);
    answer_ = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ";
    answer_.append(accept.data(), accept.size());
    answer_ += "\r\n";
    for (const auto& h : answer_headers_) {
      answer_ += h.name;
      answer_ += ": ";
      answer_ += h.value;
      answer_ += "\r\n";
    }
    answer_ += "\r\n";
    answer_headers_.clear();
  }

  executor_type executor_;
  std::shared_ptr<Http2Channel> channel_;
  std::shared_ptr<Http2Link> link_;
  std::vector<Header> answer_headers_;
  std::string request_;  // Beast's upgrade request (the handshake only)
  std::string answer_;   // the 101 Beast reads (the handshake only)
  std::size_t answer_at_ = 0;
  bool answered_ = false;
};

// Beast closes the lowest layer when one of its own timeouts fires: the stream is reset.
inline void beast_close_socket(Http2Layer& s) {
  if (s.link()) s.link()->reset();
}

inline void teardown(boost::beast::role_type, Http2Layer& s, error_code& ec) {
  s.shutdown_write();
  ec = {};
}
template <class Handler>
void async_teardown(boost::beast::role_type, Http2Layer& s, Handler&& handler) {
  s.shutdown_write();
  net::post(s.get_executor(), [h = std::forward<Handler>(handler)]() mutable { h(error_code{}); });
}

}  // namespace wscengine::beast::detail
