// Proxy URLs, the environment variables that choose a proxy, and NO_PROXY matching.
#include <gtest/gtest.h>

#include <map>

#include <wscengine/options.hpp>
#include <wscengine/proxy.hpp>

using namespace wscengine;

namespace {

Url url(const char* text) { return parse_url(text).value(); }

/// An environment made of a map, so that tests never touch the process's own.
EnvironmentLookup environment(std::map<std::string, std::string> vars) {
  return [vars = std::move(vars)](const char* name) -> const char* {
    auto it = vars.find(name);
    return it == vars.end() ? nullptr : it->second.c_str();
  };
}

std::string chosen(const char* target, std::map<std::string, std::string> vars, ProxyOptions options = {}) {
  auto proxy = choose_proxy(url(target), options, environment(std::move(vars)));
  if (!proxy) return "error: " + proxy.error().message();
  return proxy.value() ? proxy.value()->to_string() : "direct";
}

}  // namespace

TEST(ProxyUrl, ParsesHostPortAndCredentials) {
  auto p = parse_proxy_url("http://alice:s3%40cr%3At@Proxy.Example:3128/");
  ASSERT_TRUE(p) << p.error().message();
  EXPECT_EQ(p->host, "proxy.example");
  EXPECT_EQ(p->port, 3128);
  EXPECT_EQ(p->username, "alice");
  EXPECT_EQ(p->password, "s3@cr:t");
  EXPECT_EQ(p->to_string(), "http://proxy.example:3128");  // no credentials
  // RFC 7617: base64("alice:s3@cr:t")
  EXPECT_EQ(p->authorization(), "Basic YWxpY2U6czNAY3I6dA==");

  auto bare = parse_proxy_url("10.0.0.1:8080");
  ASSERT_TRUE(bare);
  EXPECT_EQ(bare->to_string(), "http://10.0.0.1:8080");
  EXPECT_EQ(bare->authorization(), "");
  auto v6 = parse_proxy_url("http://[fd00::1]");
  ASSERT_TRUE(v6);
  EXPECT_EQ(v6->host, "fd00::1");
  EXPECT_EQ(v6->port, 80);
  EXPECT_EQ(v6->to_string(), "http://[fd00::1]:80");
  EXPECT_EQ(parse_proxy_url("http://a:@h:1")->authorization(), "Basic YTo=");
  EXPECT_EQ(parse_proxy_url("http://ab@h:1")->authorization(), "Basic YWI6");
}

TEST(ProxyUrl, RefusesWithAReasonAndNeverRepeatsThePassword) {
  struct Case {
    const char* text;
    const char* says;
  } cases[] = {
      {"https://p:3128", "scheme 'https' is not supported"},
      {"socks4://p:1080", "scheme 'socks4'"},
      {"http://:3128", "missing host"},
      {"http://p:0", "invalid port"},
      {"http://p:99999", "invalid port"},
      {"http://p:", "invalid port"},
      {"http://p:3128/path", "path"},
      {"http://u:secret%zz@p:1", "percent-encoding"},
      {"http://:secret@p:1", "without a user name"},
      {"http://[::1", "unterminated"},
  };
  for (const auto& c : cases) {
    auto p = parse_proxy_url(c.text);
    ASSERT_FALSE(p) << c.text;
    EXPECT_TRUE(p.error().is(errc::invalid_option)) << c.text;
    EXPECT_NE(p.error().message().find(c.says), std::string::npos) << c.text << " -> " << p.error().message();
    EXPECT_EQ(p.error().message().find("secret"), std::string::npos) << p.error().message();
  }
}

TEST(ProxyUrl, Socks5ByAddressOrByNameWithItsDefaultPortAndCredentials) {
  auto p = parse_proxy_url("socks5h://bob:p%40ss@Socks.Example");
  ASSERT_TRUE(p) << p.error().message();
  EXPECT_EQ(p->protocol, HttpProxy::Protocol::socks5h);
  EXPECT_EQ(p->port, 1080);
  EXPECT_EQ(p->username, "bob");
  EXPECT_EQ(p->password, "p@ss");
  EXPECT_EQ(p->to_string(), "socks5h://socks.example:1080");
  auto q = parse_proxy_url("SOCKS5://10.0.0.1:9050");
  ASSERT_TRUE(q);
  EXPECT_EQ(q->protocol, HttpProxy::Protocol::socks5);
  EXPECT_EQ(q->to_string(), "socks5://10.0.0.1:9050");
  EXPECT_EQ(parse_proxy_url("http://h:1")->protocol, HttpProxy::Protocol::http);
  auto too_long = parse_proxy_url("socks5://" + std::string(256, 'u') + ":secret@h:1");
  ASSERT_FALSE(too_long);
  EXPECT_NE(too_long.error().message().find("at most 255 bytes"), std::string::npos);
  EXPECT_EQ(too_long.error().message().find("secret"), std::string::npos);
}

TEST(ProxyChoice, TheSchemeVariableLowerCaseFirstThenAllProxy) {
  EXPECT_EQ(chosen("wss://h/", {{"https_proxy", "http://a:1"}, {"HTTPS_PROXY", "http://b:1"}}), "http://a:1");
  EXPECT_EQ(chosen("wss://h/", {{"HTTPS_PROXY", "http://b:1"}}), "http://b:1");
  EXPECT_EQ(chosen("ws://h/", {{"https_proxy", "http://a:1"}}), "direct");
  EXPECT_EQ(chosen("ws://h/", {{"http_proxy", "http://c:1"}, {"ALL_PROXY", "http://d:1"}}), "http://c:1");
  EXPECT_EQ(chosen("ws://h/", {{"HTTP_PROXY", "http://c:1"}}), "http://c:1");
  EXPECT_EQ(chosen("wss://h/", {{"all_proxy", "http://d:1"}}), "http://d:1");
  EXPECT_EQ(chosen("wss://h/", {{"ALL_PROXY", "http://e:1"}}), "http://e:1");
  EXPECT_EQ(chosen("wss://h/", {{"https_proxy", ""}, {"HTTPS_PROXY", "http://b:1"}}), "http://b:1")
      << "an empty variable counts as unset";
  EXPECT_EQ(chosen("ws://h/", {}), "direct");
}

TEST(ProxyChoice, ExplicitWinsOffIsDirectUnixIsAlwaysDirect) {
  ProxyOptions explicit_proxy{.url = "http://x:9"};
  EXPECT_EQ(chosen("ws://h/", {{"http_proxy", "http://c:1"}, {"no_proxy", "h"}}, explicit_proxy), "http://x:9");
  ProxyOptions off{.from_environment = false};
  EXPECT_EQ(chosen("ws://h/", {{"http_proxy", "http://c:1"}}, off), "direct");
  EXPECT_EQ(chosen("ws+unix:///run/x.sock:/", {{"http_proxy", "http://c:1"}}), "direct");
  EXPECT_EQ(chosen("ws+unix:///run/x.sock:/", {}, explicit_proxy), "direct");
}

TEST(ProxyChoice, ABadVariableIsAnErrorNamingIt) {
  auto text = chosen("wss://h/", {{"HTTPS_PROXY", "socks4://p:1"}});
  EXPECT_NE(text.find("invalid option"), std::string::npos) << text;
  EXPECT_NE(text.find("HTTPS_PROXY"), std::string::npos) << text;
  // NO_PROXY is read first: a bypassed host never parses the proxy.
  EXPECT_EQ(chosen("wss://h/", {{"HTTPS_PROXY", "socks4://p:1"}, {"NO_PROXY", "h"}}), "direct");
}

TEST(ProxyChoice, Socks5FromAllProxyHonouringNoProxy) {
  EXPECT_EQ(chosen("wss://h/", {{"ALL_PROXY", "socks5h://s:1080"}}), "socks5h://s:1080");
  EXPECT_EQ(chosen("ws://h/", {{"all_proxy", "socks5://s"}}), "socks5://s:1080");
  EXPECT_EQ(chosen("ws://h/", {{"all_proxy", "socks5://s"}, {"no_proxy", "h"}}), "direct");
  EXPECT_EQ(chosen("ws://h/", {}, ProxyOptions{.url = "socks5h://u:p@s:9"}), "socks5h://s:9");
}

TEST(NoProxy, MatchesNamesSubdomainsAddressesBlocksAndPorts) {
  auto bypassed = [](const char* target, const char* list) { return proxy_bypassed(url(target), list); };
  EXPECT_TRUE(bypassed("ws://anything/", "*"));
  EXPECT_TRUE(bypassed("ws://example.com/", "example.com"));
  EXPECT_TRUE(bypassed("ws://api.example.com/", "example.com"));
  EXPECT_TRUE(bypassed("ws://api.example.com/", ".example.com"));
  EXPECT_TRUE(bypassed("ws://api.example.com/", "*.example.com"));
  EXPECT_FALSE(bypassed("ws://badexample.com/", "example.com"));
  EXPECT_FALSE(bypassed("ws://example.com.evil/", "example.com"));
  EXPECT_TRUE(bypassed("ws://Example.COM/", "EXAMPLE.com"));
  EXPECT_TRUE(bypassed("ws://b/", "a, b ,c"));
  EXPECT_TRUE(bypassed("ws://c/", "a b\tc"));
  EXPECT_FALSE(bypassed("ws://d/", "a,b,c,"));
  // Ports
  EXPECT_TRUE(bypassed("ws://h:8080/", "h:8080"));
  EXPECT_FALSE(bypassed("ws://h:8081/", "h:8080"));
  EXPECT_TRUE(bypassed("ws://h/", "h:80"));
  EXPECT_TRUE(bypassed("wss://h/", "h:443"));
  // Addresses and blocks
  EXPECT_TRUE(bypassed("ws://127.0.0.1:9/", "127.0.0.1"));
  EXPECT_FALSE(bypassed("ws://127.0.0.2:9/", "127.0.0.1"));
  EXPECT_TRUE(bypassed("ws://10.1.2.3/", "10.0.0.0/8"));
  EXPECT_FALSE(bypassed("ws://11.1.2.3/", "10.0.0.0/8"));
  EXPECT_TRUE(bypassed("ws://192.168.7.9/", "192.168.4.0/22"));
  EXPECT_FALSE(bypassed("ws://192.168.8.1/", "192.168.4.0/22"));
  EXPECT_TRUE(bypassed("ws://[::1]:9/", "::1"));
  EXPECT_TRUE(bypassed("ws://[::1]:9/", "[::1]"));
  EXPECT_TRUE(bypassed("ws://[::1]:9/", "[::1]:9"));
  EXPECT_FALSE(bypassed("ws://[::1]:9/", "[::1]:10"));
  EXPECT_TRUE(bypassed("ws://[fd00::5]/", "fd00::/8"));
  EXPECT_FALSE(bypassed("ws://[fe80::5]/", "fd00::/8"));
  EXPECT_FALSE(bypassed("ws://example.com/", "10.0.0.0/8")) << "names are not resolved";
  EXPECT_FALSE(bypassed("ws://h/", ""));
}

TEST(UnixSocketUrl, ParsesNodeWsForm) {
  auto u = parse_url("ws+unix:///run/app.sock:/chat?room=1");
  ASSERT_TRUE(u) << u.error().message();
  EXPECT_EQ(u->unix_socket, "/run/app.sock");
  EXPECT_EQ(u->target, "/chat?room=1");
  EXPECT_EQ(u->host_header(), "localhost");
  EXPECT_FALSE(u->secure);
  EXPECT_EQ(u->to_string(), "ws+unix:///run/app.sock:/chat?room=1");
  auto s = parse_url("wss+unix://relative.sock");
  ASSERT_TRUE(s);
  EXPECT_TRUE(s->secure);
  EXPECT_EQ(s->unix_socket, "relative.sock");
  EXPECT_EQ(s->target, "/");
  EXPECT_FALSE(parse_url("ws+unix://:/x"));
  EXPECT_FALSE(parse_url("ws+unix://" + std::string(200, 'p')));
  EXPECT_FALSE(parse_url("ws+unix:///a.sock:/x#frag"));
}

TEST(EngineOptionsProxy, AnExplicitProxyAndAddressesAreValidated) {
  EngineOptions o;
  o.url = "ws://h/";
  o.proxy.url = "ftp://p:1";
  Error e = o.validate();
  EXPECT_TRUE(e.is(errc::invalid_option));
  EXPECT_NE(e.message().find("proxy.url"), std::string::npos) << e.message();
  o.proxy.url = "http://p:1";
  EXPECT_FALSE(o.validate());
  o.addresses = {"127.0.0.1", "bad address"};
  EXPECT_NE(o.validate().message().find("addresses"), std::string::npos);
}
