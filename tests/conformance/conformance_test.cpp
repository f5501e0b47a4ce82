// RFC 6455 client conformance: every case of the fuzzing server, against
// `wscengine connect URL --echo --no-reconnect` on every real adapter. A case
// must come out OK unless kExplained below says why it cannot (the same reasons are
// in docs/conformance.md); a case that changes its verdict fails the test either
// way, so the document cannot go stale. The report of each run is written to
// conformance-<adapter>.md in the working directory.
#include <gtest/gtest.h>

#include <atomic>
#include <fstream>
#include <map>
#include <thread>

#include <sys/socket.h>
#include <unistd.h>

#include "fuzzing_server.hpp"
#include "support/process.hpp"
#include "support/real_adapters.hpp"

using namespace wscengine::conformance;
namespace test = wscengine::test;
using namespace std::chrono_literals;

namespace {

struct Explained {
  Verdict verdict;
  const char* why;
};

// (adapter, case) -> the verdict that is not OK, and why.
const char* const kNoDeflate =
    "websocketpp 0.8 cannot negotiate permessage-deflate as a client, so the adapter refuses to offer it "
    "(errc::unsupported, AdapterCapabilities::compression = false)";
const char* const kBeastCloseCodes =
    "Boost.Beast 1.74 accepts close codes of 5000 and above and echoes them; RFC 6455 §7.4.2 leaves them "
    "undefined and Autobahn expects a failure. The reply is sent inside Beast's read: the adapter cannot intercept it";
const std::map<std::pair<std::string, std::string>, Explained> kExplained = [] {
  std::map<std::pair<std::string, std::string>, Explained> m = {
      {{"beast", "7.9.11"}, {Verdict::non_strict, kBeastCloseCodes}},
      {{"beast", "7.9.12"}, {Verdict::non_strict, kBeastCloseCodes}},
      {{"beast", "9.6"},
       {Verdict::non_strict,
        "Boost.Beast fails a message that does not inflate by dropping TCP without a close frame (RFC 6455 §7.1.7 "
        "allows it; a 1007 close would be stricter)"}},
  };
  // Each case that must fail the connection runs again with a ping behind the
  // violation (".p": one write, ".b": byte by byte): the same explanation holds.
  for (const char* id : {"7.9.11", "7.9.12", "9.6"})
    for (const char* variant : {".p", ".b"}) m[{"beast", std::string(id) + variant}] = m.at({"beast", id});
  for (const char* id : {"8.9",  "8.10", "9.1",  "9.2",  "9.3",  "9.4",  "9.5",  "9.6",  "9.7",   "13.1",
                         "13.2", "13.3", "13.4", "13.5", "13.6", "13.7", "13.8", "13.9", "13.10", "13.11"}) {
    m[{"websocketpp", id}] = {Verdict::unsupported, kNoDeflate};
    if (id[0] == '9' && id[2] >= '4')
      for (const char* variant : {".p", ".b"})
        m[{"websocketpp", std::string(id) + variant}] = {Verdict::unsupported, kNoDeflate};
  }
  return m;
}();

struct Outcome {
  Result result;
  std::string client;  // the client's exit and last words
};

Outcome run_case(const test::RealAdapter& adapter, const Case& c) {
  Listener listener;
  Result result{Verdict::failed, "the client never connected"};
  std::atomic<bool> connected{false}, client_done{false};
  std::thread server([&] {
    int fd = -1;
    for (auto give_up = std::chrono::steady_clock::now() + 15s;
         fd < 0 && !client_done && std::chrono::steady_clock::now() < give_up;)
      fd = listener.accept(50ms);
    if (fd < 0) return;
    connected = true;
    Session session(fd);
    result = c.play(session);
    ::shutdown(fd, SHUT_RDWR);
    ::close(fd);
  });
  std::vector<std::string> argv = {
      WSCENGINE_CLI, "connect",        "ws://127.0.0.1:" + std::to_string(listener.port()) + "/case/" + c.id,
      "--echo",      "--no-reconnect", "--quiet",
      "--adapter",   adapter.name};
  argv.insert(argv.end(), c.client_args.begin(), c.client_args.end());
  auto run = test::run_command(argv, {}, 30s);
  client_done = true;
  server.join();
  std::string said = run.err;
  while (!said.empty() && said.back() == '\n') said.pop_back();
  if (auto nl = said.rfind('\n'); nl != std::string::npos) said = said.substr(nl + 1);
  Outcome out{result, "exit " + std::to_string(run.exit_code) + (run.timed_out ? " (killed: did not exit)" : "") +
                          (said.empty() ? "" : ": " + said)};
  if (!connected) {
    bool refused_feature = run.err.find("not supported by this adapter") != std::string::npos;
    out.result = refused_feature ? Result{Verdict::unsupported, "refused to offer what the case needs"}
                                 : Result{Verdict::failed, "the client never connected"};
  }
  if (run.timed_out && out.result.verdict == Verdict::ok) out.result = {Verdict::failed, "the client did not exit"};
  return out;
}

class Conformance : public ::testing::TestWithParam<test::RealAdapter> {};

}  // namespace

TEST_P(Conformance, EveryCaseIsOkOrExplained) {
  const auto& adapter = GetParam();
  std::ofstream report("conformance-" + adapter.name + ".md");
  report << "| Case | Server sends | RFC | Verdict | Observed |\n|---|---|---|---|---|\n";
  std::map<Verdict, int> totals;
  for (const auto& c : all_cases()) {
    auto t0 = std::chrono::steady_clock::now();
    auto out = run_case(adapter, c);
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count();
    if (ms > 1500)
      std::printf("slow: %s case %s took %lld ms\n", adapter.name.c_str(), c.id.c_str(), static_cast<long long>(ms));
    ++totals[out.result.verdict];
    auto explained = kExplained.find({adapter.name, c.id});
    report << "| " << c.id << " | " << c.title << " | " << c.rfc << " | " << to_string(out.result.verdict) << " | "
           << out.result.observed << (explained == kExplained.end() ? "" : std::string(" — ") + explained->second.why)
           << " |\n";
    Verdict expected = explained == kExplained.end() ? Verdict::ok : explained->second.verdict;
    EXPECT_EQ(to_string(out.result.verdict), std::string(to_string(expected)))
        << "case " << c.id << " (" << c.title << "): " << out.result.observed << " — client " << out.client;
  }
  report << "\nTotals:";
  for (auto [verdict, count] : totals) report << " " << to_string(verdict) << " " << count << ";";
  report << "\n";
  std::printf("%s:", adapter.name.c_str());
  for (auto [verdict, count] : totals) std::printf(" %s %d", to_string(verdict), count);
  std::printf(" (report: conformance-%s.md)\n", adapter.name.c_str());
}

INSTANTIATE_TEST_SUITE_P(Adapters, Conformance, ::testing::ValuesIn(test::real_adapters()), test::AdapterName());
