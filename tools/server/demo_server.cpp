// wscengine-demo-server: a local feed for the demo. Every connection waits for the
// client's "subscribe" message, then receives numbered ticks at a steady rate; after
// every --drop-every ticks the TCP connection is dropped without a close frame, so
// the client shows on_close 1006, backoff and a reconnect with resubscription.
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>

#include "test_server.hpp"

using namespace wscengine;

namespace {
volatile std::sig_atomic_t g_stop = 0;
void on_signal(int) { g_stop = 1; }

long flag(int argc, char** argv, const char* name, long fallback) {
  for (int i = 1; i + 1 < argc; ++i)
    if (std::strcmp(argv[i], name) == 0) return std::strtol(argv[i + 1], nullptr, 10);
  return fallback;
}
}  // namespace

int main(int argc, char** argv) {
  if (argc > 1 && (std::strcmp(argv[1], "--help") == 0 || std::strcmp(argv[1], "-h") == 0)) {
    std::puts("usage: wscengine-demo-server [--port P] [--rate MSGS_PER_S] [--drop-every N] [--seconds S]");
    return 0;
  }
  long port = flag(argc, argv, "--port", 0);
  long rate = flag(argc, argv, "--rate", 20);
  long drop_every = flag(argc, argv, "--drop-every", 10);
  long seconds = flag(argc, argv, "--seconds", 60);
  tools::ServerOptions options;
  options.port = static_cast<std::uint16_t>(port);
  tools::TestServer server(options);
  std::atomic<long> tick{0};
  server.on_session = [&](tools::ServerSession& session) {
    InboundMessage request;
    if (session.read(request, std::chrono::seconds(10)) || request.payload.rfind("subscribe", 0) != 0) {
      session.close({close_code::policy_violation, "send subscribe first"});
      return;
    }
    session.send(MessageType::text, "subscribed: " + request.payload.substr(request.payload.find(' ') + 1));
    for (long sent = 0; !g_stop; ++sent) {
      if (drop_every > 0 && sent == drop_every) {
        session.drop();
        return;
      }
      if (session.send(MessageType::text, "tick " + std::to_string(++tick))) return;
      std::this_thread::sleep_for(std::chrono::microseconds(rate > 0 ? 1'000'000 / rate : 0));
    }
  };
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  server.start();
  std::printf("%s\n", server.url("/feed").c_str());
  std::fflush(stdout);
  for (long i = 0; i < seconds * 10 && !g_stop; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  g_stop = 1;
  server.stop();
  return 0;
}
