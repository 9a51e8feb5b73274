#!/bin/sh
# Quick start, first command: installs what is missing, builds, and runs the
# main job: a short version of the paper's ablation study (trains the four
# association GNNs, SKGS-GNN+ and SM-GNN with seeds 1, 2 and 3, and BFGNN
# for Table 1 row 4, evaluates them beside the baselines, writes the table
# of means and standard deviations, ablation.json and the plots to
# out/ablation-quick). Extra arguments go to `assoc ablation` (e.g. drop
# --quick by running build/examples/assoc ablation directly for the full
# study, about 10 minutes per seed on 2 threads).
set -eu
cd "$(dirname "$0")"
sh build-aux/build.sh
mkdir -p out
exec ./build/examples/assoc ablation --quick --seeds 3 --out out/ablation-quick "$@"
