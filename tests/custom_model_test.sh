#!/bin/sh
# examples/custom_model: a short run exits 0 and prints a sane table (a
# row per method, a violations column, finite rates, ES's no-violation
# ratio 1 and no model above it); bad arguments exit 2.
# usage: custom_model_test.sh CUSTOM_MODEL_EXE
set -u
exe=$1
out=$(mktemp)
trap 'rm -f "$out"' EXIT
fail() {
  echo "custom_model_test: $*" >&2
  cat "$out" >&2
  exit 1
}
"$exe" --epochs 2 --train 512 --test 200 --seeds 2 --threads 1 >"$out" 2>&1 ||
  fail "exit status $? on a short run"
grep -q '^method .* violations .* rate_nv .* nv/es' "$out" || fail "no table header with violations"
for method in ES Assign SKGS-GNN EdgeMLP-Sinkhorn; do
  grep -q "^$method " "$out" || fail "no row for $method"
done
grep -Eiwq 'nan|inf' "$out" && fail "a non-finite number"
# Each row: name params violations... The no-violation ratio (nv/es) is
# the first number of the sixth column group; it must be 1 for ES and in
# (0, 1] for every other method (no load-feasible association beats ES).
awk '
  /^(ES|Assign|SKGS-GNN|EdgeMLP-Sinkhorn) / {
    line = $0; sub(/^[^ ]+ +[^ ]+ +/, "", line)      # drop name and params
    gsub(/ ± [0-9.]+%?/, "", line)                   # keep the means
    n = split(line, f, / +/)
    ratio = f[5]; rate = f[2]
    if (rate + 0 <= 0) { print "rate " rate " of " $1; bad = 1 }
    if ($1 == "ES" && ratio != "1.000") { print "ES nv/es " ratio; bad = 1 }
    if (ratio + 0 <= 0 || ratio + 0 > 1.0005) { print "nv/es " ratio " of " $1; bad = 1 }
    rows++
  }
  END { exit bad || rows != 4 }' "$out" || fail "implausible numbers"
grep -q '^no-violation rounding: EdgeMLP-Sinkhorn [0-9.]* bps/Hz' "$out" || fail "no verdict line"
"$exe" --seeds 0 >"$out" 2>&1
[ $? -eq 2 ] || fail "--seeds 0 did not exit 2"
grep -q 'bad arguments' "$out" || fail "no message for bad arguments"
echo "custom_model_test: ok"
