#include <wscengine/error.hpp>

namespace wscengine {
namespace {

class Category final : public std::error_category {
 public:
  const char* name() const noexcept override { return "wscengine"; }
  std::string message(int value) const override {
    switch (static_cast<errc>(value)) {
      case errc::invalid_url:
        return "invalid URL";
      case errc::invalid_option:
        return "invalid option";
      case errc::dns_failure:
        return "DNS lookup failed";
      case errc::connection_refused:
        return "connection refused";
      case errc::connect_failed:
        return "TCP connect failed";
      case errc::tls_handshake_failed:
        return "TLS handshake failed";
      case errc::tls_verification_failed:
        return "TLS certificate verification failed";
      case errc::http_status:
        return "server refused the WebSocket upgrade";
      case errc::handshake_failed:
        return "invalid WebSocket handshake response";
      case errc::timeout:
        return "timed out";
      case errc::closed:
        return "connection closed";
      case errc::message_too_big:
        return "message too big (1009)";
      case errc::invalid_utf8:
        return "invalid UTF-8 in text message (1007)";
      case errc::protocol_error:
        return "WebSocket protocol violation (1002)";
      case errc::already_connected:
        return "already connected";
      case errc::not_connected:
        return "not connected";
      case errc::would_block:
        return "no complete message buffered";
      case errc::cancelled:
        return "cancelled";
      case errc::open_failed:
        return "on_open failed";
      case errc::already_started:
        return "engine already started";
      case errc::not_running:
        return "engine not running";
      case errc::would_deadlock:
        return "call would deadlock here";
      case errc::io_error:
        return "I/O error";
      case errc::unsupported:
        return "not supported by this adapter";
      case errc::connection_lost:
        return "connection lost before the answer";
      case errc::attempts_exhausted:
        return "reconnect attempts exhausted";
      case errc::proxy_failed:
        return "HTTP proxy refused the tunnel";
      case errc::send_queue_full:
        return "send queue full";
      case errc::redirect_refused:
        return "redirect not followed";
      case errc::stale:
        return "no data for too long";
      case errc::expired:
        return "held send expired before a session took it";
      case errc::dropped:
        return "held send dropped for newer ones";
    }
    return "unknown wscengine error";
  }
};

// Constant-initialised: no guard to test on every Error::is() (one per message read).
constinit const Category kCategory;

}  // namespace

const std::error_category& error_category() noexcept { return kCategory; }

Error Error::closed(CloseFrame frame, std::string d) {
  Error e(errc::closed, std::move(d));
  e.close = std::move(frame);
  return e;
}

Error Error::http(int status, std::string d) {
  Error e(errc::http_status, std::move(d));
  e.http_status = status;
  return e;
}

std::string Error::message() const {
  if (!code) return "success";
  std::string text = code.message();
  // Appends, not "literal" + std::string: GCC 12 warns falsely (-Wrestrict) on those.
  if (http_status != 0) text.append(" (HTTP ").append(std::to_string(http_status)).append(")");
  if (close) {
    text.append(" (code ").append(std::to_string(close->code));
    if (!close->reason.empty()) text.append(", reason \"").append(close->reason).append("\"");
    text += ")";
  }
  if (!detail.empty()) text.append(": ").append(detail);
  return text;
}

std::string_view to_string(errc e) noexcept {
  switch (e) {
    case errc::invalid_url:
      return "invalid_url";
    case errc::invalid_option:
      return "invalid_option";
    case errc::dns_failure:
      return "dns_failure";
    case errc::connection_refused:
      return "connection_refused";
    case errc::connect_failed:
      return "connect_failed";
    case errc::tls_handshake_failed:
      return "tls_handshake_failed";
    case errc::tls_verification_failed:
      return "tls_verification_failed";
    case errc::http_status:
      return "http_status";
    case errc::handshake_failed:
      return "handshake_failed";
    case errc::timeout:
      return "timeout";
    case errc::closed:
      return "closed";
    case errc::message_too_big:
      return "message_too_big";
    case errc::invalid_utf8:
      return "invalid_utf8";
    case errc::protocol_error:
      return "protocol_error";
    case errc::already_connected:
      return "already_connected";
    case errc::not_connected:
      return "not_connected";
    case errc::would_block:
      return "would_block";
    case errc::cancelled:
      return "cancelled";
    case errc::open_failed:
      return "open_failed";
    case errc::already_started:
      return "already_started";
    case errc::not_running:
      return "not_running";
    case errc::would_deadlock:
      return "would_deadlock";
    case errc::io_error:
      return "io_error";
    case errc::unsupported:
      return "unsupported";
    case errc::attempts_exhausted:
      return "attempts_exhausted";
    case errc::connection_lost:
      return "connection_lost";
    case errc::proxy_failed:
      return "proxy_failed";
    case errc::send_queue_full:
      return "send_queue_full";
    case errc::redirect_refused:
      return "redirect_refused";
    case errc::stale:
      return "stale";
    case errc::expired:
      return "expired";
    case errc::dropped:
      return "dropped";
  }
  return "unknown";
}

}  // namespace wscengine
