// Test support: a Metrics sink that counts in memory, to check what the engine
// reports without OpenTelemetry.
#pragma once

#include <map>
#include <mutex>
#include <string>

#include <wscengine/telemetry.hpp>

namespace wscengine::test {

/// Thread safety: every member may be called from any thread.
class FakeMetrics final : public Metrics {
 public:
  void message_received(MessageType, std::size_t bytes) noexcept override { add("received", 1, bytes); }
  void message_sent(MessageType, std::size_t bytes) noexcept override { add("sent", 1, bytes); }
  void reconnect_attempt() noexcept override { add("reconnect_attempt"); }
  void reconnect_success() noexcept override { add("reconnect_success"); }
  /// Counted as "read_error" and as "read_error_<errc name>" ("read_error_stale").
  void read_error(const Error& error) noexcept override {
    add("read_error");
    if (error.code.category() == error_category())
      add("read_error_" + std::string(to_string(static_cast<errc>(error.code.value()))));
  }
  void on_message_duration(std::chrono::nanoseconds) noexcept override { add("on_message"); }
  void dial_duration(std::chrono::nanoseconds, const Error& error) noexcept override {
    add(error ? "dial_failed" : "dial_ok");
  }
  void handshake_duration(std::chrono::nanoseconds) noexcept override { add("handshake"); }
  void redirect(int status) noexcept override { add("redirect_" + std::to_string(status)); }
  void http2_connections(std::int64_t delta) noexcept override { add(delta > 0 ? "http2_opened" : "http2_ended"); }
  void http2_streams(std::uint64_t streams) noexcept override { add("http2_streams_" + std::to_string(streams)); }
  void connection_state(ConnectionState from, ConnectionState to) noexcept override {
    std::lock_guard lock(mutex_);
    --state_[from];
    ++state_[to];
    if (state_[ConnectionState::open] > 1 || state_[ConnectionState::dialing] > 1) ++state_errors_;
  }

  /// Events of a kind ("received", "dial_ok"...).
  long count(const std::string& kind) const {
    std::lock_guard lock(mutex_);
    auto it = counts_.find(kind);
    return it == counts_.end() ? 0 : it->second;
  }
  long bytes(const std::string& kind) const {
    std::lock_guard lock(mutex_);
    auto it = bytes_.find(kind);
    return it == bytes_.end() ? 0 : it->second;
  }
  /// Connections in a state now (none counts down from 0 as others count up).
  long in_state(ConnectionState state) const {
    std::lock_guard lock(mutex_);
    auto it = state_.find(state);
    return it == state_.end() ? 0 : it->second;
  }
  /// Times one engine was seen open or dialing twice at once.
  long state_errors() const {
    std::lock_guard lock(mutex_);
    return state_errors_;
  }

 private:
  void add(const std::string& kind, long n = 1, std::size_t bytes = 0) {
    std::lock_guard lock(mutex_);
    counts_[kind] += n;
    bytes_[kind] += static_cast<long>(bytes);
  }
  mutable std::mutex mutex_;
  std::map<std::string, long> counts_, bytes_;
  std::map<ConnectionState, long> state_;
  long state_errors_ = 0;
};

}  // namespace wscengine::test
