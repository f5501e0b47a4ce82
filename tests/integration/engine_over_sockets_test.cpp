// The engine over real sockets against the project's Beast server, on every real
// adapter (tests/support/real_adapters.hpp).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <thread>

#include <wscengine/wscengine.hpp>

#include "support/loopback.hpp"
#include "support/pause_mid_stream.hpp"
#include "support/process.hpp"
#include "support/real_adapters.hpp"
#include "support/recorder.hpp"
#include "test_server.hpp"

using namespace wscengine;
using namespace wscengine::test;
using ::testing::IsEmpty;

namespace {

class EngineOverSockets : public ::testing::TestWithParam<RealAdapter> {
 protected:
  tools::TestServer server;
  std::shared_ptr<Recorder> client = std::make_shared<Recorder>();
  std::unique_ptr<Engine> engine;

  EngineOptions options(const std::string& target = "/") {
    if (server.port() == 0) server.start();
    EngineOptions o;
    o.delivery = GetParam().delivery;
    o.url = server.url(target);
    o.backoff.initial_delay = 10ms;
    o.backoff.max_delay = 50ms;
    o.open_timeout = 5s;
    o.close_timeout = 2s;
    return o;
  }
  void make(EngineOptions o) { engine = std::make_unique<Engine>(o, client, GetParam().make()); }
  // Tests whose server callbacks capture locals end with this: the server's session
  // threads must stop before the locals go.
  void finish() {
    if (engine) {
      EXPECT_FALSE(engine->stop());
      client->mark_stopped();
      engine.reset();
    }
    server.stop();
  }
  void TearDown() override {
    stop_and_check(engine, *client);
    server.stop();
  }
};

}  // namespace

TEST_P(EngineOverSockets, MessagesBothWaysInOrder) {
  server.on_session = tools::echo_session;
  make(options());
  ASSERT_FALSE(engine->start());
  for (int i = 0; i < 200; ++i) ASSERT_FALSE(engine->send_text("text " + std::to_string(i)));
  std::string binary(1 << 20, '\0');
  for (std::size_t i = 0; i < binary.size(); ++i) binary[i] = static_cast<char>(i * 7);
  ASSERT_FALSE(engine->send_binary(binary));
  ASSERT_TRUE(client->wait_count(Event::message, 201));
  auto messages = client->events_of(Event::message);
  for (int i = 0; i < 200; ++i) {
    EXPECT_EQ(messages[i].payload, "text " + std::to_string(i));
    EXPECT_EQ(messages[i].sequence, static_cast<std::uint64_t>(i));
  }
  EXPECT_EQ(messages[200].payload, binary);
}

TEST_P(EngineOverSockets, ManySmallMessagesInOneBurst) {
  server.on_session = [](tools::ServerSession& s) {
    for (int i = 0; i < 20000; ++i) s.send(MessageType::binary, std::string(64, static_cast<char>('a' + i % 26)));
    InboundMessage m;
    s.read(m, 10s);
  };
  make(options());
  ASSERT_FALSE(engine->start());
  ASSERT_TRUE(client->wait_count(Event::message, 20000, 30s));
  auto messages = client->events_of(Event::message);
  EXPECT_EQ(messages.back().sequence, 19999u);
  EXPECT_EQ(messages[27].payload, std::string(64, 'b'));
}

TEST_P(EngineOverSockets, ServerCloseCodeReachesOnClose) {
  server.on_session = [](tools::ServerSession& s) { s.close({4001, "maintenance"}); };
  auto o = options();
  o.auto_reconnect = false;
  make(o);
  ASSERT_FALSE(engine->start());
  ASSERT_FALSE(engine->wait_stopped(10s));
  auto close = client->events_of(Event::close);
  ASSERT_EQ(close.size(), 1u);
  ASSERT_TRUE(close[0].received);
  EXPECT_EQ(*close[0].received, (CloseFrame{4001, "maintenance"}));
  EXPECT_EQ(close[0].initiator, CloseInitiator::peer);
}

TEST_P(EngineOverSockets, DroppedConnectionIs1006AndReconnects) {
  std::atomic<int> sessions{0};
  server.on_session = [&](tools::ServerSession& s) {
    int n = ++sessions;
    s.send(MessageType::text, "session " + std::to_string(n));
    if (n == 1) return s.drop();
    InboundMessage m;
    s.read(m, 10s);
  };
  make(options());
  ASSERT_FALSE(engine->start());
  ASSERT_TRUE(client->wait_count(Event::open, 2));
  ASSERT_TRUE(client->wait_count(Event::message, 2));
  auto close = client->events_of(Event::close);
  ASSERT_EQ(close.size(), 1u);
  ASSERT_TRUE(close[0].received);
  EXPECT_EQ(close[0].received->code, close_code::abnormal);
  EXPECT_EQ(client->events_of(Event::message)[1].payload, "session 2");
  EXPECT_TRUE(client->events_of(Event::open)[1].restarting);
  finish();
}

TEST_P(EngineOverSockets, A403AfterADropIsNotRetried) {
  std::atomic<int> requests{0};
  server.on_request = [&](const std::string&, const std::vector<Header>&) { return ++requests == 1 ? 0 : 403; };
  server.on_session = [](tools::ServerSession& s) { s.drop(); };
  make(options());
  ASSERT_FALSE(engine->start());
  ASSERT_FALSE(engine->wait_stopped(10s));
  auto errors = client->events_of(Event::restart_error);
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0].error.http_status, 403);
  EXPECT_THAT(errors[0].error.message(), ::testing::HasSubstr("not retried"));
  EXPECT_EQ(requests, 2) << "no third attempt";
  finish();
}

TEST_P(EngineOverSockets, ACertificateThatDoesNotVerifyIsNotRetriedBlindly) {
  std::string dir = temp_dir();
  ASSERT_TRUE(make_test_certificate(dir));
  tools::ServerOptions tls;
  tls.cert_file = dir + "/cert.pem";
  tls.key_file = dir + "/key.pem";
  tools::TestServer secure(tls);
  secure.on_session = tools::echo_session;
  secure.start();
  EngineOptions o;
  o.delivery = GetParam().delivery;
  o.url = secure.url("/");  // the system store does not know the test's certificate
  o.backoff.initial_delay = 10ms;
  make(o);
  ASSERT_FALSE(engine->start_background());
  ASSERT_FALSE(engine->wait_stopped(10s));
  auto errors = client->events_of(Event::restart_error);
  ASSERT_EQ(errors.size(), 1u) << "one attempt, not a retry loop";
  EXPECT_TRUE(errors[0].error.is(errc::tls_verification_failed)) << errors[0].error.message();
  EXPECT_THAT(errors[0].error.message(), ::testing::HasSubstr("not retried"));
  EXPECT_EQ(secure.accepted(), 1u);
  engine.reset();
  client->mark_stopped();
  secure.stop();
}

TEST_P(EngineOverSockets, RetryAfterOfA503IsHonoured) {
  std::atomic<int> requests{0};
  std::atomic<int> sessions{0};
  server.refusal_headers = {{"Retry-After", "1"}};
  server.on_request = [&](const std::string&, const std::vector<Header>&) { return ++requests == 2 ? 503 : 0; };
  server.on_session = [&](tools::ServerSession& s) {
    if (++sessions == 1) return s.drop();
    InboundMessage m;
    s.read(m, 10s);
  };
  make(options());
  auto t0 = std::chrono::steady_clock::now();
  ASSERT_FALSE(engine->start());
  ASSERT_TRUE(client->wait_count(Event::open, 2));
  EXPECT_GE(std::chrono::steady_clock::now() - t0, 950ms) << "the second attempt waited for Retry-After";
  auto errors = client->events_of(Event::restart_error);
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0].error.http_status, 503);
  EXPECT_EQ(errors[0].error.http_header("retry-after"), "1");
  finish();
}

TEST_P(EngineOverSockets, ReconnectsAfterTheServerRestarts) {
  server.on_session = tools::echo_session;
  make(options());
  ASSERT_FALSE(engine->start());
  std::uint16_t port = server.port();
  server.stop();
  ASSERT_TRUE(client->wait_count(Event::restart_error, 2));  // refused while the server is down
  EXPECT_TRUE(client->events_of(Event::restart_error)[0].error.is(errc::connection_refused))
      << client->events_of(Event::restart_error)[0].payload;
  tools::ServerOptions same_port;
  same_port.port = port;
  tools::TestServer again(same_port);
  again.on_session = tools::echo_session;
  again.start();
  ASSERT_TRUE(client->wait_count(Event::open, 2));
  ASSERT_TRUE(wait_state(*engine, EngineState::running));  // OnOpen recorded before it returned
  ASSERT_FALSE(engine->send_text("after restart"));
  ASSERT_TRUE(client->wait_count(Event::message, 1));
  EXPECT_EQ(client->events_of(Event::message)[0].payload, "after restart");
  EXPECT_FALSE(engine->stop());
  client->mark_stopped();
  engine.reset();
}

TEST_P(EngineOverSockets, OnOpenFailureAtStartAndDuringRestart) {
  // One server behaviour for the whole test (its sessions run on their own threads).
  std::atomic<int> sessions{0};
  server.on_session = [&](tools::ServerSession& s) {
    if (++sessions == 2) return s.drop();  // the first session of the second start
    tools::echo_session(s);
  };
  client->on_open_hook = [](Context&, const HandshakeResponse&, bool) { return Error(errc::io_error, "no login"); };
  make(options());
  Error e = engine->start();
  EXPECT_TRUE(e.is(errc::open_failed)) << e.message();
  EXPECT_NE(e.message().find("no login"), std::string::npos);
  EXPECT_EQ(server.accepted(), 1u);
  EXPECT_EQ(engine->state(), EngineState::stopped);

  std::atomic<int> opens{0};
  client->on_open_hook = [&](Context&, const HandshakeResponse&, bool) {  // the engine is stopped: no callback runs
    return ++opens == 2 ? Error(errc::io_error, "login refused once") : Error{};
  };
  ASSERT_FALSE(engine->start());
  ASSERT_TRUE(client->wait_count(Event::restart_error, 1));
  EXPECT_TRUE(client->events_of(Event::restart_error)[0].error.is(errc::open_failed));
  ASSERT_TRUE(client->wait_for([](const std::vector<Event>& es) {
    int ok = 0;
    for (auto& e : es) ok += e.kind == Event::open && !e.error;
    return ok == 2;
  }));
  finish();
}

TEST_P(EngineOverSockets, PauseThenRequestResponseByHand) {
  server.on_session = [](tools::ServerSession& s) {
    for (;;) {
      InboundMessage m;
      if (s.read(m, 10s)) return;
      if (m.payload == "ping?") s.send(MessageType::text, "pong!");
      if (m.payload == "feed") {
        for (int i = 0; i < 3; ++i) s.send(MessageType::text, "tick");
      }
    }
  };
  // Hooks are set before start: callbacks read them on other threads.
  std::promise<std::string> got;
  std::atomic<bool> asked{false};
  std::atomic<bool> paused{false};
  std::atomic<int> dispatched_while_paused{0};
  client->on_message_hook = [&](Context& ctx, const Message& m) {
    if (paused.load()) ++dispatched_while_paused;
    if (m.payload != "tick" || asked.exchange(true)) return;
    PauseGuard pause = ctx.pause();  // inside OnMessage with N = 1
    if (ctx.connection().send_text("ping?")) return;
    InboundMessage reply;
    if (GetParam().delivery == Delivery::io_thread) {  // on an I/O thread a read by hand is refused
      Error e = ctx.connection().read(reply, 5s);
      return got.set_value(e.is(errc::would_deadlock) ? "refused" : "not refused: " + e.message());
    }
    for (;;) {  // the rest of the feed may come first
      if (Error e = ctx.connection().read(reply, 5s)) return got.set_value(e.message());
      if (reply.payload == "pong!") return got.set_value(reply.payload);
    }
  };
  make(options());
  ASSERT_FALSE(engine->start());
  {
    // Pause from outside any callback; nothing is dispatched until it is released.
    PauseGuard pause = engine->pause();
    paused = true;
    ASSERT_FALSE(engine->send_text("ping?"));
    // The server answers our ping after "pong!": when the pong is back, "pong!" has
    // reached the client and waits there, and no reader slot took it.
    Error ping = engine->connection().ping("after pong!", 5s);
    ASSERT_FALSE(ping) << ping.message();
    EXPECT_EQ(client->count(Event::message), 0u);
    paused = false;
  }
  EXPECT_EQ(dispatched_while_paused.load(), 0) << "on_message ran while the pause lock was held";
  ASSERT_TRUE(client->wait_count(Event::message, 1));
  EXPECT_EQ(client->events_of(Event::message)[0].payload, "pong!");
  ASSERT_FALSE(engine->send_text("feed"));
  auto answer = got.get_future();
  ASSERT_EQ(answer.wait_for(10s), std::future_status::ready);
  if (GetParam().delivery == Delivery::io_thread) {
    EXPECT_EQ(answer.get(), "refused");
    // Nothing was taken by hand: the ticks and the answer all reach on_message.
    EXPECT_TRUE(client->wait_count(Event::message, 5));
    EXPECT_EQ(client->events_of(Event::message).back().payload, "pong!");
  } else {
    EXPECT_EQ(answer.get(), "pong!");
    // Dispatched: "pong!" and the first tick; the other ticks went to the hand reader.
    EXPECT_TRUE(client->wait_count(Event::message, 2));
  }
  finish();  // the hook uses this test's locals: no on_message may outlive them
}

// The pause lock taken while OnMessage runs in the middle of a burst, over a socket,
// again and again, with a message read by hand each time: no OnMessage starts while
// it is held, and every message is taken once, in order.
TEST_P(EngineOverSockets, PausingWhileMessagesStreamLosesNothing) {
  constexpr int rounds = 100, burst = 40;
  server.on_session = [](tools::ServerSession& s) {
    int next = 0;  // every message is its number
    for (;;) {
      InboundMessage m;
      if (s.read(m, 10s)) return;
      int n = m.payload == "burst" ? burst : 1;
      for (int i = 0; i < n; ++i) {
        if (s.send(MessageType::text, std::to_string(next++))) return;
      }
    }
  };
  PauseMidStream stream(rounds, burst);
  client->on_message_hook = [&](Context&, const Message& m) { stream.on_message(m); };
  make(options());
  ASSERT_FALSE(engine->start());
  for (int r = 0; r < rounds; ++r) {
    ASSERT_FALSE(engine->send_text("burst"));
    ASSERT_TRUE(stream.read_one_by_hand(*engine, r, [&] { ASSERT_FALSE(engine->send_text("one")); }));
  }
  EXPECT_EQ(stream.started_while_paused(), 0);
  constexpr int total = rounds * (burst + 1);
  ASSERT_TRUE(client->wait_count(Event::message, total - rounds));
  EXPECT_TRUE(each_taken_once_in_order(client->events_of(Event::message), stream.by_hand(), total));
  finish();
}

TEST_P(EngineOverSockets, StopSendsTheChosenCloseCode) {
  std::promise<CloseFrame> seen;
  server.on_session = [&](tools::ServerSession& s) {
    InboundMessage m;
    Error e = s.read(m, 10s);
    seen.set_value(e.close.value_or(CloseFrame{0, e.message()}));
  };
  client->on_close_hook = [](Context&, const std::optional<CloseFrame>&) { return CloseFrame{4321, "client done"}; };
  make(options());
  ASSERT_FALSE(engine->start());
  ASSERT_FALSE(engine->stop());
  auto frame = seen.get_future();
  ASSERT_EQ(frame.wait_for(5s), std::future_status::ready);
  EXPECT_EQ(frame.get(), (CloseFrame{4321, "client done"}));
  finish();
}

TEST_P(EngineOverSockets, HandshakeHeadersSubprotocolAndResponse) {
  server.choose_subprotocol = "feed.v2";
  std::promise<std::string> token;
  server.on_session = [&](tools::ServerSession& s) {
    token.set_value(s.header("Authorization").value_or("<none>") + " " +
                    s.header("Sec-WebSocket-Protocol").value_or(""));
    tools::echo_session(s);
  };
  auto o = options();
  o.headers.push_back({"Authorization", "Bearer abc"});
  o.subprotocols = {"feed.v2", "feed.v1"};
  std::string chosen;
  client->on_open_hook = [&](Context&, const HandshakeResponse& r, bool) {
    chosen = r.subprotocol;
    EXPECT_EQ(r.status, 101);
    EXPECT_EQ(r.header("server").value_or(""), "wscengine-test-server");
    return Error{};
  };
  make(o);
  ASSERT_FALSE(engine->start());
  EXPECT_EQ(chosen, "feed.v2");
  auto seen = token.get_future();
  ASSERT_EQ(seen.wait_for(5s), std::future_status::ready);
  EXPECT_EQ(seen.get(), "Bearer abc feed.v2, feed.v1");
  finish();
}

TEST_P(EngineOverSockets, HttpRefusalCarriesTheStatus) {
  server.on_request = [](const std::string&, const std::vector<Header>&) { return 403; };
  make(options());
  Error e = engine->start();
  ASSERT_TRUE(e.is(errc::http_status)) << e.message();
  EXPECT_EQ(e.http_status, 403);
  EXPECT_NE(e.message().find("403"), std::string::npos);
}

TEST_P(EngineOverSockets, RefusedConnectionSaysSo) {
  auto o = options();
  std::uint16_t port = server.port();
  server.stop();
  o.url = "ws://127.0.0.1:" + std::to_string(port) + "/";
  make(o);
  Error e = engine->start();
  EXPECT_TRUE(e.is(errc::connection_refused)) << e.message();
  EXPECT_NE(e.message().find("127.0.0.1"), std::string::npos);
}

TEST_P(EngineOverSockets, UnknownHostIsADnsFailure) {
  auto o = options();
  o.url = "ws://no-such-host.invalid/";
  make(o);
  Error e = engine->start();
  EXPECT_TRUE(e.is(errc::dns_failure)) << e.message();
}

TEST_P(EngineOverSockets, OversizeMessageIs1009ThenReconnect) {
  std::atomic<int> sessions{0};
  std::promise<CloseFrame> client_close;
  server.on_session = [&](tools::ServerSession& s) {
    if (++sessions > 1) return tools::echo_session(s);
    s.send(MessageType::binary, std::string(4096, 'x'));
    InboundMessage m;
    Error e = s.read(m, 5s);
    client_close.set_value(e.close.value_or(CloseFrame{0, e.message()}));
  };
  auto o = options();
  o.max_message_size = 1024;
  make(o);
  ASSERT_FALSE(engine->start());
  ASSERT_TRUE(client->wait_count(Event::read_error, 1));
  EXPECT_TRUE(client->events_of(Event::read_error)[0].error.is(errc::message_too_big));
  auto frame = client_close.get_future();
  ASSERT_EQ(frame.wait_for(5s), std::future_status::ready);
  auto got = frame.get();
  EXPECT_EQ(got.code, close_code::too_big) << got.reason;
  ASSERT_TRUE(client->wait_count(Event::open, 2));
  EXPECT_EQ(client->count(Event::message), 0u);
  finish();
}

TEST_P(EngineOverSockets, InvalidUtf8Is1007) {
  server.on_session = [](tools::ServerSession& s) {
    s.send(MessageType::text, std::string("ok"));
    s.send(MessageType::text, std::string("\xff\xfe bad", 6));
    InboundMessage m;
    s.read(m, 5s);
  };
  auto o = options();
  o.auto_reconnect = false;
  make(o);
  ASSERT_FALSE(engine->start());
  ASSERT_FALSE(engine->wait_stopped(10s));
  ASSERT_EQ(client->count(Event::message), 1u);
  ASSERT_EQ(client->count(Event::read_error), 1u);
  EXPECT_TRUE(client->events_of(Event::read_error)[0].error.is(errc::invalid_utf8));
}

// Text that is not UTF-8, sent by the application: the websocketpp adapter frames each
// message on the sending thread, where websocketpp refuses it at once and the connection
// goes on; Beast sends it as it is and the peer fails the connection with 1007.
TEST_P(EngineOverSockets, SendingTextThatIsNotUtf8) {
  server.on_session = tools::echo_session;
  auto o = options();
  o.auto_reconnect = false;
  make(o);
  ASSERT_FALSE(engine->start());
  const std::string bad("\xff\xfe bad", 6);
  Error refused = engine->send_text(bad);
  if (GetParam().name.rfind("websocketpp", 0) == 0) {
    EXPECT_TRUE(refused.is(errc::invalid_utf8)) << refused.message();
    EXPECT_THAT(refused.message(), ::testing::HasSubstr("UTF-8")) << refused.message();
    ASSERT_FALSE(engine->send_text("after"));
    ASSERT_TRUE(client->wait_count(Event::message, 1));
    EXPECT_EQ(client->events_of(Event::message)[0].payload, "after");
  } else {
    EXPECT_FALSE(refused) << refused.message();
    ASSERT_FALSE(engine->wait_stopped(10s));
    auto close = client->events_of(Event::close);
    ASSERT_EQ(close.size(), 1u);
    ASSERT_TRUE(close[0].received);
    EXPECT_EQ(close[0].received->code, close_code::invalid_payload);
  }
  finish();
}

TEST_P(EngineOverSockets, SecureWithTheTestsOwnCertificate) {
  std::string dir = temp_dir();
  ASSERT_TRUE(make_test_certificate(dir)) << "openssl could not make a certificate";
  tools::ServerOptions tls;
  tls.cert_file = dir + "/cert.pem";
  tls.key_file = dir + "/key.pem";
  tools::TestServer secure(tls);
  secure.on_session = tools::echo_session;
  secure.start();

  // Verification on, against the system store: the self-signed certificate fails, clearly.
  EngineOptions o;
  o.delivery = GetParam().delivery;
  o.url = secure.url("/");
  make(o);
  Error e = engine->start();
  EXPECT_TRUE(e.is(errc::tls_verification_failed)) << e.message();
  EXPECT_NE(e.message().find("certificate"), std::string::npos) << e.message();
  engine.reset();
  client = std::make_shared<Recorder>();  // session ids restart at 1 per engine

  // The explicit insecure switch accepts it (for lab servers only).
  o.tls.verify_peer = false;
  make(o);
  EXPECT_FALSE(engine->start());
  EXPECT_FALSE(engine->stop());
  client->mark_stopped();
  EXPECT_THAT(client->violations(), IsEmpty());
  engine.reset();
  client = std::make_shared<Recorder>();
  o.tls.verify_peer = true;

  // Trusting the test's CA file: messages flow.
  o.tls.ca_file = tls.cert_file;
  make(o);
  ASSERT_FALSE(engine->start());
  ASSERT_FALSE(engine->send_text("over tls"));
  ASSERT_TRUE(client->wait_count(Event::message, 1));
  EXPECT_EQ(client->events_of(Event::message)[0].payload, "over tls");
  EXPECT_FALSE(engine->stop());
  client->mark_stopped();
  EXPECT_THAT(client->violations(), IsEmpty());
  engine.reset();
  client = std::make_shared<Recorder>();

  // The host name is checked too: a name the certificate does not carry fails.
  o.url = "wss://127.0.0.1:" + std::to_string(secure.port()) + "/";
  o.tls.server_name = "not-in-the-certificate.test";
  make(o);
  e = engine->start();
  EXPECT_TRUE(e.is(errc::tls_verification_failed)) << e.message();
  engine.reset();
  client = std::make_shared<Recorder>();

  // And the certificate's IP address is accepted as a name.
  o.tls.server_name.clear();
  make(o);
  EXPECT_FALSE(engine->start());
  EXPECT_FALSE(engine->stop());
  client->mark_stopped();
  engine.reset();
  secure.stop();
}

TEST_P(EngineOverSockets, ManyEnginesShareOneRuntimeWithoutAThreadEach) {
  server.on_session = tools::echo_session;
  auto o = options();
  auto runtime = Runtime::create({1, 2});
  std::vector<std::shared_ptr<Recorder>> clients;
  std::vector<std::unique_ptr<Engine>> engines;
  for (int i = 0; i < 50; ++i) {
    clients.push_back(std::make_shared<Recorder>());
    engines.push_back(std::make_unique<Engine>(o, clients.back(), GetParam().make(), runtime));
    ASSERT_FALSE(engines.back()->start()) << "engine " << i;
  }
  for (int i = 0; i < 50; ++i) ASSERT_FALSE(engines[i]->send_text("engine " + std::to_string(i)));
  for (int i = 0; i < 50; ++i) {
    ASSERT_TRUE(clients[i]->wait_count(Event::message, 1));
    EXPECT_EQ(clients[i]->events_of(Event::message)[0].payload, "engine " + std::to_string(i));
  }
  for (auto& e : engines) EXPECT_FALSE(e->stop());
  for (auto& c : clients) {
    c->mark_stopped();
    EXPECT_THAT(c->violations(), IsEmpty());
  }
}

TEST_P(EngineOverSockets, AnIpv6LiteralUrlReachesAServerOnLoopback) {
  tools::ServerOptions server_options;
  server_options.host = "::1";
  tools::TestServer v6(server_options);
  v6.on_session = [](tools::ServerSession& s) { tools::echo_session(s); };
  v6.start();
  std::string url = v6.url("/v6");
  ASSERT_EQ(url.rfind("ws://[::1]:", 0), 0u) << url;
  EngineOptions o;
  o.delivery = GetParam().delivery;
  o.url = url;
  {
    Engine engine(o, client, GetParam().make());
    Error e = engine.start();
    ASSERT_FALSE(e) << e.message();
    ASSERT_FALSE(engine.send_text("over IPv6"));
    ASSERT_TRUE(client->wait_count(Event::message, 1));
    EXPECT_EQ(client->events_of(Event::message)[0].payload, "over IPv6");
    ASSERT_FALSE(engine.stop());
    client->mark_stopped();
  }
  v6.stop();
  EXPECT_THAT(client->violations(), ::testing::IsEmpty());
}

TEST_P(EngineOverSockets, HeartbeatFindsAServerThatStoppedAnsweringOverARealSocket) {
  std::atomic<bool> release{false};
  std::atomic<int> sessions{0};
  server.on_session = [&](tools::ServerSession& s) {
    if (++sessions > 1) return tools::echo_session(s);
    // Never reads, so Beast never answers the client's pings: a silent peer.
    for (int i = 0; i < 1000 && !release; ++i) std::this_thread::sleep_for(10ms);
  };
  auto o = options();
  o.ping_interval = 50ms;
  o.pong_timeout = 200ms;
  make(o);
  ASSERT_FALSE(engine->start());
  ASSERT_TRUE(client->wait_count(Event::open, 2, 20s));
  auto errors = client->events_of(Event::read_error);
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_TRUE(errors[0].error.is(errc::timeout)) << errors[0].error.message();
  release = true;
  finish();
}

// The environment's proxy is honoured, and NO_PROXY overrules it for the hosts it
// names: with HTTP_PROXY pointing at a port that refuses, the dial fails naming the
// proxy; with the server's address in NO_PROXY it goes straight to the server. (Each
// test runs in its own process: the variables are set before any dial reads them.)
TEST_P(EngineOverSockets, AHostInNoProxyIsDialledDirectly) {
  server.on_session = tools::echo_session;
  test::RefusingPort refusing;  // refuses for the whole test (see RefusingPort)
  const std::string dead_proxy = "http://127.0.0.1:" + std::to_string(refusing.port());
  auto o = options();
  o.proxy.from_environment = true;
  ::setenv("HTTP_PROXY", dead_proxy.c_str(), 1);
  {
    Engine through_proxy(o, std::make_shared<Recorder>(), GetParam().make());
    Error e = through_proxy.start();
    ASSERT_TRUE(e) << "the environment's proxy was not used";
    EXPECT_THAT(e.message(), ::testing::HasSubstr(dead_proxy)) << e.message();
  }
  EXPECT_EQ(server.accepted(), 0u);
  ::setenv("NO_PROXY", "example.org, 127.0.0.1", 1);
  make(o);
  Error e = engine->start();
  ::unsetenv("HTTP_PROXY");
  ::unsetenv("NO_PROXY");
  ASSERT_FALSE(e) << e.message();
  EXPECT_EQ(server.accepted(), 1u) << "the server saw the connection itself";
  ASSERT_FALSE(engine->send_text("direct"));
  ASSERT_TRUE(client->wait_count(Event::message, 1));
  EXPECT_EQ(client->events_of(Event::message)[0].payload, "direct");
}

INSTANTIATE_TEST_SUITE_P(Adapters, EngineOverSockets, ::testing::ValuesIn(engine_variants()), AdapterName());
