// The Beast adapter's ScanLayer over a fake next layer: bytes arrive cut every way
// (one byte at a time, across every header byte, in large pieces) with payloads of
// every length form (7-, 16- and 64-bit), and are read the two ways the adapter
// reads them: whole plain frames straight from the buffer, or diverted payloads
// handed over whole (read_whole_frame_locked), and everything else through
// read_some as Beast reads it, which must see exactly the stream minus the pings
// the scanner took out, diverted payloads put back where they came from.
#include <gtest/gtest.h>

#include <boost/asio/buffer.hpp>
#include <boost/asio/io_context.hpp>

#include <wscengine/beast/detail/layers.hpp>

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "frames.hpp"  // tools/server
#include "support/text.hpp"

namespace net = boost::asio;
using wscengine::beast::detail::error_code;
using wscengine::beast::detail::peek_frame_header;
using wscengine::beast::detail::ScanLayer;

namespace {

/// The transport under the scan layer: a byte stream that arrives in steps. A read
/// takes what has arrived (up to the buffer); with nothing there it fails at once
/// (would_block under no_wait, as SocketLayer; timed_out otherwise).
class FakeNext {
 public:
  using executor_type = net::io_context::executor_type;

  FakeNext(net::io_context& io, const std::string& wire) : io_(io), wire_(wire) {}
  executor_type get_executor() noexcept { return io_.get_executor(); }
  bool no_wait = false;

  void arrive(std::size_t n) { arrived_ = std::min(wire_.size(), arrived_ + n); }
  bool all_arrived() const { return arrived_ == wire_.size(); }
  std::size_t unread() const { return arrived_ - read_; }

  template <class MutableBuffers>
  std::size_t read_some(const MutableBuffers& buffers, error_code& ec) {
    auto b = *net::buffer_sequence_begin(buffers);
    const std::size_t n = std::min(b.size(), arrived_ - read_);
    if (n == 0) {
      ec = no_wait ? error_code(net::error::would_block) : error_code(net::error::timed_out);
      return 0;
    }
    std::memcpy(b.data(), wire_.data() + read_, n);
    read_ += n;
    ec = {};
    return n;
  }
  template <class ConstBuffers>
  std::size_t write_some(const ConstBuffers& buffers, error_code& ec) {
    ec = {};
    return net::buffer_size(buffers);
  }

 private:
  net::io_context& io_;
  const std::string& wire_;
  std::size_t arrived_ = 0;
  std::size_t read_ = 0;
};

/// A server frame (unmasked) with the shortest length form for its payload.
std::string frame(unsigned char first, const std::string& payload) {
  return wscengine::tools::server_frame(first, payload);
}

struct Expected {
  std::string wire;                   // what the server sent
  std::string without_pings;          // what Beast must see
  std::vector<std::string> messages;  // "t:" or "b:" + payload, in order
  std::vector<std::string> pings;     // payloads, in order
};

std::string filler(std::size_t n, char seed) {
  std::string s(n, '\0');
  for (std::size_t i = 0; i < n; ++i) s[i] = static_cast<char>('a' + (seed + i * 7) % 26);
  return s;
}

/// Text and binary messages at the edges of each length form, pings and a pong
/// between them, a fragmented message with a ping inside, a close frame last.
Expected stream(const std::vector<std::size_t>& sizes) {
  Expected e;
  auto add = [&](const std::string& bytes, bool is_ping = false) {
    e.wire += bytes;
    if (!is_ping) e.without_pings += bytes;
  };
  int i = 0;
  for (std::size_t size : sizes) {
    const bool text = i % 2 == 0;
    std::string payload = filler(size, static_cast<char>(i));
    add(frame(text ? 0x81 : 0x82, payload));
    e.messages.push_back((text ? "t:" : "b:") + payload);
    if (i % 3 == 0) {
      std::string p = wscengine::test::cat("ping ", i);
      add(frame(0x89, p), true);
      e.pings.push_back(p);
    }
    if (i % 4 == 1) add(frame(0x8a, "pong"));
    ++i;
  }
  add(frame(0x01, "frag"));
  add(frame(0x89, "inside"), true);
  e.pings.push_back("inside");
  add(frame(0x80, "ment"));
  e.messages.push_back("t:fragment");
  add(frame(0x88, "\x03\xe8"));
  e.messages.push_back("close");
  return e;
}

/// How messages are taken off the layer.
enum class Reader {
  adapter,    // plain frames and diverted payloads directly, the rest through read_some
  beast,      // everything through read_some (diverted payloads restored first)
  alternate,  // adapter and beast by turns, message by message
};

/// Reads one message through read_some, as Beast does: frame by frame, in reads of
/// `piece` bytes, skipping pongs. Appends every byte read to `seen`.
std::string read_like_beast(ScanLayer<FakeNext>& layer, std::size_t piece, std::string& seen) {
  std::string message;
  bool text = false;
  for (;;) {
    std::string header;
    auto take = [&](std::size_t n, std::string& into) {
      while (n != 0) {
        std::string chunk(std::min(n, piece), '\0');
        error_code ec;
        std::size_t got = layer.read_some(net::buffer(chunk.data(), chunk.size()), ec);
        if (ec || got == 0) throw std::runtime_error("read_some failed inside a whole message: " + ec.message());
        into.append(chunk.data(), got);
        seen.append(chunk.data(), got);
        n -= got;
      }
    };
    take(2, header);
    take(wscengine::beast::detail::frame_header_size(static_cast<unsigned char>(header[1])) - 2, header);
    auto h = peek_frame_header(reinterpret_cast<const unsigned char*>(header.data()), header.size());
    std::string payload;
    take(static_cast<std::size_t>(h.payload), payload);
    const unsigned opcode = static_cast<unsigned char>(header[0]) & 0x0f;
    const bool fin = (static_cast<unsigned char>(header[0]) & 0x80) != 0;
    if (opcode == 0x8) return "close";
    if (opcode == 0xa) continue;  // a pong: Beast reads on
    if (opcode == 0x9) throw std::runtime_error("a ping the scanner should have taken out reached Beast");
    if (opcode != 0) text = opcode == 1;
    message += payload;
    if (fin) return (text ? "t:" : "b:") + message;
  }
}

/// The adapter's direct read (read_whole_frame_locked, without the UTF-8 and size
/// rules, which the contract tests cover): a whole plain frame at the front of the
/// buffer, or its diverted payload; pongs in front are skipped. Empty: Beast must read.
std::string read_directly(ScanLayer<FakeNext>& layer, bool& was_diverted) {
  if (!layer.between_frames()) return {};
  for (;;) {
    auto bytes = layer.buffered_data();
    const auto* p = static_cast<const unsigned char*>(bytes.data());
    auto h = peek_frame_header(p, bytes.size());
    if (h.length == 0 || h.masked || !h.minimal_length) return {};
    std::string* diverted = layer.diverted_payload(h.length);
    if (!diverted && bytes.size() - h.length < h.payload) return {};
    if (p[0] == 0x8a) {
      layer.discard(h.length + static_cast<std::size_t>(h.payload));
      continue;
    }
    if (p[0] != 0x81 && p[0] != 0x82) return {};
    std::string out = p[0] == 0x81 ? "t:" : "b:";
    was_diverted = diverted != nullptr;
    if (diverted) {
      std::string payload;
      layer.take_diverted(payload);
      EXPECT_EQ(payload.size(), h.payload);
      out += payload;
      layer.discard(h.length);
    } else {
      out.append(reinterpret_cast<const char*>(p + h.length), static_cast<std::size_t>(h.payload));
      layer.discard(h.length + static_cast<std::size_t>(h.payload));
    }
    return out;
  }
}

struct Outcome {
  std::vector<std::string> messages;
  std::vector<std::string> pings;
  std::string beast_saw;
  std::size_t diverted = 0;  // messages handed over from a diverted payload
};

/// Feeds `e.wire` in steps of `cut` bytes; after each step pumps (reads of `chunk`
/// bytes) and takes every whole message, as the adapter does when its socket wait
/// completes.
Outcome run(const Expected& e, std::size_t cut, std::size_t chunk, bool divert, Reader reader) {
  net::io_context io;
  ScanLayer<FakeNext> layer(io, e.wire);
  EXPECT_EQ(layer.start_scanning(), 0u);
  if (divert) layer.divert_payloads(16 * 1024, 1u << 24);
  Outcome out;
  std::uint64_t consumed = 0;
  int turn = 0;
  while (out.messages.size() < e.messages.size()) {
    const bool stuck = layer.next_layer().all_arrived() && layer.next_layer().unread() == 0;
    layer.next_layer().arrive(cut);
    layer.pump(chunk, 1u << 26);
    for (auto& p : layer.scanner().take_pings(consumed)) out.pings.push_back(std::move(p));
    EXPECT_FALSE(layer.scanner().broken());
    bool progress = false;
    while (layer.scanner().events() > consumed) {
      const bool direct = reader == Reader::adapter || (reader == Reader::alternate && turn % 2 == 0);
      ++turn;
      std::string m;
      bool was_diverted = false;
      if (direct) m = read_directly(layer, was_diverted);
      if (was_diverted) ++out.diverted;
      if (m.empty()) m = read_like_beast(layer, 4093, out.beast_saw);
      out.messages.push_back(std::move(m));
      ++consumed;
      progress = true;
    }
    if (stuck && !progress) {
      ADD_FAILURE() << "every byte arrived, " << out.messages.size() << " of " << e.messages.size() << " messages read";
      break;
    }
  }
  for (auto& p : layer.scanner().take_pings(consumed)) out.pings.push_back(std::move(p));
  return out;
}

void check(const Expected& e, std::size_t cut, std::size_t chunk, bool divert, Reader reader) {
  SCOPED_TRACE(wscengine::test::cat("cut ", cut, ", chunk ", chunk, divert ? ", diverting" : "", ", reader ",
                                    static_cast<int>(reader)));
  Outcome got = run(e, cut, chunk, divert, reader);
  ASSERT_EQ(got.messages.size(), e.messages.size());
  for (std::size_t i = 0; i < e.messages.size(); ++i)
    ASSERT_EQ(got.messages[i], e.messages[i]) << "message " << i << " (" << e.messages[i].size() << " bytes)";
  EXPECT_EQ(got.pings, e.pings);
  if (reader == Reader::beast) {
    EXPECT_TRUE(got.beast_saw == e.without_pings) << "Beast saw " << got.beast_saw.size() << " bytes, the stream has "
                                                  << e.without_pings.size() << " without its pings";
  }
}

// 7-bit: 0, 1, 125; 16-bit: 126, 127, 65535; 64-bit: 65536 and more.
const std::vector<std::size_t> kSmallSizes = {0, 1, 125, 126, 127, 200, 65535, 65536};
const std::vector<std::size_t> kLargeSizes = {0, 125, 126, 16383, 16384, 16385, 65535, 65536, 300000, 1000, 1 << 20};

}  // namespace

TEST(ScanLayer, BytesArrivingOneAtATimeAndAcrossEveryHeaderByte) {
  const Expected e = stream(kSmallSizes);
  for (std::size_t cut : {1u, 2u, 3u, 5u, 9u, 10u, 11u, 13u, 14u, 15u})
    for (bool divert : {false, true})
      for (Reader reader : {Reader::adapter, Reader::beast, Reader::alternate}) check(e, cut, 16384, divert, reader);
}

TEST(ScanLayer, LargePayloadsArrivingInPiecesAreDivertedAndPutBack) {
  const Expected e = stream(kLargeSizes);
  for (std::size_t cut : {127u, 1000u, 4096u, 16385u, 70000u, 1u << 21})
    for (std::size_t chunk : {7u, 16384u, 65536u})
      for (bool divert : {false, true})
        for (Reader reader : {Reader::adapter, Reader::beast, Reader::alternate}) check(e, cut, chunk, divert, reader);
}

TEST(ScanLayer, DivertedPayloadsAreHandedOverWholeWithoutTheBuffer) {
  // The adapter's reason to divert: a large frame that spans reads arrives in a string
  // of its own. With the whole 1 MiB message arriving in 4 KiB steps, it must be.
  const Expected e = stream({1 << 20, 10});
  Outcome got = run(e, 4096, 16384, true, Reader::adapter);
  ASSERT_EQ(got.messages, e.messages);
  EXPECT_EQ(got.diverted, 1u) << "the 1 MiB payload came as a string of its own";
  Outcome plain = run(e, 4096, 16384, false, Reader::adapter);
  ASSERT_EQ(plain.messages, e.messages);
  EXPECT_EQ(plain.diverted, 0u);
}
