#include <gtest/gtest.h>

#include <wscengine/url.hpp>

using namespace wscengine;

TEST(Url, ParsesPlainAndSecure) {
  auto u = parse_url("ws://Example.COM/feed?x=1");
  ASSERT_TRUE(u) << u.error().message();
  EXPECT_FALSE(u->secure);
  EXPECT_EQ(u->host, "example.com");
  EXPECT_EQ(u->port, 80);
  EXPECT_EQ(u->target, "/feed?x=1");
  EXPECT_EQ(u->host_header(), "example.com");

  auto s = parse_url("wss://h:8443");
  ASSERT_TRUE(s);
  EXPECT_TRUE(s->secure);
  EXPECT_EQ(s->port, 8443);
  EXPECT_EQ(s->target, "/");
  EXPECT_EQ(s->host_header(), "h:8443");
}

TEST(Url, ParsesIpv6Literal) {
  auto u = parse_url("ws://[::1]:9001/x");
  ASSERT_TRUE(u);
  EXPECT_EQ(u->host, "::1");
  EXPECT_EQ(u->port, 9001);
  EXPECT_EQ(u->host_header(), "[::1]:9001");
}

TEST(Url, QueryWithoutPathGetsSlash) {
  auto u = parse_url("ws://h?token=1");
  ASSERT_TRUE(u);
  EXPECT_EQ(u->target, "/?token=1");
}

TEST(Url, RejectsWithReason) {
  struct Case {
    const char* url;
    const char* says;
  } cases[] = {
      {"http://h/", "unsupported scheme 'http'"},
      {"h:80/", "missing scheme"},
      {"ws:///x", "missing host"},
      {"ws://h:0/", "invalid port"},
      {"ws://h:70000/", "invalid port"},
      {"ws://h:12ab/", "invalid port"},
      {"ws://h:/", "empty port"},
      {"ws://[::1/", "unterminated IPv6"},
      {"ws://h/#frag", "fragment"},
      {"ws://user:pw@h/", "user info"},
      {"ws://h/a b", "invalid character"},
  };
  for (const auto& c : cases) {
    auto u = parse_url(c.url);
    ASSERT_FALSE(u) << c.url;
    EXPECT_EQ(u.error().code, make_error_code(errc::invalid_url)) << c.url;
    EXPECT_NE(u.error().message().find(c.says), std::string::npos) << c.url << " -> " << u.error().message();
  }
}

TEST(ErrorNames, EveryKindHasItsEnumeratorName) {
  EXPECT_EQ(wscengine::to_string(wscengine::errc::connection_refused), "connection_refused");
  EXPECT_EQ(wscengine::to_string(wscengine::errc::attempts_exhausted), "attempts_exhausted");
  EXPECT_EQ(wscengine::to_string(wscengine::errc::stale), "stale");
  EXPECT_EQ(wscengine::make_error_code(wscengine::errc::stale).message(), "no data for too long");
  EXPECT_EQ(wscengine::to_string(wscengine::errc::expired), "expired");
  EXPECT_EQ(wscengine::to_string(wscengine::errc::dropped), "dropped");
  // errc::dropped is the last enumerator: every kind up to it has a name and a message.
  for (int v = static_cast<int>(wscengine::errc::invalid_url); v <= static_cast<int>(wscengine::errc::dropped); ++v) {
    EXPECT_NE(wscengine::to_string(static_cast<wscengine::errc>(v)), "unknown") << v;
    EXPECT_NE(wscengine::make_error_code(static_cast<wscengine::errc>(v)).message(), "unknown wscengine error") << v;
  }
  EXPECT_EQ(wscengine::to_string(static_cast<wscengine::errc>(9999)), "unknown");
}
