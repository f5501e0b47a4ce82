// Request/response with ids: each request carries an id, the server's answer carries
// it back, and a Correlator matches them — any number of requests in flight, each
// with its own timeout; a disconnect fails what is still waiting.
// Against `wscengine serve --mode echo` every request is answered by its echo.
//
//   rpc_client ws://127.0.0.1:PORT/ [requests]
#include <cstdio>
#include <cstdlib>
#include <future>
#include <string>
#include <vector>

#include <wscengine/beast.hpp>
#include <wscengine/correlator.hpp>
#include <wscengine/wscengine.hpp>

using namespace wscengine;

namespace {

// The protocol: `{"id":"<id>",...}`. A real client would use its JSON library.
std::optional<std::string> request_id(const Message& message) {
  auto key = message.payload.find("\"id\":\"");
  if (key == std::string_view::npos) return std::nullopt;
  auto start = key + 6, end = message.payload.find('"', start);
  if (end == std::string_view::npos) return std::nullopt;
  return std::string(message.payload.substr(start, end - start));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: rpc_client URL [requests]\n");
    return 2;
  }
  const int requests = argc > 2 ? std::atoi(argv[2]) : 20;
  Correlator rpc(request_id);

  auto client = std::make_shared<LambdaClient>();
  client->message = [&](Context&, const Message& message) {
    if (!rpc.deliver(message))
      std::printf("rpc_client: unsolicited: %.*s\n", int(message.payload.size()), message.payload.data());
  };
  client->close = [&](Context&, const std::optional<CloseFrame>&) {
    rpc.connection_lost();  // every request still waiting fails with connection_lost
    return std::optional<CloseFrame>{};
  };

  EngineOptions options;
  options.url = argv[1];
  Engine engine(options, client, beast::make_connector());
  if (Error e = engine.start()) {
    std::fprintf(stderr, "rpc_client: %s\n", e.message().c_str());
    return 1;
  }
  SessionConnection session = engine.connection();
  // All requests in flight at once; the answers may come in any order.
  std::vector<std::future<Result<InboundMessage>>> answers;
  for (int i = 0; i < requests; ++i) {
    std::string id = "r";
    id += std::to_string(i);
    answers.push_back(rpc.request(session, id, R"({"id":")" + id + R"(","op":"square","x":)" + std::to_string(i) + "}",
                                  std::chrono::seconds(5)));
  }
  int ok = 0;
  for (int i = 0; i < requests; ++i) {
    auto answer = answers[i].get();
    if (!answer) {
      std::printf("rpc_client: request r%d failed: %s\n", i, answer.error().message().c_str());
      continue;
    }
    ++ok;
  }
  std::printf("rpc_client: %d of %d requests answered\n", ok, requests);
  (void)engine.stop();
  return ok == requests ? 0 : 1;
}
