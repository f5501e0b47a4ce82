// The rules of following a redirect (src/redirect.hpp): where a Location points, when
// it is refused, and what a request keeps on the way.
#include <gtest/gtest.h>

#include "redirect.hpp"

using namespace wscengine;
using namespace wscengine::detail;

namespace {

Url url(const std::string& text) { return parse_url(text).value(); }

std::string target_of(const std::string& from, const std::string& location) {
  auto to = redirect_target(url(from), location);
  return to ? to->to_string() : "refused: " + to.error().detail;
}

}  // namespace

TEST(RedirectRules, StatusesFollowedAndRemembered) {
  for (int s : {301, 302, 303, 307, 308}) EXPECT_TRUE(is_redirect_status(s)) << s;
  for (int s : {300, 304, 305, 306, 200, 400}) EXPECT_FALSE(is_redirect_status(s)) << s;
  EXPECT_TRUE(is_permanent_redirect(301));
  EXPECT_TRUE(is_permanent_redirect(308));
  for (int s : {302, 303, 307}) EXPECT_FALSE(is_permanent_redirect(s)) << s;
}

TEST(RedirectRules, AbsoluteLocationsMapHttpToWs) {
  EXPECT_EQ(target_of("ws://a.test/x", "ws://b.test:81/y?q=1"), "ws://b.test:81/y?q=1");
  EXPECT_EQ(target_of("ws://a.test/x", "http://b.test/y"), "ws://b.test:80/y");
  EXPECT_EQ(target_of("ws://a.test/x", "HTTPS://b.test/y"), "wss://b.test:443/y");
  EXPECT_EQ(target_of("wss://a.test/x", "wss://b.test/y"), "wss://b.test:443/y");
  EXPECT_EQ(target_of("ws://a.test/x", "  ws://b.test/y#frag  "), "ws://b.test:80/y");
  EXPECT_EQ(target_of("wss://a.test/x", "//b.test/y"), "wss://b.test:443/y") << "scheme-relative keeps the scheme";
  EXPECT_EQ(target_of("ws://a.test/x", "//[::1]:9/y"), "ws://[::1]:9/y");
}

TEST(RedirectRules, RelativeLocationsResolveAgainstTheRequest) {
  EXPECT_EQ(target_of("ws://a.test:8080/feed/v1?token=t", "/other"), "ws://a.test:8080/other");
  EXPECT_EQ(target_of("ws://a.test/feed/v1?token=t", "v2"), "ws://a.test:80/feed/v2");
  EXPECT_EQ(target_of("ws://a.test/feed/v1", "../x/./y"), "ws://a.test:80/x/y");
  EXPECT_EQ(target_of("ws://a.test/feed/v1", "../../../../up"), "ws://a.test:80/up") << "never above the root";
  EXPECT_EQ(target_of("ws://a.test/feed/", "."), "ws://a.test:80/feed/");
  EXPECT_EQ(target_of("ws://a.test/feed/v1", ".."), "ws://a.test:80/");
  EXPECT_EQ(target_of("ws://a.test/feed/v1?a=1", "?b=2"), "ws://a.test:80/feed/v1?b=2");
  EXPECT_EQ(target_of("ws://a.test/feed/v1", "v2?b=2"), "ws://a.test:80/feed/v2?b=2");
  EXPECT_EQ(target_of("ws://a.test/a//b", "c"), "ws://a.test:80/a//c") << "empty segments stay";
}

TEST(RedirectRules, WhatIsRefusedSaysWhy) {
  EXPECT_EQ(target_of("wss://a.test/x", "ws://a.test/x")
                .rfind("refused: a redirect from wss://a.test:443/x to ws://a.test:80/x "
                       "would leave TLS (wss to ws)",
                       0),
            0u);
  EXPECT_NE(target_of("wss://a.test/x", "http://a.test/x").find("would leave TLS"), std::string::npos);
  EXPECT_NE(target_of("ws://a.test/x", "ftp://a.test/x").find("is not a ws, wss, http or https URL"),
            std::string::npos);
  EXPECT_NE(target_of("ws://a.test/x", "").find("no Location"), std::string::npos);
  EXPECT_NE(target_of("ws://a.test/x", "ws://user:pw@b.test/").find("user info"), std::string::npos);
  EXPECT_NE(target_of("ws://a.test/x", "ws+unix:///tmp/s:/").find("is not a ws, wss, http or https URL"),
            std::string::npos);
  EXPECT_NE(target_of("ws+unix:///tmp/s:/x", "/y").find("Unix socket"), std::string::npos);
  auto e = redirect_target(url("ws://a.test/"), "gopher://x");
  ASSERT_FALSE(e);
  EXPECT_TRUE(e.error().is(errc::redirect_refused));
}

TEST(RedirectRules, OriginsAreSchemeHostAndPort) {
  EXPECT_TRUE(same_origin(url("ws://A.test/x"), url("ws://a.test:80/y")));
  EXPECT_FALSE(same_origin(url("ws://a.test/"), url("wss://a.test/")));
  EXPECT_FALSE(same_origin(url("ws://a.test/"), url("ws://a.test:81/")));
  EXPECT_FALSE(same_origin(url("ws://127.0.0.1/"), url("ws://localhost/")));
}

TEST(RedirectRules, AnotherOriginGetsNoCredentialsAndNoAddressesMeantForTheFirst) {
  DialRequest request;
  request.url = url("wss://a.test/x");
  request.headers = {
      {"Authorization", "Bearer t"}, {"COOKIE", "c=1"}, {"Proxy-Authorization", "Basic x"}, {"X-Other", "kept"}};
  request.addresses = {"10.0.0.1"};
  request.tls.server_name = "a.test";
  DialRequest same = request;
  redirect_request(same, url("wss://a.test/y"));
  EXPECT_EQ(same.headers.size(), 4u) << "the same origin keeps everything";
  EXPECT_EQ(same.addresses.size(), 1u);
  EXPECT_EQ(same.url.target, "/y");
  redirect_request(request, url("wss://b.test/y"));
  ASSERT_EQ(request.headers.size(), 1u);
  EXPECT_EQ(request.headers[0].name, "X-Other");
  EXPECT_TRUE(request.addresses.empty());
  EXPECT_TRUE(request.tls.server_name.empty());
  EXPECT_EQ(request.url.host, "b.test");
}

TEST(RedirectRules, AChainReadsInOrder) {
  EXPECT_EQ(describe_chain({"ws://a/", "ws://b/", "ws://a/"}), "ws://a/ -> ws://b/ -> ws://a/");
  EXPECT_EQ(describe_chain({}), "");
}
