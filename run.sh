#!/bin/sh
# Quick start, first command: installs what is missing, builds, and runs the
# main job: a short version of the paper's ablation study (trains the four
# association GNNs with seeds 1, 2 and 3, evaluates them beside the
# baselines, writes the table of means and standard deviations,
# ablation.json and the plots to out/ablation-quick). Extra arguments go to
# `assoc ablation` (e.g. drop --quick by running build/examples/assoc
# ablation directly for the full study, about 7 minutes per seed on an idle
# machine without BFGNN and the P_t and M curves, which add about 100 s).
set -eu
cd "$(dirname "$0")"
sh build-aux/build.sh
mkdir -p out
exec ./build/examples/assoc ablation --quick --seeds 3 --out out/ablation-quick "$@"
