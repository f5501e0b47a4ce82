// A feed client: subscribes in OnOpen (and again after every reconnect), prints
// each tick, and shows what the engine does when the server drops the connection.
//
//   feed_client ws://127.0.0.1:PORT/feed [seconds]
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>

#include <wscengine/beast.hpp>
#include <wscengine/wscengine.hpp>

using namespace wscengine;

namespace {

class FeedClient final : public Client {
 public:
  Error on_open(Context& ctx, const HandshakeResponse& response, bool restarting) override {
    std::printf("[open]    session %llu (%s), HTTP %d\n", static_cast<unsigned long long>(ctx.session_id()),
                restarting ? "reconnected" : "first connect", response.status);
    // Log in / subscribe by hand before the engine starts reading.
    if (Error e = ctx.connection().send_text("subscribe ticks")) return e;
    InboundMessage ack;
    if (Error e = ctx.connection().read(ack, std::chrono::seconds(5))) return e;
    std::printf("[open]    server says: %s\n", ack.payload.c_str());
    return {};
  }
  void on_message(Context& ctx, const Message& message) override {
    ++messages;
    std::printf("[message] session %llu #%llu: %.*s\n", static_cast<unsigned long long>(ctx.session_id()),
                static_cast<unsigned long long>(message.sequence), static_cast<int>(message.payload.size()),
                message.payload.data());
  }
  std::optional<CloseFrame> on_close(Context& ctx, const std::optional<CloseFrame>& received) override {
    if (received) {
      std::printf("[close]   session %llu closed by the %s: code %u%s%s\n",
                  static_cast<unsigned long long>(ctx.session_id()),
                  ctx.initiator() == CloseInitiator::peer ? "server" : "client", received->code,
                  received->code == close_code::abnormal ? " (dropped without a close frame)" : "",
                  received->reason.empty() ? "" : (" reason: " + received->reason).c_str());
    } else {
      std::printf("[close]   session %llu closed by the client\n", static_cast<unsigned long long>(ctx.session_id()));
    }
    ++closes;
    return std::nullopt;
  }
  void on_read_error(Context&, const Error& error) override {
    std::printf("[error]   read: %s\n", error.message().c_str());
  }
  void on_close_error(Context&, const Error& error) override {
    std::printf("[error]   close: %s\n", error.message().c_str());
  }
  void on_restart_error(Context&, const Error& error, std::uint32_t retry) override {
    std::printf("[retry]   attempt %u failed: %s (backing off)\n", retry, error.message().c_str());
  }

  std::atomic<int> messages{0};
  std::atomic<int> closes{0};
};

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: feed_client URL [seconds]\n");
    return 2;
  }
  EngineOptions options;
  options.url = argv[1];
  options.backoff.initial_delay = std::chrono::milliseconds(200);
  options.backoff.max_delay = std::chrono::seconds(2);
  int seconds = argc > 2 ? std::atoi(argv[2]) : 5;

  auto client = std::make_shared<FeedClient>();
  try {
    Engine engine(options, client, beast::make_connector());
    if (Error e = engine.start()) {
      std::fprintf(stderr, "feed_client: could not connect: %s\n", e.message().c_str());
      return 1;
    }
    std::this_thread::sleep_for(std::chrono::seconds(seconds));
    if (Error e = engine.stop()) std::fprintf(stderr, "feed_client: stop: %s\n", e.message().c_str());
    std::printf("[summary] %d messages, %llu sessions, %d closes\n", client->messages.load(),
                static_cast<unsigned long long>(engine.session_id()), client->closes.load());
  } catch (const InvalidOptions& e) {
    std::fprintf(stderr, "feed_client: %s\n", e.what());
    return 2;
  }
  return 0;
}
