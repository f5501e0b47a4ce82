// wscengine CLI — the commands and their shared helpers.
#pragma once

#include <cstdio>
#include <string>

#include <wscengine/options.hpp>

#include "args.hpp"

namespace wscengine::cli {

int run_connect(const Args& args);
int run_serve(const Args& args);
/// `bench feed` or `bench echo`.
int run_bench(const std::string& kind, const Args& args);

/// --low-latency: on_message on the I/O thread that read the message, which polls the
/// socket for 50 µs after each burst before it waits (a round trip's answer usually
/// comes within that on loopback and on a LAN).
inline void set_low_latency(EngineOptions& options) {
  options.delivery = Delivery::io_thread;
  options.busy_poll = std::chrono::microseconds(50);
}

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
