// `wscengine bench feed|echo URL`: the same client for every measurement, built on
// the engine, so that any user can measure a server and every peer comparison in
// bench/ uses one client. One JSON line on stdout.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <vector>

#include <wscengine/beast.hpp>
#include <wscengine/websocketpp.hpp>
#include <wscengine/wscengine.hpp>

#include "cli.hpp"

namespace wscengine::cli {
namespace {

using Clock = std::chrono::steady_clock;

/// Receives `count` messages, counting bytes; the clock runs from the first to the last.
class FeedClient final : public Client {
 public:
  FeedClient(std::uint64_t count, std::chrono::nanoseconds work) : count_(count), work_(work) {}
  void on_message(Context&, const Message& m) override {
    if (work_.count() > 0) {  // CPU-bound work per message, as a real handler might do
      auto until = Clock::now() + work_;
      while (Clock::now() < until) {
      }
    }
    std::uint64_t n = ++received_;
    if (n > count_) return;  // read before the close: not part of the measurement
    bytes_ += m.payload.size();
    if (n == 1) first_ = Clock::now();  // no clock per message: it would be measured too
    if (n == count_) {
      last_ = Clock::now();
      done_.set_value();
    }
  }
  std::future<void> done() { return done_.get_future(); }
  double seconds() const { return std::chrono::duration<double>(last_ - first_).count(); }
  std::uint64_t bytes() const { return bytes_; }

 private:
  const std::uint64_t count_;
  const std::chrono::nanoseconds work_;
  std::atomic<std::uint64_t> received_{0};
  std::atomic<std::uint64_t> bytes_{0};
  Clock::time_point first_, last_;
  std::promise<void> done_;
};

/// `count` sequential round trips of one message of `size` bytes.
class EchoClient final : public Client {
 public:
  EchoClient(std::uint64_t count, std::size_t size, bool binary)
      : count_(count), payload_(size, 'e'), type_(binary ? MessageType::binary : MessageType::text) {
    rtts_.reserve(count);
  }
  Error on_open(Context& ctx, const HandshakeResponse&, bool) override {
    if (rtts_.size() >= count_) return {};
    sent_at_ = Clock::now();
    return ctx.connection().send(type_, payload_);
  }
  void on_message(Context& ctx, const Message&) override {
    auto now = Clock::now();
    rtts_.push_back(std::chrono::duration<double, std::micro>(now - sent_at_).count());
    if (rtts_.size() == count_) {
      end_ = now;
      return done_.set_value();
    }
    if (rtts_.size() == 1) start_ = sent_at_;
    sent_at_ = Clock::now();
    if (Error e = ctx.connection().send(type_, payload_)) error_ = e;
  }
  std::future<void> done() { return done_.get_future(); }
  // After done(): the round-trip times in microseconds, sorted.
  std::vector<double> sorted() {
    auto out = rtts_;
    std::sort(out.begin(), out.end());
    return out;
  }
  double seconds() const { return std::chrono::duration<double>(end_ - start_).count(); }

 private:
  const std::uint64_t count_;
  const std::string payload_;
  const MessageType type_;
  std::vector<double> rtts_;  // one reader slot: OnMessage runs one at a time
  Clock::time_point sent_at_, start_, end_;
  std::promise<void> done_;
  Error error_;
};

/// Against a server that drops every connection after its first message: the time
/// from each OnClose (1006) to the next OnOpen, `count` times, with no backoff.
class ReconnectClient final : public Client {
 public:
  explicit ReconnectClient(std::uint64_t count) : count_(count) { gaps_.reserve(count); }
  Error on_open(Context&, const HandshakeResponse&, bool restarting) override {
    std::lock_guard lock(mutex_);
    if (restarting && closed_at_ && gaps_.size() < count_) {
      gaps_.push_back(std::chrono::duration<double, std::micro>(Clock::now() - *closed_at_).count());
      if (gaps_.size() == count_) done_.set_value();
    }
    return {};
  }
  std::optional<CloseFrame> on_close(Context&, const std::optional<CloseFrame>&) override {
    std::lock_guard lock(mutex_);
    closed_at_ = Clock::now();
    return std::nullopt;
  }
  void on_message(Context&, const Message&) override {}
  std::future<void> done() { return done_.get_future(); }
  std::vector<double> sorted() {
    std::lock_guard lock(mutex_);
    auto out = gaps_;
    std::sort(out.begin(), out.end());
    return out;
  }

 private:
  const std::uint64_t count_;
  std::mutex mutex_;
  std::optional<Clock::time_point> closed_at_;
  std::vector<double> gaps_;
  std::promise<void> done_;
};

double percentile(const std::vector<double>& sorted, double p) {
  if (sorted.empty()) return 0;
  auto at = static_cast<std::size_t>(std::ceil(p / 100.0 * static_cast<double>(sorted.size()))) - 1;
  return sorted[std::min(at, sorted.size() - 1)];
}

}  // namespace

int run_bench(const std::string& kind, const Args& args) {
  std::string error;
  if (args.positional().size() != 1) return usage_error("bench " + kind + " needs exactly one URL");
  auto count = args.number("--count", 100000, 1, 1e12, error);
  auto size = args.number("--size", 64, 0, 1 << 30, error);
  auto workers = args.number("--workers", 1, 1, 1024, error);
  auto timeout = args.number("--timeout", 120, 0.001, 86400, error);
  auto work_us = args.number("--work-us", 0, 0, 1e6, error);
  if (!error.empty()) return usage_error(error);
  std::string adapter = args.value("--adapter").value_or("beast");
  if (adapter != "beast" && adapter != "websocketpp")
    return usage_error("--adapter must be beast or websocketpp (got '" + adapter + "')");
  if (kind == "echo" && *workers != 1) return usage_error("bench echo is sequential: --workers must be 1");

  EngineOptions options;
  options.url = args.positional()[0];
  options.reader_slots = static_cast<std::size_t>(*workers);
  options.auto_reconnect = kind == "reconnect";
  if (kind == "reconnect") {  // the smallest backoff: measure the engine, not the policy
    options.backoff.initial_delay = std::chrono::milliseconds(0);
    options.backoff.max_delay = std::chrono::milliseconds(0);
  }
  options.max_message_size = std::max<std::size_t>(16u << 20, static_cast<std::size_t>(*size) + 1024);
  auto n = static_cast<std::uint64_t>(*count);
  std::shared_ptr<Client> client;
  std::future<void> done;
  if (kind == "feed") {
    auto feed = std::make_shared<FeedClient>(n, std::chrono::nanoseconds(static_cast<std::int64_t>(*work_us * 1000.0)));
    done = feed->done();
    client = feed;
  } else if (kind == "reconnect") {
    auto reconnect = std::make_shared<ReconnectClient>(n);
    done = reconnect->done();
    client = reconnect;
  } else {
    auto echo = std::make_shared<EchoClient>(n, static_cast<std::size_t>(*size), args.has("--binary"));
    done = echo->done();
    client = echo;
  }
  auto connector = adapter == "websocketpp" ? websocketpp::make_connector() : beast::make_connector();
  std::unique_ptr<Engine> engine;
  try {
    engine = std::make_unique<Engine>(options, client, connector);
  } catch (const InvalidOptions& e) {
    return usage_error(e.what());
  }
  if (Error e = engine->start()) return failure("could not connect to " + options.url + ": " + e.message());
  auto limit = std::chrono::duration<double>(*timeout);
  if (done.wait_for(limit) != std::future_status::ready) {
    engine->stop();
    return failure("bench " + kind + ": not done within " + std::to_string(*timeout) + " s");
  }
  engine->stop();  // close 1000
  if (kind == "feed") {
    auto& feed = static_cast<FeedClient&>(*client);
    std::printf("{\"count\":%llu,\"bytes\":%llu,\"secs\":%.6f}\n", static_cast<unsigned long long>(n),
                static_cast<unsigned long long>(feed.bytes()), feed.seconds());
  } else if (kind == "reconnect") {
    auto gaps = static_cast<ReconnectClient&>(*client).sorted();
    std::printf("{\"count\":%llu,\"p50_us\":%.1f,\"p99_us\":%.1f,\"max_us\":%.1f}\n",
                static_cast<unsigned long long>(n), percentile(gaps, 50), percentile(gaps, 99),
                gaps.empty() ? 0.0 : gaps.back());
  } else {
    auto& echo = static_cast<EchoClient&>(*client);
    auto rtts = echo.sorted();
    std::printf("{\"count\":%llu,\"secs\":%.6f,\"p50_us\":%.1f,\"p90_us\":%.1f,\"p99_us\":%.1f,\"max_us\":%.1f}\n",
                static_cast<unsigned long long>(n), echo.seconds(), percentile(rtts, 50), percentile(rtts, 90),
                percentile(rtts, 99), rtts.empty() ? 0.0 : rtts.back());
  }
  return 0;
}

}  // namespace wscengine::cli
