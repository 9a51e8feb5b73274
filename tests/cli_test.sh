#!/bin/sh
# End-to-end checks of the assoc command line: a small data set, the
# baselines table and JSON, the per-method .npz, a small model's evaluation
# and its associations .npz, and the refusals of bad arguments and bad files
# (clear message, non-zero status, no crash).
#   cli_test.sh ASSOC NPZ_LIST   (the assoc program, tests/npz_list.c)
set -u
assoc="$1"
npz_list="$2"
. "$(dirname "$0")/test_lib.sh"
expect_members() { # name, .npz, file of its expected members as npz_list prints them
  name=$1
  if ! "$npz_list" "$2" >"$dir/listed" 2>"$dir/err"; then
    bad "$name (unreadable: $(head -c 300 "$dir/err"))"
    return
  fi
  sort "$dir/listed" >"$dir/members"
  if sort "$3" | cmp -s - "$dir/members"; then
    ok "$name"
  else
    bad "$name (expected: $(sort "$3" | tr '\n' ';') got: $(tr '\n' ';' <"$dir/members"))"
  fi
}
# The members "NAME DTYPE SHAPE" of assoc eval --out for a model of key $1
# on $2 samples of $3 UEs (2 BSs), with ES_* when $4 is "es".
eval_members() {
  for r in onehot lb nv; do
    printf '%s\n' "$1_${r}_assoc int32 ($2, $3)" "$1_${r}_rate float64 ($2,)"
  done
  echo "$1_A float64 ($2, $3, 2)"
  [ "$4" = es ] && printf '%s\n' "ES_assoc int32 ($2, $3)" "ES_rate float64 ($2,)"
  echo "samples int64 ()"
}

"$assoc" gen --samples 40 --seed 3 --out "$dir/d.npz" --quiet && [ -s "$dir/d.npz" ] &&
  ok "gen writes a data set" || bad "gen writes a data set"
"$assoc" baselines "$dir/d.npz" >"$dir/table" 2>/dev/null && grep -q "LocalSearch" "$dir/table" &&
  ok "baselines prints a table" || bad "baselines prints a table"
"$assoc" baselines "$dir/d.npz" --json >"$dir/json" 2>/dev/null && grep -q '"ES"' "$dir/json" &&
  ok "baselines --json" || bad "baselines --json"
"$assoc" baselines "$dir/d.npz" --out "$dir/res.npz" >/dev/null 2>&1 && [ -s "$dir/res.npz" ] &&
  ok "baselines --out" || bad "baselines --out"

# A freshly trained small model (one short epoch) evaluated with --out: the
# associations load with sinkgrad's reader, as int32 S x K and float64 S.
"$assoc" train "$dir/d.npz" --model attskgs --epochs 1 --d 8 --h 16 --batch 8 \
  --batches-per-epoch 2 --out "$dir/ck.npz" --quiet >/dev/null 2>&1 && [ -s "$dir/ck.npz" ] &&
  ok "train a small model" || bad "train a small model"
"$assoc" eval "$dir/ck.npz" "$dir/d.npz" --latency-samples 2 --out "$dir/ev.npz" \
  >"$dir/ev.table" 2>/dev/null && grep -q "no-violation" "$dir/ev.table" &&
  ok "eval --out" || bad "eval --out"
eval_members AttSKGS_GNN 40 8 es >"$dir/want"
expect_members "eval --out members" "$dir/ev.npz" "$dir/want"
"$assoc" eval "$dir/ck.npz" "$dir/d.npz" --latency-samples 0 --limit 12 --no-es \
  --out "$dir/ev12.npz" >/dev/null 2>&1 && ok "eval --limit --no-es --out" ||
  bad "eval --limit --no-es --out"
eval_members AttSKGS_GNN 12 8 - >"$dir/want"
expect_members "eval --limit 12 --no-es members" "$dir/ev12.npz" "$dir/want"
expect_fail "eval --out into a missing directory" "no-such-dir" \
  "$assoc" eval "$dir/ck.npz" "$dir/d.npz" --no-es --out "$dir/no-such-dir/x.npz"
mkdir "$dir/outdir"
expect_fail "eval --out onto a directory" "outdir" \
  "$assoc" eval "$dir/ck.npz" "$dir/d.npz" --no-es --latency-samples 0 --out "$dir/outdir"
ls -a "$dir" | grep -q '\.tmp' && bad "no temporary file left" || ok "no temporary file left"

# The training levers, the sampled decoding and the diagnosis on the command line.
"$assoc" train "$dir/d.npz" --model skgs --features link-nodes --loss es --epochs 1 --d 8 \
  --h 16 --batch 8 --batches-per-epoch 2 --out "$dir/plus.npz" --quiet --json >"$dir/plus.json" \
  2>&1 && [ -s "$dir/plus.npz" ] && ok "train --features link-nodes --loss es" ||
  bad "train --features link-nodes --loss es ($(head -c 300 "$dir/plus.json"))"
"$assoc" eval "$dir/plus.npz" "$dir/d.npz" --latency-samples 0 --draws 4 --json >"$dir/draws.json" \
  2>/dev/null && grep -q '"draws": 4, "rate_sampled": [0-9]' "$dir/draws.json" &&
  ok "eval --draws" || bad "eval --draws"
"$assoc" diagnose "$dir/plus.npz" "$dir/d.npz" --samples 20 --batch 8 >"$dir/diag" 2>&1 &&
  grep -q "layers.0.f5" "$dir/diag" && grep -q "argmax = strongest link" "$dir/diag" &&
  ok "diagnose" || bad "diagnose ($(head -c 300 "$dir/diag"))"
expect_fail "train with an unknown feature kind" "features" \
  "$assoc" train "$dir/d.npz" --model skgs --features raw --epochs 1 --out "$dir/x.npz"
expect_fail "train with an unknown loss" "loss" \
  "$assoc" train "$dir/d.npz" --model skgs --loss mse --epochs 1 --out "$dir/x.npz"
expect_fail "train with an unknown sampler" "shuffle or strata" \
  "$assoc" train "$dir/d.npz" --model skgs --sampler random --epochs 1 --out "$dir/x.npz"
expect_fail "resume with another sampler" "sampler" \
  "$assoc" train "$dir/d.npz" --resume "$dir/plus.npz" --sampler strata --epochs 2 \
  --out "$dir/x.npz"
expect_fail "diagnose without a data set" "expected a checkpoint" "$assoc" diagnose "$dir/plus.npz"
"$assoc" gen --samples 4 --antennas 3 --out "$dir/n3.npz" --quiet
expect_fail "diagnose on data of another N" "N = 3" "$assoc" diagnose "$dir/plus.npz" "$dir/n3.npz"

"$assoc" params --d 8 --h 16 >"$dir/params" 2>/dev/null && grep -q "AttSKGS-GNN" "$dir/params" &&
  grep -q "45.67" "$dir/params" && ok "params" || bad "params"
expect_fail "params with a bad width" "--d" "$assoc" params --d x
expect_fail "unknown command" "unknown" "$assoc" frobnicate
expect_fail "missing --samples" "samples" "$assoc" gen --out "$dir/x.npz"
expect_fail "non-numeric --samples" "samples" "$assoc" gen --samples ten --out "$dir/x.npz"
expect_fail "negative antennas" "antennas" "$assoc" gen --samples 3 --antennas -1 --out "$dir/x.npz"
expect_fail "missing data file" "nonexistent" "$assoc" baselines "$dir/nonexistent.npz"
head -c 1000 "$dir/d.npz" >"$dir/trunc.npz"
expect_fail "truncated data file" "trunc.npz" "$assoc" baselines "$dir/trunc.npz"
echo "not a zip" >"$dir/text.npz"
expect_fail "not an npz" "text.npz" "$assoc" baselines "$dir/text.npz"
# An output path that cannot be written fails before any work: non-zero
# status, a message naming the path, nothing on stdout, no file written.
fails_before_work() { # name, unwritable path, command...
  what=$1 path=$2
  shift 2
  before=$(ls -A "$dir" | grep -vx 'out\|err')
  expect_fail "$what: fails naming the path" "$path" "$@"
  after=$(ls -A "$dir" | grep -vx 'out\|err')
  check "$what: no work (nothing printed, no file written)" \
    test ! -s "$dir/out" -a "$before" = "$after"
}
bad_out="$dir/no-such-dir/x.npz"
fails_before_work "gen --out unwritable" "$bad_out" "$assoc" gen --samples 400 --out "$bad_out"
fails_before_work "baselines --out unwritable" "$bad_out" \
  "$assoc" baselines "$dir/d.npz" --out "$bad_out"
fails_before_work "beams --out unwritable" "$bad_out" \
  "$assoc" beams "$dir/d.npz" "$dir/res.npz" --assoc-key ES_assoc --method mrt --out "$bad_out"
fails_before_work "eval --out unwritable" "$bad_out" \
  "$assoc" eval "$dir/ck.npz" "$dir/d.npz" --out "$bad_out"
fails_before_work "eval --out a directory" "$dir/outdir" \
  "$assoc" eval "$dir/ck.npz" "$dir/d.npz" --out "$dir/outdir"
fails_before_work "train --out unwritable" "$bad_out" \
  "$assoc" train "$dir/d.npz" --model skgs --epochs 1 --batch 8 --out "$bad_out" \
  --log "$dir/new.csv"
for model in bfgnn jointgnn; do
  fails_before_work "train --model $model --out unwritable" "$bad_out" \
    "$assoc" train "$dir/d.npz" --model $model --epochs 1 --batch 8 --out "$bad_out"
done
fails_before_work "train --log unwritable" "$dir/no-such-dir/log.csv" \
  "$assoc" train "$dir/d.npz" --model skgs --epochs 1 --batch 8 --out "$dir/new.npz" \
  --log "$dir/no-such-dir/log.csv"
fails_before_work "ablation --out under a file" "$dir/d.npz/run" \
  "$assoc" ablation --quick --out "$dir/d.npz/run"
fails_before_work "ablation --out in a missing directory" "$dir/no-such-dir/run" \
  "$assoc" ablation --quick --out "$dir/no-such-dir/run"

# A failed write leaves an existing output untouched.
cp "$dir/res.npz" "$dir/keep.npz"
expect_fail "write into a missing directory" "no-such-dir" \
  "$assoc" gen --samples 3 --out "$dir/no-such-dir/x.npz" --quiet
cmp -s "$dir/res.npz" "$dir/keep.npz" && ok "existing file untouched" || bad "existing file untouched"

finish
