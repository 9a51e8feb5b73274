#!/bin/sh
# Configures (once) and builds sinkgrad in ./build. Arguments go to meson setup.
# Prints "sinkgrad: building (up to N steps)..." when anything is out of date,
# then ninja's progress: its status line on a terminal, otherwise a line
# every tenth of the steps; warnings and errors as ninja prints them. All on
# stderr, so that stdout stays the program's.
set -eu
cd "$(dirname "$0")/.."
sh build-aux/deps.sh
if [ ! -f build/build.ninja ]; then
  echo "sinkgrad: configuring ./build (meson setup; log in build-setup.log)..." >&2
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
steps=$(ninja -C build -n | grep -c '^\[') || steps=0
[ "$steps" -eq 0 ] && exit 0
echo "sinkgrad: building (up to $steps steps)..." >&2
if [ -t 2 ]; then
  exec ninja -C build >&2
fi
# Not a terminal: ninja's "[k/N] ..." lines thinned to about ten, the rest
# (compiler warnings, errors) as is; the pipeline ends with ninja's status.
{
  status=0
  ninja -C build 2>&1 || status=$?
  echo "ninja-status $status"
} | awk '
  /^ninja-status / {
    if (last != "") print last # the last step (ninja skips those a step left up to date)
    exit $2
  }
  /^\[[0-9]+\/[0-9]+\]/ {
    split(substr($1, 2, length($1) - 2), kn, "/")
    every = int((kn[2] + 9) / 10)
    last = sprintf("  [%d/%d]", kn[1], kn[2])
    if (kn[1] == kn[2] || kn[1] % every == 0) { print last; last = "" }
    next
  }
  /^ninja: (Entering directory|no work to do)/ { next }
  { print }
' >&2
