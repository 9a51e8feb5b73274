# Shared by the MPI tests (mpi_train_test.sh, mpi_beam_test.sh), sourced
# with $mpiexec set, after `set -eu`: a scratch directory $dir removed at
# exit, fail (message, exit 1), and ranks N CMD... (CMD on N ranks;
# oversubscribed under Open MPI: 4 ranks fit on 2 cores, one thread each).
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
# Open MPI refuses to start as root (CI runs as root) without these.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
oversubscribe=
if "$mpiexec" --version 2>&1 | grep -qi "open-\?mpi\|openrte"; then oversubscribe=--oversubscribe; fi

fail() {
  echo "FAIL: $*" >&2
  exit 1
}
ranks() {
  n=$1
  shift
  "$mpiexec" $oversubscribe -np "$n" "$@"
}
