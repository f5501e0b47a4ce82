#!/usr/bin/env bash
# Every test: install what is needed, then build and run the whole suite three times:
# a release build, under ThreadSanitizer, and under AddressSanitizer + UBSan.
# Usage: scripts/test.sh [preset ...]   (default: release tsan asan-ubsan)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-debian.sh tests
# The suite talks to loopback servers only, and the engine honours the proxy
# variables by default: a proxy set for this shell would route the tests away.
unset http_proxy https_proxy all_proxy no_proxy HTTP_PROXY HTTPS_PROXY ALL_PROXY NO_PROXY

presets=("$@")
[ ${#presets[@]} -eq 0 ] && presets=(release tsan asan-ubsan)

# Some kernels randomise mmap more than TSan's shadow layout allows.
if [ "$(cat /proc/sys/vm/mmap_rnd_bits 2>/dev/null || echo 28)" -gt 28 ]; then
  sysctl -qw vm.mmap_rnd_bits=28 2>/dev/null || true
fi

jobs=$(nproc)
failed=()
failed_tests=()
for preset in "${presets[@]}"; do
  echo "=== ${preset}: configure and build"
  start=$(date +%s)
  # Warnings fail the build here, and this is the run that may install the project's
  # own .deb packages into the machine (a plain ctest never does).
  cmake --preset "$preset" -DWSCENGINE_WARNINGS_AS_ERRORS=ON -DWSCENGINE_TEST_SYSTEM_PACKAGES=ON >/dev/null
  cmake --build --preset "$preset" -j "$jobs"
  echo "=== ${preset}: test"
  if ! ctest --preset "$preset" -j "$jobs"; then
    failed+=("$preset")
    failed_tests+=("--- ${preset}:")
    list="build/${preset}/Testing/Temporary/LastTestsFailed.log"
    [ -f "$list" ] && while IFS= read -r line; do failed_tests+=("$line"); done < "$list"
  fi
  echo "=== ${preset}: $(( $(date +%s) - start )) s"
done

if [ ${#failed[@]} -ne 0 ]; then
  # A CI log may be read from its end only: the failed tests' own first words (the
  # sanitizer report or gtest failure, in ctest's log of every test's output) and
  # their names come last.
  for preset in "${failed[@]}"; do
    grep -h -E -A2 "WARNING: ThreadSanitizer|ERROR: AddressSanitizer|runtime error:|: Failure$|^bench/run: .*failed|^no_leftovers:" \
      "build/${preset}/Testing/Temporary/LastTest.log" | cut -c1-200 | head -12 || true
  done
  printf '%s\n' "${failed_tests[@]}"
  echo "FAILED configurations: ${failed[*]}"
  exit 1
fi
echo "All configurations passed: ${presets[*]}"
