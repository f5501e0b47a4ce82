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

/// Which piece of a message a read returned. Without streaming (the default) every
/// message is `whole`. With EngineOptions::stream on, a message that is not complete
/// when its read begins, or is larger than StreamOptions::max_part_size, comes as
/// `first`, any number of `middle`, then `last` (see docs/engine-operations.md,
/// "Streamed messages").
enum class MessagePart : std::uint8_t {
  whole,   ///< the whole message
  first,   ///< the first part of a streamed message
  middle,  ///< a part that is neither the first nor the last
  last,    ///< the last part: the message is complete
};

/// One complete inbound message that owns its bytes: what a read by hand fills
/// (SessionConnection::read, under a PauseGuard or in on_open) and what an adapter
/// hands the engine. Keep it as long as you like. Its borrowed counterpart is Message,
/// which on_message receives. Reuse one across reads: its payload's capacity is kept,
/// so reading does not allocate once warm.
/// Thread safety: a plain value, not shared.
struct InboundMessage {
  MessageType type = MessageType::text;  ///< text (UTF-8) or binary
  std::string payload{};                 ///< the whole message, or the part's bytes
  /// The span that read it (set by the tracing decorator, see instrument());
  /// invalid when adapter operations are not traced.
  TraceContext trace{};
  /// `whole`, unless streaming is on (StreamOptions) and this is a part of a message.
  MessagePart part = MessagePart::whole;
};

/// A message handed to on_message, borrowed: the payload view is valid only until
/// on_message returns; copy it (into a std::string or an InboundMessage) to keep it.
/// The owned counterpart, which a read by hand fills, is InboundMessage. `sequence`
/// counts the messages handed to on_message in the session, starting at 0 and growing
/// by one per message; messages read by hand take no number. With streaming on
/// (EngineOptions::stream) a message may come in parts: each part is one on_message,
/// the parts of one message share its sequence, arrive in order, and never run at
/// once (even with several reader slots); `offset` says where a part begins.
/// Thread safety: read-only during the callback.
struct Message {
  MessageType type = MessageType::text;  ///< text (UTF-8) or binary
  std::uint64_t sequence = 0;            ///< 0, 1, 2, … within the session
  /// The whole message, or this part's bytes; valid during on_message only. A part of
  /// a text message ends between code points: each part is valid UTF-8 on its own.
  std::string_view payload{};
  MessagePart part = MessagePart::whole;  ///< whole, or which part of a streamed message
  std::uint64_t offset = 0;               ///< bytes of the message before this part (0 for whole and first)

  /// True for a text message.
  bool is_text() const noexcept { return type == MessageType::text; }
  /// True for a whole message and for the first part of a streamed one.
  bool is_first() const noexcept { return part == MessagePart::whole || part == MessagePart::first; }
  /// True for a whole message and for the last part of a streamed one.
  bool is_last() const noexcept { return part == MessagePart::whole || part == MessagePart::last; }
  /// The payload as bytes.
  std::span<const std::byte> bytes() const noexcept {
    return std::as_bytes(std::span<const char>(payload.data(), payload.size()));
  }
};

}  // namespace wscengine
