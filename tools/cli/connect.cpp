// `wscengine connect URL`: an interactive/scriptable client built on the engine.
// Messages go to stdout, everything about the connection to stderr.
#include <openssl/evp.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <mutex>
#include <optional>
#include <string>
#include <thread>

#include <wscengine/beast.hpp>
#include <wscengine/websocketpp.hpp>
#include <wscengine/wscengine.hpp>

#ifdef WSCENGINE_CLI_HAVE_OTEL
#include <wscengine/otel_export.hpp>
#endif

#include "cli.hpp"

namespace wscengine::cli {
namespace {

std::atomic<bool> g_interrupted{false};
void on_signal(int) { g_interrupted = true; }

// Where a person reads: prefixes on stdout's messages when it is a terminal, colour
// on a terminal unless --no-color or NO_COLOR (https://no-color.org) says otherwise.
// Piped, the output is exactly the messages, one per line.
struct Look {
  bool prefixes = false;  // stdout is a terminal: "< " received, "> " sent
  bool colour_out = false, colour_err = false;
  static Look of_this_process(bool no_colour_flag) {
    const bool colour = !no_colour_flag && !std::getenv("NO_COLOR");
    Look look;
    look.prefixes = ::isatty(STDOUT_FILENO);
    look.colour_out = colour && look.prefixes;
    look.colour_err = colour && ::isatty(STDERR_FILENO);
    return look;
  }
};

// Status lines on stderr: dimmed, warnings yellow, errors red (with colour on).
class Status {
 public:
  explicit Status(bool colour) : colour_(colour) {}
  void info(const std::string& text) const { line("\033[2m", text); }
  void good(const std::string& text) const { line("\033[2m", text); }
  void warn(const std::string& text) const { line("\033[33m", text); }
  void bad(const std::string& text) const { line("\033[31m", text); }

 private:
  void line(const char* colour, const std::string& text) const {
    std::lock_guard lock(mutex_);
    if (colour_)
      std::fprintf(stderr, "%s%s\033[0m\n", colour, text.c_str());
    else
      std::fprintf(stderr, "%s\n", text.c_str());
  }
  bool colour_;
  mutable std::mutex mutex_;
};

// --binary-out: how a binary message is printed.
enum class BinaryOut { summary, hex, base64, raw };

std::string to_hex(std::string_view bytes) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 3);
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    auto b = static_cast<unsigned char>(bytes[i]);
    if (i) out += ' ';
    out += digits[b >> 4];
    out += digits[b & 15];
  }
  return out;
}

// Base64 (RFC 4648, padded), by OpenSSL.
std::string to_base64(std::string_view bytes) {
  std::string out((bytes.size() + 2) / 3 * 4 + 1, '\0');  // EVP_EncodeBlock writes a NUL
  const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(bytes.data()), static_cast<int>(bytes.size()));
  out.resize(static_cast<std::size_t>(n));
  return out;
}

// The first 16 bytes as hex, then " …" when there are more.
std::string hex_preview(std::string_view bytes) {
  return to_hex(bytes.substr(0, 16)) + (bytes.size() > 16 ? " …" : "");
}

// A ping's or pong's payload for a person: quoted when it is printable ASCII, else hex.
std::string shown_payload(std::string_view payload) {
  if (payload.empty()) return {};
  const bool printable = std::all_of(payload.begin(), payload.end(), [](char c) { return c >= 0x20 && c < 0x7f; });
  return printable ? " \"" + std::string(payload) + "\"" : " hex " + to_hex(payload);
}

// --show-ping-pong: one status line per ping or pong, "<" what came, ">" what went.
std::string control_frame_line(const ControlFrameEvent& event) {
  std::string line;
  switch (event.kind) {
    case ControlFrameKind::ping_received:
      line = "< ping";
      break;
    case ControlFrameKind::pong_sent:
      line = "> pong";
      break;
    case ControlFrameKind::ping_sent:
      line = "> ping";
      break;
    case ControlFrameKind::pong_received:
      line = "< pong";
      break;
  }
  line += shown_payload(event.payload);
  if (event.kind == ControlFrameKind::pong_received) {
    line += event.round_trip
                ? " after " +
                      std::to_string(std::chrono::duration_cast<std::chrono::microseconds>(*event.round_trip).count()) +
                      " µs"
                : " (answers no ping of ours)";
  }
  return line;
}

struct ConnectSettings {
  BinaryOut binary_out = BinaryOut::summary;
  bool echo = false, quiet = false;
  std::uint64_t count = 0;  // 0 = no limit
  std::vector<std::string> send;
  Look look;
};

class CliClient final : public Client {
 public:
  CliClient(ConnectSettings settings, const Status& status) : settings_(std::move(settings)), status_(status) {}

  Error on_open(Context& ctx, const HandshakeResponse& response, bool restarting) override {
    if (restarting) ++reconnects;
    std::string what = restarting ? "reconnected" : "connected";
    what += " (session " + std::to_string(ctx.session_id()) + ", HTTP " + std::to_string(response.status);
    if (response.http2) what += ", a stream of an HTTP/2 connection";
    if (!response.subprotocol.empty()) what += ", subprotocol " + response.subprotocol;
    status_.good(what + ")");
    for (const auto& text : settings_.send) {
      if (Error e = ctx.connection().send_text(text)) return e;
      if (settings_.look.prefixes && !settings_.quiet) print_sent(text);
    }
    if (!sent_at_set.exchange(true)) sent_at = std::chrono::steady_clock::now();
    return {};
  }

  // On a terminal: "> " and the text of a message this client sent (not a typed line,
  // which the terminal shows already).
  void print_sent(std::string_view text) {
    std::lock_guard lock(output_mutex_);
    std::fputs(settings_.look.colour_out ? "\033[2m> \033[0m" : "> ", stdout);
    std::fwrite(text.data(), 1, text.size(), stdout);
    std::fputc('\n', stdout);
  }

  /// The close frame stop() sends (a /close command); 1000 unless set.
  void close_with(CloseFrame frame) {
    std::lock_guard lock(close_mutex_);
    close_frame_ = std::move(frame);
  }

  void on_message(Context& ctx, const Message& message) override {
    bytes += message.payload.size();
    if (!settings_.quiet) {
      std::lock_guard lock(output_mutex_);
      if (settings_.look.prefixes && (message.part == MessagePart::whole || message.part == MessagePart::first))
        std::fputs(settings_.look.colour_out ? "\033[32m< \033[0m" : "< ", stdout);
      if (message.is_text()) {
        // A streamed text message's parts (each valid UTF-8) make one line.
        std::fwrite(message.payload.data(), 1, message.payload.size(), stdout);
        if (message.is_last()) std::fputc('\n', stdout);
        if (message.part != MessagePart::whole) std::fflush(stdout);
      } else if (settings_.binary_out == BinaryOut::raw) {
        std::fwrite(message.payload.data(), 1, message.payload.size(), stdout);
        std::fflush(stdout);
      } else if (settings_.binary_out != BinaryOut::summary) {
        // A streamed message's parts make one line, as text does.
        const std::string line =
            settings_.binary_out == BinaryOut::hex ? to_hex(message.payload) : to_base64(message.payload);
        if (settings_.binary_out == BinaryOut::hex && message.offset != 0 && !line.empty()) std::fputc(' ', stdout);
        std::fputs(line.c_str(), stdout);
        if (message.is_last()) std::fputc('\n', stdout);
      } else if (message.part == MessagePart::whole) {
        std::fprintf(stdout, "<binary %zu bytes: %s>\n", message.payload.size(), hex_preview(message.payload).c_str());
      } else {
        std::fprintf(stdout, "<binary part at %llu, %zu bytes%s: %s>\n",
                     static_cast<unsigned long long>(message.offset), message.payload.size(),
                     message.part == MessagePart::last ? ", last" : "", hex_preview(message.payload).c_str());
      }
    }
    if (!message.is_last()) return;  // a message counts once it is whole
    std::uint64_t n = ++messages;
    if (settings_.echo) {
      if (Error e = ctx.connection().send(message.type, message.payload)) status_.warn("echo failed: " + e.message());
    }
    if (settings_.count != 0 && n == settings_.count) {
      count_reached = true;
      ctx.exit();
    }
  }

  std::optional<CloseFrame> on_close(Context& ctx, const std::optional<CloseFrame>& received) override {
    if (int code = failed_with_.exchange(0); code != 0 && !received) {
      // The client failed the connection (on_read_error): its close frame, or the
      // drop, is what went on the wire, not the 1000 of a closing client.
      last_close_code = code;
      status_.warn(code == close_code::abnormal
                       ? std::string("closed: the client dropped the connection (code 1006)")
                       : "closed: the client failed the connection with code " + std::to_string(code));
      return std::nullopt;
    }
    if (received) {  // by the server, or a drop (1006) the server or the heartbeat found
      last_close_code = received->code;
      std::string text = ctx.initiator() == CloseInitiator::peer ? "closed by the server: code " : "closed: code ";
      text += std::to_string(received->code);
      if (received->code == close_code::abnormal) text += " (connection dropped, no close frame)";
      if (!received->reason.empty()) text += ", reason \"" + received->reason + "\"";
      (received->code == close_code::normal ? status_.info(text) : status_.warn(text));
      return std::nullopt;
    }
    CloseFrame frame;
    {
      std::lock_guard lock(close_mutex_);
      frame = close_frame_;
    }
    last_close_code = frame.code;
    status_.info("closing (code " + std::to_string(frame.code) +
                 (frame.reason.empty() ? std::string(")") : ", reason \"" + frame.reason + "\")"));
    return frame;
  }

  void on_read_error(Context& ctx, const Error& error) override {
    status_.warn("read error: " + error.message());
    if (!ctx.connection().is_open())
      failed_with_ = close_code_sent_for(error);
    else if (error.is(errc::stale))
      failed_with_ = close_code::going_away;  // the engine closes a stale session with 1001
  }
  void on_close_error(Context&, const Error& error) override { status_.warn("close: " + error.message()); }
  void on_restart_error(Context&, const Error& error, std::uint32_t retry) override {
    status_.warn("reconnect attempt " + std::to_string(retry) + " failed: " + error.message() + "; retrying");
  }

  std::atomic<std::uint64_t> messages{0}, bytes{0}, reconnects{0};
  std::atomic<int> last_close_code{0};
  std::atomic<bool> count_reached{false};
  // When the first session's --send messages were queued (for --wait).
  std::atomic<bool> sent_at_set{false};
  std::atomic<std::chrono::steady_clock::time_point> sent_at{};

 private:
  // The close code the adapter sent when a read error failed the connection; a
  // failure without a close frame of its own (a write timeout, an I/O error) is a drop.
  static int close_code_sent_for(const Error& error) {
    if (error.is(errc::protocol_error)) return close_code::protocol_error;
    if (error.is(errc::invalid_utf8)) return close_code::invalid_payload;
    if (error.is(errc::message_too_big)) return close_code::too_big;
    return close_code::abnormal;
  }

  std::atomic<int> failed_with_{0};  // set by on_read_error for the session's on_close

  const ConnectSettings settings_;
  const Status& status_;
  std::mutex output_mutex_;
  std::mutex close_mutex_;
  CloseFrame close_frame_{close_code::normal, {}};  // close_mutex_
};

// Reads stdin on its own thread and sends each line; the engine it sends through is
// withdrawn (under the lock) before the engine is destroyed.
struct StdinPump {
  std::mutex mutex;
  Engine* engine = nullptr;
  std::atomic<bool> eof{false};
  std::atomic<bool> close_asked{false};  // a /close command: the main loop stops the engine
  // --outage: a line may be held across an outage, so its outcome comes later, through
  // async_send's completion; without it a send's refusal is the whole story.
  bool outcome_later = false;
};

// The engine's statistics as JSON fields (after "{" and before the CLI's own).
std::string stats_fields(const EngineStats& s) {
  auto micros = [](const std::optional<std::chrono::nanoseconds>& d) {
    return d ? std::to_string(std::chrono::duration_cast<std::chrono::microseconds>(*d).count()) : std::string("null");
  };
  std::string error = "null";
  if (s.last_error) {
    error = "\"";
    for (char c : s.last_error->message()) {
      if (c == '"' || c == '\\') error += '\\';
      if (static_cast<unsigned char>(c) >= 0x20) error += c;
    }
    error += '"';
  }
  return "\"messages_sent\":" + std::to_string(s.traffic.messages_sent) +
         ",\"bytes_sent\":" + std::to_string(s.traffic.bytes_sent) +
         ",\"queued_messages\":" + std::to_string(s.session.queued_messages) +
         ",\"queued_bytes\":" + std::to_string(s.session.queued_bytes) +
         ",\"held_messages\":" + std::to_string(s.held_messages) + ",\"held_bytes\":" + std::to_string(s.held_bytes) +
         ",\"sends_expired\":" + std::to_string(s.sends_expired) +
         ",\"sends_dropped\":" + std::to_string(s.sends_dropped) + ",\"rtt_us\":" + micros(s.rtt) +
         ",\"smoothed_rtt_us\":" + micros(s.smoothed_rtt) + ",\"sessions\":" + std::to_string(s.sessions) +
         ",\"session_id\":" + std::to_string(s.session.session_id) +
         ",\"session_seconds\":" + std::to_string(std::chrono::duration<double>(s.session.age).count()) +
         ",\"last_error\":" + error;
}

// The engine's counters as the JSON line of --stats-every and /stats.
std::string stats_line(const EngineStats& now) {
  return "{\"messages\":" + std::to_string(now.traffic.messages_received) +
         ",\"bytes\":" + std::to_string(now.traffic.bytes_received) +
         ",\"reconnects\":" + std::to_string(now.reconnects) + "," + stats_fields(now) + "}";
}

// Hex digits, two per byte, spaces between bytes allowed ("01 ff", "01ff").
std::optional<std::string> parse_hex(std::string_view text) {
  auto digit = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  std::string out;
  for (std::size_t i = 0; i < text.size();) {
    if (text[i] == ' ') {
      ++i;
      continue;
    }
    if (i + 1 >= text.size() || digit(text[i]) < 0 || digit(text[i + 1]) < 0) return std::nullopt;
    out += static_cast<char>(digit(text[i]) * 16 + digit(text[i + 1]));
    i += 2;
  }
  return out;
}

// A close code a client may send (RFC 6455 §7.4: not 1004-1006 nor 1015, which say
// what happened without a frame; 3000-4999 for applications).
bool sendable_close_code(long code) {
  return (code >= 1000 && code <= 1003) || (code >= 1007 && code <= 1014) || (code >= 3000 && code <= 4999);
}

constexpr const char* kSlashHelp =
    "commands: /ping [text] (and the round trip), /close [code [reason]], /binary <hex bytes>, "
    "/stats, /help; //text sends /text";

// A line that starts with '/' (not "//"), typed with slash commands on. Runs on the
// stdin thread; the engine is used only while `pump` still lends it.
void run_slash_command(const std::string& line, StdinPump& pump, CliClient& client, const Status& status) {
  const auto space = line.find(' ');
  const std::string command = line.substr(0, space);
  std::string rest = space == std::string::npos ? std::string() : line.substr(space + 1);
  auto with_engine = [&pump](auto&& use) {
    std::lock_guard lock(pump.mutex);
    if (pump.engine) use(*pump.engine);
  };
  if (command == "/help") {
    status.info(kSlashHelp);
  } else if (command == "/ping") {
    SessionConnection connection;
    with_engine([&](Engine& engine) { connection = engine.connection(); });
    const auto t0 = std::chrono::steady_clock::now();
    if (Error e = connection.ping(rest, std::chrono::seconds(10))) return status.warn("ping: " + e.message());
    const auto us =
        std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t0).count();
    status.info("pong" + (rest.empty() ? std::string() : " \"" + rest + "\"") + " after " + std::to_string(us) + " µs");
  } else if (command == "/close") {
    long code = close_code::normal;
    std::string reason;
    if (!rest.empty()) {
      const auto gap = rest.find(' ');
      const std::string number = rest.substr(0, gap);
      char* end = nullptr;
      code = std::strtol(number.c_str(), &end, 10);
      if (end == number.c_str() || *end != '\0' || !sendable_close_code(code))
        return status.warn("/close: '" + number + "' is not a close code a client may send (1000-1003, " +
                           "1007-1014, 3000-4999)");
      if (gap != std::string::npos) reason = rest.substr(gap + 1);
      if (reason.size() > 123) return status.warn("/close: the reason is longer than 123 bytes");
    }
    client.close_with(CloseFrame{static_cast<std::uint16_t>(code), reason});
    pump.close_asked = true;
  } else if (command == "/binary") {
    auto bytes = parse_hex(rest);
    if (!bytes) return status.warn("/binary needs hex bytes, e.g. /binary 01 ff 7e (got '" + rest + "')");
    Error e = Error(errc::not_connected, "the engine is gone");
    with_engine([&](Engine& engine) { e = engine.send(MessageType::binary, *bytes, std::chrono::milliseconds(1000)); });
    if (e) return status.warn("not sent: " + e.message());
    status.info("sent binary, " + std::to_string(bytes->size()) + " bytes");
  } else if (command == "/stats") {
    std::string line_out;
    with_engine([&](Engine& engine) { line_out = stats_line(engine.stats()); });
    std::fprintf(stderr, "%s\n", line_out.c_str());
  } else {
    status.warn("unknown command " + command + " (" + kSlashHelp + ")");
  }
}

}  // namespace

int run_connect(const Args& args) {
  std::string error;
  if (args.positional().size() != 1) return usage_error("connect needs exactly one URL");
  auto workers = args.number("--workers", 1, 1, 1024, error);
  auto ping_interval = args.number("--ping-interval", 0, 0, 86400, error);
  auto pong_timeout = args.number("--pong-timeout", 10, 0.001, 3600, error);
  auto max_silence = args.number("--max-silence", 0, 0, 86400, error);
  auto stats_every = args.number("--stats-every", 0, 0, 86400, error);
  const OutageOptions outage_defaults;
  auto outage_max_age = args.number("--outage-max-age", std::chrono::duration<double>(outage_defaults.max_age).count(),
                                    0.001, 86400, error);
  auto outage_max_messages =
      args.number("--outage-max-messages", static_cast<double>(outage_defaults.max_messages), 1, 1e9, error);
  auto max_size = args.number("--max-message-size", 16 << 20, 1, 1e12, error);
  auto count = args.number("--count", 0, 0, 1e15, error);
  auto max_redirects = args.number("--max-redirects", EngineOptions{}.max_redirects, 0, 20, error);
  const DeflateOptions deflate_defaults;
  auto server_window = args.number("--server-max-window-bits", deflate_defaults.server_max_window_bits, 9, 15, error);
  auto client_window = args.number("--client-max-window-bits", deflate_defaults.client_max_window_bits, 9, 15, error);
  auto level = args.number("--compression-level", deflate_defaults.level, 0, 9, error);
  auto min_size = args.number("--compress-min-size", 0, 0, 1e12, error);
  auto stream_max = args.number("--stream-max-size", 0, 0, 1e18, error);
  auto wait = args.number("--wait", 0, 0, 86400, error);
  if (!error.empty()) return usage_error(error);
  std::string adapter = args.value("--adapter").value_or("beast");
  if (adapter != "beast" && adapter != "websocketpp")
    return usage_error("--adapter must be beast or websocketpp (got '" + adapter + "')");

  EngineOptions options;
  options.url = args.positional()[0];
  options.reader_slots = static_cast<std::size_t>(*workers);
  if (args.has("--low-latency")) set_low_latency(options);
  options.auto_reconnect = !args.has("--no-reconnect");
  options.max_message_size = static_cast<std::size_t>(*max_size);
  options.max_redirects = static_cast<std::uint32_t>(*max_redirects);
  options.backoff.initial_delay = std::chrono::milliseconds(250);
  options.backoff.max_delay = std::chrono::seconds(5);
  // The engine's heartbeat: a dead peer ends as on_read_error (timeout) + on_close 1006.
  options.ping_interval =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::duration<double>(*ping_interval));
  options.pong_timeout =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::duration<double>(*pong_timeout));
  // The stale-data watchdog: no data message for that long ends as on_read_error (stale)
  // and a close with 1001, then a reconnect (or exit 1 with --no-reconnect).
  options.max_silence =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::duration<double>(*max_silence));
  if (*max_silence > 0 && options.max_silence.count() == 0) return usage_error("--max-silence must be at least 0.001");
  // Lines typed during an outage: held for the next session instead of refused.
  if (auto outage = args.value("--outage")) {
    if (*outage == "hold")
      options.outage.mode = OutageSends::hold;
    else if (*outage == "drop-oldest")
      options.outage.mode = OutageSends::drop_oldest;
    else if (*outage != "fail")
      return usage_error("--outage must be fail, hold or drop-oldest (got '" + *outage + "')");
  } else if (args.has("--outage-max-age") || args.has("--outage-max-messages")) {
    return usage_error("--outage-max-age and --outage-max-messages need --outage hold or drop-oldest");
  }
  options.outage.max_age =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::duration<double>(*outage_max_age));
  options.outage.max_messages = static_cast<std::size_t>(*outage_max_messages);
  for (const auto& header : args.values("--header")) {
    auto colon = header.find(':');
    if (colon == std::string::npos || colon == 0)
      return usage_error("--header needs 'Name: value' (got '" + header + "')");
    std::string value = header.substr(colon + 1);
    value.erase(0, value.find_first_not_of(' '));
    options.headers.push_back({header.substr(0, colon), value});
  }
  options.subprotocols = args.values("--subprotocol");
  if (auto bad = apply_tls(args, options); !bad.empty()) return usage_error(bad);
  if (auto bad = apply_http2(args, options); !bad.empty()) return usage_error(bad);
  // Each compression parameter implies --compress.
  options.offer_compression = false;
  for (const char* flag :
       {"--compress", "--server-max-window-bits", "--client-max-window-bits", "--server-no-context-takeover",
        "--client-no-context-takeover", "--compression-level", "--compress-min-size"})
    options.offer_compression = options.offer_compression || args.has(flag);
  options.deflate.server_max_window_bits = static_cast<std::uint8_t>(*server_window);
  options.deflate.client_max_window_bits = static_cast<std::uint8_t>(*client_window);
  options.deflate.server_no_context_takeover = args.has("--server-no-context-takeover");
  options.deflate.client_no_context_takeover = args.has("--client-no-context-takeover");
  options.deflate.level = static_cast<int>(*level);
  options.deflate.min_size = static_cast<std::size_t>(*min_size);
  if (auto proxy = args.value("--proxy")) {
    if (*proxy == "none")
      options.proxy.from_environment = false;
    else
      options.proxy.url = *proxy;
  }
  options.addresses = args.values("--connect-to");
  options.stream.enabled = args.has("--stream");
  options.stream.max_message_size = static_cast<std::uint64_t>(*stream_max);
  if (args.has("--stream-max-size") && !options.stream.enabled) return usage_error("--stream-max-size needs --stream");
  if (options.stream.enabled && args.has("--echo"))
    return usage_error("--echo cannot send a streamed message back: use one of --echo and --stream");

  const Look look = Look::of_this_process(args.has("--no-color"));
  Status status(look.colour_err);
#ifdef WSCENGINE_CLI_HAVE_OTEL
  otel::ExportOptions export_options;  // empty: the OTEL_* variables decide
  export_options.service_name = "wscengine-cli";
  if (auto trace = args.value("--trace")) {
    export_options.traces = "lines";
    export_options.metrics = "lines";
    if (*trace != "stdout") export_options.file = *trace;
  }
  auto exporters = otel::install_exporters(export_options);
  if (!exporters) return usage_error("telemetry: " + exporters.error().message());
  options.telemetry = exporters.value()->telemetry();
#else
  if (args.has("--trace")) return usage_error("--trace: this build has no OpenTelemetry");
#endif

  ConnectSettings settings;
  settings.echo = args.has("--echo");
  settings.quiet = args.has("--quiet");
  settings.count = static_cast<std::uint64_t>(*count);
  settings.send = args.values("--send");
  settings.look = look;
  if (auto out = args.value("--binary-out")) {
    if (*out == "hex")
      settings.binary_out = BinaryOut::hex;
    else if (*out == "base64")
      settings.binary_out = BinaryOut::base64;
    else if (*out == "raw")
      settings.binary_out = BinaryOut::raw;
    else
      return usage_error("--binary-out must be hex, base64 or raw (got '" + *out + "')");
    // Base64 cannot be cut at any byte: a streamed message's parts would not join.
    if (settings.binary_out == BinaryOut::base64 && options.stream.enabled)
      return usage_error("--binary-out base64 cannot print a message in parts: use hex or raw with --stream");
  }
  auto client = std::make_shared<CliClient>(settings, status);
  if (args.has("--show-ping-pong")) {
    // On a callback thread, one at a time and in order; `status` outlives the engine.
    options.on_control_frame = [&status](const ControlFrameEvent& event) {
      if (event.missed != 0)
        status.warn("(" + std::to_string(event.missed) + " pings and pongs not shown: the output fell behind)");
      status.info(control_frame_line(event));
    };
  }

  std::unique_ptr<Engine> engine;
  try {
    auto connector = adapter == "websocketpp" ? websocketpp::make_connector() : beast::make_connector();
    engine = std::make_unique<Engine>(options, client, std::move(connector));
  } catch (const InvalidOptions& e) {
    return usage_error(e.what());
  }
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  auto started = std::chrono::steady_clock::now();
  status.info("connecting to " + options.url);
  if (Error e = engine->start()) {
    status.bad("could not connect to " + options.url + ": " + e.message());
    return 1;
  }

  auto pump = std::make_shared<StdinPump>();
  pump->engine = engine.get();
  pump->outcome_later = options.outage.mode != OutageSends::fail;
  bool stdin_is_terminal = ::isatty(STDIN_FILENO);
  const bool slash = stdin_is_terminal || args.has("--slash");
  if (slash && stdin_is_terminal) status.info("/help lists the commands");
  std::thread([pump, client, slash, &status] {
    std::string line;
    while (std::getline(std::cin, line)) {
      if (slash && line.rfind('/', 0) == 0) {
        if (line.rfind("//", 0) != 0) {
          run_slash_command(line, *pump, *client, status);
          continue;
        }
        line.erase(0, 1);  // "//text" sends "/text"
      }
      // A full send queue holds stdin back (as a pipe would), without holding the
      // engine: the lock is let go between tries so that exit can withdraw it.
      for (;;) {
        std::unique_lock lock(pump->mutex);
        if (!pump->engine) return;
        if (pump->outcome_later) {
          // The engine's destructor runs every completion first, so `status` outlives them.
          Error e = pump->engine->async_send(MessageType::text, line, [&status](Error outcome) {
            if (outcome) status.warn("not sent: " + outcome.message());
          });
          if (e.is(errc::send_queue_full)) {  // no waiting send for held messages: retry soon
            lock.unlock();
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
            continue;
          }
          if (e) status.warn("not sent: " + e.message());
          break;
        }
        Error e = pump->engine->send(MessageType::text, line, std::chrono::milliseconds(100));
        if (e.is(errc::send_queue_full)) continue;
        if (e) status.warn("not sent: " + e.message());
        break;
      }
    }
    pump->eof = true;
  }).detach();  // blocked in getline until input or exit; it only touches `pump`

  bool user_stop = false;
  const auto every =
      std::chrono::duration_cast<std::chrono::steady_clock::duration>(std::chrono::duration<double>(*stats_every));
  auto next_stats = std::chrono::steady_clock::now() + every;
  while (engine->wait_stopped(std::chrono::milliseconds(50))) {
    if (every.count() > 0 && std::chrono::steady_clock::now() >= next_stats) {
      next_stats += every;
      std::fprintf(stderr, "%s\n", stats_line(engine->stats()).c_str());
    }
    // --wait: the answers to the --send messages had their time; close with 1000.
    const bool waited =
        *wait > 0 && client->sent_at_set &&
        std::chrono::steady_clock::now() - client->sent_at.load() >= std::chrono::duration<double>(*wait);
    if (g_interrupted || (pump->eof && stdin_is_terminal) || pump->close_asked || waited) {
      user_stop = true;
      break;
    }
  }
  if (user_stop) (void)engine->stop();
  {
    std::lock_guard lock(pump->mutex);
    pump->engine = nullptr;
  }
  const EngineStats final_stats = engine->stats();
  engine.reset();
  std::fflush(stdout);

  int close_code = client->last_close_code;
  bool normal = user_stop || client->count_reached || close_code == close_code::normal;
  if (!normal) status.bad("connection ended (close code " + std::to_string(close_code) + ") and reconnect is off");
  if (args.has("--stats")) {
    double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    rusage usage{};
    ::getrusage(RUSAGE_SELF, &usage);  // ru_maxrss: the peak resident set, in KiB on Linux
    std::fprintf(stderr,
                 "{\"messages\":%llu,\"bytes\":%llu,\"seconds\":%.3f,\"reconnects\":%llu,\"close_code\":%d,"
                 "\"max_rss_kib\":%ld,%s}\n",
                 static_cast<unsigned long long>(client->messages.load()),
                 static_cast<unsigned long long>(client->bytes.load()), seconds,
                 static_cast<unsigned long long>(client->reconnects.load()), close_code, usage.ru_maxrss,
                 stats_fields(final_stats).c_str());
  }
  return normal ? 0 : 1;
}

}  // namespace wscengine::cli
