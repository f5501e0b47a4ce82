// wscengine — Beast adapter internals: finds WebSocket frame boundaries in the
// bytes received, without decoding payloads, so the adapter knows whether a whole
// message is buffered before it asks Beast to read one (a synchronous read of
// buffered data is several times cheaper than an asynchronous one).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <deque>
#include <string>
#include <utility>

namespace wscengine::beast::detail {

/// The header of the frame at the front of some bytes (RFC 6455 §5.2).
struct FrameHeader {
  std::size_t length = 0;       ///< header bytes; 0 when the header is not complete yet
  std::uint64_t payload = 0;    ///< payload bytes
  bool masked = false;          ///< a masking key follows the length
  bool minimal_length = false;  ///< the shortest length form, and under 2^63 (§5.2 requires both)
};

/// Reads the header at the front of `n` bytes at `p` without consuming anything.
// Inlined: it runs once per message on the read path.
[[gnu::always_inline]] inline FrameHeader peek_frame_header(const unsigned char* p, std::size_t n) noexcept {
  FrameHeader h;
  if (n < 2) return h;
  unsigned len7 = p[1] & 0x7f;
  h.masked = (p[1] & 0x80) != 0;
  std::size_t length = 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0) + (h.masked ? 4 : 0);
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

/// Counts, in a server-to-client byte stream: complete data messages and close
/// frames ("events": each ends one read) and pong frames. A malformed header makes
/// it `broken()`: a read must then run so the library reports the violation.
///
/// It also takes the server's well-formed ping frames out of the stream: Beast
/// answers a ping only while it reads a message, so an idle connection would never
/// answer its server's pings (and servers drop clients that do not). The adapter
/// answers the pings it is given by `take_pings()` at once instead.
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
      if (payload_remaining_ != 0) {
        std::size_t take = payload_remaining_ < n ? static_cast<std::size_t>(payload_remaining_) : n;
        if (ping_frame_) ping_payload_.append(reinterpret_cast<const char*>(in), take);
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
        held_ = strip_pings && byte == 0x89;  // FIN + ping, no RSV: decided at the next byte
        if (!held_) *out++ = byte;
      } else {
        if (header_length_ == 2) {
          unsigned len7 = header_[1] & 0x7f;
          bool masked = (header_[1] & 0x80) != 0;
          header_needed_ = 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0) + (masked ? 4 : 0);
          // Only a well-formed ping is taken out: FIN, no RSV bits, unmasked, <= 125 bytes.
          ping_frame_ = header_[0] == 0x89 && !masked && len7 <= 125;
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

  /// True while the first byte of a possible ping is held back: the next feed may
  /// write one byte more than it reads, so its output must start one byte early.
  bool holding() const noexcept { return held_; }

  std::uint64_t events() const noexcept { return events_; }
  std::uint64_t pongs() const noexcept { return pongs_; }
  bool broken() const noexcept { return broken_; }
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
  /// Counts `n` payload bytes of the current data frame that the caller received
  /// into a buffer of its own (not a ping: those are always fed).
  void skip_payload(std::uint64_t n) noexcept {
    payload_remaining_ -= n;
    bytes_since_event_ += n;
    if (payload_remaining_ == 0) frame_done();
  }

  /// The payloads of the pings taken out of the stream since the last call.
  std::deque<std::string> take_pings() { return std::exchange(pings_, {}); }
  bool has_pings() const noexcept { return !pings_.empty(); }

 private:
  void parse_header() noexcept {
    fin_ = (header_[0] & 0x80) != 0;
    opcode_ = header_[0] & 0x0f;
    std::uint64_t len = header_[1] & 0x7f;
    if (len == 126) {
      len = (std::uint64_t{header_[2]} << 8) | header_[3];
    } else if (len == 127) {
      len = 0;
      for (int i = 2; i < 10; ++i) len = (len << 8) | header_[i];
    }
    bool control = (opcode_ & 0x8) != 0;
    bool known = opcode_ <= 2 || opcode_ == 8 || opcode_ == 9 || opcode_ == 10;
    bool masked = (header_[1] & 0x80) != 0;  // RFC 6455 §5.1: a server never masks
    bool reserved_bits = (header_[0] & 0x30) != 0 || (control && (header_[0] & 0x40) != 0);
    if (!known || (control && (len > 125 || !fin_)) || (len >> 63) != 0 || masked || reserved_bits) broken_ = true;
    header_length_ = 0;
    header_needed_ = 0;
    payload_remaining_ = len;
    if (len == 0) frame_done();
  }

  void frame_done() noexcept {
    if (ping_frame_) {
      pings_.push_back(std::move(ping_payload_));
      ping_payload_.clear();
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
  bool ping_frame_ = false;     // the current frame is a well-formed ping
  bool strip_current_ = false;  // ... and its bytes are taken out of the stream
  bool held_ = false;           // the first byte of a possible ping is not written yet
  std::string ping_payload_;
  std::deque<std::string> pings_;
};

}  // namespace wscengine::beast::detail
