#!/bin/sh
# assoc train out of memory: a mini-batch too large for the memory the
# process may have makes the graph's arena (or a tensor) fail to grow; the
# command ends with the library's "out of memory" report and its own
# message, a status of 1 (no abort, no crash), and writes no checkpoint.
# (Evaluation runs in chunks of bounded memory; its failure paths are walked
# allocation by allocation in the alloc_fail suite, through the trainer's
# test evaluation.) The memory limit: ulimit -v in a plain build; under
# AddressSanitizer (whose shadow memory needs a large address space) its
# own limit, max_allocation_size_mb with allocator_may_return_null.
#   oom_cli_test.sh ASSOC
set -u
assoc="$1"
. "$(dirname "$0")/test_lib.sh"

if nm -D "$assoc" 2>/dev/null | grep -q __asan_init ||
  ldd "$assoc" 2>/dev/null | grep -q libasan; then
  limited() {
    ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}max_allocation_size_mb=24:allocator_may_return_null=1" \
      "$@"
  }
  echo "limit: AddressSanitizer's max_allocation_size_mb=24"
else
  limited() { (ulimit -v 800000 && exec "$@"); }
  echo "limit: ulimit -v 800000 (KiB)"
fi

"$assoc" gen --samples 1024 --seed 2 --out "$dir/d.npz" --quiet || bad "assoc gen"
big="--model skgs --d 256 --h 512 --batch 1024 --batches-per-epoch 1 --epochs 1 --threads 1"
# shellcheck disable=SC2086 # $big is a list of options
expect_fail "train out of memory: status 1 and the report" "out of memory" \
  limited "$assoc" train "$dir/d.npz" $big --out "$dir/ck.npz" --quiet
[ "$status" -eq 1 ] && grep -q "assoc train:" "$dir/err" &&
  ok "train out of memory: the command's own message" ||
  bad "train out of memory: the command's own message (status $status: $(head -c 300 "$dir/err"))"
[ ! -e "$dir/ck.npz" ] && ok "train out of memory: no checkpoint" ||
  bad "train out of memory: a checkpoint was written"

finish
