/* The gemm mode of bench_gnn: the BLAS provider's sgemm GFLOP/s against
 * sg_linear on the same products, and the memory read bandwidth. */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>

#include "bench_gemm.h"
#include "sg_config.h"
#include "sinkgrad.h"

#if SG_HAVE_CBLAS
/* BLIS's headers are not -Wextra clean. */
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wunused-parameter"
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wtype-limits"
#include <cblas.h>
#if SG_BLAS_BLIS
#include <blis.h>
#endif
#pragma GCC diagnostic pop
#endif

static void die(const char *what) {
  fprintf(stderr, "bench_gnn: %s\n", what);
  exit(1);
}

#if SG_HAVE_CBLAS
/* Best of reps: GFLOP/s of the provider's C = A B^T (row-major, the Linear
 * layout) at m x n x k, called directly. */
static double gemm_gflops(int m, int n, int k, int reps) {
  float *a = malloc(sizeof(float) * (size_t)m * k), *b = malloc(sizeof(float) * (size_t)n * k);
  float *c = malloc(sizeof(float) * (size_t)m * n);
  if (!a || !b || !c) die("out of memory");
  for (size_t i = 0; i < (size_t)m * k; i++) a[i] = (float)(i % 7) * 0.1f;
  for (size_t i = 0; i < (size_t)n * k; i++) b[i] = (float)(i % 5) * 0.1f;
  double best = 1e30;
  for (int r = 0; r < reps; r++) {
    double t0 = omp_get_wtime();
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, k, 1.0f, a, k, b, k, 0.0f, c, n);
    double t = omp_get_wtime() - t0;
    if (t < best) best = t;
  }
  free(a), free(b), free(c);
  return 2.0 * m * n * k / best / 1e9;
}

static void set_provider_threads(int threads) {
#if SG_BLAS_BLIS
  bli_thread_set_num_threads(threads);
#else
  openblas_set_num_threads(threads);
#endif
}
#endif

/* The library's own path for the same product: sg_linear (which for BLIS
 * copies W^T first; see ops/gemm/route.c). */
static double linear_gflops(int m, int n, int k, int reps) {
  sg_graph *g = sg_graph_new();
  sg_set_grad_enabled(g, false);
  sg_rng rng;
  sg_rng_seed(&rng, 7);
  sg_tensor *x = sg_rand_uniform(NULL, &rng, SG_F32, 2, (int64_t[]){m, k}, -1, 1);
  sg_tensor *w = sg_rand_uniform(NULL, &rng, SG_F32, 2, (int64_t[]){n, k}, -1, 1);
  double best = 1e30;
  for (int r = 0; r < reps; r++) {
    sg_graph_reset(g);
    double t0 = omp_get_wtime();
    sg_linear(g, x, w, NULL);
    double t = omp_get_wtime() - t0;
    if (t < best) best = t;
  }
  sg_free(x), sg_free(w);
  sg_graph_free(g);
  return 2.0 * m * n * k / best / 1e9;
}

/* Best of reps: read bandwidth (GB/s) over a 512 MiB array, all threads. */
static double read_bandwidth(int reps) {
  size_t n = (size_t)128 << 20;
  float *a = malloc(n * sizeof *a);
  if (!a) die("out of memory");
#pragma omp parallel for schedule(static)
  for (size_t i = 0; i < n; i++) a[i] = (float)(i & 15);
  double best = 1e30, sink = 0;
  for (int r = 0; r < reps; r++) {
    double t0 = omp_get_wtime(), s = 0;
#pragma omp parallel for simd schedule(static) reduction(+ : s)
    for (size_t i = 0; i < n; i++) s += a[i];
    double t = omp_get_wtime() - t0;
    sink += s;
    if (t < best) best = t;
  }
  free(a);
  if (sink == 42) fprintf(stderr, " "); /* keep the sums alive */
  return (double)(n * sizeof(float)) / best / 1e9;
}

int bench_gemm_run(int threads) {
  static const int shapes[][3] = {{512, 1024, 1024}, {4096, 1024, 1024}, {2048, 2048, 2048}};
  printf("{\"side\": \"sinkgrad\", \"mode\": \"gemm\", \"blas\": \"%s\", \"threads\": %d, "
         "\"sgemm\": [",
         sg_blas_name(), threads);
  /* Best over rounds that alternate the shapes and the two paths, so that a
   * passing disturbance cannot decide one number alone. */
  double prov[3] = {0}, lin[3] = {0};
  for (int round = 0; round < 4; round++)
    for (int i = 0; i < 3; i++) {
      const int *s = shapes[i];
      lin[i] = fmax(lin[i], linear_gflops(s[0], s[1], s[2], 3));
#if SG_HAVE_CBLAS
      set_provider_threads(threads);
      prov[i] = fmax(prov[i], gemm_gflops(s[0], s[1], s[2], 3));
#else
      prov[i] = lin[i]; /* reference build: the in-tree kernel is the provider */
#endif
    }
  for (int i = 0; i < 3; i++) {
    const int *s = shapes[i];
    printf("%s{\"m\": %d, \"n\": %d, \"k\": %d, \"provider_gflops\": %.2f, "
           "\"sg_linear_gflops\": %.2f}",
           i ? ", " : "", s[0], s[1], s[2], prov[i], lin[i]);
  }
  printf("], \"read_gbps\": %.2f}\n", read_bandwidth(5));
  return 0;
}
