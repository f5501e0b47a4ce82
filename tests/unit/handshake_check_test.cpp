// check_subprotocol_answer / check_extensions_answer: the RFC 6455 §4.1 and RFC 7692
// checks every adapter applies to the server's opening-handshake answer.
#include <gtest/gtest.h>

#include <wscengine/adapter.hpp>

using namespace wscengine;

TEST(HandshakeCheck, TheSubprotocolMustBeOneOfTheOffer) {
  std::vector<std::string> offered = {"v1.feed", "v2.feed"};
  EXPECT_EQ(check_subprotocol_answer(std::nullopt, offered).value(), "");
  EXPECT_EQ(check_subprotocol_answer("", offered).value(), "");
  EXPECT_EQ(check_subprotocol_answer("v2.feed", offered).value(), "v2.feed");
  EXPECT_EQ(check_subprotocol_answer(" v1.feed ", offered).value(), "v1.feed");
  auto bad = check_subprotocol_answer("v3.feed", offered);
  ASSERT_FALSE(bad);
  EXPECT_TRUE(bad.error().is(errc::handshake_failed));
  EXPECT_NE(bad.error().message().find("'v3.feed'"), std::string::npos) << bad.error().message();
  EXPECT_FALSE(check_subprotocol_answer("v1.feed", {}));
  EXPECT_FALSE(check_subprotocol_answer("V1.FEED", offered)) << "subprotocol names are case-sensitive";
}

TEST(HandshakeCheck, NoExtensionUnlessDeflateWasOffered) {
  EXPECT_EQ(check_extensions_answer(std::nullopt, false).value(), false);
  EXPECT_EQ(check_extensions_answer("", true).value(), false);
  for (const char* answer : {"permessage-deflate", "x-webkit-deflate-frame", "foo; bar=1"}) {
    auto r = check_extensions_answer(answer, false);
    ASSERT_FALSE(r) << answer;
    EXPECT_TRUE(r.error().is(errc::handshake_failed));
    EXPECT_NE(r.error().message().find("not offered"), std::string::npos) << r.error().message();
  }
  EXPECT_FALSE(check_extensions_answer("x-unknown", true)) << "only permessage-deflate is ever offered";
}

TEST(HandshakeCheck, DeflateParametersAreCheckedByName) {
  for (const char* good :
       {"permessage-deflate", "PerMessage-Deflate", "permessage-deflate; server_no_context_takeover",
        "permessage-deflate; client_no_context_takeover; server_no_context_takeover",
        "permessage-deflate; server_max_window_bits=8", "permessage-deflate; server_max_window_bits=15",
        "permessage-deflate; client_max_window_bits=\"10\""}) {
    auto r = check_extensions_answer(good, true);
    ASSERT_TRUE(r) << good << ": " << r.error().message();
    EXPECT_TRUE(r.value()) << good;
  }
  for (const char* bad :
       {"permessage-deflate; x-unknown=1", "permessage-deflate; server_max_window_bits=16",
        "permessage-deflate; server_max_window_bits=7", "permessage-deflate; server_max_window_bits",
        "permessage-deflate; client_max_window_bits=abc", "permessage-deflate; server_no_context_takeover=1",
        "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
        "permessage-deflate, permessage-deflate"}) {
    auto r = check_extensions_answer(bad, true);
    ASSERT_FALSE(r) << bad;
    EXPECT_TRUE(r.error().is(errc::handshake_failed)) << bad;
    EXPECT_NE(r.error().message().find("RFC 7692"), std::string::npos) << r.error().message();
  }
}

// The answer against what was offered (RFC 7692 §7.1): windows may be lowered, never
// raised; server_no_context_takeover asked for must be granted; each refusal names
// the parameter.
TEST(HandshakeCheck, DeflateAnswersAreHeldToTheOffer) {
  DeflateOptions offer;
  offer.server_max_window_bits = 10;
  offer.client_max_window_bits = 12;
  offer.server_no_context_takeover = true;
  for (const char* good : {"permessage-deflate; server_no_context_takeover",
                           "permessage-deflate; server_no_context_takeover; server_max_window_bits=10",
                           "permessage-deflate; server_no_context_takeover; server_max_window_bits=9; "
                           "client_max_window_bits=12",
                           "permessage-deflate; server_no_context_takeover; client_max_window_bits=8; "
                           "client_no_context_takeover"}) {
    auto r = check_extensions_answer(good, true, offer);
    ASSERT_TRUE(r) << good << ": " << r.error().message();
    EXPECT_TRUE(r.value());
  }
  const std::pair<const char*, const char*> bad[] = {
      {"permessage-deflate; server_no_context_takeover; server_max_window_bits=11", "server_max_window_bits=11"},
      {"permessage-deflate; server_no_context_takeover; client_max_window_bits=13", "client_max_window_bits=13"},
      {"permessage-deflate; server_max_window_bits=10", "server_no_context_takeover"},
  };
  for (const auto& [answer, named] : bad) {
    auto r = check_extensions_answer(answer, true, offer);
    ASSERT_FALSE(r) << answer;
    EXPECT_TRUE(r.error().is(errc::handshake_failed));
    EXPECT_NE(r.error().message().find(named), std::string::npos) << r.error().message();
  }
  // The defaults offer 15 both ways: every valid window is within them.
  EXPECT_TRUE(check_extensions_answer("permessage-deflate; server_max_window_bits=15; client_max_window_bits=15", true,
                                      DeflateOptions{}));
}

TEST(HandshakeCheck, DeflateOptionsAreCheckedByName) {
  EXPECT_EQ(check_deflate_options(DeflateOptions{}), "");
  auto named = [](auto change, const char* field) {
    DeflateOptions o;
    change(o);
    std::string bad = check_deflate_options(o);
    EXPECT_NE(bad.find(field), std::string::npos) << field << ": " << bad;
  };
  named([](DeflateOptions& o) { o.server_max_window_bits = 8; }, "deflate.server_max_window_bits");
  named([](DeflateOptions& o) { o.client_max_window_bits = 16; }, "deflate.client_max_window_bits");
  named([](DeflateOptions& o) { o.level = 10; }, "deflate.level");
  named([](DeflateOptions& o) { o.level = -1; }, "deflate.level");
  named([](DeflateOptions& o) { o.memory_level = 0; }, "deflate.memory_level");
  DeflateOptions edges;
  edges.server_max_window_bits = 9;
  edges.client_max_window_bits = 15;
  edges.level = 0;
  edges.memory_level = 9;
  EXPECT_EQ(check_deflate_options(edges), "");
}
