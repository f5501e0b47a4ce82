// wscengine — Beast adapter internals: TLS straight over the SocketLayer.
//
//   websocket::stream< ScanLayer< TlsLayer< SocketLayer > > >
//
// Asio's ssl::stream moves every byte through buffers of its own: two 17 KiB vectors
// in the stream and a 17 KiB pair of OpenSSL BIO buffers, about 68 KiB per
// connection that an idle connection keeps. TlsLayer gives OpenSSL a BIO that reads
// and writes the SocketLayer directly, so the only buffers are OpenSSL's own record
// buffers, which SSL_MODE_RELEASE_BUFFERS (set on the shared context) frees while a
// connection is idle. Everything else follows the SocketLayer: a write never waits
// (the outbox takes what the kernel does not), a read never waits (would_block), and
// the asynchronous operations (the handshake, the HTTP upgrade's reads) wait for the
// socket to become readable, then try again.
#pragma once

#include <boost/asio/associated_executor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/beast/websocket/teardown.hpp>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include <array>
#include <cstring>
#include <new>
#include <utility>

#include <wscengine/beast/detail/layers.hpp>

namespace wscengine::beast::detail {

/// A TLS client session over a SocketLayer. Thread safety: none (one SSL object); the
/// adapter serialises its use with the stream mutex, and the asynchronous operations
/// run on the socket's executor (the connection's strand) before the connection opens.
class TlsLayer {
 public:
  using executor_type = SocketLayer::executor_type;
  using next_layer_type = SocketLayer;
  using lowest_layer_type = Socket;
  using native_handle_type = SSL*;
  static constexpr bool kPumpStopsAtAMessage = true;  // see ScanLayer::pump

  TlsLayer(const executor_type& ex, net::ssl::context& context) : next_(ex), ssl_(SSL_new(context.native_handle())) {
    BIO* bio = ssl_ ? BIO_new(bio_method()) : nullptr;
    if (!bio) {
      SSL_free(ssl_);
      throw std::bad_alloc();
    }
    BIO_set_data(bio, this);
    BIO_set_init(bio, 1);
    SSL_set_bio(ssl_, bio, bio);  // the SSL owns it
    SSL_set_connect_state(ssl_);
    // Each read takes what the socket has (up to a record buffer), not a record's
    // header and then its body: half the system calls when records stream in.
    SSL_set_read_ahead(ssl_, 1);
  }
  ~TlsLayer() { SSL_free(ssl_); }
  // The BIO points at this object: it never moves.
  TlsLayer(const TlsLayer&) = delete;
  TlsLayer& operator=(const TlsLayer&) = delete;

  executor_type get_executor() noexcept { return next_.get_executor(); }
  SocketLayer& next_layer() noexcept { return next_; }

  /// At most how much plaintext OpenSSL holds that the socket will not announce
  /// again: what it decrypted and not handed out yet, and what the records in its
  /// read buffer may still yield (ciphertext is never shorter than its plaintext).
  std::size_t held_plaintext_bound() const noexcept {
    return static_cast<std::size_t>(SSL_pending(ssl_)) + kReadBufferBound;
  }
  lowest_layer_type& lowest_layer() noexcept { return next_.socket(); }
  SSL* native_handle() noexcept { return ssl_; }

  /// What OpenSSL has decrypted now, without waiting: the SocketLayer's would_block
  /// (or timed_out, see SocketLayer::read_some) when a record is not complete yet;
  /// eof after the peer's close_notify; stream_truncated when the connection ended
  /// without one; else OpenSSL's error.
  template <class MutableBuffers>
  std::size_t read_some(const MutableBuffers& buffers, error_code& ec) {
    net::mutable_buffer b = first_nonempty(buffers);
    if (b.size() == 0) {
      ec = {};
      return 0;
    }
    std::size_t n = 0;
    begin_call();
    const int r = SSL_read_ex(ssl_, b.data(), b.size(), &n);
    ec = r == 1 ? error_code{} : failure(r);
    return r == 1 ? n : 0;
  }
  template <class MutableBuffers>
  std::size_t read_some(const MutableBuffers& buffers) {
    return or_throw([&](error_code& ec) { return read_some(buffers, ec); });
  }

  /// Takes every buffer (a write never waits: see SocketLayer::write_some). Small
  /// buffers are gathered into records of up to 16 KiB, so a frame's header and its
  /// payload go out in one record.
  template <class ConstBuffers>
  std::size_t write_some(const ConstBuffers& buffers, error_code& ec) {
    thread_local std::array<unsigned char, kRecord> staging;
    std::size_t staged = 0, total = 0;
    ec = {};
    auto flush = [&] {
      if (staged != 0 && !ec) write_all(staging.data(), staged, ec);
      staged = 0;
    };
    for (auto it = net::buffer_sequence_begin(buffers); it != net::buffer_sequence_end(buffers) && !ec; ++it) {
      net::const_buffer b = *it;
      total += b.size();
      const auto* p = static_cast<const unsigned char*>(b.data());
      std::size_t left = b.size();
      while (left != 0 && !ec) {
        if (staged == 0 && left >= kRecord) {  // large: OpenSSL cuts it into records itself
          write_all(p, left, ec);
          break;
        }
        const std::size_t n = std::min(left, kRecord - staged);
        std::memcpy(staging.data() + staged, p, n);
        staged += n;
        p += n;
        left -= n;
        if (staged == kRecord) flush();
      }
    }
    flush();
    return ec ? 0 : total;
  }
  template <class ConstBuffers>
  std::size_t write_some(const ConstBuffers& buffers) {
    return or_throw([&](error_code& ec) { return write_some(buffers, ec); });
  }

  /// The client handshake. Completes `handler(error_code)` on the socket's executor.
  template <class Handler>
  void async_handshake(Handler&& handler) {
    error_code ignored;
    next_.socket().non_blocking(true, ignored);  // OpenSSL's reads and writes must not wait
    handshake_step(std::forward<Handler>(handler));
  }

  /// For Beast's HTTP upgrade: what read_some returns, waiting for the socket while
  /// a record is incomplete. Completes as if posted.
  template <class MutableBuffers, class Handler>
  void async_read_some(const MutableBuffers& buffers, Handler&& handler) {
    next_.no_wait = true;
    error_code ec;
    std::size_t n = read_some(buffers, ec);
    next_.no_wait = false;
    if (ec == net::error::would_block) {
      next_.async_wait_readable([this, buffers, h = std::forward<Handler>(handler)](const error_code& waited) mutable {
        if (waited) return complete(std::move(h), waited, std::size_t{0});
        async_read_some(buffers, std::move(h));
      });
      return;
    }
    complete(std::forward<Handler>(handler), ec, n);
  }
  /// Never waits (see write_some). Completes as if posted.
  template <class ConstBuffers, class Handler>
  void async_write_some(const ConstBuffers& buffers, Handler&& handler) {
    error_code ec;
    std::size_t n = write_some(buffers, ec);
    complete(std::forward<Handler>(handler), ec, n);
  }

  /// Sends close_notify (after what waits in the outbox) once the handshake is done;
  /// does not wait for the peer's: the socket is half-closed next and drained by the
  /// connection (see StreamImpl::linger).
  void send_close_notify() {
    if (!SSL_is_init_finished(ssl_)) return;
    begin_call();
    SSL_shutdown(ssl_);
    ERR_clear_error();
  }

 private:
  static constexpr std::size_t kRecord = 16 * 1024;  // TLS's largest plaintext record

  // Posts `handler(args...)` to the handler's executor (the socket's when it has none).
  template <class Handler, class... Args>
  void complete(Handler&& handler, Args... args) {
    auto ex = net::get_associated_executor(handler, get_executor());
    net::post(ex, [h = std::forward<Handler>(handler), args...]() mutable { h(args...); });
  }

  template <class Buffers>
  static net::mutable_buffer first_nonempty(const Buffers& buffers) {
    for (auto it = net::buffer_sequence_begin(buffers); it != net::buffer_sequence_end(buffers); ++it)
      if (net::mutable_buffer b = *it; b.size() != 0) return b;
    return {};
  }

  void write_all(const unsigned char* p, std::size_t size, error_code& ec) {
    std::size_t n = 0;
    begin_call();
    // Without SSL_MODE_ENABLE_PARTIAL_WRITE, OpenSSL writes all of it or fails; the
    // BIO never asks to retry (the outbox takes everything).
    if (SSL_write_ex(ssl_, p, size, &n) != 1) ec = failure(0);
  }

  void begin_call() {
    ERR_clear_error();
    io_error_ = {};
  }

  // The error of a failed SSL call whose result was `r`.
  error_code failure(int r) {
    switch (SSL_get_error(ssl_, r)) {
      case SSL_ERROR_WANT_READ:
      case SSL_ERROR_WANT_WRITE:
        // The socket had no more now (would_block, or timed_out: see SocketLayer),
        // or a handshake message was taken with nothing after it.
        return io_error_ ? io_error_ : error_code(net::error::would_block);
      case SSL_ERROR_ZERO_RETURN:
        return net::error::eof;  // the peer's close_notify
      case SSL_ERROR_SYSCALL:
        if (io_error_ && io_error_ != net::error::eof) return io_error_;
        return net::ssl::error::stream_truncated;
      default: {
        const unsigned long e = ERR_get_error();
        if (ERR_GET_REASON(e) == SSL_R_UNEXPECTED_EOF_WHILE_READING) return net::ssl::error::stream_truncated;
        if (e == 0) return io_error_ ? io_error_ : error_code(net::error::fault);
        return error_code(static_cast<int>(e), net::error::get_ssl_category());
      }
    }
  }

  template <class Handler>
  void handshake_step(Handler&& handler) {
    next_.no_wait = true;
    begin_call();
    const int r = SSL_do_handshake(ssl_);
    next_.no_wait = false;
    error_code ec = r == 1 ? error_code{} : failure(r);
    if (ec == net::error::would_block) {
      next_.async_wait_readable([this, h = std::forward<Handler>(handler)](const error_code& waited) mutable {
        if (waited) return complete(std::move(h), waited);
        handshake_step(std::move(h));
      });
      return;
    }
    complete(std::forward<Handler>(handler), ec);
  }

  // The BIO under the SSL: the SocketLayer's reads and writes.
  static int bio_read(BIO* bio, char* out, std::size_t size, std::size_t* done) {
    auto* self = static_cast<TlsLayer*>(BIO_get_data(bio));
    BIO_clear_retry_flags(bio);
    error_code ec;
    const std::size_t n = self->next_.read_some(net::buffer(out, size), ec);
    if (n != 0) {
      *done = n;
      return 1;
    }
    self->io_error_ = ec ? ec : error_code(net::error::eof);
    if (ec == net::error::would_block || ec == net::error::timed_out) BIO_set_retry_read(bio);
    return 0;
  }
  static int bio_write(BIO* bio, const char* in, std::size_t size, std::size_t* done) {
    auto* self = static_cast<TlsLayer*>(BIO_get_data(bio));
    BIO_clear_retry_flags(bio);
    error_code ec;
    self->next_.write_some(net::buffer(in, size), ec);
    if (ec) {
      self->io_error_ = ec;
      return 0;
    }
    *done = size;
    return 1;
  }
  static long bio_ctrl(BIO*, int command, long, void*) { return command == BIO_CTRL_FLUSH ? 1 : 0; }
  static BIO_METHOD* bio_method() {
    static BIO_METHOD* method = [] {
      BIO_METHOD* m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "wscengine socket");
      if (m) {
        BIO_meth_set_read_ex(m, &TlsLayer::bio_read);
        BIO_meth_set_write_ex(m, &TlsLayer::bio_write);
        BIO_meth_set_ctrl(m, &TlsLayer::bio_ctrl);
      }
      return m;
    }();
    return method;
  }

  // OpenSSL's record read buffer: 16 KiB of plaintext, 320 bytes of overhead, a
  // 5-byte header, alignment, and 1 KiB more where compression is possible; with
  // read ahead it reads at most this much ahead of the record it returns.
  static constexpr std::size_t kReadBufferBound = 18 * 1024;
  SocketLayer next_;
  SSL* ssl_;
  error_code io_error_;  // what the socket said in the SSL call now running
};

// Beast's teardown after the close handshake: close_notify, then half-close (see the
// SocketLayer's teardown).
inline void teardown(boost::beast::role_type, TlsLayer& s, error_code& ec) {
  s.send_close_notify();
  s.next_layer().shutdown_write();
  ec = {};
}
template <class Handler>
void async_teardown(boost::beast::role_type, TlsLayer& s, Handler&& handler) {
  s.send_close_notify();
  s.next_layer().shutdown_write();
  net::post(s.get_executor(), [h = std::forward<Handler>(handler)]() mutable { h(error_code{}); });
}

}  // namespace wscengine::beast::detail
