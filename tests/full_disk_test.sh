#!/bin/sh
# Every writer of assoc, when the disk refuses the data, fails with a
# message naming the file and a non-zero status, and leaves the previous
# file byte for byte as it was, with no temporary file beside it: data sets
# (gen --out), baselines --out, checkpoints (train --out, SKGS-GNN and
# JointGNN), the training log (--log, fresh and appended to on resume),
# eval --out, beams --out, and ablation --out (its files and gnuplot's PNGs).
# Twice:
#  - EFBIG: a file size limit (ulimit -f 1, SIGXFSZ ignored so that write()
#    returns the error), which files of one block or more exceed;
#  - ENOSPC: a full tmpfs, in a mount namespace of its own (unshare -m, or
#    unshare -rm when not root); where no tmpfs can be mounted the script
#    says so and that part does not run.
#   full_disk_test.sh ASSOC NPZ_LIST [--enospc]   (the last: the tmpfs part)
set -u
assoc="$1"
npz_list="$2"
mode=${3:-efbig}
. "$(dirname "$0")/test_lib.sh"
tiny="--epochs 2 --batches-per-epoch 2 --batch 8 --d 8 --h 16 --train-samples 64
      --val-samples 16 --test-samples 16 --curve-samples 8 --k-max 6 --quiet
      --pt-step 20 --m-max 3 --bfgnn-d 8 --bfgnn-h 16 --bfgnn-epochs 2 --models SKGS"
small="--d 8 --h 16 --batch 8 --batches-per-epoch 2 --quiet"

# The previous files, in $out, and a copy of them in $dir/prev.
make_previous() {
  mkdir -p "$out" "$dir/prev"
  { "$assoc" gen --samples 40 --seed 3 --out "$out/d.npz" --quiet &&
    "$assoc" baselines "$out/d.npz" --out "$out/base.npz" &&
    "$assoc" train "$out/d.npz" --model skgs --epochs 10 $small --out "$out/ck.npz" \
      --log "$out/log.csv" &&
    "$assoc" train "$out/d.npz" --model jointgnn --epochs 1 $small --out "$out/joint.npz" &&
    "$assoc" eval "$out/ck.npz" "$out/d.npz" --latency-samples 0 --out "$out/ev.npz" &&
    "$assoc" beams "$out/d.npz" "$out/base.npz" --assoc-key ES --method mrt --out "$out/beams.npz"
  } >/dev/null 2>"$dir/setup.err" || bad "the previous files ($(head -c 300 "$dir/setup.err"))"
  "$assoc" ablation $tiny --out "$out/ab" >/dev/null 2>>"$dir/setup.err"
  status=$?
  # exit status 3: results written, but no gnuplot for the plots
  [ $status -eq 0 ] || [ $status -eq 3 ] || bad "the previous ablation (status $status)"
  cp -r "$out"/* "$dir/prev/"
}

# Runs a command where writes fail: under the file size limit (EFBIG), or
# as it is (the tmpfs is full).
refused() {
  if [ "$mode" = efbig ]; then
    sh -c 'ulimit -f 1; trap "" XFSZ; exec "$@"' sh "$@"
  else
    "$@"
  fi
}

# The command fails (status 1..127) naming the file $2 (an extended
# regular expression: one of the files may fail first), and every file
# listed after -- is as before, with no temporary file in its directory.
expect_refused() { # name, file named in the message, command..., --, files...
  name=$1 named=$2
  shift 2
  cmd=""
  while [ "$1" != -- ]; do
    cmd="$cmd '$(printf %s "$1" | sed "s/'/'\\\\''/g")'"
    shift
  done
  shift
  # stderr through a pipe: the size limit does not apply to it
  msg=$(eval "refused $cmd" 2>&1 >/dev/null)
  status=$?
  problem=""
  [ $status -gt 0 ] && [ $status -lt 128 ] || problem="status $status"
  printf %s "$msg" | grep -qE "$named" || problem="$problem; the message does not name $named"
  for f in "$@"; do
    cmp -s "$out/$f" "$dir/prev/$f" || problem="$problem; $f changed"
    ls -a "$(dirname "$out/$f")" | grep -q '\.tmp' && problem="$problem; a temporary file beside $f"
  done
  if [ -z "$problem" ]; then
    ok "$mode: $name"
  else
    bad "$mode: $name ($problem: $(printf %s "$msg" | head -c 300))"
  fi
}

run_writers() {
  expect_refused "gen --out" d.npz "$assoc" gen --samples 40 --seed 5 --out "$out/d.npz" --quiet \
    -- d.npz
  expect_refused "baselines --out" base.npz "$assoc" baselines "$out/d.npz" --out "$out/base.npz" \
    -- base.npz
  expect_refused "train --out (SKGS-GNN)" ck.npz "$assoc" train "$out/d.npz" --model skgs \
    --epochs 1 $small --out "$out/ck.npz" -- ck.npz
  expect_refused "train --out (JointGNN)" joint.npz "$assoc" train "$out/d.npz" --model jointgnn \
    --epochs 1 $small --out "$out/joint.npz" -- joint.npz
  # The log's row is written first, then the checkpoint: on a full tmpfs the
  # row may still fit in the log's last page; then the checkpoint fails and
  # the row is taken back.
  expect_refused "train --resume --log (appending a row)" "log.csv|ck.npz" "$assoc" train "$out/d.npz" \
    --resume "$out/ck.npz" --epochs 11 --quiet --out "$out/ck.npz" --log "$out/log.csv" \
    -- log.csv ck.npz
  expect_refused "eval --out" ev.npz "$assoc" eval "$out/ck.npz" "$out/d.npz" --latency-samples 0 \
    --out "$out/ev.npz" -- ev.npz
  expect_refused "beams --out" beams.npz "$assoc" beams "$out/d.npz" "$out/base.npz" \
    --assoc-key ES --method mrt --out "$out/beams.npz" -- beams.npz
  files=$(cd "$out" && ls ab/*)
  # shellcheck disable=SC2086
  expect_refused "ablation --out" "$out/ab/" "$assoc" ablation $tiny --out "$out/ab" -- $files
}

# A fresh log under the limit of 0 blocks: its header cannot be written.
fresh_log() {
  msg=$(sh -c 'ulimit -f 0; trap "" XFSZ; exec "$@"' sh "$assoc" train "$out/d.npz" --model skgs \
    --epochs 1 $small --out "$dir/other.npz" --log "$out/log.csv" 2>&1 >/dev/null)
  status=$?
  if [ $status -ne 0 ] && [ $status -lt 128 ] && printf %s "$msg" | grep -qF log.csv &&
    cmp -s "$out/log.csv" "$dir/prev/log.csv" && ! ls -a "$out" | grep -q '\.tmp'; then
    ok "efbig: train --log (a fresh log)"
  else
    bad "efbig: train --log (a fresh log) (status $status: $(printf %s "$msg" | head -c 300))"
  fi
}

# gnuplot alone under the limit of 40 blocks (20 KiB), the PNGs'
# size: it exits 0 with cut-off PNGs, which assoc ablation must not take.
plots_cut_off() {
  command -v gnuplot >/dev/null 2>&1 || {
    echo "NOTE: no gnuplot: the PNG part of the test does not run"
    return
  }
  mkdir "$dir/bin"
  printf '#!/bin/sh\nulimit -f 40\ntrap "" XFSZ\nexec %s "$@"\n' "$(command -v gnuplot)" \
    >"$dir/bin/gnuplot"
  chmod +x "$dir/bin/gnuplot"
  pngs=$(cd "$out" && ls ab/*.png)
  # shellcheck disable=SC2086
  saved_path=$PATH
  PATH="$dir/bin:$PATH"
  mode=gnuplot # assoc itself without a limit
  expect_refused "ablation PNGs (gnuplot under a size limit)" ".png" \
    "$assoc" ablation $tiny --out "$out/ab" -- $pngs
  PATH=$saved_path mode=efbig
}

out="$dir/files"
if [ "$mode" = efbig ]; then
  make_previous
  run_writers
  fresh_log
  plots_cut_off
  # The same on a full tmpfs, in a mount namespace of its own.
  if [ "$(id -u)" = 0 ]; then unshare="unshare -m"; else unshare="unshare -rm"; fi
  if $unshare true 2>/dev/null; then
    $unshare sh "$0" "$assoc" "$npz_list" enospc && ok "enospc: every writer" ||
      bad "enospc: every writer (see above)"
  else
    echo "NOTE: cannot make a mount namespace ($unshare): the full-tmpfs part does not run"
  fi
else
  mkdir "$out"
  if ! mount -t tmpfs -o size=8m tmpfs "$out" 2>"$dir/mount.err"; then
    echo "NOTE: cannot mount a tmpfs ($(cat "$dir/mount.err")): the full-tmpfs part does not run"
    exit 0
  fi
  make_previous
  cat /dev/zero >"$out/fill" 2>/dev/null # fills the tmpfs
  run_writers
  umount "$out"
fi
finish
