#include <wscengine/options.hpp>

#include <wscengine/adapter.hpp>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <ctime>

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
  if (delivery != Delivery::callback_pool && delivery != Delivery::io_thread) {
    return invalid("delivery must be Delivery::callback_pool or Delivery::io_thread (got " +
                   std::to_string(static_cast<int>(delivery)) + ")");
  }
  if (busy_poll.count() < 0 || busy_poll > std::chrono::milliseconds(1)) {
    return invalid("busy_poll must be in 0..1000 µs (got " + std::to_string(busy_poll.count()) + " µs)");
  }
  if (busy_poll.count() > 0 && delivery != Delivery::io_thread) {
    return invalid("busy_poll needs delivery = Delivery::io_thread (a callback thread never waits for the network)");
  }
  if (max_redirects > 20) return invalid("max_redirects must be in 0..20 (got " + std::to_string(max_redirects) + ")");
  if (!(telemetry.message_sample_ratio >= 0.0 && telemetry.message_sample_ratio <= 1.0)) {
    return invalid("telemetry.message_sample_ratio must be in 0..1 (got " +
                   std::to_string(telemetry.message_sample_ratio) + ")");
  }
  auto positive = [](std::chrono::milliseconds d) { return d.count() > 0; };
  if (!positive(open_timeout)) return invalid("open_timeout must be > 0");
  if (!positive(close_timeout)) return invalid("close_timeout must be > 0");
  if (!positive(stop_timeout)) return invalid("stop_timeout must be > 0");
  if (!positive(write_timeout)) return invalid("write_timeout must be > 0");
  if (send_queue_bytes == 0) return invalid("send_queue_bytes must be > 0");
  if (send_queue_messages == 0) return invalid("send_queue_messages must be > 0");
  if (outage.mode != OutageSends::fail && outage.mode != OutageSends::hold && outage.mode != OutageSends::drop_oldest) {
    return invalid("outage.mode must be OutageSends::fail, hold or drop_oldest (got " +
                   std::to_string(static_cast<int>(outage.mode)) + ")");
  }
  if (outage.mode != OutageSends::fail) {
    if (outage.max_bytes == 0) return invalid("outage.max_bytes must be > 0 when sends are held");
    if (outage.max_messages == 0) return invalid("outage.max_messages must be > 0 when sends are held");
    if (!positive(outage.max_age)) return invalid("outage.max_age must be > 0 when sends are held");
  }
  if (ping_interval.count() < 0) return invalid("ping_interval must be >= 0 (0 = no heartbeat)");
  if (max_silence.count() < 0) return invalid("max_silence must be >= 0 (0 = no stale-data watchdog)");
  if (ping_interval.count() > 0 && !positive(pong_timeout)) return invalid("pong_timeout must be > 0");
  if (backoff.initial_delay.count() < 0) return invalid("backoff.initial_delay must be >= 0");
  if (backoff.max_delay < backoff.initial_delay) return invalid("backoff.max_delay must be >= backoff.initial_delay");
  if (!(backoff.factor >= 1.0) || !std::isfinite(backoff.factor))
    return invalid("backoff.factor must be a finite number >= 1");
  if (!(backoff.jitter >= 0.0 && backoff.jitter <= 1.0)) return invalid("backoff.jitter must be in [0, 1]");
  if (backoff.reset_after.count() < 0) return invalid("backoff.reset_after must be >= 0");
  if (backoff.max_retry_after.count() < 0) return invalid("backoff.max_retry_after must be >= 0");
  if (max_message_size < 1) return invalid("max_message_size must be >= 1");
  if (stream.enabled && stream.max_part_size < 4096) return invalid("stream.max_part_size must be >= 4096");
  if (http2 > Http2Mode::require) return invalid("http2 must be off, prefer or require");
  if (http2 == Http2Mode::require) {
    if (auto parsed = parse_url(url); parsed && !parsed.value().unix_socket.empty())
      return invalid("http2 require: a ws+unix:// URL has no HTTP/2");
    else if (parsed && !parsed.value().secure && !http2_cleartext)
      return invalid("http2 require on a ws:// URL needs http2_cleartext (HTTP/2 with prior knowledge)");
  }
  for (const auto& h : headers) {
    if (!valid_header_token(h.name)) return invalid("header name '" + h.name + "' is not a valid HTTP token");
    if (h.value.find_first_of("\r\n") != std::string::npos)
      return invalid("header '" + h.name + "' value contains CR or LF");
  }
  if (!proxy.url.empty()) {
    if (auto parsed = parse_proxy_url(proxy.url); !parsed) return invalid("proxy.url: " + parsed.error().detail);
  }
  if (auto bad = check_deflate_options(deflate); !bad.empty()) return invalid(bad);
  for (const auto& pin : tls.pinned_public_keys) {
    if (!parse_public_key_pin(pin))
      return invalid("tls.pinned_public_keys: '" + pin +
                     "' is not a public-key pin (sha256/ and the base64 of a 32-byte SHA-256)");
  }
  for (const auto& a : addresses) {
    if (a.empty() || a.find_first_of(" \t\r\n") != std::string::npos)
      return invalid("addresses: '" + a + "' is not an address");
  }
  for (const auto& p : subprotocols) {
    if (!valid_header_token(p) || p.find(',') != std::string::npos)
      return invalid("subprotocol '" + p + "' is not a valid token");
  }
  return {};
}

}  // namespace wscengine

namespace wscengine {

std::optional<std::chrono::milliseconds> retry_after(const Error& error) {
  auto value = error.http_header("Retry-After");
  if (!value) return std::nullopt;
  std::string text(*value);
  while (!text.empty() && text.back() == ' ') text.pop_back();
  while (!text.empty() && text.front() == ' ') text.erase(0, 1);
  if (text.empty()) return std::nullopt;
  if (std::all_of(text.begin(), text.end(), [](unsigned char c) { return std::isdigit(c); })) {
    if (text.size() > 9) return std::chrono::milliseconds(std::chrono::hours(24 * 365));  // absurdly far
    return std::chrono::milliseconds(std::stoll(text) * 1000);
  }
  // RFC 9110 §10.2.3: an HTTP date, IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT").
  std::tm tm{};
  const char* end = ::strptime(text.c_str(), "%a, %d %b %Y %H:%M:%S GMT", &tm);
  if (!end || *end != '\0') return std::nullopt;
  auto when = std::chrono::system_clock::from_time_t(::timegm(&tm));
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(when - std::chrono::system_clock::now());
  return std::max(left, std::chrono::milliseconds(0));
}

RetryDecision default_retry_policy(const Error& error, std::uint32_t, const BackoffOptions& backoff) {
  if (error.is(errc::http_status)) {
    int status = error.http_status;
    // The request itself is wrong, not allowed, gone, or asks another protocol: the
    // same request gets the same answer.
    if (status == 400 || status == 401 || status == 403 || status == 404 || status == 405 || status == 410 ||
        status == 426) {
      return RetryDecision::give_up("HTTP " + std::to_string(status) +
                                    " will not change by retrying (set EngineOptions::retry_policy to retry anyway)");
    }
    if (status >= 300 && status < 400) {
      return RetryDecision::give_up("HTTP " + std::to_string(status) +
                                    " is a redirect, and redirects are not followed (EngineOptions::max_redirects)");
    }
    // Busy or failing for now (408, 429, 5xx): again, after Retry-After when given.
    if (status == 408 || status == 429 || status >= 500) {
      if (auto wait = retry_after(error)) return RetryDecision::again(std::min(*wait, backoff.max_retry_after));
    }
  }
  if (error.is(errc::redirect_refused)) return RetryDecision::give_up("the redirect will not change by retrying");
  if (error.is(errc::proxy_failed) && (error.http_status == 407 || error.http_status == 403)) {
    return RetryDecision::give_up("the proxy answered " + std::to_string(error.http_status) +
                                  (error.http_status == 407 ? " (credentials missing or wrong)" : " (forbidden)") +
                                  "; retrying will not change it");
  }
  if (error.is(errc::tls_verification_failed))
    return RetryDecision::give_up("the server certificate does not verify; retrying will not change it");
  if (error.is(errc::invalid_url) || error.is(errc::invalid_option) || error.is(errc::unsupported))
    return RetryDecision::give_up("the request itself is invalid");
  return RetryDecision::again();
}

}  // namespace wscengine
