#!/bin/sh
# assoc train --detect-anomaly: a run whose float32 forward overflows
# (features scaled by 1e36, --feature-scale 1e-36) stops at the first NaN
# or Inf with the op, the phase and the call site, exits non-zero, and
# leaves the previous checkpoint as it was; without the flag the diverged
# run does not overwrite the checkpoint with NaN weights either.
#   anomaly_cli_test.sh ASSOC
set -u
assoc="$1"
. "$(dirname "$0")/test_lib.sh"
small="--epochs 1 --d 8 --h 16 --batch 8 --batches-per-epoch 2 --quiet"

"$assoc" gen --samples 40 --seed 3 --out "$dir/d.npz" --quiet ||
  bad "gen writes a data set"
# The pattern: the report names the op, the phase, the shapes and the call site.
expect_overflow() { # name, model, op, call site file
  # shellcheck disable=SC2086
  "$assoc" train "$dir/d.npz" --model "$2" $small --out "$dir/$2.npz" ||
    bad "$1: a good $2 checkpoint first"
  cp "$dir/$2.npz" "$dir/$2.keep"
  # shellcheck disable=SC2086
  expect_fail "$1" "$3: anomaly mode: non-finite value in the forward: output float32 \[.*(called at .*$4:[0-9]" \
    "$assoc" train "$dir/d.npz" --model "$2" $small --feature-scale 1e-36 --detect-anomaly \
    --out "$dir/$2.npz"
  cmp -s "$dir/$2.npz" "$dir/$2.keep" && ok "$1: the checkpoint is unchanged" ||
    bad "$1: the checkpoint is unchanged"
}
expect_overflow "attskgs --detect-anomaly names the attention" attskgs sg_attention gnn.c
grep -q "training stopped before the update" "$dir/err" &&
  ok "attskgs --detect-anomaly: the loop stops the step" ||
  bad "attskgs --detect-anomaly: the loop stops the step ($(head -c 300 "$dir/err"))"
expect_overflow "bfgnn --detect-anomaly names the rate's square" bfgnn sg_square beamrate.c

# Without the flag the same attskgs run diverges (its loss stays finite,
# its gradients do not): the checkpoint writer refuses the NaN weights.
# shellcheck disable=SC2086
expect_fail "attskgs without the flag: NaN weights are not written" \
  "attskgs.npz: not written: parameter '.*' is .*nan" \
  "$assoc" train "$dir/d.npz" --model attskgs $small --feature-scale 1e-36 --out "$dir/attskgs.npz"
cmp -s "$dir/attskgs.npz" "$dir/attskgs.keep" && ok "without the flag: the checkpoint is unchanged" ||
  bad "without the flag: the checkpoint is unchanged"
finish
