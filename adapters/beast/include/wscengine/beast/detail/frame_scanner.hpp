// wscengine — Beast adapter internals: finds WebSocket frame boundaries in the
// bytes received, without decoding payloads, so the adapter knows whether a whole
// message is buffered before it asks Beast to read one (a synchronous read of
// buffered data is several times cheaper than an asynchronous one).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include <wscengine/beast/detail/fifo.hpp>

namespace wscengine::beast::detail {

/// The header of the frame at the front of some bytes (RFC 6455 §5.2).
struct FrameHeader {
  std::size_t length = 0;       ///< header bytes; 0 when the header is not complete yet
  std::uint64_t payload = 0;    ///< payload bytes
  bool masked = false;          ///< a masking key follows the length
  bool minimal_length = false;  ///< the shortest length form, and under 2^63 (§5.2 requires both)
};

/// How many bytes a frame header has, from its second byte (the 7-bit length, which
/// says whether 2 or 8 length bytes follow, and the mask bit).
constexpr std::size_t frame_header_size(unsigned char second) noexcept {
  const unsigned len7 = second & 0x7f;
  return 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0) + ((second & 0x80) != 0 ? 4 : 0);
}

/// Reads the header at the front of `n` bytes at `p` without consuming anything.
/// The one place a frame's length is decoded (the scanner and the adapter use it).
// Inlined: it runs once per message on the read path.
[[gnu::always_inline]] inline FrameHeader peek_frame_header(const unsigned char* p, std::size_t n) noexcept {
  FrameHeader h;
  if (n < 2) return h;
  unsigned len7 = p[1] & 0x7f;
  h.masked = (p[1] & 0x80) != 0;
  const std::size_t length = frame_header_size(p[1]);
  if (n < length) return h;
  h.length = length;
  h.payload = len7;
  h.minimal_length = true;
  if (len7 == 126) {
    h.payload = (std::uint64_t{p[2]} << 8) | p[3];
    h.minimal_length = h.payload >= 126;
  } else if (len7 == 127) {
    h.payload = 0;
    for (int i = 2; i < 10; ++i) h.payload = (h.payload << 8) | p[i];
    h.minimal_length = h.payload >= 65536 && (h.payload >> 63) == 0;
  }
  return h;
}

/// How many of the last bytes of valid UTF-8 begin a code point that is not complete
/// (0 to 3): what a text message must not end with (RFC 6455 §8.1).
inline std::size_t incomplete_code_point(const unsigned char* p, std::size_t n) noexcept {
  for (std::size_t back = 1; back <= 4 && back <= n; ++back) {
    const unsigned char c = p[n - back];
    if ((c & 0xc0) == 0x80) continue;  // a continuation byte: its lead byte is further back
    const std::size_t length = c < 0x80 ? 1 : (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3 : 4;
    return length > back ? back : 0;
  }
  return 0;
}

/// An incremental UTF-8 check (RFC 3629 as RFC 6455 §8.1 requires: no overlong
/// forms, no surrogates, nothing above U+10FFFF), fed in pieces of any size. ASCII
/// runs are checked eight bytes at a time. A plain value.
class Utf8Check {
 public:
  /// Checks `n` more bytes; false at the first byte that cannot be UTF-8.
  bool write(const unsigned char* p, std::size_t n) noexcept {
    std::size_t i = 0;
    while (i < n) {
      if (need_ == 0) {
        // Between code points: skip ASCII sixteen, then eight bytes at a time.
        while (i + 16 <= n) {
          std::uint64_t a, b;
          std::memcpy(&a, p + i, 8);
          std::memcpy(&b, p + i + 8, 8);
          if (((a | b) & 0x8080808080808080ull) != 0) break;
          i += 16;
        }
        while (i + 8 <= n) {
          std::uint64_t w;
          std::memcpy(&w, p + i, 8);
          if ((w & 0x8080808080808080ull) != 0) break;
          i += 8;
        }
        if (i == n) break;
        unsigned char b = p[i++];
        if (b < 0x80) continue;
        if (!start(b)) return false;
        continue;
      }
      unsigned char b = p[i++];
      if (b < low_ || b > high_) return false;
      --need_;
      low_ = 0x80;
      high_ = 0xbf;
    }
    return true;
  }
  /// True when the bytes so far end between code points.
  bool complete() const noexcept { return need_ == 0; }

 private:
  // The first byte of a multi-byte sequence: how many follow, and the range of the
  // next byte (narrower after E0, ED, F0 and F4: overlong forms, surrogates, > U+10FFFF).
  bool start(unsigned char b) noexcept {
    low_ = 0x80;
    high_ = 0xbf;
    if (b >= 0xc2 && b <= 0xdf) {
      need_ = 1;
    } else if (b >= 0xe0 && b <= 0xef) {
      need_ = 2;
      if (b == 0xe0) low_ = 0xa0;
      if (b == 0xed) high_ = 0x9f;
    } else if (b >= 0xf0 && b <= 0xf4) {
      need_ = 3;
      if (b == 0xf0) low_ = 0x90;
      if (b == 0xf4) high_ = 0x8f;
    } else {
      return false;  // a continuation byte, C0, C1, or F5..FF
    }
    return true;
  }

  unsigned need_ = 0;  // continuation bytes still to come
  unsigned char low_ = 0x80, high_ = 0xbf;
};

/// Counts, in a server-to-client byte stream: complete data messages and close
/// frames ("events": each ends one read) and pong frames. A malformed header makes
/// it `broken()`: a read must then run so the library reports the violation.
///
/// It also takes the server's well-formed ping frames out of the stream: Beast
/// answers a ping only while it reads a message, so an idle connection would never
/// answer its server's pings (and servers drop clients that do not). The adapter
/// answers the pings it is given by `take_pings()` at once instead.
///
/// Strict order (RFC 6455 §5.5.2, §7.1.7): once a frame fails the connection (a
/// header that breaks a rule: RSV bits, a reserved opcode, a fragmented or long
/// control frame, a masked frame, a continuation with no message begun, a new data
/// frame inside a fragmented one) or the server's close frame has begun, no later
/// ping is taken: after a violation the client sends its close frame and nothing
/// else; after the server's close, only the close reply. Text that is not valid
/// UTF-8 (RFC 6455 §8.1) is such a frame too: the scanner checks the UTF-8 of every
/// uncompressed text message as its bytes arrive. A compressed message can only be
/// checked by inflating it, which the reader does: a ping behind one is handed out
/// (take_pings) only once the reader has read that message.
///
/// With record_pongs(), the payloads of the server's well-formed pongs are queued
/// too, in order with the pings (take_control), for an observer of control frames;
/// the pongs stay in the stream.
/// Thread safety: none; the owner serialises calls.
class FrameScanner {
 public:
  /// Scans `n` bytes at `in` and writes the bytes that stay in the stream to
  /// `out`; returns how many. With `strip_pings`, the bytes of well-formed ping
  /// frames do not stay. Without, pings stay (Beast will answer them too) but are
  /// still handed to take_pings(): an unsolicited extra pong is allowed (RFC 6455
  /// §5.5.3), an unanswered ping is not.
  ///
  /// `out` may be `in`, except while holding(): then it must be one byte before
  /// `in` (the held first byte of a possible ping is written during this call).
  std::size_t feed(const unsigned char* in, std::size_t n, unsigned char* out, bool strip_pings = true) noexcept {
    unsigned char* const begin = out;
    while (n != 0) {
      // The common frame, whole in `in`: an unfragmented text or binary frame with a
      // 7-bit length, no RSV bits, unmasked, outside a fragmented message. Counted here
      // at once, with what the byte-by-byte path below would set (and nothing else).
      if (payload_remaining_ == 0 && header_length_ == 0 && n >= 2 && (in[0] == 0x81 || in[0] == 0x82) && in[1] < 126 &&
          n >= 2u + in[1] && !in_fragmented_ && !broken_ && !close_seen_) {
        const std::size_t len = in[1];
        header_[0] = in[0];
        header_[1] = in[1];
        fin_ = true;
        opcode_ = in[0] & 0x0f;
        ping_frame_ = pong_frame_ = strip_current_ = false;
        if (opcode_ == 1) {
          utf8_ = {};
          if (!utf8_.write(in + 2, len) || !utf8_.complete()) broken_ = true;
        }
        checking_utf8_ = false;
        ++events_;
        bytes_since_event_ = 0;
        if (out != in) std::memmove(out, in, 2 + len);
        out += 2 + len;
        in += 2 + len;
        n -= 2 + len;
        continue;
      }
      if (payload_remaining_ != 0) {
        std::size_t take = payload_remaining_ < n ? static_cast<std::size_t>(payload_remaining_) : n;
        if (ping_frame_ || pong_frame_) control_payload_.append(reinterpret_cast<const char*>(in), take);
        if (checking_utf8_ && !utf8_.write(in, take)) broken_ = true;
        if (!strip_current_) {
          if (out != in) std::memmove(out, in, take);
          out += take;
        }
        payload_remaining_ -= take;
        bytes_since_event_ += take;
        in += take;
        n -= take;
        if (payload_remaining_ == 0) frame_done();
        continue;
      }
      unsigned char byte = *in++;
      --n;
      ++bytes_since_event_;
      header_[header_length_++] = byte;
      if (header_length_ == 1) {
        held_ = strip_pings && byte == 0x89 && !stopped();  // FIN + ping, no RSV: decided at the next byte
        if (!held_) *out++ = byte;
      } else {
        if (header_length_ == 2) {
          header_needed_ = static_cast<unsigned>(frame_header_size(header_[1]));
          // Only a well-formed ping is taken out: FIN, no RSV bits, unmasked, <= 125 bytes.
          const bool small_unmasked = (header_[1] & 0x80) == 0 && (header_[1] & 0x7f) <= 125 && !stopped();
          ping_frame_ = header_[0] == 0x89 && small_unmasked;
          pong_frame_ = record_pongs_ && header_[0] == 0x8a && small_unmasked;
          strip_current_ = ping_frame_ && held_;
          if (held_ && !strip_current_) *out++ = header_[0];
          held_ = false;
        }
        if (!strip_current_) *out++ = byte;
      }
      if (header_length_ >= 2 && header_length_ == header_needed_) parse_header();
    }
    return static_cast<std::size_t>(out - begin);
  }

  /// Queue the server's pongs for take_control() too. Set before the first byte is fed.
  void record_pongs(bool on) noexcept { record_pongs_ = on; }

  /// permessage-deflate was negotiated: RSV1 on a message's first frame is allowed.
  /// Set before the first byte is fed.
  void set_compression(bool negotiated) noexcept { compression_ = negotiated; }

  /// True while the first byte of a possible ping is held back: the next feed may
  /// write one byte more than it reads, so its output must start one byte early.
  bool holding() const noexcept { return held_; }

  std::uint64_t events() const noexcept { return events_; }
  std::uint64_t pongs() const noexcept { return pongs_; }
  bool broken() const noexcept { return broken_; }
  /// The server's close frame has begun: nothing after it is answered.
  bool close_seen() const noexcept { return close_seen_; }
  /// No ping is taken any more (broken, or after the server's close).
  bool stopped() const noexcept { return broken_ || close_seen_; }
  /// Bytes scanned since the end of the last event (a partial or a control frame).
  std::uint64_t bytes_since_event() const noexcept { return bytes_since_event_; }
  /// In the middle of a frame header (or holding a possible ping's first byte).
  bool mid_header() const noexcept { return header_length_ != 0 || held_; }
  /// Payload bytes of the current frame still to come.
  std::uint64_t payload_remaining() const noexcept { return payload_remaining_; }
  /// Inside the payload of an unfragmented text or binary frame without RSV bits or
  /// mask (one the adapter may read without Beast). Computed from the header kept in
  /// header_ (nothing overwrites it before the payload ends): no cost per frame.
  bool in_plain_data_payload() const noexcept {
    return payload_remaining_ != 0 && !broken_ && (header_[0] == 0x81 || header_[0] == 0x82) &&
           (header_[1] & 0x80) == 0;
  }
  /// The payload length of the current frame (while in its payload).
  std::uint64_t payload_total() const noexcept { return peek_frame_header(header_, sizeof header_).payload; }
  /// Counts `n` payload bytes (at `data`) of the current data frame that the caller
  /// received into a buffer of its own (not a ping: those are always fed).
  void skip_payload(const unsigned char* data, std::size_t n) noexcept {
    if (checking_utf8_ && !utf8_.write(data, n)) broken_ = true;
    payload_remaining_ -= n;
    bytes_since_event_ += n;
    if (payload_remaining_ == 0) frame_done();
  }

  /// The payloads of the pings taken out of the stream and not yet handed out, in
  /// order, up to the first one behind a compressed message the reader has not read
  /// yet (`events_read`: how many events the reader has taken; see events()).
  std::vector<std::string> take_pings(std::uint64_t events_read = ~std::uint64_t{0}) {
    std::vector<std::string> out;
    for (auto& frame : take_control(events_read))
      if (!frame.pong) out.push_back(std::move(frame.payload));
    return out;
  }
  /// A ping taken out of the stream, or a pong seen (with record_pongs).
  struct ControlFrame {
    std::string payload;
    std::uint64_t events_needed = 0;  // events the reader must have read before its pong
    bool pong = false;
  };
  /// The pings (and recorded pongs) not yet handed out, in the order they came, up
  /// to the first one behind a compressed message not read yet (as take_pings).
  std::vector<ControlFrame> take_control(std::uint64_t events_read = ~std::uint64_t{0}) {
    std::vector<ControlFrame> out;
    while (!control_.empty() && control_.front().events_needed <= events_read) {
      out.push_back(std::move(control_.front()));
      control_.pop_front();
    }
    return out;
  }
  /// Pings (or recorded pongs) wait to be taken.
  bool has_control() const noexcept { return !control_.empty(); }

 private:
  void parse_header() noexcept {
    fin_ = (header_[0] & 0x80) != 0;
    opcode_ = header_[0] & 0x0f;
    const FrameHeader header = peek_frame_header(header_, header_length_);
    const std::uint64_t len = header.payload;
    bool control = (opcode_ & 0x8) != 0;
    bool known = opcode_ <= 2 || opcode_ == 8 || opcode_ == 9 || opcode_ == 10;
    bool masked = header.masked;  // RFC 6455 §5.1: a server never masks
    // RSV1 marks a compressed message (RFC 7692 §6): only on the first frame of a data
    // message, and only when permessage-deflate was negotiated.
    bool reserved_bits =
        (header_[0] & 0x30) != 0 || ((header_[0] & 0x40) != 0 && (control || opcode_ == 0 || !compression_));
    // §5.4: a continuation continues a fragmented message; a new one waits for its end.
    bool out_of_sequence = !control && (opcode_ == 0 ? !in_fragmented_ : in_fragmented_);
    if (!known || (control && (len > 125 || !fin_)) || (len >> 63) != 0 || masked || reserved_bits ||
        (known && out_of_sequence))
      broken_ = true;
    if (!control && known) {
      in_fragmented_ = !fin_;
      if (opcode_ != 0) {  // a new message: is it text to check, or compressed?
        const bool deflated = (header_[0] & 0x40) != 0;
        checking_utf8_ = opcode_ == 1 && !deflated;
        utf8_ = {};
        if (deflated) unread_until_ = events_ + 1;  // checked by the reader, who inflates it
      }
    }
    if (opcode_ == 8) close_seen_ = true;
    header_length_ = 0;
    header_needed_ = 0;
    payload_remaining_ = len;
    if (len == 0) frame_done();
  }

  void frame_done() noexcept {
    if (pong_frame_) {
      control_.push_back({std::move(control_payload_), unread_until_, true});
      control_payload_.clear();
      pong_frame_ = false;
    }
    if (ping_frame_) {
      control_.push_back({std::move(control_payload_), unread_until_, false});
      control_payload_.clear();
      ping_frame_ = false;
      bool stripped = strip_current_;
      strip_current_ = false;
      if (stripped) return;
    }
    if (opcode_ == 8) {
      ++events_;
      bytes_since_event_ = 0;
    } else if (opcode_ == 10) {
      ++pongs_;
    } else if (opcode_ <= 2 && fin_) {
      if (checking_utf8_ && !utf8_.complete()) broken_ = true;  // ends inside a code point
      checking_utf8_ = false;
      ++events_;
      bytes_since_event_ = 0;
    }
  }

  unsigned char header_[14] = {};
  unsigned header_length_ = 0;
  unsigned header_needed_ = 0;
  std::uint64_t payload_remaining_ = 0;
  bool fin_ = false;
  unsigned opcode_ = 0;
  std::uint64_t events_ = 0;
  std::uint64_t pongs_ = 0;
  std::uint64_t bytes_since_event_ = 0;
  bool broken_ = false;
  bool compression_ = false;     // RSV1 allowed on a message's first frame
  bool close_seen_ = false;      // the server's close frame began
  bool in_fragmented_ = false;   // a fragmented data message has begun and not ended
  bool ping_frame_ = false;      // the current frame is a well-formed ping
  bool strip_current_ = false;   // ... and its bytes are taken out of the stream
  bool held_ = false;            // the first byte of a possible ping is not written yet
  bool record_pongs_ = false;    // queue pongs in control_ too
  bool pong_frame_ = false;      // the current frame is a well-formed pong to queue
  std::string control_payload_;  // of the current ping or pong
  Fifo<ControlFrame> control_;
  std::uint64_t unread_until_ = 0;  // events up to the last compressed message begun
  bool checking_utf8_ = false;      // the current data message is uncompressed text
  Utf8Check utf8_;
};

}  // namespace wscengine::beast::detail
