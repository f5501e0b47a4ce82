// Fault injection (issue 6): the engine on every real adapter, through a proxy that
// slices, delays, blackholes, resets and truncates, and against hostile servers.
// Each test checks the callbacks in order (the Recorder's invariants), a clear
// error, reconnection where it is on, and that nothing delivered is lost; every wait
// is bounded.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include <arpa/inet.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <wscengine/beast.hpp>
#include <wscengine/beast/underlying.hpp>
#include <wscengine/wscengine.hpp>

#include "conformance/fuzzing_server.hpp"
#include "fault_proxy.hpp"
#include "frames.hpp"
#include "support/fake_tracer.hpp"
#include "support/loopback.hpp"
#include "support/process.hpp"
#include "support/real_adapters.hpp"
#include "support/recorder.hpp"
#include "support/test_pki.hpp"
#include "support/text.hpp"
#include "test_server.hpp"

using namespace wscengine;
using namespace wscengine::test;
using faults::Fault;
using faults::FaultProxy;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

namespace {

class Faults : public ::testing::TestWithParam<RealAdapter> {
 protected:
  tools::TestServer server;
  std::unique_ptr<FaultProxy> proxy;
  std::shared_ptr<Recorder> client = std::make_shared<Recorder>();
  std::unique_ptr<Engine> engine;

  EngineOptions through_proxy(const std::string& target = "/") {
    if (server.port() == 0) server.start();
    if (!proxy) proxy = std::make_unique<FaultProxy>(server.port());
    EngineOptions o;
    o.url = proxy->url(target);
    o.backoff.initial_delay = 10ms;
    o.backoff.max_delay = 100ms;
    o.open_timeout = 5s;
    o.close_timeout = 1s;
    return o;
  }
  void make(EngineOptions o) { engine = std::make_unique<Engine>(o, client, GetParam().make()); }
  /// start() against a peer that stalls one phase of the dial: it must fail with
  /// errc::timeout, within `within` (open_timeout plus slack).
  void expect_start_times_out(EngineOptions o, std::chrono::seconds within) {
    make(o);
    auto t0 = std::chrono::steady_clock::now();
    Error e = engine->start();
    EXPECT_TRUE(e.is(errc::timeout)) << e.message();
    EXPECT_LT(std::chrono::steady_clock::now() - t0, within);
    engine.reset();
    client->mark_stopped();
  }
  // The proxy goes first (its links end, so the server's sessions end), then the server.
  void TearDown() override {
    stop_and_check(engine, *client);
    proxy.reset();
    server.stop();
  }
};

// Echo until the client closes.
void echo(tools::ServerSession& s) { tools::echo_session(s); }

// OnOpen is recorded before the engine installs the session it opened: sends
// between the two are `not_connected`. Bounded.
Error send_once_running(Engine& engine, const std::string& text) {
  Error e;
  for (int i = 0; i < 500; ++i) {
    e = engine.send_text(text);
    if (!e.is(errc::not_connected)) return e;
    std::this_thread::sleep_for(10ms);
  }
  return e;
}

}  // namespace

TEST_P(Faults, OneByteWritesBothWaysStillCarryWholeMessages) {
  server.on_session = echo;
  auto o = through_proxy();
  make(o);
  proxy->set(Fault::slice);
  ASSERT_FALSE(engine->start());
  std::string big(70000, 'b');
  for (int i = 0; i < 20; ++i) ASSERT_FALSE(engine->send_text(test::cat("m", i)));
  ASSERT_FALSE(engine->send_binary(big));
  ASSERT_TRUE(client->wait_count(Event::message, 21, 30s));
  auto messages = client->events_of(Event::message);
  for (int i = 0; i < 20; ++i) EXPECT_EQ(messages[i].payload, test::cat("m", i));
  EXPECT_TRUE(messages[20].payload == big);
  EXPECT_EQ(client->count(Event::read_error), 0u);
}

// Over TLS the Beast adapter's TLS layer reads the ciphertext from the socket itself:
// every shape of bytes must make the same messages. Against Python `websockets` over
// TLS, through the proxy: the server's bytes one per write (the handshake, the
// certificate and every record cut everywhere), then all it sent in one write
// (records and frames run together). Echoes of every frame-length size class (7-,
// 16- and 64-bit) come back whole, in order, and the close handshake ends each session.
TEST_P(Faults, WssBytesSlicedOrCoalescedMakeTheSameMessages) {
  TestPki pki = make_test_pki();
  ChildProcess secure({"/usr/bin/python3", WSCENGINE_PY_SERVER, "--tls", pki.server_chain, pki.server_key});
  std::string wss = secure.first_line(20s);
  ASSERT_EQ(wss.rfind("wss://127.0.0.1:", 0), 0u) << wss;
  const auto server_port = static_cast<std::uint16_t>(std::stoi(wss.substr(std::string("wss://127.0.0.1:").size())));
  const std::vector<std::size_t> sizes = {0, 125, 126, 3000, 65535, 65536, 70000};
  for (Fault shape : {Fault::slice, Fault::coalesce}) {
    SCOPED_TRACE(shape == Fault::slice ? "byte by byte" : "coalesced");
    FaultProxy relay(server_port);
    relay.set(shape);
    EngineOptions o;
    o.url = cat("wss://127.0.0.1:", relay.port(), "/echo");
    o.tls.ca_file = pki.ca_file;
    o.auto_reconnect = false;
    auto recorder = std::make_shared<Recorder>();
    Engine e(o, recorder, GetParam().make());
    ASSERT_FALSE(e.start());
    std::vector<std::string> sent;
    for (std::size_t size : sizes) {
      std::string text(size, static_cast<char>('a' + size % 26));
      if (size >= 8) text.replace(0, 8, cat(size).append(8, '.').substr(0, 8));
      sent.push_back(text);
      ASSERT_FALSE(e.send_text(text));
    }
    ASSERT_TRUE(recorder->wait_count(Event::message, sizes.size(), 60s));
    auto echoes = recorder->events_of(Event::message);
    for (std::size_t i = 0; i < sizes.size(); ++i) EXPECT_TRUE(echoes[i].payload == sent[i]) << "size " << sizes[i];
    EXPECT_FALSE(e.stop());
    recorder->mark_stopped();
    EXPECT_THAT(recorder->violations(), IsEmpty());
    std::size_t payload = 0;
    for (std::size_t size : sizes) payload += size;
    EXPECT_GT(relay.bytes_to_clients(), payload);
    if (shape == Fault::slice) {
      EXPECT_EQ(relay.writes_to_clients(), relay.bytes_to_clients());
    } else {
      EXPECT_LT(relay.writes_to_clients(), 20u) << "the server's writes were handed on together";
    }
  }
}

// wss:// engines on one runtime, some through a proxy that then goes silent (no FIN,
// no RST): each silent one's heartbeat finds it (a read error, timeout) while the
// others, over TLS too, keep echoing multi-record messages whole and in order.
TEST_P(Faults, SilentWssPeersAreFoundWhileTheOthersOnTheRuntimeFlow) {
  constexpr int kSilent = 4, kLive = 8, kMessages = 10;
  TestPki pki = make_test_pki();
  ChildProcess secure({"/usr/bin/python3", WSCENGINE_PY_SERVER, "--tls", pki.server_chain, pki.server_key});
  std::string wss = secure.first_line(20s);
  ASSERT_EQ(wss.rfind("wss://127.0.0.1:", 0), 0u) << wss;
  FaultProxy silent(static_cast<std::uint16_t>(std::stoi(wss.substr(std::string("wss://127.0.0.1:").size()))));
  auto runtime = Runtime::create({2, 2});
  std::vector<std::shared_ptr<Recorder>> clients;
  std::vector<std::unique_ptr<Engine>> engines;
  for (int i = 0; i < kSilent + kLive; ++i) {
    EngineOptions o;
    o.url = i < kSilent ? cat("wss://127.0.0.1:", silent.port(), "/echo") : wss + "/echo";
    o.tls.ca_file = pki.ca_file;
    o.auto_reconnect = false;
    o.ping_interval = 200ms;
    o.pong_timeout = 500ms;
    clients.push_back(std::make_shared<Recorder>());
    engines.push_back(std::make_unique<Engine>(o, clients.back(), GetParam().make(), runtime));
    ASSERT_FALSE(engines.back()->start()) << i;
  }
  silent.set(Fault::blackhole);
  auto payload = [](int engine, int m) {
    std::string p = cat(engine, ":", m, ":");
    p.resize(40 * 1024, static_cast<char>('a' + m));
    return p;
  };
  for (int m = 0; m < kMessages; ++m)
    for (int i = kSilent; i < kSilent + kLive; ++i) ASSERT_FALSE(engines[i]->send_text(payload(i, m)));
  for (int i = 0; i < kSilent; ++i) {
    ASSERT_TRUE(clients[i]->wait_count(Event::read_error, 1, 10s)) << "silent engine " << i << " was never found";
    auto error = clients[i]->events_of(Event::read_error)[0].error;
    EXPECT_TRUE(error.is(errc::timeout)) << error.message();
  }
  for (int i = kSilent; i < kSilent + kLive; ++i) {
    ASSERT_TRUE(clients[i]->wait_count(Event::message, kMessages, 30s)) << i;
    auto echoes = clients[i]->events_of(Event::message);
    for (int m = 0; m < kMessages; ++m) EXPECT_TRUE(echoes[m].payload == payload(i, m)) << i << " " << m;
    EXPECT_EQ(clients[i]->count(Event::read_error), 0u) << i;
  }
  for (std::size_t i = 0; i < engines.size(); ++i) {
    engines[i]->stop();
    clients[i]->mark_stopped();
    EXPECT_THAT(clients[i]->violations(), IsEmpty()) << i;
  }
}

TEST_P(Faults, DelayedChunksDoNotFoolTheHeartbeat) {
  server.on_session = echo;
  auto o = through_proxy();
  o.ping_interval = 100ms;
  o.pong_timeout = 3s;
  auto tracer = std::make_shared<FakeTracer>();
  o.telemetry.tracer = tracer;
  make(o);
  proxy->set_delay(150ms);
  proxy->set(Fault::delay);
  ASSERT_FALSE(engine->start());
  for (int i = 0; i < 5; ++i) ASSERT_FALSE(engine->send_text(test::cat("slow ", i)));
  ASSERT_TRUE(client->wait_count(Event::message, 5, 30s));
  // Several pings answered late (each pong 300 ms on the way), but in time.
  auto answered = [&] {
    std::size_t n = 0;
    for (const auto& span : tracer->named("wscengine.ping")) n += span.ended && span.error.empty();
    return n;
  };
  for (int i = 0; i < 1000 && answered() < 3; ++i) std::this_thread::sleep_for(10ms);
  ASSERT_GE(answered(), 3u) << "three pings answered through the delay";
  EXPECT_EQ(client->count(Event::read_error), 0u);
  EXPECT_EQ(client->count(Event::open), 1u);
}

TEST_P(Faults, ABlackholedConnectionIsFoundWithinPingIntervalPlusPongTimeout) {
  server.on_session = echo;
  auto o = through_proxy();
  o.ping_interval = 200ms;
  o.pong_timeout = 500ms;
  std::promise<std::chrono::steady_clock::time_point> detected;
  std::atomic<bool> once{false};
  client->on_read_error_hook = [&](Context&, const Error&) {
    if (!once.exchange(true)) detected.set_value(std::chrono::steady_clock::now());
  };
  make(o);
  ASSERT_FALSE(engine->start());
  ASSERT_FALSE(engine->send_text("before"));
  ASSERT_TRUE(client->wait_count(Event::message, 1));
  auto t0 = std::chrono::steady_clock::now();
  proxy->set(Fault::blackhole);  // the open connection goes silent: no FIN, no RST
  proxy->set(Fault::pass);       // the reconnect gets through
  auto f = detected.get_future();
  ASSERT_EQ(f.wait_for(20s), std::future_status::ready) << "the dead connection was never noticed";
  // ping_interval + pong_timeout = 0.7 s; the margin is generous for loaded machines.
  EXPECT_LT(f.get() - t0, 0.7s + 3s);
  ASSERT_TRUE(client->wait_count(Event::read_error, 1));  // the hook runs before it is recorded
  auto error = client->events_of(Event::read_error)[0].error;
  EXPECT_TRUE(error.is(errc::timeout)) << error.message();
  ASSERT_TRUE(client->wait_count(Event::open, 2));
  auto close = client->events_of(Event::close);
  ASSERT_EQ(close.size(), 1u);
  ASSERT_TRUE(close[0].received);
  EXPECT_EQ(close[0].received->code, close_code::abnormal);
  ASSERT_FALSE(send_once_running(*engine, "after"));
  ASSERT_TRUE(client->wait_count(Event::message, 2));
  EXPECT_EQ(client->events_of(Event::message)[1].payload, "after");
}

TEST_P(Faults, AResetIs1006AndReconnects) {
  server.on_session = echo;
  auto o = through_proxy();
  make(o);
  ASSERT_FALSE(engine->start());
  proxy->set(Fault::reset);
  proxy->set(Fault::pass);
  ASSERT_TRUE(client->wait_count(Event::open, 2));
  auto close = client->events_of(Event::close);
  ASSERT_EQ(close.size(), 1u);
  ASSERT_TRUE(close[0].received);
  EXPECT_EQ(close[0].received->code, close_code::abnormal);
  ASSERT_FALSE(send_once_running(*engine, "again"));
  ASSERT_TRUE(client->wait_count(Event::message, 1));
}

TEST_P(Faults, AFrameCutInTheMiddleLosesNothingDeliveredAndReconnects) {
  std::atomic<int> sessions{0};
  std::promise<void> cut_armed;
  auto armed = cut_armed.get_future().share();
  server.on_session = [&](tools::ServerSession& s) {
    if (++sessions == 1) {
      s.send(MessageType::text, "complete");
      armed.wait_for(10s);
      s.send(MessageType::binary, std::string(10000, 'x'));  // cut after 5000 bytes
      InboundMessage m;
      s.read(m, 5s);
      return;
    }
    s.send(MessageType::text, "after reconnect");
    InboundMessage m;
    s.read(m, 10s);
  };
  auto o = through_proxy();
  make(o);
  ASSERT_FALSE(engine->start());
  ASSERT_TRUE(client->wait_count(Event::message, 1));
  proxy->cut_open_links_after(5000);
  cut_armed.set_value();
  ASSERT_TRUE(client->wait_count(Event::message, 2));
  auto messages = client->events_of(Event::message);
  EXPECT_EQ(messages[0].payload, "complete");
  EXPECT_EQ(messages[1].payload, "after reconnect") << "the cut message is never delivered in part";
  auto close = client->events_of(Event::close);
  ASSERT_EQ(close.size(), 1u);
  ASSERT_TRUE(close[0].received);
  EXPECT_EQ(close[0].received->code, close_code::abnormal);
}

TEST_P(Faults, ACutAtAnyByteOfTheHandshakeOrFirstFrameIsRetriedCleanly) {
  std::atomic<int> sessions{0};
  server.on_session = [&](tools::ServerSession& s) {
    ++sessions;
    s.send(MessageType::text, "hello");
    InboundMessage m;
    s.read(m, 10s);
  };
  through_proxy();
  // The 101 response is 150-250 bytes, the message 7: every offset through both.
  for (std::size_t cut : {0, 1, 2, 12, 50, 100, 129, 150, 160, 170, 180, 190, 200, 210, 220, 230, 250, 300}) {
    SCOPED_TRACE("cut after " + std::to_string(cut) + " bytes");
    client = std::make_shared<Recorder>();
    auto o = through_proxy();
    make(o);
    proxy->set_cut_after(cut);
    proxy->set_for_next(Fault::cut_after);
    ASSERT_FALSE(engine->start_background());
    ASSERT_TRUE(client->wait_count(Event::message, 1, 10s));
    EXPECT_EQ(client->events_of(Event::message).back().payload, "hello");
    for (const auto& e : client->events_of(Event::restart_error)) {
      EXPECT_FALSE(e.error.message().empty());
      EXPECT_THAT(e.error.message(), ::testing::Not(HasSubstr("not retried")));
    }
    for (const auto& c : client->events_of(Event::close))
      EXPECT_EQ(c.received.value_or(CloseFrame{}).code, close_code::abnormal);
    EXPECT_FALSE(engine->stop());
    client->mark_stopped();
    EXPECT_THAT(client->violations(), IsEmpty());
    engine.reset();
  }
}

// Busy or failing for now (408, 429, 5xx): retried. (A 3xx is a redirect now:
// tests/integration/redirect_test.cpp.)
TEST_P(Faults, HttpRefusalsAreRetriedUntilTheServerAccepts) {
  for (int status : {500, 429, 408}) {
    SCOPED_TRACE(status);
    tools::TestServer refusing;
    std::atomic<int> requests{0};
    refusing.on_request = [&](const std::string&, const std::vector<Header>&) { return ++requests <= 2 ? status : 0; };
    refusing.on_session = [](tools::ServerSession& s) {
      s.send(MessageType::text, "in");
      InboundMessage m;
      s.read(m, 10s);
    };
    refusing.start();
    client = std::make_shared<Recorder>();
    EngineOptions o;
    o.url = refusing.url("/");
    o.backoff.initial_delay = 10ms;
    o.backoff.max_delay = 50ms;
    make(o);
    ASSERT_FALSE(engine->start_background());
    ASSERT_TRUE(client->wait_count(Event::message, 1));
    auto errors = client->events_of(Event::restart_error);
    ASSERT_EQ(errors.size(), 2u);
    EXPECT_EQ(errors[0].error.http_status, status);
    EXPECT_EQ(errors[1].retry, 2u);
    EXPECT_FALSE(engine->stop());
    client->mark_stopped();
    EXPECT_THAT(client->violations(), IsEmpty());
    engine.reset();
    refusing.stop();
  }
}

// ------------------------------------------------------------------ hostile servers

namespace {

/// Accepts connections on a loopback port and plays `behave` on each, on its own
/// thread, until destroyed.
class HostileServer {
 public:
  explicit HostileServer(std::function<void(conformance::Session&, int connection)> behave)
      : behave_(std::move(behave)), thread_([this] { run(); }) {}
  ~HostileServer() {
    stop_ = true;
    thread_.join();
    for (auto& t : sessions_) t.join();
  }
  std::string url() const { return "ws://127.0.0.1:" + std::to_string(listener_.port()) + "/hostile"; }
  int connections() const { return count_; }

 private:
  void run() {
    while (!stop_) {
      int fd = listener_.accept(50ms);
      if (fd < 0) continue;
      int n = ++count_;
      sessions_.emplace_back([this, fd, n] {
        conformance::Session s(fd);
        behave_(s, n);
        ::shutdown(fd, SHUT_RDWR);
        ::close(fd);
      });
    }
  }
  std::function<void(conformance::Session&, int)> behave_;
  conformance::Listener listener_;
  std::atomic<bool> stop_{false};
  std::atomic<int> count_{0};
  std::vector<std::thread> sessions_;
  std::thread thread_;  // last: starts when everything else exists
};

/// A correct server after the first `bad` connections: 101, then one text message,
/// then it answers the client's close.
void serve_properly(conformance::Session& s) {
  if (!s.read_request(5s)) return;
  s.send_raw(s.accept_response());
  s.send_raw(conformance::text("proper"));
  while (auto f = s.read_frame(10s)) {
    if (f->opcode == 8) {
      s.send_raw(conformance::close_frame(1000));
      return;
    }
  }
}

}  // namespace

TEST_P(Faults, AWrongAcceptKeyOrAMissingUpgradeHeaderFailsTheAttemptWithAClearError) {
  for (bool missing_upgrade : {false, true}) {
    SCOPED_TRACE(missing_upgrade ? "no Upgrade header" : "wrong Sec-WebSocket-Accept");
    HostileServer hostile([&](conformance::Session& s, int n) {
      if (n > 2) return serve_properly(s);
      if (!s.read_request(5s)) return;
      if (missing_upgrade) {
        auto r = s.accept_response();
        r.erase(r.find("Upgrade: websocket\r\n"), 20);
        s.send_raw(r);
      } else {
        s.send_raw(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Accept: AAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n\r\n");
      }
      s.read_frame(2s);  // until the client gives up on it
    });
    client = std::make_shared<Recorder>();
    EngineOptions o;
    o.url = hostile.url();
    o.backoff.initial_delay = 10ms;
    o.backoff.max_delay = 50ms;
    make(o);
    ASSERT_FALSE(engine->start_background());
    ASSERT_TRUE(client->wait_count(Event::message, 1));
    auto errors = client->events_of(Event::restart_error);
    ASSERT_EQ(errors.size(), 2u);
    for (const auto& e : errors) EXPECT_TRUE(e.error.is(errc::handshake_failed)) << e.error.message();
    EXPECT_FALSE(engine->stop());
    client->mark_stopped();
    EXPECT_THAT(client->violations(), IsEmpty());
    engine.reset();
  }
}

TEST_P(Faults, AServerThatNeverAnswersTheUpgradeTimesOut) {
  HostileServer hostile([](conformance::Session& s, int) {
    s.read_request(5s);
    s.read_frame(3s);  // say nothing
  });
  EngineOptions o;
  o.url = hostile.url();
  o.open_timeout = 300ms;
  expect_start_times_out(o, 3s);
}

TEST_P(Faults, ATlsHandshakeThatNeverCompletesTimesOut) {
  // Accepts TCP and never speaks TLS (nor reads: the ClientHello stays unanswered).
  HostileServer hostile([](conformance::Session&, int) { std::this_thread::sleep_for(2s); });
  EngineOptions o;
  o.url = "wss://127.0.0.1:" + hostile.url().substr(hostile.url().rfind(':') + 1);
  o.open_timeout = 300ms;
  expect_start_times_out(o, 3s);
}

TEST_P(Faults, ATcpConnectThatIsNeverAcceptedTimesOut) {
  // A listener whose accept queue is full and never drained: further SYNs go unanswered.
  std::uint16_t port = 0;
  int listener = listen_loopback(port, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  std::vector<int> fillers;
  for (int i = 0; i < 4; ++i) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
    fillers.push_back(fd);
  }
  EngineOptions o;
  o.url = "ws://127.0.0.1:" + std::to_string(port) + "/";
  o.open_timeout = 500ms;
  expect_start_times_out(o, 5s);
  for (int fd : fillers) ::close(fd);
  ::close(listener);
}

TEST_P(Faults, GarbageAfterTheHandshakeIsAProtocolErrorThenAReconnect) {
  HostileServer hostile([](conformance::Session& s, int n) {
    if (n > 1) return serve_properly(s);
    if (!s.read_request(5s)) return;
    s.send_raw(s.accept_response());
    s.send_raw(conformance::text("fine") + std::string("\xf3\x05garbage and more garbage", 24));
    s.read_frame(3s);
  });
  EngineOptions o;
  o.url = hostile.url();
  o.backoff.initial_delay = 10ms;
  make(o);
  ASSERT_FALSE(engine->start());
  ASSERT_TRUE(client->wait_count(Event::message, 2));
  auto messages = client->events_of(Event::message);
  EXPECT_EQ(messages[0].payload, "fine");
  EXPECT_EQ(messages[1].payload, "proper");
  auto errors = client->events_of(Event::read_error);
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_TRUE(errors[0].error.is(errc::protocol_error)) << errors[0].error.message();
  EXPECT_EQ(client->count(Event::close), 1u);
  EXPECT_FALSE(engine->stop());  // before the server goes
  client->mark_stopped();
}

TEST_P(Faults, AnEndlessHandshakeResponseIsRefusedWithoutEndlessMemory) {
  HostileServer hostile([](conformance::Session& s, int) {
    if (!s.read_request(5s)) return;
    s.send_raw("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n");
    std::string junk;
    for (int i = 0; i < 1000; ++i) junk += "X-Junk-" + std::to_string(i) + ": " + std::string(1000, 'j') + "\r\n";
    for (int round = 0; round < 64; ++round) s.send_raw(junk);  // 64 MB of headers, never ending them
  });
  EngineOptions o;
  o.url = hostile.url();
  o.open_timeout = 10s;
  make(o);
  auto t0 = std::chrono::steady_clock::now();
  Error e = engine->start();
  ASSERT_TRUE(e) << "a response with endless headers was accepted";
  EXPECT_FALSE(e.is(errc::timeout)) << "refused by a size limit, not by waiting: " << e.message();
  RecordProperty("error", e.message());
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 5s);
  engine.reset();
  client->mark_stopped();
}

TEST_P(Faults, APeerThatStopsReadingCannotHangAWriter) {
  std::atomic<bool> release{false};
  HostileServer hostile([&](conformance::Session& s, int) {
    if (!s.read_request(5s)) return;
    s.send_raw(s.accept_response());
    for (int i = 0; i < 300 && !release; ++i) std::this_thread::sleep_for(100ms);  // reads nothing
  });
  EngineOptions o;
  o.url = hostile.url();
  o.write_timeout = 2s;
  o.close_timeout = 300ms;
  o.send_queue_bytes = 4u << 20;
  make(o);
  ASSERT_FALSE(engine->start());
  std::string chunk(64 * 1024, 'w');
  // Sends fill the session's send queue, then fail at once; nothing blocks the sender.
  Error e;
  auto slowest = std::chrono::steady_clock::duration::zero();
  for (int i = 0; i < 4096 && !e; ++i) {  // up to 256 MiB
    auto t0 = std::chrono::steady_clock::now();
    e = engine->send_binary(chunk);
    slowest = std::max(slowest, std::chrono::steady_clock::now() - t0);
  }
  ASSERT_TRUE(e) << "every send was taken with nobody reading";
  EXPECT_TRUE(e.is(errc::send_queue_full)) << e.message();
  EXPECT_LT(slowest, 500ms) << "a send waited (write_timeout is 2 s)";
  // Then the write that makes no progress fails the connection: OnReadError says why.
  ASSERT_TRUE(client->wait_count(Event::read_error, 1, 10s));
  auto failure = client->events_of(Event::read_error)[0].error;
  EXPECT_TRUE(failure.is(errc::timeout)) << failure.message();
  EXPECT_THAT(failure.message(), HasSubstr("peer not reading"));
  release = true;
  EXPECT_FALSE(engine->stop());
  client->mark_stopped();
}

TEST_P(Faults, AServerThatNeverAnswersTheCloseDoesNotHangStop) {
  HostileServer hostile([](conformance::Session& s, int) {
    if (!s.read_request(5s)) return;
    s.send_raw(s.accept_response());
    while (auto f = s.read_frame(10s)) {  // reads the close frame, answers nothing
    }
  });
  EngineOptions o;
  o.url = hostile.url();
  o.close_timeout = 300ms;
  make(o);
  ASSERT_FALSE(engine->start());
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_FALSE(engine->stop());
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 3s);
  client->mark_stopped();
  auto close_errors = client->events_of(Event::close_error);
  ASSERT_EQ(close_errors.size(), 1u);
  EXPECT_TRUE(close_errors[0].error.is(errc::timeout)) << close_errors[0].error.message();
  EXPECT_EQ(client->count(Event::close), 1u);
}

// The Beast adapter's low-water mark under TLS (docs/engine-operations.md, "Waking up
// for large frames"). While the client waits with part of a TLS record in OpenSSL,
// the rest of that record is fewer bytes on the socket than the frame's plaintext
// still to come: a mark that did not allow for what OpenSSL holds would sleep through
// the frame's end. The proxy holds the server's bytes, hands on a frame up to the
// middle of its last record, waits until the client has read all of that, then hands
// on the record's second half with nothing behind it: the message must arrive. Sizes
// whose last record is large (more than the mark's 8 KiB threshold): a 16-bit length
// (60,000) and a 64-bit one (110,000).
TEST(LowWaterOverTls, AFrameWhoseLastRecordArrivesInHalvesEndsWithItsLastByte) {
  const std::vector<std::size_t> sizes = {60000, 110000};
  TestPki pki = make_test_pki();
  tools::ServerOptions tls;
  tls.cert_file = pki.server_chain;
  tls.key_file = pki.server_key;
  tools::TestServer server(tls);
  std::vector<std::shared_ptr<std::promise<void>>> gates;
  for (std::size_t i = 0; i < sizes.size(); ++i) gates.push_back(std::make_shared<std::promise<void>>());
  std::vector<std::shared_future<void>> opened;
  for (auto& g : gates) opened.push_back(g->get_future().share());
  auto payload_of = [](std::size_t size) {
    std::string s(size, '\0');
    for (std::size_t i = 0; i < size; ++i) s[i] = static_cast<char>((i * 13 + i / 509) & 0xff);
    return s;
  };
  server.on_session = [&](tools::ServerSession& s) {
    for (std::size_t i = 0; i < sizes.size(); ++i) {
      if (opened[i].wait_for(20s) != std::future_status::ready) return;
      // Two writes: the frame's records, then the next frame's record.
      if (s.send_raw(tools::server_frame(0x82, payload_of(sizes[i])))) return;
      if (s.send_raw(tools::server_frame(0x81, cat("after ", i)))) return;
    }
    InboundMessage ignored;
    (void)s.read(ignored, 20s);  // the client's close
  };
  server.start();
  FaultProxy relay(server.port());
  EngineOptions o;
  o.url = cat("wss://127.0.0.1:", relay.port(), "/");
  o.tls.ca_file = pki.ca_file;
  o.auto_reconnect = false;
  o.max_message_size = 1u << 20;
  auto recorder = std::make_shared<Recorder>();
  Engine engine(o, recorder, beast::make_connector());
  ASSERT_FALSE(engine.start());
  auto* ws = engine.connection().underlying().as<beast::TlsStream>();
  ASSERT_NE(ws, nullptr);
  const int fd = ws->next_layer().lowest().socket().native_handle();
  relay.hold_to_clients();

  // TLS 1.3 records: a 5-byte header, then the plaintext, its content type byte and a
  // 16-byte tag. Returns where each complete record from `from` on ends, and the
  // plaintext bytes before each end.
  struct Record {
    std::size_t end = 0, plaintext = 0;
  };
  auto records_from = [](const std::string& bytes, std::size_t from) {
    std::vector<Record> out;
    std::size_t at = from, plaintext = 0;
    while (at + 5 <= bytes.size()) {
      const std::size_t length = (static_cast<std::size_t>(static_cast<unsigned char>(bytes[at + 3])) << 8) |
                                 static_cast<unsigned char>(bytes[at + 4]);
      if (at + 5 + length > bytes.size()) break;
      plaintext += length - 17;
      at += 5 + length;
      out.push_back({at, plaintext});
    }
    return out;
  };
  auto inbound_bytes = [fd] {
    int n = -1;
    return ::ioctl(fd, SIOCINQ, &n) == 0 ? n : -1;
  };
  auto until = [](auto condition) {
    for (int i = 0; i < 10000; ++i) {
      if (condition()) return true;
      std::this_thread::sleep_for(1ms);
    }
    return false;
  };

  std::size_t released = 0, messages = 0;
  for (std::size_t i = 0; i < sizes.size(); ++i) {
    SCOPED_TRACE(cat("size ", sizes[i]));
    const std::size_t frame_bytes = tools::server_frame(0x82, payload_of(sizes[i])).size();
    gates[i]->set_value();
    std::vector<Record> records;
    ASSERT_TRUE(until([&] {
      records = records_from(relay.held_to_client(), released);
      return !records.empty() && records.back().plaintext > frame_bytes;  // the next frame's record too
    })) << "the proxy did not get the frame's records";
    std::size_t last = 0;
    while (records[last].plaintext < frame_bytes) ++last;
    ASSERT_EQ(records[last].plaintext, frame_bytes)
        << "the frame does not end a record (not TLS 1.3 with a 16-byte tag?)";
    ASSERT_GT(last, 0u);
    const std::size_t last_start = records[last - 1].end;
    const std::size_t last_length = records[last].end - last_start;
    ASSERT_GT(last_length - 5 - 17, 8u * 1024) << "the frame's last record is below the mark's threshold";
    const std::size_t cut = last_start + 5 + (last_length - 5) / 2;
    relay.release_to_client(cut - released);
    released = cut;
    // The client has read everything it got, half a record included (OpenSSL holds
    // it), and waits for the rest.
    ASSERT_TRUE(until([&] { return inbound_bytes() == 0; }));
    relay.release_to_client(records[last].end - released);
    released = records[last].end;
    ASSERT_TRUE(recorder->wait_count(Event::message, ++messages, 10s))
        << "the frame's last bytes did not wake the client (its low-water mark was above them)";
    EXPECT_TRUE(recorder->events_of(Event::message)[messages - 1].payload == payload_of(sizes[i]));
    relay.release_to_client(records.back().end - released);
    released = records.back().end;
    ASSERT_TRUE(recorder->wait_count(Event::message, ++messages, 10s));
    EXPECT_EQ(recorder->events_of(Event::message)[messages - 1].payload, cat("after ", i));
  }
  relay.pass_to_clients();  // for the close handshake
  EXPECT_FALSE(engine.stop());
  recorder->mark_stopped();
  EXPECT_THAT(recorder->violations(), IsEmpty());
}

INSTANTIATE_TEST_SUITE_P(Adapters, Faults, ::testing::ValuesIn(real_adapters()), AdapterName());
