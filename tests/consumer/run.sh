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
# A component this package does not have fails the configure step, by name.
mkdir -p "$prefix/missing"
printf 'cmake_minimum_required(VERSION 3.25)\nproject(missing LANGUAGES CXX)\nfind_package(wscengine CONFIG REQUIRED COMPONENTS no_such_adapter)\n' \
  > "$prefix/missing/CMakeLists.txt"
if cmake -S "$prefix/missing" -B "$prefix/missing/build" -DCMAKE_PREFIX_PATH="$prefix/install" > "$prefix/missing.log" 2>&1; then
  echo "a missing component was accepted" >&2
  exit 1
fi
grep -q "no_such_adapter" "$prefix/missing.log"

# The same program with pkg-config and the compiler alone.
export PKG_CONFIG_PATH="$(dirname "$(find "$prefix/install" -name wscengine.pc | head -1)")"
# shellcheck disable=SC2046
c++ -O1 "$consumer_dir/main.cpp" -o "$prefix/pkg-config-consumer" \
  $(pkg-config --cflags --libs wscengine-beast wscengine-memory)
"$prefix/pkg-config-consumer"
