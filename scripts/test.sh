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
  fi
  echo "=== ${preset}: $(( $(date +%s) - start )) s"
done

if [ ${#failed[@]} -ne 0 ]; then
  echo "FAILED configurations: ${failed[*]}"
  exit 1
fi
echo "All configurations passed: ${presets[*]}"
