// The cases of the fuzzing server, grouped like the Autobahn|Testsuite's client
// cases: framing, pings, reserved bits, opcodes, fragmentation, UTF-8, close,
// opening handshake, compression.
#include <zlib.h>

#include <functional>
#include <set>
#include <tuple>

#include "fuzzing_server.hpp"
#include "support/text.hpp"

namespace wscengine::conformance {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

Result ok(std::string what) { return {Verdict::ok, std::move(what)}; }
Result non_strict(std::string what) { return {Verdict::non_strict, std::move(what)}; }
Result failed(std::string what) { return {Verdict::failed, std::move(what)}; }

std::string printable(const std::string& s, std::size_t max = 24) {
  std::string out;
  for (unsigned char c : s.substr(0, max)) {
    if (c >= 0x20 && c < 0x7f) {
      out.push_back(static_cast<char>(c));
    } else {
      char hex[8];
      std::snprintf(hex, sizeof hex, "\\x%02x", c);
      out += hex;
    }
  }
  if (s.size() > max) out += "… (" + std::to_string(s.size()) + " bytes)";
  return out;
}

/// What the client did next, with fragments put together.
struct Incoming {
  enum Kind { message, ping, pong, close, eof, timeout, bad } kind = timeout;
  std::uint8_t opcode = 0;
  std::string payload;
  std::optional<std::uint16_t> code;
  std::string reason;
  std::string describe() const {
    switch (kind) {
      case message:
        return std::string(opcode == 1 ? "text" : "binary") + " '" + printable(payload) + "'";
      case ping:
        return "ping";
      case pong:
        return "pong '" + printable(payload) + "'";
      case close:
        return code ? "close " + std::to_string(*code) : "close (no code)";
      case eof:
        return "TCP closed without a close frame";
      case timeout:
        return "nothing";
      case bad:
        return "a malformed frame: " + payload;
    }
    return "?";
  }
};

Incoming next(Session& s, std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  Incoming in;
  std::string assembled;
  std::uint8_t opcode = 0;
  bool compressed = false;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    auto f = s.read_frame(std::max(left, 1ms));
    if (!f) {
      in.kind = s.eof() ? Incoming::eof : Incoming::timeout;
      return in;
    }
    if (!f->masked) {
      in.kind = Incoming::bad;
      in.payload = "unmasked client frame (RFC 6455 §5.3)";
      return in;
    }
    if (f->opcode >= 8) {
      in.opcode = f->opcode;
      in.payload = f->payload;
      if (f->opcode == 9) in.kind = Incoming::ping;
      if (f->opcode == 10) in.kind = Incoming::pong;
      if (f->opcode == 8) {
        in.kind = Incoming::close;
        if (f->payload.size() >= 2) {
          in.code = static_cast<std::uint16_t>((static_cast<std::uint8_t>(f->payload[0]) << 8) |
                                               static_cast<std::uint8_t>(f->payload[1]));
          in.reason = f->payload.substr(2);
        }
      }
      return in;
    }
    if (f->opcode != 0) {
      opcode = f->opcode;
      compressed = (f->rsv & 0x40) && s.compressed;
    }
    assembled += f->payload;
    if (f->fin) {
      in.kind = Incoming::message;
      in.opcode = opcode;
      in.payload = compressed ? inflate(assembled) : assembled;
      return in;
    }
  }
}

/// Accepts the client's opening handshake (with permessage-deflate if offered).
bool open(Session& s) {
  if (!s.read_request(5s)) return false;
  std::vector<std::string> extra;
  auto offer = s.request().header("Sec-WebSocket-Extensions");
  if (offer && offer->find("permessage-deflate") != std::string::npos) {
    // No context takeover either way: every message is deflated on its own.
    extra.push_back(
        "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover");
    s.compressed = true;
  }
  s.send_raw(s.accept_response(extra));
  return true;
}

using Expected = std::vector<std::pair<std::uint8_t, std::string>>;

/// The client echoes these messages in this order (pongs may come between).
Result expect_messages(Session& s, const Expected& expected, std::size_t pongs = 0,
                       const std::vector<std::string>& pong_payloads = {}) {
  std::size_t got = 0, got_pongs = 0;
  while (got < expected.size() || got_pongs < pongs) {
    auto in = next(s, 10s);
    if (in.kind == Incoming::pong) {
      if (got_pongs < pong_payloads.size() && in.payload != pong_payloads[got_pongs])
        return failed("pong " + std::to_string(got_pongs + 1) + " carried '" + printable(in.payload) +
                      "', not the ping's payload");
      ++got_pongs;
      continue;
    }
    if (in.kind == Incoming::ping) continue;
    if (in.kind != Incoming::message || got >= expected.size())
      return failed("expected " + (got < expected.size() ? "echo " + std::to_string(got + 1) : std::string("a pong")) +
                    ", got " + in.describe());
    if (in.opcode != expected[got].first || in.payload != expected[got].second)
      return failed("echo " + std::to_string(got + 1) + " differs: " + in.describe());
    ++got;
  }
  return ok("echoed " + std::to_string(expected.size()) + " message(s)" +
            (pongs ? ", answered " + std::to_string(pongs) + " ping(s)" : ""));
}

/// The server closes with 1000: the client answers with a close frame, at once.
Result close_normally(Session& s, Result so_far) {
  s.send_raw(close_frame(1000));
  auto t0 = Clock::now();
  auto in = next(s, 5s);
  // Unsolicited pongs (§5.5.3) and the client's own pings are allowed at any time.
  while (in.kind == Incoming::pong || in.kind == Incoming::ping) in = next(s, 5s);
  auto took = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0);
  if (in.kind == Incoming::message) return failed("sent a data message after the server's close: " + in.describe());
  if (in.kind != Incoming::close) return failed("no close reply; got " + in.describe());
  if (in.code && *in.code != 1000)
    return non_strict(so_far.observed + "; close reply with code " + std::to_string(*in.code) + ", not 1000");
  if (took > 1s) return non_strict(so_far.observed + "; close reply after " + std::to_string(took.count()) + " ms");
  return so_far;
}

/// The client must fail the connection, with one of `codes` in its close frame. With
/// `strict`, a pong for the ping sent right after the violation fails the case, and so
/// does a pong after the client's close frame (RFC 6455 §5.5.2, §7.1.7: after a failure
/// the client sends its close frame and nothing else).
Result expect_failure(Session& s, std::set<std::uint16_t> codes, std::chrono::milliseconds timeout = 5s,
                      bool strict = false) {
  for (;;) {
    auto in = next(s, timeout);
    if (strict && in.kind == Incoming::pong && in.payload == "after the violation")
      return failed("answered the ping that followed the violation before failing the connection");
    if (strict && in.kind == Incoming::close && next(s, 300ms).kind == Incoming::pong)
      return failed("sent a pong after its close frame");
    switch (in.kind) {
      case Incoming::pong:
      case Incoming::ping:
        continue;
      case Incoming::message:
        return failed("did not fail the connection: " + in.describe());
      case Incoming::close:
        if (in.code && codes.count(*in.code)) return ok("failed the connection with close " + std::to_string(*in.code));
        return non_strict("failed the connection with " + in.describe());
      case Incoming::eof:
        return non_strict("dropped TCP without a close frame");
      case Incoming::timeout:
        return failed("kept the connection open");
      case Incoming::bad:
        return failed(in.payload);
    }
  }
}

Case echo_case(std::string id, std::string title, std::string rfc, std::vector<std::string> frames, Expected expected,
               std::vector<std::string> pongs = {}, std::vector<std::string> client_args = {}) {
  return {std::move(id), std::move(title), std::move(rfc), std::move(client_args),
          [frames, expected, pongs](Session& s) {
            if (!open(s)) return failed("no opening handshake");
            for (const auto& f : frames) s.send_raw(f);
            auto r = expect_messages(s, expected, pongs.size(), pongs);
            if (r.verdict != Verdict::ok) return r;
            return close_normally(s, r);
          }};
}

/// How the frames that must fail the connection are written, with a ping after them.
enum class Delivery {
  alone,         ///< the violation, in its own writes (no ping follows)
  with_ping,     ///< the violation and a ping that follows it, in one write
  byte_by_byte,  ///< the violation and the ping, one byte per write
};

/// `good` frames are echoed first (as `expected`), then `bad` must fail it.
Case fail_case(std::string id, std::string title, std::string rfc, std::vector<std::string> good, Expected expected,
               std::vector<std::string> bad, std::set<std::uint16_t> codes, std::vector<std::string> client_args = {},
               Delivery delivery = Delivery::alone) {
  std::optional<FailSpec> spec;
  if (delivery == Delivery::alone) spec = FailSpec{good, expected, bad, codes};
  return {std::move(id),
          std::move(title),
          std::move(rfc),
          std::move(client_args),
          [good, expected, bad, codes, delivery](Session& s) {
            if (!open(s)) return failed("no opening handshake");
            for (const auto& f : good) s.send_raw(f);
            if (!expected.empty()) {
              auto r = expect_messages(s, expected);
              if (r.verdict != Verdict::ok) return r;
            }
            if (delivery == Delivery::alone) {
              for (const auto& f : bad) s.send_raw(f);
            } else {
              std::string all;
              for (const auto& f : bad) all += f;
              all += ping("after the violation");
              if (delivery == Delivery::with_ping) {
                s.send_raw(all);
              } else {
                for (char byte : all) s.send_raw(std::string(1, byte));
              }
            }
            return expect_failure(s, codes, 5s, delivery != Delivery::alone);
          },
          std::move(spec)};
}

/// A forged opening-handshake response: the client must not open the connection.
Case handshake_case(std::string id, std::string title, std::string rfc,
                    std::function<std::string(const Session&)> response, std::vector<std::string> client_args = {}) {
  return {std::move(id), std::move(title), std::move(rfc), std::move(client_args), [response](Session& s) {
            if (!s.read_request(5s)) return failed("no opening handshake");
            s.send_raw(response(s));
            s.send_raw(text("probe"));
            auto in = next(s, 3s);
            if (in.kind == Incoming::message) return failed("accepted the handshake (echoed the probe)");
            if (in.kind == Incoming::timeout) return failed("accepted the handshake (kept the connection)");
            if (in.kind == Incoming::close) return non_strict("opened, then sent " + in.describe());
            return ok("failed the connection before opening it");
          }};
}

std::string bytes(std::size_t n) {
  std::string out(n, '\0');
  for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<char>(i * 7 + 3);
  return out;
}
std::string letters(std::size_t n) {
  std::string out(n, 'a');
  for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<char>('a' + i % 26);
  return out;
}
std::string with_rsv(std::string frame, std::uint8_t rsv) {
  frame[0] = static_cast<char>(static_cast<std::uint8_t>(frame[0]) | rsv);
  return frame;
}
std::string raw(std::uint8_t opcode, std::string payload, bool fin = true) {
  return encode({fin, 0, opcode, std::move(payload)});
}
std::string compressed(std::uint8_t opcode, const std::string& payload, bool fin = true) {
  return encode({fin, 0x40, opcode, deflate(payload)});
}

// ------------------------------------------------- permessage-deflate parameters
// A server's side of RFC 7692 with state: one deflater for what it sends and one
// inflater for what it receives, each with its window and its context rule, so that
// a client that compresses with a larger window than it may, or keeps a context it
// said it would drop, produces echoes that do not inflate here.
class DeflateSide {
 public:
  DeflateSide(int server_bits, bool server_reset, int client_bits, bool client_reset)
      : server_bits_(server_bits), server_reset_(server_reset), client_bits_(client_bits), client_reset_(client_reset) {
    deflateInit2(&out_, Z_BEST_COMPRESSION, Z_DEFLATED, -server_bits_, 8, Z_DEFAULT_STRATEGY);
    inflateInit2(&in_, -client_bits_);
  }
  ~DeflateSide() {
    deflateEnd(&out_);
    inflateEnd(&in_);
  }
  DeflateSide(const DeflateSide&) = delete;
  DeflateSide& operator=(const DeflateSide&) = delete;

  /// One compressed message frame (RSV1 set).
  std::string frame(std::uint8_t opcode, const std::string& payload) {
    if (server_reset_) deflateReset(&out_);
    std::string out(deflateBound(&out_, payload.size()) + 64, '\0');
    out_.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(payload.data()));
    out_.avail_in = static_cast<uInt>(payload.size());
    out_.next_out = reinterpret_cast<Bytef*>(out.data());
    out_.avail_out = static_cast<uInt>(out.size());
    ::deflate(&out_, Z_SYNC_FLUSH);
    out.resize(out.size() - out_.avail_out);
    out.resize(out.size() - 4);  // the 00 00 ff ff a sync flush ends with (§7.2.1)
    return encode({true, 0x40, opcode, out});
  }

  /// The client's next message, inflated when RSV1 is set; `rsv1` tells which.
  /// A message that does not inflate with this side's window and context comes back
  /// as nullopt, with `why`.
  std::optional<std::string> receive(Session& s, bool& rsv1, std::uint8_t& opcode, std::string& why) {
    std::string assembled;
    for (;;) {
      auto f = s.read_frame(10s);
      if (!f) {
        why = s.eof() ? "TCP closed" : "nothing came";
        return std::nullopt;
      }
      if (f->opcode == 9 || f->opcode == 10) continue;  // pings and pongs may come between
      if (f->opcode == 8) {
        why = "a close frame";
        return std::nullopt;
      }
      if (f->opcode != 0) {
        opcode = f->opcode;
        rsv1 = (f->rsv & 0x40) != 0;
      }
      assembled += f->payload;
      if (f->fin) break;
    }
    if (!rsv1) return assembled;
    if (client_reset_) inflateReset(&in_);
    assembled.append("\x00\x00\xff\xff", 4);
    in_.next_in = reinterpret_cast<Bytef*>(assembled.data());
    in_.avail_in = static_cast<uInt>(assembled.size());
    std::string out;
    // A small output buffer makes zlib hold the history in its own window of 2^bits
    // bytes, so a reference further back fails ("invalid distance too far back"),
    // where a large buffer would find it there and let a too-large window pass.
    char chunk[16];
    int rc = Z_OK;
    do {
      in_.next_out = reinterpret_cast<Bytef*>(chunk);
      in_.avail_out = sizeof chunk;
      rc = ::inflate(&in_, Z_SYNC_FLUSH);
      out.append(chunk, sizeof chunk - in_.avail_out);
    } while (rc == Z_OK && (in_.avail_in > 0 || in_.avail_out == 0));
    if (rc != Z_OK && rc != Z_BUF_ERROR) {
      why = std::string("it does not inflate with a ") + std::to_string(1 << client_bits_) + "-byte window" +
            (client_reset_ ? " and no context: " : ": ") + (in_.msg ? in_.msg : "zlib error");
      return std::nullopt;
    }
    return out;
  }

 private:
  int server_bits_;
  bool server_reset_;
  int client_bits_;
  bool client_reset_;
  z_stream out_{};
  z_stream in_{};
};

// Pseudo-random bytes (they do not compress), the same for the same seed.
std::string noise(std::size_t n, std::uint32_t seed) {
  std::string out(n, '\0');
  for (auto& c : out) {
    seed = seed * 1664525u + 1013904223u;
    c = static_cast<char>(seed >> 24);
  }
  return out;
}

struct DeflateCase {
  std::string answer;  ///< the server's Sec-WebSocket-Extensions answer
  int server_bits = 15;
  bool server_reset = false;
  int client_bits = 15;
  bool client_reset = false;
  std::vector<std::string> offer_must_have{};  ///< words the client's offer must carry
  std::uint8_t opcode = 2;                     ///< binary: noise is not UTF-8
};

// Opens with `spec.answer`, sends `messages` compressed (text), and checks every echo:
// equal, inflating with the client's window and context rule, and with RSV1 as
// `compressed_echo` says (nullopt: either).
Result play_deflate(Session& s, const DeflateCase& spec, const std::vector<std::string>& messages,
                    std::function<std::optional<bool>(const std::string&)> compressed_echo = {}) {
  if (!s.read_request(5s)) return failed("no opening handshake");
  auto offer = s.request().header("Sec-WebSocket-Extensions").value_or("");
  if (offer.find("permessage-deflate") == std::string::npos) return failed("no permessage-deflate offered");
  for (const auto& word : spec.offer_must_have)
    if (offer.find(word) == std::string::npos) return failed("the offer '" + offer + "' lacks " + word);
  s.send_raw(s.accept_response({"Sec-WebSocket-Extensions: " + spec.answer}));
  s.compressed = true;
  DeflateSide side(spec.server_bits, spec.server_reset, spec.client_bits, spec.client_reset);
  for (std::size_t i = 0; i < messages.size(); ++i) {
    s.send_raw(side.frame(spec.opcode, messages[i]));
    bool rsv1 = false;
    std::uint8_t opcode = 0;
    std::string why;
    auto echo = side.receive(s, rsv1, opcode, why);
    std::string which = "echo " + std::to_string(i + 1) + " of " + std::to_string(messages.size());
    if (!echo) return failed(which + ": " + why);
    if (opcode != spec.opcode || *echo != messages[i])
      return failed(which + " came back changed: '" + printable(*echo) + "'");
    if (compressed_echo) {
      if (auto want = compressed_echo(messages[i]); want && *want != rsv1)
        return failed(which + " (" + std::to_string(messages[i].size()) + " bytes) came " +
                      (rsv1 ? "compressed" : "uncompressed"));
    }
  }
  return close_normally(s, ok(std::to_string(messages.size()) + " compressed echoes inflated"));
}

std::vector<std::string> varied_messages(std::size_t count) {
  std::vector<std::string> out;
  for (std::size_t i = 0; i < count; ++i)
    out.push_back("{\"type\":\"tick\",\"symbol\":\"BTC-USD\",\"seq\":" + std::to_string(i) +
                  ",\"price\":" + std::to_string(40000 + i % 97) + "}");
  return out;
}

// A block of noise twice: an encoder with a window of at least the block's size
// refers back across it; one with a smaller window cannot.
std::vector<std::string> repeated_noise(std::size_t count, std::size_t block) {
  std::vector<std::string> out;
  for (std::size_t i = 0; i < count; ++i) {
    std::string b = noise(block, static_cast<std::uint32_t>(i / 2));  // pairs of equal messages too
    out.push_back(b + b);
  }
  return out;
}

std::vector<Case> make_cases() {
  std::vector<Case> c;
  const std::set<std::uint16_t> protocol{1002};
  const std::set<std::uint16_t> invalid_payload{1007};

  // 1 Framing: payload lengths at the 7-bit, 16-bit and 64-bit length boundaries.
  int n = 0;
  for (std::size_t size : {0, 125, 126, 127, 128, 65535, 65536}) {
    ++n;
    c.push_back(echo_case("1.1." + std::to_string(n), "text message of " + std::to_string(size) + " bytes", "§5.2",
                          {text(letters(size))}, {{1, letters(size)}}));
    c.push_back(echo_case("1.2." + std::to_string(n), "binary message of " + std::to_string(size) + " bytes", "§5.2",
                          {binary(bytes(size))}, {{2, bytes(size)}}));
  }
  c.push_back(echo_case("1.3.1", "binary message of 1 MiB", "§5.2", {binary(bytes(1u << 20))}, {{2, bytes(1u << 20)}}));
  c.push_back(echo_case("1.3.2", "text message of 8 MiB", "§5.2", {text(letters(8u << 20))}, {{1, letters(8u << 20)}}));
  c.push_back(echo_case(
      "1.3.3", "100 small messages in one burst", "§5.2",
      [] {
        std::vector<std::string> f;
        for (int i = 0; i < 100; ++i) f.push_back(text(test::cat("m", i)));
        return f;
      }(),
      [] {
        Expected e;
        for (int i = 0; i < 100; ++i) e.push_back({1, test::cat("m", i)});
        return e;
      }()));

  // 2 Pings and pongs.
  c.push_back(echo_case("2.1", "ping without payload", "§5.5.2", {ping("")}, {}, {""}));
  c.push_back(echo_case("2.2", "ping with 125 bytes of text", "§5.5.2", {ping(letters(125))}, {}, {letters(125)}));
  c.push_back(echo_case("2.3", "ping with 125 binary bytes", "§5.5.2", {ping(bytes(125))}, {}, {bytes(125)}));
  c.push_back(
      fail_case("2.4", "ping with 126 bytes (control frame over 125)", "§5.5", {}, {}, {ping(letters(126))}, protocol));
  c.push_back(echo_case("2.5", "unsolicited pong, then a text message", "§5.5.3",
                        {raw(10, "unsolicited"), text("after pong")}, {{1, "after pong"}}));
  c.push_back(echo_case("2.6", "ten pings in a row", "§5.5.2",
                        {ping("p0"), ping("p1"), ping("p2"), ping("p3"), ping("p4"), ping("p5"), ping("p6"), ping("p7"),
                         ping("p8"), ping("p9")},
                        {}, {"p0", "p1", "p2", "p3", "p4", "p5", "p6", "p7", "p8", "p9"}));

  // 3 Reserved bits without a negotiated extension.
  c.push_back(fail_case("3.1", "text frame with RSV1", "§5.2", {}, {}, {with_rsv(text("rsv1"), 0x40)}, protocol));
  c.push_back(fail_case("3.2", "text frame with RSV2", "§5.2", {}, {}, {with_rsv(text("rsv2"), 0x20)}, protocol));
  c.push_back(fail_case("3.3", "text frame with RSV3 after a valid message", "§5.2", {text("fine")}, {{1, "fine"}},
                        {with_rsv(text("rsv3"), 0x10)}, protocol));
  c.push_back(
      fail_case("3.4", "binary frame with RSV1+RSV2+RSV3", "§5.2", {}, {}, {with_rsv(binary("rsv"), 0x70)}, protocol));
  c.push_back(fail_case("3.5", "ping with RSV2", "§5.2", {}, {}, {with_rsv(ping("rsv"), 0x20)}, protocol));

  // 4 Reserved opcodes.
  for (std::uint8_t op : {3, 4, 5, 6, 7})
    c.push_back(fail_case("4.1." + std::to_string(op - 2), "reserved data opcode " + std::to_string(op), "§5.2",
                          {text("before")}, {{1, "before"}}, {raw(op, "x")}, protocol));
  for (std::uint8_t op : {11, 12, 13, 14, 15})
    c.push_back(fail_case("4.2." + std::to_string(op - 10), "reserved control opcode " + std::to_string(op), "§5.2",
                          {text("before")}, {{1, "before"}}, {raw(op, "x")}, protocol));

  // 5 Fragmentation.
  c.push_back(fail_case("5.1", "fragmented ping (FIN clear)", "§5.4, §5.5", {}, {}, {raw(9, "frag", false)}, protocol));
  c.push_back(
      fail_case("5.2", "fragmented pong (FIN clear)", "§5.4, §5.5", {}, {}, {raw(10, "frag", false)}, protocol));
  c.push_back(echo_case("5.3", "text in two fragments", "§5.4", {text("frag", false), continuation("ment", true)},
                        {{1, "fragment"}}));
  c.push_back(echo_case("5.4", "text in three fragments with a ping between", "§5.4, §5.5",
                        {text("one ", false), ping("mid"), continuation("two ", false), continuation("three", true)},
                        {{1, "one two three"}}, {"mid"}));
  c.push_back(echo_case("5.5", "text in 1-byte fragments, a ping after each", "§5.4",
                        [] {
                          std::vector<std::string> f;
                          std::string word = "fragmented";
                          for (std::size_t i = 0; i < word.size(); ++i) {
                            std::string b(1, word[i]);
                            bool last = i + 1 == word.size();
                            f.push_back(i == 0 ? text(b, false) : continuation(b, last));
                            if (!last) f.push_back(ping(std::to_string(i)));
                          }
                          return f;
                        }(),
                        {{1, "fragmented"}}, {"0", "1", "2", "3", "4", "5", "6", "7", "8"}));
  c.push_back(echo_case(
      "5.6", "binary in fragments, some empty", "§5.4",
      {binary("", false), continuation("ab", false), continuation("", false), continuation("c", true)}, {{2, "abc"}}));
  c.push_back(fail_case("5.7", "continuation frame with no message started", "§5.4", {}, {},
                        {continuation("orphan", true)}, protocol));
  c.push_back(fail_case("5.8", "continuation after a complete message", "§5.4", {text("whole")}, {{1, "whole"}},
                        {continuation("late", true)}, protocol));
  c.push_back(fail_case("5.9", "new text frame inside a fragmented message", "§5.4", {}, {},
                        {text("start", false), text("again", true)}, protocol));

  // 6 UTF-8 in text messages.
  c.push_back(echo_case("6.1", "valid UTF-8 (Greek)", "§8.1", {text("\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5")},
                        {{1, "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5"}}));
  c.push_back(echo_case("6.2", "valid UTF-8 split inside a code point across fragments", "§8.1",
                        {text("\xce\xba\xe1", false), continuation("\xbd\xb9\xcf", false), continuation("\x83", true)},
                        {{1, "\xce\xba\xe1\xbd\xb9\xcf\x83"}}));
  c.push_back(echo_case("6.3", "4-byte code points, the highest U+10FFFF", "§8.1",
                        {text("\xf0\x9f\x98\x80\xf4\x8f\xbf\xbf")}, {{1, "\xf0\x9f\x98\x80\xf4\x8f\xbf\xbf"}}));
  const std::string long_text = std::string(33, 'a') + "\xce\xba" + std::string(60, 'b') + "\xf0\x9f\x98\x80";
  c.push_back(
      echo_case("6.3.1", "valid UTF-8 after and between long ASCII runs", "§8.1", {text(long_text)}, {{1, long_text}}));
  struct Bad {
    const char* name;
    std::string bytes;
  };
  int b = 0;
  for (const auto& bad :
       std::vector<Bad>{{"a lone continuation byte", "ok\x80"},
                        {"an overlong '/' (C0 AF)", "\xc0\xaf"},
                        {"a UTF-16 surrogate (ED A0 80)", "\xed\xa0\x80"},
                        {"a code point over U+10FFFF", "\xf4\x90\x80\x80"},
                        {"a truncated sequence at the end", "abc\xce"},
                        {"byte FF", "\xff"},
                        // Long ASCII around the bad byte: the adapters check ASCII
                        // text in 32- and 8-byte steps first.
                        {"byte 80 as byte 31 of 64", std::string(31, 'a') + "\x80" + std::string(32, 'b')},
                        {"byte C3 as byte 40 of 50 (ending a code point too early)",
                         std::string(40, 'a') + "\xc3" + std::string(9, 'b')},
                        {"byte FE as the last of 77", std::string(76, 'a') + "\xfe"}}) {
    ++b;
    c.push_back(fail_case("6.4." + std::to_string(b), std::string("text with ") + bad.name, "§8.1", {}, {},
                          {text(bad.bytes)}, invalid_payload));
  }
  c.push_back(fail_case("6.5", "invalid UTF-8 in the first fragment", "§8.1", {}, {},
                        {text("\xed\xa0\x80", false), continuation("rest", true)}, invalid_payload));
  c.push_back(fail_case("6.6.1", "fragmented text whose last fragment ends inside a 3-byte code point", "§8.1",
                        {text("fine")}, {{1, "fine"}}, {text("ab", false), continuation("c\xe2\x82", true)},
                        invalid_payload));
  c.push_back(fail_case("6.6.2", "fragmented text whose last fragment ends inside a 2-byte code point", "§8.1", {}, {},
                        {text("h\xc3\xa9", false), continuation("", false), continuation("\xc3", true)},
                        invalid_payload));

  // 7 Close.
  c.push_back(echo_case("7.1", "close 1000 after a message: the reply comes at once", "§5.5.1, §7.1.2", {text("last")},
                        {{1, "last"}}));
  c.push_back({"7.2", "close without a payload", "§5.5.1", {}, [](Session& s) {
                 if (!open(s)) return failed("no opening handshake");
                 s.send_raw(raw(8, ""));
                 auto in = next(s, 5s);
                 if (in.kind != Incoming::close) return failed("no close reply; got " + in.describe());
                 return ok("replied with " + in.describe());
               }});
  c.push_back(fail_case("7.3", "close with a 1-byte payload", "§5.5.1", {}, {}, {raw(8, "x")}, protocol));
  c.push_back({"7.4", "close 1000 with a 123-byte reason", "§5.5.1", {}, [](Session& s) {
                 if (!open(s)) return failed("no opening handshake");
                 s.send_raw(close_frame(1000, letters(123)));
                 auto in = next(s, 5s);
                 if (in.kind != Incoming::close) return failed("no close reply; got " + in.describe());
                 return ok("replied with " + in.describe());
               }});
  c.push_back(fail_case("7.5", "close with a 124-byte reason (frame over 125)", "§5.5", {}, {},
                        {close_frame(1000, letters(124))}, protocol));
  c.push_back(fail_case("7.6", "close with an invalid UTF-8 reason", "§5.5.1, §8.1", {}, {},
                        {close_frame(1000, "\xff\xfe")}, {1002, 1007}));
  int v = 0;
  for (std::uint16_t code : {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999}) {
    ++v;
    c.push_back({"7.7." + std::to_string(v),
                 "close with valid code " + std::to_string(code),
                 "§7.4.1, §5.5.1",
                 {},
                 [code](Session& s) {
                   if (!open(s)) return failed("no opening handshake");
                   s.send_raw(close_frame(code, "bye"));
                   auto in = next(s, 5s);
                   if (in.kind != Incoming::close) return failed("no close reply; got " + in.describe());
                   if (in.code != code) return non_strict("replied with " + in.describe() + ", not the code received");
                   return ok("echoed close " + std::to_string(code));
                 }});
  }
  int iv = 0;
  for (std::uint16_t code : {0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535}) {
    ++iv;
    c.push_back(fail_case("7.9." + std::to_string(iv), "close with invalid code " + std::to_string(code), "§7.4", {},
                          {}, {close_frame(code)}, protocol));
  }
  c.push_back({"7.10", "a text frame after the server's close", "§5.5.1", {}, [](Session& s) {
                 if (!open(s)) return failed("no opening handshake");
                 s.send_raw(close_frame(1000) + text("after close"));
                 auto in = next(s, 5s);
                 if (in.kind == Incoming::message) return failed("echoed data sent after the close: " + in.describe());
                 if (in.kind != Incoming::close) return failed("no close reply; got " + in.describe());
                 in = next(s, 300ms);  // an echo would come right behind the close reply
                 if (in.kind == Incoming::message) return failed("echoed data sent after the close: " + in.describe());
                 return ok("replied to the close and ignored the data after it");
               }});
  // After the server's close frame, only the close reply (§5.5.1): a ping behind it is
  // not answered, whether it comes in the same write or byte by byte.
  for (auto [id, bytewise] : {std::pair{"7.12", false}, std::pair{"7.13", true}}) {
    c.push_back({id,
                 bytewise ? "a ping after the server's close, one byte per write"
                          : "a ping after the server's close, in the same write",
                 "§5.5.1, §5.5.2",
                 {},
                 [bytewise](Session& s) {
                   if (!open(s)) return failed("no opening handshake");
                   const std::string both = close_frame(1000) + ping("after the close");
                   if (bytewise) {
                     for (char byte : both) s.send_raw(std::string(1, byte));
                   } else {
                     s.send_raw(both);
                   }
                   auto in = next(s, 5s);
                   if (in.kind == Incoming::pong) return failed("answered the ping that came after the close");
                   if (in.kind != Incoming::close) return failed("no close reply; got " + in.describe());
                   in = next(s, 300ms);  // a pong would come right behind the close reply
                   if (in.kind == Incoming::pong) return failed("sent a pong after its close reply");
                   return ok("replied to the close and nothing else");
                 }});
  }
  c.push_back({"7.11", "the server closes but keeps TCP open", "§7.1.1", {}, [](Session& s) {
                 if (!open(s)) return failed("no opening handshake");
                 s.send_raw(close_frame(1000));
                 auto in = next(s, 5s);
                 if (in.kind != Incoming::close) return failed("no close reply; got " + in.describe());
                 auto t0 = Clock::now();
                 in = next(s, 10s);
                 auto took = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0);
                 if (in.kind != Incoming::eof) return failed("kept TCP open after the close handshake");
                 return ok("closed TCP " + std::to_string(took.count()) + " ms after the close handshake");
               }});

  // 8 The opening handshake, forged.
  auto proper = [](const Session& s) { return s.accept_response(); };
  c.push_back(handshake_case("8.1", "wrong Sec-WebSocket-Accept", "§4.1 (4)", [](const Session&) {
    return std::string(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Accept: AAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n\r\n");
  }));
  c.push_back(handshake_case("8.2", "status 200 instead of 101", "§4.1 (1)", [proper](const Session& s) {
    auto r = proper(s);
    return "HTTP/1.1 200 OK\r\nContent-Length: 0" + r.substr(r.find("\r\n"));
  }));
  c.push_back(handshake_case("8.3", "no Upgrade header", "§4.1 (2)", [proper](const Session& s) {
    auto r = proper(s);
    r.erase(r.find("Upgrade: websocket\r\n"), 20);
    return r;
  }));
  c.push_back(handshake_case("8.4", "no Connection header", "§4.1 (3)", [proper](const Session& s) {
    auto r = proper(s);
    r.erase(r.find("Connection: Upgrade\r\n"), 21);
    return r;
  }));
  c.push_back(handshake_case("8.5", "a subprotocol when none was offered", "§4.1 (6)",
                             [](const Session& s) { return s.accept_response({"Sec-WebSocket-Protocol: chat.v9"}); }));
  c.push_back(handshake_case("8.6", "a subprotocol that was not offered", "§4.1 (6)",
                             [](const Session& s) { return s.accept_response({"Sec-WebSocket-Protocol: chat.v2"}); },
                             {"--subprotocol", "chat.v1"}));
  c.push_back(handshake_case(
      "8.7", "permessage-deflate when it was not offered", "§4.1 (5), RFC 7692 §5.1",
      [](const Session& s) { return s.accept_response({"Sec-WebSocket-Extensions: permessage-deflate"}); }));
  c.push_back(handshake_case("8.8", "an unknown extension", "§4.1 (5)", [](const Session& s) {
    return s.accept_response({"Sec-WebSocket-Extensions: x-unknown-ext"});
  }));
  c.push_back(handshake_case(
      "8.9", "permessage-deflate with a parameter the client did not offer", "RFC 7692 §5.1, §7.1",
      [](const Session& s) { return s.accept_response({"Sec-WebSocket-Extensions: permessage-deflate; x-unknown=1"}); },
      {"--compress"}));
  c.push_back(handshake_case(
      "8.10", "permessage-deflate with server_max_window_bits=16 (out of range)", "RFC 7692 §7.1.2.1",
      [](const Session& s) {
        return s.accept_response({"Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=16"});
      },
      {"--compress"}));
  c.push_back({"8.11",
               "a subprotocol chosen from the offer",
               "§4.1 (6)",
               {"--subprotocol", "chat.v1", "--subprotocol", "chat.v2"},
               [](Session& s) {
                 if (!s.read_request(5s)) return failed("no opening handshake");
                 s.send_raw(s.accept_response({"Sec-WebSocket-Protocol: chat.v2"}));
                 s.send_raw(text("chosen"));
                 auto r = expect_messages(s, {{1, "chosen"}});
                 if (r.verdict != Verdict::ok) return r;
                 return close_normally(s, r);
               }});

  // 9 Compression (RFC 7692), when the client offers it.
  const std::vector<std::string> compress{"--compress"};
  c.push_back(echo_case("9.1", "compressed text message", "RFC 7692 §6", {compressed(1, "Hello, compressed world")},
                        {{1, "Hello, compressed world"}}, {}, compress));
  c.push_back(echo_case("9.2", "compressed binary message of 64 KiB", "RFC 7692 §6", {compressed(2, bytes(65536))},
                        {{2, bytes(65536)}}, {}, compress));
  c.push_back({"9.3", "compressed message in two fragments (RSV1 on the first only)", "RFC 7692 §6.1", compress,
               [](Session& s) {
                 if (!open(s)) return failed("no opening handshake");
                 std::string body = deflate(letters(3000));
                 std::size_t half = body.size() / 2;
                 s.send_raw(encode({false, 0x40, 1, body.substr(0, half)}) + continuation(body.substr(half), true));
                 auto r = expect_messages(s, {{1, letters(3000)}});
                 if (r.verdict != Verdict::ok) return r;
                 return close_normally(s, r);
               }});
  c.push_back(fail_case("9.4", "RSV1 on a continuation frame", "RFC 7692 §6.1", {}, {},
                        {encode({false, 0x40, 1, deflate("first")}), encode({true, 0x40, 0, deflate("second")})},
                        protocol, compress));
  c.push_back(
      fail_case("9.5", "RSV1 on a ping", "RFC 7692 §6.1", {}, {}, {encode({true, 0x40, 9, "p"})}, protocol, compress));
  c.push_back(fail_case("9.6", "a compressed message that does not inflate", "RFC 7692 §6.2", {}, {},
                        {encode({true, 0x40, 1, std::string("\xff\xff\xff\xff\xff\xff", 6)})}, {1002, 1007}, compress));
  c.push_back(fail_case("9.7", "a 1 MiB message that deflates to 1 KiB, over a 64 KiB limit (a compression bomb)",
                        "RFC 7692 §8.1, RFC 6455 §10.4", {}, {}, {compressed(2, std::string(1u << 20, '\0'))}, {1009},
                        {"--compress", "--max-message-size", "65536"}));

  // 13 permessage-deflate parameters (RFC 7692 §7.1), with a stateful server.
  c.push_back({"13.1", "context takeover both ways across 1,000 messages", "RFC 7692 §7.1.1", compress,
               [](Session& s) { return play_deflate(s, {"permessage-deflate"}, varied_messages(1000)); }});
  c.push_back({"13.2", "the answer sets client_max_window_bits=9: echoes fit a 512-byte window", "RFC 7692 §7.1.2.2",
               compress, [](Session& s) {
                 return play_deflate(s, {"permessage-deflate; client_max_window_bits=9", 15, false, 9, false},
                                     repeated_noise(20, 1500));
               }});
  c.push_back(
      {"13.3",
       "--client-max-window-bits 10 offered and answered: echoes fit a 1 KiB window",
       "RFC 7692 §7.1.2.2",
       {"--client-max-window-bits", "10"},
       [](Session& s) {
         return play_deflate(
             s, {"permessage-deflate; client_max_window_bits=10", 15, false, 10, false, {"client_max_window_bits=10"}},
             repeated_noise(20, 1500));
       }});
  c.push_back({"13.10",
               "--client-max-window-bits 9 offered, the answer silent on it: the promise is kept",
               "RFC 7692 §7.1.2.2",
               {"--client-max-window-bits", "9"},
               [](Session& s) {
                 return play_deflate(s, {"permessage-deflate", 15, false, 9, false, {"client_max_window_bits=9"}},
                                     repeated_noise(20, 1500));
               }});
  c.push_back({"13.11",
               "--client-no-context-takeover offered, the answer silent on it: the promise is kept",
               "RFC 7692 §7.1.1.2",
               {"--client-no-context-takeover"},
               [](Session& s) {
                 return play_deflate(s, {"permessage-deflate", 15, false, 15, true, {"client_no_context_takeover"}},
                                     repeated_noise(20, 700));
               }});
  c.push_back(
      {"13.4",
       "--client-no-context-takeover: every echo inflates on its own",
       "RFC 7692 §7.1.1.2",
       {"--client-no-context-takeover"},
       [](Session& s) {
         return play_deflate(
             s, {"permessage-deflate; client_no_context_takeover", 15, false, 15, true, {"client_no_context_takeover"}},
             repeated_noise(20, 700));
       }});
  c.push_back({"13.5", "the answer sets client_no_context_takeover unasked: the client drops its context",
               "RFC 7692 §7.1.1.2", compress, [](Session& s) {
                 return play_deflate(s, {"permessage-deflate; client_no_context_takeover", 15, false, 15, true},
                                     repeated_noise(20, 700));
               }});
  c.push_back({"13.6",
               "--server-max-window-bits 10 --server-no-context-takeover: asked for, granted, used",
               "RFC 7692 §7.1.1.1, §7.1.2.1",
               {"--server-max-window-bits", "10", "--server-no-context-takeover"},
               [](Session& s) {
                 return play_deflate(s,
                                     {"permessage-deflate; server_max_window_bits=10; server_no_context_takeover",
                                      10,
                                      true,
                                      15,
                                      false,
                                      {"server_max_window_bits=10", "server_no_context_takeover"}},
                                     repeated_noise(20, 700));
               }});
  c.push_back({"13.7",
               "an answer of server_max_window_bits=12 over the 10 offered fails the handshake",
               "RFC 7692 §7.1.2.1",
               {"--server-max-window-bits", "10"},
               [](Session& s) {
                 if (!s.read_request(5s)) return failed("no opening handshake");
                 s.send_raw(
                     s.accept_response({"Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=12"}));
                 auto f = s.read_frame(5s);
                 if (f)
                   return failed("the client sent a frame (opcode " + std::to_string(f->opcode) + ") after the answer");
                 return s.eof() ? ok("closed TCP without a frame") : failed("did not close the connection");
               }});
  c.push_back({"13.8",
               "--compress-min-size 100: shorter echoes go uncompressed, the context carries on",
               "RFC 7692 §6",
               {"--compress-min-size", "100"},
               [](Session& s) {
                 std::vector<std::string> messages;
                 for (std::size_t size : {10, 99, 100, 5000, 1, 126, 99, 65536}) messages.push_back(letters(size));
                 return play_deflate(s, {"permessage-deflate"}, messages,
                                     [](const std::string& m) -> std::optional<bool> { return m.size() >= 100; });
               }});
  c.push_back({"13.9", "messages that do not compress: 64 KiB of noise, 20 times, context takeover", "RFC 7692 §7.2.1",
               compress, [](Session& s) {
                 std::vector<std::string> messages;
                 for (std::uint32_t i = 0; i < 20; ++i) messages.push_back(noise(65536, i));
                 return play_deflate(s, {"permessage-deflate"}, messages);
               }});
  return c;
}

}  // namespace

// Every case that must fail the connection again, with a ping right behind the
// violation: in one write ("<id>.p") and one byte per write ("<id>.b").
std::vector<Case> with_ordered_variants(std::vector<Case> cases) {
  std::vector<Case> out;
  for (auto& c : cases) {
    out.push_back(c);
    if (!c.fail) continue;
    auto spec = *c.fail;
    for (auto [suffix, delivery, how] :
         {std::tuple{".p", Delivery::with_ping, "; a ping follows in the same write"},
          std::tuple{".b", Delivery::byte_by_byte, "; a ping follows; one byte per write"}}) {
      out.push_back(fail_case(c.id + suffix, c.title + how, c.rfc + ", §5.5.2", spec.good, spec.expected, spec.bad,
                              spec.codes, c.client_args, delivery));
    }
  }
  return out;
}

const std::vector<Case>& all_cases() {
  static const std::vector<Case> cases = with_ordered_variants(make_cases());
  return cases;
}

}  // namespace wscengine::conformance
