// wscengine — the command-line tool: `connect` (a client on the engine) and `serve`
// (the project's local Beast server for demos, tests and benchmarks).
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <iterator>
#include <set>
#include <string>

#include <wscengine/version.hpp>

#include "cli.hpp"

namespace {

using wscengine::cli::FlagSpec;
using wscengine::cli::kTlsSwitches;
using wscengine::cli::kTlsValueFlags;

constexpr const char* kHelp = R"(usage:
  wscengine connect URL [options]   a WebSocket client built on the engine (URL: ws://, wss://,
                                    or ws+unix:///path/to.sock:/target for a Unix socket)
  wscengine serve [options]         a local WebSocket server (echo or feed)
  wscengine bench feed URL [options]  receive --count messages; print {"count","bytes","secs"}
  wscengine bench echo URL [options]  --count sequential round trips of --size bytes; print
                                      {"count","secs","p50_us","p90_us","p99_us","max_us"}
  wscengine bench reconnect URL [options]  drop-to-on_open times against a dropping server
  wscengine bench connections URL [options]  many idle connections: time, RSS, threads, broadcast
  wscengine bench storm URL [options]  many connections dropped at once: the reconnect rate
  wscengine completion bash          a bash completion script (installed with the tool)
  wscengine man                     this help as a manual page (installed as wscengine(1))
  wscengine --help | --version

connect: received messages go to stdout (text as a line, binary as its length and a hex
preview); each line read from stdin is sent as a text message; connects, closes (code and
reason) and reconnect attempts go to stderr. Ctrl-C closes with 1000 and exits; end of input
on a terminal does the same (piped input keeps the connection open until --count, a close
or Ctrl-C). On a terminal, received messages are prefixed "< " and the --send ones "> ",
status lines are dimmed and errors red; typed lines starting with / are commands: /ping
[text] (prints the round trip), /close [code [reason]], /binary <hex bytes>, /stats, /help
(//text sends /text). Piped, the output is the messages alone, one per line.
  --adapter beast|websocketpp  WebSocket library underneath (default beast)
  --workers N                  reader slots: up to N messages handled at once (default 1)
  --low-latency                run on_message on the I/O thread that read the message, which
                               (Beast adapter) polls the socket for 50 µs after each burst
                               before it waits: the lowest round trip, for a core's CPU while
                               it polls (see EngineOptions::delivery and busy_poll)
  -H, --header 'K: V'          extra handshake header (repeatable)
  -s, --subprotocol P          offer subprotocol P (repeatable)
  --compress                   offer permessage-deflate (Beast adapter only); each of the
                               next six implies it:
  --server-max-window-bits N   ask the server to compress with windows of at most 2^N bytes
                               (9..15; default 15); an answer above N fails the handshake
  --client-max-window-bits N   compress with windows of at most 2^N bytes (9..15, default 15)
  --server-no-context-takeover ask the server to compress each message on its own
  --client-no-context-takeover compress each message on its own
  --compression-level L        zlib level of what is sent: 0 (stored) to 9 (default 8)
  --compress-min-size BYTES    send messages shorter than this uncompressed (default 0)
  --send TEXT                  send TEXT after every (re)connect, from on_open (repeatable)
  --ping-interval S            ping every S seconds (0 = never, the default)
  --pong-timeout S             no pong within S seconds = dead connection (default 10)
  --max-silence S              no data message for S seconds (pings and pongs do not
                               count) = stale: close with 1001 and reconnect (default 0: off)
  --outage hold|drop-oldest    lines read during an outage are held and sent, in order, once
                               the next session is open (up to --outage-max-messages lines
                               and 1 MiB; beyond, hold waits for room, drop-oldest gives up
                               the oldest); a line given up is reported as "not sent"
                               (default fail: such a line is refused)
  --outage-max-age S           a held line is given up after S seconds (default 30)
  --outage-max-messages N      lines held at most (default 4096)
  --max-message-size BYTES     larger messages close the connection with 1009 (default 16 MiB)
  --max-redirects N            follow up to N redirects of the upgrade (default 5; 0: none)
  --ca-file F                  trust the CAs in PEM file F instead of the system store
  -n, --insecure               do not verify the server's certificate (tests only)
  --pin sha256/BASE64          accept the server only if this public key (SHA-256 of its
                               SubjectPublicKeyInfo) is in its verified chain (repeatable:
                               any one); with --insecure, only the server's own key counts
  --cert F --key F             mutual TLS: the client certificate chain and its private key
                               (PEM; an encrypted key's password from WSCENGINE_KEY_PASSWORD)
  --tls13                      refuse servers that cannot do TLS 1.3 (default minimum: 1.2)
  --no-tls-resumption          always do a full TLS handshake (default: a reconnect resumes
                               the origin's last TLS session)
  --proxy URL|none             tunnel through this proxy: HTTP (http://user:pw@host:port) or
                               SOCKS5 (socks5://, socks5h:// = the proxy resolves the name;
                               Beast adapter); none = direct. Default: HTTPS_PROXY /
                               HTTP_PROXY / ALL_PROXY and NO_PROXY from the environment
  --connect-to ADDR            connect to this IP address instead of resolving the URL's host
                               (repeatable: tried in order); Beast adapter only
  --no-reconnect               exit when the connection closes instead of reconnecting
  --echo                       send every received message back with the same type
  --count N                    after N received messages close with 1000 and exit 0
  --quiet                      print no messages
  -w, --wait S                 after the --send messages, wait S seconds for answers, then
                               close with 1000 and exit 0
  --no-color                   no colour on a terminal (also: the NO_COLOR variable)
  -P, --show-ping-pong         print pings and pongs both ways on stderr, with their payload
                               and, for a pong, the round trip of the ping it answers:
                               "< ping", "> pong", "> ping" (--ping-interval, /ping) and
                               "< pong ... after N µs"
  --binary-out hex|base64|raw  print binary messages whole as hex, as base64 (one line each)
                               or as their bytes (default: length and a hex preview)
  --slash                      take / commands from piped input too (on a terminal: always)
  --stream                     receive messages in parts as they arrive (Beast adapter): a
                               message of any size needs no buffer of its size. Text parts
                               are printed as they come, the line ends with the message;
                               binary parts as <binary part: offset, length, hex preview>.
                               --max-message-size then bounds what is buffered, and
                               --stream-max-size the streamed message (default: no bound)
  --stream-max-size BYTES      with --stream: a larger message closes with 1009
  --http2 off|prefer|require   WebSocket over HTTP/2 (RFC 8441; Beast adapter): prefer falls
                               back to the HTTP/1.1 upgrade where the server has none, require
                               fails there (default off)
  --http2-cleartext            with --http2 on a ws:// URL: HTTP/2 with prior knowledge (h2c)
  --stats                      at exit print one JSON line on stderr: messages, bytes,
                               seconds, reconnects, close_code, max_rss_kib (peak memory),
                               messages_sent, bytes_sent, queued_messages, queued_bytes,
                               held_messages, held_bytes, sends_expired, sends_dropped
                               (--outage),
                               rtt_us and smoothed_rtt_us (from pings; null before the first
                               pong), sessions, session_id, session_seconds, last_error
  --stats-every S              print such a line (without seconds, close_code and
                               max_rss_kib) every S seconds while connected
  --trace FILE|stdout          write OpenTelemetry spans and metrics there, one per line
                               (without it, the standard OTEL_* variables decide)
  exit status: 0 normal end, 1 could not connect or lost the connection with
  --no-reconnect, 2 usage error

serve: prints its URL, then serves until Ctrl-C (or --seconds).
  --host H                     address to bind (default 127.0.0.1)
  --port P                     port (default 0: a free one)
  --unix PATH                  listen on a Unix domain socket instead (URL ws+unix://PATH:/)
  --cert FILE --key FILE       serve wss:// with this certificate (PEM: the certificate,
                               then any chain) and its private key
  --mode echo|feed|blast|silent  echo every message; send a feed; blast --count messages of
                               --size bytes as fast as the socket takes them (frames encoded
                               once, written in batches: for benchmarks; --binary for binary);
                               or accept and then never read nor send (a dead peer, for
                               heartbeats) (default echo)
  --count N                    feed: messages per connection, then close 1000 (0 = endless)
  --size BYTES                 feed: message size (default: just "tick <n>")
  --rate MSGS_PER_S            feed: messages per second (0 = as fast as possible, default 10)
  --drop-every N               feed: drop the TCP connection after every N messages; blast:
                               drop (instead of closing) after --count
  --refuse-after-drop N        feed: refuse the next N upgrades after a drop (HTTP 503)
  --seconds S                  stop after S seconds (default: run until Ctrl-C)
  feed mode answers a first message "subscribe X" with "subscribed: X".

bench: the engine as a measuring client (one JSON line on stdout; exit 1 if not done in time).
  feed URL --count N           receive N messages (the clock runs from the first to the last),
                               then close 1000
  echo URL --count N --size S  N round trips, one at a time, of S bytes (--binary: binary)
  reconnect URL --count N      against a server that drops every connection (serve --mode blast
                               --count 1 --drop-every 1): N times from on_close to the next
                               on_open, with no backoff; prints {"count","p50_us","p99_us","max_us"}
  connections URL --count N    N engines (one connection each) on one runtime, against a server
                               that sends one message to every connection when one sends
                               "broadcast" (bench/peers/scale_server.js); raises the file limit;
                               prints {"connections","compressed","http2_streams",
                               "http2_connections","tls_full","tls_resumed","connect_secs",
                               "rss_kib","rss_per_connection_kib","threads","broadcast_ms"}
  storm URL --count N          N engines against bench/peers/scale_server.js, which then drops
                               them all and listens again --down-ms later (default 1000); they
                               reconnect with the default backoff and --jitter J (0..1, default
                               1); prints {"connections","jitter","down_ms","all_reopened_ms",
                               "tls_full","tls_resumed","server":{"accepted","first_ms",
                               "last_ms","peak_per_10ms","peak_per_100ms","resumed"}} (the
                               server's count of arrivals; tls_*: this process's handshakes
                               during the reconnect; scale_server.js with a certificate for wss://)
  --compress                   offer permessage-deflate (feed, echo, connections)
  --work-us U                  feed: spend U µs of CPU in each on_message (for --workers scaling)
  --adapter, --workers, --low-latency, --http2, --http2-cleartext, and the TLS flags
  (--ca-file, --insecure, --pin, --cert, --key, --tls13, --no-tls-resumption)
                               as for connect (echo needs --workers 1)
  --timeout S                  give up after S seconds (default 120)
)";

// The flags each command takes: what the parser accepts and what completion offers
// (a test checks that --help, the man page and completion name the same flags).
FlagSpec connect_flags() {
  FlagSpec spec{{"--adapter",
                 "--workers",
                 "--header",
                 "--subprotocol",
                 "--send",
                 "--ping-interval",
                 "--pong-timeout",
                 "--max-silence",
                 "--stats-every",
                 "--outage",
                 "--outage-max-age",
                 "--outage-max-messages",
                 "--max-message-size",
                 "--count",
                 "--trace",
                 "--proxy",
                 "--connect-to",
                 "--max-redirects",
                 "--server-max-window-bits",
                 "--client-max-window-bits",
                 "--compression-level",
                 "--compress-min-size",
                 "--stream-max-size",
                 "--http2",
                 "--wait",
                 "--binary-out"},
                {"--compress", "--server-no-context-takeover", "--client-no-context-takeover", "--no-reconnect",
                 "--echo", "--quiet", "--stats", "--low-latency", "--stream", "--http2-cleartext", "--no-color",
                 "--slash", "--show-ping-pong"},
                {{"-H", "--header"},
                 {"-s", "--subprotocol"},
                 {"-n", "--insecure"},
                 {"-w", "--wait"},
                 {"-P", "--show-ping-pong"}}};
  spec.with_value.insert(kTlsValueFlags.begin(), kTlsValueFlags.end());
  spec.switches.insert(kTlsSwitches.begin(), kTlsSwitches.end());
  return spec;
}
FlagSpec bench_flags() {
  FlagSpec spec{
      {"--adapter", "--workers", "--count", "--size", "--timeout", "--work-us", "--jitter", "--down-ms", "--http2"},
      {"--binary", "--low-latency", "--compress", "--http2-cleartext"}};
  spec.with_value.insert(kTlsValueFlags.begin(), kTlsValueFlags.end());
  spec.switches.insert(kTlsSwitches.begin(), kTlsSwitches.end());
  return spec;
}
FlagSpec serve_flags() {
  return {{"--host", "--port", "--unix", "--mode", "--count", "--size", "--rate", "--drop-every", "--refuse-after-drop",
           "--seconds", "--cert", "--key"},
          {"--binary"}};
}
constexpr const char* kBenchKinds[] = {"feed", "echo", "reconnect", "connections", "storm"};

// The words a flag's value may be, for completion ("" = any; "<file>" = a path).
std::string completion_values(const std::string& flag) {
  if (flag == "--adapter") return "beast websocketpp";
  if (flag == "--http2") return "off prefer require";
  if (flag == "--outage") return "fail hold drop-oldest";
  if (flag == "--binary-out") return "hex base64 raw";
  if (flag == "--mode") return "echo feed blast silent";
  if (flag == "--ca-file" || flag == "--cert" || flag == "--key" || flag == "--trace" || flag == "--unix")
    return "<file>";
  return "";
}

// `wscengine completion bash`: a bash completion script made from the flag tables.
std::string bash_completion() {
  auto words = [](const FlagSpec& spec) {
    std::string out;
    for (const auto& f : spec.with_value) out += f + ' ';
    for (const auto& f : spec.switches) out += f + ' ';
    for (const auto& [alias, flag] : spec.aliases) out += alias + ' ';
    return out;
  };
  std::string values;
  std::set<std::string> with_value;
  for (const FlagSpec& spec : {connect_flags(), bench_flags(), serve_flags()}) {
    with_value.insert(spec.with_value.begin(), spec.with_value.end());
    for (const auto& [alias, flag] : spec.aliases)
      if (spec.with_value.count(flag)) with_value.insert(alias);
  }
  for (const auto& flag : with_value) {
    std::string v = completion_values(flag);
    values += "    " + flag + ") ";
    if (v == "<file>")
      values += "COMPREPLY=($(compgen -f -- \"$cur\")); return;;\n";
    else if (!v.empty())
      values += "COMPREPLY=($(compgen -W \"" + v + "\" -- \"$cur\")); return;;\n";
    else
      values += "COMPREPLY=(); return;;\n";  // a number or a word: nothing to offer
  }
  std::string kinds;
  for (const char* k : kBenchKinds) kinds += std::string(k) + ' ';
  return "# bash completion for wscengine (generated by `wscengine completion bash`)\n"
         "_wscengine() {\n"
         "  local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]} opts\n"
         "  if [ \"$COMP_CWORD\" -gt 1 ]; then\n"
         "    case $prev in\n" +
         values +
         "    esac\n"
         "  fi\n"
         "  case ${COMP_WORDS[1]} in\n"
         "    connect) opts=\"" +
         words(connect_flags()) +
         "\";;\n"
         "    serve) opts=\"" +
         words(serve_flags()) +
         "\";;\n"
         "    bench)\n"
         "      if [ \"$COMP_CWORD\" -eq 2 ]; then opts=\"" +
         kinds + "\"; else opts=\"" + words(bench_flags()) +
         "\"; fi;;\n"
         "    completion) opts=\"bash\";;\n"
         "    *) opts=\"connect serve bench completion man --help --version \";;\n"
         "  esac\n"
         "  COMPREPLY=($(compgen -W \"$opts\" -- \"$cur\"))\n"
         "}\n"
         "complete -F _wscengine wscengine\n";
}

// `wscengine man`: the manual page (troff), made from the --help text.
std::string man_page() {
  std::string body;
  for (const char* p = kHelp; *p; ++p) {
    if (*p == '\\') {
      body += "\\e";
    } else if (*p == '-') {
      body += "\\-";
    } else {
      if ((*p == '.' || *p == '\'') && (p == kHelp || p[-1] == '\n')) body += "\\&";
      body += *p;
    }
  }
  return std::string(".TH WSCENGINE 1 \"\" \"wscengine ") + wscengine::version_string +
         "\" \"User Commands\"\n"
         ".SH NAME\n"
         "wscengine \\- a WebSocket client, server and benchmark built on the wscengine engine\n"
         ".SH DESCRIPTION\n"
         ".nf\n" +
         body +
         ".fi\n"
         ".SH FILES\n"
         "Bash completion: share/bash\\-completion/completions/wscengine (\\fBwscengine completion bash\\fR).\n";
}

}  // namespace

int main(int argc, char** argv) {
  using namespace wscengine::cli;
  if (argc < 2) return usage_error("a command is needed: connect or serve");
  std::string command = argv[1];
  if (command == "--help" || command == "-h" || command == "help") {
    std::fputs(kHelp, stdout);
    return 0;
  }
  if (command == "--version") {
    std::printf("wscengine %s\n", wscengine::version_string);
    return 0;
  }
  for (int i = 2; i < argc; ++i) {
    if (std::strcmp(argv[i], "--help") == 0 || std::strcmp(argv[i], "-h") == 0) {
      std::fputs(kHelp, stdout);
      return 0;
    }
  }
  std::string error;
  if (command == "connect") {
    auto args = Args::parse(argc, argv, 2, connect_flags(), error);
    return args ? run_connect(*args) : usage_error(error);
  }
  if (command == "bench") {
    if (argc < 3 ||
        std::find(std::begin(kBenchKinds), std::end(kBenchKinds), std::string(argv[2])) == std::end(kBenchKinds))
      return usage_error("bench needs feed, echo, reconnect, connections or storm");
    auto args = Args::parse(argc, argv, 3, bench_flags(), error);
    return args ? run_bench(argv[2], *args) : usage_error(error);
  }
  if (command == "serve") {
    auto args = Args::parse(argc, argv, 2, serve_flags(), error);
    return args ? run_serve(*args) : usage_error(error);
  }
  if (command == "completion") {
    if (argc != 3 || std::strcmp(argv[2], "bash") != 0) return usage_error("completion needs bash");
    std::fputs(bash_completion().c_str(), stdout);
    return 0;
  }
  if (command == "man") {
    if (argc != 2) return usage_error("man takes no argument");
    std::fputs(man_page().c_str(), stdout);
    return 0;
  }
  return usage_error("unknown command '" + command + "'");
}
