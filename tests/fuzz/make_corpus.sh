#!/bin/sh
# Makes the seed corpus of the fuzz targets (tests/fuzz/corpus/<target>/)
# from a normal build: small valid inputs of every parser. The files are
# committed; run this again only to refresh them:
#   sh tests/fuzz/make_corpus.sh [BUILD_DIR]   (default: build)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${1:-$root/build}
assoc=$build/examples/assoc
corpus=$here/corpus
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$corpus/npy" "$corpus/npz" "$corpus/dataset" "$corpus/checkpoint" \
  "$corpus/beam_checkpoint" "$corpus/assoc_cli"

# .npy: numpy's files among the fixtures (every dtype read, 0-d, empty, format 2.0,
# and the refused big-endian and Fortran-order ones)
for f in 0d bigendian bool empty f4 f8 fortran i4 i8 u1 v2; do
  cp "$root/tests/fixtures/numpy_$f.npy" "$corpus/npy/"
done
"$build/tests/npz_writer_demo" "$tmp" >/dev/null
cp "$tmp/demo.npy" "$corpus/npy/"
# .npz: ours (stored) and numpy's (savez, savez_compressed, narrow ints, zip64
# records), an index of small chunks (tests/make_npy_fixtures.py), each after
# the target's 9 bytes of parameters (fuzz_npz.c): rows 1 to 2 of every
# member; rows 100 to 149 of two indexed members; rows [5, 3) (refused).
npz_seed() { # SOURCE NAME PARAMS (printf octal escapes)
  { printf "$3"; cat "$1"; } >"$corpus/npz/$2"
}
every='\077\001\000\000\000\002\000\000\000'
npz_seed "$tmp/stored.npz" stored.npz "$every"
for f in mixed narrow_ints savez savez_compressed zip64_local; do
  npz_seed "$root/tests/fixtures/numpy_$f.npz" "numpy_$f.npz" "$every"
done
indexed=$root/tests/fixtures/indexed_small_chunks.npz
npz_seed "$indexed" indexed_small_chunks.npz '\005\144\000\000\000\372\000\000\000'
npz_seed "$indexed" indexed_bad_range.npz '\277\005\000\000\000\003\000\000\000'

# a tiny data set: 2 BSs, 2 antennas, 3 UEs, 2 samples; one with outage
"$assoc" gen --samples 2 --bs 2 --antennas 2 --ues 3 --seed 1 --out "$corpus/dataset/small.npz" --quiet
"$assoc" gen --samples 1 --bs 1 --antennas 1 --ues 1 --seed 2 --outage \
  --out "$corpus/dataset/outage.npz" --quiet
npz_seed "$corpus/dataset/small.npz" dataset.npz "$every"
# the same data set stored (numpy.savez): its values are plain bytes that
# the fuzzer can change (zip_crc_mutator.c keeps the CRCs right)
/usr/bin/python3 -c 'import sys, numpy as np; np.savez(sys.argv[2], **np.load(sys.argv[1]))' \
  "$corpus/dataset/small.npz" "$corpus/dataset/stored.npz"
data=$corpus/dataset/small.npz

# tiny checkpoints: a GNN (with Adam state), BFGNN (both heads), JointGNN (with its run)
tiny="--d 2 --h 2 --L 1 --batch 2 --batches-per-epoch 1 --epochs 1 --quiet"
"$assoc" train "$data" --model gs $tiny --out "$corpus/checkpoint/gs.npz" >/dev/null
"$assoc" train "$data" --model attskgs $tiny --out "$corpus/checkpoint/attskgs.npz" >/dev/null
"$assoc" train "$data" --model bfgnn $tiny --out "$corpus/beam_checkpoint/bfgnn.npz" >/dev/null
"$assoc" train "$data" --model bfgnn --head duality $tiny \
  --out "$corpus/beam_checkpoint/bfgnn_duality.npz" >/dev/null
"$assoc" train "$data" --model jointgnn $tiny --out "$corpus/beam_checkpoint/jointgnn.npz" >/dev/null

# argument lists, one argument per line (argv[0] "assoc" is implied)
args() { name=$1; shift; printf '%s\n' "$@" >"$corpus/assoc_cli/$name"; }
args gen gen --samples 10 --out d.npz --seed 3 --bs 2 --antennas 4 --ues 8 --outage --quiet
args baselines baselines d.npz --json --out b.npz --methods es,maxsinr --limit 5
args beams beams d.npz b.npz --assoc-key ES --method zf --out beams.npz
args info info d.npz
args train train d.npz --model attskgs --epochs 2 --d 8 --h 16 --batch 4 --out c.npz --lr-max 1e-3
args train_jointgnn train d.npz --model jointgnn --epochs 1 --out j.npz --penalty-after 1
args train_bfgnn train d.npz --model bfgnn --head duality --epochs 1 --out bf.npz --dtype float64
args eval eval c.npz d.npz --json --batch 16 --draws 2
args ablation ablation --quick --seeds 2 --out abl --models attskgs,gs
args params params --d 8 --h 16 --layers 1 --antennas 2
args diagnose diagnose c.npz d.npz --samples 10 --batch 4 --json
args help --help
echo "corpus: $(find "$corpus" -type f | wc -l) files in $corpus"
