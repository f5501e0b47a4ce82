// The `wscengine` command-line tool, run as a process against its own `serve`, a
// Python `websockets` server and a Node `ws` server.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <cctype>
#include <fstream>
#include <iterator>
#include <set>
#include <sstream>

#include "support/http_proxy.hpp"
#include "support/process.hpp"
#include "support/test_pki.hpp"
#include "support/text.hpp"
#include "test_server.hpp"

using namespace wscengine;
using namespace wscengine::test;
using namespace std::chrono_literals;
using ::testing::HasSubstr;
using ::testing::Not;

namespace {

const std::string kCli = WSCENGINE_CLI;

CommandResult cli(std::vector<std::string> args, const std::string& input = {}, std::chrono::milliseconds timeout = 30s,
                  const std::string& interrupt_when = {}) {
  args.insert(args.begin(), kCli);
  return run_command(args, input, timeout, interrupt_when);
}

// A server process that prints its URL first; killed at the end of the test.
class Peer {
 public:
  explicit Peer(std::vector<std::string> argv) : process_(std::move(argv)) { url_ = process_.first_line(20s); }
  const std::string& url() const { return url_; }

 private:
  ChildProcess process_;
  std::string url_;
};

Peer serve(std::vector<std::string> args) {
  args.insert(args.begin(), {kCli, "serve"});
  return Peer(args);
}
Peer python() { return Peer({"/usr/bin/python3", WSCENGINE_PY_SERVER}); }
Peer node() { return Peer({"node", WSCENGINE_NODE_SERVER}); }

std::string last_line(const std::string& text) {
  auto end = text.find_last_not_of('\n');
  if (end == std::string::npos) return {};
  auto start = text.rfind('\n', end);
  return text.substr(start == std::string::npos ? 0 : start + 1,
                     end - (start == std::string::npos ? 0 : start + 1) + 1);
}

std::vector<std::string> lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

}  // namespace

// --help names what --stats and bench print (every flag: see
// TheManPageAndCompletionNameEveryFlagOfHelp, which checks them against the parser's tables).
TEST(Cli, HelpDocumentsWhatTheToolPrints) {
  auto r = cli({"--help"});
  ASSERT_EQ(r.exit_code, 0);
  for (const char* field :
       {"connect URL", "serve", "bench feed", "bench echo", "bench reconnect", "ws+unix://", "bench connections",
        "bench storm", "rtt_us", "queued_bytes", "max_rss_kib", "http2_connections", "tls_resumed"}) {
    EXPECT_THAT(r.out, HasSubstr(field));
  }
  EXPECT_EQ(cli({"connect", "--help"}).exit_code, 0);
}

// --pin against Python `websockets` over TLS: a pinned key in the chain is accepted, an
// unrelated one is refused at once (exit 1, naming the server's key, not retried), and
// a pin that is not one is a usage error.
TEST(Cli, PinnedPublicKeysAcceptTheServerOrSayWhyNot) {
  TestPki pki = make_test_pki();
  Peer secure({"/usr/bin/python3", WSCENGINE_PY_SERVER, "--tls", pki.server_chain, pki.server_key});
  ASSERT_EQ(secure.url().rfind("wss://", 0), 0u) << secure.url();
  const std::string url = secure.url() + "/echo";
  for (std::string adapter : {"beast", "websocketpp"}) {
    SCOPED_TRACE(adapter);
    auto pinned = cli({"connect", url, "--adapter", adapter, "--ca-file", pki.ca_file, "--pin", pki.unrelated_pin,
                       "--pin", pki.ca_pin, "--send", "pinned", "--count", "1"});
    EXPECT_EQ(pinned.exit_code, 0) << pinned.err;
    EXPECT_THAT(pinned.out, HasSubstr("pinned"));
    // With --insecure the server's own key is what a pin can hold it to.
    auto lab = cli(
        {"connect", url, "--adapter", adapter, "--insecure", "--pin", pki.server_pin, "--send", "lab", "--count", "1"});
    EXPECT_EQ(lab.exit_code, 0) << lab.err;
    EXPECT_THAT(lab.out, HasSubstr("lab"));
    // Reconnecting is on: the refusal still ends the run, since retrying cannot help.
    auto wrong = cli({"connect", url, "--adapter", adapter, "--ca-file", pki.ca_file, "--pin", pki.unrelated_pin});
    EXPECT_EQ(wrong.exit_code, 1) << wrong.err;
    EXPECT_THAT(wrong.err, HasSubstr("tls.pinned_public_keys"));
    EXPECT_THAT(wrong.err, HasSubstr(pki.server_pin));
  }
  auto bad = cli({"connect", url, "--pin", "d6qzRu9zOECb90Uez27xWltNsj0e1Md7GkYYkVoZWmM"});  // no padding
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_THAT(bad.err, HasSubstr("--pin"));
  EXPECT_EQ(lines(bad.err).size(), 1u) << bad.err;
}

// The compression flags reach the offer (each implies --compress), and Python
// `websockets` and Node `ws` answer them; what they answered is what they echo first.
TEST(Cli, CompressionParametersAreOfferedAndAnsweredByPythonAndNode) {
  Peer py = python();
  Peer js({"node", WSCENGINE_NODE_SERVER, "--deflate"});
  for (const Peer* peer : {&py, &js}) {
    SCOPED_TRACE(peer->url());
    auto plain = cli({"connect", peer->url() + "/extensions", "--compress", "--count", "1", "--send", "x"});
    EXPECT_EQ(plain.exit_code, 0) << plain.err;
    EXPECT_THAT(plain.out, HasSubstr("permessage-deflate"));
    auto asked = cli({"connect", peer->url() + "/extensions", "--server-max-window-bits", "10",
                      "--client-max-window-bits", "9", "--server-no-context-takeover", "--client-no-context-takeover",
                      "--compression-level", "1", "--compress-min-size", "16", "--count", "1"});
    EXPECT_EQ(asked.exit_code, 0) << asked.err;
    for (const char* granted : {"server_max_window_bits=10", "client_max_window_bits=9", "server_no_context_takeover",
                                "client_no_context_takeover"})
      EXPECT_THAT(asked.out, HasSubstr(granted));
    // Messages that compress well and badly, echoed with those parameters.
    std::string input;
    for (int i = 0; i < 200; ++i) input += std::string(i % 3 == 0 ? 1 : 300, static_cast<char>('a' + i % 26)) + "\n";
    for (int i = 0; i < 50; ++i) input += cat("noise ", i * 7919, " ", i * 104729 % 65521, " ", i ^ 0x5a5a, "\n");
    auto echoed = cli({"connect", peer->url() + "/echo", "--client-max-window-bits", "9", "--server-max-window-bits",
                       "9", "--count", "250", "--quiet", "--stats"},
                      input);
    EXPECT_EQ(echoed.exit_code, 0) << echoed.err;
    EXPECT_THAT(last_line(echoed.err), HasSubstr("\"messages\":250"));
  }
  auto low = cli({"connect", py.url() + "/echo", "--server-max-window-bits", "8"});
  EXPECT_EQ(low.exit_code, 2);
  EXPECT_THAT(low.err, HasSubstr("--server-max-window-bits"));
  auto wspp = cli({"connect", py.url() + "/echo", "--adapter", "websocketpp", "--client-no-context-takeover"});
  EXPECT_EQ(wspp.exit_code, 1);
  EXPECT_THAT(wspp.err, HasSubstr("not supported by this adapter"));
}

// A compression bomb: one message of zeros, about 1 KiB per MiB on the wire, must end
// in 1009 at --max-message-size, with the client's peak memory near that limit and
// nowhere near the message (1 GiB; 512 MiB under the sanitizers, whose own memory
// is bounded separately).
TEST(Cli, ACompressionBombEndsIn1009WithinTheMessageLimit) {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  const int mib = 512;
  const long bound_kib = 320 * 1024;
#else
  const int mib = 1024;
  const long bound_kib = 48 * 1024;
#endif
  Peer py = python();
  auto r = cli({"connect", py.url() + "/bomb/" + std::to_string(mib), "--compress", "--max-message-size", "4194304",
                "--no-reconnect", "--stats"},
               {}, 60s);
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_THAT(r.err, HasSubstr("1009"));
  const std::string stats = last_line(r.err);
  auto at = stats.find("\"max_rss_kib\":");
  ASSERT_NE(at, std::string::npos) << stats;
  long rss_kib = std::stol(stats.substr(at + 14));
  EXPECT_LT(rss_kib, bound_kib) << "the client held " << rss_kib / 1024 << " MiB inflating a " << mib << " MiB bomb";
  EXPECT_THAT(stats, HasSubstr("\"messages\":0"));
}

// Streamed: one 1 GiB message (256 MiB under the sanitizers) in 1 MiB frames from Python
// `websockets` arrives as one message with the client's peak memory far below it;
// without --stream the same kind of message ends in 1009 at --max-message-size.
TEST(Cli, AGibibyteMessageStreamsInBoundedMemory) {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  const std::uint64_t mib = 256;
  const long bound_kib = 192 * 1024;  // the sanitizers' own memory
#else
  const std::uint64_t mib = 1024;
  const long bound_kib = 64 * 1024;
#endif
  Peer py = python();
  auto r = cli({"connect", py.url() + "/big/" + std::to_string(mib), "--stream", "--quiet", "--no-reconnect", "--count",
                "1", "--stats"},
               {}, 110s);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  const std::string stats = last_line(r.err);
  EXPECT_THAT(stats, HasSubstr("\"messages\":1,"));
  EXPECT_THAT(stats, HasSubstr("\"bytes\":" + std::to_string(mib << 20) + ","));
  auto at = stats.find("\"max_rss_kib\":");
  ASSERT_NE(at, std::string::npos) << stats;
  const long rss_kib = std::stol(stats.substr(at + 14));
  EXPECT_LT(rss_kib, bound_kib) << "the client held " << rss_kib / 1024 << " MiB receiving " << mib << " MiB";
  auto whole = cli({"connect", py.url() + "/big/32", "--quiet", "--no-reconnect", "--stats"});
  EXPECT_EQ(whole.exit_code, 1) << whole.err;
  EXPECT_THAT(whole.err, HasSubstr("1009"));
}

// --stream prints parts as they come: a text message cut into 7-byte frames (code points
// cut) is one line, a 1 MiB binary message a line per part with its offset.
TEST(Cli, StreamPrintsPartsAsTheyCome) {
  Peer py = python();
  auto text = cli({"connect", py.url() + "/bigtext/64", "--stream", "--no-reconnect", "--count", "1"});
  EXPECT_EQ(text.exit_code, 0) << text.err;
  std::string expected;
  while (expected.size() < 64 * 1024 - (64 * 1024) % 10) expected += "a\xc3\xb1\xe2\x82\xac\xf0\x9f\x98\x80";
  EXPECT_EQ(lines(text.out), std::vector<std::string>{expected});
  auto binary = cli({"connect", py.url() + "/big/1", "--stream", "--no-reconnect", "--count", "1"});
  EXPECT_EQ(binary.exit_code, 0) << binary.err;
  auto parts = lines(binary.out);
  ASSERT_GE(parts.size(), 2u) << binary.out;
  EXPECT_THAT(parts.front(), ::testing::StartsWith("<binary part at 0, "));
  EXPECT_THAT(parts.back(), HasSubstr(", last: "));
  auto wspp = cli({"connect", py.url() + "/echo", "--stream", "--adapter", "websocketpp", "--no-reconnect"});
  EXPECT_EQ(wspp.exit_code, 1);
  EXPECT_THAT(wspp.err, HasSubstr("stream"));
  EXPECT_EQ(cli({"connect", py.url() + "/echo", "--stream-max-size", "10"}).exit_code, 2);
  EXPECT_EQ(cli({"connect", py.url() + "/echo", "--stream", "--echo"}).exit_code, 2);
}

// --http2: a stream of an HTTP/2 connection to Hypercorn (said on the status line), and
// bench connections with 1000 engines (200 under the sanitizers) over one TCP connection,
// as the server counts them.
TEST(Cli, Http2ConnectsAsAStreamAndBenchSharesOneConnection) {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  const std::string engines = "200";
#else
  const std::string engines = "1000";
#endif
  TestPki pki = make_test_pki();
  Peer h2(
      {"/usr/bin/python3", WSCENGINE_H2_SERVER, "--tls", pki.server_chain, pki.server_key, "--max-streams", "2000"});
  ASSERT_EQ(h2.url().rfind("wss://", 0), 0u) << h2.url();
  auto r = cli({"connect", h2.url() + "/stats", "--ca-file", pki.ca_file, "--http2", "require", "--count", "2",
                "--send", "over h2"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.err, HasSubstr("HTTP 200, a stream of an HTTP/2 connection"));
  EXPECT_THAT(r.out, HasSubstr("\"http_version\": \"2\""));
  EXPECT_THAT(r.out, HasSubstr("over h2"));
  auto bench = cli(
      {"bench", "connections", h2.url() + "/scale", "--ca-file", pki.ca_file, "--http2", "require", "--count", engines},
      {}, 100s);
  EXPECT_EQ(bench.exit_code, 0) << bench.err;
  EXPECT_THAT(bench.out, HasSubstr("\"http2_streams\":" + engines + ",\"http2_connections\":1,"));
  // The server's count: the first connect's connection, the bench's one, and this one.
  auto count = cli({"connect", h2.url() + "/stats", "--ca-file", pki.ca_file, "--http2", "require", "--count", "1"});
  EXPECT_EQ(count.exit_code, 0) << count.err;
  EXPECT_THAT(count.out, HasSubstr("{\"connections\": 3,"));
  auto plain = cli({"connect", h2.url() + "/stats", "--ca-file", pki.ca_file, "--count", "1"});
  EXPECT_EQ(plain.exit_code, 0) << plain.err;
  EXPECT_THAT(plain.out, HasSubstr("\"http_version\": \"1.1\""));
  EXPECT_EQ(cli({"connect", h2.url(), "--http2", "sometimes"}).exit_code, 2);
  EXPECT_EQ(cli({"connect", "ws://127.0.0.1:1/", "--http2-cleartext"}).exit_code, 2);
  EXPECT_EQ(cli({"connect", "ws://127.0.0.1:1/", "--http2", "require"}).exit_code, 2);  // ws:// needs h2c
}

TEST(Cli, UsageErrorsAreOneLineAndExit2) {
  auto unknown = cli({"connect", "ws://127.0.0.1:1/", "--bogus"});
  EXPECT_EQ(unknown.exit_code, 2);
  EXPECT_THAT(unknown.err, HasSubstr("unknown option --bogus"));
  EXPECT_EQ(lines(unknown.err).size(), 1u) << unknown.err;
  auto workers = cli({"connect", "ws://127.0.0.1:1/", "--workers", "many"});
  EXPECT_EQ(workers.exit_code, 2);
  EXPECT_THAT(workers.err, HasSubstr("--workers"));
  EXPECT_EQ(cli({"connect"}).exit_code, 2);
  auto url = cli({"connect", "http://example.invalid/"});
  EXPECT_EQ(url.exit_code, 2);
  EXPECT_THAT(url.err, HasSubstr("invalid URL"));
  EXPECT_EQ(cli({"serve", "--mode", "chat"}).exit_code, 2);
  EXPECT_EQ(cli({"frobnicate"}).exit_code, 2);
}

TEST(Cli, ARefusedConnectionIsExit1WithTheReason) {
  auto r = cli({"connect", "ws://127.0.0.1:1/", "--no-reconnect"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("could not connect"));
  EXPECT_THAT(r.err, HasSubstr("refused"));
}

TEST(Cli, AFeedThatEndsNormallyIsPrintedAndCounted) {
  auto server = serve({"--mode", "feed", "--count", "5", "--rate", "0"});
  ASSERT_FALSE(server.url().empty());
  auto r = cli({"connect", server.url(), "--no-reconnect", "--stats"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(lines(r.out), (std::vector<std::string>{"tick 1", "tick 2", "tick 3", "tick 4", "tick 5"}));
  EXPECT_THAT(r.err, HasSubstr("closed by the server: code 1000"));
  std::string stats = last_line(r.err);
  EXPECT_THAT(stats, HasSubstr("\"messages\":5"));
  EXPECT_THAT(stats, HasSubstr("\"close_code\":1000"));
  EXPECT_THAT(stats, HasSubstr("\"reconnects\":0"));
  EXPECT_THAT(stats, HasSubstr("\"bytes\":30"));
}

// The feed server answers the client's close at once, also while the client's
// heartbeat pings arrive between its ticks (a read for them would wait for a message).
TEST(Cli, AFeedServerAnswersTheClientsCloseAndItsPings) {
  auto server = serve({"--mode", "feed", "--rate", "50"});
  for (const char* ping : {"0", "0.01"}) {
    auto r = cli({"connect", server.url(), "--count", "3", "--ping-interval", ping, "--stats"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(lines(r.out).size(), 3u) << "ticks arrive while pings go out: " << r.out;
    EXPECT_THAT(r.err, Not(HasSubstr("did not answer the close"))) << "--ping-interval " << ping;
    EXPECT_THAT(last_line(r.err), HasSubstr("\"close_code\":1000"));
  }
}

TEST(Cli, StdinLinesAndSendFlagsGoOutAndCountEndsTheRun) {
  auto server = serve({"--mode", "echo"});
  auto r = cli({"connect", server.url(), "--send", "first", "--count", "3", "--stats"}, "second\nthird\n");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(lines(r.out), (std::vector<std::string>{"first", "second", "third"}));
  EXPECT_THAT(last_line(r.err), HasSubstr("\"close_code\":1000"));
}

TEST(Cli, DropsAreReconnectedAndResubscribed) {
  auto server = serve({"--mode", "feed", "--drop-every", "3", "--rate", "200"});
  auto r = cli({"connect", server.url(), "--send", "subscribe ticks", "--count", "10", "--quiet", "--stats"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_TRUE(r.out.empty()) << "--quiet prints no messages";
  EXPECT_THAT(r.err, HasSubstr("code 1006"));
  EXPECT_THAT(r.err, HasSubstr("reconnected"));
  EXPECT_THAT(last_line(r.err), HasSubstr("\"messages\":10"));
  EXPECT_THAT(last_line(r.err), Not(HasSubstr("\"reconnects\":0")));
}

TEST(Cli, InterruptClosesWith1000AndExits0) {
  auto server = serve({"--mode", "echo"});
  auto r = cli({"connect", server.url(), "--stats"}, {}, 30s, "connected");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.err, HasSubstr("closing (code 1000)"));
}

TEST(Cli, ADeadPeerIsFoundByPingsAndLostWithoutReconnectIsExit1) {
  auto server = serve({"--mode", "silent"});  // never reads, so never answers a ping
  auto r =
      cli({"connect", server.url(), "--ping-interval", "0.2", "--pong-timeout", "0.2", "--no-reconnect", "--quiet"});
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_THAT(r.err, HasSubstr("no pong and no data within 200 ms"));
}

// Python `websockets` answers pings and sends nothing on /echo: --max-silence ends the
// session as stale (closed with 1001); without --no-reconnect the CLI reconnects.
TEST(Cli, MaxSilenceEndsAStaleSessionAndSaysSo) {
  Peer py = python();
  auto r = cli(
      {"connect", py.url() + "/echo", "--ping-interval", "0.05", "--max-silence", "0.3", "--no-reconnect", "--stats"});
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_THAT(r.err, HasSubstr("read error: no data for too long: no data message for"));
  EXPECT_THAT(r.err, HasSubstr("the client failed the connection with code 1001"));
  EXPECT_THAT(last_line(r.err), HasSubstr("\"close_code\":1001"));
  auto again = cli({"connect", py.url() + "/echo", "--max-silence", "0.2", "--quiet"}, {}, 30s, "reconnected");
  EXPECT_EQ(again.exit_code, 0) << again.err;
  EXPECT_THAT(again.err, HasSubstr("no data message for"));
  EXPECT_EQ(cli({"connect", py.url(), "--max-silence", "-1"}).exit_code, 2);
}

// --stats and --stats-every print the engine's statistics: the round trip from the
// heartbeat, what was sent, the queue, the session.
TEST(Cli, StatsEveryPrintsTheEngineStatistics) {
  Peer py = python();
  auto r = cli({"connect", py.url() + "/echo", "--ping-interval", "0.05", "--stats-every", "0.1", "--send", "hello",
                "--count", "1", "--quiet", "--stats"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  std::string final_line = last_line(r.err);
  EXPECT_THAT(final_line, HasSubstr("\"messages_sent\":1,\"bytes_sent\":5,\"queued_messages\":0"));
  EXPECT_THAT(final_line, HasSubstr("\"sessions\":1"));
  EXPECT_THAT(final_line, HasSubstr("\"last_error\":null"));
  // Python answers pings and sends nothing: lines every 0.1 s show the round trips of
  // pings every 0.05 s until --max-silence ends the session after 1 s (the definite end).
  auto periodic = cli({"connect", py.url() + "/echo", "--ping-interval", "0.05", "--stats-every", "0.1",
                       "--max-silence", "1", "--no-reconnect", "--quiet"});
  EXPECT_EQ(periodic.exit_code, 1) << periodic.err;
  std::size_t lines_with_rtt = 0;
  for (const auto& line : lines(periodic.err)) {
    if (line.find("\"rtt_us\":") != std::string::npos && line.find("\"rtt_us\":null") == std::string::npos)
      ++lines_with_rtt;
  }
  EXPECT_GE(lines_with_rtt, 1u) << periodic.err;
  EXPECT_EQ(cli({"connect", py.url(), "--stats-every", "x"}).exit_code, 2);
}

// --outage: lines read while no session is open wait for the next one (hold), make room
// by giving up the oldest (drop-oldest), or are given up after --outage-max-age; each
// line given up is reported. The server closes the first session at once and refuses
// reconnects until the CLI's statistics show what is held.
TEST(Cli, OutageHoldsLinesReadBetweenSessionsForTheNextOne) {
  struct Case {
    std::vector<std::string> flags;
    std::string held;      // the statistics once both lines are in
    std::string out;       // what the next session echoes
    std::string not_sent;  // the report of a line given up, if any
  };
  const std::vector<Case> cases = {
      {{"--outage", "hold"}, "\"held_messages\":2,", "one\ntwo\n", ""},
      {{"--outage", "drop-oldest", "--outage-max-messages", "1"},
       "\"sends_dropped\":1,",
       "two\n",
       "not sent: held send dropped for newer ones"},
      {{"--outage", "hold", "--outage-max-age", "0.2"}, "\"sends_expired\":2,", "", "not sent: held send expired"},
  };
  for (const char* adapter : {"beast", "websocketpp"}) {
    for (const auto& c : cases) {
      SCOPED_TRACE(std::string(adapter) + " " + c.flags[1]);
      std::atomic<int> sessions{0};
      std::atomic<bool> refusing{true};
      tools::TestServer server;
      server.on_request = [&](const std::string&, const std::vector<Header>&) {
        return sessions.load() >= 1 && refusing.load() ? 503 : 0;
      };
      server.on_session = [&](tools::ServerSession& s) {
        if (++sessions == 1) {
          (void)s.close({1012, "restart"});  // service restart
          return;
        }
        InboundMessage m;
        while (!s.read(m, 20s)) (void)s.send(m.type, m.payload);
      };
      server.start();
      std::vector<std::string> argv = {kCli, "connect", server.url(), "--adapter", adapter, "--stats-every", "0.05"};
      argv.insert(argv.end(), c.flags.begin(), c.flags.end());
      if (!c.out.empty()) argv.insert(argv.end(), {"--count", std::to_string(lines(c.out).size())});
      bool written = false;
      auto r = run_interactive(argv, 30s, [&](const CommandResult& so_far) {
        CommandStep step;
        if (!written && so_far.err.find("closed by the server: code 1012") != std::string::npos) {
          written = true;
          step.input = "one\ntwo\n";
        }
        if (written && so_far.err.find(c.held) != std::string::npos) {
          refusing = false;                // the next attempt opens a session that echoes
          step.interrupt = c.out.empty();  // nothing left to wait for
        }
        return step;
      });
      EXPECT_EQ(r.exit_code, 0) << r.err;
      EXPECT_EQ(r.out, c.out) << r.err;
      if (c.not_sent.empty()) {
        EXPECT_THAT(r.err, Not(HasSubstr("not sent"))) << r.err;
      } else {
        EXPECT_THAT(r.err, HasSubstr(c.not_sent)) << r.err;
      }
      server.stop();
    }
  }
  auto plain = serve({"--mode", "echo"});
  EXPECT_EQ(cli({"connect", plain.url(), "--outage", "keep"}).exit_code, 2);
  EXPECT_EQ(cli({"connect", plain.url(), "--outage-max-age", "1"}).exit_code, 2);
}

TEST(Cli, TraceWritesSpansAndMetricsToAFile) {
  auto server = serve({"--mode", "feed", "--count", "3", "--rate", "0"});
  std::string file = temp_dir() + "/trace.txt";
  auto r = cli({"connect", server.url(), "--no-reconnect", "--quiet", "--trace", file});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  std::ifstream in(file);
  std::stringstream text;
  text << in.rdbuf();
  EXPECT_THAT(text.str(), HasSubstr("span wscengine.on_message "));
  EXPECT_THAT(text.str(), HasSubstr("span wscengine.dial "));
  EXPECT_THAT(text.str(), HasSubstr("metric wscengine.messages.received{wscengine.message.type=text} 3"));
}

TEST(Cli, PythonPeerBinaryHeadersAndCloseCodes) {
  auto peer = python();
  ASSERT_FALSE(peer.url().empty()) << "the Python websockets server did not start";
  auto binary = cli({"connect", peer.url() + "/binary", "--count", "1"});
  EXPECT_EQ(binary.exit_code, 0) << binary.err;
  EXPECT_EQ(binary.out, "<binary 20 bytes: 00 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f …>\n");
  auto header = cli({"connect", peer.url() + "/header/X-Token", "--header", "X-Token: s3cret", "--count", "1"});
  EXPECT_EQ(header.out, "s3cret\n");
  auto redirected = cli({"connect", peer.url() + "/to/302/%2Fecho", "--send", "hi", "--count", "1"});
  EXPECT_EQ(redirected.exit_code, 0) << redirected.err;
  EXPECT_EQ(redirected.out, "hi\n");
  auto not_followed = cli({"connect", peer.url() + "/to/302/%2Fecho", "--max-redirects", "0", "--count", "1"});
  EXPECT_EQ(not_followed.exit_code, 1);
  EXPECT_THAT(not_followed.err, HasSubstr("302"));
  EXPECT_EQ(cli({"connect", peer.url(), "--max-redirects", "21"}).exit_code, 2);
  auto closed = cli({"connect", peer.url() + "/close/4002", "--no-reconnect", "--stats"});
  EXPECT_EQ(closed.exit_code, 1) << "lost with reconnect off";
  EXPECT_THAT(closed.err, HasSubstr("code 4002, reason \"bye from python\""));
  EXPECT_THAT(last_line(closed.err), HasSubstr("\"close_code\":4002"));
}

// A violation fails the connection with 1002: with reconnect off that is an error
// (exit 1), and the status line and --stats name 1002, the code that was sent.
TEST(Cli, AProtocolViolationExits1AndNamesTheCodeSent) {
  auto peer = python();
  ASSERT_FALSE(peer.url().empty()) << "the Python websockets server did not start";
  for (const char* adapter : {"beast", "websocketpp"}) {
    auto r = cli({"connect", peer.url() + "/violate", "--no-reconnect", "--stats", "--adapter", adapter});
    EXPECT_EQ(r.exit_code, 1) << adapter << ": " << r.err;
    EXPECT_EQ(r.out, "hello\n") << adapter << ": the message before the violation is delivered";
    EXPECT_THAT(r.err, HasSubstr("read error: ")) << adapter;
    EXPECT_THAT(r.err, HasSubstr("failed the connection with code 1002")) << adapter;
    EXPECT_THAT(r.err, Not(HasSubstr("closing (code 1000)"))) << adapter;
    EXPECT_THAT(last_line(r.err), HasSubstr("\"close_code\":1002")) << adapter;
  }
}

TEST(Cli, NodePeerEchoSubprotocolAndDrop) {
  auto peer = node();
  ASSERT_FALSE(peer.url().empty()) << "the Node ws server did not start (scripts/setup-debian.sh tests installs it)";
  auto echo = cli({"connect", peer.url() + "/echo", "--subprotocol", "chat.v1", "--send", "über", "--count", "1"});
  EXPECT_EQ(echo.exit_code, 0) << echo.err;
  EXPECT_EQ(echo.out, "über\n");
  EXPECT_THAT(echo.err, HasSubstr("subprotocol chat.v1"));
  auto dropped = cli({"connect", peer.url() + "/drop", "--no-reconnect"});
  EXPECT_EQ(dropped.exit_code, 1);
  EXPECT_EQ(dropped.out, "hello\n");
  EXPECT_THAT(dropped.err, HasSubstr("code 1006"));
}

TEST(Cli, EchoModeSendsMessagesBackAndEndsWithTheConnection) {
  auto peer = node();
  ASSERT_FALSE(peer.url().empty());
  // The server sends 20 bytes, we echo them; the Node server echoes back: two messages.
  auto r = cli({"connect", peer.url() + "/binary", "--echo", "--count", "2", "--stats"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  auto out = lines(r.out);
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(out[0], out[1]);
}

TEST(Cli, ServeEndsByItselfAfterSeconds) {
  auto r = run_command({kCli, "serve", "--seconds", "0.3"}, {}, 20s);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, ::testing::StartsWith("ws://127.0.0.1:"));
}

// serve --cert/--key serves wss:// (bench/run's wss section): blast and echo over TLS,
// read by the engine on both adapters and by bench; the flags go together; a
// certificate that cannot be loaded is named.
TEST(Cli, ServeWithACertificateServesWss) {
  TestPki pki = make_test_pki();
  auto blast = serve({"--mode", "blast", "--count", "300", "--size", "70000", "--binary", "--cert", pki.server_chain,
                      "--key", pki.server_key});
  ASSERT_EQ(blast.url().rfind("wss://", 0), 0u) << blast.url();
  auto r = cli({"bench", "feed", blast.url(), "--count", "300", "--size", "70000", "--ca-file", pki.ca_file});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, ::testing::StartsWith("{\"count\":300,\"bytes\":21000000,"));
  auto echo = serve({"--mode", "echo", "--cert", pki.server_chain, "--key", pki.server_key});
  for (const char* adapter : {"beast", "websocketpp"}) {
    r = cli(
        {"connect", echo.url(), "--adapter", adapter, "--ca-file", pki.ca_file, "--send", "over tls", "--count", "1"});
    EXPECT_EQ(r.exit_code, 0) << adapter << ": " << r.err;
    EXPECT_EQ(lines(r.out), std::vector<std::string>{"over tls"}) << adapter;
  }
  EXPECT_EQ(cli({"serve", "--cert", pki.server_chain}).exit_code, 2);
  r = cli({"serve", "--cert", pki.dir + "/missing.pem", "--key", pki.server_key, "--seconds", "1"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("missing.pem"));
}

// On a terminal (a real pseudo-terminal here): received messages come prefixed "< ",
// the --send ones "> ", status lines dimmed, in colour; NO_COLOR and --no-color keep the
// prefixes and drop every colour. Against Python `websockets`, which echoes.
TEST(Cli, OnATerminalMessagesArePrefixedAndColoured) {
  auto peer = python();
  auto session = [&](std::vector<std::string> argv, const std::string& flag) {
    argv.insert(argv.end(), {"connect", peer.url() + "/echo", "--send", "from send"});
    if (!flag.empty()) argv.push_back(flag);
    bool typed = false;
    return run_in_terminal(argv, 20s, [&typed](const CommandResult& so_far) {
      CommandStep step;
      const auto echoed = so_far.out.find("typed here");  // the terminal's echo of the line
      if (echoed != std::string::npos && so_far.out.find("typed here", echoed + 1) != std::string::npos) {
        step.end_input = true;  // the message came back too: Ctrl-D closes with 1000 and exits
      } else if (!typed && so_far.out.find("lists the commands") != std::string::npos) {
        // After the last status line before input ("/help lists the commands"): typed
        // earlier, the terminal's echo of the line could be cut by that line.
        step.input = "typed here\n";
        typed = true;
      }
      return step;
    });
  };
  auto coloured = session({kCli}, "");
  EXPECT_EQ(coloured.exit_code, 0) << coloured.out;
  EXPECT_THAT(coloured.out, HasSubstr("\033[2m> \033[0mfrom send"));
  EXPECT_THAT(coloured.out, HasSubstr("\033[32m< \033[0mfrom send"));
  EXPECT_THAT(coloured.out, HasSubstr("\033[32m< \033[0mtyped here"));
  EXPECT_THAT(coloured.out, HasSubstr("\033[2mconnected (session 1"));
  for (auto plain : {session({"env", "NO_COLOR=1", kCli}, ""), session({kCli}, "--no-color")}) {
    EXPECT_EQ(plain.exit_code, 0) << plain.out;
    EXPECT_THAT(plain.out, HasSubstr("> from send"));
    EXPECT_THAT(plain.out, HasSubstr("< from send"));
    EXPECT_THAT(plain.out, HasSubstr("< typed here"));
    EXPECT_EQ(plain.out.find('\033'), std::string::npos) << plain.out;
  }
}

// Slash commands typed at a terminal, each against Python `websockets`: /ping shows
// the round trip, /binary sends bytes (echoed back), /stats prints the counters,
// //text sends "/text", /help and an unknown command answer on stderr, /close sends
// its code and reason and exits 0.
TEST(Cli, SlashCommandsAtATerminal) {
  auto peer = python();
  // Each step: what to type once the output shows the text before it.
  const std::vector<std::pair<std::string, std::string>> script = {
      {"connected (session 1", "/ping abc\n"},
      {"pong \"abc\" after", "/binary 01 ff 7e\n"},
      {"<binary 3 bytes: 01 ff 7e>", "/stats\n"},
      {"\"messages_sent\":1", "//slash\n"},
      {"< /slash", "/help\n"},
      {"commands: /ping", "/bogus\n"},
      {"unknown command /bogus", "/close 99\n"},
      {"not a close code", "/close 4001 bye now\n"},
  };
  std::size_t next = 0;
  auto r =
      run_in_terminal({kCli, "connect", peer.url() + "/echo", "--no-color"}, 20s, [&](const CommandResult& so_far) {
        CommandStep step;
        if (next < script.size() && so_far.out.find(script[next].first) != std::string::npos)
          step.input = script[next++].second;
        return step;
      });
  EXPECT_EQ(next, script.size()) << r.out;
  EXPECT_EQ(r.exit_code, 0) << r.out;
  EXPECT_THAT(r.out, HasSubstr("closing (code 4001, reason \"bye now\")"));
  // Piped, a line starting with / is a message, unless --slash.
  auto echo = python();
  auto piped = cli({"connect", echo.url() + "/echo", "--count", "1"}, "/ping not a command\n");
  EXPECT_EQ(piped.exit_code, 0) << piped.err;
  EXPECT_EQ(lines(piped.out), std::vector<std::string>{"/ping not a command"});
  piped = cli({"connect", echo.url() + "/echo", "--slash", "--count", "1"}, "/ping x\n//echoed\n");
  EXPECT_EQ(piped.exit_code, 0) << piped.err;
  EXPECT_EQ(lines(piped.out), std::vector<std::string>{"/echoed"});
  EXPECT_THAT(piped.err, HasSubstr("pong \"x\" after"));
}

// --binary-out: a binary message whole, as hex, base64 or its bytes (Python
// `websockets` sends bytes 0..19 on /binary).
TEST(Cli, BinaryMessagesPrintedAsHexBase64OrRaw) {
  auto peer = python();
  auto run = [&](const std::string& how) {
    return cli({"connect", peer.url() + "/binary", "--count", "1", "--binary-out", how});
  };
  auto r = run("hex");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "00 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f 10 11 12 13\n");
  r = run("base64");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "AAECAwQFBgcICQoLDA0ODxAREhM=\n");  // Python's base64 of the same bytes
  r = run("raw");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  std::string bytes;
  for (char c = 0; c < 20; ++c) bytes += c;
  EXPECT_EQ(r.out, bytes);
  EXPECT_EQ(run("octal").exit_code, 2);
}

// --wait (-w) closes with 1000 once the answers to --send had their time; -H and -s
// are --header and --subprotocol, -n is --insecure.
TEST(Cli, WaitClosesAfterTheAnswersAndShortAliasesWork) {
  auto peer = python();
  auto r = cli({"connect", peer.url() + "/header/x-test", "-H", "X-Test: yes", "-s", "chat.v1", "-w", "0.5"}, "", 20s);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(lines(r.out), std::vector<std::string>{"yes"});
  EXPECT_THAT(r.err, HasSubstr("subprotocol chat.v1"));
  EXPECT_THAT(r.err, HasSubstr("closing (code 1000)"));
  TestPki pki = make_test_pki();
  auto secure = serve({"--mode", "echo", "--cert", pki.server_chain, "--key", pki.server_key});
  r = cli({"connect", secure.url(), "--send", "trusted anyway", "-w", "0.3"});
  EXPECT_EQ(r.exit_code, 1) << "an unknown CA is refused without -n";
  r = cli({"connect", secure.url(), "-n", "--send", "trusted anyway", "-w", "0.3"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(lines(r.out), std::vector<std::string>{"trusted anyway"});
  EXPECT_EQ(cli({"connect", secure.url(), "-w", "soon"}).exit_code, 2);
}

// --show-ping-pong (-P): the server's ping and our pong, the heartbeat's pings and
// their pongs with the round trip, an unsolicited pong, and a /ping's payload as hex,
// on stderr; stdout keeps only the messages. Without it, no ping or pong is shown.
TEST(Cli, ShowPingPongPrintsBothWaysWithTheRoundTrip) {
  auto peer = python();
  auto r = cli({"connect", peer.url() + "/ping/are%20you%20there", "-P", "--ping-interval", "0.1", "--slash", "-w",
                "0.5", "--send", "hi"},
               "/ping \x01\n", 20s);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(lines(r.out), (std::vector<std::string>{"pong are you there", "hi"})) << "the server had our pong";
  EXPECT_THAT(r.err, HasSubstr("< ping \"are you there\"\n> pong \"are you there\"\n"));
  EXPECT_THAT(r.err, HasSubstr("< pong \"unasked\" (answers no ping of ours)"));
  EXPECT_THAT(r.err, ::testing::ContainsRegex("> ping\n< pong after [0-9]+ µs"));
  EXPECT_THAT(r.err, ::testing::ContainsRegex("> ping hex 01\n(.*\n)*< pong hex 01 after [0-9]+ µs"));
  auto quiet = cli({"connect", peer.url() + "/ping/x", "--ping-interval", "0.1", "-w", "0.5", "--send", "hi"}, "", 20s);
  EXPECT_EQ(quiet.exit_code, 0) << quiet.err;
  EXPECT_EQ(lines(quiet.out), (std::vector<std::string>{"pong x", "hi"}));
  for (const auto& line : lines(quiet.err)) EXPECT_NE(line.substr(0, 2), "< ") << line;
}

// The manual page and the bash completion are made from the tool's help text and
// flag tables: every flag --help names is in both, and completion offers no flag that
// --help does not name. cmake --install puts both in place; the completion completes
// flags, their values and bench's kinds in a real bash.
TEST(Cli, TheManPageAndCompletionNameEveryFlagOfHelp) {
  auto flags_in = [](const std::string& text) {
    std::set<std::string> out;
    for (std::size_t i = text.find("--"); i != std::string::npos; i = text.find("--", i + 2)) {
      std::size_t end = i + 2;
      while (end < text.size() && (std::isalnum(static_cast<unsigned char>(text[end])) || text[end] == '-')) ++end;
      if (end > i + 2 && std::isalpha(static_cast<unsigned char>(text[i + 2]))) out.insert(text.substr(i, end - i));
    }
    return out;
  };
  const std::string help = cli({"--help"}).out;
  const std::set<std::string> flags = flags_in(help);
  ASSERT_GT(flags.size(), 60u);
  const std::string completion = cli({"completion", "bash"}).out;
  std::string man;  // troff's "\\-" read back as "-"
  const std::string troff = cli({"man"}).out;
  for (std::size_t i = 0; i < troff.size(); ++i)
    if (!(troff[i] == '\\' && i + 1 < troff.size() && troff[i + 1] == '-')) man += troff[i];
  for (const auto& flag : flags) {
    EXPECT_NE(man.find(flag), std::string::npos) << flag << " is not in the man page";
    EXPECT_NE(completion.find(flag + ' '), std::string::npos) << flag << " is not offered by completion";
  }
  for (const auto& flag : flags_in(completion)) EXPECT_TRUE(flags.count(flag)) << flag << " is not in --help";

  const std::string prefix = temp_dir();
  auto installed =
      run_command({"cmake", "--install", WSCENGINE_BUILD_DIR, "--prefix", prefix, "--component", "tools"}, "", 60s);
  ASSERT_EQ(installed.exit_code, 0) << installed.err;
  std::ifstream man_file(prefix + "/share/man/man1/wscengine.1");
  ASSERT_TRUE(man_file) << installed.out;
  EXPECT_EQ(std::string(std::istreambuf_iterator<char>(man_file), {}), cli({"man"}).out);
  const std::string script = prefix + "/share/bash-completion/completions/wscengine";
  ASSERT_TRUE(std::ifstream(script)) << installed.out;
  auto complete = [&](const std::string& words) {
    auto r =
        run_command({"bash", "-c",
                     "source '" + script + "'; COMP_WORDS=(" + words +
                         "); COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); _wscengine; printf '%s\\n' \"${COMPREPLY[@]}\""},
                    "", 20s);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return lines(r.out);
  };
  EXPECT_EQ(complete("wscengine connect --no-col"), std::vector<std::string>{"--no-color"});
  EXPECT_EQ(complete("wscengine connect --adapter web"), std::vector<std::string>{"websocketpp"});
  EXPECT_EQ(complete("wscengine bench st"), std::vector<std::string>{"storm"});
  EXPECT_EQ(complete("wscengine serve --mode bl"), std::vector<std::string>{"blast"});
  EXPECT_EQ(complete("wscengine se"), std::vector<std::string>{"serve"});
}

TEST(Cli, TheWebsocketppAdapterEchoesAndReconnects) {
  auto echo = serve({"--mode", "echo"});
  auto r = cli({"connect", echo.url(), "--adapter", "websocketpp", "--send", "first", "--count", "2", "--stats"},
               "second\n");
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(lines(r.out), (std::vector<std::string>{"first", "second"}));
  EXPECT_THAT(last_line(r.err), HasSubstr("\"close_code\":1000"));

  auto feed = serve({"--mode", "feed", "--drop-every", "3", "--rate", "200"});
  r = cli({"connect", feed.url(), "--adapter", "websocketpp", "--send", "subscribe ticks", "--count", "7", "--quiet",
           "--stats"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.err, HasSubstr("code 1006"));
  EXPECT_THAT(last_line(r.err), HasSubstr("\"messages\":7"));

  EXPECT_EQ(cli({"connect", "ws://127.0.0.1:1/", "--adapter", "curl"}).exit_code, 2);
}

// --low-latency: on_message on the I/O thread, on both adapters; the same lines, in order.
TEST(Cli, LowLatencyConnectEchoesInOrderOnEitherAdapter) {
  auto echo = serve({"--mode", "echo"});
  for (const char* adapter : {"beast", "websocketpp"}) {
    SCOPED_TRACE(adapter);
    auto r = cli(
        {"connect", echo.url(), "--adapter", adapter, "--low-latency", "--send", "first", "--count", "3", "--stats"},
        "second\nthird\n");
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_EQ(lines(r.out), (std::vector<std::string>{"first", "second", "third"}));
    EXPECT_THAT(last_line(r.err), HasSubstr("\"close_code\":1000"));
  }
}

TEST(Cli, BenchFeedAndEchoPrintOneJsonLineOnEitherAdapter) {
  auto feed = serve({"--mode", "feed", "--count", "5000", "--size", "100", "--rate", "0"});
  auto echo = serve({"--mode", "echo"});
  for (std::string adapter : {"beast", "websocketpp"}) {
    for (bool low_latency : {false, true}) {
      SCOPED_TRACE(adapter + (low_latency ? " --low-latency" : ""));
      auto with_mode = [&](std::vector<std::string> args) {
        if (low_latency) args.push_back("--low-latency");
        return args;
      };
      auto r = cli(with_mode({"bench", "feed", feed.url(), "--count", "5000", "--adapter", adapter}));
      EXPECT_EQ(r.exit_code, 0) << r.err;
      EXPECT_THAT(r.out, ::testing::StartsWith("{\"count\":5000,\"bytes\":500000,\"secs\":"));
      r = cli(
          with_mode({"bench", "echo", echo.url(), "--count", "300", "--size", "64", "--binary", "--adapter", adapter}));
      EXPECT_EQ(r.exit_code, 0) << r.err;
      EXPECT_THAT(r.out, ::testing::StartsWith("{\"count\":300,\"secs\":"));
      for (const char* key : {"\"p50_us\":", "\"p90_us\":", "\"p99_us\":", "\"max_us\":"})
        EXPECT_THAT(r.out, HasSubstr(key));
    }
  }
  auto dropping = serve({"--mode", "blast", "--count", "1", "--drop-every", "1"});
  auto r = cli({"bench", "reconnect", dropping.url(), "--count", "20"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, ::testing::StartsWith("{\"count\":20,\"p50_us\":"));
  auto busy = serve({"--mode", "blast", "--count", "1000", "--size", "64"});
  r = cli({"bench", "feed", busy.url(), "--count", "1000", "--workers", "2", "--work-us", "5"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, ::testing::StartsWith("{\"count\":1000,\"bytes\":64000,"));
  EXPECT_EQ(cli({"bench", "echo", echo.url(), "--workers", "2"}).exit_code, 2);
  EXPECT_EQ(cli({"bench", "sideways", echo.url()}).exit_code, 2);
  auto refused = cli({"bench", "feed", "ws://127.0.0.1:1/", "--count", "1"});
  EXPECT_EQ(refused.exit_code, 1);
  EXPECT_THAT(refused.err, HasSubstr("could not connect"));
}

// --compress: the blast server sends each message deflated (RSV1) when offered; the
// byte count proves every message inflated to its size, at each size class.
TEST(Cli, BenchWithCompressInflatesEveryMessageAtEverySize) {
  for (int size : {64, 1024, 70000}) {
    SCOPED_TRACE(size);
    auto blast = serve({"--mode", "blast", "--count", "300", "--size", std::to_string(size), "--binary"});
    auto r = cli({"bench", "feed", blast.url(), "--count", "300", "--size", std::to_string(size), "--compress"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_THAT(r.out, ::testing::StartsWith("{\"count\":300,\"bytes\":" + std::to_string(300 * size) + ","));
    EXPECT_THAT(r.out, HasSubstr("\"compressed\":true"));
  }
  auto plain = serve({"--mode", "blast", "--count", "100", "--size", "64"});
  auto r = cli({"bench", "feed", plain.url(), "--count", "100"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("\"compressed\":false"));
  auto echo = serve({"--mode", "echo"});
  r = cli({"bench", "echo", echo.url(), "--count", "50", "--size", "1000", "--compress"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("\"compressed\":true"));
}

// bench connections and bench storm against bench/peers/scale_server.js (Node `ws`).
TEST(Cli, BenchConnectionsWithCompressionAndAReconnectStorm) {
  Peer deflating({"node", WSCENGINE_SCALE_SERVER, "--deflate"});
  auto r = cli({"bench", "connections", deflating.url(), "--count", "40", "--compress"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, ::testing::StartsWith("{\"connections\":40,\"compressed\":40,"));
  Peer plain({"node", WSCENGINE_SCALE_SERVER});
  r = cli({"bench", "connections", plain.url(), "--count", "40", "--compress"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, ::testing::StartsWith("{\"connections\":40,\"compressed\":0,")) << "the server declined";
  // The server drops all 30 and is down 200 ms; it counts each one coming back.
  for (const char* jitter : {"0", "1"}) {
    SCOPED_TRACE(jitter);
    Peer server({"node", WSCENGINE_SCALE_SERVER});
    r = cli(
        {"bench", "storm", server.url(), "--count", "30", "--jitter", jitter, "--down-ms", "200", "--timeout", "25"});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    EXPECT_THAT(r.out, ::testing::StartsWith("{\"connections\":30,\"jitter\":" + std::string(jitter)));
    EXPECT_THAT(r.out, HasSubstr("\"server\":{\"accepted\":30,"));
  }
  EXPECT_EQ(cli({"bench", "storm", plain.url(), "--jitter", "2"}).exit_code, 2);
}

// A wss:// reconnect storm (scale_server.js --tls, which keeps its ticket keys across
// the restart): every engine comes back with a resumed TLS session, as the server
// counts, and with --no-tls-resumption every one with a full handshake; on both
// adapters. bench takes connect's TLS flags (--pin, --insecure).
TEST(Cli, AWssReconnectStormResumesTlsSessionsUnlessTurnedOff) {
  TestPki pki = make_test_pki();
  for (std::string adapter : {"beast", "websocketpp"}) {
    for (bool resumption : {true, false}) {
      SCOPED_TRACE(adapter + (resumption ? " resuming" : " not resuming"));
      Peer server({"node", WSCENGINE_SCALE_SERVER, "--tls", pki.server_chain, pki.server_key});
      ASSERT_EQ(server.url().rfind("wss://", 0), 0u) << server.url();
      std::vector<std::string> args = {"bench",     "storm", server.url(), "--count",   "30",        "--down-ms", "200",
                                       "--timeout", "40",    "--ca-file",  pki.ca_file, "--adapter", adapter};
      if (!resumption) args.push_back("--no-tls-resumption");
      auto r = cli(args);
      EXPECT_EQ(r.exit_code, 0) << r.err;
      EXPECT_THAT(r.out,
                  HasSubstr(resumption ? "\"tls_full\":0,\"tls_resumed\":30," : "\"tls_full\":30,\"tls_resumed\":0,"));
      EXPECT_THAT(r.out, HasSubstr("\"accepted\":30,"));
      EXPECT_THAT(r.out, HasSubstr(resumption ? "\"resumed\":30}" : "\"resumed\":0}"));
    }
  }
  Peer server({"node", WSCENGINE_SCALE_SERVER, "--tls", pki.server_chain, pki.server_key});
  auto r = cli({"bench", "connections", server.url(), "--count", "5", "--insecure", "--pin", pki.server_pin});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_THAT(r.out, HasSubstr("\"connections\":5,"));
  r = cli({"bench", "connections", server.url(), "--count", "5", "--ca-file", pki.ca_file, "--pin", pki.unrelated_pin});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("tls.pinned_public_keys"));
  EXPECT_EQ(cli({"bench", "echo", server.url(), "--pin", "not-a-pin"}).exit_code, 2);
}

// SOCKS5 through microsocks, from --proxy and from ALL_PROXY; websocketpp refuses it by name.
TEST(Cli, Socks5ProxiesFromTheFlagAndTheEnvironment) {
  Microsocks proxy("bob", "pw1");
  ASSERT_TRUE(proxy.ok()) << proxy.error();
  auto server = serve({"--mode", "echo"});
  auto r = cli({"connect", server.url(), "--proxy", proxy.url("socks5h"), "--send", "via flag", "--count", "1"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "via flag\n");
  r = run_command(
      {"/usr/bin/env", "-u", "http_proxy", "-u", "HTTP_PROXY", "-u", "no_proxy", "-u", "NO_PROXY",
       "ALL_PROXY=" + proxy.url("socks5"), kCli, "connect", server.url(), "--send", "via env", "--count", "1"},
      {}, 30s);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "via env\n");
  r = cli({"connect", server.url(), "--proxy", proxy.url("socks5h", false), "--no-reconnect", "--count", "1"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("without authentication"));
  r = cli({"connect", server.url(), "--proxy", proxy.url("socks5h"), "--adapter", "websocketpp", "--count", "1"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("SOCKS5"));
}

TEST(Cli, ProxiesFromTheEnvironmentFromTheFlagAndNoProxy) {
  Tinyproxy proxy("alice", "s3cret");
  ASSERT_TRUE(proxy.ok()) << proxy.error();
  auto server = serve({"--mode", "echo"});
  ASSERT_FALSE(server.url().empty());
  std::string port = server.url().substr(server.url().rfind(':') + 1);
  port = port.substr(0, port.find('/'));
  auto refusing_proxy = "http://127.0.0.1:" + std::to_string(unused_port());
  for (std::string adapter : {"beast", "websocketpp"}) {
    SCOPED_TRACE(adapter);
    auto connect = [&](std::vector<std::string> env, std::vector<std::string> flags = {}) {
      std::vector<std::string> argv{"/usr/bin/env", "-u", "http_proxy", "-u", "all_proxy", "-u", "no_proxy"};
      argv.insert(argv.end(), env.begin(), env.end());
      argv.insert(argv.end(), {kCli, "connect", server.url(), "--adapter", adapter, "--send", "hi", "--count", "1",
                               "--no-reconnect"});
      argv.insert(argv.end(), flags.begin(), flags.end());
      return run_command(argv, {}, 30s);
    };
    // HTTP_PROXY with credentials: through tinyproxy, which logs the tunnel.
    auto through = connect({"HTTP_PROXY=" + proxy.url()});
    EXPECT_EQ(through.exit_code, 0) << through.err;
    EXPECT_EQ(through.out, "hi\n");
    EXPECT_THAT(proxy.log(), HasSubstr("127.0.0.1:" + port));
    // Without: the proxy's 407, named, and not retried.
    auto refused = connect({"HTTP_PROXY=" + proxy.url(false)});
    EXPECT_EQ(refused.exit_code, 1);
    EXPECT_THAT(refused.err, HasSubstr("407"));
    EXPECT_THAT(refused.err, HasSubstr("proxy http://127.0.0.1:" + std::to_string(proxy.port())));
    // NO_PROXY, or --proxy none, goes direct even when the variable names a dead proxy.
    auto bypassed = connect({"HTTP_PROXY=" + refusing_proxy, "NO_PROXY=localhost,127.0.0.1"});
    EXPECT_EQ(bypassed.exit_code, 0) << bypassed.err;
    auto direct = connect({"HTTP_PROXY=" + refusing_proxy}, {"--proxy", "none"});
    EXPECT_EQ(direct.exit_code, 0) << direct.err;
    // --proxy wins over the environment.
    auto flag = connect({"HTTP_PROXY=" + refusing_proxy}, {"--proxy", proxy.url()});
    EXPECT_EQ(flag.exit_code, 0) << flag.err;
    EXPECT_EQ(flag.out, "hi\n");
    // A variable that does not parse is named.
    auto bad = connect({"HTTP_PROXY=socks4://127.0.0.1:1"});
    EXPECT_EQ(bad.exit_code, 1);
    EXPECT_THAT(bad.err, HasSubstr("HTTP_PROXY"));
  }
}

TEST(Cli, UnixSocketsToOurServerAndToPythonWebsockets) {
  std::string dir = temp_dir();
  auto ours = serve({"--mode", "echo", "--unix", dir + "/ours.sock"});
  ASSERT_EQ(ours.url(), "ws+unix://" + dir + "/ours.sock:/");
  auto r = cli({"connect", ours.url(), "--send", "local", "--count", "1", "--no-reconnect"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "local\n");

  Peer py({"/usr/bin/python3", WSCENGINE_PY_SERVER, "--unix", dir + "/py.sock"});
  ASSERT_EQ(py.url(), "ws+unix://" + dir + "/py.sock:");
  r = cli({"connect", py.url() + "/header/Host", "--send", "x", "--count", "2", "--no-reconnect"});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "localhost\nx\n");

  auto wspp = cli({"connect", ours.url(), "--adapter", "websocketpp", "--no-reconnect"});
  EXPECT_EQ(wspp.exit_code, 1);
  EXPECT_THAT(wspp.err, HasSubstr("cannot connect to a Unix socket"));
}
