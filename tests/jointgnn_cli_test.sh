#!/bin/sh
# End-to-end checks of assoc train --model jointgnn and assoc eval on its
# checkpoint: a tiny model trained on a small data set (the same checkpoint
# bytes on one and two threads), the SM evaluation (table, JSON, the
# associations of --out and their load limits), BFGNN's beams on SM's
# load-balanced association through assoc beams, and the refusals (options
# that do not apply, damaged or foreign checkpoints, a data set of another
# N, a resumed run's changed options): message, non-zero status, no crash;
# and --resume: one epoch, then one more, gives the two-epoch checkpoint.
#   jointgnn_cli_test.sh ASSOC NPZ_LIST
set -u
assoc="$1" npz_list="$2"
. "$(dirname "$0")/test_lib.sh"

check "data sets" "$assoc" gen --samples 48 --seed 4 --out "$dir/d.npz" --quiet
check "data set of N = 2" "$assoc" gen --samples 16 --seed 5 --antennas 2 --out "$dir/n2.npz" \
  --quiet

check "a BFGNN checkpoint" "$assoc" train "$dir/d.npz" --model bfgnn --epochs 1 --d 8 --h 16 \
  --batch 16 --quiet --out "$dir/bf0.npz"

train() { # threads, out, extra options...
  t=$1 out=$2
  shift 2
  "$assoc" train "$dir/d.npz" --model jointgnn --epochs 2 --d 8 --h 16 --batch 16 \
    --batches-per-epoch 3 --lr-max 1e-3 --lr-min 1e-5 --t0 2 --seed 3 --threads "$t" \
    --out "$out" "$@"  # a later --epochs wins
}
if train 1 "$dir/j1.npz" >"$dir/train.out" 2>"$dir/err" && grep -q "^epoch 2/2" "$dir/train.out"
then ok "train --model jointgnn"; else bad "train --model jointgnn ($(head -c 300 "$dir/err"))"; fi
train 2 "$dir/j2.npz" --quiet >"$dir/q.out" 2>&1 && [ ! -s "$dir/q.out" ] &&
  cmp -s "$dir/j1.npz" "$dir/j2.npz" && ok "same checkpoint on 1 and 2 threads, --quiet" ||
  bad "1 vs 2 threads or --quiet: $(head -c 200 "$dir/q.out")"
train 1 "$dir/jp.npz" --penalty-after 1 --penalty-mu 5 --quiet &&
  ! cmp -s "$dir/j1.npz" "$dir/jp.npz" && ok "--penalty-after changes the training" ||
  bad "--penalty-after"
train 1 "$dir/half.npz" --epochs 1 --penalty-after 1 --quiet &&
  train 1 "$dir/whole.npz" --penalty-after 1 --quiet &&
  ! cmp -s "$dir/half.npz" "$dir/whole.npz" &&
  "$assoc" train "$dir/d.npz" --resume "$dir/half.npz" --epochs 2 --threads 2 --quiet \
    --out "$dir/resumed.npz" && cmp -s "$dir/whole.npz" "$dir/resumed.npz" &&
  ok "--resume: 1 + 1 epochs give the 2-epoch checkpoint" || bad "--resume"
expect_fail "--resume keeps the configuration" "differs from the checkpoint" \
  "$assoc" train "$dir/d.npz" --resume "$dir/half.npz" --epochs 2 --lr-max 0.1 --out "$dir/x.npz"
expect_fail "--resume of a BFGNN checkpoint as jointgnn" "not a JointGNN checkpoint" \
  "$assoc" train "$dir/d.npz" --model jointgnn --resume "$dir/bf0.npz" --epochs 2 \
  --out "$dir/x.npz"
"$npz_list" "$dir/j1.npz" 2>/dev/null | grep -q "^param.mlp_a.0.weight float32 (16, 8)$" &&
  "$npz_list" "$dir/j1.npz" 2>/dev/null | grep -q "^jointgnn_checkpoint_version int64 ()$" &&
  ok "checkpoint members" || bad "checkpoint members: $("$npz_list" "$dir/j1.npz" | tr '\n' ';')"

"$assoc" eval "$dir/j1.npz" "$dir/d.npz" --out "$dir/sm.npz" --threads 1 >"$dir/eval.out" \
  2>"$dir/err" && grep -q "violation ratio (one-hot)" "$dir/eval.out" &&
  grep -q "load-balanced, own beams" "$dir/eval.out" && ok "eval on a JointGNN checkpoint" ||
  bad "eval ($(head -c 300 "$dir/err"))"
printf '%s\n' "SM_onehot_assoc int32 (48, 8)" "SM_onehot_rate float64 (48,)" \
  "SM_lb_assoc int32 (48, 8)" "SM_lb_rate float64 (48,)" "SM_A float64 (48, 8, 2)" \
  "samples int64 ()" | sort >"$dir/want"
"$npz_list" "$dir/sm.npz" 2>/dev/null | sort >"$dir/got"
cmp -s "$dir/want" "$dir/got" && ok "eval --out members" || bad "members: $(tr '\n' ';' <"$dir/got")"
"$assoc" eval "$dir/j1.npz" "$dir/d.npz" --json --threads 2 >"$dir/e.json" 2>"$dir/err" &&
  grep -q '"model": "JointGNN"' "$dir/e.json" && ok "eval --json" || bad "eval --json"
lb1=$(sed -n 's/.*load-balanced, own beams *\([0-9.]*\).*/\1/p' "$dir/eval.out")
lb2=$(sed -n 's/.*"rate_load_balanced_own_beams": \([^,]*\).*/\1/p' "$dir/e.json")
[ -n "$lb1" ] && [ -n "$lb2" ] && [ "$(printf '%.3f' "$lb2")" = "$lb1" ] &&
  ok "same LB rate $lb1 on 1 and 2 threads" || bad "LB rate $lb1 vs $lb2"

# BFGNN's beams on SM's load-balanced association (the paper's row 4): it
# needs every load <= N, which SM_lb has and an overloaded one-hot has not.
"$assoc" train "$dir/d.npz" --model bfgnn --epochs 1 --d 8 --h 16 --batch 16 --quiet \
  --out "$dir/bf.npz" &&
  "$assoc" beams "$dir/d.npz" "$dir/sm.npz" --assoc-key SM_lb --method "bfgnn=$dir/bf.npz" \
    --out "$dir/v.npz" --json >"$dir/v.json" 2>"$dir/err" &&
  grep -q '"key": "SM_lb"' "$dir/v.json" && ok "assoc beams on SM_lb with BFGNN" ||
  bad "beams on SM_lb ($(head -c 300 "$dir/err"))"
viol=$(sed -n 's/.*"violation_ratio": \([^,]*\).*/\1/p' "$dir/e.json")
if [ "$viol" != "0" ]; then
  expect_fail "BFGNN refuses the overloaded one-hot" "serves" \
    "$assoc" beams "$dir/d.npz" "$dir/sm.npz" --assoc-key SM_onehot \
    --method "bfgnn=$dir/bf.npz" --out "$dir/x.npz"
fi

expect_fail "--loss refused for jointgnn" "does not apply to --model jointgnn" \
  "$assoc" train "$dir/d.npz" --model jointgnn --epochs 1 --loss es --out "$dir/x.npz"
expect_fail "--penalty-after refused for bfgnn" "jointgnn only" \
  "$assoc" train "$dir/d.npz" --model bfgnn --epochs 1 --penalty-after 2 --out "$dir/x.npz"
expect_fail "bad --penalty-after" "penalty-after" \
  "$assoc" train "$dir/d.npz" --model jointgnn --epochs 1 --penalty-after -3 --out "$dir/x.npz"
expect_fail "--draws refused for JointGNN" "does not apply to a JointGNN" \
  "$assoc" eval "$dir/j1.npz" "$dir/d.npz" --draws 4
head -c 3000 "$dir/j1.npz" >"$dir/trunc.npz"
expect_fail "truncated checkpoint" "trunc.npz" \
  "$assoc" eval "$dir/trunc.npz" "$dir/d.npz"
expect_fail "eval refuses a BFGNN checkpoint" "is a BFGNN checkpoint.*assoc beams" \
  "$assoc" eval "$dir/bf.npz" "$dir/d.npz"
expect_fail "a JointGNN checkpoint as BFGNN" "not a BFGNN checkpoint" \
  "$assoc" beams "$dir/d.npz" "$dir/sm.npz" --assoc-key SM_lb --method "bfgnn=$dir/j1.npz" \
  --out "$dir/x.npz"
expect_fail "data of another N" "N = 4 antennas, the data set N = 2" \
  "$assoc" eval "$dir/j1.npz" "$dir/n2.npz"
expect_fail "unwritable --out" "x-dir" \
  "$assoc" eval "$dir/j1.npz" "$dir/d.npz" --out "$dir/x-dir/none/x.npz"
[ -e "$dir/x.npz" ] && bad "no output after a refusal" || ok "no output after a refusal"

finish
