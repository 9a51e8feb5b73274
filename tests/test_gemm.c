/* The GEMM kernels (CBLAS path, the reference kernel threaded and serial) against a naive triple
 * loop, alpha and beta, and determinism across thread counts. */
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "matmul_helpers.h"
#include "sg_config.h"
#include "sg_gemm.h"
#include "sg_test.h"

/* ---- GEMM kernels against the naive loop -------------------------------- */

typedef void (*gemm_fn)(sg_dtype, bool, bool, int64_t, int64_t, int64_t, double, const void *,
                        int64_t, const void *, int64_t, double, void *, int64_t, void *);

/* Runs each of the nf kernels on C := alpha op(A) op(B) + beta C with C
 * starting as c0 (NaN when beta is 0: it must not be read) and checks every
 * element against the naive loop (computed once for all). C has a padded
 * leading dimension to catch stride mistakes. */
static void check_gemm_fns(const gemm_fn *fns, int nf, sg_dtype dt, bool ta, bool tb, int64_t m,
                           int64_t n, int64_t k, double alpha, double beta, sg_rng *r) {
  int64_t as[2] = {ta ? k : m, ta ? m : k}, bs[2] = {tb ? n : k, tb ? k : n};
  int64_t ldc = n + 3, cs[2] = {m, ldc};
  sg_tensor *a = sg_rand_uniform(NULL, r, dt, 2, as, -1, 1);
  sg_tensor *b = sg_rand_uniform(NULL, r, dt, 2, bs, -1, 1);
  sg_tensor *c0 = sg_rand_uniform(NULL, r, dt, 2, cs, -1, 1);
  double *want = malloc((size_t)(m * n) * sizeof *want),
         *abs = malloc((size_t)(m * n) * sizeof *abs);
  naive_gemm(a, 0, as[1], ta, b, 0, bs[1], tb, m, n, k, want, abs);
  for (int f = 0; f < nf; f++) {
    sg_tensor *c = sg_clone(NULL, c0);
    if (beta == 0)
      for (int64_t i = 0; i < c->numel; i++) sg_set(c, i, NAN);
    fns[f](dt, ta, tb, m, n, k, alpha, a->data, as[1], b->data, bs[1], beta, c->data, ldc, NULL);
    for (int64_t i = 0; i < m; i++) {
      for (int64_t j = 0; j < ldc; j++) {
        double got = sg_get(c, i * ldc + j);
        if (j >= n) { /* padding untouched */
          if (!(beta == 0 ? isnan(got) : got == sg_get(c0, i * ldc + j)))
            ck_abort_msg("padding written at (%lld, %lld)", (long long)i, (long long)j);
          continue;
        }
        double exp = alpha * want[i * n + j] + (beta == 0 ? 0 : beta * sg_get(c0, i * ldc + j));
        double tol = dot_tol(dt, k, fabs(alpha) * abs[i * n + j] + fabs(beta)) * 2;
        if (!(fabs(got - exp) <= tol)) /* Check logs every assert it runs: slow per element */
          ck_abort_msg(
              "kernel %d %s ta=%d tb=%d m=%lld n=%lld k=%lld alpha=%g beta=%g: C(%lld,%lld) "
              "= %.17g, want %.17g (tol %.3g)",
              f, sg_dtype_name(dt), ta, tb, (long long)m, (long long)n, (long long)k, alpha, beta,
              (long long)i, (long long)j, got, exp, tol);
      }
    }
    sg_free(c);
  }
  free(want);
  free(abs);
  sg_free(a);
  sg_free(b);
  sg_free(c0);
}

static const int64_t awkward[] = {1, 7, 33, 130};

static void check_kernel_all_sizes(gemm_fn f) {
  sg_rng r;
  sg_rng_seed(&r, 17);
  for (int dt = 0; dt < 2; dt++)
    for (int t = 0; t < 4; t++)
      for (int im = 0; im < 4; im++)
        for (int in = 0; in < 4; in++)
          for (int ik = 0; ik < 4; ik++)
            check_gemm_fns(&f, 1, (sg_dtype)dt, t & 1, t >> 1, awkward[im], awkward[in],
                           awkward[ik], 1, 0, &r);
}

/* sg_gemm_pair on the same product twice, into C and a copy of it: the
 * two must come out bitwise equal, and check_gemm checks C. */
static void gemm_pair_twice(sg_dtype dt, bool ta, bool tb, int64_t m, int64_t n, int64_t k,
                            double alpha, const void *a, int64_t lda, const void *b, int64_t ldb,
                            double beta, void *c, int64_t ldc, void *scratch) {
  size_t bytes = (size_t)(m * ldc) * sg_dtype_size(dt);
  void *c2 = malloc(bytes);
  memcpy(c2, c, bytes);
  sg_gemm_args p = {dt, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, scratch};
  sg_gemm_args q = p;
  q.c = c2;
  q.scratch = NULL;
  sg_gemm_pair(&p, &q);
  ck_assert_msg(memcmp(c, c2, bytes) == 0, "the pair's products differ (%lldx%lldx%lld)",
                (long long)m, (long long)n, (long long)k);
  free(c2);
}

START_TEST(gemm_blas_vs_naive) {
  check_kernel_all_sizes(sg_gemm);
}
END_TEST
START_TEST(gemm_reference_vs_naive) {
  check_kernel_all_sizes(sg_gemm_reference);
}
END_TEST
START_TEST(gemm_serial_vs_naive) {
  check_kernel_all_sizes(sg_gemm_serial);
}
END_TEST
START_TEST(gemm_pair_vs_naive) {
  check_kernel_all_sizes(gemm_pair_twice);
}
END_TEST

/* alpha and beta (accumulating into C), k deeper than one cache block, and
 * k = 0 (C := beta C). */
START_TEST(gemm_alpha_beta) {
  sg_rng r;
  sg_rng_seed(&r, 19);
  const gemm_fn fns[] = {sg_gemm, sg_gemm_reference, sg_gemm_serial, gemm_pair_twice};
  for (int dt = 0; dt < 2; dt++)
    for (int t = 0; t < 4; t++) {
      check_gemm_fns(fns, 4, (sg_dtype)dt, t & 1, t >> 1, 33, 7, 130, -0.5, 1, &r);
      check_gemm_fns(fns, 4, (sg_dtype)dt, t & 1, t >> 1, 70, 40, 600, 2, 0.25, &r);
      check_gemm_fns(fns, 4, (sg_dtype)dt, t & 1, t >> 1, 3, 70, 45, 0.5, -2, &r); /* few rows */
      check_gemm_fns(fns, 4, (sg_dtype)dt, t & 1, t >> 1, 2, 37, 70, 0.5, -2, &r); /* 2 x 8 tiles */
      /* small m, deep k: dot-product tiles with row, column and k tails */
      check_gemm_fns(fns, 4, (sg_dtype)dt, t & 1, t >> 1, 19, 38, 141, 0.5, -2, &r);
      /* one product per thread in a pair */
      check_gemm_fns(fns, 4, (sg_dtype)dt, t & 1, t >> 1, 300, 64, 96, 0.5, -2, &r);
      /* many rows times a small B^T: B^T copied (A B^T only) */
      check_gemm_fns(fns, 4, (sg_dtype)dt, t & 1, t >> 1, 1100, 96, 64, 0.5, -2, &r);
      /* small C, deep odd k: A^T B in two halves of k (split-k) */
      check_gemm_fns(fns, 4, (sg_dtype)dt, t & 1, t >> 1, 150, 130, 2101, 0.5, -2, &r);
      /* short k: threaded rows; columns in two chunks */
      check_gemm_fns(fns, 4, (sg_dtype)dt, t & 1, t >> 1, 1100, 130, 8, 0.5, -2, &r);
      check_gemm_fns(fns, 4, (sg_dtype)dt, t & 1, t >> 1, 33, 600, 1, 2, 0.25, &r);
      check_gemm_fns(fns, 4, (sg_dtype)dt, t & 1, t >> 1, 5, 9, 0, 1, 0.5, &r);
      check_gemm_fns(fns, 4, (sg_dtype)dt, t & 1, t >> 1, 5, 9, 0, 1, 0, &r);
    }
}
END_TEST

/* The provider and the reference kernel agree on random matrices of awkward
 * sizes, directly (not only each against the naive loop). */
START_TEST(gemm_blas_vs_reference) {
  sg_rng r;
  sg_rng_seed(&r, 23);
  for (int dt = 0; dt < 2; dt++)
    for (int t = 0; t < 4; t++)
      for (int im = 0; im < 4; im++)
        for (int ik = 0; ik < 4; ik++) {
          bool ta = t & 1, tb = t >> 1;
          int64_t m = awkward[im], n = awkward[3 - im], k = awkward[ik];
          int64_t as[2] = {ta ? k : m, ta ? m : k}, bs[2] = {tb ? n : k, tb ? k : n};
          sg_tensor *a = sg_rand_normal(NULL, &r, (sg_dtype)dt, 2, as, 0, 1);
          sg_tensor *b = sg_rand_normal(NULL, &r, (sg_dtype)dt, 2, bs, 0, 1);
          sg_tensor *c1 = sg_zeros(NULL, (sg_dtype)dt, 2, (int64_t[]){m, n});
          sg_tensor *c2 = sg_zeros(NULL, (sg_dtype)dt, 2, (int64_t[]){m, n});
          sg_gemm((sg_dtype)dt, ta, tb, m, n, k, 1, a->data, as[1], b->data, bs[1], 0, c1->data, n,
                  NULL);
          sg_gemm_reference((sg_dtype)dt, ta, tb, m, n, k, 1, a->data, as[1], b->data, bs[1], 0,
                            c2->data, n, NULL);
          double eps = dt == SG_F32 ? 1.2e-7 : 2.3e-16;
          for (int64_t i = 0; i < m * n; i++) {
            /* Both are within k*eps*sum|a b| of the truth; sum|a b| <= k*max. */
            double bound = 2 * (double)(k + 2) * eps * (double)k * 25;
            ck_assert_double_eq_tol(sg_get(c1, i), sg_get(c2, i), bound);
          }
          sg_free(a);
          sg_free(b);
          sg_free(c1);
          sg_free(c2);
        }
}
END_TEST

/* Bitwise the same result on 1 and 2 threads, for the reference kernel,
 * for whatever sg_gemm uses and for a pair, in every transpose combination.
 * The shapes include ones where BLIS's float kernels split differently per
 * thread. */
START_TEST(gemm_deterministic_across_threads) {
  sg_rng r;
  sg_rng_seed(&r, 29);
  int was = omp_get_max_threads();
  const gemm_fn fns[] = {sg_gemm, sg_gemm_reference, gemm_pair_twice};
  const int64_t shapes[][3] = {{301, 257, 613},  {89, 177, 171}, {40, 53, 372}, {210, 369, 20},
                               {3, 700, 500},    {1, 640, 224},  {1, 60, 504},  {300, 1, 200},
                               {30, 519, 301},   /* small m: threaded dot-product tiles */
                               {150, 130, 2101}, /* A^T B: split-k */
                               {1100, 600, 8},   /* short k: threaded, two column chunks */
                               {300, 64, 96},    /* one thread each in a pair */
                               {1100, 96, 64}};  /* A B^T: B^T copied */
  for (int f = 0; f < 3; f++)
    for (int dt = 0; dt < 2; dt++)
      for (int s = 0; s < (int)(sizeof shapes / sizeof shapes[0]); s++)
        for (int t = 0; t < 4; t++) {
          bool ta = t & 1, tb = t >> 1;
          int64_t m = shapes[s][0], n = shapes[s][1], k = shapes[s][2];
          int64_t as[2] = {ta ? k : m, ta ? m : k}, bs[2] = {tb ? n : k, tb ? k : n};
          sg_tensor *a = sg_rand_normal(NULL, &r, (sg_dtype)dt, 2, as, 0, 1);
          sg_tensor *b = sg_rand_normal(NULL, &r, (sg_dtype)dt, 2, bs, 0, 1);
          sg_tensor *c[2];
          for (int th = 0; th < 2; th++) {
            c[th] = sg_empty(NULL, (sg_dtype)dt, 2, (int64_t[]){m, n});
            with_threads(th + 1);
            fns[f]((sg_dtype)dt, ta, tb, m, n, k, 1, a->data, as[1], b->data, bs[1], 0, c[th]->data,
                   n, NULL);
          }
          with_threads(was);
          ck_assert_msg(
              memcmp(c[0]->data, c[1]->data, (size_t)(m * n) * sg_dtype_size((sg_dtype)dt)) == 0,
              "kernel %d %s ta=%d tb=%d %lldx%lldx%lld differs between 1 and 2 threads", f,
              sg_dtype_name((sg_dtype)dt), ta, tb, (long long)m, (long long)n, (long long)k);
          sg_free(a);
          sg_free(b);
          sg_free(c[0]);
          sg_free(c[1]);
        }
}
END_TEST

START_TEST(blas_name) {
  const char *name = sg_blas_name();
  ck_assert_str_eq(name, SG_BLAS_NAME);
  ck_assert(strcmp(name, "blis") == 0 || strcmp(name, "openblas") == 0 ||
            strcmp(name, "reference") == 0);
  ck_assert_int_eq(SG_HAVE_CBLAS, strcmp(name, "reference") != 0);
}
END_TEST

Suite *suite_gemm(void) {
  const sg_test_case cases[] = {
      {"gemm_blas_vs_naive", gemm_blas_vs_naive},
      {"gemm_reference_vs_naive", gemm_reference_vs_naive},
      {"gemm_serial_vs_naive", gemm_serial_vs_naive},
      {"gemm_pair_vs_naive", gemm_pair_vs_naive},
      {"gemm_alpha_beta", gemm_alpha_beta},
      {"gemm_blas_vs_reference", gemm_blas_vs_reference},
      {"gemm_deterministic_across_threads", gemm_deterministic_across_threads},
      {"blas_name", blas_name},
  };
  return sg_test_suite("gemm", cases, sizeof cases / sizeof cases[0], 120);
}
