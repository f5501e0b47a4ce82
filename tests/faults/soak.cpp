// Soak (opt-in, not in CI): hours of random faults through the fault proxy against
// the project's feed server, on one adapter. Reports reconnects, callbacks per kind
// and RSS over time; fails when RSS grew after warm-up or a contract invariant broke.
//
//   build/release/tests/faults/fault_soak [--adapter beast|websocketpp] [--seconds N]
//
// Targets: `cmake --build --preset release --target fault_soak`.
#include <wscengine/wscengine.hpp>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <random>
#include <thread>

#include "fault_proxy.hpp"
#include "support/process.hpp"
#include "support/real_adapters.hpp"
#include "support/recorder.hpp"
#include "test_server.hpp"

using namespace wscengine;
using namespace std::chrono_literals;

using wscengine::test::rss_kib;

int main(int argc, char** argv) {
  std::string adapter = "beast";
  long seconds = 3600;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--adapter") == 0) adapter = argv[i + 1];
    if (std::strcmp(argv[i], "--seconds") == 0) seconds = std::atol(argv[i + 1]);
  }
  std::shared_ptr<Connector> connector;
  for (const auto& a : test::real_adapters())
    if (a.name == adapter) connector = a.make();
  if (!connector) {
    std::fprintf(stderr, "unknown adapter '%s'\n", adapter.c_str());
    return 2;
  }

  tools::TestServer server;
  server.on_session = [](tools::ServerSession& s) {  // a feed: 100 messages a second until it fails
    for (int i = 0;; ++i) {
      if (s.send(MessageType::text, "tick " + std::to_string(i))) return;
      std::this_thread::sleep_for(10ms);
    }
  };
  server.start();
  faults::FaultProxy proxy(server.port());
  auto client = std::make_shared<test::Recorder>();
  EngineOptions o;
  o.url = proxy.url("/soak");
  o.ping_interval = 500ms;
  o.pong_timeout = 1s;
  o.backoff.initial_delay = 50ms;
  o.backoff.max_delay = 1s;
  o.backoff.reset_after = 2s;
  Engine engine(o, client, connector);
  if (Error e = engine.start_background()) {
    std::fprintf(stderr, "start: %s\n", e.message().c_str());
    return 1;
  }

  std::mt19937 random(std::random_device{}());
  const faults::Fault kinds[] = {faults::Fault::reset, faults::Fault::blackhole, faults::Fault::cut_after,
                                 faults::Fault::slice, faults::Fault::delay};
  auto start = std::chrono::steady_clock::now();
  long warm_rss = -1, max_rss = 0;
  std::printf("seconds,rss_kib,opens,messages,read_errors,closes,restart_errors\n");
  for (long t = 0; t < seconds; ++t) {
    std::this_thread::sleep_for(1s);
    if (t % 5 == 4) {  // a fault every 5 s, then back to normal for new connections
      auto fault = kinds[random() % std::size(kinds)];
      proxy.set_delay(std::chrono::milliseconds(random() % 200));
      proxy.set_cut_after(random() % 4000);
      if (fault == faults::Fault::cut_after) {
        proxy.cut_open_links_after(random() % 4000);
      } else {
        proxy.set(fault);
        proxy.set(faults::Fault::pass);
      }
    }
    long rss = rss_kib();
    if (t == std::min<long>(seconds / 4, 300)) warm_rss = rss;
    if (warm_rss > 0) max_rss = std::max(max_rss, rss);
    if (t % 10 == 9 || t + 1 == seconds)
      std::printf(
          "%ld,%ld,%zu,%zu,%zu,%zu,%zu\n",
          static_cast<long>(
              std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - start).count()),
          rss, client->count(test::Event::open), client->count(test::Event::message),
          client->count(test::Event::read_error), client->count(test::Event::close),
          client->count(test::Event::restart_error));
    std::fflush(stdout);
  }
  engine.stop();
  client->mark_stopped();
  std::map<std::string, int> kinds_seen;
  for (const auto& e : client->events_of(test::Event::read_error))
    ++kinds_seen[std::string(to_string(static_cast<errc>(e.error.code.value())))];
  for (const auto& [kind, n] : kinds_seen) std::printf("read errors %s: %d\n", kind.c_str(), n);
  auto violations = client->violations();
  for (const auto& v : violations) std::fprintf(stderr, "invariant: %s\n", v.c_str());
  // The Recorder keeps every event, so allow for it: about 200 bytes per message.
  long allowance = 8 * 1024 + static_cast<long>(client->count(test::Event::message) / 5);
  bool flat = warm_rss < 0 || max_rss - warm_rss < allowance;
  std::printf("reconnects: %zu; rss after warm-up %ld KiB, max %ld KiB (allowance %ld KiB): %s\n",
              client->count(test::Event::open) - 1, warm_rss, max_rss, allowance, flat ? "flat" : "GREW");
  return violations.empty() && flat ? 0 : 1;
}
