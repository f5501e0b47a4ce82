#!/usr/bin/env bash
# The main job: install what is needed, build, start the project's local feed server
# (which drops the connection every few messages) and run the example feed client
# against it: messages, a drop seen as OnClose 1006, a reconnect with resubscription,
# then the traces and metrics it exported (OpenTelemetry, "lines" format). Ends by itself.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-debian.sh
cmake --preset release -DWSCENGINE_BUILD_TESTS=OFF >/dev/null
cmake --build --preset release --target wscengine-demo-server feed_client

url_file=$(mktemp)
telemetry=$(mktemp)
build/release/tools/server/wscengine-demo-server --port 0 --rate 20 --drop-every 10 --seconds 30 > "$url_file" &
server=$!
trap 'kill $server 2>/dev/null || true; rm -f "$url_file" "$telemetry"' EXIT
for _ in $(seq 1 100); do
  url=$(head -n1 "$url_file")
  [ -n "$url" ] && break
  sleep 0.1
done
echo "== demo server listening at $url (drops the connection every 10 messages)"
build/release/examples/feed_client "$url" 3 --traces=lines --metrics=lines --telemetry-file="$telemetry"

if grep -q '^span ' "$telemetry"; then
  echo
  echo "== one tick followed from the socket into user code, innermost span first; the next line"
  echo "   is each span's parent, or the span it links to (a message, and a reconnect, start a trace of their own)"
  id=$(grep '^span feed.tick ' "$telemetry" | sed -n 12p | sed 's/.* id=\([0-9a-f]*\).*/\1/')
  for _ in $(seq 1 10); do
    [ -n "$id" ] || break
    line=$(grep " id=$id " "$telemetry" | head -n1)
    echo "  $line"
    id=$(echo "$line" | sed -n 's/.* parent=\([0-9a-f]*\).*/\1/p')
    [ -n "$id" ] || id=$(echo "$line" | sed -n 's/.* link=\([0-9a-f]*\).*/\1/p')
  done
  echo
  echo "== the first drop and reconnect"
  grep -E '^span wscengine\.(shutdown|restart) ' "$telemetry" | head -n2 | sed 's/^/  /'
  echo
  echo "== metrics at exit"
  awk '/^metric /{k=$2; if(!(k in last)) order[++n]=k; last[k]=$0} END{for(i=1;i<=n;i++) print "  " last[order[i]]}' "$telemetry"
else
  echo "== (built without OpenTelemetry: no traces to show)"
fi
echo "== demo done"
