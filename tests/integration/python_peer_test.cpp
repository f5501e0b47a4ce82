// The engine on every real adapter against Python `websockets`, a server no one here wrote.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <wscengine/beast.hpp>
#include <wscengine/websocketpp.hpp>
#include <wscengine/wscengine.hpp>

#include <fstream>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "support/fake_metrics.hpp"
#include "support/fake_tracer.hpp"
#include "support/process.hpp"
#include "support/real_adapters.hpp"
#include "support/recorder.hpp"
#include "support/test_pki.hpp"
#include "support/text.hpp"

using namespace wscengine;
using namespace wscengine::test;
using ::testing::IsEmpty;

namespace {

class PythonPeer : public ::testing::TestWithParam<RealAdapter> {
 protected:
  void SetUp() override {
    server_ = std::make_unique<ChildProcess>(std::vector<std::string>{"/usr/bin/python3", WSCENGINE_PY_SERVER});
    base_ = server_->first_line(20s);
    ASSERT_FALSE(base_.empty()) << "the Python websockets server did not start (python3-websockets installed?)";
  }
  void TearDown() override { stop_and_check(engine, *client); }
  void make(const std::string& path, bool reconnect = true) {
    EngineOptions o;
    o.url = base_ + path;
    o.auto_reconnect = reconnect;
    o.backoff.initial_delay = 10ms;
    o.subprotocols = {"chat.v1"};
    engine = std::make_unique<Engine>(o, client, GetParam().make());
  }

  std::unique_ptr<ChildProcess> server_;
  std::string base_;
  std::shared_ptr<Recorder> client = std::make_shared<Recorder>();
  std::unique_ptr<Engine> engine;
};

}  // namespace

TEST_P(PythonPeer, EchoBothTypes) {
  std::string subprotocol;
  client->on_open_hook = [&](Context&, const HandshakeResponse& r, bool) {
    subprotocol = r.subprotocol;
    return Error{};
  };
  make("/echo");
  ASSERT_FALSE(engine->start());
  EXPECT_EQ(subprotocol, "chat.v1");
  ASSERT_FALSE(engine->send_text("héllo"));
  ASSERT_FALSE(engine->send_binary(std::string("\x00\x01\x02", 3)));
  ASSERT_FALSE(engine->send_text(std::string(200000, 'z')));
  ASSERT_TRUE(client->wait_count(Event::message, 3));
  auto m = client->events_of(Event::message);
  EXPECT_EQ(m[0].payload, "héllo");
  EXPECT_EQ(m[1].payload, std::string("\x00\x01\x02", 3));
  EXPECT_EQ(m[2].payload.size(), 200000u);
}

// What this side frames and masks (the Beast adapter masks a message 64 KiB at a time
// through a per-thread buffer; websocketpp frames it itself), echoed byte for byte by
// Python `websockets`, which unmasks and checks every client frame: every length class of
// the header (7, 16 and 64 bits), each side of the 64 KiB chunk, tails of 0 to 7 bytes,
// varied bytes in binary and text, over ws:// and wss://.
TEST_P(PythonPeer, SentFramesOfEveryLengthClassArriveByteForByte) {
  const std::vector<std::size_t> sizes = {0,   1,     7,     8,     9,      125,      126,
                                          127, 65535, 65536, 65537, 131075, 1u << 20, (1u << 20) + 5};
  auto payload_of = [](std::size_t size, MessageType type) {
    std::string p(size, '\0');
    for (std::size_t i = 0; i < size; ++i)
      p[i] = type == MessageType::text ? static_cast<char>('!' + (i * 7 + size) % 90)  // printable ASCII
                                       : static_cast<char>(i * 131 + size);
    return p;
  };
  test::TestPki pki = test::make_test_pki();
  ChildProcess secure({"/usr/bin/python3", WSCENGINE_PY_SERVER, "--tls", pki.server_chain, pki.server_key});
  for (const std::string& base : {base_, secure.first_line(20s)}) {
    SCOPED_TRACE(base);
    auto echoes = std::make_shared<Recorder>();
    EngineOptions o;
    o.url = base + "/echo";
    o.tls.ca_pem = pki.ca_pem;
    Engine echo(o, echoes, GetParam().make());
    ASSERT_FALSE(echo.start());
    std::vector<std::pair<MessageType, std::string>> sent;
    for (std::size_t size : sizes) {
      for (MessageType type : {MessageType::binary, MessageType::text}) {
        sent.emplace_back(type, payload_of(size, type));
        ASSERT_FALSE(echo.send(type, sent.back().second)) << size;
      }
    }
    ASSERT_TRUE(echoes->wait_count(Event::message, sent.size(), 30s));
    auto got = echoes->events_of(Event::message);
    for (std::size_t i = 0; i < sent.size(); ++i) {
      EXPECT_TRUE(got[i].payload == sent[i].second)
          << i << ": " << sent[i].second.size() << " bytes sent, " << got[i].payload.size() << " back";
    }
    EXPECT_FALSE(echo.stop());
    echoes->mark_stopped();
    EXPECT_THAT(echoes->violations(), IsEmpty());
  }
}

TEST_P(PythonPeer, CloseCodeReachesOnClose) {
  make("/close/4002", false);
  ASSERT_FALSE(engine->start());
  ASSERT_FALSE(engine->wait_stopped(10s));
  auto close = client->events_of(Event::close);
  ASSERT_EQ(close.size(), 1u);
  ASSERT_TRUE(close[0].received);
  EXPECT_EQ(*close[0].received, (CloseFrame{4002, "bye from python"}));
  EXPECT_EQ(client->events_of(Event::message)[0].payload, "hello");
}

TEST_P(PythonPeer, DropIs1006AndReconnects) {
  make("/drop");
  ASSERT_FALSE(engine->start());
  ASSERT_TRUE(client->wait_count(Event::open, 2));
  auto close = client->events_of(Event::close);
  ASSERT_GE(close.size(), 1u);
  ASSERT_TRUE(close[0].received);
  EXPECT_EQ(close[0].received->code, close_code::abnormal);
}

TEST_P(PythonPeer, ReconnectAfterTheServerRestarts) {
  make("/echo");
  ASSERT_FALSE(engine->start());
  server_->kill();  // the Python server dies: drop, then refused reconnects
  ASSERT_TRUE(client->wait_count(Event::close, 1));
  // The first attempt may still reach the dying process's backlog (then it is reset);
  // once the process is gone every attempt is refused.
  ASSERT_TRUE(client->wait_for([](const std::vector<Event>& es) {
    for (const auto& e : es)
      if (e.kind == Event::restart_error && e.error.is(errc::connection_refused)) return true;
    return false;
  }));
}

TEST_P(PythonPeer, StopClosesNormally) {
  make("/echo");
  ASSERT_FALSE(engine->start());
  ASSERT_FALSE(engine->stop());
  client->mark_stopped();
  EXPECT_EQ(client->count(Event::close_error), 0u);
  auto close = client->events_of(Event::close);
  ASSERT_EQ(close.size(), 1u);
  EXPECT_EQ(close[0].initiator, CloseInitiator::client);
}

TEST_P(PythonPeer, TheServerSeesTraceparentAndEveryStepIsTracedOverARealSocket) {
  auto tracer = std::make_shared<FakeTracer>();
  EngineOptions o;
  o.url = base_ + "/header/traceparent";
  o.telemetry.tracer = tracer;
  o.telemetry.inject_traceparent = true;
  engine = std::make_unique<Engine>(o, client, GetParam().make());
  ASSERT_FALSE(engine->start());
  ASSERT_TRUE(client->wait_count(Event::message, 1));
  ASSERT_FALSE(engine->send_text("echo me"));
  ASSERT_TRUE(client->wait_count(Event::message, 2));
  ASSERT_FALSE(engine->stop());

  auto named = [&](const char* name) { return tracer->named(name); };
  ASSERT_EQ(named("wscengine.open").size(), 1u);
  auto open = named("wscengine.open")[0];
  EXPECT_EQ(client->events_of(Event::message)[0].payload, traceparent(fake_trace_context(open.id)))
      << "the server received the open span's context";
  auto dials = named("wscengine.dial");
  ASSERT_EQ(dials.size(), 1u);
  EXPECT_EQ(dials[0].parent, open.id);
  EXPECT_EQ(dials[0].attributes["wscengine.http.status"], "101");
  auto run = named("wscengine.run").at(0);
  auto reads = named("wscengine.read"), messages = named("wscengine.on_message");
  ASSERT_EQ(reads.size(), 2u);
  ASSERT_EQ(messages.size(), 2u);
  for (std::size_t i = 0; i < 2; ++i) {  // per message (the default): roots linked to the session
    EXPECT_EQ(reads[i].parent, 0u);
    EXPECT_EQ(reads[i].link, run.id);
    EXPECT_EQ(messages[i].parent, reads[i].id);
  }
  EXPECT_EQ(reads[1].attributes["wscengine.message.length"], "7");
  auto writes = named("wscengine.write");
  ASSERT_EQ(writes.size(), 1u);
  EXPECT_EQ(writes[0].link, run.id);
  auto closes = named("wscengine.close");
  ASSERT_EQ(closes.size(), 1u);
  EXPECT_EQ(closes[0].parent, named("wscengine.shutdown").at(0).id);
  EXPECT_TRUE(closes[0].error.empty()) << closes[0].error;
  for (auto& s : tracer->spans()) EXPECT_TRUE(s.ended) << s.name;
}

// TelemetryOptions::message_sample_ratio over a real socket: with 0, the echoes and
// sends have no span and no timing, and every one is counted.
TEST_P(PythonPeer, UnsampledMessagesAreCountedButNotTracedOverARealSocket) {
  auto tracer = std::make_shared<FakeTracer>();
  auto metrics = std::make_shared<FakeMetrics>();
  EngineOptions o;
  o.url = base_ + "/echo";
  o.telemetry.tracer = tracer;
  o.telemetry.metrics = metrics;
  o.telemetry.message_sample_ratio = 0;
  engine = std::make_unique<Engine>(o, client, GetParam().make());
  ASSERT_FALSE(engine->start());
  constexpr int kMessages = 20;
  for (int i = 0; i < kMessages; ++i) ASSERT_FALSE(engine->send_text(cat("m", i)));
  ASSERT_TRUE(client->wait_count(Event::message, kMessages));
  ASSERT_FALSE(engine->stop());
  EXPECT_TRUE(tracer->named("wscengine.on_message").empty());
  EXPECT_TRUE(tracer->named("wscengine.write").empty());
  EXPECT_TRUE(tracer->named("wscengine.read").empty());
  EXPECT_EQ(tracer->named("wscengine.run").size(), 1u);
  EXPECT_EQ(tracer->named("wscengine.shutdown").size(), 1u);
  EXPECT_EQ(metrics->count("received"), kMessages);
  EXPECT_EQ(metrics->count("sent"), kMessages);
  EXPECT_EQ(metrics->count("on_message"), 0);
}

// Public-key pins against Python `websockets` over TLS, two dozen engines on one
// runtime: those pinned to the server's or its CA's key exchange messages; those
// pinned to an unrelated key are refused, once each (the restart loop does not retry
// a certificate that will not change), and never open.
TEST_P(PythonPeer, PinnedEnginesOnOneRuntimeOpenOrAreRefusedEachOnItsOwn) {
  TestPki pki = make_test_pki();
  ChildProcess secure({"/usr/bin/python3", WSCENGINE_PY_SERVER, "--tls", pki.server_chain, pki.server_key});
  std::string wss = secure.first_line(20s);
  ASSERT_EQ(wss.rfind("wss://", 0), 0u) << wss;
  auto runtime = Runtime::create({1, 2});
  constexpr int kEngines = 24;
  auto refused = [](int i) { return i % 3 == 2; };
  std::vector<std::shared_ptr<Recorder>> clients;
  std::vector<std::unique_ptr<Engine>> engines;
  for (int i = 0; i < kEngines; ++i) {
    EngineOptions o;
    o.url = wss + "/echo";
    o.tls.ca_file = pki.ca_file;
    o.tls.pinned_public_keys = {refused(i) ? pki.unrelated_pin : i % 3 == 0 ? pki.server_pin : pki.ca_pin};
    o.backoff.initial_delay = 10ms;
    clients.push_back(std::make_shared<Recorder>());
    engines.push_back(std::make_unique<Engine>(o, clients.back(), GetParam().make(), runtime));
    ASSERT_FALSE(engines.back()->start_background());
  }
  for (int i = 0; i < kEngines; ++i) {
    SCOPED_TRACE(i);
    if (refused(i)) {
      ASSERT_FALSE(engines[i]->wait_stopped(20s));
      ASSERT_EQ(clients[i]->count(Event::restart_error), 1u);
      Error e = clients[i]->events_of(Event::restart_error)[0].error;
      EXPECT_TRUE(e.is(errc::tls_verification_failed)) << e.message();
      EXPECT_THAT(e.message(), ::testing::HasSubstr(pki.server_pin));
      EXPECT_EQ(clients[i]->count(Event::open), 0u);
    } else {
      ASSERT_TRUE(clients[i]->wait_count(Event::open, 1));
      ASSERT_TRUE(wait_state(*engines[i], EngineState::running));
      ASSERT_FALSE(engines[i]->send_text(cat("pinned ", i)));
    }
  }
  for (int i = 0; i < kEngines; ++i) {
    if (refused(i)) continue;
    SCOPED_TRACE(i);
    ASSERT_TRUE(clients[i]->wait_count(Event::message, 1));
    EXPECT_EQ(clients[i]->events_of(Event::message)[0].payload, cat("pinned ", i));
  }
  for (int i = 0; i < kEngines; ++i) {
    EXPECT_FALSE(engines[i]->stop());
    clients[i]->mark_stopped();
    EXPECT_THAT(clients[i]->violations(), IsEmpty());
  }
}

// The TLS work of the process, the same counters on either adapter.
static TlsStats tls_stats_now(const RealAdapter& adapter) {
  return adapter.name.rfind("websocketpp", 0) == 0 ? websocketpp::tls_stats() : beast::tls_stats();
}

// Engines (each with its own connector) with the same TLS settings share one context,
// built once; other settings make another; a CA file replaced on disk makes a new one.
TEST_P(PythonPeer, EnginesWithTheSameTlsSettingsShareOneContext) {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  constexpr int kEngines = 30;  // the sanitizers' handshakes are several times slower
#else
  constexpr int kEngines = 100;
#endif
  TestPki pki = make_test_pki();  // fresh files: settings no other test of this process used
  ChildProcess secure({"/usr/bin/python3", WSCENGINE_PY_SERVER, "--tls", pki.server_chain, pki.server_key});
  std::string wss = secure.first_line(20s);
  ASSERT_EQ(wss.rfind("wss://", 0), 0u) << wss;
  auto runtime = Runtime::create({1, 2});
  std::vector<std::shared_ptr<Recorder>> clients;
  std::vector<std::unique_ptr<Engine>> engines;
  auto open_all = [&](int count, const std::function<void(TlsOptions&)>& tls) {
    const std::size_t first = engines.size();
    for (int i = 0; i < count; ++i) {
      EngineOptions o;
      o.url = wss + "/echo";
      tls(o.tls);
      clients.push_back(std::make_shared<Recorder>());
      engines.push_back(std::make_unique<Engine>(o, clients.back(), GetParam().make(), runtime));
      ASSERT_FALSE(engines.back()->start_background());
    }
    for (std::size_t i = first; i < engines.size(); ++i) {
      SCOPED_TRACE(i);
      ASSERT_TRUE(clients[i]->wait_count(Event::open, 1, 60s));
      ASSERT_TRUE(wait_state(*engines[i], EngineState::running));  // on_open has returned
      Error sent = engines[i]->send_text(cat("over TLS ", i));
      ASSERT_FALSE(sent) << sent.message() << " (" << clients[i]->count(Event::close) << " closes, "
                         << clients[i]->count(Event::restart_error) << " failed attempts)";
      ASSERT_TRUE(clients[i]->wait_count(Event::message, 1));
      EXPECT_EQ(clients[i]->events_of(Event::message)[0].payload, cat("over TLS ", i));
    }
  };
  const auto before = tls_stats_now(GetParam());
  open_all(kEngines, [&](TlsOptions& t) { t.ca_file = pki.ca_file; });
  EXPECT_EQ(tls_stats_now(GetParam()).contexts_created - before.contexts_created, 1u);
  open_all(kEngines, [&](TlsOptions& t) { t.ca_pem = pki.ca_pem; });
  EXPECT_EQ(tls_stats_now(GetParam()).contexts_created - before.contexts_created, 2u);
  // Pins, the server name and verify_peer are the connection's: no new context.
  open_all(2, [&](TlsOptions& t) {
    t.ca_file = pki.ca_file;
    t.pinned_public_keys = {pki.server_pin};
  });
  EXPECT_EQ(tls_stats_now(GetParam()).contexts_created - before.contexts_created, 2u);
  {
    std::ofstream replaced(pki.ca_file, std::ios::app);
    replaced << "\n";  // the same CA, a different file on disk
  }
  open_all(1, [&](TlsOptions& t) { t.ca_file = pki.ca_file; });
  EXPECT_EQ(tls_stats_now(GetParam()).contexts_created - before.contexts_created, 3u);
  for (std::size_t i = 0; i < engines.size(); ++i) {
    EXPECT_FALSE(engines[i]->stop());
    clients[i]->mark_stopped();
    EXPECT_THAT(clients[i]->violations(), IsEmpty());
  }
}

// A second connection to an origin resumes the first one's TLS session (TLS 1.3
// ticket; TLS 1.2 ticket or session ID), as the server itself reports; not when
// TlsOptions::session_resumption is off, nor with a verify_callback.
TEST_P(PythonPeer, TlsSessionsAreResumedAsTheServerSees) {
  for (bool tls12 : {false, true}) {
    SCOPED_TRACE(tls12 ? "TLS 1.2" : "TLS 1.3");
    TestPki pki = make_test_pki();
    std::vector<std::string> argv = {"/usr/bin/python3", WSCENGINE_PY_SERVER, "--tls", pki.server_chain,
                                     pki.server_key};
    if (tls12) argv.push_back("--tls12");
    ChildProcess secure(argv);
    std::string wss = secure.first_line(20s);
    ASSERT_EQ(wss.rfind("wss://", 0), 0u) << wss;
    const std::string version = tls12 ? "TLSv1.2" : "TLSv1.3";
    // One session: what the server said of its TLS.
    auto session = [&](bool resumption, bool callback) {
      EngineOptions o;
      o.url = wss + "/tls";
      o.tls.ca_file = pki.ca_file;
      o.tls.session_resumption = resumption;
      if (callback) o.tls.verify_callback = [](const CertificateCheck& check) { return check.verified; };
      auto recorder = std::make_shared<Recorder>();
      Engine e(o, recorder, GetParam().make());
      EXPECT_FALSE(e.start());
      std::string said = recorder->wait_count(Event::message, 1) ? recorder->events_of(Event::message)[0].payload : "";
      EXPECT_FALSE(e.stop());
      recorder->mark_stopped();
      EXPECT_THAT(recorder->violations(), IsEmpty());
      return said;
    };
    const auto before = tls_stats_now(GetParam());
    EXPECT_EQ(session(true, false), "reused=0 " + version);
    EXPECT_EQ(session(true, false), "reused=1 " + version);
    EXPECT_EQ(session(true, false), "reused=1 " + version);
    EXPECT_EQ(session(false, false), "reused=0 " + version);
    EXPECT_EQ(session(true, true), "reused=0 " + version);
    const auto after = tls_stats_now(GetParam());
    EXPECT_EQ(after.handshakes_full - before.handshakes_full, 3u);
    EXPECT_EQ(after.handshakes_resumed - before.handshakes_resumed, 2u);
  }
}

// wss:// engines on a runtime of four io threads, each writing messages of several TLS
// records while the server echoes earlier ones back: a connection's reads and the
// steps of its writes complete on different io threads and must still take turns on
// its one SSL object (websocketpp ran a write's next record beside its read handler
// on Boost 1.74; TSan saw it). Every echo comes back whole and in order, then the
// engines stop, four at a time, with writes still queued and echoes coming in.
TEST_P(PythonPeer, WssEnginesOnFourIoThreadsWriteAndReadAtOnce) {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  constexpr int kEngines = 12;
#else
  constexpr int kEngines = 32;
#endif
  constexpr int kMessages = 12;
  constexpr std::size_t kSize = 40 * 1024;  // three TLS records
  TestPki pki = make_test_pki();
  ChildProcess secure({"/usr/bin/python3", WSCENGINE_PY_SERVER, "--tls", pki.server_chain, pki.server_key});
  std::string wss = secure.first_line(20s);
  ASSERT_EQ(wss.rfind("wss://", 0), 0u) << wss;
  auto runtime = Runtime::create({4, 2});
  std::vector<std::shared_ptr<Recorder>> clients;
  std::vector<std::unique_ptr<Engine>> engines;
  auto payload = [&](int engine, int message) {
    std::string p = cat("engine ", engine, " message ", message, " ");
    p.resize(kSize, static_cast<char>('a' + (engine + message) % 26));
    return p;
  };
  for (int i = 0; i < kEngines; ++i) {
    EngineOptions o;
    o.url = wss + "/echo";
    o.tls.ca_file = pki.ca_file;
    o.auto_reconnect = false;
    clients.push_back(std::make_shared<Recorder>());
    engines.push_back(std::make_unique<Engine>(o, clients.back(), GetParam().make(), runtime));
    ASSERT_FALSE(engines.back()->start_background());
  }
  for (int i = 0; i < kEngines; ++i) {
    ASSERT_TRUE(clients[i]->wait_count(Event::open, 1, 60s)) << i;
    ASSERT_TRUE(wait_state(*engines[i], EngineState::running)) << i;
  }
  // All engines write at once; the echoes of the first messages arrive while the
  // later ones are still being written.
  for (int m = 0; m < kMessages; ++m)
    for (int i = 0; i < kEngines; ++i) ASSERT_FALSE(engines[i]->send_text(payload(i, m))) << i << " " << m;
  for (int i = 0; i < kEngines; ++i) {
    SCOPED_TRACE(i);
    ASSERT_TRUE(clients[i]->wait_count(Event::message, kMessages, 60s));
    auto echoes = clients[i]->events_of(Event::message);
    for (int m = 0; m < kMessages; ++m) EXPECT_TRUE(echoes[m].payload == payload(i, m)) << "message " << m;
  }
  // Stops while writes are queued: each ends with its close handshake, in turn with
  // the echoes still coming in.
  for (int m = 0; m < 4; ++m)
    for (int i = 0; i < kEngines; ++i) ASSERT_FALSE(engines[i]->send_text(payload(i, m)));
  std::vector<std::thread> stoppers;
  for (int t = 0; t < 4; ++t)
    stoppers.emplace_back([&, t] {
      for (int i = t; i < kEngines; i += 4) EXPECT_FALSE(engines[i]->stop()) << i;
    });
  for (auto& s : stoppers) s.join();
  for (int i = 0; i < kEngines; ++i) {
    clients[i]->mark_stopped();
    EXPECT_THAT(clients[i]->violations(), IsEmpty()) << i;
  }
}

INSTANTIATE_TEST_SUITE_P(Adapters, PythonPeer, ::testing::ValuesIn(real_adapters()), AdapterName());
