/* Peak arena memory of the capacity Sinkhorn backward: unrolled (keeps every
 * iterate) against implicit (keeps the output and one flag per column), at
 * 10, 100 and 1000 iterations, plus the time of one forward + backward.
 *
 * Batch 256, K = 8 users, M = 2 base stations, capacity 4, tol 0 (so every
 * iteration runs), inputs log_softmax of N(0, 1.5) logits. Peak memory is
 * sg_graph_arena_bytes after forward + backward on a fresh graph: what the
 * arena had to reserve. The arena grows in chunks of at least 1 MiB, and a
 * new chunk is never smaller than the one before it, so after a large saved
 * block the backward's small allocations reserve a second chunk as large:
 * the "forward only" column shows the arena before the backward, and
 * "saved" the bytes of the unrolled records (1 + K + M numbers per sample
 * and iteration after the first).
 *
 * Usage: sinkhorn_memory [f32|f64]   (default f32) */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "sinkgrad.h"

enum { BATCH = 256, K = 8, M = 2, REPEATS = 20 };
static const double CAP = 4.0;

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static sg_tensor *make_input(sg_dtype dt) {
  sg_rng r;
  sg_rng_seed(&r, 2024);
  double d[BATCH * K * M];
  for (int row = 0; row < BATCH * K; row++) {
    double a = 1.5 * sg_rng_normal(&r) + 0.8, b = 1.5 * sg_rng_normal(&r);
    double l = fmax(a, b) + log1p(exp(-fabs(a - b))); /* log_softmax over M = 2 */
    d[row * M] = a - l;
    d[row * M + 1] = b - l;
  }
  sg_tensor *x = sg_from_f64(NULL, dt, 3, (int64_t[]){BATCH, K, M}, d);
  sg_set_requires_grad(x, true);
  return x;
}

/* One forward + backward on graph g; returns the arena bytes afterwards
 * and, in *fwd_bytes, after the forward. */
static size_t step(sg_graph *g, sg_tensor *x, int iters, sg_sinkhorn_grad mode, size_t *fwd_bytes) {
  sg_graph_reset(g);
  sg_zero_grad(x);
  sg_tensor *y = sg_sinkhorn(g, x, 1.0, CAP, iters, 0.0, mode, NULL);
  *fwd_bytes = sg_graph_arena_bytes(g);
  sg_tensor *w = sg_ones(g, x->dtype, 3, x->shape);
  sg_backward_with(g, y, w);
  return sg_graph_arena_bytes(g);
}

typedef struct result {
  size_t fwd_bytes, bytes;
  double ms;
} result;

/* Peak bytes on a fresh graph, and the best time over REPEATS steps. */
static result measure(sg_tensor *x, int iters, sg_sinkhorn_grad mode) {
  result r;
  sg_graph *g = sg_graph_new();
  r.bytes = step(g, x, iters, mode, &r.fwd_bytes);
  double best = INFINITY;
  for (int i = 0; i < REPEATS; i++) {
    size_t ignored;
    double t0 = now();
    step(g, x, iters, mode, &ignored);
    best = fmin(best, now() - t0);
  }
  r.ms = 1e3 * best;
  sg_graph_free(g);
  return r;
}

static double mib(size_t bytes) {
  return (double)bytes / 1048576.0;
}

int main(int argc, char **argv) {
  sg_dtype dt = argc > 1 && strcmp(argv[1], "f64") == 0 ? SG_F64 : SG_F32;
  sg_tensor *x = make_input(dt);
  printf("capacity Sinkhorn, batch %d, K %d, M %d, cap %g, %s, tol 0\n", BATCH, K, M, CAP,
         sg_dtype_name(dt));
  printf("| iterations | unrolled: saved | forward only | peak | implicit: forward only | peak "
         "| unrolled fwd+bwd | implicit fwd+bwd |\n");
  printf("|---:|---:|---:|---:|---:|---:|---:|---:|\n");
  const int iters[] = {10, 100, 1000};
  for (int i = 0; i < 3; i++) {
    result u = measure(x, iters[i], SG_SINKHORN_UNROLLED);
    result m = measure(x, iters[i], SG_SINKHORN_IMPLICIT);
    size_t saved = (size_t)BATCH * (size_t)(iters[i] - 1) * (1 + K + M) * sg_dtype_size(dt);
    printf("| %d | %.2f MiB | %.2f MiB | %.2f MiB | %.2f MiB | %.2f MiB | %.3f ms | %.3f ms |\n",
           iters[i], mib(saved), mib(u.fwd_bytes), mib(u.bytes), mib(m.fwd_bytes), mib(m.bytes),
           u.ms, m.ms);
  }
  sg_free(x);
  return 0;
}
