/* Matrix products: the GEMM kernels (CBLAS path, the reference kernel
 * threaded and serial) against a naive triple loop, batched and broadcast matmul in all
 * transpose combinations, linear, float64 gradient checks, determinism
 * across thread counts, and misuse reports. */
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "sg_config.h"
#include "sg_gemm.h"
#include "sg_test.h"

/* ---- naive reference ---------------------------------------------------- */

/* Element (i, j) of op(X) for a stored rows x cols row-major matrix. */
static double op_at(const sg_tensor *x, int64_t off, int64_t ld, bool trans, int64_t i, int64_t j) {
  return sg_get(x, off + (trans ? j * ld + i : i * ld + j));
}

/* C = op(A) op(B) on single matrices (at the given element offsets), in
 * long double; abs gets sum_p |a_ip b_pj| for error bounds. */
static void naive_gemm(const sg_tensor *a, int64_t aoff, int64_t lda, bool ta, const sg_tensor *b,
                       int64_t boff, int64_t ldb, bool tb, int64_t m, int64_t n, int64_t k,
                       double *c, double *abs) {
  for (int64_t i = 0; i < m; i++)
    for (int64_t j = 0; j < n; j++) {
      long double s = 0, sa = 0;
      for (int64_t p = 0; p < k; p++) {
        long double v = (long double)op_at(a, aoff, lda, ta, i, p) * op_at(b, boff, ldb, tb, p, j);
        s += v;
        sa += fabsl(v);
      }
      c[i * n + j] = (double)s;
      if (abs) abs[i * n + j] = (double)sa;
    }
}

/* Round-off bound of a k-term dot product in type dt: k * epsilon * sum |terms|
 * (FMA or not, any summation order), plus the operands' own rounding. */
static double dot_tol(sg_dtype dt, int64_t k, double abs_sum) {
  double eps = dt == SG_F32 ? 1.2e-7 : 2.3e-16;
  return (double)(k + 2) * eps * abs_sum + 1e-300;
}

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

static void with_threads(int n) {
  omp_set_num_threads(n);
}

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

/* ---- matmul forward ----------------------------------------------------- */

typedef struct mm_case {
  int na, nb;
  int64_t a[4], b[4]; /* stored shapes (already transposed where trans) */
} mm_case;

/* Untransposed shapes; the transposed variants swap the last two dims.
 * Covers 2-D, equal batches, broadcast batch dims on either side, a 2-D
 * operand against a batched one (both ways) and size-1 matrix dims. */
static const mm_case mm_cases[] = {
    {2, 2, {3, 4}, {4, 5}},
    {3, 3, {2, 3, 4}, {2, 4, 5}},
    {4, 3, {2, 1, 3, 4}, {3, 4, 2}},
    {2, 3, {3, 4}, {2, 4, 5}},
    {3, 2, {2, 3, 4}, {4, 5}},
    {3, 3, {1, 1, 4}, {3, 4, 1}},
    {4, 4, {2, 1, 2, 3}, {1, 3, 3, 2}},
};
enum { N_MM = sizeof mm_cases / sizeof mm_cases[0] };

static void stored_shape(int nd, const int64_t *shape, bool trans, int64_t *out) {
  memcpy(out, shape, (size_t)nd * sizeof *out);
  if (trans) {
    out[nd - 2] = shape[nd - 1];
    out[nd - 1] = shape[nd - 2];
  }
}

typedef struct mm_call {
  bool ta, tb;
} mm_call;

static sg_tensor *apply_matmul(sg_graph *g, sg_tensor *const *in, int n, void *ctx) {
  (void)n;
  const mm_call *c = ctx;
  return sg_matmul(g, in[0], in[1], c->ta, c->tb);
}

/* Element offsets of batch t's matrices in a and b, broadcast against the
 * batch dims of out (NumPy rules: missing or size-1 dims repeat). */
static void batch_offsets(const sg_tensor *a, const sg_tensor *b, const sg_tensor *out, int64_t t,
                          int64_t *aoff, int64_t *boff) {
  int bnd = out->ndim - 2;
  int64_t astr = a->shape[a->ndim - 1] * a->shape[a->ndim - 2],
          bstr = b->shape[b->ndim - 1] * b->shape[b->ndim - 2];
  *aoff = *boff = 0;
  for (int d = bnd - 1; d >= 0; d--) {
    int64_t idx = t % out->shape[d];
    t /= out->shape[d];
    int da = d - (bnd - (a->ndim - 2)), db = d - (bnd - (b->ndim - 2));
    int64_t sa = da >= 0 ? a->shape[da] : 1, sb = db >= 0 ? b->shape[db] : 1;
    if (sa > 1) *aoff += idx * astr;
    if (sb > 1) *boff += idx * bstr;
    astr *= sa;
    bstr *= sb;
  }
}

/* Checks out = op(a) op(b) with broadcast batches against the naive loop. */
static void check_matmul_forward(const sg_tensor *a, const sg_tensor *b, bool ta, bool tb,
                                 const sg_tensor *out) {
  int64_t m = out->shape[out->ndim - 2], n = out->shape[out->ndim - 1];
  int64_t k = ta ? a->shape[a->ndim - 2] : a->shape[a->ndim - 1];
  int64_t nb = out->numel / (m * n > 0 ? m * n : 1);
  double *want = malloc((size_t)(m * n) * sizeof *want),
         *abs = malloc((size_t)(m * n) * sizeof *abs);
  for (int64_t t = 0; t < nb; t++) {
    int64_t aoff, boff;
    batch_offsets(a, b, out, t, &aoff, &boff);
    naive_gemm(a, aoff, a->shape[a->ndim - 1], ta, b, boff, b->shape[b->ndim - 1], tb, m, n, k,
               want, abs);
    for (int64_t i = 0; i < m * n; i++)
      ck_assert_msg(fabs(sg_get(out, t * m * n + i) - want[i]) <= dot_tol(out->dtype, k, abs[i]),
                    "batch %lld element %lld: %.17g want %.17g", (long long)t, (long long)i,
                    sg_get(out, t * m * n + i), want[i]);
  }
  free(want);
  free(abs);
}

START_TEST(matmul_forward_vs_naive) {
  sg_graph *g = sg_graph_new();
  sg_rng r;
  sg_rng_seed(&r, 31);
  for (int dt = 0; dt < 2; dt++)
    for (int i = 0; i < N_MM; i++)
      for (int t = 0; t < 4; t++) {
        bool ta = t & 1, tb = t >> 1;
        int64_t as[4], bs[4];
        stored_shape(mm_cases[i].na, mm_cases[i].a, ta, as);
        stored_shape(mm_cases[i].nb, mm_cases[i].b, tb, bs);
        sg_tensor *a = sg_rand_uniform(g, &r, (sg_dtype)dt, mm_cases[i].na, as, -1, 1);
        sg_tensor *b = sg_rand_uniform(g, &r, (sg_dtype)dt, mm_cases[i].nb, bs, -1, 1);
        sg_tensor *c = sg_matmul(g, a, b, ta, tb);
        ck_assert_ptr_nonnull(c);
        ck_assert_int_eq(c->dtype, dt);
        check_matmul_forward(a, b, ta, tb, c);
      }
  sg_graph_free(g);
}
END_TEST

/* Batches large enough for the threaded GEMM per batch and for the
 * parallel small-matrix path, with broadcasting. */
START_TEST(matmul_forward_large_batches) {
  sg_graph *g = sg_graph_new();
  sg_rng r;
  sg_rng_seed(&r, 37);
  const mm_case big[] = {
      {3, 3, {40, 8, 6}, {40, 6, 9}},      /* many tiny: parallel small kernel */
      {3, 2, {3, 50, 70}, {70, 45}},       /* folded into one GEMM */
      {4, 3, {2, 1, 45, 60}, {3, 60, 50}}, /* broadcast: one GEMM per batch */
  };
  for (int dt = 0; dt < 2; dt++)
    for (int i = 0; i < 3; i++)
      for (int t = 0; t < 4; t++) {
        bool ta = t & 1, tb = t >> 1;
        int64_t as[4], bs[4];
        stored_shape(big[i].na, big[i].a, ta, as);
        stored_shape(big[i].nb, big[i].b, tb, bs);
        sg_tensor *a = sg_rand_uniform(g, &r, (sg_dtype)dt, big[i].na, as, -1, 1);
        sg_tensor *b = sg_rand_uniform(g, &r, (sg_dtype)dt, big[i].nb, bs, -1, 1);
        check_matmul_forward(a, b, ta, tb, sg_matmul(g, a, b, ta, tb));
      }
  sg_graph_free(g);
}
END_TEST

START_TEST(matmul_shapes) {
  sg_graph *g = sg_graph_new();
  sg_tensor *a = sg_zeros(g, SG_F32, 4, (int64_t[]){2, 1, 3, 4});
  sg_tensor *b = sg_zeros(g, SG_F32, 3, (int64_t[]){5, 4, 6});
  sg_tensor *c = sg_matmul(g, a, b, false, false);
  const int64_t want[] = {2, 5, 3, 6};
  ck_assert_int_eq(c->ndim, 4);
  for (int d = 0; d < 4; d++) ck_assert_int_eq(c->shape[d], want[d]);
  /* op(a) = a^T is [2, 1, 4, 3]; op(b) = b^T is [3, 7]. */
  sg_tensor *ct = sg_matmul(g, a, sg_zeros(g, SG_F32, 2, (int64_t[]){7, 3}), true, true);
  const int64_t want_t[] = {2, 1, 4, 7};
  ck_assert_int_eq(ct->ndim, 4);
  for (int d = 0; d < 4; d++) ck_assert_int_eq(ct->shape[d], want_t[d]);
  /* k = 0 gives zeros. */
  sg_tensor *e = sg_matmul(g, sg_zeros(g, SG_F64, 2, (int64_t[]){3, 0}),
                           sg_zeros(g, SG_F64, 2, (int64_t[]){0, 2}), false, false);
  ck_assert_int_eq(e->numel, 6);
  for (int i = 0; i < 6; i++) ck_assert_double_eq(sg_get(e, i), 0);
  sg_graph_free(g);
}
END_TEST

/* float32 products stay within float32 round-off of float64 ones. */
START_TEST(matmul_f32_vs_f64) {
  sg_rng r;
  sg_rng_seed(&r, 41);
  for (int i = 0; i < N_MM; i++)
    for (int t = 0; t < 4; t++) {
      mm_call c = {t & 1, t >> 1};
      int64_t as[4], bs[4];
      stored_shape(mm_cases[i].na, mm_cases[i].a, c.ta, as);
      stored_shape(mm_cases[i].nb, mm_cases[i].b, c.tb, bs);
      sg_tensor *in[2] = {sg_rand_uniform(NULL, &r, SG_F64, mm_cases[i].na, as, -1, 1),
                          sg_rand_uniform(NULL, &r, SG_F64, mm_cases[i].nb, bs, -1, 1)};
      SG_ASSERT_CHECK(sg_check_f32_forward(apply_matmul, in, 2, &c, 1e-6, 1e-6));
      sg_free(in[0]);
      sg_free(in[1]);
    }
}
END_TEST

/* ---- gradients ---------------------------------------------------------- */

START_TEST(gradcheck_matmul) {
  sg_rng r;
  sg_rng_seed(&r, 43);
  for (int i = 0; i < N_MM; i++)
    for (int t = 0; t < 4; t++) {
      mm_call c = {t & 1, t >> 1};
      int64_t as[4], bs[4];
      stored_shape(mm_cases[i].na, mm_cases[i].a, c.ta, as);
      stored_shape(mm_cases[i].nb, mm_cases[i].b, c.tb, bs);
      sg_tensor *in[2] = {sg_rand_uniform(NULL, &r, SG_F64, mm_cases[i].na, as, -1, 1),
                          sg_rand_uniform(NULL, &r, SG_F64, mm_cases[i].nb, bs, -1, 1)};
      sg_set_requires_grad(in[0], true);
      sg_set_requires_grad(in[1], true);
      SG_ASSERT_CHECK(sg_gradcheck(apply_matmul, in, 2, &c, NULL));
      /* Only one side requiring a gradient. */
      sg_set_requires_grad(in[0], false);
      SG_ASSERT_CHECK(sg_gradcheck(apply_matmul, in, 2, &c, NULL));
      sg_free(in[0]);
      sg_free(in[1]);
    }
}
END_TEST

/* Larger products (threaded GEMM, folded and per-batch loops in the
 * backward) checked along random directions. */
START_TEST(gradcheck_matmul_large) {
  sg_rng r;
  sg_rng_seed(&r, 47);
  const mm_case big[] = {
      {3, 2, {3, 40, 37}, {37, 35}},
      {2, 3, {40, 37}, {3, 37, 35}},
      {4, 3, {2, 1, 33, 40}, {3, 40, 36}},
  };
  sg_gradcheck_opts o = sg_gradcheck_defaults();
  o.projections = 8;
  for (int i = 0; i < 3; i++)
    for (int t = 0; t < 4; t++) {
      mm_call c = {t & 1, t >> 1};
      int64_t as[4], bs[4];
      stored_shape(big[i].na, big[i].a, c.ta, as);
      stored_shape(big[i].nb, big[i].b, c.tb, bs);
      sg_tensor *in[2] = {sg_rand_uniform(NULL, &r, SG_F64, big[i].na, as, -1, 1),
                          sg_rand_uniform(NULL, &r, SG_F64, big[i].nb, bs, -1, 1)};
      sg_set_requires_grad(in[0], true);
      sg_set_requires_grad(in[1], true);
      SG_ASSERT_CHECK(sg_gradcheck(apply_matmul, in, 2, &c, &o));
      sg_free(in[0]);
      sg_free(in[1]);
    }
}
END_TEST

static sg_tensor *apply_linear(sg_graph *g, sg_tensor *const *in, int n, void *ctx) {
  (void)ctx;
  return sg_linear(g, in[0], in[1], n > 2 ? in[2] : NULL);
}

/* One input shape of a Linear-like op and the first column of W it uses. */
typedef struct linear_case {
  int nd;
  int64_t x[3], col0;
} linear_case;

/* Gradient and float32-forward checks of a Linear-like op f(x, W[, b]),
 * W [w_out, w_in], over the cases, with and without bias; f's ctx points to
 * the case's col0 (ops on the whole W ignore it). */
static void check_linear_op(sg_check_fn f, uint64_t seed, int64_t w_out, int64_t w_in,
                            const linear_case *cases, int n_cases) {
  sg_rng r;
  sg_rng_seed(&r, seed);
  for (int i = 0; i < n_cases; i++)
    for (int bias = 0; bias < 2; bias++) {
      sg_tensor *in[3] = {sg_rand_uniform(NULL, &r, SG_F64, cases[i].nd, cases[i].x, -1, 1),
                          sg_rand_uniform(NULL, &r, SG_F64, 2, (int64_t[]){w_out, w_in}, -1, 1),
                          sg_rand_uniform(NULL, &r, SG_F64, 1, (int64_t[]){w_out}, -1, 1)};
      for (int j = 0; j < 3; j++) sg_set_requires_grad(in[j], true);
      int n = bias ? 3 : 2;
      int64_t col0 = cases[i].col0;
      SG_ASSERT_CHECK(sg_gradcheck(f, in, n, &col0, NULL));
      SG_ASSERT_CHECK(sg_check_f32_forward(f, in, n, &col0, 1e-6, 1e-6));
      for (int j = 0; j < 3; j++) sg_free(in[j]);
    }
}

/* x shapes of 1 to 3 dims (a size-1 axis among them) against all of W [5, 3]. */
static const linear_case whole_w_cases[] = {
    {2, {4, 3}, 0}, {3, {2, 3, 3}, 0}, {1, {3}, 0}, {3, {2, 1, 3}, 0}};

START_TEST(gradcheck_linear) {
  check_linear_op(apply_linear, 53, 5, 3, whole_w_cases, 4);
}
END_TEST

/* Sizes where the backward's two products (dx = go W, dW = go^T x) run as
 * a pair, one per thread. */
START_TEST(gradcheck_linear_paired) {
  const linear_case cases[] = {{2, {60, 40}, 0}};
  check_linear_op(apply_linear, 57, 24, 40, cases, 1);
}
END_TEST

static sg_tensor *apply_linear_self(sg_graph *g, sg_tensor *const *in, int n, void *ctx) {
  (void)ctx;
  return sg_linear(g, in[0], in[0], n > 1 ? in[1] : NULL);
}

/* x as its own weight: both products write x's gradient, the second adding
 * to the first, at a size that would otherwise pair them. */
START_TEST(gradcheck_linear_x_is_w) {
  sg_rng r;
  sg_rng_seed(&r, 58);
  for (int64_t n = 4; n <= 40; n *= 10) {
    sg_tensor *in[2] = {sg_rand_uniform(NULL, &r, SG_F64, 2, (int64_t[]){n, n}, -1, 1),
                        sg_rand_uniform(NULL, &r, SG_F64, 1, (int64_t[]){n}, -1, 1)};
    for (int j = 0; j < 2; j++) sg_set_requires_grad(in[j], true);
    SG_ASSERT_CHECK(sg_gradcheck(apply_linear_self, in, 2, NULL, NULL));
    for (int j = 0; j < 2; j++) sg_free(in[j]);
  }
}
END_TEST

static sg_tensor *apply_linear_relu(sg_graph *g, sg_tensor *const *in, int n, void *ctx) {
  (void)ctx;
  return sg_linear_relu(g, in[0], in[1], n > 2 ? in[2] : NULL);
}

START_TEST(gradcheck_linear_relu) {
  check_linear_op(apply_linear_relu, 54, 5, 3, whole_w_cases, 4);
}
END_TEST

/* got[j] equals want[j] for j < n, element by element, within tol
 * relative to 1 + |want|. */
static void assert_close_all(sg_tensor *const *got, sg_tensor *const *want, int n, double tol) {
  for (int j = 0; j < n; j++)
    for (int64_t i = 0; i < want[j]->numel; i++) {
      double w = sg_get(want[j], i);
      ck_assert_double_eq_tol(sg_get(got[j], i), w, tol * (1 + fabs(w)));
    }
}

/* sg_linear_relu equals sg_relu(sg_linear), forward and gradients (a
 * squared loss and a uniform one), in both dtypes, with and without bias,
 * for row counts on both sides of the small-m GEMM path; about half the
 * outputs are clamped. */
START_TEST(linear_relu_vs_unfused) {
  sg_rng r;
  sg_rng_seed(&r, 61);
  for (int dt = 0; dt < 2; dt++)
    for (int64_t rows = 3; rows <= 300; rows *= 10)
      for (int bias = 0; bias < 2; bias++)
        for (int squared = 0; squared < 2; squared++) {
          sg_graph *g = sg_graph_new();
          sg_tensor *x = sg_rand_normal(NULL, &r, (sg_dtype)dt, 2, (int64_t[]){rows, 70}, 0, 1);
          sg_tensor *w = sg_rand_normal(NULL, &r, (sg_dtype)dt, 2, (int64_t[]){40, 70}, 0, 1);
          sg_tensor *b = sg_rand_normal(NULL, &r, (sg_dtype)dt, 1, (int64_t[]){40}, 0, 1);
          sg_tensor *leaves[3] = {x, w, b}, *grads[2][3], *y[2];
          for (int j = 0; j < 3; j++) sg_set_requires_grad(leaves[j], true);
          for (int way = 0; way < 2; way++) {
            for (int j = 0; j < 3; j++) sg_zero_grad(leaves[j]);
            sg_tensor *bb = bias ? b : NULL;
            y[way] = way ? sg_relu(g, sg_linear(g, x, w, bb)) : sg_linear_relu(g, x, w, bb);
            sg_tensor *loss =
                squared ? sg_sum_all(g, sg_mul(g, y[way], y[way])) : sg_sum_all(g, y[way]);
            sg_backward(g, loss);
            for (int j = 0; j < 3; j++)
              grads[way][j] = leaves[j]->grad ? sg_clone(g, leaves[j]->grad) : NULL;
          }
          double tol = dt == SG_F32 ? 2e-4 : 1e-11;
          int64_t clamped = 0;
          for (int64_t i = 0; i < y[0]->numel; i++) {
            ck_assert_double_eq_tol(sg_get(y[0], i), sg_get(y[1], i), tol);
            clamped += sg_get(y[0], i) == 0;
          }
          ck_assert(clamped > y[0]->numel / 4 && clamped < 3 * y[0]->numel / 4);
          assert_close_all(grads[0], grads[1], bias ? 3 : 2, tol);
          for (int j = 0; j < 3; j++) sg_free(leaves[j]);
          sg_graph_free(g);
        }
}
END_TEST

/* Naive gradients of sum(w * op(a) op(b)) with broadcast batches, summed
 * into the (broadcast) operand blocks in long double, with |term| sums. */
static void naive_matmul_grads(const sg_tensor *a, const sg_tensor *b, bool ta, bool tb,
                               const sg_tensor *w, long double *ga, long double *ga_abs,
                               long double *gb, long double *gb_abs) {
  int64_t m = w->shape[w->ndim - 2], n = w->shape[w->ndim - 1];
  int64_t k = ta ? a->shape[a->ndim - 2] : a->shape[a->ndim - 1], nb = w->numel / (m * n);
  int64_t lda = a->shape[a->ndim - 1], ldb = b->shape[b->ndim - 1];
  for (int64_t t = 0; t < nb; t++) {
    int64_t aoff, boff;
    batch_offsets(a, b, w, t, &aoff, &boff);
    for (int64_t i = 0; i < m; i++)
      for (int64_t j = 0; j < n; j++) {
        long double wv = sg_get(w, (t * m + i) * n + j);
        for (int64_t p = 0; p < k; p++) {
          /* d/dop(a)(i,p) += w(i,j) op(b)(p,j);  d/dop(b)(p,j) += op(a)(i,p) w(i,j) */
          long double da = wv * op_at(b, boff, ldb, tb, p, j),
                      db = wv * op_at(a, aoff, lda, ta, i, p);
          int64_t ia = aoff + (ta ? p * lda + i : i * lda + p);
          int64_t ib = boff + (tb ? j * ldb + p : p * ldb + j);
          ga[ia] += da;
          ga_abs[ia] += fabsl(da);
          gb[ib] += db;
          gb_abs[ib] += fabsl(db);
        }
      }
  }
}

static void assert_grad_near(const sg_tensor *grad, const long double *want, const long double *abs,
                             const char *what) {
  for (int64_t i = 0; i < grad->numel; i++) {
    double tol = dot_tol(SG_F64, 3000, (double)abs[i]); /* >= terms in any sum here */
    ck_assert_msg(fabs(sg_get(grad, i) - (double)want[i]) <= tol, "%s[%lld] = %.17g, want %.17g",
                  what, (long long)i, sg_get(grad, i), (double)want[i]);
  }
}

/* Gradients of operands broadcast over many batches, fully (a 2-D weight)
 * or partly (summed over some batch dims only), against naive sums, in every
 * transpose combination. Threads must never add into the same block at once
 * and the sums must come out right. */
START_TEST(matmul_broadcast_grad_many_batches) {
  sg_rng r;
  sg_rng_seed(&r, 67);
  const int64_t m = 8, k = 6, n = 5;
  const struct {
    int na, nb;
    int64_t a[2], b[2]; /* batch dims */
  } cases[] = {
      {1, 0, {300}, {0}},       /* b shared by all 300 batches */
      {2, 1, {2, 150}, {150}},  /* b summed over the leading 2 */
      {2, 2, {150, 1}, {1, 2}}, /* a summed over 2, b over 150 */
  };
  for (int c = 0; c < 3; c++)
    for (int t = 0; t < 4; t++) {
      bool ta = t & 1, tb = t >> 1;
      sg_graph *g = sg_graph_new();
      int64_t as[4], bs[4];
      memcpy(as, cases[c].a, sizeof cases[c].a);
      memcpy(bs, cases[c].b, sizeof cases[c].b);
      int na = cases[c].na, nbd = cases[c].nb;
      as[na] = ta ? k : m;
      as[na + 1] = ta ? m : k;
      bs[nbd] = tb ? n : k;
      bs[nbd + 1] = tb ? k : n;
      sg_tensor *a = sg_rand_uniform(NULL, &r, SG_F64, na + 2, as, -1, 1);
      sg_tensor *b = sg_rand_uniform(NULL, &r, SG_F64, nbd + 2, bs, -1, 1);
      sg_set_requires_grad(a, true);
      sg_set_requires_grad(b, true);
      sg_tensor *y = sg_matmul(g, a, b, ta, tb);
      sg_tensor *w = sg_rand_uniform(g, &r, SG_F64, y->ndim, y->shape, -1, 1);
      sg_backward_with(g, y, w);
      long double *ga = calloc((size_t)a->numel, sizeof *ga),
                  *ga_abs = calloc((size_t)a->numel, sizeof *ga),
                  *gb = calloc((size_t)b->numel, sizeof *gb),
                  *gb_abs = calloc((size_t)b->numel, sizeof *gb);
      naive_matmul_grads(a, b, ta, tb, w, ga, ga_abs, gb, gb_abs);
      assert_grad_near(a->grad, ga, ga_abs, "grad a");
      assert_grad_near(b->grad, gb, gb_abs, "grad b");
      free(ga);
      free(ga_abs);
      free(gb);
      free(gb_abs);
      sg_free(a);
      sg_free(b);
      sg_graph_free(g);
    }
}
END_TEST

/* in[0] = x, in[1] = W, in[2] = bias (optional); ctx: the column offset. */
static sg_tensor *apply_linear_cols(sg_graph *g, sg_tensor *const *in, int n, void *ctx) {
  return sg_linear_cols(g, in[0], in[1], *(const int64_t *)ctx, n > 2 ? in[2] : NULL);
}

/* Blocks at the start, middle and end of W's columns (W [5, 7]), with
 * broadcast leading dims and a single-row x. */
START_TEST(gradcheck_linear_cols) {
  const linear_case cases[] = {
      {2, {4, 3}, 0}, {3, {2, 3, 2}, 3}, {1, {2}, 5}, {3, {2, 1, 7}, 0}, {2, {1, 1}, 6}};
  check_linear_op(apply_linear_cols, 54, 5, 7, cases, 5);
}
END_TEST

/* The sum of sg_linear_cols over the column blocks of [x1, x2] equals
 * sg_linear of the concatenation, forward and gradients, in both dtypes and
 * for row counts on both sides of the small-m GEMM path. */
START_TEST(linear_cols_vs_concat) {
  sg_rng r;
  sg_rng_seed(&r, 60);
  for (int dt = 0; dt < 2; dt++)
    for (int64_t rows = 3; rows <= 300; rows *= 10) {
      sg_graph *g = sg_graph_new();
      sg_tensor *x1 = sg_rand_normal(NULL, &r, (sg_dtype)dt, 2, (int64_t[]){rows, 70}, 0, 1);
      sg_tensor *x2 = sg_rand_normal(NULL, &r, (sg_dtype)dt, 2, (int64_t[]){rows, 90}, 0, 1);
      sg_tensor *w = sg_rand_normal(NULL, &r, (sg_dtype)dt, 2, (int64_t[]){40, 160}, 0, 1);
      sg_tensor *b = sg_rand_normal(NULL, &r, (sg_dtype)dt, 1, (int64_t[]){40}, 0, 1);
      sg_tensor *leaves[4] = {x1, x2, w, b}, *grads[2][4];
      for (int j = 0; j < 4; j++) sg_set_requires_grad(leaves[j], true);
      sg_tensor *y[2];
      for (int way = 0; way < 2; way++) {
        for (int j = 0; j < 4; j++) sg_zero_grad(leaves[j]);
        if (way == 0)
          y[0] = sg_add(g, sg_linear_cols(g, x1, w, 0, b), sg_linear_cols(g, x2, w, 70, NULL));
        else
          y[1] = sg_linear(g, sg_concat(g, 2, (sg_tensor *[]){x1, x2}, -1), w, b);
        sg_backward(g, sg_sum_all(g, sg_mul(g, y[way], y[way])));
        for (int j = 0; j < 4; j++) grads[way][j] = sg_clone(g, leaves[j]->grad);
      }
      double tol = dt == SG_F32 ? 2e-4 : 1e-11;
      for (int64_t i = 0; i < y[0]->numel; i++)
        ck_assert_double_eq_tol(sg_get(y[0], i), sg_get(y[1], i), tol);
      assert_close_all(grads[0], grads[1], 4, tol);
      for (int j = 0; j < 4; j++) sg_free(leaves[j]);
      sg_graph_free(g);
    }
}
END_TEST

/* linear(x, W, b) equals matmul(x, W^T) + b, and the gradients accumulate
 * (+=) into existing leaf gradients over two backward passes. */
START_TEST(linear_vs_matmul) {
  sg_graph *g = sg_graph_new();
  sg_rng r;
  sg_rng_seed(&r, 59);
  for (int dt = 0; dt < 2; dt++) {
    sg_tensor *x = sg_rand_normal(NULL, &r, (sg_dtype)dt, 3, (int64_t[]){4, 30, 70}, 0, 1);
    sg_tensor *w = sg_rand_normal(NULL, &r, (sg_dtype)dt, 2, (int64_t[]){50, 70}, 0, 1);
    sg_tensor *b = sg_rand_normal(NULL, &r, (sg_dtype)dt, 1, (int64_t[]){50}, 0, 1);
    sg_set_requires_grad(w, true);
    sg_set_requires_grad(b, true);
    sg_tensor *y = sg_linear(g, x, w, b);
    ck_assert_int_eq(y->ndim, 3);
    ck_assert_int_eq(y->shape[2], 50);
    sg_tensor *z = sg_add(g, sg_matmul(g, x, w, false, true), b);
    double tol = dt == SG_F32 ? 1e-4 : 1e-12;
    for (int64_t i = 0; i < y->numel; i++) ck_assert_double_eq_tol(sg_get(y, i), sg_get(z, i), tol);
    /* Gradient of sum(y) twice: dW = 2 * column sums of x, db = 2 * rows. */
    for (int pass = 0; pass < 2; pass++) {
      sg_graph_reset(g);
      sg_backward(g, sg_sum_all(g, sg_linear(g, x, w, b)));
    }
    for (int64_t j = 0; j < 70; j++) {
      long double s = 0;
      for (int64_t rr = 0; rr < 120; rr++) s += sg_get(x, rr * 70 + j);
      for (int64_t o = 0; o < 50; o++)
        ck_assert_double_eq_tol(sg_get(w->grad, o * 70 + j), 2 * (double)s, tol * 10);
    }
    for (int64_t o = 0; o < 50; o++) ck_assert_double_eq(sg_get(b->grad, o), 240);
    sg_free(x);
    sg_free(w);
    sg_free(b);
    sg_graph_reset(g);
  }
  sg_graph_free(g);
}
END_TEST

/* f(in) and the gradients of sum(f^2) are bitwise the same on 1 and 2
 * threads. */
static void assert_same_on_1_and_2_threads(sg_check_fn f, sg_tensor *const *in, int n_in,
                                           void *ctx) {
  int was = omp_get_max_threads();
  sg_tensor *got[2][SG_MAX_INPUTS + 1];
  for (int th = 0; th < 2; th++) {
    with_threads(th + 1);
    sg_graph *g = sg_graph_new();
    for (int j = 0; j < n_in; j++) sg_zero_grad(in[j]);
    sg_tensor *y = f(g, in, n_in, ctx);
    sg_backward(g, sg_sum_all(g, sg_square(g, y)));
    got[th][0] = sg_clone(NULL, y);
    for (int j = 0; j < n_in; j++) got[th][j + 1] = sg_clone(NULL, in[j]->grad);
    sg_graph_free(g);
  }
  with_threads(was);
  for (int j = 0; j <= n_in; j++) {
    size_t bytes = (size_t)got[0][j]->numel * sg_dtype_size(got[0][j]->dtype);
    ck_assert_msg(memcmp(got[0][j]->data, got[1][j]->data, bytes) == 0,
                  "%s %s differs between 1 and 2 threads", sg_dtype_name(got[0][j]->dtype),
                  j ? "a gradient" : "the output");
    sg_free(got[0][j]);
    sg_free(got[1][j]);
  }
}

static sg_tensor *apply_matmul_nn(sg_graph *g, sg_tensor *const *in, int n, void *ctx) {
  (void)n, (void)ctx;
  return sg_matmul(g, in[0], in[1], false, false);
}

/* The whole op (forward and backward) is bitwise the same on 1 and 2 threads. */
START_TEST(matmul_deterministic_across_threads) {
  sg_rng r;
  sg_rng_seed(&r, 61);
  for (int dt = 0; dt < 2; dt++) {
    sg_tensor *in[2] = {sg_rand_normal(NULL, &r, (sg_dtype)dt, 3, (int64_t[]){3, 130, 200}, 0, 1),
                        sg_rand_normal(NULL, &r, (sg_dtype)dt, 2, (int64_t[]){200, 150}, 0, 1)};
    for (int j = 0; j < 2; j++) sg_set_requires_grad(in[j], true);
    assert_same_on_1_and_2_threads(apply_matmul_nn, in, 2, NULL);
    for (int j = 0; j < 2; j++) sg_free(in[j]);
  }
}
END_TEST

/* ---- the first Linear on concatenated parts ------------------------------ */

typedef struct parts_case {
  int n, nd[3];
  int64_t x[3][4], out;
} parts_case;

static const parts_case parts_cases[] = {
    {2, {4, 4}, {{2, 3, 1, 4}, {2, 3, 5, 3}}, 6}, /* a node part repeated over edges */
    {2, {3, 3}, {{3, 5, 2}, {3, 1, 4}}, 5},       /* the full part first */
    {2, {3, 3}, {{3, 1, 2}, {1, 4, 3}}, 4},       /* no part is full */
    {2, {3, 1}, {{2, 3, 2}, {3}}, 4},             /* a 1-D part repeated over every row */
    {2, {2, 2}, {{4, 2}, {4, 3}}, 3},             /* both full */
    {1, {2, 0}, {{4, 3}, {0}}, 5},                /* one part: a Linear */
    /* three: a BS part, a UE part and the edges (an edge update) */
    {3, {4, 4, 4}, {{2, 1, 3, 2}, {2, 4, 1, 3}, {2, 4, 3, 2}}, 5},
};

/* The full part's backward runs as a pair (and the fill is still serial):
 * as large as a gradient check stays exact to its tolerances (the central
 * difference's rounding grows with the number of outputs summed). */
static const parts_case parts_paired = {2, {3, 3}, {{6, 1, 20}, {6, 10, 24}}, 24};
/* Big enough that the fill runs threaded too; checked against the
 * definition instead. */
static const parts_case parts_large = {2, {3, 3}, {{30, 1, 20}, {30, 8, 24}}, 40};

typedef struct parts_ctx {
  int n;
  bool relu;
} parts_ctx;

/* in: the parts, W, then b if there is one more input. */
static sg_tensor *apply_linear_parts(sg_graph *g, sg_tensor *const *in, int n_in, void *ctx) {
  const parts_ctx *c = ctx;
  return sg_linear_parts(g, c->n, in, in[c->n], n_in > c->n + 1 ? in[c->n + 1] : NULL, c->relu);
}

/* The definition: every part expanded to the common leading shape, the
 * concatenation through sg_linear (and sg_relu). */
static sg_tensor *apply_parts_by_concat(sg_graph *g, sg_tensor *const *in, int n_in, void *ctx) {
  const parts_ctx *c = ctx;
  int nd = 0;
  for (int i = 0; i < c->n; i++) nd = in[i]->ndim > nd ? in[i]->ndim : nd;
  int64_t lead[SG_MAX_DIMS];
  for (int d = 0; d < nd - 1; d++) lead[d] = 1;
  for (int i = 0; i < c->n; i++)
    for (int d = 0; d < in[i]->ndim - 1; d++)
      if (in[i]->shape[d] != 1) lead[nd - in[i]->ndim + d] = in[i]->shape[d];
  sg_tensor *full[3];
  for (int i = 0; i < c->n; i++) {
    lead[nd - 1] = in[i]->shape[in[i]->ndim - 1];
    full[i] = sg_expand(g, in[i], nd, lead);
  }
  sg_tensor *x = c->n == 1 ? full[0] : sg_concat(g, c->n, full, -1);
  sg_tensor *y = sg_linear(g, x, in[c->n], n_in > c->n + 1 ? in[c->n + 1] : NULL);
  return c->relu ? sg_relu(g, y) : y;
}

/* Parts, W [out, sum of widths] and b [out], float64, requiring gradients. */
static int make_parts_inputs(const parts_case *pc, sg_rng *r, sg_tensor **in) {
  int64_t width = 0;
  for (int i = 0; i < pc->n; i++) {
    in[i] = sg_rand_uniform(NULL, r, SG_F64, pc->nd[i], pc->x[i], -1, 1);
    width += pc->x[i][pc->nd[i] - 1];
  }
  in[pc->n] = sg_rand_uniform(NULL, r, SG_F64, 2, (int64_t[]){pc->out, width}, -1, 1);
  in[pc->n + 1] = sg_rand_uniform(NULL, r, SG_F64, 1, (int64_t[]){pc->out}, -1, 1);
  for (int j = 0; j < pc->n + 2; j++) sg_set_requires_grad(in[j], true);
  return pc->n + 2;
}

static void free_all(sg_tensor **t, int n) {
  for (int j = 0; j < n; j++) sg_free(t[j]);
}

/* Gradients (float64) and the float32 forward, with and without bias and
 * ReLU, for every way the parts can broadcast. */
START_TEST(gradcheck_linear_parts) {
  sg_rng r;
  sg_rng_seed(&r, 71);
  int n_cases = (int)(sizeof parts_cases / sizeof parts_cases[0]);
  for (int c = 0; c <= n_cases; c++)
    for (int variant = 0; variant < 4; variant++) {
      const parts_case *pc = c < n_cases ? &parts_cases[c] : &parts_paired;
      sg_tensor *in[5];
      int n_in = make_parts_inputs(pc, &r, in);
      parts_ctx ctx = {pc->n, variant & 1};
      int used = variant & 2 ? n_in : n_in - 1; /* without bias: b is not passed */
      SG_ASSERT_CHECK(sg_gradcheck(apply_linear_parts, in, used, &ctx, NULL));
      SG_ASSERT_CHECK(sg_check_f32_forward(apply_linear_parts, in, used, &ctx, 1e-6, 1e-6));
      free_all(in, n_in);
    }
}
END_TEST

/* The value and the gradients of a random weighting equal those of the
 * definition (concatenation, sg_linear, sg_relu), in both dtypes. */
START_TEST(linear_parts_vs_concat) {
  sg_rng r;
  sg_rng_seed(&r, 73);
  int n_cases = (int)(sizeof parts_cases / sizeof parts_cases[0]);
  for (int c = 0; c <= n_cases; c++)
    for (int dt = 0; dt < 2; dt++)
      for (int relu = 0; relu < 2; relu++) {
        const parts_case *pc = c < n_cases ? &parts_cases[c] : &parts_large;
        sg_graph *g = sg_graph_new();
        sg_tensor *in64[5], *in[5], *y[2], *grads[2][5];
        int n_in = make_parts_inputs(pc, &r, in64);
        for (int j = 0; j < n_in; j++) {
          in[j] = sg_to_dtype(NULL, in64[j], (sg_dtype)dt);
          sg_set_requires_grad(in[j], true);
        }
        parts_ctx ctx = {pc->n, relu};
        sg_tensor *weights = NULL;
        for (int way = 0; way < 2; way++) {
          for (int j = 0; j < n_in; j++) sg_zero_grad(in[j]);
          y[way] = (way ? apply_parts_by_concat : apply_linear_parts)(g, in, n_in, &ctx);
          if (!weights)
            weights = sg_rand_uniform(g, &r, (sg_dtype)dt, y[0]->ndim, y[0]->shape, -1, 1);
          sg_backward_with(g, y[way], weights);
          for (int j = 0; j < n_in; j++) grads[way][j] = sg_clone(g, in[j]->grad);
        }
        ck_assert_int_eq(y[0]->ndim, y[1]->ndim);
        for (int d = 0; d < y[0]->ndim; d++) ck_assert_int_eq(y[0]->shape[d], y[1]->shape[d]);
        double tol = dt == SG_F32 ? 2e-5 : 1e-13;
        assert_close_all(y, y + 1, 1, tol);
        assert_close_all(grads[0], grads[1], n_in, tol);
        free_all(in64, n_in);
        free_all(in, n_in);
        sg_graph_free(g);
      }
}
END_TEST

/* Forward and gradients bitwise the same on 1 and 2 threads. */
START_TEST(linear_parts_deterministic_across_threads) {
  sg_rng r;
  sg_rng_seed(&r, 79);
  for (int dt = 0; dt < 2; dt++) {
    sg_tensor *in64[5], *in[5];
    int n_in = make_parts_inputs(&parts_large, &r, in64);
    for (int j = 0; j < n_in; j++) {
      in[j] = sg_to_dtype(NULL, in64[j], (sg_dtype)dt);
      sg_set_requires_grad(in[j], true);
    }
    parts_ctx ctx = {parts_large.n, true};
    assert_same_on_1_and_2_threads(apply_linear_parts, in, n_in, &ctx);
    free_all(in64, n_in);
    free_all(in, n_in);
  }
}
END_TEST

/* ---- misuse ------------------------------------------------------------- */

typedef struct err_log {
  int count;
  char op[64], msg[512], file[256];
} err_log;

static void record_error(const char *op, const char *msg, const char *file, int line, void *user) {
  (void)line;
  err_log *l = user;
  l->count++;
  snprintf(l->op, sizeof l->op, "%s", op);
  snprintf(l->msg, sizeof l->msg, "%s", msg);
  snprintf(l->file, sizeof l->file, "%s", file ? file : "");
}

static bool ends_with(const char *s, const char *suffix) {
  size_t ls = strlen(s), lx = strlen(suffix);
  return ls >= lx && strcmp(s + ls - lx, suffix) == 0;
}

static void assert_reported(const err_log *log, int count, const char *op, const char *s1,
                            const char *s2) {
  ck_assert_int_eq(log->count, count);
  ck_assert_str_eq(log->op, op);
  ck_assert_msg(strstr(log->msg, s1) && strstr(log->msg, s2), "message '%s' lacks %s or %s",
                log->msg, s1, s2);
  ck_assert_msg(ends_with(log->file, "test_matmul.c"), "call site %s", log->file);
}

START_TEST(errors_reported) {
  err_log log = {0};
  sg_set_error_handler(record_error, &log);
  sg_graph *g = sg_graph_new();
  sg_tensor *a = sg_zeros(g, SG_F64, 2, (int64_t[]){2, 3});
  sg_tensor *b = sg_zeros(g, SG_F64, 2, (int64_t[]){4, 5});
  ck_assert_ptr_null(sg_matmul(g, a, b, false, false));
  assert_reported(&log, 1, "sg_matmul", "[2, 3]", "[4, 5]");
  /* With trans_a, a is [3, 2]^T: k = 2 does not match b's 4 rows either. */
  ck_assert_ptr_null(sg_matmul(g, a, b, true, false));
  assert_reported(&log, 2, "sg_matmul", "[2, 3]", "[4, 5]");
  sg_tensor *b3 = sg_zeros(g, SG_F64, 3, (int64_t[]){3, 3, 5}),
            *a3 = sg_zeros(g, SG_F64, 3, (int64_t[]){2, 2, 3});
  ck_assert_ptr_null(sg_matmul(g, a3, b3, false, false));
  assert_reported(&log, 3, "sg_matmul", "[2, 2, 3]", "[3, 3, 5]");
  sg_tensor *v = sg_zeros(g, SG_F64, 1, (int64_t[]){3});
  ck_assert_ptr_null(sg_matmul(g, a, v, false, false));
  assert_reported(&log, 4, "sg_matmul", "[2, 3]", "[3]");
  sg_tensor *f = sg_zeros(g, SG_F32, 2, (int64_t[]){3, 5});
  ck_assert_ptr_null(sg_matmul(g, a, f, false, false));
  assert_reported(&log, 5, "sg_matmul", "[2, 3]", "[3, 5]");
  /* linear: W [out, in] must match x's last dim; bias must be [out]. */
  sg_tensor *w = sg_zeros(g, SG_F64, 2, (int64_t[]){4, 5});
  ck_assert_ptr_null(sg_linear(g, a, w, NULL));
  assert_reported(&log, 6, "sg_linear", "[2, 3]", "[4, 5]");
  sg_tensor *w2 = sg_zeros(g, SG_F64, 2, (int64_t[]){4, 3}),
            *bad_b = sg_zeros(g, SG_F64, 1, (int64_t[]){5});
  ck_assert_ptr_null(sg_linear(g, a, w2, bad_b));
  assert_reported(&log, 7, "sg_linear", "[5]", "[4, 3]");
  /* linear_cols: the block must lie inside W's columns. */
  ck_assert_ptr_null(sg_linear_cols(g, a, w, 3, NULL));
  assert_reported(&log, 8, "sg_linear_cols", "[2, 3]", "[4, 5]");
  ck_assert_ptr_null(sg_linear_cols(g, a, w, -1, NULL));
  assert_reported(&log, 9, "sg_linear_cols", "[2, 3]", "[4, 5]");
  /* linear_relu: the checks of linear, under its own name. */
  ck_assert_ptr_null(sg_linear_relu(g, a, w, NULL));
  assert_reported(&log, 10, "sg_linear_relu", "[2, 3]", "[4, 5]");
  /* linear_parts: widths must add up to W's in, leading axes broadcast,
   * 1 or 2 parts, bias [out]. */
  sg_tensor *pa = sg_zeros(g, SG_F64, 3, (int64_t[]){2, 1, 2}),
            *pb = sg_zeros(g, SG_F64, 3, (int64_t[]){2, 4, 2}),
            *pc = sg_zeros(g, SG_F64, 3, (int64_t[]){3, 4, 3});
  ck_assert_ptr_null(sg_linear_parts(g, 2, (sg_tensor *[]){pa, pb}, w, NULL, true));
  assert_reported(&log, 11, "sg_linear_parts", "[2, 1, 2]", "[4, 5]");
  ck_assert_ptr_null(sg_linear_parts(g, 2, (sg_tensor *[]){pa, pc}, w, NULL, true));
  assert_reported(&log, 12, "sg_linear_parts", "part 0 [2, 1, 2]", "part 1 [3, 4, 3]");
  ck_assert_ptr_null(sg_linear_parts(g, 4, (sg_tensor *[]){pa, pa, pa, pa}, w, NULL, false));
  assert_reported(&log, 13, "sg_linear_parts", "1 to 3 parts", "got 4");
  ck_assert_ptr_null(sg_linear_parts(g, 2, (sg_tensor *[]){pa, pc}, w, bad_b, false));
  assert_reported(&log, 14, "sg_linear_parts", "[5]", "[4, 5]");
  ck_assert_ptr_null(sg_linear_parts(g, 2, (sg_tensor *[]){pa, f}, w, NULL, false));
  assert_reported(&log, 15, "sg_linear_parts", "dtype mismatch", "[3, 5]");
  /* NULL in, NULL out, silently. */
  ck_assert_ptr_null(sg_matmul(g, NULL, b, false, false));
  ck_assert_ptr_null(sg_linear(g, NULL, w, NULL));
  ck_assert_ptr_null(sg_linear_parts(g, 2, (sg_tensor *[]){pa, NULL}, w, NULL, false));
  ck_assert_int_eq(log.count, 15);
  sg_graph_free(g);
  sg_set_error_handler(NULL, NULL);
}
END_TEST

Suite *suite_matmul(void) {
  Suite *s = suite_create("matmul");
  struct {
    const char *name;
    const TTest *test;
  } tcs[] = {
      {"gemm_blas_vs_naive", gemm_blas_vs_naive},
      {"gemm_reference_vs_naive", gemm_reference_vs_naive},
      {"gemm_serial_vs_naive", gemm_serial_vs_naive},
      {"gemm_pair_vs_naive", gemm_pair_vs_naive},
      {"gemm_alpha_beta", gemm_alpha_beta},
      {"gemm_blas_vs_reference", gemm_blas_vs_reference},
      {"gemm_deterministic_across_threads", gemm_deterministic_across_threads},
      {"blas_name", blas_name},
      {"matmul_forward_vs_naive", matmul_forward_vs_naive},
      {"matmul_forward_large_batches", matmul_forward_large_batches},
      {"matmul_shapes", matmul_shapes},
      {"matmul_f32_vs_f64", matmul_f32_vs_f64},
      {"gradcheck_matmul", gradcheck_matmul},
      {"gradcheck_matmul_large", gradcheck_matmul_large},
      {"gradcheck_linear", gradcheck_linear},
      {"gradcheck_linear_paired", gradcheck_linear_paired},
      {"gradcheck_linear_x_is_w", gradcheck_linear_x_is_w},
      {"gradcheck_linear_parts", gradcheck_linear_parts},
      {"linear_parts_vs_concat", linear_parts_vs_concat},
      {"linear_parts_deterministic_across_threads", linear_parts_deterministic_across_threads},
      {"gradcheck_linear_relu", gradcheck_linear_relu},
      {"linear_relu_vs_unfused", linear_relu_vs_unfused},
      {"gradcheck_linear_cols", gradcheck_linear_cols},
      {"linear_cols_vs_concat", linear_cols_vs_concat},
      {"matmul_broadcast_grad_many_batches", matmul_broadcast_grad_many_batches},
      {"linear_vs_matmul", linear_vs_matmul},
      {"matmul_deterministic_across_threads", matmul_deterministic_across_threads},
      {"errors_reported", errors_reported},
  };
  for (size_t i = 0; i < sizeof tcs / sizeof tcs[0]; i++) {
    TCase *tc = tcase_create(tcs[i].name);
    tcase_add_test(tc, tcs[i].test);
    tcase_set_timeout(tc, 120);
    suite_add_tcase(s, tc);
  }
  return s;
}
