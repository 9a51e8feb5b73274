#!/bin/sh
# End-to-end checks of assoc train --model bfgnn and assoc beams
# --method bfgnn=CKPT: a tiny model trained on a small data set, its beams
# for the ES association (members and shapes through npz_list, the same
# beams on one and two threads), and the refusals (options that do not
# apply, a damaged or missing checkpoint, a data set of another N, an
# overloaded association): message, non-zero status, no crash.
#   bfgnn_cli_test.sh ASSOC NPZ_LIST
set -u
assoc="$1"
npz_list="$2"
. "$(dirname "$0")/test_lib.sh"

"$assoc" gen --samples 64 --seed 4 --out "$dir/d.npz" --quiet &&
  "$assoc" gen --samples 16 --seed 5 --antennas 2 --out "$dir/n2.npz" --quiet &&
  "$assoc" baselines "$dir/d.npz" --methods ES,MaxSINR --quiet --out "$dir/b.npz" >/dev/null &&
  "$assoc" baselines "$dir/n2.npz" --methods ES --quiet --out "$dir/b2.npz" >/dev/null &&
  ok "data sets and baselines" || bad "data sets and baselines"

if "$assoc" train "$dir/d.npz" --model bfgnn --epochs 2 --d 8 --h 16 --batch 16 \
  --batches-per-epoch 3 --lr-max 1e-3 --lr-min 1e-5 --t0 2 --seed 3 --threads 1 \
  --out "$dir/ck.npz" >"$dir/train.out" 2>"$dir/err" && grep -q "^epoch 2/2" "$dir/train.out" &&
  grep -q "training mix: RandInt MaxSINR-capped ES" "$dir/train.out"
then ok "train --model bfgnn"; else bad "train --model bfgnn ($(head -c 300 "$dir/err"))"; fi
"$npz_list" "$dir/ck.npz" 2>/dev/null | grep -q "^param.mlp_v.0.weight float32 (16, 8)$" &&
  ok "checkpoint members" || bad "checkpoint members: $("$npz_list" "$dir/ck.npz" | tr '\n' ';')"
"$assoc" train "$dir/d.npz" --model bfgnn --epochs 1 --d 8 --h 16 --batch 16 --quiet \
  --out "$dir/q.npz" >"$dir/q.out" 2>&1 && [ ! -s "$dir/q.out" ] && ok "--quiet is quiet" ||
  bad "--quiet: $(head -c 200 "$dir/q.out")"

# The beams of checkpoint $1 for ES into $dir/$2<t>.npz and .json on t = 1
# and 2 threads: written, named bfgnn, the same mean rate on both.
beams_on_1_and_2_threads() {
  for t in 1 2; do
    "$assoc" beams "$dir/d.npz" "$dir/b.npz" --assoc-key ES --method "bfgnn=$1" \
      --out "$dir/$2$t.npz" --threads $t --json >"$dir/$2$t.json" 2>"$dir/err" &&
      grep -q '"method": "bfgnn"' "$dir/$2$t.json" && ok "$3, $t threads" ||
      bad "$3, $t threads ($(head -c 300 "$dir/err"))"
  done
  m1=$(sed -n 's/.*"mean_rate": \([^,]*\).*/\1/p' "$dir/${2}1.json")
  m2=$(sed -n 's/.*"mean_rate": \([^,]*\).*/\1/p' "$dir/${2}2.json")
  [ -n "$m1" ] && [ "$m1" = "$m2" ] && ok "$3: same mean rate $m1 on 1 and 2 threads" ||
    bad "$3: mean rate $m1 vs $m2"
}
beams_on_1_and_2_threads "$dir/ck.npz" v "beams bfgnn"
printf '%s\n' "V_re float64 (64, 2, 8, 4)" "V_im float64 (64, 2, 8, 4)" "rate float64 (64,)" \
  "iters int32 (64,)" "assoc int32 (64, 8)" "method uint8 (5,)" "us_per_sample float64 ()" |
  sort >"$dir/want"
"$npz_list" "$dir/v1.npz" 2>/dev/null | sort >"$dir/got"
cmp -s "$dir/want" "$dir/got" && ok "bfgnn beams members" ||
  bad "bfgnn beams members: $(tr '\n' ';' <"$dir/got")"

# the duality head: trained, stored (config.head 1, a 2-output mlp_v) and
# its beams the same on 1 and 2 threads
"$assoc" train "$dir/d.npz" --model bfgnn --head duality --epochs 2 --d 8 --h 16 --batch 16 \
  --batches-per-epoch 3 --lr-max 1e-3 --lr-min 1e-5 --t0 2 --seed 3 --threads 1 --quiet \
  --out "$dir/dual.npz" 2>"$dir/err" && ok "train --head duality" ||
  bad "train --head duality ($(head -c 300 "$dir/err"))"
"$npz_list" "$dir/dual.npz" 2>/dev/null | grep -q "^param.mlp_v.4.weight float32 (2, 16)$" &&
  "$npz_list" "$dir/dual.npz" 2>/dev/null | grep -q "^config.head int64 ()$" &&
  ok "duality checkpoint members" || bad "duality checkpoint members"
beams_on_1_and_2_threads "$dir/dual.npz" dv "duality beams"

expect_fail "--head refused for sma" "bfgnn only" \
  "$assoc" train "$dir/d.npz" --model sma --epochs 1 --head duality --out "$dir/x.npz"
expect_fail "bad --head" "direct or duality" \
  "$assoc" train "$dir/d.npz" --model bfgnn --epochs 1 --head dual --out "$dir/x.npz"
expect_fail "--loss refused for bfgnn" "does not apply to --model bfgnn" \
  "$assoc" train "$dir/d.npz" --model bfgnn --epochs 1 --loss es --out "$dir/x.npz"
expect_fail "--resume refused for bfgnn" "does not apply to --model bfgnn" \
  "$assoc" train "$dir/d.npz" --model bfgnn --epochs 1 --resume "$dir/ck.npz" --out "$dir/x.npz"
expect_fail "--norm refused for gs" "bfgnn and jointgnn only" \
  "$assoc" train "$dir/d.npz" --model gs --epochs 1 --norm full --out "$dir/x.npz"
expect_fail "bad --norm" "project or full" \
  "$assoc" train "$dir/d.npz" --model bfgnn --epochs 1 --norm half --out "$dir/x.npz"
head -c 2000 "$dir/ck.npz" >"$dir/trunc.npz"
expect_fail "truncated checkpoint" "trunc.npz" \
  "$assoc" beams "$dir/d.npz" "$dir/b.npz" --assoc-key ES --method "bfgnn=$dir/trunc.npz" \
  --out "$dir/x.npz"
expect_fail "a GNN data set as checkpoint" "not a BFGNN checkpoint" \
  "$assoc" beams "$dir/d.npz" "$dir/b.npz" --assoc-key ES --method "bfgnn=$dir/b.npz" \
  --out "$dir/x.npz"
expect_fail "missing checkpoint" "no-such" \
  "$assoc" beams "$dir/d.npz" "$dir/b.npz" --assoc-key ES --method "bfgnn=$dir/no-such.npz" \
  --out "$dir/x.npz"
expect_fail "data of another N" "N = 4 antennas, the data set N = 2" \
  "$assoc" beams "$dir/n2.npz" "$dir/b2.npz" --assoc-key ES --method "bfgnn=$dir/ck.npz" \
  --out "$dir/x.npz"
expect_fail "overloaded association" "sample [0-9]*: BS [0-9] serves" \
  "$assoc" beams "$dir/d.npz" "$dir/b.npz" --assoc-key MaxSINR --method "bfgnn=$dir/ck.npz" \
  --out "$dir/x.npz"
[ -e "$dir/x.npz" ] && bad "no output after a refusal" || ok "no output after a refusal"

finish
