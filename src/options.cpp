#include <wscengine/options.hpp>

#include <cmath>

namespace wscengine {
namespace {

Error invalid(std::string what) { return Error(errc::invalid_option, std::move(what)); }

bool valid_header_token(std::string_view name) {
  if (name.empty()) return false;
  for (unsigned char c : name) {
    if (c <= 0x20 || c >= 0x7f || c == ':') return false;
  }
  return true;
}

}  // namespace

Error EngineOptions::validate() const {
  if (auto url_result = parse_url(url); !url_result) return url_result.error();
  if (reader_slots < 1 || reader_slots > 1024) {
    return invalid("reader_slots must be in 1..1024 (got " + std::to_string(reader_slots) + ")");
  }
  auto positive = [](std::chrono::milliseconds d) { return d.count() > 0; };
  if (!positive(open_timeout)) return invalid("open_timeout must be > 0");
  if (!positive(close_timeout)) return invalid("close_timeout must be > 0");
  if (!positive(stop_timeout)) return invalid("stop_timeout must be > 0");
  if (!positive(write_timeout)) return invalid("write_timeout must be > 0");
  if (ping_interval.count() < 0) return invalid("ping_interval must be >= 0 (0 = no heartbeat)");
  if (ping_interval.count() > 0 && !positive(pong_timeout)) return invalid("pong_timeout must be > 0");
  if (backoff.initial_delay.count() < 0) return invalid("backoff.initial_delay must be >= 0");
  if (backoff.max_delay < backoff.initial_delay) return invalid("backoff.max_delay must be >= backoff.initial_delay");
  if (!(backoff.factor >= 1.0) || !std::isfinite(backoff.factor))
    return invalid("backoff.factor must be a finite number >= 1");
  if (!(backoff.jitter >= 0.0 && backoff.jitter <= 1.0)) return invalid("backoff.jitter must be in [0, 1]");
  if (max_message_size < 1) return invalid("max_message_size must be >= 1");
  for (const auto& h : headers) {
    if (!valid_header_token(h.name)) return invalid("header name '" + h.name + "' is not a valid HTTP token");
    if (h.value.find_first_of("\r\n") != std::string::npos)
      return invalid("header '" + h.name + "' value contains CR or LF");
  }
  for (const auto& p : subprotocols) {
    if (!valid_header_token(p) || p.find(',') != std::string::npos)
      return invalid("subprotocol '" + p + "' is not a valid token");
  }
  return {};
}

}  // namespace wscengine
