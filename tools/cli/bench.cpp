// `wscengine bench feed|echo URL`: the same client for every measurement, built on
// the engine, so that any user can measure a server and every peer comparison in
// bench/ uses one client. One JSON line on stdout.
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
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
  // `one_slot`: one reader slot, so one on_message at a time: counted without a locked
  // add (as raw clients count), which would cost more than the rest of the handler.
  FeedClient(std::uint64_t count, std::chrono::nanoseconds work, bool one_slot)
      : count_(count), work_(work), one_slot_(one_slot) {}
  Error on_open(Context&, const HandshakeResponse& response, bool) override {
    compressed_ = response.compression;
    return {};
  }
  void on_message(Context&, const Message& m) override {
    if (work_.count() > 0) {  // CPU-bound work per message, as a real handler might do
      auto until = Clock::now() + work_;
      while (Clock::now() < until) {
      }
    }
    const std::uint64_t n = add(received_, 1);
    if (n > count_) return;  // read before the close: not part of the measurement
    add(bytes_, m.payload.size());
    if (n == 1) first_ = Clock::now();  // no clock per message: it would be measured too
    if (n == count_) {
      last_ = Clock::now();
      done_.set_value();
    }
  }
  std::future<void> done() { return done_.get_future(); }
  double seconds() const { return std::chrono::duration<double>(last_ - first_).count(); }
  std::uint64_t bytes() const { return bytes_; }
  bool compressed() const { return compressed_; }

 private:
  std::uint64_t add(std::atomic<std::uint64_t>& cell, std::uint64_t n) {
    if (!one_slot_) return cell.fetch_add(n) + n;
    const std::uint64_t now = cell.load(std::memory_order_relaxed) + n;
    cell.store(now, std::memory_order_relaxed);
    return now;
  }

  const std::uint64_t count_;
  const std::chrono::nanoseconds work_;
  const bool one_slot_;
  std::atomic<bool> compressed_{false};
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
  Error on_open(Context& ctx, const HandshakeResponse& response, bool) override {
    compressed_ = response.compression;
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
  bool compressed() const { return compressed_; }

 private:
  std::atomic<bool> compressed_{false};
  const std::uint64_t count_;
  const std::string payload_;
  const MessageType type_;
  std::vector<double> rtts_;  // one reader slot: on_message runs one at a time
  Clock::time_point sent_at_, start_, end_;
  std::promise<void> done_;
  Error error_;
};

/// Against a server that drops every connection after its first message: the time
/// from each on_close (1006) to the next on_open, `count` times, with no backoff.
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

/// One of many idle connections: counts opens (first and after a drop), the messages
/// of a broadcast, the sessions with permessage-deflate, and keeps the server's JSON
/// answer to "stats".
class ScaleClient final : public Client {
 public:
  struct Shared {
    std::uint64_t connections = 0;
    std::atomic<std::uint64_t> opened{0}, reopened{0}, received{0}, compressed{0}, http2{0};
    std::promise<void> all_received, all_reopened;
    std::promise<std::string> stats;
    std::atomic<bool> stats_given{false};
  };
  explicit ScaleClient(std::shared_ptr<Shared> shared) : shared_(std::move(shared)) {}
  Error on_open(Context&, const HandshakeResponse& response, bool restarting) override {
    if (response.compression) ++shared_->compressed;
    if (response.http2) ++shared_->http2;
    if (!restarting) {
      ++shared_->opened;
    } else if (++shared_->reopened == shared_->connections) {
      shared_->all_reopened.set_value();
    }
    return {};
  }
  void on_message(Context&, const Message& message) override {
    if (!message.payload.empty() && message.payload.front() == '{') {
      if (!shared_->stats_given.exchange(true)) shared_->stats.set_value(std::string(message.payload));
      return;
    }
    if (++shared_->received == shared_->connections) shared_->all_received.set_value();
  }
  void on_restart_error(Context&, const Error&, std::uint32_t) override {}  // refused while the server is down

 private:
  std::shared_ptr<Shared> shared_;
};

std::uint64_t rss_kib() {
  std::ifstream status("/proc/self/status");
  for (std::string line; std::getline(status, line);)
    if (line.rfind("VmRSS:", 0) == 0) return std::stoull(line.substr(6));
  return 0;
}

std::size_t thread_count() {
  std::size_t n = 0;
  for ([[maybe_unused]] const auto& entry : std::filesystem::directory_iterator("/proc/self/task")) ++n;
  return n;
}

/// `count` engines (one connection each) on one runtime against
/// bench/peers/scale_server.js, for `bench connections` and `bench storm`.
class Fleet {
 public:
  Fleet(std::uint64_t count, const std::string& adapter, double timeout)
      : count_(count),
        deadline_(Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(timeout))),
        runtime_(Runtime::create({.io_threads = 2, .callback_threads = 2})),
        connector_(adapter == "websocketpp" ? websocketpp::make_connector() : beast::make_connector()),
        shared_(std::make_shared<ScaleClient::Shared>()) {
    shared_->connections = count;
  }
  Fleet(const Fleet&) = delete;
  Fleet& operator=(const Fleet&) = delete;
  // Stops in parallel: each stop waits for its close handshake.
  ~Fleet() {
    std::vector<std::thread> stoppers;
    for (std::size_t t = 0; t < 8; ++t)
      stoppers.emplace_back([&, t] {
        for (std::size_t i = t; i < engines_.size(); i += 8) engines_[i]->stop();
      });
    for (auto& s : stoppers) s.join();
  }

  /// Raises the descriptor limit as far as the hard limit allows (one socket per
  /// connection); empty, or why the limit is too low.
  std::string raise_file_limit() const {
    rlimit files{};
    ::getrlimit(RLIMIT_NOFILE, &files);
    files.rlim_cur = files.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &files);
    if (files.rlim_cur >= count_ + 64) return {};
    return "the descriptor limit (" + std::to_string(files.rlim_cur) + ", the hard limit of this process) is below " +
           std::to_string(count_ + 64);
  }
  /// Starts every engine, one after the other; empty, or what failed.
  std::string open_all(const EngineOptions& options) {
    engines_.reserve(count_);
    for (std::uint64_t i = 0; i < count_; ++i) {
      engines_.push_back(
          std::make_unique<Engine>(options, std::make_shared<ScaleClient>(shared_), connector_, runtime_));
      if (Error e = engines_.back()->start()) return "connection " + std::to_string(i + 1) + " failed: " + e.message();
      if (Clock::now() > deadline_) return "not all open within the timeout";
    }
    return {};
  }
  Engine& first() { return *engines_.front(); }
  ScaleClient::Shared& shared() { return *shared_; }
  Clock::time_point deadline() const { return deadline_; }

 private:
  const std::uint64_t count_;
  const Clock::time_point deadline_;
  const std::shared_ptr<Runtime> runtime_;
  const std::shared_ptr<Connector> connector_;
  const std::shared_ptr<ScaleClient::Shared> shared_;
  std::vector<std::unique_ptr<Engine>> engines_;
};

// `bench connections`: idle connections, then one broadcast to all of them.
int run_connections(EngineOptions options, std::uint64_t count, const std::string& adapter, double timeout) {
  Fleet fleet(count, adapter, timeout);
  if (auto e = fleet.raise_file_limit(); !e.empty()) return failure("bench connections: " + e);
  auto all_received = fleet.shared().all_received.get_future();
  options.auto_reconnect = false;
  const auto http2_before = beast::http2_stats().connections_opened;
  const auto tls_before = beast::tls_stats();  // (both adapters count there)
  std::uint64_t rss_before = rss_kib();
  auto t0 = Clock::now();
  if (auto e = fleet.open_all(options); !e.empty()) return failure("bench connections: " + e);
  double connect_secs = std::chrono::duration<double>(Clock::now() - t0).count();
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // let allocations settle before reading RSS
  std::uint64_t rss_open = rss_kib();
  std::size_t threads = thread_count();
  auto b0 = Clock::now();
  if (Error e = fleet.first().send(MessageType::text, "broadcast")) return failure("bench connections: " + e.message());
  if (all_received.wait_until(fleet.deadline()) != std::future_status::ready)
    return failure("bench connections: the broadcast did not reach every connection in time (" +
                   std::to_string(fleet.shared().received.load()) + " of " + std::to_string(count) + ")");
  double broadcast_ms = std::chrono::duration<double, std::milli>(Clock::now() - b0).count();
  const auto tls = beast::tls_stats();
  std::printf(
      "{\"connections\":%llu,\"compressed\":%llu,\"http2_streams\":%llu,\"http2_connections\":%llu,"
      "\"tls_full\":%llu,\"tls_resumed\":%llu,\"connect_secs\":%.3f,\"rss_kib\":%llu,\"rss_per_connection_kib\":%.2f,"
      "\"threads\":%zu,"
      "\"broadcast_ms\":%.2f}\n",
      static_cast<unsigned long long>(count), static_cast<unsigned long long>(fleet.shared().compressed.load()),
      static_cast<unsigned long long>(fleet.shared().http2.load()),
      static_cast<unsigned long long>(beast::http2_stats().connections_opened - http2_before),
      static_cast<unsigned long long>(tls.handshakes_full - tls_before.handshakes_full),
      static_cast<unsigned long long>(tls.handshakes_resumed - tls_before.handshakes_resumed), connect_secs,
      static_cast<unsigned long long>(rss_open),
      static_cast<double>(rss_open - rss_before) / static_cast<double>(count), threads, broadcast_ms);
  return 0;
}

// `bench storm`: `count` connections, then the server drops them all and is down for
// `down_ms`; every engine reconnects with the default backoff and the given jitter.
// The server reports when the connections came back (peak rate per 10 and 100 ms).
int run_storm(EngineOptions options, std::uint64_t count, const std::string& adapter, double timeout, double jitter,
              double down_ms) {
  Fleet fleet(count, adapter, timeout);
  if (auto e = fleet.raise_file_limit(); !e.empty()) return failure("bench storm: " + e);
  auto all_reopened = fleet.shared().all_reopened.get_future();
  auto stats = fleet.shared().stats.get_future();
  options.backoff.jitter = jitter;
  // all_reopened is set inside the last on_open, before that engine's session counts
  // as open: if that engine is the first, "stats" waits for the session, not fails.
  options.outage.mode = OutageSends::hold;
  if (auto e = fleet.open_all(options); !e.empty()) return failure("bench storm: " + e);
  const auto tls_before = beast::tls_stats();  // the reconnect's handshakes only (both adapters count there)
  auto dropped = Clock::now();
  // With an ID: the websocketpp adapter cannot confirm a message sent just before the
  // drop, so the held send may go again on the next session; the server acts once.
  char restart[80];
  std::snprintf(restart, sizeof restart, "restart %.0f %lld", down_ms,
                static_cast<long long>(Clock::now().time_since_epoch().count()));
  if (Error e = fleet.first().send(MessageType::text, restart)) return failure("bench storm: " + e.message());
  if (all_reopened.wait_until(fleet.deadline()) != std::future_status::ready)
    return failure("bench storm: " + std::to_string(fleet.shared().reopened.load()) + " of " + std::to_string(count) +
                   " reconnected in time");
  double reopened_ms = std::chrono::duration<double, std::milli>(Clock::now() - dropped).count();
  const auto tls = beast::tls_stats();
  if (Error e = fleet.first().send(MessageType::text, "stats")) return failure("bench storm: " + e.message());
  if (stats.wait_until(fleet.deadline()) != std::future_status::ready)
    return failure("bench storm: the server sent no stats");
  std::printf(
      "{\"connections\":%llu,\"jitter\":%.2f,\"down_ms\":%.0f,\"all_reopened_ms\":%.1f,\"tls_full\":%llu,"
      "\"tls_resumed\":%llu,\"server\":%s}\n",
      static_cast<unsigned long long>(count), jitter, down_ms, reopened_ms,
      static_cast<unsigned long long>(tls.handshakes_full - tls_before.handshakes_full),
      static_cast<unsigned long long>(tls.handshakes_resumed - tls_before.handshakes_resumed), stats.get().c_str());
  return 0;
}

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
  options.offer_compression = args.has("--compress");
  if (auto bad = apply_tls(args, options); !bad.empty()) return usage_error(bad);
  if (auto bad = apply_http2(args, options); !bad.empty()) return usage_error(bad);
  if (Error invalid = options.validate()) return usage_error(invalid.message());
  if (kind == "connections") return run_connections(options, static_cast<std::uint64_t>(*count), adapter, *timeout);
  if (kind == "storm") {
    auto jitter = args.number("--jitter", BackoffOptions{}.jitter, 0, 1, error);
    auto down_ms = args.number("--down-ms", 1000, 0, 600000, error);
    if (!error.empty()) return usage_error(error);
    return run_storm(options, static_cast<std::uint64_t>(*count), adapter, *timeout, *jitter, *down_ms);
  }

  options.reader_slots = static_cast<std::size_t>(*workers);
  if (args.has("--low-latency")) set_low_latency(options);
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
    auto feed = std::make_shared<FeedClient>(n, std::chrono::nanoseconds(static_cast<std::int64_t>(*work_us * 1000.0)),
                                             options.reader_slots == 1);
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
    std::printf("{\"count\":%llu,\"bytes\":%llu,\"secs\":%.6f,\"compressed\":%s}\n", static_cast<unsigned long long>(n),
                static_cast<unsigned long long>(feed.bytes()), feed.seconds(), feed.compressed() ? "true" : "false");
  } else if (kind == "reconnect") {
    auto gaps = static_cast<ReconnectClient&>(*client).sorted();
    std::printf("{\"count\":%llu,\"p50_us\":%.1f,\"p99_us\":%.1f,\"max_us\":%.1f}\n",
                static_cast<unsigned long long>(n), percentile(gaps, 50), percentile(gaps, 99),
                gaps.empty() ? 0.0 : gaps.back());
  } else {
    auto& echo = static_cast<EchoClient&>(*client);
    auto rtts = echo.sorted();
    std::printf(
        "{\"count\":%llu,\"secs\":%.6f,\"p50_us\":%.1f,\"p90_us\":%.1f,\"p99_us\":%.1f,\"max_us\":%.1f,"
        "\"compressed\":%s}\n",
        static_cast<unsigned long long>(n), echo.seconds(), percentile(rtts, 50), percentile(rtts, 90),
        percentile(rtts, 99), rtts.empty() ? 0.0 : rtts.back(), echo.compressed() ? "true" : "false");
  }
  return 0;
}

}  // namespace wscengine::cli
