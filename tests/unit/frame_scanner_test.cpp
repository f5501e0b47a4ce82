// The Beast adapter's FrameScanner: message boundaries, pongs, broken headers, and
// the pings it takes out of the stream so that an idle client answers them.
#include <gtest/gtest.h>

#include <wscengine/beast/detail/frame_scanner.hpp>

#include <cstdint>
#include <string>
#include <vector>

#include "support/text.hpp"

using wscengine::beast::detail::FrameScanner;

namespace {

std::string frame(unsigned char first, const std::string& payload) {
  std::string out{static_cast<char>(first), static_cast<char>(payload.size())};
  return out + payload;
}
std::string text(const std::string& p, bool fin = true) { return frame(fin ? 0x81 : 0x01, p); }
std::string cont(const std::string& p, bool fin) { return frame(fin ? 0x80 : 0x00, p); }
std::string ping(const std::string& p) { return frame(0x89, p); }
std::string pong(const std::string& p) { return frame(0x8a, p); }

// Feeds `bytes` in chunks of `chunk` (to cross every boundary), as the adapter does:
// in place, with one spare byte in front. Returns what stays in the stream.
std::string feed(FrameScanner& s, std::string bytes, std::size_t chunk, bool strip = true) {
  std::string kept;
  for (std::size_t at = 0; at < bytes.size(); at += chunk) {
    std::string part = wscengine::test::cat("_", bytes.substr(at, chunk));
    auto* front = reinterpret_cast<unsigned char*>(part.data());
    bool spare = strip && s.holding();  // as the adapter: shifted only while a byte is held
    auto n = s.feed(front + 1, part.size() - 1, spare ? front : front + 1, strip);
    EXPECT_LE(n, part.size());
    kept.append(part.data() + (spare ? 0 : 1), n);
  }
  return kept;
}

}  // namespace

TEST(FrameScanner, CountsMessagesAndPongsAcrossEveryChunking) {
  std::string stream = text("a") + text("frag", false) + pong("p") + cont("ment", true) + frame(0x88, "\x03\xe8");
  for (std::size_t chunk : {1u, 2u, 3u, 7u, 100u}) {
    FrameScanner s;
    EXPECT_EQ(feed(s, stream, chunk), stream) << "nothing but pings is taken out";
    EXPECT_EQ(s.events(), 3u) << "two messages and a close, chunk " << chunk;
    EXPECT_EQ(s.pongs(), 1u);
    EXPECT_FALSE(s.broken());
  }
}

TEST(FrameScanner, TakesPingsOutAndKeepsTheirPayloads) {
  std::string stream = ping("") + text("one", false) + ping("mid") + cont("two", true) + ping(std::string(125, 'x'));
  std::string without = text("one", false) + cont("two", true);
  for (std::size_t chunk : {1u, 2u, 5u, 1000u}) {
    FrameScanner s;
    EXPECT_EQ(feed(s, stream, chunk), without) << "chunk " << chunk;
    auto pings = s.take_pings();
    ASSERT_EQ(pings.size(), 3u);
    EXPECT_EQ(pings[0], "");
    EXPECT_EQ(pings[1], "mid");
    EXPECT_EQ(pings[2], std::string(125, 'x'));
    EXPECT_EQ(s.events(), 1u);
    EXPECT_FALSE(s.has_control());
  }
}

TEST(FrameScanner, AMaskedOrLongPingSplitAfterItsFirstByteIsKeptWhole) {
  std::string masked = {static_cast<char>(0x89), static_cast<char>(0x81), 1, 2, 3, 4, 'x'};
  std::string stream = text("a") + masked + text("b");
  for (std::size_t chunk : {1u, 3u, 4u}) {
    FrameScanner s;
    EXPECT_EQ(feed(s, stream, chunk), stream) << "chunk " << chunk;
    EXPECT_FALSE(s.has_control());
  }
}

TEST(FrameScanner, WithoutStrippingPingsStayButAreStillReported) {
  FrameScanner s;
  std::string stream = ping("early") + text("m");
  EXPECT_EQ(feed(s, stream, 3, false), stream);
  auto pings = s.take_pings();
  ASSERT_EQ(pings.size(), 1u);
  EXPECT_EQ(pings[0], "early");
}

TEST(FrameScanner, MalformedPingsStayForBeastToRejectAndMarkTheStreamBroken) {
  for (std::string bad : {frame(0x09, "p") /* no FIN */, frame(0xc9, "p") /* RSV1 */, frame(0xa9, "p") /* RSV2 */,
                          frame(0x83, "x") /* reserved opcode */, frame(0x81, "") + frame(0x8b, "") /* opcode 11 */}) {
    FrameScanner s;
    EXPECT_EQ(feed(s, bad, 1), bad);
    EXPECT_TRUE(s.broken());
    EXPECT_FALSE(s.has_control());
  }
  FrameScanner masked;
  std::string m = {static_cast<char>(0x89), static_cast<char>(0x81), 1, 2, 3, 4, 'x'};
  EXPECT_EQ(feed(masked, m, 1), m);
  EXPECT_TRUE(masked.broken()) << "a server never masks (RFC 6455 §5.1)";
}

// What the adapter learns from the bytes that came with the 101 response: how many
// messages Beast's own buffer began, and where inside a frame those bytes end.
TEST(FrameScanner, SaysWhereTheBytesEndRelativeToMessagesAndFrames) {
  FrameScanner whole;
  feed(whole, text("a") + text("b"), 64, false);
  EXPECT_EQ(whole.events(), 2u);
  EXPECT_EQ(whole.bytes_since_event(), 0u);
  EXPECT_FALSE(whole.mid_header());
  EXPECT_EQ(whole.payload_remaining(), 0u);

  FrameScanner mid_payload;
  feed(mid_payload, text("a") + text("bcdef").substr(0, 4), 64, false);  // 2 header bytes + "bc"
  EXPECT_EQ(mid_payload.events(), 1u);
  EXPECT_EQ(mid_payload.bytes_since_event(), 4u);
  EXPECT_FALSE(mid_payload.mid_header());
  EXPECT_EQ(mid_payload.payload_remaining(), 3u);

  FrameScanner mid_header;
  feed(mid_header, text("a") + text("b").substr(0, 1), 64, false);
  EXPECT_TRUE(mid_header.mid_header());
  EXPECT_EQ(mid_header.bytes_since_event(), 1u);

  FrameScanner after_control;  // a pong after the last message: Beast reads on to the next
  feed(after_control, text("a") + pong("p"), 64, false);
  EXPECT_EQ(after_control.events(), 1u);
  EXPECT_NE(after_control.bytes_since_event(), 0u);
  EXPECT_FALSE(after_control.mid_header());
}

// What the scan layer needs to receive a large payload elsewhere: whether the frame
// it is in is one the adapter may read itself, its size, payload bytes counted unseen.
TEST(FrameScanner, ReportsThePlainDataFrameItIsInAndCountsSkippedPayload) {
  FrameScanner s;
  feed(s, text("ab") + frame(0x82, std::string(3, 'x')).substr(0, 3), 64);  // 1 of 3 payload bytes
  EXPECT_TRUE(s.in_plain_data_payload());
  EXPECT_EQ(s.payload_total(), 3u);
  EXPECT_EQ(s.payload_total() - s.payload_remaining(), 1u);  // seen so far
  EXPECT_EQ(s.events(), 1u);
  s.skip_payload(reinterpret_cast<const unsigned char*>("ab"), 2);  // received into another buffer
  EXPECT_FALSE(s.in_plain_data_payload());
  EXPECT_EQ(s.events(), 2u);
  EXPECT_EQ(s.bytes_since_event(), 0u);

  // Not plain: a first fragment, RSV1 set (compressed), a control frame.
  for (unsigned char first : {0x02, 0xc2, 0x89}) {
    FrameScanner t;
    feed(t, frame(first, "abc").substr(0, 3), 64);
    EXPECT_FALSE(t.in_plain_data_payload()) << int(first);
    EXPECT_EQ(t.payload_total(), 3u);
  }
}

// Strict order: a ping after a frame that fails the connection, or after the server's
// close frame, is never taken (so never answered); it stays in the stream, behind the
// frame that ends it. Each violation is fed alone with the ping in one piece
// (coalesced), byte by byte, and in every chunk size in between; the pings before the
// violation are still taken.
TEST(FrameScanner, NoPingIsTakenAfterAViolationOrTheServersClose) {
  struct Violation {
    const char* what;
    std::string frames;
  };
  std::string masked = text("m");
  masked[1] = static_cast<char>(masked[1] | 0x80);
  masked.insert(2, "\x01\x02\x03\x04", 4);
  const std::vector<Violation> violations = {
      {"RSV1 without an extension", frame(0xc1, "rsv")},
      {"RSV3 on a binary frame", frame(0x92, "rsv")},
      {"text that is not UTF-8", text("ok\xc3\x28")},
      {"text that ends inside a code point", text("ok\xe2\x82")},
      {"reserved data opcode 3", frame(0x83, "x")},
      {"reserved control opcode 11", frame(0x8b, "x")},
      {"fragmented ping", frame(0x09, "frag")},
      {"ping of 126 bytes", std::string("\x89\x7e\x00\x7e", 4) + std::string(126, 'p')},
      {"continuation with no message begun", cont("orphan", true)},
      {"new data frame inside a fragmented one", text("one", false) + text("two")},
      {"masked frame from the server", masked},
      {"the server's close frame", frame(0x88, "\x03\xe8")},
  };
  for (const auto& v : violations) {
    const std::string stream = ping("before") + v.frames + ping("after") + text("later");
    for (std::size_t chunk : {std::size_t{1}, std::size_t{2}, std::size_t{3}, std::size_t{5}, stream.size()}) {
      FrameScanner s;
      std::string kept = feed(s, stream, chunk);
      auto pings = s.take_pings();
      ASSERT_EQ(pings.size(), 1u) << v.what << ", chunk " << chunk;
      EXPECT_EQ(pings[0], "before") << v.what;
      EXPECT_TRUE(s.stopped()) << v.what;
      EXPECT_EQ(kept, v.frames + ping("after") + text("later"))
          << v.what << ": only the ping before it left the stream";
    }
  }
}

TEST(FrameScanner, PingsBetweenFragmentsAndAfterWholeMessagesAreStillTaken) {
  const std::string stream =
      text("a", false) + ping("1") + cont("b", false) + ping("2") + cont("c", true) + ping("3") + text("d");
  for (std::size_t chunk : {std::size_t{1}, std::size_t{4}, stream.size()}) {
    FrameScanner s;
    feed(s, stream, chunk);
    auto pings = s.take_pings();
    EXPECT_EQ(pings.size(), 3u) << "chunk " << chunk;
    EXPECT_FALSE(s.stopped());
    EXPECT_EQ(s.events(), 2u);
  }
}

TEST(FrameScanner, Rsv1IsAllowedOnlyOnTheFirstFrameOfACompressedMessage) {
  FrameScanner negotiated;
  negotiated.set_compression(true);
  feed(negotiated, frame(0xc1, "deflated") + frame(0x41, "first") + cont("rest", true) + ping("p"), 3);
  EXPECT_FALSE(negotiated.stopped());
  EXPECT_EQ(negotiated.take_pings().size(), 1u);
  FrameScanner on_continuation;
  on_continuation.set_compression(true);
  feed(on_continuation, text("a", false) + frame(0xc0, "b") + ping("p"), 1);
  EXPECT_TRUE(on_continuation.broken());
  EXPECT_TRUE(on_continuation.take_pings().empty());
}

namespace {
// A binary frame of `n` bytes with the shortest length encoding: 7-, 16- or 64-bit.
std::string binary_of(std::size_t n) {
  std::string out{static_cast<char>(0x82)};
  if (n < 126) {
    out += static_cast<char>(n);
  } else if (n < 65536) {
    out += static_cast<char>(126);
    out += static_cast<char>(n >> 8);
    out += static_cast<char>(n & 0xff);
  } else {
    out += static_cast<char>(127);
    for (int shift = 56; shift >= 0; shift -= 8)
      out += static_cast<char>((static_cast<std::uint64_t>(n) >> shift) & 0xff);
  }
  return out + std::string(n, 'd');
}
}  // namespace

// With record_pongs (an observer of control frames), the server's pongs are queued in
// order with its pings, between data frames of every length encoding, however the
// bytes are cut; the pongs stay in the stream, the pings leave it as before.
TEST(FrameScanner, RecordedPongsComeInOrderWithThePingsAcrossEveryChunking) {
  const std::string stream = pong("") + binary_of(5) + ping("a") + binary_of(300) + pong(std::string(125, 'p')) +
                             binary_of(70000) + ping("b") + pong("c") + text("end");
  const std::string kept = pong("") + binary_of(5) + binary_of(300) + pong(std::string(125, 'p')) + binary_of(70000) +
                           pong("c") + text("end");
  for (std::size_t chunk : {std::size_t{1}, std::size_t{2}, std::size_t{3}, std::size_t{131}, stream.size()}) {
    SCOPED_TRACE(chunk);
    FrameScanner s;
    s.record_pongs(true);
    EXPECT_TRUE(feed(s, stream, chunk) == kept) << "only the pings leave the stream";
    auto control = s.take_control();
    ASSERT_EQ(control.size(), 5u);
    const std::vector<std::pair<bool, std::string>> expected = {
        {true, ""}, {false, "a"}, {true, std::string(125, 'p')}, {false, "b"}, {true, "c"}};
    for (std::size_t i = 0; i < expected.size(); ++i) {
      EXPECT_EQ(control[i].pong, expected[i].first) << i;
      EXPECT_EQ(control[i].payload, expected[i].second) << i;
    }
    EXPECT_EQ(s.pongs(), 3u);
    EXPECT_EQ(s.events(), 4u);
    EXPECT_FALSE(s.has_control());
  }
}

// Without record_pongs nothing changes: pongs are counted, not queued. With it, a pong
// after a violation (or the server's close) is not queued, as no ping is taken then;
// nor is a masked pong (itself the violation).
TEST(FrameScanner, PongsAreQueuedOnlyWhenAskedAndNeverAfterAViolation) {
  const std::string masked_pong = {static_cast<char>(0x8a), static_cast<char>(0x81), 1, 2, 3, 4, 'x'};
  for (std::size_t chunk : {std::size_t{1}, std::size_t{4}, std::size_t{100}}) {
    SCOPED_TRACE(chunk);
    FrameScanner plain;
    feed(plain, pong("x") + text("m"), chunk);
    EXPECT_EQ(plain.pongs(), 1u);
    EXPECT_FALSE(plain.has_control());

    FrameScanner after_violation;
    after_violation.record_pongs(true);
    feed(after_violation, pong("before") + frame(0x83, "x") + pong("after"), chunk);
    auto control = after_violation.take_control();
    ASSERT_EQ(control.size(), 1u);
    EXPECT_EQ(control[0].payload, "before");

    FrameScanner masked;
    masked.record_pongs(true);
    feed(masked, masked_pong, chunk);
    EXPECT_TRUE(masked.broken());
    EXPECT_FALSE(masked.has_control());
  }
}

// A pong behind a compressed message waits, as a ping does, until the reader has read
// that message: the observer hears of control frames in the order they came.
TEST(FrameScanner, APongBehindACompressedMessageWaitsForItsRead) {
  FrameScanner s;
  s.set_compression(true);
  s.record_pongs(true);
  feed(s, pong("1") + frame(0xc2, "deflated") + pong("2"), 1);
  auto first = s.take_control(0);
  ASSERT_EQ(first.size(), 1u);
  EXPECT_EQ(first[0].payload, "1");
  EXPECT_TRUE(s.take_control(0).empty()) << "the compressed message is not read yet";
  auto second = s.take_control(1);
  ASSERT_EQ(second.size(), 1u);
  EXPECT_EQ(second[0].payload, "2");
}
