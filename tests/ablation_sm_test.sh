#!/bin/sh
# The SM-GNN slot of `assoc ablation` (ablation.h, abl_sm_hooks), filled by
# tests/ablation_sm_stub.c: a stand-in whose association is MaxSINR-capped's
# and whose own beams are ZF. On a tiny configuration with two seeds: the
# SM-GNN rows of the main and the beams table, the paper's SM column, its
# "own beams" column, its curve columns and JSON entries, each equal to the
# MaxSINR-capped values it must reproduce.
#   ablation_sm_test.sh STUB
set -u
stub="$1"
. "$(dirname "$0")/test_lib.sh"
out="$dir/sm"
"$stub" ablation --epochs 2 --batches-per-epoch 2 --batch 8 --d 8 --h 16 --train-samples 64 \
  --val-samples 16 --test-samples 16 --curve-samples 8 --k-max 6 --quiet --no-plots \
  --pt-step 20 --m-max 3 --bfgnn-d 8 --bfgnn-h 16 --bfgnn-epochs 2 --seed 5 --seeds 2 \
  --models AttSKGS,SM --out "$out" >"$dir/log" 2>&1 || bad "ablation with the SM slot ($(tail -c 300 "$dir/log"))"
json="$out/ablation.json"
table="$out/table.md"

check "main table: an SM-GNN row with the paper's SM column (99.2%)" \
  grep -q '^| SM-GNN | [^|]* | 99.2 |' "$table"
check "beams table: an own-beams column" grep -q '| BFGNN us/sample | own beams | paper BFGNN |' "$table"
check "beams table: SM-GNN's row with the paper's 6.0" grep -q '^| SM-GNN, LB |.* 6.0 |$' "$table"
for s in 5 6; do check "SM-GNN checkpoint of seed $s" grep -q "seed $s" "$out/sm-gnn-seed$s.npz"; done
check "curve_k.csv: an SM-GNN column" sh -c "head -1 '$out/curve_k.csv' | grep -q ',SM-GNN,'"

# A member of a beams entry (metrics).
beam() { # name, member
  grep -o "{\"name\": \"$1\", \"association\": \"load-balanced\"[^]]*" "$json" |
    grep -o "\"metrics\": {[^}]*" | grep -o "\"$2\": [^,}]*" | sed 's/.*: //'
}
for m in rate_mrt rate_zf rate_wmmse rate_bfgnn; do
  a=$(beam SM-GNN $m) b=$(beam MaxSINR-capped $m)
  if [ -n "$a" ] && [ "$a" = "$b" ]; then ok "SM-GNN $m = MaxSINR-capped's ($a)"; else bad "SM-GNN $m $a, MaxSINR-capped $b"; fi
done
a=$(beam SM-GNN rate_own_beams) b=$(beam SM-GNN rate_zf)
if [ -n "$a" ] && [ "$a" = "$b" ]; then ok "SM-GNN own beams (ZF in the stand-in) = its ZF column"; else bad "own beams $a, ZF $b"; fi
check "SM-GNN in methods with 2 runs and the stand-in's params" \
  sh -c "grep '\"name\": \"SM-GNN\", \"kind\": \"model\"' '$json' | grep -q '\"params\": 123.*\"seeds\": \\[5, 6\\]'"
finish
