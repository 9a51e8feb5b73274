#!/bin/sh
# Installs the Debian packages sinkgrad needs to build and test, only those
# that are missing. Used by ./run.sh and ./test.sh; needs root to install.
# The fuzz targets (tests/fuzz/run) need clang-14, libclang-rt-14-dev and
# libomp-14-dev besides: optional, so not installed here (.ci/run does).
set -eu
packages="gcc libc6-dev pkg-config meson ninja-build libsleef-dev check zlib1g-dev libblis-openmp-dev gnuplot-nox"
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
echo "sinkgrad: installing$missing" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends $missing >/dev/null
