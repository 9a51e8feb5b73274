#!/bin/sh
# End-to-end checks of `assoc ablation --seeds N` on a tiny configuration
# (2 epochs of 2 mini-batches of 8, d 8, h 16, 16 test samples, K 4..6 on the
# curve): per-seed values with their means and sds in ablation.json, the
# files of each seed, the per-epoch mean/sd CSV, the table, one seed against
# the single-seed run, 1 against 2 threads, and refusals.
#   ablation_test.sh ASSOC
set -u
assoc="$1"
. "$(dirname "$0")/test_lib.sh"
models="attskgs-gnn skgs-gnn gs-gnn sma-gnn skgs-gnn-plus"
tiny="--epochs 2 --batches-per-epoch 2 --batch 8 --d 8 --h 16 --train-samples 64
      --val-samples 16 --test-samples 16 --curve-samples 8 --k-max 6 --quiet --no-plots"
run() { # out dir, options...
  out=$1
  shift
  # shellcheck disable=SC2086
  "$assoc" ablation $tiny --out "$dir/$out" "$@" >"$dir/$out.log" 2>&1 ||
    bad "assoc ablation $* (status $?: $(tail -c 300 "$dir/$out.log"))"
}
# ablation.json without the fields that measure time or threads.
results_of() {
  sed -E -e 's/"(train_seconds|infer_us|latency_us|decode_us|seconds_total|threads)": (\[[^]]*\]|[^,}]*)/"\1": -/g' \
    -e 's/"plots": "[^"]*"/"plots": -/' "$dir/$1/ablation.json"
}

run two --seed 5 --seeds 2
json="$dir/two/ablation.json"
check "config: seeds and training-set seeds" \
  grep -q '"seeds": 2, "train_data_seeds": \[5, 4611686018427387910\]' "$json"

# Every model: seeds [5, 6], and for each metric the mean and the sample sd
# of its two per-seed values as written (10 significant digits).
awk '
function field(line, key,   re) {
  re = "\"" key "\": [-0-9.e+]+"
  if (!match(line, re)) return "none"
  return substr(line, RSTART + length(key) + 4, RLENGTH - length(key) - 4)
}
function near(a, b) { d = a - b; if (d < 0) d = -d; return d <= 1e-8 * (a < 0 ? -a : a) + 1e-9 }
/"kind": "model"/ {
  models++
  if ($0 !~ /"seeds": \[5, 6\]/) { print "FAIL: seeds of " $0; bad++ }
  n = split("violation_ratio rate rate_load_balanced rate_no_violation ratio_no_violation_to_es mean_dropped", keys, " ")
  per = $0; sub(/.*"per_seed": /, "", per)
  sd = per; sub(/.*"sd": /, "", sd)
  metrics = $0; sub(/"seeds":.*/, "", metrics)
  for (i = 1; i <= n; i++) {
    k = keys[i]
    if (!match(per, "\"" k "\": \\[[^]]*\\]")) { print "FAIL: no per_seed " k; bad++; continue }
    v = substr(per, RSTART + length(k) + 5, RLENGTH - length(k) - 6)
    split(v, x, ", ")
    mean = (x[1] + x[2]) / 2
    s = (x[1] - x[2]) / sqrt(2); if (s < 0) s = -s
    if (!near(field(metrics, k), mean) || !near(field(sd, k), s)) {
      print "FAIL: " k " mean " field(metrics, k) " sd " field(sd, k) " of " v; bad++
    }
    checked++
  }
}
END { print checked " means and sds of " models " models"; exit !(models == 5 && checked == 30 && !bad) }
' "$json" && ok "per-seed values, means and sds" || bad "per-seed values, means and sds"

for m in $models; do
  for s in 5 6; do
    for f in "$m-seed$s.npz" "train_$m-seed$s.csv"; do
      [ -s "$dir/two/$f" ] || bad "missing $f"
    done
  done
  [ -e "$dir/two/$m.npz" ] && bad "$m.npz written beside the per-seed files"
  cmp -s "$dir/two/$m-seed5.npz" "$dir/two/$m-seed6.npz" && bad "$m: seeds 5 and 6 give one checkpoint"
done
differ=$(grep '"kind": "model"' "$json" | grep -vc '"per_seed": {[^}]*"rate": \[\([^,]*\), \1\]')
check "the two seeds give different metrics ($differ of 5 models)" [ "$differ" -gt 0 ]

# train_<model>-seeds.csv: the per-epoch mean and sd of the two logs.
for m in $models; do
  awk -F, '
  FNR == 1 { for (i = 1; i <= NF; i++) col[FILENAME, $i] = i; next }
  FILENAME ~ /seed5.csv$/ { a[FNR] = $(col[FILENAME, "loss"]); next }
  FILENAME ~ /seed6.csv$/ { b[FNR] = $(col[FILENAME, "loss"]); next }
  {
    mean = (a[FNR] + b[FNR]) / 2; s = (a[FNR] - b[FNR]) / sqrt(2); if (s < 0) s = -s
    dm = $(col[FILENAME, "loss_mean"]) - mean; ds = $(col[FILENAME, "loss_sd"]) - s
    if (dm * dm > 1e-14 * (1 + mean * mean) || ds * ds > 1e-14 * (1 + s * s)) bad++
    rows++
  }
  END { exit !(rows == 2 && !bad) }
  ' "$dir/two/train_$m-seed5.csv" "$dir/two/train_$m-seed6.csv" "$dir/two/train_$m-seeds.csv" &&
    ok "train_$m-seeds.csv: mean and sd of the seeds' losses" ||
    bad "train_$m-seeds.csv: mean and sd of the seeds' losses"
done

check "table: mean ± sd in the model rows" \
  test "$(grep -- '-GNN |' "$dir/two/table.md" | awk -F'±' 'NF > 9' | wc -l)" -eq 4
check "table: baselines once" sh -c "! grep -q '^| ES |.*±' '$dir/two/table.md'"
check "curve_k.csv: sd columns" grep -q 'GS-GNN sd' "$dir/two/curve_k.csv"

# One seed is the single-seed run, whose models are the first of --seeds 2.
run s0 --seed 5
run s1 --seed 5 --seeds 1
results_of s0 >"$dir/r0"
results_of s1 >"$dir/r1"
check "--seeds 1 equals the run without --seeds" cmp -s "$dir/r0" "$dir/r1"
for m in $models; do
  check "$m: the seed-5 checkpoint does not depend on --seeds" \
    cmp -s "$dir/s1/$m.npz" "$dir/two/$m-seed5.npz"
done
check "no sd with one seed" grep -q '"sd": {"violation_ratio": null' "$dir/s1/ablation.json"

run two1 --seed 5 --seeds 2 --threads 1
results_of two >"$dir/r2"
results_of two1 >"$dir/r21"
check "--seeds 2: 1 thread equals 2 threads" cmp -s "$dir/r2" "$dir/r21"

for args in "--seeds 0" "--seeds 101" "--seeds x" "--seed 4611686018427387904 --seeds 2"; do
  # shellcheck disable=SC2086
  "$assoc" ablation --out "$dir/bad" $args >"$dir/out" 2>"$dir/err"
  status=$?
  if [ $status -eq 2 ] && grep -q seed "$dir/err"; then ok "refused: $args"; else bad "refused: $args"; fi
done

finish
