#!/bin/sh
# The layers only look down: every project #include "..." must name a
# header of the includer's own layer or of a layer below it, and no chain
# of includes may come back to where it started. Run from anywhere; exits 1
# listing every offending include.
#
#   layer (lowest first): tensor, autograd, ops, models/nn (and the models'
#   shared internal helpers), models/wireless,
#   models/assoc, models/beam and models/gnn, models/train and models/eval,
#   then examples, bench and tests (which may include anything below them).
set -eu
cd "$(dirname "$0")/.."

layer_of() {
  case "$1" in
  tensor/*) echo 0 ;;
  autograd/*) echo 1 ;;
  ops/*) echo 2 ;;
  models/nn/* | models/models_internal.*) echo 3 ;;
  models/wireless/*) echo 4 ;;
  models/assoc/* | models/beam/* | models/gnn/*) echo 5 ;;
  models/train/* | models/eval/*) echo 6 ;;
  models/*) echo 6 ;;
  examples/* | bench/*) echo 7 ;;
  tests/*) echo 8 ;;
  sinkgrad.h) echo 2 ;;
  *) echo 9 ;;
  esac
}

files=$(find sinkgrad.h tensor autograd ops models examples bench tests \
  \( -name '*.[ch]' -o -name '*.def' \) -not -path '*/fixtures/*' | sort)
edges=$(mktemp)
trap 'rm -f "$edges"' EXIT
status=0
for f in $files; do
  for inc in $(sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/p' "$f"); do
    base=${inc##*/}
    # generated in the build directory: sg_config.h (the build's settings),
    # sg_version.h (from tensor/sg_version.h.in)
    case "$base" in sg_config.h | sg_version.h) continue ;; esac
    target=$(printf '%s\n' $files | grep -E "(^|/)$base\$" | head -n 1 || true)
    if [ -z "$target" ]; then
      echo "$f: includes \"$inc\", which is not a file of the project" >&2
      status=1
      continue
    fi
    [ "$target" = "$f" ] && continue # a file that instantiates itself per type
    if [ "$(layer_of "$target")" -gt "$(layer_of "$f")" ]; then
      echo "$f: includes $target, a layer above it" >&2
      status=1
    fi
    echo "$f $target" >>"$edges"
  done
done

# Cycles: repeatedly drop the files that include nothing left or that
# nothing left includes; the includes that remain form the cycles.
cycle=$(awk '
  { out[$1]++; in_[$2]++; from[NR] = $1; to[NR] = $2; n = NR; node[$1]; node[$2] }
  END {
    do {
      changed = 0
      for (v in node) if (!(v in gone) && (out[v] + 0 == 0 || in_[v] + 0 == 0)) {
        gone[v] = 1; changed = 1
        for (i = 1; i <= n; i++)
          if (!(i in dead) && (to[i] == v || from[i] == v)) {
            dead[i] = 1; out[from[i]]--; in_[to[i]]--
          }
      }
    } while (changed)
    for (i = 1; i <= n; i++) if (!(i in dead)) print from[i] " -> " to[i]
  }' "$edges")
if [ -n "$cycle" ]; then
  echo "include cycle among:" >&2
  echo "$cycle" >&2
  status=1
fi
[ $status -eq 0 ] && echo "includes: $(wc -l <"$edges") checked, every one looks down, no cycle"
exit $status
