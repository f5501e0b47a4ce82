// install_exporters: the exporter choice from options and OTEL_* variables, the
// errors it gives, and the "lines" output of a real engine run.
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

#include <wscengine/memory.hpp>
#include <wscengine/otel_export.hpp>
#include <wscengine/wscengine.hpp>

#include "support/process.hpp"
#include "support/recorder.hpp"

using namespace wscengine;
using namespace wscengine::test;

namespace {

// Sets an environment variable for one test and restores it after.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    if (value)
      ::setenv(name, value, 1);
    else
      ::unsetenv(name);
  }
  ~ScopedEnv() {
    if (old_)
      ::setenv(name_, old_->c_str(), 1);
    else
      ::unsetenv(name_);
  }

 private:
  const char* name_;
  std::optional<std::string> old_;
};

std::string read_all(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// An engine on the in-memory adapter with `telemetry` receives one binary message
// "abc" and stops.
void one_message_session(const TelemetryOptions& telemetry) {
  auto server = memory::Server::create();
  auto client = std::make_shared<Recorder>();
  EngineOptions o;
  o.url = "ws://lines.test/";
  o.telemetry = telemetry;
  Engine engine(o, client, server->connector());
  ASSERT_FALSE(engine.start());
  server->accept(5s)->send(MessageType::binary, "abc");
  ASSERT_TRUE(client->wait_count(Event::message, 1));
  ASSERT_FALSE(engine.stop());
}

}  // namespace

TEST(OtelExport, UnknownExporterNamesTheVariable) {
  ScopedEnv traces("OTEL_TRACES_EXPORTER", "zipkin");
  auto result = otel::install_exporters({});
  ASSERT_FALSE(result);
  EXPECT_TRUE(result.error().is(errc::invalid_option));
  EXPECT_NE(result.error().message().find("OTEL_TRACES_EXPORTER"), std::string::npos) << result.error().message();
  EXPECT_NE(result.error().message().find("zipkin"), std::string::npos);
}

TEST(OtelExport, NothingConfiguredMeansNoExporters) {
  ScopedEnv traces("OTEL_TRACES_EXPORTER", nullptr), metrics("OTEL_METRICS_EXPORTER", nullptr),
      endpoint("OTEL_EXPORTER_OTLP_ENDPOINT", nullptr), traces_endpoint("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", nullptr),
      metrics_endpoint("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", nullptr);
  auto result = otel::install_exporters({});
  ASSERT_TRUE(result) << result.error().message();
  EXPECT_EQ(result.value()->describe(), "traces: none, metrics: none");
  auto telemetry = result.value()->telemetry();
  EXPECT_EQ(telemetry.tracer, nullptr);
  EXPECT_EQ(telemetry.metrics, nullptr);
}

TEST(OtelExport, AnOtlpEndpointSelectsOtlpWithTheConfiguredProtocol) {
  ScopedEnv traces("OTEL_TRACES_EXPORTER", nullptr), metrics("OTEL_METRICS_EXPORTER", "none"),
      endpoint("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:9"), protocol("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc");
  {
    auto result = otel::install_exporters({});
    ASSERT_TRUE(result) << result.error().message();
    EXPECT_EQ(result.value()->describe(), "traces: otlp (grpc), metrics: none");
    EXPECT_NE(result.value()->telemetry().tracer, nullptr);
  }
  ScopedEnv bad("OTEL_EXPORTER_OTLP_PROTOCOL", "carrier-pigeon");
  auto result = otel::install_exporters({});
  ASSERT_FALSE(result);
  EXPECT_NE(result.error().message().find("carrier-pigeon"), std::string::npos);
}

TEST(OtelExport, LinesToAFileHoldTheSessionsSpansAndMetrics) {
  auto dir = temp_dir();
  std::string path = dir + "/telemetry.txt";
  otel::ExportOptions options;
  options.traces = "lines";
  options.metrics = "lines";
  options.file = path;
  {
    auto exporters = otel::install_exporters(options);
    ASSERT_TRUE(exporters) << exporters.error().message();
    EXPECT_EQ(exporters.value()->describe(), "traces: lines (" + path + "), metrics: lines (" + path + ")");
    one_message_session(exporters.value()->telemetry());
  }  // flushed here
  std::string text = read_all(path);
  for (const char* expected :
       {"span wscengine.start ", "span wscengine.dial ", "span wscengine.read ", "span wscengine.on_message ",
        "wscengine.message.type=binary", "span wscengine.shutdown ", "event=\"engine stop\"",
        "metric wscengine.messages.received{wscengine.message.type=binary} 1 {message}",
        "metric wscengine.bytes.received 3 By", "metric wscengine.on_message.duration count=1"}) {
    EXPECT_NE(text.find(expected), std::string::npos) << "missing: " << expected << "\n" << text;
  }
}

TEST(OtelExport, AnUnwritableFileIsAnError) {
  otel::ExportOptions options;
  options.traces = "lines";
  options.metrics = "none";
  options.file = "/nonexistent-dir/x/telemetry.txt";
  auto result = otel::install_exporters(options);
  ASSERT_FALSE(result);
  EXPECT_NE(result.error().message().find("/nonexistent-dir/x/telemetry.txt"), std::string::npos);
}

TEST(OtelExport, TheSamplerVariablesAreReadAndCheckedByName) {
  ScopedEnv bad_name("OTEL_TRACES_SAMPLER", "sometimes");
  otel::ExportOptions options;
  options.traces = "lines";
  options.metrics = "none";
  options.file = temp_dir() + "/t.txt";
  auto result = otel::install_exporters(options);
  ASSERT_FALSE(result);
  EXPECT_TRUE(result.error().is(errc::invalid_option));
  EXPECT_NE(result.error().message().find("OTEL_TRACES_SAMPLER: unknown sampler 'sometimes'"), std::string::npos)
      << result.error().message();
  ScopedEnv ratio("OTEL_TRACES_SAMPLER", "traceidratio"), bad_arg("OTEL_TRACES_SAMPLER_ARG", "1.5");
  result = otel::install_exporters(options);
  ASSERT_FALSE(result);
  EXPECT_NE(result.error().message().find("OTEL_TRACES_SAMPLER_ARG: '1.5'"), std::string::npos)
      << result.error().message();
}

// A sampler that drops everything leaves the lines without spans, the metrics intact.
TEST(OtelExport, ASamplerFromTheEnvironmentDecidesWhichSpansAreRecorded) {
  for (const char* sampler : {"always_off", "parentbased_traceidratio"}) {
    ScopedEnv name("OTEL_TRACES_SAMPLER", sampler), arg("OTEL_TRACES_SAMPLER_ARG", "0");
    std::string path = temp_dir() + "/telemetry.txt";
    otel::ExportOptions options;
    options.traces = "lines";
    options.metrics = "lines";
    options.file = path;
    {
      auto exporters = otel::install_exporters(options);
      ASSERT_TRUE(exporters) << exporters.error().message();
      one_message_session(exporters.value()->telemetry());
    }  // flushed here
    std::string text = read_all(path);
    EXPECT_EQ(text.find("span "), std::string::npos) << sampler << "\n" << text;
    EXPECT_NE(text.find("metric wscengine.messages.received{wscengine.message.type=binary} 1 {message}"),
              std::string::npos)
        << sampler << "\n"
        << text;
  }
}
