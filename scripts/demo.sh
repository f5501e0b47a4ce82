#!/usr/bin/env bash
# The main job: install what is needed, build, start the project's local feed server
# (which drops the connection every few messages) and run the example feed client
# against it: messages, a drop seen as OnClose 1006, a reconnect with resubscription.
# Ends by itself.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-debian.sh
cmake --preset release -DWSCENGINE_BUILD_TESTS=OFF >/dev/null
cmake --build --preset release --target wscengine-demo-server feed_client

url_file=$(mktemp)
build/release/tools/server/wscengine-demo-server --port 0 --rate 20 --drop-every 10 --seconds 30 > "$url_file" &
server=$!
trap 'kill $server 2>/dev/null || true; rm -f "$url_file"' EXIT
for _ in $(seq 1 100); do
  url=$(head -n1 "$url_file")
  [ -n "$url" ] && break
  sleep 0.1
done
echo "== demo server listening at $url (drops the connection every 10 messages)"
build/release/examples/feed_client "$url" 3
echo "== demo done"
