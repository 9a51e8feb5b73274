/* Lists the members of an .npz as read by sinkgrad's reader, one line each:
 *   NAME DTYPE SHAPE      e.g.  ES_assoc int32 (40, 8)
 * with NumPy's dtype names and shape spelling, so that tests/cli_test.sh
 * can check what the assoc commands write. Exit 1 (with a message) when the
 * file cannot be read. */
#include <stdio.h>

#include "sinkgrad.h"

static void print_member(const char *name, const sg_array *a) {
  printf("%s %s (", name, sg_npy_type_name(a->type));
  for (int d = 0; d < a->ndim; d++) printf("%s%lld", d ? ", " : "", (long long)a->shape[d]);
  printf("%s)\n", a->ndim == 1 ? "," : "");
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: npz_list FILE.npz\n");
    return 2;
  }
  sg_io_error err;
  sg_npz *z = sg_npz_open(argv[1], &err);
  if (!z) {
    fprintf(stderr, "npz_list: %s\n", err.msg);
    return 1;
  }
  for (int i = 0; i < sg_npz_count(z); i++) {
    const char *name = sg_npz_name(z, i);
    print_member(name, sg_npz_get(z, name));
  }
  sg_npz_close(z);
  return 0;
}
