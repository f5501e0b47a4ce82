#!/usr/bin/env bash
# The main job: install what is needed, build the `wscengine` tool, start its local feed
# server (which drops the connection every 10 messages and refuses the next two upgrades)
# and connect to it: messages flowing, the drop seen as on_close 1006, reconnect attempts
# backing off, on_open again with resubscription, then a short summary of the OpenTelemetry
# trace and metrics it recorded. Ends by itself.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-debian.sh
cmake --preset release -DWSCENGINE_BUILD_TESTS=OFF >/dev/null
cmake --build --preset release --target wscengine_cli
cli=build/release/tools/cli/wscengine

url_file=$(mktemp)
telemetry=$(mktemp)
server=""
# The server is stopped on every way out: the end, an error, Ctrl-C.
trap '[ -z "$server" ] || { kill "$server" 2>/dev/null; wait "$server" 2>/dev/null; } || true; rm -f "$url_file" "$telemetry"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
"$cli" serve --mode feed --rate 20 --drop-every 10 --refuse-after-drop 2 --seconds 60 > "$url_file" &
server=$!
for _ in $(seq 1 100); do
  url=$(head -n1 "$url_file")
  [ -n "$url" ] && break
  sleep 0.1
done
echo "== wscengine serve: a feed at $url that drops the connection every 10 messages"
echo "== wscengine connect: subscribes from on_open after every (re)connect, stops after 25 messages"
"$cli" connect "$url" --send "subscribe ticks" --count 25 --trace "$telemetry" --stats 2>&1

if grep -q '^span ' "$telemetry"; then
  echo
  echo "== one message followed from the socket into on_message, innermost span first; the next line"
  echo "   is each span's parent, or the span it links to (a message, and a reconnect, start a trace of their own)"
  id=$(grep '^span wscengine.on_message ' "$telemetry" | sed -n 12p | sed 's/.* id=\([0-9a-f]*\).*/\1/')
  for _ in $(seq 1 10); do
    [ -n "$id" ] || break
    line=$(grep " id=$id " "$telemetry" | head -n1)
    echo "  $line"
    id=$(echo "$line" | sed -n 's/.* parent=\([0-9a-f]*\).*/\1/p')
    [ -n "$id" ] || id=$(echo "$line" | sed -n 's/.* link=\([0-9a-f]*\).*/\1/p')
  done
  echo
  echo "== the first drop and the reconnect attempts"
  grep -E '^span wscengine\.(shutdown|restart|on_restart_error) ' "$telemetry" | head -n4 | sed 's/^/  /'
  echo
  echo "== metrics at exit"
  awk '/^metric /{k=$2; if(!(k in last)) order[++n]=k; last[k]=$0} END{for(i=1;i<=n;i++) print "  " last[order[i]]}' "$telemetry"
else
  echo "== (built without OpenTelemetry: no traces to show)"
fi
echo "== demo done"
