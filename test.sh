#!/bin/sh
# Quick start, second command: installs what is missing, builds, and runs
# the whole test suite (Check), printing every test case by name.
set -eu
cd "$(dirname "$0")"
sh build-aux/build.sh
meson test -C build --print-errorlogs --no-rebuild "$@"
