// The OpenTelemetry tracer: the engine's spans reach an SDK exporter with their
// links, and a span the user starts inside OnMessage is a child of on_message.
#include <gtest/gtest.h>

#include <opentelemetry/exporters/memory/in_memory_span_data.h>
#include <opentelemetry/exporters/memory/in_memory_span_exporter_factory.h>
#include <opentelemetry/sdk/trace/simple_processor_factory.h>
#include <opentelemetry/sdk/trace/tracer_provider.h>
#include <opentelemetry/sdk/trace/tracer_provider_factory.h>

#include <map>

#include <wscengine/memory.hpp>
#include <wscengine/otel.hpp>
#include <wscengine/wscengine.hpp>

#include "support/recorder.hpp"

using namespace wscengine;
using namespace wscengine::test;
namespace nostd = opentelemetry::nostd;
namespace sdktrace = opentelemetry::sdk::trace;
namespace memexp = opentelemetry::exporter::memory;

TEST(Otel, UserSpanInOnMessageIsAChildOfTheEngineSpan) {
  std::shared_ptr<memexp::InMemorySpanData> data;
  auto exporter = memexp::InMemorySpanExporterFactory::Create(data);
  std::shared_ptr<sdktrace::TracerProvider> sdk_provider =
      sdktrace::TracerProviderFactory::Create(sdktrace::SimpleSpanProcessorFactory::Create(std::move(exporter)));
  nostd::shared_ptr<opentelemetry::trace::TracerProvider> provider(sdk_provider);

  auto server = memory::Server::create();
  auto client = std::make_shared<Recorder>();
  client->on_message_hook = [&](Context& ctx, const Message&) {
    opentelemetry::trace::StartSpanOptions options;
    options.parent = otel::span_context(ctx.trace_context());
    provider->GetTracer("user")->StartSpan("user.handle", options)->End();
  };
  EngineOptions o;
  o.url = "ws://otel.test/";
  o.tracer = otel::make_tracer(provider);
  {
    Engine engine(o, client, server->connector());
    ASSERT_FALSE(engine.start());
    server->accept(5s)->send(MessageType::text, "traced");
    ASSERT_TRUE(client->wait_count(Event::message, 1));
    ASSERT_FALSE(engine.stop());
  }
  sdk_provider->ForceFlush();

  std::map<std::string, std::unique_ptr<sdktrace::SpanData>> by_name;
  for (auto& span : data->GetSpans()) by_name[std::string(span->GetName())] = std::move(span);
  for (const char* name : {"wscengine.start", "wscengine.open", "wscengine.on_open", "wscengine.run",
                           "wscengine.on_message", "wscengine.shutdown", "wscengine.on_close", "user.handle"}) {
    ASSERT_TRUE(by_name.count(name)) << name << " was not exported";
  }
  auto& on_message = by_name["wscengine.on_message"];
  auto& user = by_name["user.handle"];
  EXPECT_EQ(user->GetParentSpanId(), on_message->GetSpanId());
  EXPECT_EQ(user->GetTraceId(), on_message->GetTraceId());
  EXPECT_EQ(on_message->GetParentSpanId(), by_name["wscengine.run"]->GetSpanId());
  EXPECT_EQ(by_name["wscengine.run"]->GetParentSpanId(), by_name["wscengine.open"]->GetSpanId());
  EXPECT_EQ(by_name["wscengine.open"]->GetParentSpanId(), by_name["wscengine.start"]->GetSpanId());
  auto attributes = on_message->GetAttributes();
  EXPECT_EQ(nostd::get<std::int64_t>(attributes.at("wscengine.message.length")), 6);
  EXPECT_EQ(nostd::get<std::string>(attributes.at("wscengine.message.type")), "text");
}

TEST(Otel, ErrorsSetTheSpanStatus) {
  std::shared_ptr<memexp::InMemorySpanData> data;
  std::shared_ptr<sdktrace::TracerProvider> sdk_provider = sdktrace::TracerProviderFactory::Create(
      sdktrace::SimpleSpanProcessorFactory::Create(memexp::InMemorySpanExporterFactory::Create(data)));
  auto server = memory::Server::create();
  server->fail_next_dials(Error::http(401, "no token"));
  EngineOptions o;
  o.url = "ws://otel.test/";
  o.tracer = otel::make_tracer(nostd::shared_ptr<opentelemetry::trace::TracerProvider>(sdk_provider));
  Engine engine(o, std::make_shared<Recorder>(), server->connector());
  EXPECT_TRUE(engine.start().is(errc::http_status));
  sdk_provider->ForceFlush();
  int errors = 0;
  for (auto& span : data->GetSpans()) {
    if (span->GetStatus() == opentelemetry::trace::StatusCode::kError) ++errors;
  }
  EXPECT_EQ(errors, 2);  // wscengine.open and wscengine.start
}
