// wscengine — typed errors.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <variant>
#include <vector>

namespace wscengine {

/// Every failure the engine or an adapter reports, by kind. The category is
/// `wscengine::error_category()`; compare with `std::error_code == errc::x`.
/// Two kinds are adapter-only: `would_block` and `already_connected` pass between an
/// adapter and the engine (wscengine/adapter.hpp) and never reach an engine's user,
/// neither in a callback nor from an Engine or SessionConnection call.
enum class errc {
  invalid_url = 1,          ///< the URL cannot be parsed or its scheme is not ws/wss
  invalid_option,           ///< an option failed validation
  dns_failure,              ///< the host name did not resolve
  connection_refused,       ///< TCP connect was refused
  connect_failed,           ///< TCP connect failed for another reason (unreachable…)
  tls_handshake_failed,     ///< TLS handshake failed (protocol, alert)
  tls_verification_failed,  ///< the server certificate did not verify
  http_status,              ///< the server answered the upgrade with a non-101 status
  handshake_failed,         ///< the upgrade response was not a valid WebSocket answer
  timeout,                  ///< an operation did not finish within its timeout
  closed,                   ///< the connection is closed; `Error::close` holds the code
  message_too_big,          ///< a message exceeded the maximum size (close code 1009)
  invalid_utf8,             ///< a text message was not valid UTF-8 (close code 1007)
  protocol_error,           ///< the peer violated RFC 6455 (close code 1002)
  already_connected,        ///< adapter-only: dial on a connection that is already connected
  not_connected,            ///< an operation that needs an open connection
  would_block,              ///< adapter-only: no complete message is buffered (Connection::try_read)
  cancelled,                ///< the operation was cancelled (stop, restart, abort)
  open_failed,              ///< the user's on_open returned an error
  already_started,          ///< start() on an engine that is running
  not_running,              ///< the engine is not started, or stopped (Engine::send)
  would_deadlock,           ///< a blocking call made where it could never return
  io_error,                 ///< another transport error; `Error::detail` says which
  unsupported,              ///< this adapter cannot do what was asked
  attempts_exhausted,       ///< the restart loop reached its attempt limit
  connection_lost,          ///< the connection ended before the answer to a request came
  proxy_failed,             ///< the HTTP proxy refused the tunnel; `Error::http_status` holds its status
  send_queue_full,          ///< the session's send queue is at its limit (EngineOptions::send_queue_bytes/messages)
  redirect_refused,         ///< a 3xx answer was not followed (loop, too many, wss to ws, bad Location, redirects off)
  stale,                    ///< no data message for EngineOptions::max_silence: the session is restarted
  expired,                  ///< a send held across an outage for longer than EngineOptions::outage.max_age
  dropped,                  ///< a held send dropped for newer ones (OutageSends::drop_oldest)
};

/// The enumerator's name ("connection_refused"): a stable token for logs and
/// metric attributes. Thread safety: pure.
std::string_view to_string(errc e) noexcept;

/// The category of `errc`. Thread safety: a function-local static, safe everywhere.
const std::error_category& error_category() noexcept;

inline std::error_code make_error_code(errc e) noexcept { return {static_cast<int>(e), error_category()}; }

/// Close status codes of RFC 6455 §7.4.1 that the engine uses by name.
namespace close_code {
inline constexpr std::uint16_t normal = 1000;            ///< the purpose was fulfilled
inline constexpr std::uint16_t going_away = 1001;        ///< the endpoint goes away (shutdown, navigation)
inline constexpr std::uint16_t protocol_error = 1002;    ///< the peer violated the protocol
inline constexpr std::uint16_t unsupported_data = 1003;  ///< a message type the endpoint cannot take
inline constexpr std::uint16_t no_status = 1005;         ///< never sent: a close frame without a code
inline constexpr std::uint16_t abnormal = 1006;          ///< never sent: a drop without close frame
inline constexpr std::uint16_t invalid_payload = 1007;   ///< data not consistent with its type (bad UTF-8)
inline constexpr std::uint16_t policy_violation = 1008;  ///< a message that violates the endpoint's policy
inline constexpr std::uint16_t too_big = 1009;           ///< a message too big to process
inline constexpr std::uint16_t internal_error = 1011;    ///< the server met an unexpected condition
}  // namespace close_code

/// A close frame: status code and UTF-8 reason (at most 123 bytes on the wire).
/// A plain value; thread safety as for any value type.
struct CloseFrame {
  std::uint16_t code = close_code::normal;  ///< the status code (RFC 6455 §7.4)
  std::string reason{};                     ///< UTF-8, possibly empty
  /// Same code and reason.
  friend bool operator==(const CloseFrame&, const CloseFrame&) = default;
};

/// One HTTP header field. A plain value.
struct Header {
  std::string name{};   ///< as written; HTTP compares names case-insensitively
  std::string value{};  ///< without surrounding white space
  /// Same name (case-sensitively) and value.
  friend bool operator==(const Header&, const Header&) = default;
};

/// An error with the details a user needs to act on it: the kind (`code`), a
/// human-readable `detail`, the HTTP status of a refused handshake and the close
/// frame of a closed connection. A default-constructed Error means success.
/// A plain value; thread safety as for any value type.
struct Error {
  std::error_code code{};              ///< the kind: an `errc` of error_category(), or a system error
  std::string detail{};                ///< what happened and where, for people
  int http_status = 0;                 ///< set when code == errc::http_status or errc::proxy_failed
  std::vector<Header> http_headers{};  ///< the refusal's response headers (Retry-After…)
  std::optional<CloseFrame> close{};   ///< set when code == errc::closed

  /// Success.
  Error() = default;
  /// An error of any category with its detail.
  Error(std::error_code c, std::string d = {}) : code(c), detail(std::move(d)) {}
  /// A wscengine error of kind `e` with its detail.
  Error(errc e, std::string d = {}) : code(make_error_code(e)), detail(std::move(d)) {}

  /// `errc::closed` carrying the close frame (1006 for a drop).
  static Error closed(CloseFrame frame, std::string d = {});
  /// `errc::http_status` carrying the server's status.
  static Error http(int status, std::string d = {});

  /// True for an error, false for success.
  explicit operator bool() const noexcept { return static_cast<bool>(code); }
  /// True when the kind is `e`.
  bool is(errc e) const noexcept { return code == make_error_code(e); }
  /// The first response header of a refusal with this name (case-insensitive).
  std::optional<std::string_view> http_header(std::string_view name) const;
  /// "kind: detail" in one line, e.g. "connection refused: dial ws://127.0.0.1:9/".
  std::string message() const;
};

/// Either a value or an Error (C++20 has no std::expected).
/// A plain value; thread safety as for any value type.
template <class T>
class Result {
 public:
  /// A success holding `value`.
  Result(T value) : v_(std::in_place_index<0>, std::move(value)) {}
  /// A failure holding `error`.
  Result(Error error) : v_(std::in_place_index<1>, std::move(error)) {}
  /// True for a success.
  bool has_value() const noexcept { return v_.index() == 0; }
  /// True for a success.
  explicit operator bool() const noexcept { return has_value(); }
  /// The value; throws std::bad_variant_access on a failure.
  T& value() & { return std::get<0>(v_); }
  /// The value; throws std::bad_variant_access on a failure.
  const T& value() const& { return std::get<0>(v_); }
  /// The value, moved out; throws std::bad_variant_access on a failure.
  T&& value() && { return std::get<0>(std::move(v_)); }
  /// The value's members; only on a success.
  T* operator->() { return &std::get<0>(v_); }
  /// The value's members; only on a success.
  const T* operator->() const { return &std::get<0>(v_); }
  /// The error; throws std::bad_variant_access on a success.
  const Error& error() const& { return std::get<1>(v_); }

 private:
  std::variant<T, Error> v_;
};

}  // namespace wscengine

/// \cond
template <>
struct std::is_error_code_enum<wscengine::errc> : std::true_type {};
/// \endcond
