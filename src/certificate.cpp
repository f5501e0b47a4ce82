// Public-key pins: the one parser the options check and every adapter use.
#include <wscengine/certificate.hpp>

#include <cstdint>

namespace wscengine {
namespace {

int base64_value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

}  // namespace

std::optional<std::string> parse_public_key_pin(std::string_view pin) {
  constexpr std::string_view prefix = "sha256/";
  if (pin.substr(0, prefix.size()) == prefix) pin.remove_prefix(prefix.size());
  // 32 bytes are 43 base64 digits and one '=' of padding: nothing else is a pin.
  if (pin.size() != 44 || pin[43] != '=') return std::nullopt;
  std::string digest;
  std::uint32_t bits = 0;
  int held = 0;
  for (char c : pin.substr(0, 43)) {
    int v = base64_value(c);
    if (v < 0) return std::nullopt;
    bits = (bits << 6) | static_cast<std::uint32_t>(v);
    held += 6;
    if (held >= 8) {
      held -= 8;
      digest += static_cast<char>((bits >> held) & 0xFF);
    }
  }
  // The last digit carries two bits of padding, which a canonical encoding leaves zero.
  if ((bits & ((1u << held) - 1)) != 0) return std::nullopt;
  return digest;
}

}  // namespace wscengine
