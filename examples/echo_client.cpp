// An echo client: sends N messages of both types to an echo server and checks that
// each comes back unchanged and in order. The smallest complete use of the engine.
//
//   echo_client ws://127.0.0.1:PORT/ [count]
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>

#include <wscengine/beast.hpp>
#include <wscengine/wscengine.hpp>

using namespace wscengine;

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: echo_client URL [count]\n");
    return 2;
  }
  const int count = argc > 2 ? std::atoi(argv[2]) : 100;
  std::mutex mutex;
  std::condition_variable all_back;
  int received = 0, mismatches = 0;

  auto client = std::make_shared<LambdaClient>();
  client->message = [&](Context&, const Message& message) {
    // Message i was sent as text when i is even, binary when odd, with payload "echo <i>".
    std::lock_guard lock(mutex);
    std::string expected = "echo " + std::to_string(received);
    auto type = received % 2 == 0 ? MessageType::text : MessageType::binary;
    if (message.payload != expected || message.type != type) ++mismatches;
    if (++received == count) all_back.notify_all();
  };

  EngineOptions options;
  options.url = argv[1];
  Engine engine(options, client, beast::make_connector());
  if (Error e = engine.start()) {
    std::fprintf(stderr, "echo_client: %s\n", e.message().c_str());
    return 1;
  }
  for (int i = 0; i < count; ++i) {
    std::string payload = "echo " + std::to_string(i);
    Error e = i % 2 == 0 ? engine.send_text(payload) : engine.send_binary(payload);
    if (e) {
      std::fprintf(stderr, "echo_client: send: %s\n", e.message().c_str());
      return 1;
    }
  }
  std::unique_lock lock(mutex);
  bool done = all_back.wait_for(lock, std::chrono::seconds(10), [&] { return received == count; });
  std::printf("echo_client: %d of %d messages came back, %d differed\n", received, count, mismatches);
  return done && mismatches == 0 ? 0 : 1;
}
