#!/bin/sh
# Configures (once) and builds sinkgrad in ./build. Arguments go to meson setup.
set -eu
cd "$(dirname "$0")/.."
sh build-aux/deps.sh
if [ ! -f build/build.ninja ]; then
  meson setup build "$@" >build-setup.log 2>&1 || { cat build-setup.log >&2; exit 1; }
fi
ninja -C build >/dev/null || ninja -C build
