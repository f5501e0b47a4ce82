// wscengine — request/response over a WebSocket for protocols whose messages carry
// a request id: register a request, get a future (or a callback), match answers in
// on_message.
#pragma once

#include <chrono>
#include <functional>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include <wscengine/client.hpp>
#include <wscengine/error.hpp>
#include <wscengine/message.hpp>

namespace wscengine {

/// Matches answers to requests by id. Every registered request ends exactly once:
/// with its answer, with `errc::timeout` when none came in time, with
/// `errc::connection_lost` when connection_lost() is called (from on_close), or with
/// `errc::cancelled` when the correlator is destroyed. Nothing is kept after that.
///
/// Typical use:
///   Correlator rpc([](const Message& m) { return id_of(m.payload); });
///   // on_message:  if (rpc.deliver(message)) return;   // an answer: consumed
///   // on_close:    rpc.connection_lost();
///   auto answer = rpc.request(ctx.connection(), "42", R"({"id":"42","op":"ping"})", 2s);
///   Result<InboundMessage> r = answer.get();
///
/// Callbacks run outside the correlator's lock, on the thread that ends the request
/// (the one calling deliver(), connection_lost() or the destructor, or the
/// correlator's own timer thread, which exists only while requests wait); they may
/// call the correlator again. A timeout the timer thread has already taken may still
/// be running its callback when connection_lost() returns. Thread safety: every member may be called from any thread.
class Correlator {
 public:
  /// Returns the request id a message answers, or nullopt when it is not an answer.
  using IdExtractor = std::function<std::optional<std::string>(const Message&)>;
  /// Receives the answer to one request, or the error that ended it.
  using Callback = std::function<void(Result<InboundMessage>)>;

  /// Matches answers to requests with `extract_id`.
  explicit Correlator(IdExtractor extract_id);
  ~Correlator();
  Correlator(const Correlator&) = delete;
  Correlator& operator=(const Correlator&) = delete;

  /// Registers request `id` and returns the future of its answer. A second request
  /// with an id still pending fails at once with `errc::invalid_option`.
  std::future<Result<InboundMessage>> expect(std::string id, std::chrono::milliseconds timeout);
  /// As expect(), with a callback instead of a future.
  void expect(std::string id, std::chrono::milliseconds timeout, Callback done);

  /// Registers `id`, then sends `payload` as text on `connection`. If the send
  /// fails, the request ends at once with the send's error.
  std::future<Result<InboundMessage>> request(const SessionConnection& connection, std::string id,
                                              std::string_view payload, std::chrono::milliseconds timeout);

  /// Call from on_message: if the message answers a pending request, ends it and
  /// returns true (the message is consumed); else returns false.
  bool deliver(const Message& message);

  /// Call from on_close: every pending request ends with `errc::connection_lost`.
  void connection_lost();

  /// Requests still waiting.
  std::size_t pending() const;

 private:
  struct State;
  std::shared_ptr<State> state_;
};

}  // namespace wscengine
