#!/bin/sh
# Installs the Debian packages sinkgrad needs to build, test and install
# (dpkg-dev: meson asks its dpkg-architecture for the lib/<multiarch>
# directory the loader and pkg-config search), only those
# that are missing. Used by ./run.sh and ./test.sh; needs root to install.
# Prints one line naming what it installs; apt's own output goes to
# build-deps.log and is shown only when the installation fails.
# The fuzz targets (tests/fuzz/run) need clang-14, libclang-rt-14-dev and
# libomp-14-dev besides: optional, so not installed here (.ci/run does).
set -eu
cd "$(dirname "$0")/.."
packages="gcc libc6-dev dpkg-dev pkg-config meson ninja-build libsleef-dev check zlib1g-dev libblis-openmp-dev gnuplot-nox"
missing=""
for p in $packages; do
  dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q "install ok installed" ||
    missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "sinkgrad: missing Debian packages:$missing" >&2
  echo "sinkgrad: run this command as root, or: sudo apt-get install$missing" >&2
  exit 1
fi
log=build-deps.log
echo "sinkgrad: installing Debian packages:$missing (apt log: $log)" >&2
export DEBIAN_FRONTEND=noninteractive
# shellcheck disable=SC2086
if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends $missing; } \
  >"$log" 2>&1; then
  cat "$log" >&2
  echo "sinkgrad: installing$missing failed (apt's output above, also in $log)" >&2
  exit 1
fi
