#!/bin/sh
# Quick start, first command: installs what is missing, builds, and runs the
# main job (a short training run of a small network with the library).
set -eu
cd "$(dirname "$0")"
sh build-aux/build.sh
exec ./build/examples/train_demo "$@"
