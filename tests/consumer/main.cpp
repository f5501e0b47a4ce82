// Built against an installed wscengine: one engine on the in-memory adapter, and a
// Beast connector that must refuse a closed port with a clear error.
#include <cstdio>

#include <wscengine/beast.hpp>
#include <wscengine/memory.hpp>
#include <wscengine/wscengine.hpp>
#ifdef CONSUMER_HAS_OTEL
#include <wscengine/otel.hpp>
#endif

int main() {
  using namespace wscengine;
  auto server = memory::Server::create();
  auto client = std::make_shared<LambdaClient>();
  EngineOptions options;
  options.url = "ws://memory.test/";
#ifdef CONSUMER_HAS_OTEL
  options.telemetry.tracer = otel::make_tracer();  // the global (no-op) provider
  std::puts("consumer: built with wscengine::otel");
#endif
  Engine engine(options, client, server->connector());
  if (Error e = engine.start()) return std::printf("start failed: %s\n", e.message().c_str()), 1;
  if (Error e = engine.stop()) return std::printf("stop failed: %s\n", e.message().c_str()), 1;

  options.url = "ws://127.0.0.1:1/";
  Engine beast_engine(options, client, beast::make_connector());
  Error e = beast_engine.start();
  std::printf("consumer: beast adapter says: %s\n", e.message().c_str());
  return e.is(errc::connection_refused) ? 0 : 1;
}
