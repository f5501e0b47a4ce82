// Test support: strings built from parts, such as "m17" or "t3:42".
#pragma once

#include <string>
#include <string_view>
#include <type_traits>

namespace wscengine::test {

/// The parts appended in order; integers are written in decimal.
/// Appending (rather than `"m" + std::to_string(i)`) also keeps GCC 12 quiet: under -O2
/// and above it reports a memcpy overlap for `const char* + std::string&&` that cannot
/// happen (-Wrestrict), and the suite builds with warnings as errors.
/// Thread safety: pure.
template <class... Parts>
std::string cat(const Parts&... parts) {
  std::string out;
  auto add = [&out](const auto& part) {
    if constexpr (std::is_integral_v<std::decay_t<decltype(part)>>) {
      out += std::to_string(part);
    } else {
      out += std::string_view(part);
    }
  };
  (add(parts), ...);
  return out;
}

}  // namespace wscengine::test
