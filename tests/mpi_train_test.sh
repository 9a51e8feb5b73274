#!/bin/sh
# Data-parallel runs over MPI (registered only in builds with MPI):
#   - assoc_dist_sum adds in the documented order, bit for bit (1-4 ranks);
#   - assoc gen under 2 and 3 ranks writes the one-process file byte for byte;
#   - assoc train under 1, 2 and 4 ranks gives the one-process model: in
#     float64 to round-off (parameters, Adam moments, mu, the log's losses);
#     in float32 bit for bit at 1 rank, the same bits on two runs at 2 ranks,
#     and close to one process (SMA-GNN: no Sinkhorn or noise);
#   - with the strata sampler each rank reads only its part of the file,
#     and 2 and 4 ranks train the one-process model (float64 to round-off,
#     the feature scale bit for bit), also when resumed on one process;
#   - a model of one's own (the training hook, Gumbel noise through
#     assoc_model_gumbel) trains at 2 and 4 ranks as on one process (float64
#     to round-off), and one that does not split batches is refused;
#   - a checkpoint of 2 ranks resumes on 4 ranks and on one process;
#   - a batch smaller than the rank count is refused;
#   - a rank killed mid-run stops the whole job with a non-zero status, and
#     the last checkpoint resumes.
# Usage: mpi_train_test.sh MPIEXEC ASSOC NPZ_COMPARE MPI_SUM_CHECK MPI_HOOK_CHECK
set -eu
mpiexec=$1 assoc=$2 compare=$3 sum_check=$4 hook_check=$5
. "$(dirname "$0")/mpi_lib.sh"

echo "== the fixed-order sum"
for n in 1 2 3 4; do ranks $n "$sum_check" || fail "mpi_sum_check on $n ranks"; done

echo "== assoc gen over ranks: the one-process file"
"$assoc" gen --samples 203 --seed 4 --out "$dir/one.npz" --quiet
for n in 2 3; do
  ranks $n "$assoc" gen --samples 203 --seed 4 --out "$dir/gen$n.npz" --quiet
  cmp "$dir/one.npz" "$dir/gen$n.npz" || fail "assoc gen on $n ranks wrote another file"
done
data=$dir/one.npz

tiny="--d 8 --h 16 --batch 8 --batches-per-epoch 4 --lr-max 1e-3 --t-mu 1 --threads 1 --quiet"
# checkpoint parameters, Adam moments and mu of A and B within TOL (0: bits)
same_model() {
  for part in param. adam.m. adam.v. mu; do
    "$compare" "$1" "$2" $part "$3" >"$dir/cmp.txt" || {
      cat "$dir/cmp.txt"
      fail "$4: $part differs beyond $3"
    }
  done
}

echo "== float64: 1, 2 and 4 ranks train the one-process model"
"$assoc" train "$data" --model attskgs $tiny --dtype float64 --epochs 3 --out "$dir/ref64.npz" \
  --log "$dir/ref64.csv"
for n in 1 2 4; do
  ranks $n "$assoc" train "$data" --model attskgs $tiny --dtype float64 --epochs 3 \
    --out "$dir/r$n.npz" --log "$dir/r$n.csv"
  same_model "$dir/ref64.npz" "$dir/r$n.npz" 1e-9 "float64 on $n ranks"
  [ "$(wc -l <"$dir/r$n.csv")" -eq 4 ] || fail "the log of $n ranks has not 1 + 3 rows"
  # the epochs' losses (column 3) to 1e-9 relative
  paste -d, "$dir/ref64.csv" "$dir/r$n.csv" | awk -F, -v n="$(head -1 "$dir/ref64.csv" |
    awk -F, '{print NF}')" 'NR > 1 { a = $3; b = $(n + 3); d = a - b; if (d < 0) d = -d;
      s = a < 0 ? -a : a; if (d > 1e-9 * s) { print "epoch " $1 ": loss " a " vs " b; bad = 1 } }
      END { exit bad }' || fail "the logged losses of $n ranks differ"
done

echo "== strata sampler: a rank reads its part of the file, the one-process model"
strata="$tiny --sampler strata --dtype float64"
"$assoc" train "$data" --model attskgs $strata --epochs 2 --out "$dir/s1.npz"
for n in 2 4; do
  ranks $n "$assoc" train "$data" --model attskgs $strata --epochs 2 --out "$dir/s$n.npz" --json \
    >"$dir/s$n.json"
  same_model "$dir/s1.npz" "$dir/s$n.npz" 1e-9 "strata on $n ranks"
  "$compare" "$dir/s1.npz" "$dir/s$n.npz" feature_scale 0 >/dev/null ||
    fail "strata on $n ranks: the feature scale differs from the whole file's"
  read_=$(sed 's/.*"samples_read": \([0-9]*\).*/\1/' "$dir/s$n.json")
  [ "$read_" -lt 203 ] || fail "rank 0 of $n read $read_ of the 203 samples"
done
ranks 2 "$assoc" train "$data" --model attskgs $strata --epochs 1 --out "$dir/sh.npz"
"$assoc" train "$data" --resume "$dir/sh.npz" --epochs 2 --quiet --out "$dir/sh.npz"
same_model "$dir/s1.npz" "$dir/sh.npz" 1e-9 "strata resumed on one process"

echo "== a model of one's own through the hook"
"$hook_check" >"$dir/hook1.txt"
[ "$(wc -l <"$dir/hook1.txt")" -ge 4 ] || fail "the hook model printed: $(cat "$dir/hook1.txt")"
for n in 2 4; do
  ranks $n "$hook_check" >"$dir/hook$n.txt"
  # name, sum, sum of squares of every parameter: to 1e-9 relative
  paste -d' ' "$dir/hook1.txt" "$dir/hook$n.txt" | awk '{ for (i = 2; i <= 3; i++) {
      d = $i - $(i + 3); if (d < 0) d = -d; s = $i < 0 ? -$i : $i;
      if ($1 != $4 || d > 1e-9 * s + 1e-300) { print; bad = 1 } } } END { exit bad }' ||
    fail "the hook model on $n ranks differs from one process"
done
if ranks 2 "$hook_check" --no-split >/dev/null 2>"$dir/err.txt"; then
  fail "a model that does not split batches trained on 2 ranks"
fi
grep -q "does not split batches" "$dir/err.txt" || fail "no message: $(cat "$dir/err.txt")"

echo "== float32: bits at 1 rank, the same bits on two runs of 2 ranks"
"$assoc" train "$data" --model attskgs $tiny --epochs 3 --out "$dir/ref32.npz"
ranks 1 "$assoc" train "$data" --model attskgs $tiny --epochs 3 --out "$dir/f1.npz"
cmp "$dir/ref32.npz" "$dir/f1.npz" || fail "1 rank differs from one process"
for run in a b; do
  ranks 2 "$assoc" train "$data" --model attskgs $tiny --epochs 3 --out "$dir/f2$run.npz"
done
cmp "$dir/f2a.npz" "$dir/f2b.npz" || fail "two runs of 2 ranks differ"
# Close to one process: Adam moves a parameter whose gradient is round-off
# noise by +-lr whatever its size, so float32 runs are compared norm-wise
# on SMA-GNN; measured 2e-4, float32 against float64 alone 7e-4.
"$assoc" train "$data" --model sma $tiny --epochs 3 --out "$dir/sma1.npz"
ranks 2 "$assoc" train "$data" --model sma $tiny --epochs 3 --out "$dir/sma2.npz"
"$compare" "$dir/sma1.npz" "$dir/sma2.npz" param. 5e-3 || fail "float32 SMA-GNN on 2 ranks"

echo "== a checkpoint of 2 ranks resumes on 4 ranks and on one process"
ranks 2 "$assoc" train "$data" --model attskgs $tiny --dtype float64 --epochs 2 \
  --out "$dir/half.npz"
cp "$dir/half.npz" "$dir/half1.npz"
ranks 4 "$assoc" train "$data" --resume "$dir/half.npz" --epochs 3 --quiet --out "$dir/half.npz"
same_model "$dir/ref64.npz" "$dir/half.npz" 1e-9 "resumed on 4 ranks"
"$assoc" train "$data" --resume "$dir/half1.npz" --epochs 3 --quiet --out "$dir/half1.npz"
same_model "$dir/ref64.npz" "$dir/half1.npz" 1e-9 "resumed on one process"

echo "== refusals"
if ranks 4 "$assoc" train "$data" --model attskgs $tiny --batch 2 --epochs 1 --out "$dir/x.npz" \
  2>"$dir/err.txt"; then
  fail "a batch of 2 on 4 ranks was accepted"
fi
grep -q "cannot be split over 4 ranks" "$dir/err.txt" || fail "no message: $(cat "$dir/err.txt")"
[ ! -e "$dir/x.npz" ] || fail "a refused run wrote a checkpoint"

echo "== a rank killed mid-run stops the job; the last checkpoint resumes"
# the launcher itself in the background (not a subshell): its children are the ranks
"$mpiexec" $oversubscribe -np 2 "$assoc" train "$data" --model attskgs $tiny --epochs 100000 \
  --out "$dir/long.npz" >"$dir/long.txt" 2>&1 &
job=$!
waited=0
until [ -s "$dir/long.npz" ]; do # the first checkpoint
  sleep 0.2
  waited=$((waited + 1))
  [ $waited -lt 600 ] || fail "no checkpoint after 120 s"
done
victim=$(ps -o pid= --ppid $job | tail -1)
[ -n "$victim" ] || fail "no rank process under the launcher $job"
kill -9 $victim
if wait $job; then fail "the job went on (or ended well) after a rank was killed"; fi
grep -q "signal 9" "$dir/long.txt" || fail "the launcher did not name the killed rank: $(cat "$dir/long.txt")"
# --epochs 1 is behind the checkpoint: it is read whole (model, Adam, mu,
# generator), checked, and written out again without training.
"$assoc" train "$data" --resume "$dir/long.npz" --epochs 1 --out "$dir/long.npz" >"$dir/resume.txt" ||
  fail "the last checkpoint does not resume"
grep -q "AttSKGS-GNN: [1-9][0-9]* epochs" "$dir/resume.txt" || fail "resume: $(cat "$dir/resume.txt")"
echo "mpi_train_test: all passed"
