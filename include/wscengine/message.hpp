// wscengine — messages.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include <wscengine/trace_context.hpp>

namespace wscengine {

/// The two WebSocket data message kinds.
enum class MessageType : std::uint8_t { text, binary };

/// One complete inbound message that owns its bytes: what a read by hand fills
/// (SessionConnection::read, under a PauseGuard or in on_open) and what an adapter
/// hands the engine. Keep it as long as you like. Its borrowed counterpart is Message,
/// which on_message receives. Reuse one across reads: its payload's capacity is kept,
/// so reading does not allocate once warm.
/// Thread safety: a plain value, not shared.
struct InboundMessage {
  MessageType type = MessageType::text;  ///< text (UTF-8) or binary
  std::string payload{};                 ///< the whole message
  /// The span that read it (set by the tracing decorator, see instrument());
  /// invalid when adapter operations are not traced.
  TraceContext trace{};
};

/// A message handed to on_message, borrowed: the payload view is valid only until
/// on_message returns; copy it (into a std::string or an InboundMessage) to keep it.
/// The owned counterpart, which a read by hand fills, is InboundMessage. `sequence`
/// counts the messages handed to on_message in the session, starting at 0 and growing
/// by one per message; messages read by hand take no number.
/// Thread safety: read-only during the callback.
struct Message {
  MessageType type = MessageType::text;  ///< text (UTF-8) or binary
  std::uint64_t sequence = 0;            ///< 0, 1, 2, … within the session
  std::string_view payload{};            ///< the whole message; valid during on_message only

  /// True for a text message.
  bool is_text() const noexcept { return type == MessageType::text; }
  /// The payload as bytes.
  std::span<const std::byte> bytes() const noexcept {
    return std::as_bytes(std::span<const char>(payload.data(), payload.size()));
  }
};

}  // namespace wscengine
