#!/bin/sh
# Run by `meson install` (not with --destdir): after installing the shared
# libraries into the system, refresh the dynamic loader's cache so that
# programs linked to them (the installed assoc among them) start. Without
# root there is no cache to refresh: the message says what to set instead.
# Argument: the directory the libraries went to.
set -eu
libdir=$1
if [ "$(id -u)" != 0 ]; then
  echo "sinkgrad: not root, loader cache not refreshed; if $libdir is not in" \
    "the loader's path, set LD_LIBRARY_PATH=$libdir to run programs linked to sinkgrad"
  exit 0
fi
PATH=$PATH:/sbin:/usr/sbin
ldconfig
if ! ldconfig -p | grep -q "$libdir/libsinkgrad\.so"; then
  echo "sinkgrad: $libdir is not in the loader's path (/etc/ld.so.conf.d):" \
    "set LD_LIBRARY_PATH=$libdir to run programs linked to sinkgrad"
fi
