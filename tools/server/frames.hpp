// wscengine — one server-to-client WebSocket frame, encoded by hand (RFC 6455 §5.2;
// servers never mask). For the tools and tests that must write raw frames: the blast
// server, the fuzzing server, the adapter contract suite.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace wscengine::tools {

/// `first_byte` is FIN | RSV1..3 | opcode, e.g. 0x81 for a final text frame.
/// Thread safety: pure.
inline std::string server_frame(std::uint8_t first_byte, std::string_view payload) {
  std::string out(1, static_cast<char>(first_byte));
  std::uint64_t n = payload.size();
  if (n < 126) {
    out.push_back(static_cast<char>(n));
  } else if (n <= 0xffff) {
    out.push_back(static_cast<char>(126));
    out.push_back(static_cast<char>(n >> 8));
    out.push_back(static_cast<char>(n & 0xff));
  } else {
    out.push_back(static_cast<char>(127));
    for (int i = 7; i >= 0; --i) out.push_back(static_cast<char>((n >> (8 * i)) & 0xff));
  }
  out.append(payload);
  return out;
}

/// `payload` compressed as one permessage-deflate message (RFC 7692 §7.2.1: raw
/// DEFLATE, sync flush, the final 00 00 FF FF removed), decodable with or without
/// context takeover; send it in a frame with RSV1 set (0xC1, 0xC2). In
/// test_server.cpp, where Beast's deflate lives. Thread safety: pure.
std::string deflated_message(std::string_view payload);

}  // namespace wscengine::tools
