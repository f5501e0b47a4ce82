// wscengine — version.
#pragma once

#define WSCENGINE_VERSION_MAJOR 0
#define WSCENGINE_VERSION_MINOR 1
#define WSCENGINE_VERSION_PATCH 0

namespace wscengine {
/// "major.minor.patch" of this build.
inline constexpr const char* version_string = "0.1.0";
}  // namespace wscengine
