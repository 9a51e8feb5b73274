#!/bin/sh
# What build-aux/deps.sh and build-aux/build.sh print, with stand-ins for
# dpkg-query, id, apt-get, meson and ninja on PATH (copies of the scripts
# run in a scratch tree, so nothing is installed or built): deps.sh says in
# one line what it installs and keeps apt's output (debconf,
# update-alternatives) in build-deps.log unless apt fails; build.sh says
# how many steps it builds, then ninja's progress thinned, the compiler's
# warnings, and ninja's failure as its own.
#   build_scripts_test.sh SOURCE_ROOT
set -u
root="$1"
. "$(dirname "$0")/test_lib.sh"
tree="$dir/tree" stubs="$dir/stubs"
mkdir -p "$tree/build-aux" "$stubs"
cp "$root/build-aux/deps.sh" "$root/build-aux/build.sh" "$tree/build-aux/"
stub() { # name, body
  printf '#!/bin/sh\n%s\n' "$2" >"$stubs/$1"
  chmod +x "$stubs/$1"
}
# Every package installed but "check" (unless ALL_INSTALLED is set).
stub dpkg-query '[ "$3" = check ] && [ -z "${ALL_INSTALLED:-}" ] && exit 1; echo "install ok installed"'
stub id 'echo 0'
stub apt-get 'echo "debconf: delaying package configuration, since apt-utils is not installed" >&2
echo "update-alternatives: using /usr/bin/x to provide /usr/bin/y"
exit "${APT_STATUS:-0}"'
stub meson 'mkdir -p build && touch build/build.ninja'
stub ninja 'if [ "$3" = -n ]; then
  for k in 1 2 3 4 5 6 7 8 9 10 11 12; do echo "[$k/12] Compiling C object x$k.o"; done
  exit 0
fi
echo "ninja: Entering directory '"'"'build'"'"'"
for k in 1 2 3 4 5 6 7 8 9 10 11 12; do
  echo "[$k/12] Compiling C object x$k.o"
  [ $k = 5 ] && echo "../x5.c:3:1: warning: unused variable" >&2
done
exit "${NINJA_EXIT:-0}"'
run() { # output file, script, environment...
  out=$1 script=$2
  shift 2
  env PATH="$stubs:$PATH" "$@" sh "$tree/build-aux/$script" >"$dir/$out" 2>&1
}

run deps.out deps.sh
status=$?
check "deps.sh: installs and succeeds (status $status)" test $status -eq 0
check "deps.sh: one line, naming the package ($(head -c 200 "$dir/deps.out"))" \
  test "$(cat "$dir/deps.out")" = "sinkgrad: installing Debian packages: check (apt log: build-deps.log)"
check "deps.sh: apt's output in build-deps.log" grep -q debconf "$tree/build-deps.log"
run deps-fail.out deps.sh APT_STATUS=100
status=$?
check "deps.sh: apt's failure is its failure (status $status)" test $status -ne 0
check "deps.sh: apt's output shown when it fails" \
  sh -c "grep -q 'debconf: delaying' '$dir/deps-fail.out' && grep -q 'failed' '$dir/deps-fail.out'"

run build.out build.sh ALL_INSTALLED=1
status=$?
check "build.sh: succeeds (status $status)" test $status -eq 0
check "build.sh: configures once with a note" grep -q '^sinkgrad: configuring' "$dir/build.out"
check "build.sh: says how many steps it builds" \
  grep -qx 'sinkgrad: building (up to 12 steps)\.\.\.' "$dir/build.out"
check "build.sh: progress, thinned ($(grep -c '^  \[' "$dir/build.out") lines)" \
  sh -c "grep -qx '  \[12/12\]' '$dir/build.out' && grep -qx '  \[6/12\]' '$dir/build.out' &&
    ! grep -q 'Compiling' '$dir/build.out' && [ \$(grep -c '^  \[' '$dir/build.out') -le 12 ]"
check "build.sh: compiler warnings shown" grep -q 'warning: unused variable' "$dir/build.out"
check "build.sh: no ninja chatter" sh -c "! grep -q 'Entering directory' '$dir/build.out'"
run build-again.out build.sh ALL_INSTALLED=1
check "build.sh: no second configure" sh -c "! grep -q configuring '$dir/build-again.out'"
run build-fail.out build.sh ALL_INSTALLED=1 NINJA_EXIT=1
status=$?
check "build.sh: ninja's failure is its failure (status $status)" test $status -ne 0
finish
