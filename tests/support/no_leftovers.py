#!/usr/bin/env python3
"""The suite's last test: no process started by a test is still running.

Every test runs with the environment variable WSCENGINE_TEST_SUITE=<build dir> (set by
CMake), and every process it starts inherits it: servers, peers, proxies, the CLI. This
test runs after all the others (a ctest fixture cleanup) and looks for that marker in
/proc/<pid>/environ. A process that still has it a few seconds later was left behind:
it is named (PID and command line), then killed so that it does not pile up, and the
test fails.

Usage: no_leftovers.py MARKER   (MARKER is NAME=VALUE, exactly as the tests have it)
"""
import os
import signal
import sys
import time

GRACE_SECONDS = 10.0  # a test's last child may still be exiting when ctest moves on


def ancestors():
    """This process and the ones that started it (ctest, a shell): not leftovers."""
    chain, pid = set(), os.getpid()
    while pid > 1 and pid not in chain:
        chain.add(pid)
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                pid = int(f.read().rsplit(b")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
    return chain


def marked_processes(marker: bytes):
    mine = ancestors()
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in mine:
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                environ = f.read().split(b"\0")
            if marker not in environ:
                continue
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                command = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:  # gone meanwhile, or a kernel thread
            continue
        found[int(entry)] = command or "(no command line: exiting)"
    return found


def main() -> int:
    if len(sys.argv) != 2 or "=" not in sys.argv[1]:
        print(__doc__, file=sys.stderr)
        return 2
    marker = sys.argv[1].encode()
    if not os.path.isdir("/proc/self"):
        print("no_leftovers: /proc is not mounted: cannot look for processes", file=sys.stderr)
        return 1
    # The check must be able to see: this process has the marker too (it is a test).
    if marker not in open("/proc/self/environ", "rb").read().split(b"\0"):
        print(f"no_leftovers: this test runs without {sys.argv[1]}: it could see nothing", file=sys.stderr)
        return 1
    deadline = time.monotonic() + GRACE_SECONDS
    left = marked_processes(marker)
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = marked_processes(marker)
    if not left:
        print("no_leftovers: no process started by the suite is still running")
        return 0
    print(f"no_leftovers: {len(left)} process(es) started by the suite still running "
          f"{GRACE_SECONDS:.0f} s after the last test:", file=sys.stderr)
    for pid, command in sorted(left.items()):
        print(f"  pid {pid}: {command}", file=sys.stderr)
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    return 1


if __name__ == "__main__":
    sys.exit(main())
