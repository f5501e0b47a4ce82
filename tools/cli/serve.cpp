// `wscengine serve`: the project's Beast server as a command, for demos, tests and
// benchmarks. Echo mode echoes; feed mode sends numbered messages at a rate.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <string>
#include <thread>

#include "cli.hpp"
#include "frames.hpp"
#include "test_server.hpp"

namespace wscengine::cli {
namespace {

std::atomic<bool> g_stop{false};
void on_signal(int) { g_stop = true; }

struct FeedSettings {
  std::uint64_t count = 0;  // 0 = endless
  std::size_t size = 0;     // 0 = just "tick <n>"
  double rate = 10;         // 0 = as fast as possible
  std::uint64_t drop_every = 0;
  std::uint64_t refuse_after_drop = 0;  // upgrades refused (HTTP 503) after each drop
};

void feed_session(tools::ServerSession& session, const FeedSettings& feed, std::atomic<std::uint64_t>& ticks,
                  std::atomic<std::uint64_t>& refusals_left) {
  // A client may subscribe first (the demo does, after every reconnect): wait up to
  // 200 ms for a message. Only for a message or a close: a read that found only the
  // client's pings would wait for one, and a read that times out breaks the stream.
  const auto subscribe_deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(200);
  while (!session.message_or_close_waiting() && std::chrono::steady_clock::now() < subscribe_deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  if (session.message_or_close_waiting()) {
    InboundMessage first;
    if (session.read(first, std::chrono::seconds(5))) return;  // closed, or gone
    if (first.payload.rfind("subscribe", 0) == 0) {
      auto space = first.payload.find(' ');
      session.send(MessageType::text, "subscribed: " + (space == std::string::npos ? std::string("all")
                                                                                   : first.payload.substr(space + 1)));
    }
  }
  auto period = feed.rate > 0 ? std::chrono::duration<double>(1.0 / feed.rate) : std::chrono::duration<double>(0);
  auto next = std::chrono::steady_clock::now();
  std::string payload;
  // The client's close is answered at once (a client that leaves need not wait for its
  // close timeout): looked for before every tick and every 20 ms between ticks. Its
  // pings stay until a read (the ticks keep it alive); a message it sends is dropped.
  // False: the session is over.
  auto answer_client = [&session] {
    if (!session.message_or_close_waiting()) return true;
    InboundMessage ignored;
    return !session.read(ignored, std::chrono::seconds(5));
  };
  for (std::uint64_t sent = 0; !g_stop; ++sent) {
    if (!answer_client()) return;
    if (feed.count != 0 && sent == feed.count) {
      session.close({close_code::normal, "feed complete"});
      return;
    }
    if (feed.drop_every != 0 && sent != 0 && sent % feed.drop_every == 0) {
      refusals_left = feed.refuse_after_drop;
      session.drop();
      return;
    }
    payload = "tick " + std::to_string(++ticks);
    if (payload.size() < feed.size) payload.resize(feed.size, '.');
    if (session.send(MessageType::text, payload)) return;
    if (feed.rate > 0) {
      next += std::chrono::duration_cast<std::chrono::steady_clock::duration>(period);
      for (auto now = std::chrono::steady_clock::now(); now < next; now = std::chrono::steady_clock::now()) {
        std::this_thread::sleep_for(
            std::min<std::chrono::steady_clock::duration>(next - now, std::chrono::milliseconds(20)));
        if (!answer_client()) return;
      }
    }
  }
}

// As fast as the socket takes it: frames encoded once, written in large batches, so
// the server outruns any client and a benchmark measures the client.
// The payload of every blasted message: a market-data tick repeated to the size, so
// that permessage-deflate has something realistic to compress (64 B deflate to 55,
// 1 KiB to 62, 64 KiB to 261).
std::string blast_payload(std::size_t size) {
  static constexpr std::string_view tick = R"({"s":"BTCUSD","p":"43127.50","q":"0.0125","t":1700000000123})";
  std::string out;
  out.reserve(size);
  while (out.size() < size) out.append(tick.substr(0, std::min(tick.size(), size - out.size())));
  return out;
}

void blast_session(tools::ServerSession& session, const FeedSettings& feed, bool binary) {
  // A client that offered permessage-deflate has it (the server accepts every offer):
  // the message is compressed once and its frame repeated, which a client inflates
  // with or without context takeover.
  auto extensions = session.header("sec-websocket-extensions");
  const bool deflate = extensions && extensions->find("permessage-deflate") != std::string::npos;
  std::string payload = blast_payload(feed.size);
  std::uint8_t first_byte = binary ? 0x82 : 0x81;
  if (deflate) {
    payload = tools::deflated_message(payload);
    first_byte |= 0x40;  // RSV1: compressed
  }
  std::string one = tools::server_frame(first_byte, payload);
  std::uint64_t per_batch = std::max<std::uint64_t>(1, (256u << 10) / one.size());
  std::string batch;
  for (std::uint64_t i = 0; i < per_batch; ++i) batch += one;
  std::uint64_t total = feed.count == 0 ? UINT64_MAX : feed.count;
  for (std::uint64_t sent = 0; sent < total && !g_stop;) {
    std::uint64_t n = std::min(per_batch, total - sent);
    if (session.send_raw(std::string_view(batch).substr(0, n * one.size()))) return;
    sent += n;
  }
  if (feed.drop_every != 0) return session.drop();  // for reconnect benchmarks
  session.close({close_code::normal, "feed complete"});
}

}  // namespace

int run_serve(const Args& args) {
  std::string error;
  auto port = args.number("--port", 0, 0, 65535, error);
  auto count = args.number("--count", 0, 0, 1e15, error);
  auto size = args.number("--size", 0, 0, 1 << 30, error);
  auto rate = args.number("--rate", 10, 0, 1e9, error);
  auto drop_every = args.number("--drop-every", 0, 0, 1e15, error);
  auto seconds = args.number("--seconds", 0, 0, 1e7, error);
  auto refuse = args.number("--refuse-after-drop", 0, 0, 1e6, error);
  if (!error.empty()) return usage_error(error);
  if (!args.positional().empty()) return usage_error("serve takes no argument '" + args.positional()[0] + "'");
  std::string mode = args.value("--mode").value_or("echo");
  if (mode != "echo" && mode != "feed" && mode != "silent" && mode != "blast")
    return usage_error("--mode must be echo, feed, blast or silent (got '" + mode + "')");

  tools::ServerOptions options;
  options.host = args.value("--host").value_or("127.0.0.1");
  options.port = static_cast<std::uint16_t>(*port);
  options.unix_socket = args.value("--unix").value_or("");
  options.cert_file = args.value("--cert").value_or("");
  options.key_file = args.value("--key").value_or("");
  if (options.cert_file.empty() != options.key_file.empty()) return usage_error("--cert and --key go together");
  if (!options.cert_file.empty() && !options.unix_socket.empty())
    return usage_error("--cert serves wss:// over TCP, not --unix");
  tools::TestServer server(options);
  FeedSettings feed{static_cast<std::uint64_t>(*count), static_cast<std::size_t>(*size), *rate,
                    static_cast<std::uint64_t>(*drop_every), static_cast<std::uint64_t>(*refuse)};
  std::atomic<std::uint64_t> ticks{0}, refusals_left{0};
  server.on_request = [&](const std::string&, const std::vector<Header>&) {
    for (auto left = refusals_left.load(); left > 0;) {
      if (refusals_left.compare_exchange_weak(left, left - 1)) return 503;  // "come back later"
    }
    return 0;
  };
  if (mode == "echo") {
    server.on_session = [](tools::ServerSession& session) { tools::echo_session(session); };
  } else if (mode == "silent") {
    // A half-open peer: accepts the upgrade, then never reads (so never answers a
    // ping) and never sends, until the server stops.
    server.on_session = [](tools::ServerSession&) {
      while (!g_stop) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    };
  } else if (mode == "blast") {
    bool binary = args.has("--binary");
    server.on_session = [&feed, binary](tools::ServerSession& session) { blast_session(session, feed, binary); };
  } else {
    server.on_session = [&](tools::ServerSession& session) { feed_session(session, feed, ticks, refusals_left); };
  }
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  std::signal(SIGPIPE, SIG_IGN);  // a client gone mid-write is an error code, not the end of the server
  try {
    server.start();
  } catch (const std::exception& e) {
    if (!options.cert_file.empty())
      return failure("cannot serve wss:// on " + options.host + ":" + std::to_string(options.port) + " (--cert " +
                     options.cert_file + ", --key " + options.key_file + "): " + e.what());
    return failure("cannot listen on " + options.host + ":" + std::to_string(options.port) + ": " + e.what());
  }
  std::printf("%s\n", server.url("/").c_str());
  std::fflush(stdout);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(*seconds);
  while (!g_stop && (*seconds == 0 || std::chrono::steady_clock::now() < deadline))
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  g_stop = true;
  server.stop();
  return 0;
}

}  // namespace wscengine::cli
