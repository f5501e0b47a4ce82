// Request/response without ids: the protocol has no way to tell which message
// answers which request, so the client takes the read lock (a PauseGuard), sends,
// reads the answer by hand, and lets the readers go on. Messages that arrive while
// paused stay queued for on_message. Against `wscengine serve --mode echo`.
//
//   pause_request ws://127.0.0.1:PORT/
#include <cstdio>
#include <string>

#include <wscengine/beast.hpp>
#include <wscengine/wscengine.hpp>

using namespace wscengine;

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: pause_request URL\n");
    return 2;
  }
  std::atomic<int> background{0};
  auto client = std::make_shared<LambdaClient>();
  client->message = [&](Context&, const Message&) { ++background; };

  EngineOptions options;
  options.url = argv[1];
  Engine engine(options, client, beast::make_connector());
  if (Error e = engine.start()) {
    std::fprintf(stderr, "pause_request: %s\n", e.message().c_str());
    return 1;
  }
  SessionConnection session = engine.connection();
  int answered = 0;
  for (int i = 0; i < 5; ++i) {
    PauseGuard paused = engine.pause();  // no reader takes the answer from us
    std::string question = "balance? " + std::to_string(i);
    if (Error e = session.send_text(question)) {
      std::fprintf(stderr, "pause_request: send: %s\n", e.message().c_str());
      return 1;
    }
    InboundMessage answer;
    if (Error e = session.read(answer, std::chrono::seconds(5))) {
      std::fprintf(stderr, "pause_request: read: %s\n", e.message().c_str());
      return 1;
    }
    std::printf("pause_request: asked \"%s\", answer \"%s\"\n", question.c_str(), answer.payload.c_str());
    if (answer.payload == question) ++answered;
  }  // each PauseGuard released: readers resume
  (void)engine.stop();
  std::printf("pause_request: %d of 5 answered by hand, %d messages went to on_message\n", answered, background.load());
  return answered == 5 && background == 0 ? 0 : 1;
}
