// WebSocket over HTTP/2 (RFC 8441) against Hypercorn, a server no one here wrote:
// engines on one runtime share one HTTP/2 connection, each a stream, and every engine
// guarantee holds per stream.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <csignal>
#include <functional>
#include <future>
#include <mutex>

#include <wscengine/beast.hpp>
#include <wscengine/websocketpp.hpp>
#include <wscengine/wscengine.hpp>

#include "support/fake_metrics.hpp"
#include "support/fake_tracer.hpp"
#include "support/process.hpp"
#include "support/recorder.hpp"
#include "support/test_pki.hpp"
#include "support/text.hpp"

using namespace std::chrono_literals;
using namespace wscengine;
using namespace wscengine::test;

namespace {

// Hypercorn over TLS with a certificate of its own (or h2c / HTTP/1.1 only, by flags).
class Http2Peer : public ::testing::Test {
 protected:
  void start_server(std::vector<std::string> flags = {}) {
    std::vector<std::string> argv{"/usr/bin/python3", WSCENGINE_H2_SERVER};
    if (std::find(flags.begin(), flags.end(), "--plain") == flags.end()) {
      argv.insert(argv.end(), {"--tls", pki_.server_chain, pki_.server_key});
    }
    for (auto& f : flags)
      if (f != "--plain") argv.push_back(f);
    server_ = std::make_unique<ChildProcess>(argv);
    base_ = server_->first_line(20s);
    ASSERT_FALSE(base_.empty()) << "Hypercorn did not start (python3-hypercorn installed?)";
  }
  EngineOptions options(const std::string& path, Http2Mode mode = Http2Mode::require) {
    EngineOptions o;
    o.url = base_ + path;
    o.tls.ca_file = pki_.ca_file;
    o.http2 = mode;
    o.http2_cleartext = base_.rfind("ws://", 0) == 0;
    o.backoff.initial_delay = 10ms;
    return o;
  }

  // Engines on one runtime, each dialling options(path) as `adjust` changes it, started
  // in turn (start(): each is open before the next dials) or all in the background.
  struct Fleet {
    std::vector<std::shared_ptr<Recorder>> clients;
    std::vector<std::unique_ptr<Engine>> engines;
    void stop() {
      for (std::size_t i = 0; i < engines.size(); ++i) stop_and_check(engines[i], *clients[i]);
    }
  };
  Fleet fleet(int n, const std::shared_ptr<Runtime>& runtime, const std::string& path, bool background = false,
              const std::function<void(int, EngineOptions&, Recorder&)>& adjust = {}) {
    Fleet f;
    for (int i = 0; i < n; ++i) {
      auto o = options(path);
      f.clients.push_back(std::make_shared<Recorder>());
      if (adjust) adjust(i, o, *f.clients.back());
      f.engines.push_back(std::make_unique<Engine>(o, f.clients.back(), beast::make_connector(), runtime));
      Error e = background ? f.engines.back()->start_background() : f.engines.back()->start();
      EXPECT_FALSE(e) << "engine " << i << ": " << e.message();
    }
    return f;
  }

  // One engine, started; `answer` is its handshake response.
  struct One {
    std::shared_ptr<Recorder> client = std::make_shared<Recorder>();
    std::unique_ptr<Engine> engine;
    HandshakeResponse answer;
    // The stats message of /stats says which HTTP version carried the WebSocket.
    std::string first_message() const {
      return client->wait_count(Event::message, 1) ? client->events_of(Event::message)[0].payload : "";
    }
  };
  std::unique_ptr<One> start_one(const EngineOptions& o,
                                 std::shared_ptr<Connector> connector = beast::make_connector()) {
    auto one = std::make_unique<One>();
    one->client->on_open_hook = [answer = &one->answer](Context&, const HandshakeResponse& r, bool) {
      *answer = r;
      return Error{};
    };
    one->engine = std::make_unique<Engine>(o, one->client, std::move(connector));
    Error e = one->engine->start();
    EXPECT_FALSE(e) << e.message();
    return one;
  }

  TestPki pki_ = make_test_pki();
  std::unique_ptr<ChildProcess> server_;
  std::string base_;
};

// The stats message of /stats: {"connections": N, "http_version": "V"}.
int connections_in(const std::string& stats) {
  auto at = stats.find("\"connections\": ");
  return at == std::string::npos ? -1 : std::atoi(stats.c_str() + at + 15);
}

}  // namespace

TEST_F(Http2Peer, EchoesBothTypesOverAStream) {
  start_server();
  auto one = start_one(options("/stats"));
  auto& client = one->client;
  auto& engine = one->engine;
  EXPECT_TRUE(one->answer.http2);
  EXPECT_EQ(one->answer.status, 200);
  EXPECT_THAT(one->first_message(), ::testing::HasSubstr("\"http_version\": \"2\""));
  ASSERT_FALSE(engine->send_text("héllo"));
  ASSERT_FALSE(engine->send_binary(std::string("\x00\x01\x02", 3)));
  ASSERT_FALSE(engine->send_text(std::string(3 << 20, 'z')));  // beyond every flow-control window
  ASSERT_TRUE(client->wait_count(Event::message, 4));
  auto m = client->events_of(Event::message);
  EXPECT_EQ(m[1].payload, "héllo");
  EXPECT_EQ(m[2].payload, std::string("\x00\x01\x02", 3));
  EXPECT_EQ(m[3].payload, std::string(3 << 20, 'z'));
  stop_and_check(engine, *client);
}

TEST_F(Http2Peer, TwentyFourEnginesShareOneConnection) {
  start_server();
  auto runtime = Runtime::create({1, 2});
  constexpr int kEngines = 24;
  auto all = fleet(kEngines, runtime, "/stats", true);
  auto& clients = all.clients;
  auto& engines = all.engines;
  for (int i = 0; i < kEngines; ++i) {
    SCOPED_TRACE(i);
    ASSERT_TRUE(clients[i]->wait_count(Event::message, 1));
    EXPECT_EQ(connections_in(clients[i]->events_of(Event::message)[0].payload), 1);
    ASSERT_FALSE(engines[i]->send_text(cat("engine ", i)));
  }
  for (int i = 0; i < kEngines; ++i) {
    SCOPED_TRACE(i);
    ASSERT_TRUE(clients[i]->wait_count(Event::message, 2));
    EXPECT_EQ(clients[i]->events_of(Event::message)[1].payload, cat("engine ", i));
  }
  all.stop();
}

// EngineOptions::on_control_frame over a stream: each engine of a shared connection is
// told of its own ping and Hypercorn's pong, with the round trip.
TEST_F(Http2Peer, EachStreamIsToldOfItsOwnPingsAndPongs) {
  start_server();
  auto runtime = Runtime::create({1, 2});
  constexpr int kEngines = 4;
  std::mutex mutex;
  std::vector<std::vector<ControlFrameEvent>> seen(kEngines);
  auto all = fleet(kEngines, runtime, "/stats", false, [&](int i, EngineOptions& o, Recorder&) {
    o.on_control_frame = [&, i](const ControlFrameEvent& event) {
      std::lock_guard lock(mutex);
      seen[i].push_back(event);
    };
  });
  for (int i = 0; i < kEngines; ++i) {
    ASSERT_TRUE(all.clients[i]->wait_count(Event::message, 1));
    EXPECT_EQ(connections_in(all.clients[i]->events_of(Event::message)[0].payload), 1);
    ASSERT_FALSE(all.engines[i]->connection().ping(cat("stream ", i), 10s)) << i;
  }
  for (int i = 0; i < kEngines; ++i) {
    SCOPED_TRACE(i);
    ASSERT_TRUE(wait_until([&] {
      std::lock_guard lock(mutex);
      return seen[i].size() >= 2;
    }));
    std::lock_guard lock(mutex);
    ASSERT_EQ(seen[i].size(), 2u);
    EXPECT_EQ(seen[i][0].kind, ControlFrameKind::ping_sent);
    EXPECT_EQ(seen[i][1].kind, ControlFrameKind::pong_received);
    EXPECT_EQ(seen[i][1].payload, cat("stream ", i));
    EXPECT_TRUE(seen[i][1].round_trip);
  }
  all.stop();
}

// h2c: ws:// with http2_cleartext speaks HTTP/2 with prior knowledge.
TEST_F(Http2Peer, ClearTextWithPriorKnowledge) {
  start_server({"--plain"});
  ASSERT_EQ(base_.rfind("ws://", 0), 0u) << base_;
  auto one = start_one(options("/stats"));
  EXPECT_TRUE(one->answer.http2);
  EXPECT_THAT(one->first_message(), ::testing::HasSubstr("\"http_version\": \"2\""));
  stop_and_check(one->engine, *one->client);
}

// prefer: a server whose ALPN offers only http/1.1 gets the HTTP/1.1 upgrade, and the
// origin is remembered: the next engine dials HTTP/1.1 at once (no HTTP/2 connection
// is begun for it).
TEST_F(Http2Peer, PreferFallsBackToHttp11AndRemembersTheOrigin) {
  start_server({"--no-h2"});
  const auto before = beast::http2_stats();
  for (int i = 0; i < 2; ++i) {
    SCOPED_TRACE(i);
    auto one = start_one(options("/stats", Http2Mode::prefer));
    EXPECT_FALSE(one->answer.http2);
    EXPECT_EQ(one->answer.status, 101);
    EXPECT_THAT(one->first_message(), ::testing::HasSubstr("\"http_version\": \"1.1\""));
    stop_and_check(one->engine, *one->client);
    const auto now = beast::http2_stats();
    EXPECT_EQ(now.connections_dialled, before.connections_dialled + 1);  // the first engine's only
    EXPECT_EQ(now.refusals, before.refusals + 1);
  }
}

// require: the same server fails the dial, saying why; and so does an HTTP/2 server
// whose SETTINGS do not enable the extended CONNECT, where prefer falls back too.
TEST_F(Http2Peer, RequireFailsWhereTheServerHasNoHttp2) {
  for (const char* flag : {"--no-h2", "--no-connect-protocol"}) {
    SCOPED_TRACE(flag);
    start_server({flag});
    auto client = std::make_shared<Recorder>();
    auto o = options("/echo");
    o.auto_reconnect = false;
    auto engine = std::make_unique<Engine>(o, client, beast::make_connector());
    Error e = engine->start();
    EXPECT_TRUE(e.is(errc::handshake_failed)) << e.message();
    EXPECT_THAT(e.message(), ::testing::HasSubstr(std::string(flag) == "--no-h2" ? "by ALPN, not h2"
                                                                                 : "SETTINGS_ENABLE_CONNECT_PROTOCOL"));
    EXPECT_EQ(client->count(Event::open), 0u);
    stop_and_check(engine, *client);
    auto fallback = start_one(options("/stats", Http2Mode::prefer));
    EXPECT_FALSE(fallback->answer.http2);
    EXPECT_THAT(fallback->first_message(), ::testing::HasSubstr("\"http_version\": \"1.1\""));
    stop_and_check(fallback->engine, *fallback->client);
  }
}

// Beyond the server's SETTINGS_MAX_CONCURRENT_STREAMS (4 here) the next stream opens a
// second connection: 10 engines on 3 connections, as the server counts them.
TEST_F(Http2Peer, StreamsBeyondTheServersLimitOpenAnotherConnection) {
  start_server({"--max-streams", "4"});
  const auto before = beast::http2_stats();
  auto all = fleet(10, Runtime::create({1, 2}), "/stats");
  int most = 0;
  for (auto& client : all.clients) {
    ASSERT_TRUE(client->wait_count(Event::message, 1));
    most = std::max(most, connections_in(client->events_of(Event::message)[0].payload));
  }
  EXPECT_EQ(most, 3);
  EXPECT_EQ(beast::http2_stats().connections_opened - before.connections_opened, 3u);
  all.stop();
}

// The HTTP/2 PING: when one engine's heartbeat gives its stream up, the connection is
// checked with a PING, and without an answer it fails, so that every stream on it sees
// the drop, also those of engines with no heartbeat of their own.
TEST_F(Http2Peer, OneHeartbeatFindsADeadConnectionForAllItsStreams) {
  start_server();
  auto runtime = Runtime::create({1, 2});
  auto all = fleet(10, runtime, "/echo", false, [](int i, EngineOptions& o, Recorder&) {
    o.open_timeout = 1s;  // the first dial's: how long the connection waits for its PING's answer
    if (i == 0) {
      o.ping_interval = 300ms;
      o.pong_timeout = 300ms;
    }
  });
  server_->signal(SIGSTOP);
  for (std::size_t i = 0; i < all.clients.size(); ++i) {
    SCOPED_TRACE(i);
    ASSERT_TRUE(all.clients[i]->wait_count(Event::close, 1, 20s));
    auto close = all.clients[i]->events_of(Event::close)[0];
    ASSERT_TRUE(close.received);
    EXPECT_EQ(close.received->code, close_code::abnormal);
  }
  server_->signal(SIGCONT);
  all.stop();
}

// A refusal of the extended CONNECT is an HTTP status, as a refused upgrade is.
TEST_F(Http2Peer, ARefusedStreamIsItsHttpStatus) {
  start_server();
  auto client = std::make_shared<Recorder>();
  auto o = options("/refuse");
  o.auto_reconnect = false;
  auto engine = std::make_unique<Engine>(o, client, beast::make_connector());
  Error e = engine->start();
  EXPECT_TRUE(e.is(errc::http_status)) << e.message();
  EXPECT_EQ(e.http_status, 403);
  stop_and_check(engine, *client);
}

// A close on one stream ends that engine's session only: its neighbour on the same
// connection goes on.
TEST_F(Http2Peer, ACloseEndsOnlyItsOwnStream) {
  start_server();
  auto runtime = Runtime::create({1, 2});
  auto echo_client = std::make_shared<Recorder>();
  auto echo = std::make_unique<Engine>(options("/stats"), echo_client, beast::make_connector(), runtime);
  ASSERT_FALSE(echo->start());
  auto closing_client = std::make_shared<Recorder>();
  auto o = options("/close/4002");
  o.auto_reconnect = false;
  auto closing = std::make_unique<Engine>(o, closing_client, beast::make_connector(), runtime);
  ASSERT_FALSE(closing->start());
  ASSERT_FALSE(closing->wait_stopped(10s));
  auto close = closing_client->events_of(Event::close);
  ASSERT_EQ(close.size(), 1u);
  ASSERT_TRUE(close[0].received);
  EXPECT_EQ(close[0].received->code, 4002);
  ASSERT_FALSE(echo->send_text("still here"));
  ASSERT_TRUE(echo_client->wait_count(Event::message, 2));
  EXPECT_EQ(echo_client->events_of(Event::message)[1].payload, "still here");
  EXPECT_EQ(connections_in(echo_client->events_of(Event::message)[0].payload), 1);
  EXPECT_EQ(echo_client->count(Event::close), 0u);
  stop_and_check(closing, *closing_client);
  stop_and_check(echo, *echo_client);
}

// Flow control per stream: an engine whose on_message blocks stops its own stream's
// sender (its window fills) while the other engines on the same connection go on;
// once it is let go it gets every message, in order.
TEST_F(Http2Peer, AStalledEngineStallsOnlyItsOwnStream) {
  start_server();
  auto runtime = Runtime::create({1, 4});
  constexpr int kMessages = 64;
  constexpr int kSize = 64 * 1024;  // 4 MiB in all: four times the stream's window
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  std::atomic<int> stalled_got{0};
  auto stalled_client = std::make_shared<Recorder>();
  stalled_client->on_message_hook = [&](Context&, const Message&) {
    if (stalled_got++ == 0) released.wait();
  };
  auto stalled = std::make_unique<Engine>(options(cat("/flood/", kMessages, "/", kSize)), stalled_client,
                                          beast::make_connector(), runtime);
  ASSERT_FALSE(stalled->start());
  ASSERT_TRUE(wait_until([&] { return stalled_got.load() == 1; }, 10s));
  constexpr int kOthers = 8;
  auto neighbours = fleet(kOthers, runtime, "/stats");
  auto& clients = neighbours.clients;
  auto& others = neighbours.engines;
  for (int i = 0; i < kOthers; ++i) {
    ASSERT_TRUE(clients[i]->wait_count(Event::message, 1));
    EXPECT_EQ(connections_in(clients[i]->events_of(Event::message)[0].payload), 1);  // the same connection
    for (int k = 0; k < 20; ++k) ASSERT_FALSE(others[i]->send_text(cat(i, ":", k)));
  }
  for (int i = 0; i < kOthers; ++i) {
    SCOPED_TRACE(i);
    ASSERT_TRUE(clients[i]->wait_count(Event::message, 21));
    EXPECT_EQ(clients[i]->events_of(Event::message)[20].payload, cat(i, ":", 19));
  }
  EXPECT_EQ(stalled_got.load(), 1);  // still held: the others went on without it
  release.set_value();
  ASSERT_TRUE(stalled_client->wait_count(Event::message, kMessages, 30s));
  auto got = stalled_client->events_of(Event::message);
  for (int k = 0; k < kMessages; ++k) {
    SCOPED_TRACE(k);
    ASSERT_EQ(got[k].payload.size(), static_cast<std::size_t>(kSize));
    EXPECT_EQ(static_cast<unsigned char>(got[k].payload[0]), k % 251);
    EXPECT_EQ(static_cast<unsigned char>(got[k].payload[kSize - 1]), (k + kSize - 1) % 251);
  }
  stop_and_check(stalled, *stalled_client);
  neighbours.stop();
}

// A dead HTTP/2 connection (the server frozen: its socket open and silent): every
// engine on it finds out by its own heartbeat within ping_interval + pong_timeout,
// and once the server answers again every one of them opens a new session.
TEST_F(Http2Peer, EveryStreamOfADeadConnectionFindsOutAndReconnects) {
  start_server({"--max-streams", "1000"});
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  constexpr int kEngines = 40;  // the sanitizers' threads are several times slower
  constexpr auto kSlack = 3000ms;
#else
  constexpr int kEngines = 100;
  constexpr auto kSlack = 1000ms;
#endif
  constexpr auto kPingInterval = 300ms;
  constexpr auto kPongTimeout = 400ms;
  auto runtime = Runtime::create({1, 2});
  std::vector<std::atomic<std::int64_t>> closed_at_ms(kEngines);
  const auto epoch = std::chrono::steady_clock::now();
  auto all = fleet(kEngines, runtime, "/stats", true, [&](int i, EngineOptions& o, Recorder& client) {
    o.ping_interval = kPingInterval;
    o.pong_timeout = kPongTimeout;
    o.open_timeout = 1s;
    client.on_close_hook = [&, i](Context&, const std::optional<CloseFrame>&) {
      std::int64_t none = 0;
      closed_at_ms[i].compare_exchange_strong(
          none,
          std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - epoch).count());
      return std::optional<CloseFrame>{};
    };
  });
  auto& clients = all.clients;
  for (int i = 0; i < kEngines; ++i) {
    ASSERT_TRUE(clients[i]->wait_count(Event::message, 1));
    EXPECT_EQ(connections_in(clients[i]->events_of(Event::message)[0].payload), 1);
  }
  const auto frozen_ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - epoch).count();
  server_->signal(SIGSTOP);
  for (int i = 0; i < kEngines; ++i) {
    SCOPED_TRACE(i);
    ASSERT_TRUE(clients[i]->wait_count(Event::close, 1));
    auto close = clients[i]->events_of(Event::close)[0];
    ASSERT_TRUE(close.received);
    EXPECT_EQ(close.received->code, close_code::abnormal);
    EXPECT_LE(closed_at_ms[i].load() - frozen_ms, (kPingInterval + kPongTimeout + kSlack).count());
  }
  server_->signal(SIGCONT);
  for (int i = 0; i < kEngines; ++i) {
    SCOPED_TRACE(i);
    ASSERT_TRUE(clients[i]->wait_count(Event::open, 2, 30s));
  }
  all.stop();
}

// An adapter without WebSocket over HTTP/2: prefer dials the HTTP/1.1 upgrade, require
// fails at once with errc::unsupported.
TEST_F(Http2Peer, AnAdapterWithoutItUpgradesOrRefuses) {
  start_server();
  auto one = start_one(options("/stats", Http2Mode::prefer), websocketpp::make_connector());
  EXPECT_FALSE(one->answer.http2);
  EXPECT_EQ(one->answer.status, 101);
  EXPECT_THAT(one->first_message(), ::testing::HasSubstr("\"http_version\": \"1.1\""));
  stop_and_check(one->engine, *one->client);

  auto refused_client = std::make_shared<Recorder>();
  auto o = options("/stats");
  o.auto_reconnect = false;
  auto refused = std::make_unique<Engine>(o, refused_client, websocketpp::make_connector());
  Error e = refused->start();
  EXPECT_TRUE(e.is(errc::unsupported)) << e.message();
  EXPECT_THAT(e.message(), ::testing::HasSubstr("websocketpp adapter has no WebSocket over HTTP/2"));
  stop_and_check(refused, *refused_client);
}

// The engine's read guarantees per stream: four reader slots over one stream (the
// Recorder checks one close per session and ordered parts), then a pause under which
// the messages are read by hand in order, and an explicit ping answered on the stream.
TEST_F(Http2Peer, ReaderSlotsPauseAndHandReadsHoldOnAStream) {
  start_server();
  auto client = std::make_shared<Recorder>(4);
  auto o = options("/echo");
  o.reader_slots = 4;
  auto engine = std::make_unique<Engine>(o, client, beast::make_connector(), Runtime::create({1, 4}));
  ASSERT_FALSE(engine->start());
  for (int i = 0; i < 40; ++i) ASSERT_FALSE(engine->send_text(cat("slot ", i)));
  ASSERT_TRUE(client->wait_count(Event::message, 40));
  {
    auto guard = engine->pause();
    for (int i = 0; i < 5; ++i) ASSERT_FALSE(engine->send_text(cat("by hand ", i)));
    for (int i = 0; i < 5; ++i) {
      InboundMessage m;
      ASSERT_FALSE(engine->connection().read(m, 10s));
      EXPECT_EQ(m.payload, cat("by hand ", i));
    }
    EXPECT_FALSE(engine->connection().ping("p", 5s));
  }
  ASSERT_FALSE(engine->send_text("after"));
  ASSERT_TRUE(client->wait_count(Event::message, 41));
  EXPECT_EQ(client->events_of(Event::message)[40].payload, "after");
  stop_and_check(engine, *client);
}

// The server dies: every engine on its connection sees a drop, and their redials are
// refused, each engine on its own.
TEST_F(Http2Peer, EveryStreamOfAConnectionThatDiesSeesADrop) {
  start_server();
  constexpr int kEngines = 16;
  auto all = fleet(kEngines, Runtime::create({1, 2}), "/echo");
  auto& clients = all.clients;
  server_->kill();
  for (int i = 0; i < kEngines; ++i) {
    SCOPED_TRACE(i);
    ASSERT_TRUE(clients[i]->wait_count(Event::close, 1));
    auto close = clients[i]->events_of(Event::close)[0];
    ASSERT_TRUE(close.received);
    EXPECT_EQ(close.received->code, close_code::abnormal);
    ASSERT_TRUE(clients[i]->wait_for([](const std::vector<Event>& es) {
      for (const auto& e : es)
        if (e.kind == Event::restart_error && e.error.is(errc::connection_refused)) return true;
      return false;
    }));
  }
  all.stop();
}

// Telemetry: the HTTP/2 connection is a root span of its own; each stream is a span
// under its dial attempt ("wscengine.open") linked to the connection's; the metrics
// count connections and the streams each carries.
TEST_F(Http2Peer, TheConnectionIsASpanTheStreamsLinkTo) {
  start_server();
  auto tracer = std::make_shared<FakeTracer>();
  auto metrics = std::make_shared<FakeMetrics>();
  fleet(2, Runtime::create({1, 2}), "/echo", false, [&](int, EngineOptions& o, Recorder&) {
    o.telemetry.tracer = tracer;
    o.telemetry.metrics = metrics;
  }).stop();
  auto connection = tracer->named("wscengine.http2.connection");
  ASSERT_EQ(connection.size(), 1u);
  EXPECT_EQ(connection[0].parent, 0u);  // a root
  auto streams = tracer->named("wscengine.http2.stream");
  ASSERT_EQ(streams.size(), 2u);
  for (const auto& stream : streams) {
    EXPECT_EQ(stream.link, connection[0].id);
    EXPECT_EQ(tracer->by_id(stream.parent).name, "wscengine.open");
    EXPECT_TRUE(wait_until([&] { return tracer->by_id(stream.id).ended; }, 10s));
    EXPECT_EQ(tracer->by_id(stream.id).error, "");
  }
  EXPECT_EQ(metrics->count("http2_opened"), 1);
  EXPECT_EQ(metrics->count("http2_streams_1"), 1);
  EXPECT_EQ(metrics->count("http2_streams_2"), 1);
}
