#!/bin/sh
# Installs a built tree into a scratch directory and uses it the way a
# program outside the tree does: `meson install --destdir`, then
# pkg-config (PKG_CONFIG_SYSROOT_DIR points it at the scratch copy), a plain
#   cc tests/install/consumer.c $(pkg-config --cflags --libs sinkgrad sinkgrad-assoc)
# run with LD_LIBRARY_PATH on the installed libraries, and the installed
# `assoc --help`. Also checks the sonames (libNAME.so.MAJOR), that no
# internal header is installed and that the libraries export exactly the
# functions and variables the installed headers declare.
#
#   tests/install_test.sh [BUILD_DIR]     (default: build; must be built)
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:-$root/build}" && pwd)
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
dest=$scratch/dest
status=0
fail() {
  echo "FAIL: $*" >&2
  status=1
}

meson install -C "$build" --destdir "$dest" --no-rebuild --quiet >"$scratch/install.log" 2>&1 ||
  { cat "$scratch/install.log" >&2; exit 1; }
pc=$(find "$dest" -name sinkgrad.pc)
[ -n "$pc" ] || { echo "FAIL: no sinkgrad.pc installed" >&2; exit 1; }
libdir=$(dirname "$(dirname "$pc")")
export PKG_CONFIG_PATH="$libdir/pkgconfig" PKG_CONFIG_SYSROOT_DIR="$dest"
incdir=$(find "$dest" -type d -path '*/include/sinkgrad')
bindir=$(dirname "$(find "$dest" -type f -name assoc)")
echo "installed: $(find "$dest" -type f | sed "s|^$dest||" | sort | tr '\n' ' ')"

# Headers: the public ones only.
internal=$(find "$incdir" -name '*internal*.h' -o -name 'solver_work.h' -o -name 'sg_config.h')
[ -z "$internal" ] || fail "internal headers installed: $internal"

# Sonames carry the major version.
version=$(pkg-config --modversion sinkgrad)
for lib in sinkgrad sinkgrad-assoc; do
  soname=$(readelf -d "$libdir/lib$lib.so" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
  [ "$soname" = "lib$lib.so.${version%%.*}" ] || fail "lib$lib.so: soname '$soname'"
done

# The out-of-tree program, built with pkg-config's flags alone.
flags=$(pkg-config --cflags --libs sinkgrad sinkgrad-assoc)
echo "pkg-config --cflags --libs sinkgrad sinkgrad-assoc: $flags"
# shellcheck disable=SC2086 # the flags are words
"${CC:-cc}" "$root/tests/install/consumer.c" $flags -o "$scratch/consumer" ||
  fail "the consumer does not build with pkg-config's flags"
if [ -x "$scratch/consumer" ]; then
  LD_LIBRARY_PATH="$libdir" "$scratch/consumer" >"$scratch/consumer.out" || fail "the consumer failed"
  cat "$scratch/consumer.out"
  grep -q "^sinkgrad $version " "$scratch/consumer.out" ||
    fail "sg_version() is not pkg-config's version $version"
fi

# The installed program starts.
if ! LD_LIBRARY_PATH="$libdir" "$bindir/assoc" --help >"$scratch/help.out" 2>&1 ||
  [ ! -s "$scratch/help.out" ]; then
  fail "installed assoc --help: $(head -c 300 "$scratch/help.out")"
fi

# Exports: every function an installed header declares (GCC's -aux-info
# lists them with the header they come from), and nothing else but the
# variables the headers declare extern.
for h in "$incdir"/*.h; do echo "#include <sinkgrad/${h##*/}>"; done >"$scratch/all.c"
cflags=$(pkg-config --cflags sinkgrad)
# shellcheck disable=SC2086
"${CC:-cc}" -std=c11 -fsyntax-only -aux-info "$scratch/protos" "$scratch/all.c" $cflags
grep -F "/* $incdir/" "$scratch/protos" | grep -v ' static ' |
  sed 's|^/\*[^*]*\*/ ||; s/ (.*//; s/.*[^A-Za-z0-9_]//' | sort -u >"$scratch/declared"
nm -D --defined-only "$libdir/libsinkgrad.so" "$libdir/libsinkgrad-assoc.so" |
  awk 'NF == 3 && $3 !~ /^\.gomp_critical_user_/ { print $3 }' | sort -u >"$scratch/exported"
missing=$(comm -23 "$scratch/declared" "$scratch/exported")
[ -z "$missing" ] || fail "declared in the headers but not exported: $missing"
for name in $(comm -13 "$scratch/declared" "$scratch/exported"); do
  grep -q "^extern .*[^A-Za-z0-9_]${name}[^A-Za-z0-9_]" "$incdir"/*.h ||
    fail "exported but declared in no installed header: $name"
done
echo "exports: $(wc -l <"$scratch/exported") symbols, $(wc -l <"$scratch/declared") declared functions"

[ $status -eq 0 ] && echo "install test: ok"
exit $status
