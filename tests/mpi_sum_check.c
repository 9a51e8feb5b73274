/* Run under mpirun: checks assoc_dist_sum against the order assoc_dist.h
 * promises, bit for bit, and assoc_dist_gather. Every rank can make every
 * rank's buffer (a function of rank and index), so each computes the
 * expected sums itself: segment j of n elements over R ranks is
 * ((x_j + x_{j+1}) + ...) + x_{j-1}. The values mix magnitudes so that
 * another order would give other bits. Exit 0 when everything matches on
 * this rank, 1 otherwise (with a message naming the rank and element). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "assoc_dist.h"

static double x(int rank, int64_t i) {
  return ldexp(1.0 + 0.1 * (double)((i * 7 + rank * 13) % 17), (int)((i + 5 * rank) % 40) - 20);
}

/* The rank whose ring starts element i's sum: the owner of its segment. */
static int segment_owner(int64_t n, int ranks, int64_t i) {
  for (int r = 0; r < ranks; r++) {
    int64_t lo, hi;
    assoc_dist_block(n, r, ranks, &lo, &hi);
    if (i >= lo && i < hi) return r;
  }
  return 0;
}

static double expected_f64(int64_t n, int ranks, int64_t i) {
  int j = segment_owner(n, ranks, i);
  double s = x(j, i);
  for (int k = 1; k < ranks; k++) s = s + x((j + k) % ranks, i);
  return s;
}

static float expected_f32(int64_t n, int ranks, int64_t i) {
  int j = segment_owner(n, ranks, i);
  float s = (float)x(j, i);
  for (int k = 1; k < ranks; k++) s = s + (float)x((j + k) % ranks, i);
  return s;
}

/* Sums of n elements in both dtypes; the count of wrong elements. */
static int check_sum(int64_t n, int rank, int ranks) {
  double *d = malloc((size_t)(n ? n : 1) * sizeof *d);
  float *f = malloc((size_t)(n ? n : 1) * sizeof *f);
  for (int64_t i = 0; i < n; i++) d[i] = x(rank, i), f[i] = (float)x(rank, i);
  sg_io_error err;
  int bad = 0;
  if (assoc_dist_sum(d, n, SG_F64, &err) || assoc_dist_sum(f, n, SG_F32, &err)) {
    fprintf(stderr, "rank %d: %s\n", rank, err.msg);
    bad = 1;
  }
  for (int64_t i = 0; i < n && !bad; i++) {
    double want = expected_f64(n, ranks, i);
    float want32 = expected_f32(n, ranks, i);
    if (memcmp(&d[i], &want, sizeof want) || memcmp(&f[i], &want32, sizeof want32)) {
      fprintf(stderr,
              "rank %d of %d, n %lld: element %lld is %.17g / %.9g, expected %.17g / %.9g\n", rank,
              ranks, (long long)n, (long long)i, d[i], f[i], want, want32);
      bad = 1;
    }
  }
  free(d), free(f);
  return bad;
}

/* Rank r gives r + 1 bytes of value r; rank 0 gets 0, 1, 1, 2, 2, 2, ... */
static int check_gather(int rank, int ranks) {
  unsigned char mine[64], all[64 * 65 / 2];
  memset(mine, rank, sizeof mine);
  sg_io_error err;
  if (assoc_dist_gather(mine, rank + 1, all, &err)) {
    fprintf(stderr, "rank %d: %s\n", rank, err.msg);
    return 1;
  }
  if (rank != 0) return 0;
  int at = 0;
  for (int r = 0; r < ranks; r++)
    for (int k = 0; k <= r; k++, at++)
      if (all[at] != r) {
        fprintf(stderr, "gather: byte %d is %d, expected %d\n", at, all[at], r);
        return 1;
      }
  return 0;
}

int main(int argc, char **argv) {
  sg_io_error err;
  if (assoc_dist_init(&argc, &argv, &err)) {
    fprintf(stderr, "mpi_sum_check: %s\n", err.msg);
    return 1;
  }
  int rank = assoc_dist_rank(), ranks = assoc_dist_size();
  if (ranks > 64) return fprintf(stderr, "mpi_sum_check: at most 64 ranks\n"), 1;
  int bad = 0;
  static const int64_t sizes[] = {0, 1, 3, 4, 5, 1000, 100003};
  for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++)
    bad |= check_sum(sizes[k], rank, ranks);
  bad |= check_gather(rank, ranks);
  if (rank == 0 && !bad) printf("mpi_sum_check: %d ranks: sums and gather as documented\n", ranks);
  assoc_dist_finalize();
  return bad;
}
