/* Cost of summing a gradient buffer across MPI ranks (run under mpirun):
 *   mpi_allreduce --floats N [--reps R]
 * times assoc_dist_sum (the fixed-order ring of models/train/dist.c) and
 * MPI_Allreduce (the library's own order) on N float32 values, each call
 * started together (MPI_Barrier) and timed on the slowest rank; prints one
 * JSON object (rank 0) with the median and quartiles of each in ms. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "assoc_dist.h"

static int by_value(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* Seconds of each of reps calls of sum on buf (slowest rank), sorted. */
static void time_calls(int (*sum)(float *, int64_t), float *buf, int64_t n, int reps, double *t) {
  for (int r = 0; r < reps; r++) {
    for (int64_t i = 0; i < n; i++) buf[i] = (float)(i % 97) * 0.25f;
    MPI_Barrier(MPI_COMM_WORLD);
    double start = MPI_Wtime();
    if (sum(buf, n)) MPI_Abort(MPI_COMM_WORLD, 1);
    double mine = MPI_Wtime() - start;
    MPI_Allreduce(&mine, &t[r], 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
  }
  qsort(t, (size_t)reps, sizeof *t, by_value);
}

static int ring_sum(float *buf, int64_t n) {
  sg_io_error err;
  return assoc_dist_sum(buf, n, SG_F32, &err);
}

static int library_sum(float *buf, int64_t n) {
  return MPI_Allreduce(MPI_IN_PLACE, buf, (int)n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD) !=
         MPI_SUCCESS;
}

static void print_times(const char *name, const double *t, int reps, const char *sep) {
  printf("\"%s_ms\": {\"median\": %.4f, \"q1\": %.4f, \"q3\": %.4f}%s", name, 1e3 * t[reps / 2],
         1e3 * t[reps / 4], 1e3 * t[3 * reps / 4], sep);
}

int main(int argc, char **argv) {
  sg_io_error err;
  if (assoc_dist_init(&argc, &argv, &err)) return fprintf(stderr, "%s\n", err.msg), 1;
  int64_t n = 0;
  int reps = 20;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--floats")) n = atoll(argv[i + 1]);
    if (!strcmp(argv[i], "--reps")) reps = atoi(argv[i + 1]);
  }
  if (n < 1 || n > (1 << 30) || reps < 4) {
    fprintf(stderr, "usage: mpirun -np R mpi_allreduce --floats N [--reps R >= 4]\n");
    assoc_dist_finalize();
    return 2;
  }
  float *buf = malloc((size_t)n * sizeof *buf);
  double *ring = malloc((size_t)reps * sizeof *ring), *lib = malloc((size_t)reps * sizeof *lib);
  time_calls(ring_sum, buf, n, reps, ring);
  time_calls(library_sum, buf, n, reps, lib);
  if (assoc_dist_rank() == 0) {
    printf("{\"ranks\": %d, \"floats\": %lld, \"bytes\": %lld, \"reps\": %d, ", assoc_dist_size(),
           (long long)n, (long long)n * 4, reps);
    print_times("ring", ring, reps, ", ");
    print_times("mpi_allreduce", lib, reps, "}\n");
  }
  free(buf), free(ring), free(lib);
  assoc_dist_finalize();
  return 0;
}
