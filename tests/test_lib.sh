# Shared by the shell tests (cli_test.sh, ablation_test.sh, beams_test.sh):
# a scratch directory removed at exit, pass/fail counting, and a check that
# a command fails cleanly. Source it after `set -u`; end the script with
# `finish`.
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
passed=0
failed=0
ok() { passed=$((passed + 1)); echo "ok: $1"; }
bad() { failed=$((failed + 1)); echo "FAIL: $1"; }
check() { # name, command...
  name=$1
  shift
  if "$@"; then ok "$name"; else bad "$name"; fi
}
# The command fails with a status below 128 (no crash) and a message on
# stderr that contains the pattern.
expect_fail() { # name, pattern, command...
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
finish() {
  echo "$passed passed, $failed failed"
  [ "$failed" -eq 0 ]
}
