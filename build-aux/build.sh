#!/bin/sh
# Configures (once) and builds sinkgrad in ./build. Arguments go to meson setup.
set -eu
cd "$(dirname "$0")/.."
sh build-aux/deps.sh
if [ ! -f build/build.ninja ]; then
  meson setup build "$@" >build-setup.log 2>&1 || { cat build-setup.log >&2; exit 1; }
fi
# A build directory set up while dpkg-dev was missing installs into lib64,
# where Debian's loader and pkg-config do not look: move it to lib/<multiarch>.
multiarch=$(cc -print-multiarch 2>/dev/null || true)
if [ -n "$multiarch" ] &&
  meson introspect build --buildoptions | grep -q '"name": "libdir", "value": "lib64"'; then
  echo "sinkgrad: libdir lib64 -> lib/$multiarch" >&2
  meson configure build -Dlibdir="lib/$multiarch" >/dev/null
fi
ninja -C build >/dev/null || ninja -C build
