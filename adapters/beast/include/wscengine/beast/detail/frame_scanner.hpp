// wscengine — Beast adapter internals: finds WebSocket frame boundaries in the
// bytes received, without decoding payloads, so the adapter knows whether a whole
// message is buffered before it asks Beast to read one (a synchronous read of
// buffered data is several times cheaper than an asynchronous one).
#pragma once

#include <cstddef>
#include <cstdint>

namespace wscengine::beast::detail {

/// Counts, in a server-to-client byte stream: complete data messages and close
/// frames ("events": each ends one read) and pong frames. A malformed header makes
/// it `broken()`: a read must then run so the library reports the violation.
/// Thread safety: none; the owner serialises calls.
class FrameScanner {
 public:
  void feed(const unsigned char* p, std::size_t n) noexcept {
    while (n != 0) {
      if (payload_remaining_ != 0) {
        std::size_t take = payload_remaining_ < n ? static_cast<std::size_t>(payload_remaining_) : n;
        payload_remaining_ -= take;
        p += take;
        n -= take;
        if (payload_remaining_ == 0) frame_done();
        continue;
      }
      header_[header_length_++] = *p++;
      --n;
      if (header_length_ == 2) {
        unsigned len7 = header_[1] & 0x7f;
        header_needed_ = 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0) + ((header_[1] & 0x80) ? 4 : 0);
      }
      if (header_length_ >= 2 && header_length_ == header_needed_) parse_header();
    }
  }

  std::uint64_t events() const noexcept { return events_; }
  std::uint64_t pongs() const noexcept { return pongs_; }
  bool broken() const noexcept { return broken_; }

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
    if (!known || (control && (len > 125 || !fin_)) || (len >> 63) != 0) broken_ = true;
    header_length_ = 0;
    header_needed_ = 0;
    payload_remaining_ = len;
    if (len == 0) frame_done();
  }

  void frame_done() noexcept {
    if (opcode_ == 8) {
      ++events_;
    } else if (opcode_ == 10) {
      ++pongs_;
    } else if (opcode_ <= 2 && fin_) {
      ++events_;
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
  bool broken_ = false;
};

}  // namespace wscengine::beast::detail
