// CPU-heavy processing with N reader slots and results in arrival order: up to N
// on_message run at once on the engine's callback threads; each result is stored by
// the message's sequence number and released in order by a small reorder buffer.
// Against `wscengine serve --mode feed --count N --rate 0`.
//
//   parallel_in_order ws://127.0.0.1:PORT/ [slots] [messages]
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <string>
#include <thread>

#include <wscengine/beast.hpp>
#include <wscengine/wscengine.hpp>

using namespace wscengine;

namespace {

// Stands for real work (parsing, pricing…): a deliberately slow hash.
std::uint64_t heavy_hash(std::string_view text) {
  std::uint64_t h = 1469598103934665603ull;
  for (int round = 0; round < 20000; ++round)
    for (char c : text) h = (h ^ static_cast<unsigned char>(c)) * 1099511628211ull;
  return h;
}

// Results come in any order; they leave in sequence order.
class ReorderBuffer {
 public:
  void put(std::uint64_t sequence, std::string result) {
    std::lock_guard lock(mutex_);
    waiting_.emplace(sequence, std::move(result));
    while (!waiting_.empty() && waiting_.begin()->first == next_) {
      if (next_ < 3 || next_ % 50 == 0)
        std::printf("result %llu: %s\n", static_cast<unsigned long long>(next_), waiting_.begin()->second.c_str());
      waiting_.erase(waiting_.begin());
      ++next_;
    }
  }
  std::uint64_t released() {
    std::lock_guard lock(mutex_);
    return next_;
  }

 private:
  std::mutex mutex_;
  std::map<std::uint64_t, std::string> waiting_;
  std::uint64_t next_ = 0;
};

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: parallel_in_order URL [slots] [messages]\n");
    return 2;
  }
  const std::size_t slots = argc > 2 ? std::strtoul(argv[2], nullptr, 10) : 4;
  const std::uint64_t messages = argc > 3 ? std::strtoull(argv[3], nullptr, 10) : 200;
  ReorderBuffer results;
  std::atomic<int> running{0}, most_at_once{0};

  auto client = std::make_shared<LambdaClient>();
  client->message = [&](Context&, const Message& message) {
    int now = ++running;
    for (int seen = most_at_once; now > seen && !most_at_once.compare_exchange_weak(seen, now);) {
    }
    char hex[17];
    std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(heavy_hash(message.payload)));
    --running;
    results.put(message.sequence, std::string(message.payload) + " -> " + hex);
  };

  EngineOptions options;
  options.url = argv[1];
  options.reader_slots = slots;
  options.auto_reconnect = false;
  Engine engine(options, client, beast::make_connector());  // its runtime gets `slots` callback threads
  if (Error e = engine.start()) {
    std::fprintf(stderr, "parallel_in_order: %s\n", e.message().c_str());
    return 1;
  }
  (void)engine.wait_stopped(std::chrono::seconds(60));  // the server closes after the feed
  std::printf("parallel_in_order: %llu results released in order; up to %d handled at once with %zu slots\n",
              static_cast<unsigned long long>(results.released()), most_at_once.load(), slots);
  return results.released() == messages ? 0 : 1;
}
