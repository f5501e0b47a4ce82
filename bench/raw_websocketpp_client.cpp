// websocketpp 0.8.2 used directly, as its documentation shows (asio_client config, one
// thread running the io_context), for bench/run. Same arguments and JSON lines as
// raw_beast_client. Compiled as C++17: websocketpp does not compile as C++20 with GCC 12.
//
//   raw_websocketpp_client feed ws://HOST:PORT/ N
//   raw_websocketpp_client echo ws://HOST:PORT/ N SIZE
#include <websocketpp/client.hpp>
#include <websocketpp/config/asio_no_tls_client.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

using Client = websocketpp::client<websocketpp::config::asio_client>;
using Clock = std::chrono::steady_clock;

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: raw_websocketpp_client feed|echo ws://host:port/path N [SIZE]\n");
    return 2;
  }
  std::string kind = argv[1], url = argv[2];
  const unsigned long long count = std::strtoull(argv[3], nullptr, 10);
  const std::size_t size = argc > 4 ? std::strtoull(argv[4], nullptr, 10) : 64;
  Client client;
  client.clear_access_channels(websocketpp::log::alevel::all);
  client.clear_error_channels(websocketpp::log::elevel::all);
  client.init_asio();

  unsigned long long received = 0, bytes = 0;
  Clock::time_point first, start, sent_at;
  std::vector<double> rtts;
  rtts.reserve(count);
  const std::string payload(size, 'e');
  bool failed = false;

  client.set_open_handler([&](websocketpp::connection_hdl hdl) {
    if (kind == "echo") {
      start = sent_at = Clock::now();
      client.send(hdl, payload, websocketpp::frame::opcode::text);
    }
  });
  client.set_fail_handler([&](websocketpp::connection_hdl) { failed = true; });
  client.set_message_handler([&](websocketpp::connection_hdl hdl, Client::message_ptr msg) {
    if (kind == "feed") {
      if (received == 0) first = Clock::now();
      bytes += msg->get_payload().size();
      if (++received == count) {
        double secs = std::chrono::duration<double>(Clock::now() - first).count();
        std::printf("{\"count\":%llu,\"bytes\":%llu,\"secs\":%.6f}\n", count, bytes, secs);
        client.close(hdl, websocketpp::close::status::normal, "");
      }
      return;
    }
    auto now = Clock::now();
    rtts.push_back(std::chrono::duration<double, std::micro>(now - sent_at).count());
    if (rtts.size() == count) {
      double secs = std::chrono::duration<double>(now - start).count();
      std::sort(rtts.begin(), rtts.end());
      auto pct = [&](double p) {
        auto at = static_cast<std::size_t>(std::ceil(p / 100.0 * static_cast<double>(rtts.size()))) - 1;
        return rtts[std::min(at, rtts.size() - 1)];
      };
      std::printf("{\"count\":%llu,\"secs\":%.6f,\"p50_us\":%.1f,\"p90_us\":%.1f,\"p99_us\":%.1f,\"max_us\":%.1f}\n",
                  count, secs, pct(50), pct(90), pct(99), rtts.back());
      client.close(hdl, websocketpp::close::status::normal, "");
      return;
    }
    sent_at = Clock::now();
    client.send(hdl, payload, websocketpp::frame::opcode::text);
  });

  websocketpp::lib::error_code ec;
  auto con = client.get_connection(url, ec);
  if (ec) {
    std::fprintf(stderr, "raw_websocketpp_client: %s\n", ec.message().c_str());
    return 1;
  }
  con->set_max_message_size(64u << 20);
  client.connect(con);
  client.run();
  if (failed || (kind == "feed" ? received : rtts.size()) < count) {
    std::fprintf(stderr, "raw_websocketpp_client: %s\n", con->get_ec().message().c_str());
    return 1;
  }
  return 0;
}
