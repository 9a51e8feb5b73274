#!/bin/sh
# Quick start, first command: installs what is missing, builds, and runs the
# main job: a short version of the paper's ablation study (trains the four
# association GNNs, evaluates them beside the baselines, writes the table,
# ablation.json and the plots to out/ablation-quick). Extra arguments go to
# `assoc ablation` (e.g. drop --quick by running build/examples/assoc
# ablation directly for the full ~30-minute study).
set -eu
cd "$(dirname "$0")"
sh build-aux/build.sh
mkdir -p out
exec ./build/examples/assoc ablation --quick --out out/ablation-quick "$@"
