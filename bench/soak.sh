#!/bin/sh
# Soak: `assoc train` for a while on the default scenario, checkpointing
# every epoch, to show that a long run holds its memory steady. Not part of
# the test suite (it runs for half an hour by default).
#
#   bench/soak.sh [MINUTES] [OUTDIR]      (defaults: 30, soak-out)
#
# Environment: ASSOC (default build/examples/assoc), THREADS (default 1:
# leaves the other core to other work), SAMPLES (training set, default
# 4096), and the model's settings SOAK_ARGS (default SKGS-GNN, d 128, h 256,
# 100 mini-batches of 32 per epoch: an epoch takes 10-30 s on 2 cores of an
# AMD EPYC; the default d 512, h 1024 would take minutes per epoch).
#
# Every 10 s the trainer's resident memory (VmRSS of /proc/PID/status) goes
# to OUTDIR/rss.csv (seconds, rss_kib, epochs completed); the training log
# OUTDIR/log.csv has the arena's reserved bytes after each epoch (its
# arena_mib column). At the end, OUTDIR/summary.txt says whether
#   - the RSS is flat after the second epoch: max - min of the samples taken
#     once two epochs are complete is at most 2% of their minimum, and
#   - the arena is constant: arena_mib is the same in every row (the first
#     epoch's steps reserve it all; later steps reuse it),
# and OUTDIR/rss.png plots the curve (when gnuplot is installed). The exit
# status is 0 when both hold, 1 when one does not, 2 on a failed run.
set -eu
minutes=${1:-30}
out=${2:-soak-out}
assoc=${ASSOC:-build/examples/assoc}
threads=${THREADS:-1}
samples=${SAMPLES:-4096}
soak_args=${SOAK_ARGS:---model skgs --d 128 --h 256 --batches-per-epoch 100}

[ -x "$assoc" ] || { echo "soak: $assoc not found (build first)" >&2; exit 2; }
mkdir -p "$out"
rm -f "$out/ck.npz" "$out/log.csv" "$out/rss.csv"
"$assoc" gen --samples "$samples" --out "$out/train.npz" --threads "$threads" --quiet

# shellcheck disable=SC2086 # SOAK_ARGS is a list of options
"$assoc" train "$out/train.npz" $soak_args --epochs 1000000 --checkpoint-every 1 \
  --out "$out/ck.npz" --log "$out/log.csv" --threads "$threads" --quiet >"$out/train.out" 2>&1 &
pid=$!
trap 'kill -INT $pid 2>/dev/null || true' EXIT INT TERM

epochs_done() { [ -f "$out/log.csv" ] && echo $(($(wc -l <"$out/log.csv") - 1)) || echo 0; }
echo "seconds,rss_kib,epochs" >"$out/rss.csv"
start=$(date +%s)
end=$((start + 60 * minutes))
while [ "$(date +%s)" -lt "$end" ]; do
  rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null) || break
  [ -n "$rss" ] || break
  echo "$(($(date +%s) - start)),$rss,$(epochs_done)" >>"$out/rss.csv"
  sleep 10
done
alive=0
kill -0 "$pid" 2>/dev/null && alive=1
kill -INT "$pid" 2>/dev/null || true
wait "$pid" 2>/dev/null || true
trap - EXIT INT TERM
if [ "$alive" = 0 ]; then
  echo "soak: the trainer ended before the time was up:" >&2
  cat "$out/train.out" >&2
  exit 2
fi

# RSS after two complete epochs; the arena column (the last) of every row.
rss_verdict=$(awk -F, 'NR > 1 && $3 >= 2 {
    n++; if (n == 1 || $2 < lo) lo = $2; if (n == 1 || $2 > hi) hi = $2 }
  END {
    if (n < 2) { print "FAIL too few samples after epoch 2 (" n ")"; exit }
    ok = hi - lo <= 0.02 * lo
    printf "%s rss after epoch 2: %d samples, min %.1f MiB, max %.1f MiB, max - min %.2f MiB (%.2f%% of min; criterion <= 2%%)\n",
      ok ? "PASS" : "FAIL", n, lo / 1024, hi / 1024, (hi - lo) / 1024, 100 * (hi - lo) / lo }' "$out/rss.csv")
arena_verdict=$(awk -F, 'NR == 1 { if ($NF != "arena_mib") { print "FAIL the log has no arena_mib column"; bad = 1; exit } next }
  { n++; if (n == 1) first = $NF; else if ($NF != first) changed++ }
  END { if (bad) exit
    if (n < 2) print "FAIL too few epochs (" n ")"
    else printf "%s arena: %s MiB after epoch 1, %d of the %d later epochs differ\n",
      changed ? "FAIL" : "PASS", first, changed, n - 1 }' "$out/log.csv")

epochs=$(epochs_done)
{
  echo "command: bench/soak.sh $minutes $out (assoc train $soak_args --threads $threads --checkpoint-every 1, $samples samples of assoc gen's default scenario)"
  echo "cpu: $(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo), $(nproc) cores"
  echo "load at the end: $(uptime | sed 's/.*load average: //')"
  echo "epochs: $epochs in $minutes min; mean epoch $(awk -F, 'NR > 1 {s += $10; n++} END {if (n) printf "%.1f", s / n}' "$out/log.csv") s (training steps)"
  echo "$rss_verdict"
  echo "$arena_verdict"
} >"$out/summary.txt"
cat "$out/summary.txt"

if command -v gnuplot >/dev/null 2>&1; then
  gnuplot <<EOF || echo "soak: gnuplot failed; the curve is in $out/rss.csv" >&2
set terminal pngcairo size 900,500
set output "$out/rss.png.tmp"
set datafile separator ","
set xlabel "minutes"
set ylabel "resident memory (MiB)"
set y2label "epochs completed"
set y2tics
set yrange [0:*]
set y2range [0:*]
set offsets 0, 0, graph 0.15, 0
set key bottom right
set title "assoc train soak: resident memory ($threads thread(s), checkpoint every epoch)"
plot "$out/rss.csv" every ::1 using (\$1/60):(\$2/1024) with lines title "VmRSS", \
     "" every ::1 using (\$1/60):3 axes x1y2 with steps title "epochs"
EOF
  [ -s "$out/rss.png.tmp" ] && mv "$out/rss.png.tmp" "$out/rss.png"
fi

case "$rss_verdict$arena_verdict" in
*FAIL*) exit 1 ;;
esac
exit 0
