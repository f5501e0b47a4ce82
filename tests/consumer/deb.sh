#!/usr/bin/env bash
# Makes the Debian packages with CPack, installs them into this machine with apt-get,
# builds tests/consumer against /usr (find_package, then pkg-config, with no search path
# given), runs the installed `wscengine`, and removes the packages again.
# Needs root (it installs packages); exits 77 (skipped) without it.
set -euo pipefail
build_dir=$1
consumer_dir=$2
if [ "$(id -u)" -ne 0 ]; then
  echo "installing .deb packages needs root: skipped"
  exit 77
fi
work=$(mktemp -d)
remove_packages() {
  DEBIAN_FRONTEND=noninteractive apt-get remove -y -qq libwscengine-dev wscengine >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap remove_packages EXIT

(cd "$build_dir" && cpack -G DEB -B "$work/debs" >/dev/null)
debs=("$work"/debs/*.deb)
echo "packages: ${debs[*]##*/}"
[ ${#debs[@]} -eq 2 ] || { echo "expected libwscengine-dev and wscengine, got ${debs[*]}" >&2; exit 1; }
for deb in "${debs[@]}"; do dpkg-deb -I "$deb" | grep -E '^ (Package|Version|Depends):'; done

# Dependencies are already on a machine that built the project: nothing is downloaded.
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${debs[@]}" >/dev/null
dpkg-query -W -f='${Status}\n' libwscengine-dev wscengine | grep -c "install ok installed" | grep -qx 2

# The tool from /usr/bin, its manual page and its bash completion.
/usr/bin/wscengine --version | grep -q '^wscengine [0-9]'
dpkg -L wscengine | grep -qx '/usr/share/man/man1/wscengine.1' ||
  { echo "the wscengine package has no man page" >&2; exit 1; }
dpkg -L wscengine | grep -qx '/usr/share/bash-completion/completions/wscengine' ||
  { echo "the wscengine package has no bash completion" >&2; exit 1; }
# Headers, libraries and the CMake package from /usr, found without any prefix.
cmake -S "$consumer_dir" -B "$work/build" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
grep -q 'wscengine_DIR:PATH=/usr/lib/.*cmake/wscengine' "$work/build/CMakeCache.txt" ||
  { echo "find_package did not find the installed package in /usr" >&2; exit 1; }
cmake --build "$work/build" >/dev/null
"$work/build/consumer"
# pkg-config from its default path.
# shellcheck disable=SC2046
c++ -O1 "$consumer_dir/main.cpp" -o "$work/pkg-config-consumer" $(pkg-config --cflags --libs wscengine-beast wscengine-memory)
"$work/pkg-config-consumer"
echo "installed packages built and ran the consumer"
