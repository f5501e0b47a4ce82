// Redirects of the upgrade (EngineOptions::max_redirects) on every real adapter, against
// Python `websockets` answering 3xx in front of its WebSocket server
// (tests/support/py_server.py: /to/STATUS/LOCATION, /loop/a, /chain/N).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <wscengine/wscengine.hpp>

#include "support/fake_metrics.hpp"
#include "support/fake_tracer.hpp"
#include "support/process.hpp"
#include "support/real_adapters.hpp"
#include "support/recorder.hpp"
#include "support/text.hpp"

using namespace wscengine;
using namespace wscengine::test;
using ::testing::HasSubstr;

namespace {

// Percent-encodes everything but unreserved characters (a Location inside a path).
std::string percent_encoded(const std::string& text) {
  static constexpr char hex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : text) {
    if (std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

class Redirects : public ::testing::TestWithParam<RealAdapter> {
 protected:
  void SetUp() override {
    server_ = std::make_unique<ChildProcess>(std::vector<std::string>{"/usr/bin/python3", WSCENGINE_PY_SERVER});
    base_ = server_->first_line(20s);
    ASSERT_FALSE(base_.empty()) << "the Python websockets server did not start (python3-websockets installed?)";
    port_ = base_.substr(base_.rfind(':') + 1);
  }
  void TearDown() override { stop_and_check(engine, *client); }
  EngineOptions options(const std::string& url) {
    EngineOptions o;
    o.url = url;
    o.backoff.initial_delay = 10ms;
    o.telemetry.metrics = metrics;
    o.telemetry.tracer = tracer;
    return o;
  }
  // A new engine with a new Recorder; the previous one is stopped and checked.
  Engine& make_engine(const EngineOptions& o) {
    stop_and_check(engine, *client);
    client = std::make_shared<Recorder>();
    engine = std::make_unique<Engine>(o, client, GetParam().make());
    return *engine;
  }
  // Starts an engine; the first message it gets (the /header/NAME paths send one).
  std::string first_message(const EngineOptions& o) {
    if (Error e = make_engine(o).start()) return "start failed: " + e.message();
    if (!client->wait_count(Event::message, 1)) return "no message";
    return client->events_of(Event::message)[0].payload;
  }
  // What start() says when the first attempt fails.
  Error start_error(const EngineOptions& o) {
    Error e = make_engine(o).start();
    if (!e) {
      EXPECT_FALSE(engine->stop());
    }
    client->mark_stopped();
    engine.reset();
    return e;
  }

  std::unique_ptr<ChildProcess> server_;
  std::string base_, port_;
  std::shared_ptr<Recorder> client = std::make_shared<Recorder>();
  std::shared_ptr<FakeMetrics> metrics = std::make_shared<FakeMetrics>();
  std::shared_ptr<FakeTracer> tracer = std::make_shared<FakeTracer>();
  std::unique_ptr<Engine> engine;
};

}  // namespace

TEST_P(Redirects, AnAbsoluteLocationIsFollowedAndEachHopIsASpanAndACount) {
  auto o = options(base_ + "/to/307/" + percent_encoded(base_ + "/header/x-hop"));
  o.headers = {{"X-Hop", "kept"}};
  EXPECT_EQ(first_message(o), "kept");
  EXPECT_EQ(metrics->count("redirect_307"), 1);
  auto hops = tracer->named("wscengine.redirect");
  ASSERT_EQ(hops.size(), 1u);
  EXPECT_EQ(hops[0].attributes["wscengine.http.status"], "307");
  EXPECT_EQ(hops[0].attributes["wscengine.redirect.location"], base_ + "/header/x-hop");
  ASSERT_FALSE(engine->send_text("echoed"));
  ASSERT_TRUE(client->wait_count(Event::message, 2));
}

TEST_P(Redirects, HttpLocationsBecomeWsAndRelativeOnesResolveAgainstTheRequest) {
  std::string http = "http" + base_.substr(2);  // http://127.0.0.1:port
  EXPECT_EQ(first_message(options(base_ + "/to/308/" + percent_encoded(http + "/header/host"))), "127.0.0.1:" + port_);
  // /chain/3 -> /chain/2 -> /chain/1 -> /chain/0 -> /echo: four relative 302s, within the default 5.
  ASSERT_FALSE(make_engine(options(base_ + "/chain/3")).start());
  EXPECT_EQ(metrics->count("redirect_302"), 4);
  ASSERT_FALSE(engine->send_text("at the end of the chain"));
  ASSERT_TRUE(client->wait_count(Event::message, 1));
  EXPECT_EQ(client->events_of(Event::message)[0].payload, "at the end of the chain");
  // A path relative to the request's directory: /to/303/../../echo is /echo.
  ASSERT_FALSE(make_engine(options(base_ + "/to/303/" + percent_encoded("../../echo"))).start());
  EXPECT_EQ(metrics->count("redirect_303"), 1);
  ASSERT_FALSE(engine->send_text("relative"));
  ASSERT_TRUE(client->wait_count(Event::message, 1));
}

TEST_P(Redirects, CredentialsStayWithTheirOriginAndGoOnWithinIt) {
  auto with_credentials = [&](const std::string& url) {
    auto o = options(url);
    o.headers = {{"Authorization", "Bearer secret"}, {"Cookie", "session=1"}};
    return o;
  };
  // Same origin (relative): both go on.
  EXPECT_EQ(first_message(with_credentials(base_ + "/to/302/" + percent_encoded("/header/authorization"))),
            "Bearer secret");
  EXPECT_EQ(first_message(with_credentials(base_ + "/to/302/" + percent_encoded("/header/cookie"))), "session=1");
  // Another origin (localhost is not 127.0.0.1, though it is the same server): neither.
  for (const char* header : {"authorization", "cookie"}) {
    std::string elsewhere = "ws://localhost:" + port_ + "/header/" + header;
    EXPECT_EQ(first_message(with_credentials(base_ + "/to/307/" + percent_encoded(elsewhere))), "<none>") << header;
  }
}

TEST_P(Redirects, ALoopTooManyAndRedirectsTurnedOffAreNotFollowed) {
  Error loop = start_error(options(base_ + "/loop/a"));
  EXPECT_TRUE(loop.is(errc::redirect_refused)) << loop.message();
  EXPECT_THAT(loop.message(),
              HasSubstr("a redirect loop: " + base_ + "/loop/a -> " + base_ + "/loop/b -> " + base_ + "/loop/a"));
  Error many = start_error(options(base_ + "/chain/5"));  // six redirects
  EXPECT_TRUE(many.is(errc::redirect_refused)) << many.message();
  EXPECT_THAT(many.message(), HasSubstr("more than max_redirects (5) redirects: " + base_ + "/chain/5 -> "));
  auto o = options(base_ + "/chain/1");
  o.max_redirects = 1;
  Error one_too_many = start_error(o);
  EXPECT_TRUE(one_too_many.is(errc::redirect_refused)) << one_too_many.message();
  o.max_redirects = 2;
  EXPECT_FALSE(start_error(o)) << "two redirects within max_redirects 2";
  o.max_redirects = 0;
  Error off = start_error(o);
  EXPECT_TRUE(off.is(errc::http_status)) << off.message();
  EXPECT_EQ(off.http_status, 302);
  EXPECT_FALSE(default_retry_policy(off, 1, {}).retry) << "a 3xx not followed is not retried";
  EXPECT_FALSE(default_retry_policy(loop, 1, {}).retry) << "nor a refused redirect";
  Error no_location = start_error(options(base_ + "/to/301/"));
  EXPECT_TRUE(no_location.is(errc::redirect_refused)) << no_location.message();
  Error other_scheme = start_error(options(base_ + "/to/302/" + percent_encoded("ftp://127.0.0.1/x")));
  EXPECT_THAT(other_scheme.message(), HasSubstr("is not a ws, wss, http or https URL"));
}

// The background restart loop: a refused redirect stops it (on_restart_error, then
// stopped), where an unreachable server would be retried.
TEST_P(Redirects, ARefusedRedirectStopsTheRestartLoop) {
  ASSERT_FALSE(make_engine(options(base_ + "/loop/a")).start_background());
  ASSERT_TRUE(client->wait_count(Event::restart_error, 1));
  ASSERT_FALSE(engine->wait_stopped(10s));
  EXPECT_EQ(client->count(Event::restart_error), 1u);
  EXPECT_TRUE(client->events_of(Event::restart_error)[0].error.is(errc::redirect_refused));
}

TEST_P(Redirects, APermanentRedirectIsRememberedForReconnectsUntilTheNextStart) {
  for (int status : {301, 302}) {
    SCOPED_TRACE(status);
    metrics = std::make_shared<FakeMetrics>();
    // /drop sends "hello" and drops: the engine reconnects.
    ASSERT_FALSE(
        make_engine(options(base_ + "/to/" + std::to_string(status) + "/" + percent_encoded("/drop"))).start());
    ASSERT_TRUE(client->wait_count(Event::open, 3));
    ASSERT_FALSE(engine->stop());
    const std::string counter = "redirect_" + std::to_string(status);
    const long redirects = metrics->count(counter);
    if (status == 301) {
      EXPECT_EQ(redirects, 1) << "the reconnects went to /drop directly";
    } else {
      EXPECT_GE(redirects, 3) << "every reconnect asked the first URL";
    }
    ASSERT_FALSE(engine->start());  // a new start asks the original URL again
    if (status == 301) {
      ASSERT_TRUE(client->wait_count(Event::open, 5));  // and its reconnects go to /drop directly again
      EXPECT_EQ(metrics->count(counter), redirects + 1);
    } else {
      EXPECT_GE(metrics->count(counter), redirects + 1);
    }
  }
}

TEST_P(Redirects, FromWssToWsIsRefused) {
  std::string dir = temp_dir();
  ASSERT_TRUE(make_test_certificate(dir));
  ChildProcess secure({"/usr/bin/python3", WSCENGINE_PY_SERVER, "--tls", dir + "/cert.pem", dir + "/key.pem"});
  std::string wss = secure.first_line(20s);
  ASSERT_EQ(wss.rfind("wss://", 0), 0u) << wss;
  auto o = options(wss + "/to/301/" + percent_encoded(base_ + "/echo"));
  o.tls.ca_file = dir + "/cert.pem";
  Error e = start_error(o);
  EXPECT_TRUE(e.is(errc::redirect_refused)) << e.message();
  EXPECT_THAT(e.message(), HasSubstr("would leave TLS (wss to ws)"));
  // wss to wss (an https Location) is followed.
  o.url = wss + "/to/302/" + percent_encoded("https" + wss.substr(3) + "/echo");
  EXPECT_FALSE(start_error(o));
}

// Many engines on one runtime follow their redirects at once, while others, sent
// round a loop, are refused and stop: each ends as its own chain says.
TEST_P(Redirects, ManyEnginesOnOneRuntimeFollowOrRefuseEachOnItsOwn) {
  auto runtime = Runtime::create({1, 2});
  constexpr int kEngines = 24;
  std::vector<std::shared_ptr<Recorder>> clients;
  std::vector<std::unique_ptr<Engine>> engines;
  for (int i = 0; i < kEngines; ++i) {
    const bool looping = i % 4 == 3;
    clients.push_back(std::make_shared<Recorder>());
    engines.push_back(std::make_unique<Engine>(options(base_ + (looping ? "/loop/a" : "/chain/2")), clients.back(),
                                               GetParam().make(), runtime));
    ASSERT_FALSE(engines.back()->start_background());
  }
  for (int i = 0; i < kEngines; ++i) {
    SCOPED_TRACE(i);
    if (i % 4 == 3) {
      ASSERT_FALSE(engines[i]->wait_stopped(20s));
      ASSERT_EQ(clients[i]->count(Event::restart_error), 1u);
      EXPECT_TRUE(clients[i]->events_of(Event::restart_error)[0].error.is(errc::redirect_refused));
      EXPECT_EQ(clients[i]->count(Event::open), 0u);
    } else {
      ASSERT_TRUE(clients[i]->wait_count(Event::open, 1, 20s));
      ASSERT_TRUE(wait_state(*engines[i], EngineState::running));  // the session is current once on_open returned
      ASSERT_FALSE(engines[i]->send_text(cat("engine ", i)));
      ASSERT_TRUE(clients[i]->wait_count(Event::message, 1, 20s));
      EXPECT_EQ(clients[i]->events_of(Event::message)[0].payload, cat("engine ", i));
    }
  }
  // Three hops followed for each that opened; one for each loop (/loop/a to /loop/b;
  // the way back is the refused one).
  EXPECT_EQ(metrics->count("redirect_302"), 3 * (kEngines - kEngines / 4) + kEngines / 4);
  for (int i = 0; i < kEngines; ++i) stop_and_check(engines[i], *clients[i]);
}

INSTANTIATE_TEST_SUITE_P(Adapters, Redirects, ::testing::ValuesIn(real_adapters()), AdapterName());
