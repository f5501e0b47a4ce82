// wscengine CLI — the commands and their shared helpers.
#pragma once

#include <cstdio>
#include <string>

#include "args.hpp"

namespace wscengine::cli {

int run_connect(const Args& args);
int run_serve(const Args& args);
/// `bench feed` or `bench echo`.
int run_bench(const std::string& kind, const Args& args);

/// Prints "wscengine: <what>" and a hint to --help; returns exit status 2.
inline int usage_error(const std::string& what) {
  std::fprintf(stderr, "wscengine: %s (see wscengine --help)\n", what.c_str());
  return 2;
}

/// Prints "wscengine: <what>"; returns exit status 1.
inline int failure(const std::string& what) {
  std::fprintf(stderr, "wscengine: %s\n", what.c_str());
  return 1;
}

}  // namespace wscengine::cli
