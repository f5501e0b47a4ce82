// The adapter contract (ENGINE-CONTRACT.md, "Adapter contract", and the comments of
// wscengine/connection.hpp), one suite for every adapter. The real adapters run
// against the project's Beast server over loopback; the in-memory adapter against
// its in-memory server. Adding an adapter means adding one line to
// tests/support/real_adapters.hpp (or to kAdapters below for one without sockets).
#include <gtest/gtest.h>

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/post.hpp>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <future>
#include <map>
#include <thread>

#include <wscengine/asio.hpp>
#include <wscengine/memory.hpp>
#include <wscengine/wscengine.hpp>

#include "frames.hpp"
#include "support/http_proxy.hpp"
#include "support/process.hpp"
#include "support/real_adapters.hpp"
#include "support/test_pki.hpp"
#include "support/text.hpp"
#include "test_server.hpp"

using namespace wscengine;
using namespace std::chrono_literals;

namespace {

// ------------------------------------------------------------------ the peer's side

/// The server's side of one accepted connection, as a test script drives it.
class PeerSide {
 public:
  virtual ~PeerSide() = default;
  virtual void send(MessageType type, std::string payload) = 0;
  /// Sends these messages back to back, as fast as the transport takes them.
  virtual void send_many(MessageType type, const std::vector<std::string>& payloads) = 0;
  /// Sends a close frame (does not wait for the answer).
  virtual void close(CloseFrame frame) = 0;
  /// Drops TCP without a close frame.
  virtual void drop() = 0;
  /// The client's next message.
  virtual std::optional<InboundMessage> receive(std::chrono::milliseconds timeout) = 0;
  /// The close frame the client sent.
  virtual std::optional<CloseFrame> client_close(std::chrono::milliseconds timeout) = 0;
  /// From now on the peer echoes every message and answers pings (until then it
  /// neither reads nor answers pings).
  virtual void start_echo() = 0;
};

/// One adapter with a server to connect to.
class Harness {
 public:
  virtual ~Harness() = default;
  virtual std::shared_ptr<Connector> connector() = 0;
  virtual DialRequest request() = 0;
  virtual std::unique_ptr<PeerSide> accept(std::chrono::milliseconds timeout) = 0;
  /// A header of the last opening handshake the server received.
  virtual std::optional<std::string> request_header(const std::string& name) = 0;
  virtual bool real_network() const = 0;
};

// -------------------------------------------------------------- the project's server

class RealPeer final : public PeerSide {
 public:
  struct Slot {
    std::mutex mutex;
    std::condition_variable cv;
    tools::ServerSession* session = nullptr;
    bool released = false;
    bool echo = false;
  };
  explicit RealPeer(std::shared_ptr<Slot> slot) : slot_(std::move(slot)), s_(*slot_->session) {}
  ~RealPeer() override {
    if (closing_.valid()) closing_.wait();
    std::lock_guard lock(slot_->mutex);
    slot_->released = true;
    slot_->cv.notify_all();
  }
  void send(MessageType type, std::string payload) override { s_.send(type, payload); }
  void send_many(MessageType type, const std::vector<std::string>& payloads) override {
    std::string frames;  // encoded here, written in large writes
    for (const auto& p : payloads) frames += tools::server_frame(type == MessageType::text ? 0x81 : 0x82, p);
    for (std::size_t at = 0; at < frames.size(); at += 256 * 1024)
      s_.send_raw(std::string_view(frames).substr(at, 256 * 1024));
  }
  void close(CloseFrame frame) override {
    closing_ = std::async(std::launch::async, [this, frame] { s_.close(frame); });
  }
  void drop() override { s_.drop(); }
  /// Writes bytes as they are: frames the test encoded, in pieces of its choosing.
  void send_raw(std::string_view bytes) { s_.send_raw(bytes); }
  /// Sends a ping; the client's pongs are seen by the next receive().
  void ping(std::string_view payload) { s_.ping(payload); }
  std::vector<std::string> pongs() const { return s_.pongs(); }
  std::optional<InboundMessage> receive(std::chrono::milliseconds timeout) override {
    InboundMessage m;
    if (s_.read(m, timeout)) return std::nullopt;
    return m;
  }
  std::optional<CloseFrame> client_close(std::chrono::milliseconds timeout) override {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      InboundMessage m;
      Error e = s_.read(
          m, std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()));
      if (e.is(errc::closed) && e.close) return e.close;
      if (e) return std::nullopt;
    }
  }
  void start_echo() override {
    std::lock_guard lock(slot_->mutex);
    slot_->echo = true;  // the session thread echoes from now on; s_ is its alone
    slot_->cv.notify_all();
  }

 private:
  std::shared_ptr<Slot> slot_;
  tools::ServerSession& s_;
  std::future<void> closing_;
};

/// How the project's server behaves for one harness (fixed before it starts).
struct ServerSetup {
  tools::ServerOptions options;
  std::string choose_subprotocol;  ///< sent whatever the client offered
  int refuse_with = 0;             ///< an HTTP status instead of the upgrade
};

/// A TLS server's setup with a fresh self-signed certificate (cert.pem and key.pem in
/// `dir`, a new temporary directory; the certificate is its own CA). `ok` is false
/// when openssl could not make one.
struct TlsSetup {
  std::string dir = test::temp_dir();
  bool ok = test::make_test_certificate(dir);
  ServerSetup server = [this] {
    ServerSetup setup;
    setup.options.cert_file = dir + "/cert.pem";
    setup.options.key_file = dir + "/key.pem";
    return setup;
  }();
};

class RealHarness final : public Harness {
 public:
  explicit RealHarness(std::shared_ptr<Connector> connector, ServerSetup setup = {})
      : connector_(std::move(connector)), server_(setup.options) {
    server_.choose_subprotocol = setup.choose_subprotocol;
    server_.on_request = [this, refuse = setup.refuse_with](const std::string&, const std::vector<Header>& headers) {
      std::lock_guard lock(mutex_);
      last_headers_ = headers;
      return refuse;
    };
    server_.on_session = [this](tools::ServerSession& s) {
      auto slot = std::make_shared<RealPeer::Slot>();
      slot->session = &s;
      {
        std::lock_guard lock(mutex_);
        if (closing_) return;
        pending_.push_back(slot);
        cv_.notify_all();
      }
      std::unique_lock lock(slot->mutex);
      slot->cv.wait_for(lock, 120s, [&] { return slot->released || slot->echo; });
      bool echo = slot->echo;
      lock.unlock();
      if (echo) tools::echo_session(s);
    };
    server_.start();
  }
  ~RealHarness() override {
    {
      std::lock_guard lock(mutex_);
      closing_ = true;
      for (auto& slot : pending_) {  // connections no test took
        std::lock_guard slot_lock(slot->mutex);
        slot->released = true;
        slot->cv.notify_all();
      }
    }
    server_.stop();
  }

  std::shared_ptr<Connector> connector() override { return connector_; }
  DialRequest request() override {
    DialRequest r;
    r.url = parse_url(server_.url("/contract")).value();
    if (r.url.secure) r.url.host = "localhost";  // the name in the test certificate
    r.timeout = 5s;
    return r;
  }
  std::unique_ptr<PeerSide> accept(std::chrono::milliseconds timeout) override {
    std::unique_lock lock(mutex_);
    if (!cv_.wait_for(lock, timeout, [&] { return !pending_.empty(); })) return nullptr;
    auto slot = pending_.front();
    pending_.pop_front();
    return std::make_unique<RealPeer>(slot);
  }
  std::optional<std::string> request_header(const std::string& name) override {
    std::lock_guard lock(mutex_);
    for (const auto& h : last_headers_)
      if (h.name == name) return h.value;
    return std::nullopt;
  }
  bool real_network() const override { return true; }
  tools::TestServer& server() { return server_; }

 private:
  std::shared_ptr<Connector> connector_;
  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<RealPeer::Slot>> pending_;
  std::vector<Header> last_headers_;
  bool closing_ = false;
  tools::TestServer server_;  // last: stops (joining its sessions) before the rest goes
};

// ------------------------------------------------------------------ in memory

class MemoryPeer final : public PeerSide {
 public:
  explicit MemoryPeer(std::shared_ptr<memory::Peer> peer) : peer_(std::move(peer)) { peer_->answer_pings(false); }
  ~MemoryPeer() override {
    stop_ = true;
    if (echo_.joinable()) echo_.join();
  }
  void send(MessageType type, std::string payload) override { peer_->send(type, std::move(payload)); }
  void send_many(MessageType type, const std::vector<std::string>& payloads) override {
    for (const auto& p : payloads) peer_->send(type, p);
  }
  void close(CloseFrame frame) override { peer_->send_close(std::move(frame)); }
  void drop() override { peer_->drop(); }
  std::optional<InboundMessage> receive(std::chrono::milliseconds timeout) override {
    if (!peer_->wait_received(taken_ + 1, timeout)) return std::nullopt;
    return peer_->received()[taken_++];
  }
  std::optional<CloseFrame> client_close(std::chrono::milliseconds timeout) override {
    if (!peer_->wait_closed(timeout)) return std::nullopt;
    return peer_->client_close();
  }
  void start_echo() override {
    peer_->answer_pings(true);
    echo_ = std::thread([this] {
      std::size_t next = taken_;
      while (!stop_ && peer_->is_open()) {
        if (!peer_->wait_received(next + 1, 10ms)) continue;
        auto m = peer_->received()[next++];
        peer_->send(m.type, std::move(m.payload));
      }
    });
  }

 private:
  std::shared_ptr<memory::Peer> peer_;
  std::size_t taken_ = 0;
  std::atomic<bool> stop_{false};
  std::thread echo_;
};

class MemoryHarness final : public Harness {
 public:
  std::shared_ptr<Connector> connector() override { return server_->connector(); }
  DialRequest request() override {
    DialRequest r;
    r.url = parse_url("ws://in-memory.test/contract").value();
    r.timeout = 5s;
    return r;
  }
  std::unique_ptr<PeerSide> accept(std::chrono::milliseconds timeout) override {
    auto peer = server_->accept(timeout);
    return peer ? std::make_unique<MemoryPeer>(peer) : nullptr;
  }
  std::optional<std::string> request_header(const std::string& name) override {
    auto requests = server_->dial_requests();
    if (requests.empty()) return std::nullopt;
    for (const auto& h : requests.back().headers)
      if (h.name == name) return h.value;
    return std::nullopt;
  }
  bool real_network() const override { return false; }

 private:
  std::shared_ptr<memory::Server> server_ = memory::Server::create();
};

// ------------------------------------------------------------------ the adapters

struct AdapterUnderTest {
  std::string name;
  /// Makes the adapter's connector; null for the in-memory adapter, which brings
  /// its own server.
  std::function<std::shared_ptr<Connector>()> connector;
};

void PrintTo(const AdapterUnderTest& adapter, std::ostream* os) { *os << adapter.name; }

std::vector<AdapterUnderTest> all_adapters() {
  std::vector<AdapterUnderTest> out;
  for (const auto& real : test::real_adapters()) out.push_back({real.name, real.make});
  out.push_back({"memory", nullptr});
  return out;
}
const std::vector<AdapterUnderTest> kAdapters = all_adapters();

std::vector<AdapterUnderTest> network_adapters() {
  std::vector<AdapterUnderTest> out;
  for (const auto& a : kAdapters)
    if (a.connector) out.push_back(a);
  return out;
}

std::unique_ptr<Harness> make_harness(const AdapterUnderTest& adapter) {
  if (!adapter.connector) return std::make_unique<MemoryHarness>();
  return std::make_unique<RealHarness>(adapter.connector());
}

std::string adapter_name(const ::testing::TestParamInfo<AdapterUnderTest>& info) { return info.param.name; }

class AdapterContract : public ::testing::TestWithParam<AdapterUnderTest> {
 protected:
  void SetUp() override { harness = make_harness(GetParam()); }
  void TearDown() override {
    peer.reset();
    connection.reset();
    harness.reset();
  }
  /// Dials and accepts; fails the test if either does not happen.
  void open(DialRequest r) {
    connection = harness->connector()->make_connection(*runtime);
    auto result = connection->dial(std::move(r));
    ASSERT_TRUE(result) << result.error().message();
    response = result.value();
    peer = harness->accept(5s);
    ASSERT_TRUE(peer) << "the server never saw the connection";
  }
  void open() { open(harness->request()); }
  /// Reads the next messages and checks each is the expected one, whole and in order.
  void expect_messages(const std::vector<std::pair<MessageType, std::string>>& expected) {
    for (const auto& [type, payload] : expected) {
      InboundMessage m;
      Error e = read_next(m);
      ASSERT_FALSE(e) << e.message();
      EXPECT_EQ(m.type, type);
      EXPECT_EQ(m.payload.size(), payload.size());
      EXPECT_TRUE(m.payload == payload) << "a message came out changed or out of order";
    }
  }
  /// Writes one message and expects it back (the peer echoes): the connection works
  /// end to end.
  void expect_echo(const std::string& payload, MessageType type = MessageType::text) {
    ASSERT_FALSE(connection->write(type, payload));
    expect_messages({{type, payload}});
  }
  /// Reads with the engine's pattern: try_read, else wait for readability.
  Error read_next(InboundMessage& m, std::chrono::milliseconds timeout = 5s) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      Error e = connection->try_read(m);
      if (!e.is(errc::would_block)) return e;
      if (std::chrono::steady_clock::now() > deadline) return Error(errc::timeout, "test read");
      std::promise<Error> woke;
      connection->async_wait_readable([&](Error w) { woke.set_value(w); });
      auto f = woke.get_future();
      if (f.wait_for(deadline - std::chrono::steady_clock::now()) != std::future_status::ready) {
        connection->cancel_wait();
        f.wait();
        return Error(errc::timeout, "test read");
      }
      if (Error w = f.get()) return w;
    }
  }

  std::shared_ptr<Runtime> runtime = Runtime::create({1, 1});
  std::unique_ptr<Harness> harness;
  std::unique_ptr<Connection> connection;
  std::unique_ptr<PeerSide> peer;
  HandshakeResponse response;
};

}  // namespace

// ------------------------------------------------------------------ dial

TEST_P(AdapterContract, DialReturnsTheResponseSendsTheHeadersAndTwiceIsAnError) {
  auto r = harness->request();
  r.headers.push_back({"X-Contract", "yes"});
  open(r);
  EXPECT_EQ(response.status, 101);
  EXPECT_TRUE(connection->is_open());
  EXPECT_EQ(harness->request_header("X-Contract"), "yes");
  if (harness->real_network()) {  // "wscengine/0.1.0 (Boost.Beast)": the version from the one place it is set
    auto agent = harness->request_header("User-Agent");
    ASSERT_TRUE(agent.has_value());
    EXPECT_EQ(agent->rfind(std::string("wscengine/") + version_string + " (", 0), 0u) << *agent;
  }
  auto underlying = connection->underlying();
  EXPECT_NE(underlying.type, nullptr);
  EXPECT_NE(underlying.object, nullptr);
  auto again = connection->dial(harness->request());
  ASSERT_FALSE(again);
  EXPECT_TRUE(again.error().is(errc::already_connected)) << again.error().message();
}

TEST_P(AdapterContract, ACompressionOfferIsNegotiatedOrRefusedAsTheCapabilitiesSay) {
  auto r = harness->request();
  r.offer_compression = true;
  auto c = harness->connector()->make_connection(*runtime);
  auto result = c->dial(r);
  if (harness->connector()->capabilities().compression) {
    ASSERT_TRUE(result) << result.error().message();
    if (harness->real_network()) {
      EXPECT_TRUE(result->compression);  // the project's server enables it
    }
    auto p = harness->accept(5s);
    ASSERT_TRUE(p);
  } else {
    ASSERT_FALSE(result);
    EXPECT_TRUE(result.error().is(errc::unsupported)) << result.error().message();
  }
}

// ------------------------------------------------------------------ read

TEST_P(AdapterContract, TryReadDoesNotWaitAndTheWaitCompletesWhenDataArrives) {
  open();
  InboundMessage m;
  EXPECT_TRUE(connection->try_read(m).is(errc::would_block));
  std::promise<Error> woke;
  connection->async_wait_readable([&](Error e) { woke.set_value(e); });
  peer->send(MessageType::binary, "abc");
  auto f = woke.get_future();
  ASSERT_EQ(f.wait_for(5s), std::future_status::ready);
  EXPECT_FALSE(f.get());
  ASSERT_FALSE(read_next(m));
  EXPECT_EQ(m.type, MessageType::binary);
  EXPECT_EQ(m.payload, "abc");
}

// AdapterCapabilities::polled_reads (what busy_poll relies on): try_read, called again
// and again on the runtime's only I/O thread, which therefore runs nothing else, finds
// a message the peer sent. An adapter that does not claim it reads the socket in its
// own handlers on that thread, and is not polled.
TEST_P(AdapterContract, PolledReadsFindAMessageWhileTheOnlyIoThreadPolls) {
  if (!harness->connector()->capabilities().polled_reads) GTEST_SKIP() << "the adapter does not claim polled_reads";
  open();
  std::promise<std::pair<Error, std::string>> polled;
  boost::asio::post(io_context(*runtime), [&] {
    InboundMessage m;
    Error e;
    auto deadline = std::chrono::steady_clock::now() + 5s;
    do {
      e = connection->try_read(m);
    } while (e.is(errc::would_block) && std::chrono::steady_clock::now() < deadline);
    polled.set_value({e, m.payload});
  });
  peer->send(MessageType::text, "polled");
  auto f = polled.get_future();
  ASSERT_EQ(f.wait_for(10s), std::future_status::ready);
  auto [e, payload] = f.get();
  ASSERT_FALSE(e) << e.message();
  EXPECT_EQ(payload, "polled");
}

TEST_P(AdapterContract, CancelWaitCompletesThePendingWait) {
  open();
  std::promise<Error> woke;
  connection->async_wait_readable([&](Error e) { woke.set_value(e); });
  connection->cancel_wait();
  auto f = woke.get_future();
  ASSERT_EQ(f.wait_for(5s), std::future_status::ready);
  EXPECT_TRUE(f.get().is(errc::cancelled));
}

TEST_P(AdapterContract, BlockingReadTimesOutThenReads) {
  open();
  InboundMessage m;
  EXPECT_TRUE(connection->read(m, 50ms).is(errc::timeout));
  peer->send(MessageType::text, "hello");
  Error e = connection->read(m, 5s);
  ASSERT_FALSE(e) << e.message();
  EXPECT_EQ(m.payload, "hello");
  EXPECT_EQ(m.type, MessageType::text);
}

TEST_P(AdapterContract, WholeMessagesOfEverySizeBothWaysInOrder) {
  open();
  peer->start_echo();
  std::vector<std::pair<MessageType, std::string>> sent = {
      {MessageType::text, ""},
      {MessageType::text, "x"},
      {MessageType::binary, std::string(125, 'a')},
      {MessageType::binary, std::string(126, 'b')},
      {MessageType::text, std::string(65535, 'c')},
      {MessageType::binary, std::string(65536, '\0')},
      {MessageType::text, "h\xc3\xa9llo \xe2\x82\xac"},  // UTF-8
      {MessageType::binary, std::string(1u << 20, '\x7f')},
  };
  for (const auto& [type, payload] : sent) ASSERT_FALSE(connection->write(type, payload));
  for (std::size_t i = 0; i < sent.size(); ++i) {
    InboundMessage m;
    Error e = read_next(m);
    ASSERT_FALSE(e) << "message " << i << ": " << e.message();
    EXPECT_EQ(m.type, sent[i].first) << i;
    EXPECT_EQ(m.payload.size(), sent[i].second.size()) << i;
    EXPECT_TRUE(m.payload == sent[i].second) << i;
  }
}

TEST_P(AdapterContract, AReaderThatFallsBehindLosesNothing) {
  // 8 MiB in 1 KiB messages, sent while nobody reads: an adapter that reads ahead
  // must stop and start again (websocketpp's pauses at 1 MiB) without losing any.
  open();
  constexpr int kCount = 8192;
  std::vector<std::string> payloads;
  for (int i = 0; i < kCount; ++i) {
    payloads.push_back(std::to_string(i));
    payloads.back().resize(1024, '.');
  }
  auto sender = std::async(std::launch::async, [&] { peer->send_many(MessageType::text, payloads); });
  std::this_thread::sleep_for(100ms);  // fall behind on purpose
  InboundMessage m;
  for (int i = 0; i < kCount; ++i) {
    Error e = read_next(m, 10s);
    ASSERT_FALSE(e) << "message " << i << ": " << e.message();
    ASSERT_EQ(std::stoi(m.payload), i);
    ASSERT_EQ(m.payload.size(), 1024u);
  }
  sender.get();
}

TEST_P(AdapterContract, ConcurrentWritesArriveWholeAndInOrderPerThread) {
  open();
  constexpr int kThreads = 8, kEach = 50;
  std::vector<std::thread> writers;
  std::atomic<int> failures{0};
  for (int t = 0; t < kThreads; ++t) {
    writers.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i) {
        std::string payload = std::to_string(t) + ":" + std::to_string(i) + ":" + std::string(100 + 37 * t, 'p');
        if (connection->write(MessageType::text, payload)) ++failures;
      }
    });
  }
  for (auto& w : writers) w.join();
  EXPECT_EQ(failures, 0);
  std::map<int, int> next;
  for (int n = 0; n < kThreads * kEach; ++n) {
    auto m = peer->receive(5s);
    ASSERT_TRUE(m) << "message " << n << " missing";
    int t = std::stoi(m->payload);
    auto rest = m->payload.substr(m->payload.find(':') + 1);
    int i = std::stoi(rest);
    EXPECT_EQ(i, next[t]++) << "thread " << t << " out of order";
    EXPECT_EQ(m->payload.size(), std::to_string(t).size() + std::to_string(i).size() + 2 + 100 + 37 * t);
  }
}

// A message written in parts (async_write_part) reaches the peer whole: text cut inside
// a code point, an empty part, a 70,000-byte part, a ping between parts (control frames
// may come between a message's frames), then a whole message after it.
TEST_P(AdapterContract, AMessageWrittenInPartsArrivesWholeWithAPingBetween) {
  open();
  // Queued without waiting: an adapter may complete a write only once the peer has it.
  std::vector<std::future<Error>> outcomes;
  auto write_part = [&](MessageType type, std::string_view payload, MessagePart part) {
    auto done = std::make_shared<std::promise<Error>>();
    outcomes.push_back(done->get_future());
    connection->async_write_part(type, payload, part, [done](Error e) { done->set_value(std::move(e)); });
  };
  if (!harness->connector()->capabilities().streamed_writes) {
    write_part(MessageType::text, "x", MessagePart::first);
    Error refused = outcomes.back().get();
    EXPECT_TRUE(refused.is(errc::unsupported)) << refused.message();
    return;
  }
  const std::string big(70000, 'x');
  write_part(MessageType::text, "h\xc3", MessagePart::first);
  write_part(MessageType::text, "\xa9llo ", MessagePart::middle);
  write_part(MessageType::text, "", MessagePart::middle);
  std::promise<Error> pong;
  const bool pings = harness->real_network();  // the in-memory peer answers pings only when echoing
  if (pings) connection->async_ping("between", 5s, [&](Error e) { pong.set_value(std::move(e)); });
  write_part(MessageType::text, big, MessagePart::middle);
  write_part(MessageType::text, " end", MessagePart::last);
  auto m = peer->receive(5s);
  ASSERT_TRUE(m) << "the peer did not get the message";
  EXPECT_EQ(m->type, MessageType::text);
  EXPECT_TRUE(m->payload == "h\xc3\xa9llo " + big + " end") << m->payload.size() << " bytes";
  ASSERT_FALSE(connection->write(MessageType::binary, "after"));  // (websocketpp: acknowledged by a pong)
  m = peer->receive(5s);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->payload, "after");
  // Binary, and an empty last part.
  write_part(MessageType::binary, std::string("\0\1", 2), MessagePart::first);
  write_part(MessageType::binary, "", MessagePart::last);
  m = peer->receive(5s);
  ASSERT_TRUE(m);
  EXPECT_EQ(m->type, MessageType::binary);
  EXPECT_EQ(m->payload, std::string("\0\1", 2));
  peer->start_echo();  // the peer reads on (websocketpp's writes complete with a pong)
  for (auto& outcome : outcomes) {
    Error e = outcome.get();
    EXPECT_FALSE(e) << e.message();
  }
  if (pings) {
    Error e = pong.get_future().get();
    EXPECT_FALSE(e) << "the ping between the parts: " << e.message();
  }
}

TEST_P(AdapterContract, MegabytesOfWritesToAReadingPeerNeverStall) {
  open();
  constexpr int kCount = 32;
  std::string chunk(512 * 1024, 'z');  // 16 MiB in all: four times websocketpp's write limit
  auto reader = std::async(std::launch::async, [&] {
    int got = 0;
    while (got < kCount) {
      auto m = peer->receive(10s);
      if (!m || m->payload.size() != chunk.size()) break;
      ++got;
    }
    return got;
  });
  for (int i = 0; i < kCount; ++i) {
    Error e = connection->write(MessageType::binary, chunk);
    ASSERT_FALSE(e) << "write " << i << ": " << e.message();
  }
  EXPECT_EQ(reader.get(), kCount);
}

// ------------------------------------------------------------------ ping

TEST_P(AdapterContract, PingWaitsForThePongEvenWithNobodyReading) {
  open();
  peer->start_echo();
  Error e = connection->ping("are you there", 5s);
  EXPECT_FALSE(e) << e.message();
  EXPECT_TRUE(connection->is_open());
}

TEST_P(AdapterContract, PingTimesOutWhenThePeerDoesNotAnswer) {
  open();  // the peer neither reads nor answers until start_echo
  auto t0 = std::chrono::steady_clock::now();
  Error e = connection->ping("", 200ms);
  EXPECT_TRUE(e.is(errc::timeout)) << e.message();
  EXPECT_GE(std::chrono::steady_clock::now() - t0, 190ms);
  EXPECT_TRUE(connection->ping(std::string(126, 'p'), 1s).is(errc::invalid_option));
}

// ------------------------------------------------------------------ close and drop

TEST_P(AdapterContract, APeerCloseIsReadAfterEarlierMessagesWithItsCodeAndReason) {
  open();
  for (int i = 0; i < 3; ++i) peer->send(MessageType::text, test::cat("m", i));
  peer->close({4001, "bye"});
  InboundMessage m;
  for (int i = 0; i < 3; ++i) {
    Error e = read_next(m);
    ASSERT_FALSE(e) << e.message();
    EXPECT_EQ(m.payload, test::cat("m", i));
  }
  Error e = read_next(m);
  ASSERT_TRUE(e.is(errc::closed)) << e.message();
  ASSERT_TRUE(e.close);
  EXPECT_EQ(e.close->code, 4001);
  EXPECT_EQ(e.close->reason, "bye");
  EXPECT_FALSE(connection->is_open());
  EXPECT_TRUE(connection->write(MessageType::text, "late").is(errc::closed));
  EXPECT_TRUE(read_next(m).is(errc::closed));
}

TEST_P(AdapterContract, ADropIsClosedWith1006) {
  open();
  peer->send(MessageType::text, "before");
  InboundMessage m;
  ASSERT_FALSE(read_next(m));
  peer->drop();
  Error e = read_next(m);
  ASSERT_TRUE(e.is(errc::closed)) << e.message();
  ASSERT_TRUE(e.close);
  EXPECT_EQ(e.close->code, close_code::abnormal);
  EXPECT_FALSE(connection->is_open());
}

TEST_P(AdapterContract, CloseSendsTheFrameAndTwiceIsAnError) {
  open();
  // The peer reads meanwhile: close() waits for its answer.
  auto answer = std::async(std::launch::async, [&] { return peer->client_close(5s); });
  Error e = connection->close({4002, "done"}, 5s);
  EXPECT_FALSE(e) << e.message();
  EXPECT_FALSE(connection->is_open());
  auto seen = answer.get();
  ASSERT_TRUE(seen);
  EXPECT_EQ(seen->code, 4002);
  EXPECT_EQ(seen->reason, "done");
  EXPECT_TRUE(connection->close({close_code::normal, "again"}, 1s).is(errc::closed));
  EXPECT_TRUE(connection->write(MessageType::text, "late").is(errc::closed));
}

TEST_P(AdapterContract, AbortWakesABlockedRead) {
  open();
  auto reader = std::async(std::launch::async, [&] {
    InboundMessage m;
    return connection->read(m, 30s);
  });
  ASSERT_EQ(reader.wait_for(50ms), std::future_status::timeout);
  connection->abort();
  ASSERT_EQ(reader.wait_for(5s), std::future_status::ready);
  EXPECT_TRUE(reader.get().is(errc::closed));
  EXPECT_FALSE(connection->is_open());
}

// ------------------------------------------------------------------ limits

TEST_P(AdapterContract, AMessageOverTheMaximumIs1009AndFailsTheConnection) {
  auto r = harness->request();
  r.max_message_size = 1024;
  open(r);
  peer->send(MessageType::binary, std::string(1024, 'k'));  // at the limit: fine
  peer->send(MessageType::binary, std::string(4096, 'x'));
  InboundMessage m;
  ASSERT_FALSE(read_next(m));
  EXPECT_EQ(m.payload.size(), 1024u);
  Error e = read_next(m);
  EXPECT_TRUE(e.is(errc::message_too_big)) << e.message();
  auto seen = peer->client_close(5s);
  ASSERT_TRUE(seen);
  EXPECT_EQ(seen->code, close_code::too_big);
  EXPECT_TRUE(read_next(m).is(errc::closed));
  EXPECT_FALSE(connection->is_open());
}

INSTANTIATE_TEST_SUITE_P(Adapters, AdapterContract, ::testing::ValuesIn(kAdapters), adapter_name);

// ------------------------------------------------------------------ over the network
// Rules about sockets, HTTP and TLS: for the adapters that have them.

class NetworkContract : public AdapterContract {
 public:
 protected:
  std::shared_ptr<Connector> connector() { return GetParam().connector(); }
  Result<HandshakeResponse> dial(DialRequest r) {
    connection = connector()->make_connection(*runtime);
    return connection->dial(std::move(r));
  }
  // A read failed the connection: `e` is of `kind` and says why, and the peer got the
  // client's close frame with `close`.
  void expect_failed(const Error& e, errc kind, std::uint16_t close) {
    EXPECT_TRUE(e.is(kind)) << e.message();
    EXPECT_FALSE(e.detail.empty()) << "the error says what was wrong";
    auto seen = peer->client_close(5s);
    ASSERT_TRUE(seen) << "the peer got no close frame";
    EXPECT_EQ(seen->code, close);
  }
  // wss:// through `proxy`: TLS runs end to end through the tunnel, verified against
  // the server's name, and a message goes both ways.
  void expect_wss_through(const HttpProxy& proxy, const std::string& text) {
    std::string dir = test::temp_dir();
    ASSERT_TRUE(test::make_test_certificate(dir));
    ServerSetup setup;
    setup.options.cert_file = dir + "/cert.pem";
    setup.options.key_file = dir + "/key.pem";
    RealHarness secure(connector(), setup);
    auto r = secure.request();
    r.tls.ca_file = setup.options.cert_file;
    r.proxy = proxy;
    auto result = dial(r);
    ASSERT_TRUE(result) << result.error().message();
    auto p = secure.accept(5s);
    ASSERT_TRUE(p);
    p->start_echo();
    expect_echo(text);
    EXPECT_FALSE(connection->close({close_code::normal, {}}, 5s));
    connection.reset();
  }
};

TEST_P(NetworkContract, ARefusedConnectionSaysSo) {
  tools::TestServer closed;
  auto port = closed.start();
  closed.stop();
  auto r = harness->request();
  r.url = parse_url("ws://127.0.0.1:" + std::to_string(port) + "/").value();
  auto result = dial(r);
  ASSERT_FALSE(result);
  EXPECT_TRUE(result.error().is(errc::connection_refused)) << result.error().message();
}

TEST_P(NetworkContract, AnUnknownHostIsADnsFailure) {
  auto r = harness->request();
  r.url = parse_url("ws://no-such-host.invalid/").value();
  auto result = dial(r);
  ASSERT_FALSE(result);
  EXPECT_TRUE(result.error().is(errc::dns_failure)) << result.error().message();
}

TEST_P(NetworkContract, AnHttpRefusalCarriesTheStatus) {
  ServerSetup setup;
  setup.refuse_with = 403;
  RealHarness refusing(connector(), setup);
  auto result = dial(refusing.request());
  ASSERT_FALSE(result);
  EXPECT_TRUE(result.error().is(errc::http_status)) << result.error().message();
  EXPECT_EQ(result.error().http_status, 403);
}

TEST_P(NetworkContract, TheDialTimesOutAgainstASilentServerAndAbortCancelsIt) {
  // Accepts TCP, then answers nothing for a second.
  tools::TestServer silent;
  silent.on_request = [](const std::string&, const std::vector<Header>&) {
    std::this_thread::sleep_for(1s);
    return 503;
  };
  silent.start();
  auto r = harness->request();
  r.url = parse_url(silent.url("/")).value();
  r.timeout = 300ms;
  auto t0 = std::chrono::steady_clock::now();
  auto result = dial(r);
  ASSERT_FALSE(result);
  EXPECT_TRUE(result.error().is(errc::timeout)) << result.error().message();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 2s);

  r.timeout = 30s;
  auto c = connector()->make_connection(*runtime);
  std::promise<Error> dialled;
  c->async_dial(r, [&](Result<HandshakeResponse> res) { dialled.set_value(res ? Error{} : res.error()); });
  std::this_thread::sleep_for(100ms);
  c->abort();
  auto f = dialled.get_future();
  ASSERT_EQ(f.wait_for(5s), std::future_status::ready);
  EXPECT_TRUE(f.get().is(errc::cancelled));
  silent.stop();
}

TEST_P(NetworkContract, TheChosenSubprotocolIsReturnedAndAnUnofferedOneFailsTheDial) {
  ServerSetup setup;
  setup.choose_subprotocol = "v2.feed";
  RealHarness choosing(connector(), setup);
  auto r = choosing.request();
  r.subprotocols = {"v1.feed", "v2.feed"};
  auto result = dial(r);
  ASSERT_TRUE(result) << result.error().message();
  EXPECT_EQ(result->subprotocol, "v2.feed");
  EXPECT_EQ(choosing.request_header("Sec-WebSocket-Protocol"), "v1.feed, v2.feed");
  EXPECT_EQ(result->header("server"), "wscengine-test-server");
  auto p = choosing.accept(5s);
  connection.reset();
  p.reset();

  r.subprotocols = {"v1.feed"};  // RFC 6455 §4.1: the client must fail this
  result = dial(r);
  ASSERT_FALSE(result);
  EXPECT_TRUE(result.error().is(errc::handshake_failed)) << result.error().message();
  EXPECT_NE(result.error().message().find("v2.feed"), std::string::npos) << result.error().message();
  r.subprotocols.clear();
  result = dial(r);
  ASSERT_FALSE(result);
  EXPECT_TRUE(result.error().is(errc::handshake_failed)) << result.error().message();
  connection.reset();
  while (auto extra = choosing.accept(100ms)) {
  }
}

// The Beast adapter reads plain single frames itself and hands everything else to
// Beast; a stream that alternates between the two, cut into pieces that split
// headers and payloads, must still come out whole and in order (any adapter).
TEST_P(NetworkContract, PlainAndFragmentedFramesInterleavedArriveWholeAndInOrder) {
  open();
  auto* raw = dynamic_cast<RealPeer*>(peer.get());
  ASSERT_NE(raw, nullptr);
  using tools::server_frame;
  const std::string big(200000, 'B');
  const std::string stream = server_frame(0x81, "plain") + server_frame(0x01, "frag") + server_frame(0x8a, "pong") +
                             server_frame(0x80, "mented") + server_frame(0x82, std::string("\0\1\2", 3)) +
                             server_frame(0x81, "h\xc3\xa9llo") + server_frame(0x8a, "") + server_frame(0x82, big) +
                             server_frame(0x02, "bin") + server_frame(0x00, "") + server_frame(0x80, "ary") +
                             server_frame(0x81, std::string(300, 'm')) + server_frame(0x81, "last");
  const std::vector<std::pair<MessageType, std::string>> expected = {{MessageType::text, "plain"},
                                                                     {MessageType::text, "fragmented"},
                                                                     {MessageType::binary, {"\0\1\2", 3}},
                                                                     {MessageType::text, "h\xc3\xa9llo"},
                                                                     {MessageType::binary, big},
                                                                     {MessageType::binary, "binary"},
                                                                     {MessageType::text, std::string(300, 'm')},
                                                                     {MessageType::text, "last"}};
  // Pieces of 1, 2, 3, ... 13 bytes, then the rest: every header and payload is split.
  std::size_t at = 0;
  for (std::size_t piece = 1; at < stream.size(); ++piece) {
    std::size_t n = piece <= 13 ? piece : stream.size() - at;
    raw->send_raw(std::string_view(stream).substr(at, n));
    at += n;
  }
  expect_messages(expected);
  // And the connection still works both ways.
  peer->start_echo();
  expect_echo("after");
}

// ------------------------------------------------------------------ streamed reads
// DialRequest::stream: messages in parts as they arrive. An adapter without
// streamed_reads refuses the dial by name.

namespace {

constexpr std::size_t kPartSize = 4096;  // the smallest allowed: the most parts

DialRequest streamed(DialRequest r, std::uint64_t max_total = 0) {
  r.stream.enabled = true;
  r.stream.max_part_size = kPartSize;
  r.stream.max_message_size = max_total;
  return r;
}

// Every frame-length size class (7-bit, 16-bit, 64-bit lengths and their edges), text
// with 2-, 3- and 4-byte code points across part boundaries, fragmented messages with
// empty and control frames between their frames, and a ping the adapter answers.
struct StreamedScript {
  std::string bytes;
  std::vector<std::pair<MessageType, std::string>> messages;
};
StreamedScript streamed_script() {
  using tools::server_frame;
  StreamedScript s;
  auto add = [&](std::uint8_t first, MessageType type, const std::string& payload) {
    s.bytes += server_frame(first, payload);
    s.messages.emplace_back(type, payload);
  };
  for (std::size_t n : {0, 1, 125, 126, 127, 4095, 4096, 4097, 65535, 65536, 300000}) {
    std::string payload(n, '\0');
    for (std::size_t i = 0; i < n; ++i) payload[i] = static_cast<char>(i * 7 + n);
    add(0x82, MessageType::binary, payload);
  }
  std::string text;
  while (text.size() < 100000) text += "a\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80";  // 1, 2, 3 and 4 bytes
  add(0x81, MessageType::text, text);
  const std::string half(30000, 'h');
  s.bytes += server_frame(0x01, half) + server_frame(0x8a, "pong") + server_frame(0x00, "") +
             server_frame(0x89, "ping") + server_frame(0x00, text) + server_frame(0x80, half);
  s.messages.emplace_back(MessageType::text, half + text + half);
  s.bytes += server_frame(0x02, "") + server_frame(0x80, "x");
  s.messages.emplace_back(MessageType::binary, "x");
  add(0x81, MessageType::text, "last");
  return s;
}

}  // namespace

// Reads one message in parts: whole, or first, middle..., last, none over the part
// size; returns it joined, and how many parts it came in.
static Error read_streamed_message(const std::function<Error(InboundMessage&)>& read_next,
                                   std::pair<MessageType, std::string>& out, std::size_t& parts) {
  out = {};
  parts = 0;
  InboundMessage m;
  for (;;) {
    if (Error e = read_next(m)) return e;
    ++parts;
    EXPECT_LE(m.payload.size(), kPartSize);
    if (parts == 1) {
      out.first = m.type;
      EXPECT_TRUE(m.part == MessagePart::whole || m.part == MessagePart::first);
    } else {
      EXPECT_TRUE(m.part == MessagePart::middle || m.part == MessagePart::last);
      EXPECT_EQ(m.type, out.first) << "the parts of one message have its type";
    }
    out.second += m.payload;
    if (m.part == MessagePart::whole || m.part == MessagePart::last) return {};
  }
}

TEST_P(NetworkContract, StreamedMessagesArriveInPartsWholeAndInOrderHoweverTheyAreCut) {
  if (!connector()->capabilities().streamed_reads) {
    connection = connector()->make_connection(*runtime);
    auto refused = connection->dial(streamed(harness->request()));
    ASSERT_FALSE(refused);
    EXPECT_TRUE(refused.error().is(errc::unsupported)) << refused.error().message();
    EXPECT_NE(refused.error().message().find("stream"), std::string::npos) << refused.error().message();
    return;
  }
  const StreamedScript script = streamed_script();
  // Coalesced (one write); split into pieces of 1, 2, 3, ... 13 bytes, then the rest
  // (every header split); and in pieces of 1 byte to 64 KiB + 3 written while the
  // client reads.
  const std::size_t varied[] = {1, 3, 700, 5000, 16385, 65539, 2, 9, 30000};
  const std::function<std::size_t(std::size_t)> cuts[] = {
      [&](std::size_t) { return script.bytes.size(); },
      [&](std::size_t i) { return i < 13 ? i + 1 : script.bytes.size(); },
      [&](std::size_t i) { return varied[i % std::size(varied)]; }};
  for (std::size_t cut = 0; cut < std::size(cuts); ++cut) {
    SCOPED_TRACE(test::cat("cut ", cut));
    open(streamed(harness->request()));
    auto* raw = dynamic_cast<RealPeer*>(peer.get());
    ASSERT_NE(raw, nullptr);
    auto writer = std::async(std::launch::async, [&] {
      std::size_t at = 0;
      for (std::size_t i = 0; at < script.bytes.size(); ++i) {
        std::size_t n = std::min(cuts[cut](i), script.bytes.size() - at);
        raw->send_raw(std::string_view(script.bytes).substr(at, n));
        at += n;
      }
    });
    std::size_t most_parts = 0;
    for (const auto& [type, payload] : script.messages) {
      std::pair<MessageType, std::string> got;
      std::size_t parts = 0;
      Error e = read_streamed_message([&](InboundMessage& m) { return read_next(m); }, got, parts);
      ASSERT_FALSE(e) << e.message();
      EXPECT_EQ(got.first, type);
      ASSERT_EQ(got.second.size(), payload.size());
      EXPECT_TRUE(got.second == payload) << "a message came out changed or out of order";
      EXPECT_GE(parts, (payload.size() + kPartSize - 1) / kPartSize) << "a part over max_part_size";
      most_parts = std::max(most_parts, parts);
    }
    writer.get();
    EXPECT_GE(most_parts, 300000 / kPartSize) << "the largest message came in parts";
    // The ping in the middle of a message was answered (the server sees the pong when
    // it reads the message the client sends after it), and the connection works.
    ASSERT_FALSE(connection->write(MessageType::text, "after"));
    auto m = peer->receive(5s);
    ASSERT_TRUE(m) << "the server did not get the message after the pong";
    EXPECT_EQ(m->payload, "after");
    EXPECT_EQ(raw->pongs(), std::vector<std::string>{"ping"});
    connection.reset();
    peer.reset();
  }
}

// A violation in a streamed message fails the connection with its code, also when
// the next frame comes in the same write; the parts before it were delivered.
TEST_P(NetworkContract, StreamedViolationsFailTheConnectionWithTheirCode) {
  if (!connector()->capabilities().streamed_reads) GTEST_SKIP() << "no streamed reads (refused: tested above)";
  using tools::server_frame;
  struct Case {
    const char* name;
    std::string bytes;
    std::uint64_t max_total;
    errc kind;
    std::uint16_t close;
  };
  const std::string big(100000, 'a');
  const Case cases[] = {
      {"invalid UTF-8 after 100 KB", server_frame(0x81, big + "\xff") + server_frame(0x81, "next"), 0,
       errc::invalid_utf8, close_code::invalid_payload},
      {"a code point cut by the end of the message",
       server_frame(0x01, big + "\xe2\x82") + server_frame(0x80, "") + server_frame(0x81, "next"), 0,
       errc::invalid_utf8, close_code::invalid_payload},
      {"a new message inside a fragmented one", server_frame(0x01, big) + server_frame(0x81, "next"), 0,
       errc::protocol_error, close_code::protocol_error},
      {"over stream.max_message_size", server_frame(0x02, big) + server_frame(0x80, big) + server_frame(0x81, "next"),
       150000, errc::message_too_big, close_code::too_big},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    for (std::size_t piece : {c.bytes.size(), std::size_t{7}}) {  // coalesced, then in small pieces
      SCOPED_TRACE(test::cat("pieces of ", piece, " bytes"));
      open(streamed(harness->request(), c.max_total));
      auto* raw = dynamic_cast<RealPeer*>(peer.get());
      ASSERT_NE(raw, nullptr);
      auto writer = std::async(std::launch::async, [&] {
        for (std::size_t at = 0; at < c.bytes.size(); at += piece)
          raw->send_raw(std::string_view(c.bytes).substr(at, piece));
      });
      std::size_t delivered = 0;
      Error e;
      InboundMessage m;
      while (!(e = read_next(m))) {
        EXPECT_NE(m.payload, "next") << "the frame after the violation was not read";
        delivered += m.payload.size();
      }
      EXPECT_LE(delivered, 150000u);
      writer.get();
      expect_failed(e, c.kind, c.close);
      connection.reset();
      peer.reset();
    }
  }
}

// Streamed, max_message_size bounds what is buffered, not the message: a message 16
// times larger arrives in parts; a close in the middle of one completes.
TEST_P(NetworkContract, StreamedMessagesAreNotBoundByMaxMessageSize) {
  if (!connector()->capabilities().streamed_reads) GTEST_SKIP() << "no streamed reads (refused: tested above)";
  auto r = streamed(harness->request());
  r.max_message_size = 64 * 1024;
  open(r);
  auto* raw = dynamic_cast<RealPeer*>(peer.get());
  ASSERT_NE(raw, nullptr);
  const std::string large(1u << 20, 'L');
  auto writer = std::async(std::launch::async, [&] {
    raw->send_raw(tools::server_frame(0x82, large) + tools::server_frame(0x82, std::string(70000, 'c')));
  });
  for (std::size_t size : {large.size(), std::size_t{70000}}) {
    std::pair<MessageType, std::string> got;
    std::size_t parts = 0;
    Error e = read_streamed_message([&](InboundMessage& m) { return read_next(m); }, got, parts);
    ASSERT_FALSE(e) << e.message();
    EXPECT_EQ(got.second.size(), size);
  }
  writer.get();
  // Half of a message, then the close: the handshake reads past the rest.
  const std::string frame = tools::server_frame(0x82, std::string(100000, 'z'));
  raw->send_raw(std::string_view(frame).substr(0, 50000));
  InboundMessage m;
  ASSERT_FALSE(read_next(m));
  EXPECT_EQ(m.part, MessagePart::first);
  auto peer_side = std::async(std::launch::async, [&] {
    raw->send_raw(std::string_view(frame).substr(50000));
    return peer->client_close(5s);
  });
  EXPECT_FALSE(connection->close({close_code::normal, "bye"}, 5s));
  auto seen = peer_side.get();
  ASSERT_TRUE(seen);
  EXPECT_EQ(seen->code, close_code::normal);
}

// RFC 6455 §5.5.3: a pong carries the payload of the ping it answers. Empty, one
// byte, every byte value, and the largest control payload (125 bytes); each ping is
// followed by a message the client reads, then a message the client writes, so the
// server has read the pong (the client sent it first) when it reads that message.
TEST_P(NetworkContract, APongCarriesThePingsPayload) {
  open();
  auto* raw = dynamic_cast<RealPeer*>(peer.get());
  ASSERT_NE(raw, nullptr);
  std::string bytes;
  for (int i = 0; i < 125; ++i) bytes += static_cast<char>(i * 2 + 1);
  const std::vector<std::string> payloads = {"", "x", "are you there?", bytes, std::string(125, '\0')};
  std::vector<std::string> expected;
  for (const auto& payload : payloads) {
    raw->ping(payload);
    raw->send(MessageType::text, "after a ping");
    expect_messages({{MessageType::text, "after a ping"}});
    ASSERT_FALSE(connection->write(MessageType::text, "seen"));
    auto m = peer->receive(5s);
    ASSERT_TRUE(m) << "the server did not get the message after the pong";
    EXPECT_EQ(m->payload, "seen");
    expected.push_back(payload);
    EXPECT_EQ(raw->pongs(), expected) << "after the ping of " << payload.size() << " bytes";
  }
}

// The Beast adapter receives large plain payloads straight into the message's own
// string (not its scan buffer); big and small, plain, fragmented and control frames,
// two large ones back to back, cut at every kind of boundary, must still come out
// whole and in order (any adapter).
TEST_P(NetworkContract, LargeMessagesArriveWholeHoweverTheyAreCut) {
  open();
  auto* raw = dynamic_cast<RealPeer*>(peer.get());
  ASSERT_NE(raw, nullptr);
  using tools::server_frame;
  const std::string text = std::string(70000, 't') + "\xc3\xa9" + std::string(30000, 'u');
  const std::string at_threshold(16 * 1024, 'b'), below(16 * 1024 - 1, 'c'), exact(65536, 'a');
  const std::string half(40000, 'h');
  const std::string stream = server_frame(0x81, text) + server_frame(0x81, "small") + server_frame(0x89, "p1") +
                             server_frame(0x82, exact) + server_frame(0x82, at_threshold) + server_frame(0x82, below) +
                             server_frame(0x02, half) + server_frame(0x8a, "") + server_frame(0x80, half) +
                             server_frame(0x82, exact) + server_frame(0x81, "last");
  const std::vector<std::pair<MessageType, std::string>> expected = {
      {MessageType::text, text},           {MessageType::text, "small"}, {MessageType::binary, exact},
      {MessageType::binary, at_threshold}, {MessageType::binary, below}, {MessageType::binary, half + half},
      {MessageType::binary, exact},        {MessageType::text, "last"}};
  // Written while the client reads (the socket buffers need not hold it all), in
  // pieces of 1 byte to 64 KiB + 3: headers and payloads split everywhere.
  auto writer = std::async(std::launch::async, [&] {
    const std::size_t pieces[] = {1, 3, 700, 5000, 16385, 65539, 2, 9, 30000};
    std::size_t at = 0;
    for (std::size_t i = 0; at < stream.size(); ++i) {
      std::size_t n = std::min(pieces[i % std::size(pieces)], stream.size() - at);
      raw->send_raw(std::string_view(stream).substr(at, n));
      at += n;
    }
  });
  expect_messages(expected);
  writer.get();
  peer->start_echo();
  expect_echo(exact, MessageType::binary);
}

// Under TLS the Beast adapter reads on while records are there: a large payload
// received into a string of its own (diverted) can be followed in the buffer by more
// bytes than it has, all small messages. The large message must still be its own
// payload, not the bytes behind its header (it was: the check looked at the buffer
// first), and everything after it whole and in order.
TEST_P(NetworkContract, OverTlsALargeMessageFollowedByMoreThanItsSizeArrivesIntact) {
  TlsSetup tls;
  ASSERT_TRUE(tls.ok) << "openssl could not make a certificate";
  RealHarness secure(connector(), tls.server);
  auto r = secure.request();
  r.tls.ca_file = tls.server.options.cert_file;
  auto result = dial(r);
  ASSERT_TRUE(result) << result.error().message();
  auto accepted = secure.accept(5s);
  auto* raw = dynamic_cast<RealPeer*>(accepted.get());
  ASSERT_NE(raw, nullptr);
  using tools::server_frame;
  std::vector<std::pair<MessageType, std::string>> expected;
  std::string stream;
  for (int round = 0; round < 3; ++round) {
    std::string large(65536 + round * 1000, static_cast<char>('A' + round));
    stream += server_frame(0x82, large);
    expected.emplace_back(MessageType::binary, std::move(large));
    for (int i = 0; i < 1500; ++i) {  // 1500 x 100 B: more than the large payload
      std::string small = test::cat("r", round, " m", i);
      small.resize(100, '.');
      stream += server_frame(0x81, small);
      expected.emplace_back(MessageType::text, std::move(small));
    }
  }
  raw->send_raw(stream);  // one write: TLS records back to back
  expect_messages(expected);
  accepted->start_echo();  // answers the close
  EXPECT_FALSE(connection->close({close_code::normal, {}}, 5s));
  connection.reset();
}

// Large frames the Beast adapter does not read itself after all go back to Beast
// whole: invalid UTF-8 at the end of a 100 KB text, a 20 KB payload with a 64-bit
// length (not the shortest form, RFC 6455 §5.2: a protocol error, close 1002;
// websocketpp 0.8 sends 1011 for it, docs/adapters.md).
TEST_P(NetworkContract, LargeInvalidFramesFailTheConnectionWithTheirCode) {
  const std::uint16_t non_minimal_close =
      GetParam().name == "websocketpp" ? close_code::internal_error : close_code::protocol_error;
  struct Case {
    const char* name;
    std::string frame;
    errc kind;
    std::uint16_t close;
  };
  std::string long_length = {'\x82', '\x7f', 0, 0, 0, 0, 0, 0, '\x4e', '\x20'};  // 20000 in 8 bytes
  long_length += std::string(20000, 'x');
  const Case cases[] = {
      {"invalid UTF-8 at the end of 100 KB", tools::server_frame(0x81, std::string(100000, 'a') + "\xff"),
       errc::invalid_utf8, close_code::invalid_payload},
      {"a 64-bit length for 20000 bytes", long_length, errc::protocol_error, non_minimal_close}};
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    open();
    auto* raw = dynamic_cast<RealPeer*>(peer.get());
    ASSERT_NE(raw, nullptr);
    // The client has its first 7,000 bytes when it reads "before" (the Beast
    // adapter then receives the rest of the payload aside), the rest comes later.
    raw->send_raw(tools::server_frame(0x81, "before") + c.frame.substr(0, 7000));
    InboundMessage m;
    ASSERT_FALSE(read_next(m));
    EXPECT_EQ(m.payload, "before");
    auto writer = std::async(std::launch::async, [&] {
      for (std::size_t at = 7000; at < c.frame.size(); at += 7000)
        raw->send_raw(std::string_view(c.frame).substr(at, 7000));
    });
    Error e = read_next(m);
    writer.get();
    expect_failed(e, c.kind, c.close);
    connection.reset();
    peer.reset();
  }
}

// Closing while a large message is half received: the close handshake reads past
// the rest of it (the Beast adapter puts the bytes it received aside back first).
TEST_P(NetworkContract, CloseWhileALargeMessageIsHalfReceivedCompletes) {
  open();
  auto* raw = dynamic_cast<RealPeer*>(peer.get());
  ASSERT_NE(raw, nullptr);
  const std::string frame = tools::server_frame(0x82, std::string(100000, 'z'));
  raw->send_raw(std::string_view(frame).substr(0, 50000));
  InboundMessage m;
  EXPECT_TRUE(connection->try_read(m).is(errc::would_block));  // half of it is buffered
  auto peer_side = std::async(std::launch::async, [&] {
    raw->send_raw(std::string_view(frame).substr(50000));
    return peer->client_close(5s);
  });
  auto started = std::chrono::steady_clock::now();
  Error e = connection->close({close_code::normal, "bye"}, 5s);
  EXPECT_FALSE(e) << e.message();
  EXPECT_LT(std::chrono::steady_clock::now() - started, 4s) << "close waited for its timeout";
  auto seen = peer_side.get();
  ASSERT_TRUE(seen);
  EXPECT_EQ(seen->code, close_code::normal);
}

TEST_P(NetworkContract, InvalidUtf8TextIs1007) {
  open();
  peer->send(MessageType::text, std::string("ok"));
  peer->send(MessageType::text, std::string("\xff\xfe bad", 6));
  InboundMessage m;
  ASSERT_FALSE(read_next(m));
  EXPECT_EQ(m.payload, "ok");
  Error e = read_next(m);
  EXPECT_TRUE(e.is(errc::invalid_utf8)) << e.message();
  auto seen = peer->client_close(5s);
  ASSERT_TRUE(seen);
  EXPECT_EQ(seen->code, close_code::invalid_payload);
}

// A text message whose last frame is empty and whose bytes end inside a code point
// (Beast 1.74 checks the end only when the last frame has payload), with the next
// frame in the same write: 1007, and the next frame is never a message.
TEST_P(NetworkContract, TextEndingInsideACodePointBeforeAnEmptyLastFrameIs1007) {
  open();
  auto* raw = dynamic_cast<RealPeer*>(peer.get());
  ASSERT_NE(raw, nullptr);
  using tools::server_frame;
  raw->send_raw(server_frame(0x81, "ok") + server_frame(0x01, "abc\xe2\x82") + server_frame(0x80, "") +
                server_frame(0x81, "next"));
  InboundMessage m;
  ASSERT_FALSE(read_next(m));
  EXPECT_EQ(m.payload, "ok");
  Error e = read_next(m);
  EXPECT_TRUE(e.is(errc::invalid_utf8)) << e.message() << " (read: " << m.payload << ")";
  auto seen = peer->client_close(5s);
  ASSERT_TRUE(seen);
  EXPECT_EQ(seen->code, close_code::invalid_payload);
}

TEST_P(NetworkContract, TlsIsVerifiedWithSniAndHostNameAgainstTheTestsOwnCertificate) {
  TlsSetup tls;
  ASSERT_TRUE(tls.ok) << "openssl could not make a certificate";
  const std::string& dir = tls.dir;
  const ServerSetup& setup = tls.server;
  RealHarness secure(connector(), setup);
  auto r = secure.request();
  ASSERT_TRUE(r.url.secure);

  // The system store does not know the test's certificate.
  auto result = dial(r);
  ASSERT_FALSE(result);
  EXPECT_TRUE(result.error().is(errc::tls_verification_failed)) << result.error().message();

  // With its CA file: verified, and messages flow.
  r.tls.ca_file = setup.options.cert_file;
  result = dial(r);
  ASSERT_TRUE(result) << result.error().message();
  auto p = secure.accept(5s);
  ASSERT_TRUE(p);
  p->start_echo();
  expect_echo("over tls");
  EXPECT_FALSE(connection->close({close_code::normal, {}}, 5s));
  connection.reset();
  p.reset();
  EXPECT_EQ(secure.server().last_sni(), "localhost");

  // A name the certificate does not carry fails; the address it does carry passes,
  // without SNI (RFC 6066 §3: no address literals).
  r.url.host = "127.0.0.1";
  r.tls.server_name = "not-in-the-certificate.test";
  result = dial(r);
  ASSERT_FALSE(result);
  EXPECT_TRUE(result.error().is(errc::tls_verification_failed)) << result.error().message();
  r.tls.server_name.clear();
  result = dial(r);
  ASSERT_TRUE(result) << result.error().message();
  connection.reset();
  EXPECT_EQ(secure.server().last_sni(), "");
  // server_name overrides the URL's host for SNI and the certificate check.
  r.tls.server_name = "localhost";
  result = dial(r);
  ASSERT_TRUE(result) << result.error().message();
  connection.reset();
  EXPECT_EQ(secure.server().last_sni(), "localhost");

  // The CA file must exist.
  r.tls.ca_file = dir + "/missing.pem";
  result = dial(r);
  ASSERT_FALSE(result);
  EXPECT_NE(result.error().message().find("missing.pem"), std::string::npos) << result.error().message();
  connection.reset();
  while (auto extra = secure.accept(100ms)) {
  }
}

TEST_P(NetworkContract, MutualTlsPresentsTheClientCertificateAndTheMinimumVersionHolds) {
  std::string dir = test::temp_dir();
  ASSERT_TRUE(test::make_test_certificate(dir)) << "openssl could not make a certificate";
  // The test's certificate is its own CA: the server trusts it for clients too.
  ASSERT_EQ(std::system(("openssl pkey -in " + dir + "/key.pem -aes256 -passout pass:s3cret -out " + dir +
                         "/key-encrypted.pem 2>/dev/null")
                            .c_str()),
            0);
  ServerSetup setup;
  setup.options.cert_file = dir + "/cert.pem";
  setup.options.key_file = dir + "/key.pem";
  setup.options.client_ca_file = dir + "/cert.pem";
  RealHarness secure(connector(), setup);
  auto r = secure.request();
  r.tls.ca_file = setup.options.cert_file;

  // No client certificate: the server refuses (during TLS, or right after it with TLS 1.3).
  auto result = dial(r);
  ASSERT_FALSE(result) << "a server that requires a client certificate accepted none";
  connection.reset();

  // With it (and with the encrypted key and its password): verified both ways.
  r.tls.certificate_file = dir + "/cert.pem";
  r.tls.private_key_file = dir + "/key.pem";
  result = dial(r);
  ASSERT_TRUE(result) << result.error().message();
  auto p = secure.accept(5s);
  ASSERT_TRUE(p);
  p->start_echo();
  expect_echo("mutual");
  EXPECT_FALSE(connection->close({close_code::normal, {}}, 5s));
  connection.reset();
  p.reset();

  r.tls.private_key_file = dir + "/key-encrypted.pem";
  r.tls.private_key_password = "wrong";
  result = dial(r);
  ASSERT_FALSE(result);
  EXPECT_TRUE(result.error().is(errc::invalid_option)) << result.error().message();
  EXPECT_NE(result.error().message().find("key-encrypted.pem"), std::string::npos) << result.error().message();
  r.tls.private_key_password = "s3cret";
  result = dial(r);
  ASSERT_TRUE(result) << result.error().message();
  connection.reset();
  while (auto extra = secure.accept(100ms)) {
  }

  // A client that requires TLS 1.3 refuses a server that stops at 1.2.
  ServerSetup old_tls = setup;
  old_tls.options.client_ca_file.clear();
  old_tls.options.tls12_only = true;
  RealHarness tls12(connector(), old_tls);
  auto r12 = tls12.request();
  r12.tls.ca_file = setup.options.cert_file;
  result = dial(r12);
  ASSERT_TRUE(result) << "TLS 1.2 is accepted by default: " << result.error().message();
  connection.reset();
  r12.tls.min_version = TlsOptions::Version::tls1_3;
  result = dial(r12);
  ASSERT_FALSE(result);
  EXPECT_TRUE(result.error().is(errc::tls_handshake_failed)) << result.error().message();
  connection.reset();
  while (auto extra = tls12.accept(100ms)) {
  }
}

// ------------------------------------------------------------------ connectivity (issue 8)

// A server with a certificate from the test's own CA (server certificate + CA sent).
struct PkiServer {
  explicit PkiServer(bool expired = false) : pki(test::make_test_pki(expired)) {}
  test::TestPki pki;
  ServerSetup setup = [this] {
    ServerSetup s;
    s.options.cert_file = pki.server_chain;
    s.options.key_file = pki.server_key;
    return s;
  }();
};

class CertificateContract : public NetworkContract {
 protected:
  // Dials `r`; it must open, and a message must go both ways.
  void expect_accepted(RealHarness& server, const DialRequest& r, const std::string& what) {
    SCOPED_TRACE(what);
    auto result = dial(r);
    ASSERT_TRUE(result) << what << ": " << result.error().message();
    auto p = server.accept(5s);
    ASSERT_TRUE(p);
    p->start_echo();
    expect_echo(what);
    EXPECT_FALSE(connection->close({close_code::normal, {}}, 5s));
    connection.reset();
  }
  // Dials `r`; it must fail verification, with `words` in the error's message.
  void expect_refused(const DialRequest& r, const std::string& words, const std::string& what) {
    SCOPED_TRACE(what);
    auto result = dial(r);
    ASSERT_FALSE(result) << what << ": accepted";
    EXPECT_TRUE(result.error().is(errc::tls_verification_failed)) << result.error().message();
    EXPECT_NE(result.error().message().find(words), std::string::npos) << result.error().message();
    connection.reset();
  }
};

TEST_P(CertificateContract, PinnedPublicKeysHoldTheServerToKnownKeys) {
  PkiServer server;
  RealHarness secure(connector(), server.setup);
  auto r = secure.request();
  r.tls.ca_file = server.pki.ca_file;
  // Any pinned key of the verified chain will do: the server's own, or its CA's.
  r.tls.pinned_public_keys = {server.pki.server_pin};
  expect_accepted(secure, r, "the server's key pinned");
  r.tls.pinned_public_keys = {server.pki.ca_pin};
  expect_accepted(secure, r, "the CA's key pinned");
  r.tls.pinned_public_keys = {server.pki.unrelated_pin, server.pki.server_pin.substr(7)};  // bare base64 too
  expect_accepted(secure, r, "one of two pins matches");
  // A chain that verifies but carries no pinned key: refused, naming the server's key.
  r.tls.pinned_public_keys = {server.pki.unrelated_pin};
  expect_refused(r, server.pki.server_pin, "no pinned key in the chain");
  expect_refused(r, "tls.pinned_public_keys", "no pinned key in the chain");

  // Without verification only the leaf's key counts: the handshake proves the server
  // holds its private key, while an unverified chain proves nothing about the others.
  r.tls.verify_peer = false;
  r.tls.ca_file.clear();
  r.tls.pinned_public_keys = {server.pki.server_pin};
  expect_accepted(secure, r, "verification off, the server's key pinned");
  r.tls.pinned_public_keys = {server.pki.ca_pin};
  expect_refused(r, server.pki.server_pin, "verification off, only the CA's key pinned");

  // A pin that is not one fails before any byte is sent.
  r.tls.pinned_public_keys = {"sha256/not-base64"};
  auto result = dial(r);
  ASSERT_FALSE(result);
  EXPECT_TRUE(result.error().is(errc::invalid_option)) << result.error().message();
  EXPECT_NE(result.error().message().find("sha256/not-base64"), std::string::npos) << result.error().message();
  connection.reset();
  while (auto extra = secure.accept(100ms)) {
  }
}

TEST_P(CertificateContract, CaCertificatesCanBeGivenAsPemText) {
  PkiServer server;
  RealHarness secure(connector(), server.setup);
  auto r = secure.request();
  r.tls.ca_pem = server.pki.ca_pem;
  expect_accepted(secure, r, "the CA as PEM text");
  // Text and file together: both trusted.
  r.tls.ca_pem = test::make_test_pki().ca_pem;  // another CA, which signed nothing here
  r.tls.ca_file = server.pki.ca_file;
  expect_accepted(secure, r, "another CA as text, the server's as a file");
  r.tls.ca_file.clear();
  expect_refused(r, "self-signed certificate in certificate chain", "only the other CA");
  // A CA of the same name but another key: the signature does not verify, and that is
  // a verification failure on every adapter (Beast's handshake error says "EVP lib").
  r.tls.ca_pem = test::make_test_pki(false, server.pki.ca_name).ca_pem;
  expect_refused(r, "certificate signature failure", "a CA of the same name, another key");
  r.tls.ca_pem = "not a certificate";
  auto result = dial(r);
  ASSERT_FALSE(result);
  EXPECT_TRUE(result.error().is(errc::invalid_option)) << result.error().message();
  EXPECT_NE(result.error().message().find("tls.ca_pem"), std::string::npos) << result.error().message();
  connection.reset();
  while (auto extra = secure.accept(100ms)) {
  }
}

TEST_P(CertificateContract, TheVerifyCallbackSeesTheChainAndTheVerdictAndHasTheLastWord) {
  PkiServer server;
  RealHarness secure(connector(), server.setup);
  std::mutex mutex;
  std::vector<CertificateCheck> seen;
  bool answer = true;
  auto r = secure.request();
  r.tls.ca_file = server.pki.ca_file;
  r.tls.verify_callback = [&](const CertificateCheck& check) {
    std::lock_guard lock(mutex);
    seen.push_back(check);
    return answer;
  };
  auto last = [&] {
    std::lock_guard lock(mutex);
    EXPECT_EQ(seen.size(), 1u);
    CertificateCheck out = seen.empty() ? CertificateCheck{} : seen.back();
    seen.clear();
    return out;
  };

  // A chain that verifies: the verified chain, leaf first, up to the CA.
  expect_accepted(secure, r, "verified, accepted");
  CertificateCheck check = last();
  EXPECT_EQ(check.host, "localhost");
  EXPECT_TRUE(check.verified);
  EXPECT_EQ(check.verdict, "");
  ASSERT_EQ(check.chain.size(), 2u);
  EXPECT_NE(check.chain[0].subject.find("CN=localhost"), std::string::npos) << check.chain[0].subject;
  EXPECT_NE(check.chain[0].issuer.find("CN=wscengine test CA"), std::string::npos) << check.chain[0].issuer;
  EXPECT_EQ(check.chain[0].public_key_pin, server.pki.server_pin);
  EXPECT_EQ(check.chain[1].public_key_pin, server.pki.ca_pin);
  ASSERT_FALSE(check.chain[0].der.empty());
  EXPECT_EQ(static_cast<unsigned char>(check.chain[0].der[0]), 0x30u) << "DER starts with a SEQUENCE";

  // It can refuse what verified.
  answer = false;
  expect_refused(r, "tls.verify_callback refused", "verified, refused by the callback");
  check = last();
  EXPECT_TRUE(check.verified);

  // It sees a failed verdict, with the chain as sent, and can accept it (a lab server).
  answer = true;
  r.tls.ca_file.clear();
  expect_accepted(secure, r, "not verified, accepted by the callback");
  check = last();
  EXPECT_FALSE(check.verified);
  // The server sends its CA too, which the system store does not know.
  EXPECT_NE(check.verdict.find("self-signed certificate in certificate chain"), std::string::npos) << check.verdict;
  ASSERT_EQ(check.chain.size(), 2u) << "the chain as the server sent it";
  EXPECT_EQ(check.chain[0].public_key_pin, server.pki.server_pin);

  // A pin mismatch is part of the verdict it sees.
  r.tls.ca_file = server.pki.ca_file;
  r.tls.pinned_public_keys = {server.pki.unrelated_pin};
  answer = false;
  expect_refused(r, "tls.pinned_public_keys", "pin mismatch, the callback agrees");
  check = last();
  EXPECT_FALSE(check.verified);
  EXPECT_NE(check.verdict.find("tls.pinned_public_keys"), std::string::npos) << check.verdict;
  r.tls.pinned_public_keys.clear();

  // An exception refuses, and is named.
  answer = true;
  r.tls.verify_callback = [](const CertificateCheck&) -> bool { throw std::runtime_error("the callback's own"); };
  expect_refused(r, "the callback's own", "the callback threw");

  // An address: the certificate's IP entry is what is checked.
  r.url.host = "127.0.0.1";
  r.tls.verify_callback = [&](const CertificateCheck& c) {
    std::lock_guard lock(mutex);
    seen.push_back(c);
    return c.verified;
  };
  expect_accepted(secure, r, "by address");
  check = last();
  EXPECT_EQ(check.host, "127.0.0.1");
  EXPECT_TRUE(check.verified) << check.verdict;
  while (auto extra = secure.accept(100ms)) {
  }
}

TEST_P(CertificateContract, APinnedKeyInAnExpiredChainStillFails) {
  PkiServer server(/*expired=*/true);
  RealHarness secure(connector(), server.setup);
  auto r = secure.request();
  r.tls.ca_file = server.pki.ca_file;
  r.tls.pinned_public_keys = {server.pki.server_pin};
  expect_refused(r, "expired", "pinned, expired");
  // The callback sees why, and may still decide otherwise.
  std::atomic<int> expired_verdicts{0};
  r.tls.verify_callback = [&](const CertificateCheck& check) {
    if (!check.verified && check.verdict.find("expired") != std::string::npos) ++expired_verdicts;
    return true;
  };
  expect_accepted(secure, r, "expired, accepted by the callback");
  EXPECT_EQ(expired_verdicts.load(), 1);
  while (auto extra = secure.accept(100ms)) {
  }
}

TEST_P(NetworkContract, AnHttpProxyTunnelsWsAndWssAndAsksForItsCredentials) {
  test::Tinyproxy proxy("alice", "s3cret");
  ASSERT_TRUE(proxy.ok()) << proxy.error();

  RealHarness plain(connector());
  auto r = plain.request();
  // Without credentials the proxy answers 407, and the error says who answered what.
  r.proxy = parse_proxy_url(proxy.url(false)).value();
  auto result = dial(r);
  ASSERT_FALSE(result);
  EXPECT_TRUE(result.error().is(errc::proxy_failed)) << result.error().message();
  EXPECT_EQ(result.error().http_status, 407);
  EXPECT_NE(result.error().message().find("proxy http://127.0.0.1:" + std::to_string(proxy.port())), std::string::npos)
      << result.error().message();
  EXPECT_FALSE(plain.accept(200ms)) << "the server saw a connection the proxy refused";
  connection.reset();

  // With them (one letter percent-encoded, which the URL allows): ws:// through the tunnel.
  r.proxy = parse_proxy_url("http://alice:s3%63ret@127.0.0.1:" + std::to_string(proxy.port())).value();
  result = dial(r);
  ASSERT_TRUE(result) << result.error().message();
  auto p = plain.accept(5s);
  ASSERT_TRUE(p);
  p->start_echo();
  expect_echo("through the proxy");
  EXPECT_FALSE(connection->close({close_code::normal, {}}, 5s));
  connection.reset();
  p.reset();
  EXPECT_NE(proxy.log().find("127.0.0.1:" + std::to_string(plain.server().port())), std::string::npos)
      << "tinyproxy did not log the tunnel: " << proxy.log();

  expect_wss_through(*r.proxy, "tls through the proxy");
}

// SOCKS5 (RFC 1928) through microsocks, a real server from Debian: the Beast adapter
// tunnels ws and wss, by address and by name (socks5h: the proxy resolves it), with
// and without a user name and password (RFC 1929); websocketpp refuses it by name.
TEST_P(NetworkContract, ASocks5ProxyTunnelsWsAndWssByNameAndByAddress) {
  test::Microsocks proxy("bob", "pw1");
  ASSERT_TRUE(proxy.ok()) << proxy.error();
  RealHarness plain(connector());
  auto r = plain.request();
  r.proxy = parse_proxy_url(proxy.url("socks5h")).value();
  auto result = dial(r);
  if (!connector()->capabilities().socks5_proxies) {  // websocketpp: HTTP CONNECT only
    ASSERT_FALSE(result);
    EXPECT_TRUE(result.error().is(errc::unsupported)) << result.error().message();
    EXPECT_NE(result.error().message().find("SOCKS5"), std::string::npos) << result.error().message();
    return;
  }
  ASSERT_TRUE(result) << result.error().message();
  auto p = plain.accept(5s);
  ASSERT_TRUE(p);
  p->start_echo();
  expect_echo("through socks5h by address");
  EXPECT_FALSE(connection->close({close_code::normal, {}}, 5s));
  connection.reset();
  p.reset();

  // By name: the proxy resolves "localhost" (socks5h), or the client does (socks5).
  for (const char* scheme : {"socks5h", "socks5"}) {
    SCOPED_TRACE(scheme);
    auto named = r;
    named.url.host = "localhost";
    named.proxy = parse_proxy_url(proxy.url(scheme)).value();
    result = dial(named);
    ASSERT_TRUE(result) << result.error().message();
    p = plain.accept(5s);
    ASSERT_TRUE(p);
    p->start_echo();
    expect_echo(std::string("by name through ") + scheme);
    EXPECT_FALSE(connection->close({close_code::normal, {}}, 5s));
    connection.reset();
    p.reset();
  }

  // A wrong password and none at all: refused, and the error says what the proxy did.
  auto wrong = r;
  wrong.proxy = parse_proxy_url("socks5h://bob:nope@127.0.0.1:" + std::to_string(proxy.port())).value();
  result = dial(wrong);
  ASSERT_FALSE(result);
  EXPECT_TRUE(result.error().is(errc::proxy_failed)) << result.error().message();
  EXPECT_NE(result.error().message().find("refused the user name and password"), std::string::npos)
      << result.error().message();
  connection.reset();
  wrong.proxy = parse_proxy_url(proxy.url("socks5h", false)).value();
  result = dial(wrong);
  ASSERT_FALSE(result);
  EXPECT_NE(result.error().message().find("accepts no connection without authentication"), std::string::npos)
      << result.error().message();
  connection.reset();
  EXPECT_FALSE(plain.accept(200ms)) << "the server saw a connection the proxy refused";

  // A server the proxy cannot reach: its answer, by number and in words.
  auto nowhere = r;
  nowhere.url = parse_url("ws://127.0.0.1:" + std::to_string(test::unused_port()) + "/").value();
  result = dial(nowhere);
  ASSERT_FALSE(result);
  EXPECT_TRUE(result.error().is(errc::proxy_failed)) << result.error().message();
  EXPECT_NE(result.error().message().find("proxy socks5h://127.0.0.1:" + std::to_string(proxy.port()) +
                                          " answered CONNECT 127.0.0.1:"),
            std::string::npos)
      << result.error().message();
  connection.reset();

  expect_wss_through(*r.proxy, "tls through socks5h");
}

// The SOCKS5 answers in every shape: one byte per write, a bound address given as a
// name (variable length), a refusal after a split answer. A canned proxy that then
// closes: success shows as the upgrade failing, not the tunnel.
TEST_P(NetworkContract, Socks5AnswersSplitByteByByteAreReadWhole) {
  if (!connector()->capabilities().socks5_proxies) GTEST_SKIP() << "no SOCKS5 in this adapter (tested above)";
  for (bool refuse : {false, true}) {
    SCOPED_TRACE(refuse ? "refusal" : "success");
    std::uint16_t port = 0;
    int listener = test::listen_loopback(port);
    ASSERT_GE(listener, 0);
    std::thread proxy([listener, refuse] {
      int fd = ::accept(listener, nullptr, nullptr);
      if (fd < 0) return;
      auto read_some = [fd] {
        char buffer[512];
        pollfd p{fd, POLLIN, 0};
        if (::poll(&p, 1, 5000) > 0) (void)::recv(fd, buffer, sizeof buffer, 0);
      };
      auto send_split = [fd](const std::string& bytes) {
        for (char c : bytes) {
          (void)::send(fd, &c, 1, MSG_NOSIGNAL);
          ::poll(nullptr, 0, 2);  // separate segments
        }
      };
      read_some();  // the greeting
      send_split(std::string("\x05\x00", 2));
      read_some();  // CONNECT
      std::string answer = refuse ? std::string("\x05\x05\x00\x01\x7f\x00\x00\x01\x00\x50", 10)
                                  : std::string("\x05\x00\x00\x03\x09localhost\x00\x50", 16);
      send_split(answer);
      if (!refuse) read_some();  // the upgrade request: proof the tunnel was taken as open
      ::close(fd);
    });
    auto r = harness->request();
    r.proxy = parse_proxy_url("socks5h://127.0.0.1:" + std::to_string(port)).value();
    auto result = dial(r);
    proxy.join();
    ::close(listener);
    ASSERT_FALSE(result);
    if (refuse) {
      EXPECT_TRUE(result.error().is(errc::proxy_failed)) << result.error().message();
      EXPECT_NE(result.error().message().find("with 5 (connection refused)"), std::string::npos)
          << result.error().message();
    } else {
      EXPECT_FALSE(result.error().is(errc::proxy_failed)) << "the answer was read whole: " << result.error().message();
    }
    connection.reset();
  }
}

TEST_P(NetworkContract, AProxyThatCannotTunnelSaysWhyAndWhoAnswered) {
  test::Tinyproxy proxy;
  ASSERT_TRUE(proxy.ok()) << proxy.error();
  auto r = harness->request();
  // The proxy cannot reach the server: tinyproxy answers 500 "Unable to connect".
  r.url = parse_url("ws://127.0.0.1:" + std::to_string(test::unused_port()) + "/").value();
  r.proxy = parse_proxy_url(proxy.url()).value();
  auto result = dial(r);
  ASSERT_FALSE(result);
  EXPECT_TRUE(result.error().is(errc::proxy_failed)) << result.error().message();
  EXPECT_EQ(result.error().http_status, 500);
  connection.reset();

  // A gateway that answers 502.
  test::CannedHttpServer gateway("HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n");
  r.proxy = parse_proxy_url("http://127.0.0.1:" + std::to_string(gateway.port())).value();
  result = dial(r);
  ASSERT_FALSE(result);
  EXPECT_TRUE(result.error().is(errc::proxy_failed)) << result.error().message();
  EXPECT_EQ(result.error().http_status, 502);
  EXPECT_NE(result.error().message().find("502"), std::string::npos) << result.error().message();
  connection.reset();

  // A proxy that is not there: refused, and the error names the proxy, not the server.
  r.proxy = parse_proxy_url("http://127.0.0.1:" + std::to_string(test::unused_port())).value();
  result = dial(r);
  ASSERT_FALSE(result);
  EXPECT_TRUE(result.error().is(errc::connection_refused)) << result.error().message();
  EXPECT_NE(result.error().message().find("proxy http://127.0.0.1:"), std::string::npos) << result.error().message();
  connection.reset();

  // The default retry policy gives up on 407 and keeps trying after a 502.
  Error needs_credentials(errc::proxy_failed, "407");
  needs_credentials.http_status = 407;
  EXPECT_FALSE(default_retry_policy(needs_credentials, 0, {}).retry);
  EXPECT_TRUE(default_retry_policy(result.error(), 0, {}).retry);
}

TEST_P(NetworkContract, ChosenAddressesAreTriedInOrderOrRefusedByName) {
  RealHarness server(connector());
  auto r = server.request();
  // A name nobody resolves: the addresses say where it is; the first refuses.
  r.url.host = "several-addresses.test";
  r.addresses = {"127.0.0.2", "127.0.0.1"};
  auto result = dial(r);
  if (!connector()->capabilities().chosen_addresses) {
    ASSERT_FALSE(result);
    EXPECT_TRUE(result.error().is(errc::unsupported)) << result.error().message();
    return;
  }
  ASSERT_TRUE(result) << result.error().message();
  EXPECT_EQ(server.request_header("Host"), "several-addresses.test:" + std::to_string(server.server().port()));
  auto p = server.accept(5s);
  ASSERT_TRUE(p);
  p->start_echo();
  expect_echo("second address");
  connection.reset();
  p.reset();

  // Every address refuses: the error lists each one.
  r.addresses = {"127.0.0.2", "127.0.0.3"};
  result = dial(r);
  ASSERT_FALSE(result);
  EXPECT_TRUE(result.error().is(errc::connection_refused)) << result.error().message();
  EXPECT_NE(result.error().message().find("tried 2 addresses: 127.0.0.2"), std::string::npos)
      << result.error().message();
  EXPECT_NE(result.error().message().find("127.0.0.3"), std::string::npos) << result.error().message();
  connection.reset();

  r.addresses = {"not-an-address"};
  result = dial(r);
  ASSERT_FALSE(result);
  EXPECT_TRUE(result.error().is(errc::invalid_option)) << result.error().message();
}

TEST_P(NetworkContract, AUnixSocketCarriesTheWebSocketOrIsRefusedByName) {
  ServerSetup setup;
  setup.options.unix_socket = test::temp_dir() + "/ws.sock";
  RealHarness local(connector(), setup);
  auto r = local.request();
  ASSERT_EQ(r.url.unix_socket, setup.options.unix_socket);
  auto result = dial(r);
  if (!connector()->capabilities().unix_sockets) {
    ASSERT_FALSE(result);
    EXPECT_TRUE(result.error().is(errc::unsupported)) << result.error().message();
    return;
  }
  ASSERT_TRUE(result) << result.error().message();
  EXPECT_EQ(local.request_header("Host"), "localhost");
  auto p = local.accept(5s);
  ASSERT_TRUE(p);
  p->start_echo();
  expect_echo("over a unix socket");
  std::string big(1 << 20, 'u');
  expect_echo(big);
  EXPECT_FALSE(connection->close({close_code::normal, {}}, 5s));
  connection.reset();
  p.reset();

  // No socket file: the error names the path. A proxy never applies to it.
  r.url = parse_url("ws+unix://" + setup.options.unix_socket + ".missing:/x").value();
  r.proxy = parse_proxy_url("http://127.0.0.1:1").value();
  result = dial(r);
  ASSERT_FALSE(result);
  EXPECT_TRUE(result.error().is(errc::connect_failed)) << result.error().message();
  EXPECT_NE(result.error().message().find(".missing"), std::string::npos) << result.error().message();
}

INSTANTIATE_TEST_SUITE_P(Adapters, NetworkContract, ::testing::ValuesIn(network_adapters()), adapter_name);
INSTANTIATE_TEST_SUITE_P(Adapters, CertificateContract, ::testing::ValuesIn(network_adapters()), adapter_name);
