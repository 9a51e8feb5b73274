#!/bin/sh
# End-to-end checks of assoc beams: the beams of each method for the ES
# association of assoc baselines --out on a small data set (members and
# shapes through npz_list, MRT's mean rate equal to the baselines' ES rate,
# which uses MRT), and the refusals (unknown key listing the keys, shape
# mismatch, an overloaded association for ZF/WMMSE naming the sample, bad
# paths): clear message, non-zero status, no crash, no file left behind.
#   beams_test.sh ASSOC NPZ_LIST
set -u
assoc="$1"
npz_list="$2"
. "$(dirname "$0")/test_lib.sh"
# A JSON number field of a one-line object.
field() { sed -n "s/.*\"$1\": \([^,}]*\).*/\1/p" "$2" | head -n 1; }

"$assoc" gen --samples 30 --seed 4 --out "$dir/d.npz" --quiet &&
  "$assoc" gen --samples 20 --seed 4 --out "$dir/d20.npz" --quiet &&
  "$assoc" baselines "$dir/d.npz" --methods ES,MaxSINR --json --quiet --out "$dir/b.npz" \
    >"$dir/b.json" 2>/dev/null && ok "data set and baselines" || bad "data set and baselines"

for m in mrt zf wmmse; do
  if "$assoc" beams "$dir/d.npz" "$dir/b.npz" --assoc-key ES --method $m --out "$dir/$m.npz" \
    --threads 2 --json >"$dir/$m.json" 2>"$dir/err" && grep -q "\"method\": \"$m\"" "$dir/$m.json"
  then ok "beams --method $m"; else bad "beams --method $m ($(head -c 300 "$dir/err"))"; fi
  printf '%s\n' "V_re float64 (30, 2, 8, 4)" "V_im float64 (30, 2, 8, 4)" "rate float64 (30,)" \
    "iters int32 (30,)" "assoc int32 (30, 8)" "method uint8 ($(printf %s $m | wc -c),)" \
    "us_per_sample float64 ()" | sort >"$dir/want"
  "$npz_list" "$dir/$m.npz" 2>/dev/null | sort >"$dir/got"
  cmp -s "$dir/want" "$dir/got" && ok "$m members" || bad "$m members: $(tr '\n' ';' <"$dir/got")"
done

es=$(awk '/"key": "ES"/ { sub(/.*"mean_rate": /, ""); sub(/,.*/, ""); print }' "$dir/b.json")
mrt=$(field mean_rate "$dir/mrt.json")
zf=$(field mean_rate "$dir/zf.json")
wmmse=$(field mean_rate "$dir/wmmse.json")
awk -v a="$es" -v b="$mrt" 'BEGIN { d = a - b; exit !(a > 0 && d * d <= 1e-16 * a * a) }' &&
  ok "MRT mean rate $mrt = baselines ES $es" || bad "MRT mean rate $mrt vs baselines ES $es"
awk -v a="$wmmse" -v b="$mrt" -v z="$zf" 'BEGIN { exit !(a >= b && z > 0) }' &&
  ok "WMMSE $wmmse >= MRT $mrt, ZF $zf" || bad "WMMSE $wmmse vs MRT $mrt, ZF $zf"
"$assoc" beams "$dir/d.npz" "$dir/b.npz" --assoc-key ES --method wmmse --out "$dir/w1.npz" \
  --threads 1 >/dev/null 2>&1 && "$npz_list" "$dir/w1.npz" >/dev/null 2>&1 &&
  ok "WMMSE with one thread" || bad "WMMSE with one thread"
"$assoc" beams "$dir/d.npz" "$dir/b.npz" --assoc-key MaxSINR --method mrt \
  --out "$dir/maxsinr.npz" >/dev/null 2>&1 && ok "MRT accepts an overloaded association" ||
  bad "MRT accepts an overloaded association"

expect_fail "unknown key lists the keys" "available keys: ES, MaxSINR" \
  "$assoc" beams "$dir/d.npz" "$dir/b.npz" --assoc-key Nope --method zf --out "$dir/x.npz"
expect_fail "shape mismatch" "needs (20, 8)" \
  "$assoc" beams "$dir/d20.npz" "$dir/b.npz" --assoc-key ES --method zf --out "$dir/x.npz"
for m in zf wmmse; do
  expect_fail "$m refuses an overloaded association" "sample [0-9]*: BS [0-9] serves" \
    "$assoc" beams "$dir/d.npz" "$dir/b.npz" --assoc-key MaxSINR --method $m --out "$dir/x.npz"
done
expect_fail "unknown method" "unknown method" \
  "$assoc" beams "$dir/d.npz" "$dir/b.npz" --assoc-key ES --method mmse --out "$dir/x.npz"
expect_fail "missing data set" "no-such" \
  "$assoc" beams "$dir/no-such.npz" "$dir/b.npz" --assoc-key ES --method mrt --out "$dir/x.npz"
expect_fail "missing association file" "no-such" \
  "$assoc" beams "$dir/d.npz" "$dir/no-such.npz" --assoc-key ES --method mrt --out "$dir/x.npz"
expect_fail "--out into a missing directory" "no-such-dir" \
  "$assoc" beams "$dir/d.npz" "$dir/b.npz" --assoc-key ES --method mrt --out "$dir/no-such-dir/x"
mkdir "$dir/outdir"
expect_fail "--out onto a directory" "outdir" \
  "$assoc" beams "$dir/d.npz" "$dir/b.npz" --assoc-key ES --method mrt --out "$dir/outdir"
expect_fail "no --out" "--out is required" \
  "$assoc" beams "$dir/d.npz" "$dir/b.npz" --assoc-key ES --method mrt
[ -e "$dir/x.npz" ] && bad "no output after a refusal" || ok "no output after a refusal"
ls -a "$dir" "$dir/outdir" | grep -q '\.tmp' && bad "no temporary file left" ||
  ok "no temporary file left"

finish
