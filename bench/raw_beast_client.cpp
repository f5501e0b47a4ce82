// The baseline every engine number is divided by: a raw Boost.Beast client with a
// synchronous read loop on one thread (the fastest way to use Beast 1.74; see
// issue 7), printing the same JSON lines as `wscengine bench feed|echo`. `feed-async`
// reads with Beast's async_read instead (one thread running the io_context, a concrete
// executor: the asynchronous path as Beast's examples use it), for the same report;
// `echo-async` is the round trip on that path (async_write, then async_read).
//
//   raw_beast_client feed ws://HOST:PORT/ N
//   raw_beast_client feed-async ws://HOST:PORT/ N
//   raw_beast_client echo ws://HOST:PORT/ N SIZE
//   raw_beast_client echo-async ws://HOST:PORT/ N SIZE
//
// A wss:// URL makes it Beast over Asio's ssl::stream (the certificate is not checked:
// only what follows the handshake is timed), as Beast's TLS examples use it.
#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace net = boost::asio;
namespace ws = boost::beast::websocket;
using Clock = std::chrono::steady_clock;
using Socket = net::basic_stream_socket<net::ip::tcp, net::io_context::executor_type>;
using PlainStream = ws::stream<Socket>;
using TlsStream = ws::stream<net::ssl::stream<Socket>>;

namespace {

template <class Stream>
struct AsyncFeed {
  Stream& stream;
  boost::beast::flat_buffer& buffer;
  std::uint64_t count = 0, received = 0, bytes = 0;
  Clock::time_point first;
  boost::system::error_code failure;
};

// The read handler: one pointer, so each async_read copies nothing else.
template <class Stream>
struct OnRead {
  AsyncFeed<Stream>* feed;
  void operator()(const boost::system::error_code& ec, std::size_t) const {
    if (ec) {
      feed->failure = ec;
      return;
    }
    if (feed->received == 0) feed->first = Clock::now();
    feed->bytes += feed->buffer.size();
    feed->buffer.clear();
    if (++feed->received < feed->count) feed->stream.async_read(feed->buffer, *this);
  }
};

// The asynchronous round trip: write, then read the answer, COUNT times, each step a
// completion handler on the one thread that runs the io_context.
template <class Stream>
struct AsyncEcho {
  Stream& stream;
  boost::beast::flat_buffer& buffer;
  const std::string& payload;
  std::uint64_t count = 0;
  std::vector<double>& rtts;
  Clock::time_point sent;
  boost::system::error_code failure;

  void send() {
    sent = Clock::now();
    stream.async_write(net::buffer(payload), [this](const boost::system::error_code& ec, std::size_t) {
      if (ec) {
        failure = ec;
        return;
      }
      buffer.clear();
      stream.async_read(buffer, [this](const boost::system::error_code& ec, std::size_t) {
        if (ec) {
          failure = ec;
          return;
        }
        rtts.push_back(std::chrono::duration<double, std::micro>(Clock::now() - sent).count());
        if (rtts.size() < count) send();
      });
    });
  }
};

void print_round_trips(std::uint64_t count, double secs, std::vector<double>& rtts) {
  std::sort(rtts.begin(), rtts.end());
  auto pct = [&](double p) {
    auto at = static_cast<std::size_t>(std::ceil(p / 100.0 * static_cast<double>(rtts.size()))) - 1;
    return rtts[std::min(at, rtts.size() - 1)];
  };
  std::printf("{\"count\":%llu,\"secs\":%.6f,\"p50_us\":%.1f,\"p90_us\":%.1f,\"p99_us\":%.1f,\"max_us\":%.1f}\n",
              static_cast<unsigned long long>(count), secs, pct(50), pct(90), pct(99), rtts.back());
}

// Connects `stream`'s TCP socket, then (wss) its TLS, then the upgrade.
void open(PlainStream& stream, net::ip::tcp::resolver::results_type endpoints, const std::string&) {
  net::connect(stream.next_layer(), endpoints);
  stream.next_layer().set_option(net::ip::tcp::no_delay(true));
}
void open(TlsStream& stream, net::ip::tcp::resolver::results_type endpoints, const std::string& host) {
  net::connect(stream.next_layer().next_layer(), endpoints);
  stream.next_layer().next_layer().set_option(net::ip::tcp::no_delay(true));
  SSL_set_tlsext_host_name(stream.next_layer().native_handle(), host.c_str());
  stream.next_layer().handshake(net::ssl::stream_base::client);
}

template <class Stream>
void run(Stream& stream, net::io_context& io, const std::string& kind, std::uint64_t count, std::size_t size) {
  boost::beast::flat_buffer buffer;
  if (kind == "feed-async") {
    AsyncFeed<Stream> feed{stream, buffer, count};
    stream.async_read(buffer, OnRead<Stream>{&feed});
    io.run();
    if (feed.failure) throw boost::system::system_error(feed.failure);
    double secs = std::chrono::duration<double>(Clock::now() - feed.first).count();
    stream.close(ws::close_code::normal);
    std::printf("{\"count\":%llu,\"bytes\":%llu,\"secs\":%.6f}\n", static_cast<unsigned long long>(count),
                static_cast<unsigned long long>(feed.bytes), secs);
  } else if (kind == "feed") {
    std::uint64_t bytes = 0;
    Clock::time_point first;
    for (std::uint64_t i = 0; i < count; ++i) {
      buffer.clear();
      stream.read(buffer);
      if (i == 0) first = Clock::now();
      bytes += buffer.size();
    }
    double secs = std::chrono::duration<double>(Clock::now() - first).count();
    stream.close(ws::close_code::normal);
    std::printf("{\"count\":%llu,\"bytes\":%llu,\"secs\":%.6f}\n", static_cast<unsigned long long>(count),
                static_cast<unsigned long long>(bytes), secs);
  } else if (kind == "echo-async") {
    std::string payload(size, 'e');
    std::vector<double> rtts;
    rtts.reserve(count);
    auto start = Clock::now();
    AsyncEcho<Stream> echo{stream, buffer, payload, count, rtts};
    echo.send();
    io.run();
    if (echo.failure) throw boost::system::system_error(echo.failure);
    double secs = std::chrono::duration<double>(Clock::now() - start).count();
    stream.close(ws::close_code::normal);
    print_round_trips(count, secs, rtts);
  } else {
    std::string payload(size, 'e');
    std::vector<double> rtts;
    rtts.reserve(count);
    auto start = Clock::now();
    for (std::uint64_t i = 0; i < count; ++i) {
      auto t0 = Clock::now();
      stream.write(net::buffer(payload));
      buffer.clear();
      stream.read(buffer);
      rtts.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
    }
    double secs = std::chrono::duration<double>(Clock::now() - start).count();
    stream.close(ws::close_code::normal);
    print_round_trips(count, secs, rtts);
  }
}

template <class Stream>
void connect_and_run(Stream& stream, net::io_context& io, const std::string& hostport, const std::string& target,
                     const std::string& kind, std::uint64_t count, std::size_t size, bool deflate) {
  auto colon = hostport.rfind(':');
  net::ip::tcp::resolver resolver(io);
  open(stream, resolver.resolve(hostport.substr(0, colon), hostport.substr(colon + 1)), hostport.substr(0, colon));
  stream.read_message_max(64u << 20);
  if (deflate) {  // offer permessage-deflate, as Beast's examples do
    ws::permessage_deflate pmd;
    pmd.client_enable = true;
    stream.set_option(pmd);
  }
  stream.handshake(hostport, target);
  run(stream, io, kind, count, size);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr,
                 "usage: raw_beast_client feed|feed-async|echo|echo-async ws[s]://host:port/path N [SIZE [deflate]]\n");
    return 2;
  }
  std::string kind = argv[1], url = argv[2];
  auto count = std::strtoull(argv[3], nullptr, 10);
  std::size_t size = argc > 4 ? std::strtoull(argv[4], nullptr, 10) : 64;
  const bool deflate = argc > 5 && std::string(argv[5]) == "deflate";
  auto rest = url.substr(url.find("//") + 2);
  auto slash = rest.find('/');
  auto hostport = rest.substr(0, slash);
  std::string target = slash == std::string::npos ? "/" : rest.substr(slash);
  try {
    net::io_context io;
    if (url.rfind("wss://", 0) == 0) {
      net::ssl::context context(net::ssl::context::tls_client);
      context.set_verify_mode(net::ssl::verify_none);
      TlsStream stream(io.get_executor(), context);
      connect_and_run(stream, io, hostport, target, kind, count, size, deflate);
    } else {
      PlainStream stream(io.get_executor());
      connect_and_run(stream, io, hostport, target, kind, count, size, deflate);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "raw_beast_client: %s\n", e.what());
    return 1;
  }
  return 0;
}
