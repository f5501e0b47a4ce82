// wscengine — Beast adapter internals: the stream layers under the WebSocket stream.
//
//   websocket::stream< ScanLayer< [TlsLayer<] SocketLayer [>] > >   (TlsLayer: tls_layer.hpp)
//
// SocketLayer does synchronous I/O on a non-blocking socket. A write never waits:
// what the kernel does not take at once goes to its outbox, which Asio sends as the
// socket becomes writable (no thread waits for a peer that does not read, and reads
// go on meanwhile: full duplex). A read never waits either: waiting for data is an
// asynchronous wait on the socket (Asio's, so the code stays portable).
// ScanLayer buffers received bytes and runs the FrameScanner over them, so the
// adapter knows when a whole message is buffered; `pump()` reads what the socket
// has without waiting.
#pragma once

#include <boost/asio/associated_executor.hpp>
#include <boost/asio/bind_executor.hpp>
#include <boost/asio/generic/stream_protocol.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/websocket/rfc6455.hpp>
#include <boost/beast/websocket/teardown.hpp>

#include <sys/socket.h>
#include <sys/utsname.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <string>
#include <type_traits>

#include <wscengine/beast/detail/frame_scanner.hpp>

namespace wscengine::beast::detail {

namespace net = boost::asio;
using error_code = boost::system::error_code;
using Clock = std::chrono::steady_clock;

// The throwing forms that Asio's SyncReadStream/SyncWriteStream concepts require;
// the adapter itself only calls the error_code forms.
template <class Op>
std::size_t or_throw(Op op) {
  error_code ec;
  std::size_t n = op(ec);
  if (ec) throw boost::system::system_error(ec);
  return n;
}

/// The socket under every connection: TCP, or a Unix domain socket for
/// ws+unix:// URLs (a generic stream socket holds either).
using Socket = net::generic::stream_protocol::socket;

/// Appends the bytes of `buffers` from offset `skip` on to `out`.
template <class ConstBuffers>
void append_from(const ConstBuffers& buffers, std::size_t skip, std::string& out) {
  for (auto it = net::buffer_sequence_begin(buffers); it != net::buffer_sequence_end(buffers); ++it) {
    net::const_buffer b = *it;
    if (skip >= b.size()) {
      skip -= b.size();
      continue;
    }
    out.append(static_cast<const char*>(b.data()) + skip, b.size() - skip);
    skip = 0;
  }
}

/// Allocates with operator new, at the size asked. Given to a wait on the socket (see
/// ExactlyAllocated) so that Asio does not take the operation's memory from its
/// per-thread recycling cache, whose blocks keep the size of the largest operation
/// they held: the pending wait of every idle connection then occupied a block of the
/// upgrade's HTTP read, about 570 bytes, instead of about 100.
template <class T>
struct ExactAllocator {
  using value_type = T;
  ExactAllocator() = default;
  template <class U>
  ExactAllocator(const ExactAllocator<U>&) noexcept {}
  T* allocate(std::size_t n) { return static_cast<T*>(::operator new(n * sizeof(T))); }
  void deallocate(T* p, std::size_t n) noexcept { ::operator delete(p, n * sizeof(T)); }
  template <class U>
  bool operator==(const ExactAllocator<U>&) const noexcept {
    return true;
  }
};

/// A handler with ExactAllocator as its associated allocator; its associated executor
/// is the wrapped handler's.
template <class Handler>
struct ExactlyAllocated {
  using allocator_type = ExactAllocator<void>;
  allocator_type get_allocator() const noexcept { return {}; }
  template <class... Args>
  void operator()(Args&&... args) {
    handler(std::forward<Args>(args)...);
  }
  Handler handler;
};

/// Bytes written that the kernel did not take at once, sent by Asio as the socket
/// becomes writable. Shared with the wait that sends them. Thread safety: `mutex`.
struct Outbox {
  std::mutex mutex;
  std::string bytes;  // waiting to be sent, from `sent` on
  std::size_t sent = 0;
  std::uint64_t queued = 0;         // every byte written so far
  std::uint64_t delivered = 0;      // ... of which the kernel took this many
  Clock::time_point last_progress;  // the kernel last took bytes, or the outbox filled
  bool flushing = false;            // a wait for writability is armed
  bool shut_after = false;          // shut the sending side once everything is sent
  error_code failure;               // the socket failed while sending
  /// Runs on the socket's executor, without the outbox lock, after the kernel took
  /// bytes from the outbox or the socket failed (set once, before the first write).
  std::function<void()> on_progress;
  bool empty() const noexcept { return sent == bytes.size(); }
};

/// Synchronous reads and writes on a non-blocking stream socket that never wait:
/// writes go to the outbox when the kernel does not take them (see Outbox); a read
/// with nothing to read fails (see read_some). Asynchronous operations go to Asio
/// (the handshake). Thread safety: one reader and one writer may use it at once;
/// the outbox has its own lock.
class SocketLayer {
 public:
  using executor_type = Socket::executor_type;
  using lowest_layer_type = Socket;
  static constexpr bool kPumpStopsAtAMessage = true;  // see ScanLayer::pump

  explicit SocketLayer(const executor_type& ex) : socket_(ex) {}

  executor_type get_executor() noexcept { return socket_.get_executor(); }
  lowest_layer_type& lowest_layer() noexcept { return socket_; }
  Socket& socket() noexcept { return socket_; }
  const std::shared_ptr<Outbox>& outbox() const noexcept { return outbox_; }
  /// Keeps the socket alive while the outbox's wait runs (the connection owning it).
  std::weak_ptr<void> owner;

  /// When set, a read that would wait returns net::error::would_block at once.
  bool no_wait = false;

  /// Plaintext the layer may hold that the socket will not announce again: none.
  static constexpr std::size_t held_plaintext_bound() noexcept { return 0; }

  /// Lets set_low_water() raise the socket's SO_RCVLOWAT (TCP on Linux; called once,
  /// when connected). Its cap is a quarter of the socket's receive buffer then:
  /// Linux grows the buffer, and clamps the window, for a mark above half of it.
  void enable_low_water() noexcept {
    if (kernel_wakes_on_lowered_mark()) {
      const std::size_t quarter = receive_buffer_quarter();
      if (quarter >= kLowWaterFrom) low_water_cap_ = quarter;
    }
  }
  /// The socket wakes a wait for readability (and, while nothing waits, the I/O
  /// thread's epoll) only once `bytes` unread bytes are there, or at the end of the
  /// stream or an error: SO_RCVLOWAT, which never holds back a read that does not
  /// wait. Below kLowWaterFrom, or above the cap, as 1 or the cap. A system call only
  /// when the mark changes. Thread safety: the reader's (the adapter's stream mutex).
  void set_low_water(std::size_t bytes) noexcept {
    if (low_water_cap_ == 0) return;
    // Linux grows the receive buffer as a connection streams (to megabytes on
    // loopback, where a 64 KiB message arrives as one segment): the cap follows.
    if (bytes == kHighWater && low_water_ == 1) low_water_cap_ = std::max(low_water_cap_, receive_buffer_quarter());
    const int mark = bytes < kLowWaterFrom ? 1 : static_cast<int>(std::min(bytes, low_water_cap_));
    if (mark == low_water_) return;
    if (set_receive_low_water(mark)) {
      low_water_ = mark;
    } else if (low_water_ != 1) {
      // Never leave a raised mark behind: wake on every byte, and stop raising it.
      if (set_receive_low_water(1)) low_water_ = 1;
      low_water_cap_ = 0;
    }
  }
  /// set_low_water()'s "as high as the cap allows".
  static constexpr std::size_t kHighWater = std::numeric_limits<std::size_t>::max();
  /// Marks below this stay 1: a wake-up saved per few KiB is not worth a system call.
  static constexpr std::size_t kLowWaterFrom = 8 * 1024;

  /// Never waits: what the socket (non-blocking) has now, else would_block when
  /// `no_wait` is set and timed_out when not (Beast read a frame the scanner said was
  /// whole: a missing byte means the stream is broken).
  template <class MutableBuffers>
  std::size_t read_some(const MutableBuffers& buffers, error_code& ec) {
    auto b = *net::buffer_sequence_begin(buffers);
    std::size_t n = socket_.read_some(net::buffer(b.data(), b.size()), ec);
    if (ec == net::error::would_block || ec == net::error::try_again)
      ec = no_wait ? error_code(net::error::would_block) : error_code(net::error::timed_out);
    return n;
  }
  template <class MutableBuffers>
  std::size_t read_some(const MutableBuffers& buffers) {
    return or_throw([&](error_code& ec) { return read_some(buffers, ec); });
  }

  /// Takes every buffer: one gathering write (a frame's header and its payload in
  /// one system call), and what the kernel does not take now waits in the outbox,
  /// behind what waits there already.
  template <class ConstBuffers>
  std::size_t write_some(const ConstBuffers& buffers, error_code& ec) {
    const std::size_t size = net::buffer_size(buffers);
    std::lock_guard lock(outbox_->mutex);
    if (outbox_->failure) {
      ec = outbox_->failure;
      return 0;
    }
    std::size_t n = 0;
    if (outbox_->empty()) {
      n = send_now(buffers, ec);
      if (ec) {
        outbox_->failure = ec;
        return 0;
      }
    }
    outbox_->queued += size;
    outbox_->delivered += n;
    if (n < size) {
      if (outbox_->empty()) {
        outbox_->bytes.clear();
        outbox_->sent = 0;
        outbox_->last_progress = Clock::now();  // write_timeout counts from here
      }
      append_from(buffers, n, outbox_->bytes);
      flush_later_locked();
    }
    ec = {};
    return size;
  }
  template <class ConstBuffers>
  std::size_t write_some(const ConstBuffers& buffers) {
    return or_throw([&](error_code& ec) { return write_some(buffers, ec); });
  }

  template <class MutableBuffers, class Handler>
  auto async_read_some(const MutableBuffers& buffers, Handler&& handler) {
    return socket_.async_read_some(buffers, std::forward<Handler>(handler));
  }
  template <class ConstBuffers, class Handler>
  auto async_write_some(const ConstBuffers& buffers, Handler&& handler) {
    return socket_.async_write_some(buffers, std::forward<Handler>(handler));
  }

  /// Completes `handler` when the socket becomes readable, or fails.
  template <class Handler>
  void async_wait_readable(Handler&& handler) {
    socket_.async_wait(net::socket_base::wait_read,
                       ExactlyAllocated<std::decay_t<Handler>>{std::forward<Handler>(handler)});
  }

  /// Half-closes (FIN) once the outbox is sent, so that a close frame still waiting
  /// there goes out first.
  void shutdown_write() {
    std::lock_guard lock(outbox_->mutex);
    if (outbox_->empty() || outbox_->failure) {
      error_code ignored;
      socket_.shutdown(net::socket_base::shutdown_send, ignored);
    } else {
      outbox_->shut_after = true;
    }
  }

 private:
  // Sends what the kernel takes now, in one system call, without waiting (the
  // socket is non-blocking). Less than `size` means the kernel's buffer is full: the
  // rest waits for writability.
  template <class ConstBuffers>
  std::size_t send_now(const ConstBuffers& buffers, error_code& ec) {
    std::size_t done = socket_.write_some(buffers, ec);
    if (ec == net::error::would_block || ec == net::error::try_again) ec = {};
    return done;
  }

  // Arms one wait for writability (outbox mutex held); its handler sends what it can
  // and waits again while bytes are left, then tells the owner (on_progress).
  void flush_later_locked() {
    if (outbox_->flushing) return;
    outbox_->flushing = true;
    socket_.async_wait(net::socket_base::wait_write, [outbox = outbox_, owner = owner, this](const error_code& waited) {
      auto alive = owner.lock();  // the socket lives while this runs
      {
        std::lock_guard lock(outbox->mutex);
        outbox->flushing = false;
        if (waited || !alive) {
          if (!outbox->failure) outbox->failure = waited ? waited : net::error::operation_aborted;
        } else {
          error_code ec;
          std::size_t n =
              send_now(net::buffer(outbox->bytes.data() + outbox->sent, outbox->bytes.size() - outbox->sent), ec);
          outbox->sent += n;
          outbox->delivered += n;
          if (n != 0) outbox->last_progress = Clock::now();
          if (ec) {
            outbox->failure = ec;
          } else if (outbox->empty()) {
            outbox->bytes.clear();
            outbox->sent = 0;
            if (outbox->shut_after) {
              error_code ignored;
              socket_.shutdown(net::socket_base::shutdown_send, ignored);
            }
            if (outbox->bytes.capacity() > (1u << 20)) std::string().swap(outbox->bytes);
          } else {
            flush_later_locked();
          }
        }
      }
      if (alive && outbox->on_progress) outbox->on_progress();
    });
  }

  // A quarter of the socket's receive buffer now (0 where it cannot be read).
  std::size_t receive_buffer_quarter() noexcept {
#ifdef __linux__
    int rcvbuf = 0;
    socklen_t size = sizeof rcvbuf;
    if (::getsockopt(socket_.native_handle(), SOL_SOCKET, SO_RCVBUF, &rcvbuf, &size) == 0 && rcvbuf > 0)
      return static_cast<std::size_t>(rcvbuf) / 4;
#endif
    return 0;
  }
  bool set_receive_low_water(int mark) noexcept {
#ifdef __linux__
    return ::setsockopt(socket_.native_handle(), SOL_SOCKET, SO_RCVLOWAT, &mark, sizeof mark) == 0;
#else
    (void)mark;
    return false;
#endif
  }

  // Lowering the mark must wake a wait armed under the higher one when enough bytes
  // are there already: Linux does so since 4.18 (tcp_set_rcvlowat).
  static bool kernel_wakes_on_lowered_mark() noexcept {
#ifdef __linux__
    static const bool yes = [] {
      utsname name{};
      int major = 0, minor = 0;
      return ::uname(&name) == 0 && std::sscanf(name.release, "%d.%d", &major, &minor) == 2 &&
             (major > 4 || (major == 4 && minor >= 18));
    }();
    return yes;
#else
    return false;
#endif
  }

  Socket socket_;
  std::shared_ptr<Outbox> outbox_ = std::make_shared<Outbox>();
  std::size_t low_water_cap_ = 0;  // 0: the mark stays 1 (see enable_low_water)
  int low_water_ = 1;              // SO_RCVLOWAT now
};

// Beast closes the lowest layer when one of its own timeouts fires.
inline void beast_close_socket(SocketLayer& s) {
  error_code ignored;
  s.socket().close(ignored);
}

// Half-close only: the peer's close reply may still be in flight, and shutting the
// reading side too would answer it with a reset that loses our close frame.
inline void teardown(boost::beast::role_type, SocketLayer& s, error_code& ec) {
  s.shutdown_write();
  ec = {};
}
template <class Handler>
void async_teardown(boost::beast::role_type, SocketLayer& s, Handler&& handler) {
  s.shutdown_write();
  net::post(s.get_executor(), [h = std::forward<Handler>(handler)]() mutable { h(error_code{}); });
}

/// How large a buffer for one message the adapter keeps between messages (its read
/// buffer, the string for the next diverted payload); a larger one is let go after use.
inline constexpr std::size_t kKeptMessageBuffer = 256 * 1024;

/// Buffers the plaintext bytes under the WebSocket stream and scans their frames.
/// Thread safety: none; the adapter serialises everything with its stream mutex.
template <class Next>
class ScanLayer {
 public:
  using next_layer_type = Next;
  using executor_type = typename Next::executor_type;

  template <class... Args>
  explicit ScanLayer(Args&&... args) : next_(std::forward<Args>(args)...) {}

  Next& next_layer() noexcept { return next_; }
  executor_type get_executor() noexcept { return next_.get_executor(); }

  const FrameScanner& scanner() const noexcept { return scanner_; }
  FrameScanner& scanner() noexcept { return scanner_; }
  std::size_t buffered() const noexcept { return buffer_.size(); }
  /// The connection is about to wait for bytes: an empty buffer of small reads is given
  /// back, so that an idle connection holds none (the next read takes a fresh one from
  /// the allocator's per-thread cache). A larger one, of a connection large frames
  /// flow on, is kept for them.
  void release_idle_buffer() noexcept {
    if (buffer_.size() == 0 && buffer_.capacity() != 0 && buffer_.capacity() <= kReleasedWhenIdle)
      buffer_.shrink_to_fit();
  }
  /// The transport error a pump met (EOF, reset); reported by the next read.
  const error_code& transport_error() const noexcept { return transport_error_; }

  /// Starts scanning once the handshake is done: frames the server sent right
  /// after its 101 response are already among the captured bytes. Returns how many
  /// messages Beast must read before its own buffer is empty (see frame_left_).
  std::uint64_t start_scanning() {
    capturing_ = false;
    std::uint64_t beast_messages = 0;
    auto end = captured_.find("\r\n\r\n");
    if (end != std::string::npos && end + 4 < captured_.size()) {
      // These bytes are in Beast's own buffer already: count them, take nothing out.
      auto* tail = reinterpret_cast<unsigned char*>(captured_.data()) + end + 4;
      scanner_.feed(tail, captured_.size() - end - 4, tail, false);
      // Beast reads the messages that began there; one more if the bytes end inside
      // a message (or after a control frame: Beast reads on to the next message).
      beast_messages = scanner_.events() + (scanner_.bytes_since_event() != 0 ? 1 : 0);
      if (scanner_.mid_header()) {
        precise_ = false;  // the rest of a header Beast holds: hand bytes over as they come
      } else {
        frame_left_ = scanner_.payload_remaining();  // the rest of the frame Beast began
      }
    }
    captured_.clear();
    captured_.shrink_to_fit();
    if (!early_.empty()) {  // what came behind the 101 response, kept from Beast (see capture)
      auto* out = static_cast<unsigned char*>(buffer_.prepare(early_.size()).data());
      std::memcpy(out, early_.data(), early_.size());
      buffer_.commit(scanner_.feed(out, early_.size(), out));
      std::string().swap(early_);
    }
    return beast_messages;
  }

  /// True when every byte handed to Beast belonged to frames it finished, so the
  /// buffer begins with a frame Beast has not seen (see read_some).
  bool between_frames() const noexcept { return precise_ && frame_left_ == 0; }
  /// Bytes of the frame Beast is reading that it has not been given yet; 0 while
  /// Beast has every byte of the frames it began (see read_some).
  std::uint64_t frame_left() const noexcept { return frame_left_; }
  /// Beast is given bytes frame by frame (false only when the 101 response's bytes
  /// ended inside a frame header Beast then held).
  bool precise() const noexcept { return precise_; }
  /// The bytes buffered and not yet read.
  net::const_buffer buffered_data() const noexcept { return buffer_.data(); }
  /// Takes `n` bytes (whole frames read without Beast) off the front of the buffer.
  // Inlined: once per message on the read path.
  [[gnu::always_inline]] void discard(std::size_t n) {
    if (diverting_ || diverted_ready_) diverted_at_ -= n;  // never past it (see diverted_payload)
    buffer_.consume(n);
    if (buffer_.size() == 0 && buffer_.capacity() > kShrinkAbove) buffer_.shrink_to_fit();
  }

  /// The size of the frame at the front of `bytes` (header and payload), or 0 when
  /// its header is not complete yet.
  static std::uint64_t frame_size(const unsigned char* p, std::size_t n) noexcept {
    auto header = peek_frame_header(p, n);
    if (header.length == 0) return 0;
    constexpr std::uint64_t kHuge = std::uint64_t{1} << 62;  // a length Beast will refuse anyway
    return header.payload > kHuge ? kHuge : header.length + header.payload;
  }

  /// Large payloads are received into a string of their own instead of the buffer:
  /// a plain data frame of `from` to `max` payload bytes that does not arrive in one
  /// read (0: never). The adapter then hands that string over whole (no copy) when it
  /// reads the frame itself (diverted_payload); when Beast reads instead, the bytes
  /// are put back in the stream first (restore_diverted).
  void divert_payloads(std::size_t from, std::size_t max) noexcept {
    divert_from_ = from;
    divert_max_ = max;
  }
  /// The payload of the frame at the front of the buffer, whose header is
  /// `header_length` bytes, when it was diverted and has arrived whole; else null.
  std::string* diverted_payload(std::size_t header_length) noexcept {
    return diverted_ready_ && diverted_at_ == header_length ? &diverted_ : nullptr;
  }
  /// Moves the diverted payload into `out` (whose old string is kept for the next
  /// one); then discard() the frame's header.
  void take_diverted(std::string& out) {
    out.swap(diverted_);
    diverted_ready_ = false;
    // The engine keeps the message's own string too: an idle connection that once
    // got a large message holds at most kKeptMessageBuffer more for it.
    if (diverted_.capacity() > kKeptMessageBuffer) std::string().swap(diverted_);
  }

  /// Reads what the transport has without waiting, up to `limit` buffered bytes.
  /// Returns false when nothing more can be read now.
  bool pump(std::size_t chunk, std::size_t limit) {
    bool got = false;
    stopped_at_a_message_ = false;
    const auto events_before = scanner_.events();
    while (!transport_error_ && buffer_.size() < limit) {
      error_code ec;
      // Reads start small and grow (x4, up to `chunk`) each time one fills its space:
      // a connection that only ever gets small messages keeps a 1 KiB buffer, not
      // `chunk` (a quarter of a page instead of a page of every idle connection).
      std::size_t want = std::min(chunk, chunk_now_);
      std::size_t n = 0;
      if (diverting_) {
        n = read_diverted(chunk, want, ec);
      } else {
        // While large frames flow, a frame's header is read on its own (a header
        // at most, with a few payload bytes), so that its payload can be diverted
        // from its first byte.
        if (probe_header_ && scanner_.payload_remaining() == 0) want = kHeaderProbe;
        // A spare byte in front only while the scanner holds one back (see feed()):
        // otherwise the bytes are scanned in place, never moved.
        auto space = buffer_.prepare(want + 1);
        auto* front = static_cast<unsigned char*>(space.data());
        auto* in = front + (scanner_.holding() ? 1 : 0);
        set_no_wait(true);
        n = next_.read_some(net::buffer(in, want), ec);
        set_no_wait(false);
        if (n == want && want == chunk_now_) chunk_now_ = std::min(chunk, chunk_now_ * 4);
        if (n != 0) {
          std::size_t kept = scanner_.feed(in, n, front);
          std::size_t diverted = 0;
          if (divert_from_ != 0) {
            const std::uint64_t large = large_plain_frame();
            probe_header_ = large != 0;  // a read that ends inside one: large frames flow
            if (probe_header_) diverted = start_diverting(front, kept, large);
          }
          buffer_.commit(kept - diverted);
        }
      }
      if (n != 0) got = true;
      if (ec == net::error::would_block) break;
      if (ec) transport_error_ = ec;
      // A short read drained a plain socket. Under TLS keep going: a read returns
      // one record, and OpenSSL may hold more (it reads ahead).
      if constexpr (std::is_same_v<Next, SocketLayer>) {
        if (n < want) break;
      }
      // A whole message is here: let it be read before buffering megabytes more. The
      // unread rest stays in the kernel (the socket stays readable) or in OpenSSL's
      // record buffer, which the next pump reads first (see stopped_at_a_message).
      if constexpr (kStopsAtAMessage) {
        if (scanner_.events() != events_before) {
          stopped_at_a_message_ = true;
          break;
        }
      }
    }
    return got;
  }

  /// Before a pump, while large frames stream (the frame being received, or the last
  /// one, has at least kLowWaterFrom payload bytes): the socket's mark goes up to its
  /// cap, so the bytes arriving while the reader reads them do not wake the I/O
  /// thread (its epoll hears of every arrival on a socket it watches, whether or not
  /// anything waits there). Every wait for readability lowers it as it is armed
  /// (low_water_for_waiting).
  void low_water_for_reading() noexcept {
    if constexpr (kOverSocket) {
      if (!scanner_.broken() && scanner_.payload_total() >= SocketLayer::kLowWaterFrom)
        lowest().set_low_water(SocketLayer::kHighWater);
    }
  }
  /// Before a wait for readability: the socket wakes it once the frame being received
  /// can end (plain TCP: its payload bytes still to come; under TLS, less what OpenSSL
  /// may hold already), and on every byte when no frame is partly received. Never
  /// more than must still arrive, so a wait cannot sleep through the frame's end; nor
  /// more than `at_most` (a streamed message's next part is ready sooner).
  void low_water_for_waiting(std::uint64_t at_most = ~std::uint64_t{0}) noexcept {
    if constexpr (kOverSocket) {
      const std::uint64_t mark = std::min(socket_bytes_needed(), at_most);
      lowest().set_low_water(static_cast<std::size_t>(std::min<std::uint64_t>(mark, SIZE_MAX)));
    }
  }
  /// The bytes the socket must still receive before the frame being received can end
  /// (0 when no frame is partly received).
  std::uint64_t socket_bytes_needed() const noexcept {
    if constexpr (!kOverSocket) {
      return 0;
    } else {
      if (scanner_.broken() || scanner_.mid_header()) return 0;
      const std::uint64_t rest = scanner_.payload_remaining();
      const std::uint64_t held = next_.held_plaintext_bound();
      return rest > held ? rest - held : 0;
    }
  }

  /// The last pump stopped because a whole message had arrived, before the layer
  /// below said it had nothing more: under TLS, records may wait in OpenSSL that no
  /// socket readiness announces, so a wait for readability must pump first.
  bool stopped_at_a_message() const noexcept { return stopped_at_a_message_; }

  /// While set, a read of the layer below that finds nothing fails at once with
  /// would_block (SocketLayer::no_wait, under TLS or not; a test's fake layer has one too).
  void set_no_wait(bool on) noexcept {
    if constexpr (requires { next_.no_wait; }) {
      next_.no_wait = on;
    } else {
      next_.next_layer().no_wait = on;
    }
  }

  SocketLayer& lowest() noexcept {
    if constexpr (std::is_same_v<Next, SocketLayer>) {
      return next_;
    } else {
      return next_.next_layer();
    }
  }

  // Beast's reads. Beast gets at most the rest of the frame at the front: its own
  // buffer then never holds bytes past the frame it is reading, so between
  // messages the adapter may read whole frames itself (between_frames()).
  template <class MutableBuffers>
  std::size_t read_some(const MutableBuffers& buffers, error_code& ec) {
    restore_diverted();
    for (;;) {
      const auto* front = static_cast<const unsigned char*>(buffer_.data().data());
      std::size_t available = buffer_.size();
      if (precise_ && frame_left_ == 0 && available != 0) {
        frame_left_ = frame_size(front, available);
        if (frame_left_ == 0 && transport_error_) frame_left_ = available;  // a cut header: Beast reports it
      }
      std::uint64_t allowed = precise_ ? frame_left_ : available;
      if (available != 0 && allowed != 0) {
        std::size_t n =
            net::buffer_copy(buffers, net::buffer(buffer_.data().data(), std::min<std::uint64_t>(available, allowed)));
        buffer_.consume(n);
        if (precise_) frame_left_ -= n;
        if (buffer_.size() == 0 && buffer_.capacity() > kShrinkAbove) buffer_.shrink_to_fit();
        ec = {};
        return n;
      }
      if (transport_error_) {
        ec = transport_error_;
        return 0;
      }
      // Only a blocking read (close handshake, read by hand) gets here. Bytes that
      // were only pings leave nothing: read on.
      auto space = buffer_.prepare(16 * 1024 + 1);
      auto* out = static_cast<unsigned char*>(space.data());
      auto* in = out + (scanner_.holding() ? 1 : 0);
      std::size_t n = next_.read_some(net::buffer(in, 16 * 1024), ec);
      if (n == 0) return 0;  // ec says why (a deadline, the end of the stream)
      buffer_.commit(scanner_.feed(in, n, out));
      low_water_for_waiting();  // a wait armed meanwhile must not wait for these bytes
    }
  }
  template <class MutableBuffers>
  std::size_t read_some(const MutableBuffers& buffers) {
    return or_throw([&](error_code& ec) { return read_some(buffers, ec); });
  }
  template <class ConstBuffers>
  std::size_t write_some(const ConstBuffers& buffers, error_code& ec) {
    return next_.write_some(buffers, ec);
  }
  template <class ConstBuffers>
  std::size_t write_some(const ConstBuffers& buffers) {
    return next_.write_some(buffers);
  }

  template <class MutableBuffers, class Handler>
  auto async_read_some(const MutableBuffers& buffers, Handler&& handler) {
    auto ex = net::get_associated_executor(handler, next_.get_executor());
    return next_.async_read_some(buffers, net::bind_executor(ex, [this, buffers, h = std::forward<Handler>(handler)](
                                                                     error_code ec, std::size_t n) mutable {
                                   if (capturing_ && n != 0) n = capture(buffers, n);
                                   h(ec, n);
                                 }));
  }
  template <class ConstBuffers, class Handler>
  auto async_write_some(const ConstBuffers& buffers, Handler&& handler) {
    return next_.async_write_some(buffers, std::forward<Handler>(handler));
  }

 private:
  // The handshake's reads: the bytes are kept for start_scanning, and when they hold the
  // end of a 101 response's head, Beast gets the head only: the frames the server sent
  // right behind it (often in the same packet) stay in this buffer, scanned as any
  // others, instead of starting in Beast's own buffer, which the adapter cannot see
  // (see start_scanning). Returns how many bytes Beast gets.
  template <class MutableBuffers>
  std::size_t capture(const MutableBuffers& buffers, std::size_t n) {
    const std::size_t before = captured_.size();
    captured_.append(static_cast<const char*>(net::buffer_sequence_begin(buffers)->data()), n);
    if (head_seen_) return n;
    const auto end = captured_.find("\r\n\r\n", before >= 3 ? before - 3 : 0);
    if (end == std::string::npos) return n;
    head_seen_ = true;
    const std::size_t head = end + 4;  // > before: the end was not in the earlier bytes
    if (captured_.size() == head || captured_.rfind("HTTP/1.1 101 ", 0) != 0) return n;
    early_.assign(captured_, head);
    captured_.resize(head);
    return head - before;
  }

  // The payload size of the frame being received when it is one whose payload may be
  // diverted, else 0.
  std::uint64_t large_plain_frame() const noexcept {
    if (!scanner_.in_plain_data_payload()) return 0;
    const std::uint64_t total = scanner_.payload_total();
    return total >= divert_from_ && total <= divert_max_ ? total : 0;
  }

  // After a feed of `kept` output bytes at `front` (not committed yet) that ended
  // inside the payload of a large plain frame of `total` bytes: diverts it when all of
  // its payload so far came in this read (the last bytes of the output; they move to
  // the string) and most of it is still to come. Returns how many bytes left the output.
  std::size_t start_diverting(const unsigned char* front, std::size_t kept, std::uint64_t total) {
    if (diverted_ready_) return 0;
    const auto seen = static_cast<std::size_t>(total - scanner_.payload_remaining());
    if (seen > kept || total - seen < seen) return 0;  // copying what came would cost more
    diverted_filled_ = seen;
    if (diverted_.size() < seen) diverted_.resize(seen);
    std::memcpy(diverted_.data(), front + kept - seen, seen);
    diverted_at_ = buffer_.size() + kept - seen;
    diverting_ = true;
    return seen;
  }

  // Reads the rest of the diverted payload into its string, which grows with what
  // arrives (never with what the header announced: a peer that announces 1 GiB and
  // sends nothing costs nothing). Reuses the size of the last string without filling.
  std::size_t read_diverted(std::size_t chunk, std::size_t& want, error_code& ec) {
    // The scanner is inside the diverted frame until its last byte: it knows the rest.
    const std::size_t total = diverted_filled_ + static_cast<std::size_t>(scanner_.payload_remaining());
    const std::size_t need = std::min(total, diverted_filled_ + chunk);
    if (diverted_.size() < need) diverted_.resize(need);
    want = std::min(total, diverted_.size()) - diverted_filled_;
    set_no_wait(true);
    std::size_t n = next_.read_some(net::buffer(diverted_.data() + diverted_filled_, want), ec);
    set_no_wait(false);
    if (n == 0) return 0;
    scanner_.skip_payload(reinterpret_cast<const unsigned char*>(diverted_.data()) + diverted_filled_, n);
    diverted_filled_ += n;
    if (diverted_filled_ == total) {
      diverted_.resize(total);
      diverting_ = false;
      diverted_ready_ = true;
      probe_header_ = true;
    }
    return n;
  }

  // Beast reads next: a diverted payload goes back into the stream where it came
  // from, so Beast sees every byte in order (a rare path: the frame was one the
  // adapter does not read itself after all, a close, a read by hand with Beast).
  void restore_diverted() {
    if (!diverting_ && !diverted_ready_) return;
    const auto* data = static_cast<const unsigned char*>(buffer_.data().data());
    const std::size_t size = buffer_.size();
    boost::beast::flat_buffer whole;
    auto* out = static_cast<unsigned char*>(whole.prepare(size + diverted_filled_).data());
    std::memcpy(out, data, diverted_at_);
    std::memcpy(out + diverted_at_, diverted_.data(), diverted_filled_);
    std::memcpy(out + diverted_at_ + diverted_filled_, data + diverted_at_, size - diverted_at_);
    whole.commit(size + diverted_filled_);
    buffer_ = std::move(whole);
    diverting_ = diverted_ready_ = false;
    diverted_filled_ = 0;
  }

  // A pump stops at a whole message over a socket or TLS (not over an HTTP/2 stream,
  // whose own inbox is read to the end).
  static constexpr bool kStopsAtAMessage = requires { Next::kPumpStopsAtAMessage; };
  // A socket of this connection's own is below (not an HTTP/2 stream): its
  // SO_RCVLOWAT is the adapter's to set (see low_water_for_reading).
  static constexpr bool kOverSocket = requires(const Next& n) { n.held_plaintext_bound(); };
  static constexpr std::size_t kShrinkAbove = 1u << 20;
  static constexpr std::size_t kReleasedWhenIdle = 16 * 1024 + 1;  // a read of 16 KiB and its spare byte
  static constexpr std::size_t kHeaderProbe = 14;                  // the longest server frame header
  static constexpr std::size_t kFirstChunk = 1024;                 // the first reads' size (see pump)
  Next next_;
  boost::beast::flat_buffer buffer_;
  FrameScanner scanner_;
  bool capturing_ = true;
  std::string captured_;
  bool head_seen_ = false;  // the handshake response's head has ended
  std::string early_;       // the bytes behind a 101 response's head, until start_scanning
  error_code transport_error_;
  bool precise_ = true;           // Beast gets bytes frame by frame (false: as they come)
  std::uint64_t frame_left_ = 0;  // bytes of the frame at the front Beast has yet to get
  // One diverted payload at a time (see divert_payloads): while it arrives, nothing
  // else is buffered after its header; once whole, frames after it are.
  std::size_t divert_from_ = 0, divert_max_ = 0;
  std::string diverted_;
  std::size_t diverted_filled_ = 0;      // payload bytes in diverted_ so far
  std::size_t diverted_at_ = 0;          // where its payload belongs in buffer_ (just after its header)
  bool diverting_ = false;               // arriving
  bool diverted_ready_ = false;          // whole, not yet read
  bool probe_header_ = false;            // large frames flow: read the next header on its own
  bool stopped_at_a_message_ = false;    // see stopped_at_a_message()
  std::size_t chunk_now_ = kFirstChunk;  // what pump reads at most now (grows to its `chunk`)
};

template <class Next>
void teardown(boost::beast::role_type role, ScanLayer<Next>& s, error_code& ec) {
  using boost::beast::websocket::teardown;
  teardown(role, s.next_layer(), ec);
}
template <class Next, class Handler>
void async_teardown(boost::beast::role_type role, ScanLayer<Next>& s, Handler&& handler) {
  using boost::beast::websocket::async_teardown;
  async_teardown(role, s.next_layer(), std::forward<Handler>(handler));
}

}  // namespace wscengine::beast::detail

template <class Handler, class Executor>
struct boost::asio::associated_executor<wscengine::beast::detail::ExactlyAllocated<Handler>, Executor> {
  using type = associated_executor_t<Handler, Executor>;
  static type get(const wscengine::beast::detail::ExactlyAllocated<Handler>& h,
                  const Executor& e = Executor()) noexcept {
    return associated_executor<Handler, Executor>::get(h.handler, e);
  }
};
