// A feed client: subscribes in on_open (and again after every reconnect), prints
// each tick, and shows what the engine does when the server drops the connection.
// With OpenTelemetry it traces and measures everything; each tick is handled in a
// span of its own, a child of the engine's on_message span.
//
//   feed_client ws://127.0.0.1:PORT/feed [seconds] [--traces=KIND] [--metrics=KIND]
//               [--telemetry-file=PATH]
//
// KIND is otlp, console, lines or none; by default the standard OTEL_* variables
// decide (see wscengine::otel::ExportOptions).
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <wscengine/beast.hpp>
#include <wscengine/wscengine.hpp>

#ifdef FEED_CLIENT_HAVE_OTEL
#include <opentelemetry/trace/provider.h>

#include <wscengine/otel_export.hpp>
#endif

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
#ifdef FEED_CLIENT_HAVE_OTEL
    // No parent given: the engine made its on_message span the active one.
    auto span = opentelemetry::trace::Provider::GetTracerProvider()->GetTracer("feed_client")->StartSpan("feed.tick");
    span->SetAttribute("feed.tick", std::string(message.payload));
#endif
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
  std::vector<std::string> positional;
  std::string traces, metrics, telemetry_file;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    auto value = [&](const char* flag) {
      std::string prefix = std::string(flag) + "=";
      return arg.rfind(prefix, 0) == 0 ? std::optional<std::string>(arg.substr(prefix.size())) : std::nullopt;
    };
    if (auto v = value("--traces")) {
      traces = *v;
    } else if (auto v = value("--metrics")) {
      metrics = *v;
    } else if (auto v = value("--telemetry-file")) {
      telemetry_file = *v;
    } else if (arg.rfind("--", 0) == 0) {
      std::fprintf(stderr, "feed_client: unknown option %s\n", arg.c_str());
      return 2;
    } else {
      positional.push_back(arg);
    }
  }
  if (positional.empty()) {
    std::fprintf(stderr, "usage: feed_client URL [seconds] [--traces=KIND] [--metrics=KIND] [--telemetry-file=PATH]\n");
    return 2;
  }
  EngineOptions options;
  options.url = positional[0];
  options.backoff.initial_delay = std::chrono::milliseconds(200);
  options.backoff.max_delay = std::chrono::seconds(2);
  int seconds = positional.size() > 1 ? std::atoi(positional[1].c_str()) : 5;

#ifdef FEED_CLIENT_HAVE_OTEL
  otel::ExportOptions export_options;
  export_options.traces = traces;
  export_options.metrics = metrics;
  export_options.file = telemetry_file;
  export_options.service_name = "feed_client";
  auto exporters = otel::install_exporters(export_options);
  if (!exporters) {
    std::fprintf(stderr, "feed_client: telemetry: %s\n", exporters.error().message().c_str());
    return 2;
  }
  options.telemetry = exporters.value()->telemetry();
  std::printf("[telemetry] %s\n", exporters.value()->describe().c_str());
#else
  if (!traces.empty() || !metrics.empty())
    std::fprintf(stderr, "feed_client: built without OpenTelemetry; --traces/--metrics ignored\n");
#endif

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
