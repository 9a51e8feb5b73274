/* Time of opening an .npz archive: every member whole (sg_npz_open), or rows
 * [LO, HI) of the members named (sg_npz_open_rows), the rest whole. Threads
 * from OMP_NUM_THREADS; run it under /usr/bin/time -v for the peak RSS.
 *
 * Usage: npz_read FILE                      sg_npz_open
 *        npz_read FILE LO HI NAME...        sg_npz_open_rows
 *        npz_read FILE half K R NAME...     rows of block K of R equal blocks
 *                                           of the first NAME's rows
 * Prints the wall time, the members and the bytes held. */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sinkgrad.h"

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static double held_bytes(const sg_npz *z) {
  static const int sizes[] = {4, 8, 4, 8, 1, 1};
  double total = 0;
  for (int i = 0; i < sg_npz_count(z); i++) {
    const sg_array *a = sg_npz_get(z, sg_npz_name(z, i));
    if (a) total += (double)a->numel * sizes[a->type];
  }
  return total;
}

/* Rows [lo, hi) of block k of r equal blocks of the first named member. */
static int block_rows(const char *path, const char *name, int k, int r, int64_t *lo, int64_t *hi) {
  sg_io_error err;
  sg_npz *z = sg_npz_open_rows(path, &name, 1, 0, 0, &err);
  if (!z) return fprintf(stderr, "npz_read: %s\n", err.msg), -1;
  int64_t n = sg_npz_rows_total(z, name);
  sg_npz_close(z);
  *lo = n * k / r, *hi = n * (k + 1) / r;
  return 0;
}

int main(int argc, char **argv) {
  if (argc != 2 && argc < 5) {
    fprintf(stderr, "usage: npz_read FILE [LO HI NAME... | block K R NAME...]\n");
    return 2;
  }
  const char *path = argv[1];
  int64_t lo = 0, hi = 0;
  const char *const *names = NULL;
  int n_names = 0;
  if (argc >= 5 && strcmp(argv[2], "block") == 0) {
    if (argc < 6 || block_rows(path, argv[5], atoi(argv[3]), atoi(argv[4]), &lo, &hi)) return 1;
    names = (const char *const *)argv + 5, n_names = argc - 5;
  } else if (argc >= 5) {
    lo = atoll(argv[2]), hi = atoll(argv[3]);
    names = (const char *const *)argv + 4, n_names = argc - 4;
  }
  sg_io_error err;
  double t0 = now();
  sg_npz *z =
      n_names ? sg_npz_open_rows(path, names, n_names, lo, hi, &err) : sg_npz_open(path, &err);
  double t = now() - t0;
  if (!z) return fprintf(stderr, "npz_read: %s\n", err.msg), 1;
  printf("%s: %.2f s on %d threads, %d members, %.1f MB held",
         n_names ? "sg_npz_open_rows" : "sg_npz_open", t, omp_get_max_threads(), sg_npz_count(z),
         held_bytes(z) / 1e6);
  if (n_names) printf(", rows [%lld, %lld) of %d members", (long long)lo, (long long)hi, n_names);
  printf("\n");
  sg_npz_close(z);
  return 0;
}
