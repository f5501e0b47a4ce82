#include <gtest/gtest.h>

#include <cmath>

#include <wscengine/engine.hpp>
#include <wscengine/memory.hpp>

#include "support/recorder.hpp"

using namespace wscengine;
using namespace std::chrono_literals;

namespace {
EngineOptions valid() {
  EngineOptions o;
  o.url = "ws://localhost:1/";
  return o;
}

void expect_invalid(EngineOptions o, const std::string& says) {
  Error e = o.validate();
  ASSERT_TRUE(e) << "expected invalid: " << says;
  EXPECT_NE(e.message().find(says), std::string::npos) << e.message();
  auto server = memory::Server::create();
  try {
    Engine engine(o, std::make_shared<test::Recorder>(), server->connector());
    FAIL() << "Engine accepted invalid options: " << says;
  } catch (const InvalidOptions& ex) {
    EXPECT_NE(std::string(ex.what()).find(says), std::string::npos) << ex.what();
  }
}
}  // namespace

TEST(Options, DefaultsAreValid) { EXPECT_FALSE(valid().validate()); }

TEST(Options, EachRuleNamesTheField) {
  auto o = valid();
  o.url = "ftp://x";
  expect_invalid(o, "unsupported scheme");
  o = valid();
  o.reader_slots = 0;
  expect_invalid(o, "reader_slots");
  o = valid();
  o.deflate.client_max_window_bits = 8;
  expect_invalid(o, "deflate.client_max_window_bits");
  o = valid();
  o.tls.pinned_public_keys = {"sha256/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", "sha256/short="};
  expect_invalid(o, "tls.pinned_public_keys: 'sha256/short='");
  o = valid();
  o.max_silence = -1ms;
  expect_invalid(o, "max_silence must be >= 0");
  o = valid();
  o.outage.max_age = 0ms;  // unused while sends between sessions fail
  EXPECT_FALSE(o.validate());
  o.outage.mode = OutageSends::hold;
  expect_invalid(o, "outage.max_age must be > 0");
  o = valid();
  o.outage.mode = OutageSends::drop_oldest;
  o.outage.max_bytes = 0;
  expect_invalid(o, "outage.max_bytes must be > 0");
  o = valid();
  o.outage.mode = static_cast<OutageSends>(9);
  expect_invalid(o, "outage.mode");
  o = valid();
  o.outage.mode = OutageSends::hold;
  o.outage.max_messages = 0;
  expect_invalid(o, "outage.max_messages must be > 0");
  o = valid();
  o.open_timeout = 0ms;
  expect_invalid(o, "open_timeout");
  o = valid();
  o.close_timeout = -1ms;
  expect_invalid(o, "close_timeout");
  o = valid();
  o.backoff.factor = 0.5;
  expect_invalid(o, "backoff.factor");
  o = valid();
  o.backoff.jitter = 1.5;
  expect_invalid(o, "backoff.jitter");
  o = valid();
  o.backoff.max_delay = 1ms;
  o.backoff.initial_delay = 10ms;
  expect_invalid(o, "backoff.max_delay");
  o = valid();
  o.headers.push_back({"Bad Name", "v"});
  expect_invalid(o, "header name");
  o = valid();
  o.headers.push_back({"X-Token", "a\r\nInjected: 1"});
  expect_invalid(o, "CR or LF");
  o = valid();
  o.subprotocols.push_back("a,b");
  expect_invalid(o, "subprotocol");
  o = valid();
  o.max_message_size = 0;
  expect_invalid(o, "max_message_size");
  o = valid();
  o.delivery = static_cast<Delivery>(7);
  expect_invalid(o, "delivery");
  o = valid();
  o.busy_poll = std::chrono::microseconds(50);  // a callback thread never polls the network
  expect_invalid(o, "busy_poll needs delivery");
  o.delivery = Delivery::io_thread;
  EXPECT_FALSE(o.validate());
  o.busy_poll = std::chrono::microseconds(1001);
  expect_invalid(o, "busy_poll must be in 0..1000");
  o.busy_poll = std::chrono::microseconds(-1);
  expect_invalid(o, "busy_poll must be in 0..1000");
  for (double ratio : {-0.1, 1.5, std::nan("")}) {
    o = valid();
    o.telemetry.message_sample_ratio = ratio;
    expect_invalid(o, "message_sample_ratio must be in 0..1");
  }
  for (double ratio : {0.0, 0.001, 1.0}) {
    o = valid();
    o.telemetry.message_sample_ratio = ratio;
    EXPECT_FALSE(o.validate()) << ratio;
  }
  o = valid();  // ws://
  o.http2 = Http2Mode::require;
  expect_invalid(o, "http2 require on a ws:// URL needs http2_cleartext");
  o.http2_cleartext = true;
  EXPECT_FALSE(o.validate());
  o.http2 = Http2Mode::prefer;
  o.http2_cleartext = false;
  EXPECT_FALSE(o.validate());  // prefer on ws:// without h2c: the HTTP/1.1 upgrade
  o = valid();
  o.url = "ws+unix:///run/x.sock:/";
  o.http2 = Http2Mode::require;
  expect_invalid(o, "ws+unix:// URL has no HTTP/2");
  o = valid();
  o.http2 = static_cast<Http2Mode>(7);
  expect_invalid(o, "http2 must be off, prefer or require");
}

// A pin is the base64 of 32 bytes: 43 digits and one '=', with or without "sha256/".
TEST(Options, PublicKeyPinsParseOnlyInTheirOneForm) {
  const std::string digest =
      "\x77\xaa\xb3\x46\xef\x73\x38\x40\x9b\xf7\x45\x1e\xcf\x6e\xf1\x5a"
      "\x5b\x4d\xb2\x3d\x1e\xd4\xc7\x7b\x1a\x46\x18\x91\x5a\x19\x5a\x63";
  ASSERT_EQ(digest.size(), 32u);
  EXPECT_EQ(parse_public_key_pin("sha256/d6qzRu9zOECb90Uez27xWltNsj0e1Md7GkYYkVoZWmM="), digest);
  EXPECT_EQ(parse_public_key_pin("d6qzRu9zOECb90Uez27xWltNsj0e1Md7GkYYkVoZWmM="), digest);
  EXPECT_EQ(parse_public_key_pin("sha256/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="), std::string(32, '\0'));
  EXPECT_EQ(parse_public_key_pin("sha256///////////////////////////////////////////8="), std::string(32, '\xff'));
  for (const char* bad :
       {"", "sha256/", "d6qzRu9zOECb90Uez27xWltNsj0e1Md7GkYYkVoZWmM",  // no padding
        "d6qzRu9zOECb90Uez27xWltNsj0e1Md7GkYYkVoZWmM==",               // 33 bytes' worth
        "d6qzRu9zOECb90Uez27xWltNsj0e1Md7GkYYkVoZWmN=",                // padding bits set
        "d6qzRu9zOECb90Uez27xWltNsj0e1Md7GkYYkVoZWm-=",                // URL-safe alphabet
        "sha1/d6qzRu9zOECb90Uez27xWltNsj0e1Md7GkYYkVoZWmM=", " d6qzRu9zOECb90Uez27xWltNsj0e1Md7GkYYkVoZWm="}) {
    EXPECT_FALSE(parse_public_key_pin(bad)) << bad;
  }
}

TEST(Options, NullClientOrConnectorIsAClearError) {
  auto server = memory::Server::create();
  EXPECT_THROW(Engine(valid(), nullptr, server->connector()), InvalidOptions);
  EXPECT_THROW(Engine(valid(), std::make_shared<test::Recorder>(), nullptr), InvalidOptions);
}
