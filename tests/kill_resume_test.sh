#!/bin/sh
# A training run killed (SIGKILL) at random moments and resumed each time
# ends with the checkpoint and log of an uninterrupted run, bit for bit:
#  - after every kill the checkpoint is absent (killed before the first
#    write) or complete (every member reads back, CRCs match, assoc eval
#    loads it); at most one abandoned temporary file lies beside it, and the
#    next run removes it;
#  - the --log CSV holds whole rows only, epochs 1, 2, ... without
#    duplicates, and at the end the same rows as the uninterrupted run's
#    (but for the wall-time column);
#  - one kill per model lands inside a checkpoint write: the test-only
#    SG_IO_TEST_RENAME_DELAY_MS holds each write between the complete
#    temporary file and the rename, and the kill comes once the temporary
#    file is seen.
# Done for SKGS-GNN (models/train/checkpoint.c, with --log) and JointGNN
# (models/train/beam_checkpoint.c). The kill delays are random; set
# KILL_TEST_SEED to repeat a run (the seed is printed).
#   kill_resume_test.sh ASSOC NPZ_LIST
set -u
assoc="$1"
npz_list="$2"
. "$(dirname "$0")/test_lib.sh"
seed=${KILL_TEST_SEED:-$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}
echo "kill delays: KILL_TEST_SEED=$seed"
# n random kill delays in seconds (0.05 .. 0.80), one a line.
delays() { awk -v s="$seed" -v n="$1" 'BEGIN { srand(s); for (i = 0; i < n; i++) printf "%.3f\n", 0.05 + 0.75 * rand() }'; }

"$assoc" gen --samples 40 --seed 3 --out "$dir/d.npz" --quiet || bad "gen"
eval_args="--latency-samples 0 --no-es --limit 4"

# The temporary files beside $1.
temps() { ls -a "$(dirname "$1")" | grep -c "^$(basename "$1")\.tmp"; }

# The state after a kill: no checkpoint yet, or a complete one; at most
# one abandoned temporary file; a log of whole rows, no epoch twice.
check_after_kill() { # label, checkpoint, log or ""
  if [ -e "$2" ]; then
    if "$npz_list" "$2" >/dev/null 2>"$dir/err" &&
      "$assoc" eval "$2" "$dir/d.npz" $eval_args >/dev/null 2>>"$dir/err"; then
      ok "$1: the checkpoint is complete"
    else
      bad "$1: the checkpoint is complete ($(head -c 300 "$dir/err"))"
    fi
  fi
  [ "$(temps "$2")" -le 1 ] && ok "$1: at most one temporary file" ||
    bad "$1: at most one temporary file ($(ls -a "$(dirname "$2")" | tr '\n' ' '))"
  [ -n "$3" ] && [ -e "$3" ] || return 0
  if [ -s "$3" ] && [ "$(tail -c 1 "$3" | od -An -c | tr -d ' ')" != '\n' ]; then
    bad "$1: the log ends in a partial line"
  elif awk -F, 'NR > 1 && $1 != NR - 1 { exit 1 }' "$3"; then
    ok "$1: the log has whole rows, epochs 1.. once each"
  else
    bad "$1: the log has whole rows, epochs 1.. once each ($(cut -d, -f1 "$3" | tr '\n' ' '))"
  fi
}

# Starts a run (resuming from $ckpt when it exists) in the background: pid.
start_run() { # extra environment assignment or "", log or ""
  if [ -e "$ckpt" ]; then
    set -- "$1" "$2" "$dir/d.npz" --resume "$ckpt"
  else
    set -- "$1" "$2" "$dir/d.npz" $model_args
  fi
  run_env=$1 run_log=$2
  shift 2
  [ -n "$run_log" ] && set -- "$@" --log "$run_log"
  env $run_env "$assoc" train "$@" --epochs $epochs --threads 2 --quiet --out "$ckpt" \
    --checkpoint-every 1 >/dev/null 2>>"$dir/run.err" &
  pid=$!
}

# Kills the run at a random moment: how it went, for the labels.
kill_at() { # delay
  sleep "$1"
  if kill -9 $pid 2>/dev/null; then how="killed after $1 s"; else how="finished within $1 s"; fi
  wait $pid 2>/dev/null
}

# Kills the run inside a checkpoint write that replaces a checkpoint (once
# the checkpoint and a temporary file beside it exist).
kill_in_write() { # label
  for _ in $(seq 2000); do # each write holds its temporary file 0.4 s
    [ -e "$ckpt" ] && [ "$(temps "$ckpt")" -gt 0 ] && break
    sleep 0.01
  done
  kill -9 $pid 2>/dev/null
  wait $pid 2>/dev/null
  [ "$(temps "$ckpt")" -eq 1 ] && ok "$1: killed inside a checkpoint write" ||
    bad "$1: killed inside a checkpoint write (no temporary file left)"
}

# The log without its wall-time column "seconds".
log_sans_seconds() {
  awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == "seconds") s = i }
           { line = ""; for (i = 1; i <= NF; i++) if (i != s) line = line "," $i; print line }' "$1"
}

kill_and_resume() { # name, kills, log ("" for none)
  name=$1 kills=$2 log=$3
  ref="$dir/$name-ref.npz" ckpt="$dir/$name.npz"
  ref_log=""
  [ -n "$log" ] && ref_log="$dir/$name-ref.csv" log="$dir/$log"
  start_run "" "$ref_log"
  wait $pid || bad "$name: the uninterrupted run"
  mv "$ckpt" "$ref"
  i=0
  for delay in $(delays "$kills"); do
    i=$((i + 1))
    # The first kill lands inside a write: a fresh run has every epoch still
    # to train, so the run cannot finish before its second checkpoint write
    # (on a fast machine a later, randomly timed kill may find the run done).
    if [ $i -eq 1 ]; then
      start_run SG_IO_TEST_RENAME_DELAY_MS=400 "$log"
      kill_in_write "$name kill $i"
      how="killed inside a write"
    else
      start_run "" "$log"
      kill_at "$delay"
    fi
    check_after_kill "$name kill $i ($how)" "$ckpt" "$log"
  done
  start_run "" "$log"
  wait $pid && ok "$name: the last resume finishes" ||
    bad "$name: the last resume finishes ($(tail -c 300 "$dir/run.err"))"
  cmp -s "$ckpt" "$ref" && ok "$name: the checkpoint equals the uninterrupted run's" ||
    bad "$name: the checkpoint equals the uninterrupted run's"
  [ "$(temps "$ckpt")" -eq 0 ] && ok "$name: no temporary file left" ||
    bad "$name: no temporary file left"
  [ -n "$log" ] || return 0
  log_sans_seconds "$ref_log" >"$dir/want.csv"
  log_sans_seconds "$log" | cmp -s - "$dir/want.csv" &&
    ok "$name: the log equals the uninterrupted run's (but for the seconds)" ||
    bad "$name: the log equals the uninterrupted run's ($(log_sans_seconds "$log" | diff "$dir/want.csv" - | head -c 300))"
}

epochs=12
model_args="--model skgs --d 8 --h 16 --batch 8 --batches-per-epoch 100"
kill_and_resume skgs 5 skgs.csv
epochs=10
model_args="--model jointgnn --d 8 --h 16 --batch 8 --batches-per-epoch 60"
kill_and_resume jointgnn 3 ""
finish
