// wscengine CLI — the commands and their shared helpers.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <wscengine/certificate.hpp>

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

/// --http2 off|prefer|require and --http2-cleartext (connect and bench): WebSocket over
/// HTTP/2. Returns "" or what is wrong, naming the flag.
inline std::string apply_http2(const Args& args, EngineOptions& options) {
  if (auto mode = args.value("--http2")) {
    if (*mode == "off")
      options.http2 = Http2Mode::off;
    else if (*mode == "prefer")
      options.http2 = Http2Mode::prefer;
    else if (*mode == "require")
      options.http2 = Http2Mode::require;
    else
      return "--http2 must be off, prefer or require (got '" + *mode + "')";
  }
  options.http2_cleartext = args.has("--http2-cleartext");
  if (options.http2_cleartext && options.http2 == Http2Mode::off)
    return "--http2-cleartext needs --http2 prefer or require";
  return {};
}

/// The TLS flags of connect and bench: --ca-file F, --insecure, --pin (repeatable),
/// --cert F --key F (an encrypted key's password from WSCENGINE_KEY_PASSWORD), --tls13,
/// --no-tls-resumption. Returns "" or what is wrong, naming the flag.
inline std::string apply_tls(const Args& args, EngineOptions& options) {
  if (auto ca = args.value("--ca-file")) options.tls.ca_file = *ca;
  if (args.has("--insecure")) options.tls.verify_peer = false;
  options.tls.pinned_public_keys = args.values("--pin");
  for (const auto& pin : options.tls.pinned_public_keys) {
    if (!parse_public_key_pin(pin))
      return "--pin '" + pin + "' is not sha256/ and the base64 of a 32-byte SHA-256 public-key digest";
  }
  if (auto cert = args.value("--cert")) options.tls.certificate_file = *cert;
  if (auto key = args.value("--key")) options.tls.private_key_file = *key;
  if (const char* password = std::getenv("WSCENGINE_KEY_PASSWORD")) options.tls.private_key_password = password;
  if (args.has("--tls13")) options.tls.min_version = TlsOptions::Version::tls1_3;
  if (args.has("--no-tls-resumption")) options.tls.session_resumption = false;
  return {};
}

/// The TLS flags' names, for each command's FlagSpec: with a value, and switches.
inline const std::vector<std::string> kTlsValueFlags = {"--ca-file", "--pin", "--cert", "--key"};
inline const std::vector<std::string> kTlsSwitches = {"--insecure", "--tls13", "--no-tls-resumption"};

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
