// In-process costs of the engine with Google Benchmark, over the in-memory adapter (no
// sockets): what the engine itself adds per message, per pause and per write.
//   BM_DispatchPerMessage  messages queued, then read and handed to on_message (one slot)
//   BM_PauseAndResume      Engine::pause() then release, on a running engine
//   BM_WritePath           Engine::send of a 64 B text message to the in-memory peer
//   BM_ChooseProxy         the per-dial proxy choice with HTTPS_PROXY and NO_PROXY set
// Ratios against raw Beast are bench/run's job; these are absolute costs per operation.
#include <benchmark/benchmark.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>

#include <wscengine/memory.hpp>
#include <wscengine/wscengine.hpp>

using namespace wscengine;
using namespace std::chrono_literals;

namespace {

class CountingClient final : public Client {
 public:
  void on_message(Context&, const Message&) override {
    if (++count_ >= target_) {
      std::lock_guard lock(mutex_);
      done_.notify_all();
    }
  }
  void expect(std::uint64_t more) { target_ = count_.load() + more; }
  void wait() {
    std::unique_lock lock(mutex_);
    done_.wait(lock, [&] { return count_.load() >= target_.load(); });
  }

 private:
  std::atomic<std::uint64_t> count_{0}, target_{0};
  std::mutex mutex_;
  std::condition_variable done_;
};

struct Running {
  std::shared_ptr<memory::Server> server = memory::Server::create();
  std::shared_ptr<CountingClient> client = std::make_shared<CountingClient>();
  std::unique_ptr<Engine> engine;
  std::shared_ptr<memory::Peer> peer;
  Running() {
    EngineOptions options;
    options.url = "ws://bench.test/";
    engine = std::make_unique<Engine>(options, client, server->connector());
    if (Error e = engine->start()) throw std::runtime_error(e.message());
    peer = server->accept(5s);
  }
  ~Running() { (void)engine->stop(); }
};

void BM_DispatchPerMessage(benchmark::State& state) {
  Running r;
  const std::string payload(64, 'x');
  const auto batch = static_cast<std::uint64_t>(state.range(0));
  for (auto _ : state) {
    state.PauseTiming();
    r.client->expect(batch);
    {
      PauseGuard paused = r.engine->pause();  // queue the batch, then time its delivery
      for (std::uint64_t i = 0; i < batch; ++i) r.peer->send(MessageType::text, payload);
      state.ResumeTiming();
    }
    r.client->wait();
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(state.iterations() * batch));
}
BENCHMARK(BM_DispatchPerMessage)->Arg(10000)->UseRealTime()->Unit(benchmark::kMillisecond);

void BM_PauseAndResume(benchmark::State& state) {
  Running r;
  for (auto _ : state) {
    PauseGuard paused = r.engine->pause();
    benchmark::DoNotOptimize(paused.owns_lock());
  }
}
BENCHMARK(BM_PauseAndResume);

void BM_WritePath(benchmark::State& state) {
  Running r;
  const std::string payload(64, 'w');
  for (auto _ : state) {
    if (Error e = r.engine->send(MessageType::text, payload)) state.SkipWithError(e.message().c_str());
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_WritePath);

void BM_ChooseProxy(benchmark::State& state) {
  auto url = parse_url("wss://api.example.com/feed").value();
  EnvironmentLookup environment = [](const char* name) -> const char* {
    if (std::string_view(name) == "HTTPS_PROXY") return "http://proxy.corp:3128";
    if (std::string_view(name) == "NO_PROXY") return "localhost,127.0.0.1,.internal,10.0.0.0/8";
    return nullptr;
  };
  for (auto _ : state) benchmark::DoNotOptimize(choose_proxy(url, {}, environment));
}
BENCHMARK(BM_ChooseProxy);

}  // namespace

BENCHMARK_MAIN();
