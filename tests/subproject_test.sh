#!/bin/sh
# sinkgrad as a meson subproject: builds tests/subproject_consumer (with
# tests/install/consumer.c) in a scratch directory where
# subprojects/sinkgrad links to this tree and subprojects/sinkgrad.wrap
# (the README's, pointing at this tree; meson uses the directory that is
# there and fetches nothing) provides both dependency names, with
# --wrap-mode=forcefallback so
# that an installed sinkgrad is not used, runs the consumer, and checks that
# the subproject built the libraries alone (no examples, tests or benches).
# Builds the library from scratch: a few minutes on 2 cores. Used by .ci/run.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp "$root/tests/subproject_consumer/meson.build" "$root/tests/install/consumer.c" "$work/"
mkdir "$work/subprojects"
ln -s "$root" "$work/subprojects/sinkgrad"
cat >"$work/subprojects/sinkgrad.wrap" <<WRAP
[wrap-git]
url = file://$root
revision = HEAD

[provide]
dependency_names = sinkgrad, sinkgrad-assoc
WRAP
meson setup "$work/build" "$work" --wrap-mode=forcefallback >"$work/setup.log" 2>&1 ||
  { cat "$work/setup.log" >&2; exit 1; }
grep -h 'matrix products' "$work/setup.log" # the subproject's BLAS detection
ninja -C "$work/build" >"$work/ninja.log" 2>&1 || { cat "$work/ninja.log" >&2; exit 1; }
meson test -C "$work/build" --print-errorlogs --no-rebuild
status=0
for program in examples/assoc tests/sg_tests bench/bench_gnn; do
  if [ -e "$work/build/subprojects/sinkgrad/$program" ]; then
    echo "FAIL: the subproject built $program" >&2
    status=1
  fi
done
"$work/build/consumer"
[ $status -eq 0 ] && echo "subproject test: ok"
exit $status
