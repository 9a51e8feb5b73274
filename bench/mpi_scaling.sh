#!/usr/bin/env bash
# Data-parallel training over MPI on this machine, and what clusters of 8 to
# 64 such nodes would give (a build with MPI: meson option mpi):
#   - the throughput of AttSKGS-GNN training at the paper width (d 512,
#     h 1024, global batch 32, float32) with assoc train at 1, 2 and 4 ranks
#     of 1 thread each and at 1 rank of 2 threads, and the share of a step
#     spent in the gradient sum (assoc train --json: reduce_ms_per_step; it
#     includes waiting for the slowest rank);
#   - the gradient sum alone on the model's buffer (bench/mpi_allreduce:
#     the fixed-order ring against MPI_Allreduce) at 2 and 4 ranks;
#   - the compute time of one step at per-rank batches 1 to 32 on 2 threads
#     (one process), the input of the cluster model;
#   - PyTorch DistributedDataParallel (gloo) on the same network and batch
#     (bench/torch_ddp.py, the weights and inputs of bench_gnn export) at
#     the same rank and thread counts.
# Writes bench/mpi_scaling.json and bench/mpi_scaling.md, and puts the
# latter at the end of bench/RESULTS.md (bench/compare.py keeps it there).
#
#   bench/mpi_scaling.sh            about 4 minutes on an idle 2-core machine
#   SG_MPI_STEPS=N                  steps per measurement (default 10)
#   SG_MPI_WIDTH="--d 16 --h 32"    another width: a smoke test of the script
#
# The ranks share 2 cores: 4 ranks are oversubscribed (2 per core), which
# shows the cost of the scheme rather than a speed-up. Timings need an
# otherwise idle machine; the 1-minute load average before and after is
# recorded.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=/usr/bin/python3
ASSOC=$ROOT/build/examples/assoc
ALLREDUCE=$ROOT/build/bench/mpi_allreduce
BENCH=$ROOT/build/bench/bench_gnn
STEPS=${SG_MPI_STEPS:-10}
WIDTH=${SG_MPI_WIDTH:---d 512 --h 1024} # a smaller one only to try the script
for f in "$ASSOC" "$ALLREDUCE" "$BENCH"; do
  [ -x "$f" ] || {
    echo "mpi_scaling: $f is missing: build with MPI (sh build-aux/build.sh; meson option mpi)" >&2
    exit 1
  }
done
MPIEXEC=$(command -v mpiexec || command -v mpirun) || {
  echo "mpi_scaling: no mpiexec (apt-get install openmpi-bin)" >&2
  exit 1
}
# Open MPI refuses root without these; they apply to this script's runs only.
if [ "$(id -u)" = 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
log() { echo "[$(date +%H:%M:%S)] $*" >&2; }
load1() { cut -d' ' -f1 /proc/loadavg; }
# --bind-to none: a rank of 2 threads must not be pinned to one core
ranks() { "$MPIEXEC" --oversubscribe --bind-to none -np "$@"; }

LOAD_BEFORE=$(load1)
START=$(date +%s)
log "load average $LOAD_BEFORE; data"
"$ASSOC" gen --samples 2048 --seed 1 --out "$WORK/d.npz" --quiet
paper="--model attskgs $WIDTH --epochs 1 --batches-per-epoch $STEPS --quiet --json"

log "assoc train: ranks x threads"
for rt in 1x1 2x1 4x1 1x2; do
  r=${rt%x*} t=${rt#*x}
  log "  $r rank(s) of $t thread(s)"
  # shellcheck disable=SC2086
  OMP_NUM_THREADS=$t ranks "$r" "$ASSOC" train "$WORK/d.npz" $paper --batch 32 --threads "$t" \
    --out "$WORK/ck.npz" >"$WORK/train_${rt}.json"
done

log "compute time per per-rank batch (one process, 2 threads)"
for b in 1 2 4 8 16 32; do
  # shellcheck disable=SC2086
  OMP_NUM_THREADS=2 "$ASSOC" train "$WORK/d.npz" $paper --batch $b --threads 2 \
    --out "$WORK/ck.npz" >"$WORK/compute_b$b.json"
done

params=$("$PY" -c "import json; print(json.load(open('$WORK/train_1x1.json'))['params'])")
log "the gradient sum alone: $params floats + 4"
for r in 2 4; do
  ranks $r "$ALLREDUCE" --floats $((params + 4)) --reps 12 >"$WORK/allreduce_$r.json"
done

log "PyTorch DDP (gloo)"
# shellcheck disable=SC2086
OMP_NUM_THREADS=2 "$BENCH" export --variant attskgs $WIDTH --batch 32 \
  --out "$WORK/torch.npz" >/dev/null
for rt in 1x1 2x1 4x1 1x2; do
  r=${rt%x*} t=${rt#*x}
  log "  torch: $r rank(s) of $t thread(s)"
  env OPENBLAS_CORETYPE=SkylakeX OMP_WAIT_POLICY=PASSIVE OPENBLAS_THREAD_TIMEOUT=4 \
    OMP_NUM_THREADS=$t OPENBLAS_NUM_THREADS=$t \
    "$PY" "$ROOT/bench/torch_ddp.py" "$WORK/torch.npz" --ranks "$r" --threads "$t" \
    --steps "$STEPS" --warmup 2 >"$WORK/torch_${rt}.json"
done

LOAD_AFTER=$(load1)
SECONDS_TAKEN=$(($(date +%s) - START))
log "load average $LOAD_AFTER after; ${SECONDS_TAKEN} s"
"$PY" "$ROOT/bench/mpi_scaling_report.py" "$WORK" "$ROOT/bench" "$LOAD_BEFORE" "$LOAD_AFTER" \
  "$SECONDS_TAKEN" "$(git -C "$ROOT" describe --always --dirty 2>/dev/null || echo unknown)" \
  "$("$MPIEXEC" --version 2>&1 | head -1)"
