// wscengine — live statistics of an engine and of its sessions (Engine::stats(),
// SessionConnection::stats()).
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>

#include <wscengine/error.hpp>

namespace wscengine {

/// Messages and payload bytes (WebSocket payload, before any compression; pings,
/// pongs and close frames not counted). A plain value.
struct TrafficStats {
  std::uint64_t messages_received = 0;  ///< read by the engine's readers (what on_message gets)
  std::uint64_t bytes_received = 0;     ///< their payload bytes
  std::uint64_t messages_sent = 0;      ///< whose last byte the adapter handed to the kernel
  std::uint64_t bytes_sent = 0;         ///< their payload bytes
};

/// One session (one connection, from on_open to on_close). A plain value: a snapshot
/// taken without a lock, each field read on its own (two fields may be a message apart).
struct SessionStats {
  std::uint64_t session_id = 0;  ///< 0: no session (Engine::stats() between sessions)
  /// Since the opening handshake of this session succeeded (on_open was called).
  std::chrono::nanoseconds age{0};
  TrafficStats traffic{};             ///< this session's messages and bytes
  std::uint64_t queued_messages = 0;  ///< sent but not yet handed to the kernel
  std::uint64_t queued_bytes = 0;     ///< their payload bytes (buffered_amount())
  /// The last ping's round trip: from the heartbeat's pings (EngineOptions::ping_interval)
  /// and SessionConnection::ping(); empty until the first pong.
  std::optional<std::chrono::nanoseconds> rtt{};
  /// Smoothed as TCP does (RFC 6298: 7/8 of the previous value + 1/8 of the new one).
  std::optional<std::chrono::nanoseconds> smoothed_rtt{};
};

/// An engine's statistics: totals since it was constructed, the current session, the
/// last error. Engine::stats() takes no lock the message path takes (its counters are
/// atomics written by the thread that reads or sends), so it may be called from any
/// thread, callbacks included, at any rate. A plain value.
struct EngineStats {
  TrafficStats traffic{};        ///< every session of this engine, since construction
  std::uint64_t sessions = 0;    ///< sessions opened (on_open returned no error)
  std::uint64_t reconnects = 0;  ///< of those, opened by the restart loop (on_open's `restarting`)
  SessionStats session{};        ///< the open session; session_id 0 between sessions
  /// Sends held for the next session (EngineOptions::outage), not yet handed to one.
  std::uint64_t held_messages = 0;
  std::uint64_t held_bytes = 0;     ///< their payload bytes
  std::uint64_t sends_expired = 0;  ///< held sends given up after outage.max_age (`errc::expired`)
  std::uint64_t sends_dropped = 0;  ///< held sends dropped for newer ones (`errc::dropped`)
  /// The round trips of the current session, or of the last one that had any, so that
  /// a figure survives the reconnect it may explain.
  std::optional<std::chrono::nanoseconds> rtt{};
  std::optional<std::chrono::nanoseconds> smoothed_rtt{};  ///< see rtt
  /// The last error handed to on_read_error, on_restart_error or on_close_error (or
  /// returned by a blocking start()), and when.
  std::optional<Error> last_error{};
  std::chrono::system_clock::time_point last_error_at{};  ///< set with last_error
};

}  // namespace wscengine
