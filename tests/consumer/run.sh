#!/usr/bin/env bash
# Installs the build tree into a temporary prefix and builds tests/consumer against it
# with find_package(wscengine CONFIG), then with pkg-config.
set -euo pipefail
build_dir=$1
consumer_dir=$2
prefix=$(mktemp -d)
trap 'rm -rf "$prefix"' EXIT
cmake --install "$build_dir" --prefix "$prefix/install" >/dev/null
# The command-line tool is installed to bin/ and runs from there.
if [ -e "$build_dir/tools/cli/wscengine" ]; then
  "$prefix/install/bin/wscengine" --version | grep -q '^wscengine [0-9]'
fi
cmake -S "$consumer_dir" -B "$prefix/build" -G Ninja -DCMAKE_PREFIX_PATH="$prefix/install" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$prefix/build" >/dev/null
"$prefix/build/consumer"

# The same program with pkg-config and the compiler alone.
export PKG_CONFIG_PATH="$(dirname "$(find "$prefix/install" -name wscengine.pc | head -1)")"
# shellcheck disable=SC2046
c++ -O1 "$consumer_dir/main.cpp" -o "$prefix/pkg-config-consumer" \
  $(pkg-config --cflags --libs wscengine-beast wscengine-memory)
"$prefix/pkg-config-consumer"
