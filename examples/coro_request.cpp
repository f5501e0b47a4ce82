// Request/response as a C++20 coroutine, on an io_context the program runs itself:
// the engine starts no thread (wscengine::runtime_on), and each step is co_awaited:
// start, take the read lock, send, read the answer by hand, release, stop. Messages
// that arrive while no request waits go to on_message as usual. Against
// `wscengine serve --mode echo`.
//
//   coro_request ws://127.0.0.1:PORT/ [requests]
#include <utility>  // first: Boost 1.74's awaitable.hpp uses std::exchange without it

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>

#include <wscengine/asio.hpp>
#include <wscengine/beast.hpp>
#include <wscengine/coro.hpp>
#include <wscengine/wscengine.hpp>

using namespace wscengine;
namespace net = boost::asio;

namespace {

// The client's whole conversation; returns how many answers matched their request.
net::awaitable<int> converse(Engine& engine, int requests) {
  if (Error e = co_await coro::async_start(engine)) {
    std::fprintf(stderr, "coro_request: start: %s\n", e.message().c_str());
    co_return 0;
  }
  int answered = 0;
  for (int i = 0; i < requests; ++i) {
    PauseGuard paused = co_await coro::async_pause(engine);  // no reader takes the answer from us
    const std::string question = "balance? " + std::to_string(i);
    if (Error e = co_await coro::async_send(engine, MessageType::text, question)) {
      std::fprintf(stderr, "coro_request: send: %s\n", e.message().c_str());
      break;
    }
    auto [error, answer] = co_await coro::async_read(engine, std::chrono::seconds(5));
    if (error) {
      std::fprintf(stderr, "coro_request: read: %s\n", error.message().c_str());
      break;
    }
    if (answer.payload == question) ++answered;
  }  // the guard is released at the end of each round: readers resume
  if (Error e = co_await coro::async_stop(engine))
    std::fprintf(stderr, "coro_request: stop: %s\n", e.message().c_str());
  co_return answered;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: coro_request URL [requests]\n");
    return 2;
  }
  const int requests = argc > 2 ? std::atoi(argv[2]) : 5;
  std::atomic<int> background{0};
  auto client = std::make_shared<LambdaClient>();
  client->message = [&](Context&, const Message&) { ++background; };

  net::io_context io;
  int answered = -1;
  {
    EngineOptions options;
    options.url = argv[1];
    Engine engine(options, client, beast::make_connector(), runtime_on(io));
    net::co_spawn(io, converse(engine, requests), [&](std::exception_ptr failure, int result) {
      if (!failure) answered = result;
    });
    io.run();  // returns once the conversation is over and the engine stopped
  }            // the engine is destroyed after run() returned, outside the io_context's handlers
  std::printf("coro_request: %d of %d answered by a coroutine, %d messages went to on_message\n", answered, requests,
              background.load());
  return answered == requests && background == 0 ? 0 : 1;
}
