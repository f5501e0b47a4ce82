// Streamed messages (EngineOptions::stream): on_message gets a message in parts as it
// arrives. Over real sockets against the project's server, on every real adapter in
// every delivery mode (websocketpp refuses by name), with one and several reader
// slots, dozens of streams on one runtime (some stalled mid-message, some slow to
// consume), and the watchdog over a message that trickles in.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <fstream>
#include <future>
#include <map>
#include <mutex>
#include <thread>

#include <wscengine/wscengine.hpp>

#include "frames.hpp"
#include "support/process.hpp"
#include "support/real_adapters.hpp"
#include "support/recorder.hpp"
#include "support/text.hpp"
#include "test_server.hpp"

using namespace wscengine;
using namespace wscengine::test;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

constexpr std::size_t kPart = 4096;

// RFC 3629 without the UTF-8 state machine of the library under test.
bool valid_utf8(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    std::size_t n = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xe ? 3 : (c >> 3) == 0x1e ? 4 : 0;
    if (n == 0 || i + n > s.size()) return false;
    for (std::size_t k = 1; k < n; ++k)
      if ((static_cast<unsigned char>(s[i + k]) & 0xc0) != 0x80) return false;
    i += n;
  }
  return true;
}

// Text of 1-, 2-, 3- and 4-byte code points, `size` bytes (a multiple of 10).
std::string mixed_text(std::size_t size) {
  std::string text;
  while (text.size() < size) text += "a\xc3\xb1\xe2\x82\xac\xf0\x9f\x98\x80";
  return text.substr(0, size);
}

// `payload` as a text message in frames of `piece` bytes (code points cut).
std::string fragmented_text(const std::string& payload, std::size_t piece) {
  std::string out;
  for (std::size_t at = 0; at < payload.size(); at += piece) {
    const bool first = at == 0, last = at + piece >= payload.size();
    out += tools::server_frame(static_cast<std::uint8_t>((last ? 0x80 : 0x00) | (first ? 0x01 : 0x00)),
                               payload.substr(at, piece));
  }
  return out;
}

struct Script {
  std::string bytes;
  std::vector<std::pair<MessageType, std::string>> messages;
};

// Small whole messages between large ones: a single 300 KB binary frame, 100 KB of text
// in 7-byte frames, 64 KB of text in one frame.
Script script() {
  Script s;
  std::string binary(300000, '\0');
  for (std::size_t i = 0; i < binary.size(); ++i) binary[i] = static_cast<char>(i * 31);
  const std::string text = mixed_text(100000), one_frame = mixed_text(65530);
  s.bytes = tools::server_frame(0x81, "hello") + tools::server_frame(0x82, binary) + fragmented_text(text, 7) +
            tools::server_frame(0x81, "between") + tools::server_frame(0x81, one_frame) +
            tools::server_frame(0x81, "bye");
  s.messages = {{MessageType::text, "hello"},   {MessageType::binary, binary},  {MessageType::text, text},
                {MessageType::text, "between"}, {MessageType::text, one_frame}, {MessageType::text, "bye"}};
  return s;
}

// What on_message saw, joined per message (sequence), with each part checked.
struct Collected {
  std::mutex mutex;
  std::condition_variable cv;
  std::map<std::uint64_t, std::pair<MessageType, std::string>> messages;
  std::map<std::uint64_t, std::size_t> parts;
  std::vector<std::string> problems;
  std::size_t complete = 0;

  void add(const Message& m) {
    std::lock_guard lock(mutex);
    auto& [type, payload] = messages[m.sequence];
    if (m.is_first()) type = m.type;
    if (m.type != type) problems.push_back(cat("a part of message ", m.sequence, " changed type"));
    if (m.is_text() && !valid_utf8(m.payload)) problems.push_back(cat("a part of ", m.sequence, " is not UTF-8"));
    // A text part may carry up to 3 bytes of a code point cut at the previous part's end.
    if (m.payload.size() > kPart + 3) problems.push_back(cat("a part of ", m.payload.size(), " bytes"));
    payload += m.payload;
    ++parts[m.sequence];
    if (m.is_last()) {
      ++complete;
      cv.notify_all();
    }
  }
  bool wait_complete(std::size_t n, std::chrono::milliseconds timeout) {
    std::unique_lock lock(mutex);
    return cv.wait_for(lock, timeout, [&] { return complete >= n; });
  }
};

class Streamed : public ::testing::TestWithParam<RealAdapter> {
 protected:
  tools::TestServer server;
  std::unique_ptr<Engine> engine;

  EngineOptions options(std::size_t slots) {
    EngineOptions o;
    o.url = server.url("/");
    o.delivery = GetParam().delivery;
    o.reader_slots = slots;
    o.auto_reconnect = false;
    o.stream.enabled = true;
    o.stream.max_part_size = kPart;
    o.close_timeout = 2s;
    return o;
  }
  bool refused_by_adapter() const { return GetParam().name.rfind("websocketpp", 0) == 0; }
  void TearDown() override {
    if (engine) engine->stop();
    engine.reset();
    server.stop();
  }
};

// Every message whole after its parts, in sequence order, each text part valid UTF-8,
// with 1 and 4 reader slots (the Recorder checks the parts of one message come in
// order, one at a time, with offsets that add up).
TEST_P(Streamed, PartsMakeEachMessageInOrderWithOneSequence) {
  const Script s = script();
  server.on_session = [&](tools::ServerSession& session) {
    session.send_raw(s.bytes);
    tools::echo_session(session);  // until the client closes
  };
  server.start();
  for (std::size_t slots : {std::size_t{1}, std::size_t{4}}) {
    SCOPED_TRACE(cat(slots, " reader slots"));
    auto recorder = std::make_shared<Recorder>(slots);
    Collected got;
    recorder->on_message_hook = [&](Context&, const Message& m) {
      if (slots > 1) std::this_thread::sleep_for(100us);  // parts of one message would overlap
      got.add(m);
    };
    engine = std::make_unique<Engine>(options(slots), recorder, GetParam().make());
    Error started = engine->start();
    if (refused_by_adapter()) {
      ASSERT_TRUE(started.is(errc::unsupported)) << started.message();
      EXPECT_THAT(started.message(), ::testing::HasSubstr("stream"));
      engine.reset();
      return;
    }
    ASSERT_FALSE(started) << started.message();
    ASSERT_TRUE(got.wait_complete(s.messages.size(), 20s)) << got.complete << " messages";
    stop_and_check(engine, *recorder);
    std::lock_guard lock(got.mutex);
    EXPECT_THAT(got.problems, ::testing::IsEmpty());
    ASSERT_EQ(got.messages.size(), s.messages.size());
    std::uint64_t sequence = 0;
    for (const auto& [type, payload] : s.messages) {
      const auto& m = got.messages[sequence];
      EXPECT_EQ(m.first, type) << "message " << sequence;
      EXPECT_EQ(m.second.size(), payload.size()) << "message " << sequence;
      EXPECT_TRUE(m.second == payload) << "message " << sequence << " came out changed";
      if (payload.size() > kPart + 3) {
        EXPECT_GT(got.parts[sequence], 1u) << "message " << sequence;
      }
      ++sequence;
    }
    auto stats = recorder->events_of(Event::message);
    EXPECT_GT(stats.size(), s.messages.size()) << "parts were delivered";
  }
}

// Dozens of streams on one runtime: 16 get a 2 MiB message each while 8 others stall
// in the middle of theirs and 4 of the 16 consume slowly. Every complete stream is
// delivered whole; the stalled ones got their first parts and no last.
TEST_P(Streamed, StalledAndSlowStreamsDoNotHoldTheOthers) {
  if (refused_by_adapter()) GTEST_SKIP() << "refused (tested above)";
  constexpr std::size_t kFlowing = 16, kStalled = 8, kSlow = 4;
  const std::string payload(2u << 20, 'p');
  const std::string frame = tools::server_frame(0x82, payload);
  std::mutex stall_mutex;
  std::condition_variable stall_cv;
  bool released = false;
  server.on_session = [&](tools::ServerSession& session) {
    if (session.target() == "/stall") {
      session.send_raw(std::string_view(frame).substr(0, frame.size() / 2));
      std::unique_lock lock(stall_mutex);
      stall_cv.wait_for(lock, 60s, [&] { return released; });
      return;
    }
    session.send_raw(frame);
    tools::echo_session(session);
  };
  server.start();
  auto runtime = Runtime::create();
  struct Stream {
    std::atomic<std::uint64_t> bytes{0};
    std::atomic<int> firsts{0}, lasts{0};
  };
  std::vector<std::unique_ptr<Stream>> streams;
  std::vector<std::unique_ptr<Engine>> engines;
  for (std::size_t i = 0; i < kFlowing + kStalled; ++i) {
    auto& stream = *streams.emplace_back(std::make_unique<Stream>());
    auto client = std::make_shared<LambdaClient>();
    const bool slow = i < kSlow;
    client->message = [&stream, slow](Context&, const Message& m) {
      if (slow) std::this_thread::sleep_for(1ms);
      stream.bytes += m.payload.size();
      if (m.is_first()) ++stream.firsts;
      if (m.is_last()) ++stream.lasts;
    };
    auto o = options(1);
    o.url = server.url(i < kFlowing ? "/flow" : "/stall");
    engines.push_back(std::make_unique<Engine>(o, client, GetParam().make(), runtime));
    ASSERT_FALSE(engines.back()->start());
  }
  const auto deadline = Clock::now() + 30s;
  auto all_flowing_done = [&] {
    for (std::size_t i = 0; i < kFlowing; ++i)
      if (streams[i]->lasts.load() != 1) return false;
    return true;
  };
  while (!all_flowing_done() && Clock::now() < deadline) std::this_thread::sleep_for(5ms);
  for (std::size_t i = 0; i < kFlowing; ++i) {
    EXPECT_EQ(streams[i]->bytes.load(), payload.size()) << "stream " << i;
    EXPECT_EQ(streams[i]->lasts.load(), 1) << "stream " << i;
  }
  // The stalled streams have what their server sent so far (definite: its first half
  // was written before it stalled), in parts, and no end.
  for (std::size_t i = kFlowing; i < streams.size(); ++i) {
    while (streams[i]->bytes.load() < payload.size() / 2 - kPart && Clock::now() < deadline)
      std::this_thread::sleep_for(5ms);
    EXPECT_GE(streams[i]->bytes.load(), payload.size() / 2 - kPart) << "stalled stream " << i;
    EXPECT_EQ(streams[i]->firsts.load(), 1) << "stalled stream " << i;
    EXPECT_EQ(streams[i]->lasts.load(), 0) << "stalled stream " << i;
  }
  {
    std::lock_guard lock(stall_mutex);
    released = true;
  }
  stall_cv.notify_all();
  for (auto& e : engines) EXPECT_FALSE(e->stop());
  engines.clear();
}

// A message that trickles in for four times max_silence is not silence: its parts keep
// the stale-data watchdog quiet, and the message completes.
TEST_P(Streamed, AMessageTricklingInKeepsTheWatchdogQuiet) {
  if (refused_by_adapter()) GTEST_SKIP() << "refused (tested above)";
  constexpr std::size_t kPieces = 16;
  const std::string payload(kPieces * kPart, 't');
  const std::string frame = tools::server_frame(0x82, payload);
  const std::size_t header = frame.size() - payload.size();
  server.on_session = [&](tools::ServerSession& session) {
    session.send_raw(std::string_view(frame).substr(0, header));
    for (std::size_t i = 0; i < kPieces; ++i) {
      std::this_thread::sleep_for(100ms);
      session.send_raw(std::string_view(frame).substr(header + i * kPart, kPart));
    }
    tools::echo_session(session);
  };
  server.start();
  auto recorder = std::make_shared<Recorder>();
  Collected got;
  recorder->on_message_hook = [&](Context&, const Message& m) { got.add(m); };
  auto o = options(1);
  o.max_silence = 400ms;
  engine = std::make_unique<Engine>(o, recorder, GetParam().make());
  ASSERT_FALSE(engine->start());
  ASSERT_TRUE(got.wait_complete(1, 20s));
  EXPECT_TRUE(recorder->events_of(Event::read_error).empty()) << "the watchdog restarted a streaming session";
  EXPECT_EQ(got.messages[0].second.size(), payload.size());
  EXPECT_GE(got.parts[0], kPieces / 2) << "the message came in parts as it arrived";
  stop_and_check(engine, *recorder);
}

// ------------------------------------------------------------------ sending in parts

// The digest the server computes of a message, as text: "size fnv1a".
std::string digest_text(std::uint64_t size, std::uint64_t fnv) { return cat(size, " ", fnv); }

// A server that answers every message with its digest (read in pieces: any size).
void digest_session(tools::ServerSession& session) {
  for (;;) {
    auto digest = session.read_digest(60s);
    if (!digest) return;
    if (session.send(MessageType::text, digest_text(digest->size, digest->fnv1a))) return;
  }
}

class StreamedSend : public Streamed {
 protected:
  EngineOptions send_options() {
    auto o = options(1);
    o.stream = {};
    return o;
  }
};

// A message in parts goes whole; sends from another thread meanwhile wait behind it and
// follow in order; a second message in parts is refused while one is open.
TEST_P(StreamedSend, AMessageInPartsGoesWholeAndOtherSendsWaitBehindIt) {
  server.on_session = digest_session;
  server.start();
  auto recorder = std::make_shared<Recorder>();
  engine = std::make_unique<Engine>(send_options(), recorder, GetParam().make());
  ASSERT_FALSE(engine->start());
  auto writer = engine->begin_message(MessageType::binary);
  ASSERT_TRUE(writer) << writer.error().message();
  auto second = engine->begin_message(MessageType::text);
  ASSERT_FALSE(second);
  EXPECT_TRUE(second.error().is(errc::invalid_option)) << second.error().message();
  constexpr int kOthers = 20;
  std::atomic<int> sent_others{0};
  std::thread others([&] {
    for (int i = 0; i < kOthers; ++i) {
      EXPECT_FALSE(engine->send_text(cat("other ", i)));
      ++sent_others;
      std::this_thread::sleep_for(200us);
    }
  });
  std::string part(32 * 1024, '\0');
  std::uint64_t fnv = tools::fnv1a("");
  std::uint64_t size = 0;
  for (int i = 0; i < 32; ++i) {
    for (std::size_t k = 0; k < part.size(); ++k) part[k] = static_cast<char>(i * 7 + k);
    Error e = writer->write(part);
    ASSERT_FALSE(e) << e.message();
    fnv = tools::fnv1a(part, fnv);
    size += part.size();
    if (i == 16) {  // the others are being sent meanwhile
      const auto until = Clock::now() + 5s;
      while (sent_others.load() < kOthers / 2 && Clock::now() < until) std::this_thread::sleep_for(1ms);
    }
  }
  ASSERT_FALSE(writer->finish("end"));
  fnv = tools::fnv1a("end", fnv);
  size += 3;
  EXPECT_FALSE(writer->active());
  others.join();
  ASSERT_TRUE(recorder->wait_count(Event::message, 1 + kOthers, 20s));
  auto replies = recorder->events_of(Event::message);
  EXPECT_EQ(replies[0].payload, digest_text(size, fnv)) << "the message in parts went first, whole";
  for (int i = 0; i < kOthers; ++i) {
    const std::string other = cat("other ", i);
    EXPECT_EQ(replies[1 + i].payload, digest_text(other.size(), tools::fnv1a(other))) << "other " << i;
  }
  // Counted once each has reached the kernel (websocketpp: once the peer's pong to a
  // later marker ping says so), so the last count may come after the replies.
  const auto until = Clock::now() + 10s;
  while (engine->stats().traffic.messages_sent < 1u + kOthers && Clock::now() < until) std::this_thread::sleep_for(1ms);
  EXPECT_EQ(engine->stats().traffic.messages_sent, 1u + kOthers) << "a message in parts counts once";
  stop_and_check(engine, *recorder);
}

// 1 GiB (128 MiB under the sanitizers) in parts of 1 MiB, at most 4 in flight: the
// server's digest matches, and this process's memory grows by far less than the message.
TEST_P(StreamedSend, AGibibyteInPartsWithBoundedMemory) {
#if defined(__SANITIZE_ADDRESS__)
  // ASan keeps freed memory in its quarantine (256 MiB by default) before reuse, so the
  // 1 MiB copies the adapters make of each part show in RSS: the bound allows for it.
  constexpr std::size_t kParts = 128;
  constexpr long kRssBoundKib = (64 + 256) * 1024;
#elif defined(__SANITIZE_THREAD__)
  constexpr std::size_t kParts = 128;
  constexpr long kRssBoundKib = 64 * 1024;
#else
  constexpr std::size_t kParts = 1024;
  constexpr long kRssBoundKib = 64 * 1024;
#endif
  server.on_session = digest_session;
  server.start();
  auto recorder = std::make_shared<Recorder>();
  engine = std::make_unique<Engine>(send_options(), recorder, GetParam().make());
  ASSERT_FALSE(engine->start());
  const long before = rss_kib();
  long peak = before;
  auto writer = engine->begin_message(MessageType::binary);
  ASSERT_TRUE(writer) << writer.error().message();
  std::mutex mutex;
  std::condition_variable cv;
  int in_flight = 0;
  Error failed;
  std::string part(1u << 20, '\0');
  std::uint64_t fnv = tools::fnv1a("");
  for (std::size_t i = 0; i < kParts; ++i) {
    for (std::size_t k = 0; k < part.size(); k += 4096) part[k] = static_cast<char>(i + k / 4096);
    fnv = tools::fnv1a(part, fnv);
    {
      std::unique_lock lock(mutex);
      ASSERT_TRUE(cv.wait_for(lock, 30s, [&] { return in_flight < 4; })) << "a part was never sent";
      ++in_flight;
    }
    Error e = writer->write(part, [&](Error outcome) {
      std::lock_guard lock(mutex);
      --in_flight;
      if (outcome) failed = outcome;
      cv.notify_all();
    });
    ASSERT_FALSE(e) << e.message();
    if (i % 16 == 0) peak = std::max(peak, rss_kib());
  }
  ASSERT_FALSE(writer->finish());
  ASSERT_TRUE(recorder->wait_count(Event::message, 1, 60s));
  peak = std::max(peak, rss_kib());
  EXPECT_EQ(recorder->events_of(Event::message)[0].payload, digest_text(kParts << 20, fnv));
  {
    std::lock_guard lock(mutex);
    EXPECT_FALSE(failed) << failed.message();
  }
  EXPECT_LT(peak - before, kRssBoundKib) << "sending " << kParts << " MiB grew this process by "
                                         << (peak - before) / 1024 << " MiB";
  stop_and_check(engine, *recorder);
}

// A writer given up before finish() drops the connection (the peer would wait for the
// rest forever): the session ends as a drop, and the send that waited behind it fails.
TEST_P(StreamedSend, AWriterGivenUpDropsTheConnectionAndFailsWhatWaited) {
  server.on_session = digest_session;
  server.start();
  auto recorder = std::make_shared<Recorder>();
  engine = std::make_unique<Engine>(send_options(), recorder, GetParam().make());
  ASSERT_FALSE(engine->start());
  std::promise<Error> waited;
  {
    auto writer = engine->begin_message(MessageType::text);
    ASSERT_TRUE(writer) << writer.error().message();
    ASSERT_FALSE(writer->write("the beginning"));
    ASSERT_FALSE(engine->async_send(MessageType::text, "behind it", [&](Error e) { waited.set_value(std::move(e)); }));
  }
  auto outcome = waited.get_future();
  ASSERT_EQ(outcome.wait_for(10s), std::future_status::ready);
  EXPECT_TRUE(outcome.get()) << "a send behind a message that never ended was reported sent";
  ASSERT_FALSE(engine->wait_stopped(10s));
  auto closes = recorder->events_of(Event::close);
  ASSERT_EQ(closes.size(), 1u);
  ASSERT_TRUE(closes[0].received);
  EXPECT_EQ(closes[0].received->code, close_code::abnormal);
  EXPECT_EQ(recorder->count(Event::message), 0u) << "the server took a cut message for whole";
  stop_and_check(engine, *recorder);
}

INSTANTIATE_TEST_SUITE_P(Adapters, Streamed, ::testing::ValuesIn(engine_variants()), AdapterName());
INSTANTIATE_TEST_SUITE_P(Adapters, StreamedSend, ::testing::ValuesIn(engine_variants()), AdapterName());

}  // namespace
