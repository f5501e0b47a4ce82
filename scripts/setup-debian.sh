#!/usr/bin/env bash
# Installs everything wscengine needs on Debian 12 (bookworm), as root, with apt only.
# Idempotent: a second run installs nothing new and finishes quickly.
#
# opentelemetry-cpp lives in <codename>-backports. We derive that suite from the machine's
# own Debian entry (same URIs and keyring) instead of naming a mirror, so the script works
# behind whatever mirror or snapshot the machine is configured with.
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
  echo "setup-debian.sh: run as root (it installs packages with apt-get)" >&2
  exit 1
fi

. /etc/os-release
codename="${VERSION_CODENAME:?cannot tell the Debian codename from /etc/os-release}"
backports_file=/etc/apt/sources.list.d/wscengine-backports.sources

add_backports_suite() {
  if grep -rqs -- "${codename}-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
    return 0
  fi
  local uris="" signed_by=""
  if [ -f /etc/apt/sources.list.d/debian.sources ]; then
    # deb822: take the first stanza whose Suites lists the plain codename.
    read -r uris signed_by < <(awk -v cn="$codename" '
      BEGIN { RS=""; FS="\n" }
      {
        u=""; s=""; ok=0
        for (i = 1; i <= NF; i++) {
          if ($i ~ /^URIs:/)      { u = $i; sub(/^URIs:[ \t]*/, "", u) }
          if ($i ~ /^Signed-By:/) { s = $i; sub(/^Signed-By:[ \t]*/, "", s) }
          if ($i ~ /^Suites:/) {
            n = split($i, w, /[ \t]+/)
            for (j = 2; j <= n; j++) if (w[j] == cn) ok = 1
          }
        }
        if (ok && u != "") { print u, (s == "" ? "-" : s); exit }
      }' /etc/apt/sources.list.d/debian.sources)
  fi
  if [ -z "$uris" ] && [ -f /etc/apt/sources.list ]; then
    # one-line format: "deb [opts] URI codename components"
    uris=$(awk -v cn="$codename" '$1 == "deb" {
        for (i = 2; i <= NF; i++) if ($i == cn) { print $(i-1); exit } }' /etc/apt/sources.list)
    signed_by="-"
  fi
  if [ -z "$uris" ]; then
    echo "setup-debian.sh: found no Debian '$codename' entry to derive ${codename}-backports from" >&2
    exit 1
  fi
  {
    echo "Types: deb"
    echo "URIs: $uris"
    echo "Suites: ${codename}-backports"
    echo "Components: main"
    [ "$signed_by" != "-" ] && echo "Signed-By: $signed_by"
  } > "$backports_file"
  echo "setup-debian.sh: added ${codename}-backports from the machine's Debian entry ($uris)"
}

packages=(
  build-essential cmake ninja-build ccache pkg-config git ca-certificates openssl
  libboost-dev libssl-dev zlib1g-dev libwebsocketpp-dev
  libgtest-dev libgmock-dev libbenchmark-dev nlohmann-json3-dev
  python3 python3-websockets
  opentelemetry-cpp-dev libabsl-dev libgrpc++-dev libprotobuf-dev protobuf-compiler-grpc
  libcurl4-openssl-dev
  libnghttp2-dev python3-hypercorn
  tinyproxy-bin microsocks doxygen gnuplot-nox
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
  add_backports_suite
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
# `setup-debian.sh tests`: also the test peers no one here wrote. Node's `ws`
# (tests/support/node, pinned by its package-lock.json) comes from the npm registry;
# Node.js and npm themselves from Debian when the machine has none.
if [ "${1:-}" = tests ]; then
  if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends nodejs npm
  fi
  node_dir="$(cd "$(dirname "$0")/.." && pwd)/tests/support/node"
  if [ ! -f "$node_dir/node_modules/ws/package.json" ]; then
    npm ci --prefix "$node_dir" --no-audit --no-fund --loglevel=error
  fi
fi
echo "setup-debian.sh: all packages present"
