// An RFC 6455 fuzzing server for WebSocket clients, in the spirit of the
// Autobahn|Testsuite "fuzzingserver": per case it accepts one connection, plays
// a script of valid and deliberately malformed frames or handshake responses over
// a raw TCP socket (no WebSocket library: every byte is ours), and judges what
// the client did — its echo, its pongs, its close code and close timing.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace wscengine::conformance {

/// How a client did on one case, as Autobahn grades it.
enum class Verdict {
  ok,           ///< what the RFC requires
  non_strict,   ///< acceptable but not the strict behaviour (e.g. another close code)
  failed,       ///< against the RFC
  unsupported,  ///< the client cannot do what the case needs (e.g. no compression)
};
const char* to_string(Verdict v);

/// One frame as it travels.
struct Frame {
  bool fin = true;
  std::uint8_t rsv = 0;  ///< RSV1..3 as bits 4..6 (0x40 = RSV1)
  std::uint8_t opcode = 1;
  std::string payload;
  bool masked = false;  ///< as received
};

/// The raw bytes of a server frame (never masked).
std::string encode(const Frame& frame);
std::string text(std::string payload, bool fin = true);
std::string binary(std::string payload, bool fin = true);
std::string continuation(std::string payload, bool fin);
std::string ping(std::string payload);
std::string close_frame(std::uint16_t code, std::string reason = {});
/// permessage-deflate (RFC 7692 §7.2.1): raw deflate with the final empty block stripped.
std::string deflate(const std::string& data);
std::string inflate(const std::string& data);

/// What the server received as the opening handshake.
struct Request {
  std::string target;
  std::vector<std::pair<std::string, std::string>> headers;
  std::optional<std::string> header(const std::string& name) const;
};

/// One accepted connection, driven by a case. Every client frame is checked for
/// the mask (RFC 6455 §5.3).
class Session {
 public:
  explicit Session(int fd) : fd_(fd) {}
  const Request& request() const { return request_; }
  /// Reads the opening handshake; false if the client sent none.
  bool read_request(std::chrono::milliseconds timeout);
  /// The correct 101 response for the request, plus extra header lines.
  std::string accept_response(const std::vector<std::string>& extra_headers = {}) const;
  void send_raw(const std::string& bytes);
  /// The client's next frame; nullopt on EOF, reset or timeout (then `eof()` tells).
  std::optional<Frame> read_frame(std::chrono::milliseconds timeout);
  bool eof() const { return eof_; }
  bool unmasked_frame_seen() const { return unmasked_; }
  /// Whether the client offered permessage-deflate and the server accepted.
  bool compressed = false;

 private:
  bool fill(std::size_t n, std::chrono::steady_clock::time_point deadline);
  int fd_;
  Request request_;
  std::string buffer_;
  bool eof_ = false;
  bool unmasked_ = false;
};

/// The outcome of one case.
struct Result {
  Verdict verdict = Verdict::failed;
  std::string observed;  ///< what the client did, in a few words
};

/// What a case that must fail the connection sends: `good` frames echoed as
/// `expected`, then `bad` frames, which must fail it with one of `codes`.
struct FailSpec {
  std::vector<std::string> good;
  std::vector<std::pair<std::uint8_t, std::string>> expected;
  std::vector<std::string> bad;
  std::set<std::uint16_t> codes;
};

/// One test case.
struct Case {
  std::string id;                        ///< "1.1.3", grouped as in Autobahn
  std::string title;                     ///< what the server does
  std::string rfc;                       ///< the section that decides
  std::vector<std::string> client_args;  ///< extra flags for the client (e.g. --compress)
  std::function<Result(Session&)> play;
  std::optional<FailSpec> fail{};  ///< for cases that must fail the connection: what they send
};

/// Every case, in order.
const std::vector<Case>& all_cases();

/// A listening socket on 127.0.0.1 (port 0 = any).
class Listener {
 public:
  Listener();
  ~Listener();
  std::uint16_t port() const { return port_; }
  /// Accepts one connection; -1 on timeout.
  int accept(std::chrono::milliseconds timeout);

 private:
  int fd_ = -1;
  std::uint16_t port_ = 0;
};

}  // namespace wscengine::conformance
