#!/bin/sh
# End-to-end checks of `assoc ablation --seeds N` on a tiny configuration
# (2 epochs of 2 mini-batches of 8, d 8, h 16, 16 test samples, K 4..6 on the
# curve, P_t 10, 30, 50 and M 2, 3 on the other curves, a BFGNN of d 8, h 16
# and 2 epochs): per-seed values with their means and sds in ablation.json,
# the files of each seed, the per-epoch mean/sd CSV, the table, one seed
# against the single-seed run, 1 against 2 threads, the beams table (Table 1
# row 4) recomputed with assoc eval, assoc baselines and assoc beams, the
# curves' points and _BFGNN columns, Fig. 2a's data, and refusals.
#   ablation_test.sh ASSOC
set -u
assoc="$1"
. "$(dirname "$0")/test_lib.sh"
models="attskgs-gnn skgs-gnn gs-gnn sma-gnn skgs-gnn-plus"
# The paper's four and SKGS-GNN+; SM-GNN (JointGNN) has a run of its own below.
tiny="--epochs 2 --batches-per-epoch 2 --batch 8 --d 8 --h 16 --train-samples 64
      --val-samples 16 --test-samples 16 --curve-samples 8 --k-max 6 --quiet
      --pt-step 20 --m-max 3 --bfgnn-d 8 --bfgnn-h 16 --bfgnn-epochs 2
      --models AttSKGS,SKGS,GS,SMA,SKGS+"
run() { # out dir, options...
  out=$1
  shift
  # shellcheck disable=SC2086
  "$assoc" ablation $tiny --out "$dir/$out" "$@" >"$dir/$out.log" 2>&1
  status=$?
  if [ $status -ne 0 ] && ! { [ $status -eq 3 ] && ! command -v gnuplot >/dev/null 2>&1; }; then
    bad "assoc ablation $* (status $status: $(tail -c 300 "$dir/$out.log"))"
  fi
}
# ablation.json without the fields that measure time or threads.
results_of() {
  sed -E -e 's/"(train_seconds|infer_us|latency_us|decode_us|seconds_total|seconds_data|seconds_beams|threads|wmmse_us|bfgnn_us)": (\[[^]]*\]|[^,}]*)/"\1": -/g' \
    -e 's/"plots": "[^"]*"/"plots": -/' "$dir/$1/ablation.json"
}

run two --seed 5 --seeds 2 # with plots: exit status 3 when gnuplot is missing
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

# Every output file gets the mode of a file created under the same umask
# (0666 less the umask), as the PNGs and checkpoints do.
touch "$dir/mode-ref"
mode=$(stat -c %a "$dir/mode-ref")
other=$(find "$dir/two" -type f ! -perm "$mode" -printf '%f %m, ' | head -c 300)
check "every output file has mode $mode, as touch gives under umask $(umask) (others: ${other:-none})" \
  test -s "$dir/two/table.md" -a -s "$dir/two/plots.gp" -a -z "$other"

# The paper's four models have a row in the quality table (mean ± sd of
# violations and of the three rates) and one in the cost table (of the two
# times and the training time).
check "quality table: mean ± sd in the model rows" \
  test "$(grep -- '-GNN |' "$dir/two/table.md" | awk -F'±' 'NF == 5' | wc -l)" -eq 4
check "cost table: mean ± sd in the model rows" \
  test "$(grep -- '-GNN |' "$dir/two/table.md" | awk -F'±' 'NF == 4' | wc -l)" -eq 4
check "quality table: every paper column named for its metric" \
  grep -q '^| method | viol % | paper viol % | rate | paper rate | LB rate | paper LB rate |' \
  "$dir/two/table.md"
check "quality table: why LB can exceed ES" grep -q '^LB/ES can exceed 100%' "$dir/two/table.md"
check "cost table: units of the times" \
  grep -q '| infer us/sample (batch 256) | latency us (1 sample) |.* train s |' "$dir/two/table.md"
# Table rows (header included) fit about 120 characters (± counted as one).
long_rows() { grep '^|' "$1" | sed 's/±/+/g' | awk 'length > 125 { print length }' | head -3; }
long=$(long_rows "$dir/two/table.md")
check "table rows within 125 characters (longer: ${long:-none})" test -z "$long"
check "table: baselines once" sh -c "! grep -q '^| ES |.*±' '$dir/two/table.md'"
# plots.gp: Fig. 3a's legend outside the plot, with entries for the solid
# (training) and dashed (validation) lines; Fig. 2b: training series only
# (the validation LB rate is Fig. 2a), its legends in the empty corners.
for fig in 3a 2b; do sed -n "/^# Fig. $fig:/,/^# Fig. /p" "$dir/two/plots.gp" >"$dir/fig$fig.gp"; done
check "plots.gp: Fig. 3a's legend outside" grep -q '^set key outside right top' "$dir/fig3a.gp"
check "plots.gp: Fig. 3a's legend says what solid and dashed are" sh -c \
  "grep -q \"title 'solid: training batches'\" '$dir/fig3a.gp' &&
   grep -q \"dt 2 lc rgb 'gray30' title 'dashed: validation set'\" '$dir/fig3a.gp'"
check "plots.gp: Fig. 2b without the validation series" sh -c "! grep -q test_lb_rate '$dir/fig2b.gp'"
check "plots.gp: Fig. 2b's legends in empty corners" sh -c \
  "grep -q '^set key inside left top' '$dir/fig2b.gp' &&
   grep -q '^set key inside right bottom' '$dir/fig2b.gp'"
check "curve_k.csv: sd columns" grep -q 'GS-GNN sd' "$dir/two/curve_k.csv"

# One seed is the single-seed run, whose models are the first of --seeds 2.
run s0 --seed 5 --no-plots
run s1 --seed 5 --seeds 1 --no-plots
results_of s0 >"$dir/r0"
results_of s1 >"$dir/r1"
check "--seeds 1 equals the run without --seeds" cmp -s "$dir/r0" "$dir/r1"
for m in $models; do
  check "$m: the seed-5 checkpoint does not depend on --seeds" \
    cmp -s "$dir/s1/$m.npz" "$dir/two/$m-seed5.npz"
done
check "no sd with one seed" grep -q '"sd": {"violation_ratio": null' "$dir/s1/ablation.json"

run two1 --seed 5 --seeds 2 --threads 1 --no-plots
results_of two >"$dir/r2"
results_of two1 >"$dir/r21"
check "--seeds 2: 1 thread equals 2 threads" cmp -s "$dir/r2" "$dir/r21"

# ---- Table 1 row 4 (the beams table) -----------------------------------------------------

# A member of the beams entry of `name` with `association` in ablation.json.
beam_value() { # json, name, association, member
  grep -o "{\"name\": \"$2\", \"association\": \"$3\"[^]]*" "$1" |
    grep -o "\"metrics\": {[^}]*" | grep -o "\"$4\": [^,}]*" | sed 's/.*: //'
}
# Two numbers equal to 1e-8 relative (both present and finite).
same() { awk -v a="$1" -v b="$2" 'BEGIN { d = a - b; if (d < 0) d = -d; m = a < 0 ? -a : a
  exit !(a != "" && b != "" && a != "null" && d <= 1e-8 * m + 1e-12) }'; }
# The mean rate of `assoc beams` (json).
beams_rate() { # assoc file, key, method
  "$assoc" beams "$dir/s0/test.npz" "$1" --assoc-key "$2" --method "$3" --out "$dir/bo.npz" \
    --json 2>"$dir/beams.err" | grep -o '"mean_rate": [^,}]*' | sed 's/.*: //'
}

j0="$dir/s0/ablation.json"
rows=$(grep -c '^| .*, \(LB\|NV\) |' "$dir/s0/table.md")
check "beams table: 13 rows (5 models, SKGS-GNN+ twice, 7 baselines) ($rows)" [ "$rows" -eq 13 ]
check "beams table: a BFGNN value in every row" \
  sh -c "! grep '^| .*, \(LB\|NV\) |' '$dir/s0/table.md' | awk -F'|' '\$7 !~ /[0-9]/' | grep -q ."
check "ablation.json: 13 beams entries" \
  test "$(grep -o '"association": "' "$j0" | wc -l)" -eq 13
check "ablation.json: BFGNN trained (enabled, 1 seed)" grep -q '"bfgnn": {"enabled": true, "d": 8, "h": 16, "L": 2, "epochs": 2' "$j0"
[ -s "$dir/s0/bfgnn.npz" ] || bad "missing bfgnn.npz"
for s in 5 6; do [ -s "$dir/two/bfgnn-seed$s.npz" ] || bad "missing bfgnn-seed$s.npz"; done
check "BFGNN seed 5 does not depend on --seeds" cmp -s "$dir/s1/bfgnn.npz" "$dir/two/bfgnn-seed5.npz"
cmp -s "$dir/two/bfgnn-seed5.npz" "$dir/two/bfgnn-seed6.npz" && bad "BFGNN: seeds 5 and 6 give one checkpoint"

# The models' LB associations (assoc eval --out) and the baselines' (assoc
# baselines --out) through assoc beams with the run's BFGNN, ZF and WMMSE.
"$assoc" eval "$dir/s0/attskgs-gnn.npz" "$dir/s0/test.npz" --no-es --out "$dir/att.npz" \
  >/dev/null 2>&1 || bad "assoc eval --out"
"$assoc" eval "$dir/s0/skgs-gnn-plus.npz" "$dir/s0/test.npz" --no-es --out "$dir/plus.npz" \
  >/dev/null 2>&1 || bad "assoc eval --out (SKGS-GNN+)"
"$assoc" baselines "$dir/s0/test.npz" --methods ES,Assign,RandInt --out "$dir/base.npz" \
  >/dev/null 2>&1 || bad "assoc baselines --out"
bf="bfgnn=$dir/s0/bfgnn.npz"
for spec in "att.npz AttSKGS_GNN_lb AttSKGS-GNN load-balanced" \
  "plus.npz SKGS_GNN_nv SKGS-GNN+ no-violation" "base.npz ES ES load-balanced" \
  "base.npz Assign Assign load-balanced" "base.npz RandInt RandInt load-balanced"; do
  set -- $spec
  for m in "$bf rate_bfgnn" "zf rate_zf" "wmmse rate_wmmse"; do
    method=${m% *} member=${m#* }
    got=$(beams_rate "$dir/$1" "$2" "$method")
    want=$(beam_value "$j0" "$3" "$4" "$member")
    if same "$got" "$want"; then ok "row 4: $3 ($4) $member = assoc beams ($want)"
    else bad "row 4: $3 ($4) $member: ablation $want, assoc beams $got ($(head -c 200 "$dir/beams.err"))"; fi
  done
done
check "row 4: the MRT column is the LB rate" \
  same "$(beam_value "$j0" AttSKGS-GNN load-balanced rate_mrt)" \
  "$(grep -o '"name": "AttSKGS-GNN", "kind": "model".*' "$j0" | grep -o '"rate_load_balanced": [^,]*' | head -1 | sed 's/.*: //')"

# Means and sds of the beams over the two seeds (BFGNN of a model's row).
awk '
/"association": "load-balanced"/ && /"source": "model"/ {
  if (!match($0, /"per_seed": \{"rate_mrt": \[[^]]*\], "rate_zf": \[[^]]*\], "rate_wmmse": \[[^]]*\], "wmmse_us": \[[^]]*\], "rate_bfgnn": \[[^]]*\]/)) { bad++; next }
  v = substr($0, RSTART, RLENGTH); sub(/.*"rate_bfgnn": \[/, "", v); sub(/\]/, "", v)
  split(v, x, ", "); mean = (x[1] + x[2]) / 2
  m = $0; sub(/.*"metrics": \{/, "", m); sub(/\}.*/, "", m)
  sub(/.*"rate_bfgnn": /, "", m); sub(/,.*/, "", m)
  d = m - mean; if (d < 0) d = -d
  if (d > 1e-8 * (mean < 0 ? -mean : mean) + 1e-9 || x[1] == x[2]) bad++
  n++
}
END { exit !(n == 5 && !bad) }' "$json" && ok "row 4: BFGNN means over 2 seeds, seeds differ" ||
  bad "row 4: BFGNN means over 2 seeds, seeds differ"

# ---- the curves and Fig. 2a's data --------------------------------------------------------

for spec in "curve_k.csv K 3" "curve_pt.csv pt_dbm 3" "curve_m.csv M 2"; do
  set -- $spec
  f="$dir/two/$1"
  check "$1: $3 points" test "$(($(wc -l <"$f") - 1))" -eq "$3"
  check "$1: x column $2" sh -c "head -1 '$f' | grep -q '^$2,'"
  awk -F, -v file="$1" '
  NR == 1 { for (i = 1; i <= NF; i++) if ($i ~ /_BFGNN( sd)?$/) cols[++n] = i; next }
  { for (i = 1; i <= n; i++) if ($(cols[i]) !~ /^[0-9]+\.[0-9]+$/ || $(cols[i]) + 0 <= 0) bad++ }
  END { exit !(n == 6 && !bad) }' "$f" && ok "$1: ES/MaxSINR/RandInt_BFGNN finite with sds" ||
    bad "$1: ES/MaxSINR/RandInt_BFGNN finite with sds"
done
check "ablation.json: three curves" \
  test "$(grep -o '"parameter": "\(K\|pt_dbm\|M\)"' "$json" | wc -l)" -eq 3
check "val_baselines.csv: 5 baselines" test "$(($(wc -l <"$dir/two/val_baselines.csv") - 1))" -eq 5
check "ablation.json: validation_baselines" grep -q '"validation_baselines": {"ES": [0-9]' "$json"

# Plots of the two-seed run: plots.gp draws every figure; with gnuplot the PNGs exist.
for png in fig2a_val_rate fig2b_loss fig3a_violation fig3b_onehot fig4a_rate_vs_k \
  fig4b_rate_vs_pt fig4c_rate_vs_m; do
  check "plots.gp draws $png.png" grep -q "set output '$png.png'" "$dir/two/plots.gp"
  if command -v gnuplot >/dev/null 2>&1; then
    check "$png.png written" test -s "$dir/two/$png.png"
  fi
done
check "Fig. 4b: the _BFGNN curves with bands" \
  test "$(grep -c "'curve_pt.csv' using 1:.*BFGNN beams" "$dir/two/plots.gp")" -eq 3

# --no-bfgnn: row 4 keeps ZF and WMMSE (the same as with BFGNN), no BFGNN
# column, no _BFGNN curves, no BFGNN checkpoint.
run nb --seed 5 --no-plots --no-bfgnn
check "--no-bfgnn: ZF as with BFGNN" same "$(beam_value "$dir/nb/ablation.json" ES load-balanced rate_zf)" \
  "$(beam_value "$j0" ES load-balanced rate_zf)"
check "--no-bfgnn: BFGNN null" test "$(beam_value "$dir/nb/ablation.json" ES load-balanced rate_bfgnn)" = null
check "--no-bfgnn: no _BFGNN curves" sh -c "! grep -q BFGNN '$dir/nb/curve_k.csv'"
check "--no-bfgnn: no bfgnn.npz" test ! -e "$dir/nb/bfgnn.npz"

# SM-GNN: JointGNN trained and evaluated by the run (the slot's hooks are
# tested with a stand-in by ablation_sm_test.sh): its rows in both tables,
# a finite own-beams rate, its checkpoint, and the BFGNN head in the JSON.
run sm --models SM --bfgnn-head direct
check "SM-GNN: its checkpoint" test -s "$dir/sm/sm-gnn.npz"
check "SM-GNN: a row of the main table" grep -q "^| SM-GNN |" "$dir/sm/table.md"
check "SM-GNN: LB row of the beams table with own beams and the paper's 6.0" \
  awk -F'|' '$2 ~ /SM-GNN, LB/ && $10 + 0 > 0 && $11 + 0 == 6.0 { found = 1 } END { exit !found }' \
  "$dir/sm/table.md"
check "ablation.json: BFGNN's head" grep -q '"head": "direct"' "$dir/sm/ablation.json"
long=$(long_rows "$dir/sm/table.md")
check "SM-GNN: table rows within 125 characters (longer: ${long:-none})" test -z "$long"

for args in "--seeds 0" "--seeds 101" "--seeds x" "--seed 4611686018427387904 --seeds 2" \
  "--m-max 5" "--pt-min 40 --pt-max 20" "--pt-max 61" "--bfgnn-epochs 0"; do
  # shellcheck disable=SC2086
  "$assoc" ablation --out "$dir/bad" $args >"$dir/out" 2>"$dir/err"
  status=$?
  if [ $status -eq 2 ] && grep -q -- "${args%% *}\|seed\|pt" "$dir/err"; then ok "refused: $args"; else bad "refused: $args"; fi
done

finish
