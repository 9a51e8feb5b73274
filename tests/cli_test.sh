#!/bin/sh
# End-to-end checks of the assoc command line: a small data set, the
# baselines table and JSON, the per-method .npz, and the refusals of bad
# arguments and bad files (clear message, non-zero status, no crash).
set -u
assoc="$1"
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
passed=0
failed=0
ok() { passed=$((passed + 1)); echo "ok: $1"; }
bad() { failed=$((failed + 1)); echo "FAIL: $1"; }
expect_fail() { # name, pattern the message must contain, command...
  name=$1 pattern=$2
  shift 2
  "$@" >"$dir/out" 2>"$dir/err"
  status=$?
  if [ $status -ne 0 ] && [ $status -lt 128 ] && grep -qi -- "$pattern" "$dir/err"; then
    ok "$name"
  else
    bad "$name (status $status, stderr: $(head -c 300 "$dir/err"))"
  fi
}

"$assoc" gen --samples 40 --seed 3 --out "$dir/d.npz" --quiet && [ -s "$dir/d.npz" ] &&
  ok "gen writes a data set" || bad "gen writes a data set"
"$assoc" baselines "$dir/d.npz" >"$dir/table" 2>/dev/null && grep -q "LocalSearch" "$dir/table" &&
  ok "baselines prints a table" || bad "baselines prints a table"
"$assoc" baselines "$dir/d.npz" --json >"$dir/json" 2>/dev/null && grep -q '"ES"' "$dir/json" &&
  ok "baselines --json" || bad "baselines --json"
"$assoc" baselines "$dir/d.npz" --out "$dir/res.npz" >/dev/null 2>&1 && [ -s "$dir/res.npz" ] &&
  ok "baselines --out" || bad "baselines --out"

"$assoc" params --d 8 --h 16 >"$dir/params" 2>/dev/null && grep -q "AttSKGS-GNN" "$dir/params" &&
  grep -q "45.67" "$dir/params" && ok "params" || bad "params"
expect_fail "params with a bad width" "--d" "$assoc" params --d x
expect_fail "unknown command" "unknown" "$assoc" frobnicate
expect_fail "missing --samples" "samples" "$assoc" gen --out "$dir/x.npz"
expect_fail "non-numeric --samples" "samples" "$assoc" gen --samples ten --out "$dir/x.npz"
expect_fail "negative antennas" "antennas" "$assoc" gen --samples 3 --antennas -1 --out "$dir/x.npz"
expect_fail "missing data file" "nonexistent" "$assoc" baselines "$dir/nonexistent.npz"
head -c 1000 "$dir/d.npz" >"$dir/trunc.npz"
expect_fail "truncated data file" "trunc.npz" "$assoc" baselines "$dir/trunc.npz"
echo "not a zip" >"$dir/text.npz"
expect_fail "not an npz" "text.npz" "$assoc" baselines "$dir/text.npz"
# A failed write leaves an existing output untouched.
cp "$dir/res.npz" "$dir/keep.npz"
expect_fail "write into a missing directory" "no-such-dir" \
  "$assoc" gen --samples 3 --out "$dir/no-such-dir/x.npz" --quiet
cmp -s "$dir/res.npz" "$dir/keep.npz" && ok "existing file untouched" || bad "existing file untouched"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
