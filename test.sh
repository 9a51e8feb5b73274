#!/bin/sh
# Quick start, second command: installs what is missing, builds, and runs
# the whole test suite with meson test: one line per test program (the
# Check suites and the shell tests), with the output of any that fails.
# Every test case by name: ./test.sh --verbose (arguments go to meson
# test), or build/meson-logs/testlog.txt after a run.
set -eu
cd "$(dirname "$0")"
sh build-aux/build.sh
if [ $# -eq 0 ]; then
  programs=$(meson test -C build --list --no-rebuild 2>/dev/null | grep -vc '^ninja:') || true
  echo "sinkgrad: running $programs test programs (one line each; test cases by name: --verbose)" >&2
fi
meson test -C build --print-errorlogs --no-rebuild "$@"
