/* Matrix products: batched and broadcast matmul in all transpose
 * combinations against a naive triple loop, float64 gradient checks,
 * determinism across thread counts, and misuse reports of matmul and
 * linear. */
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "matmul_helpers.h"
#include "sg_config.h"
#include "sg_gemm.h"
#include "sg_test.h"

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
  const sg_test_case cases[] = {
      {"matmul_forward_vs_naive", matmul_forward_vs_naive},
      {"matmul_forward_large_batches", matmul_forward_large_batches},
      {"matmul_shapes", matmul_shapes},
      {"matmul_f32_vs_f64", matmul_f32_vs_f64},
      {"gradcheck_matmul", gradcheck_matmul},
      {"gradcheck_matmul_large", gradcheck_matmul_large},
      {"matmul_broadcast_grad_many_batches", matmul_broadcast_grad_many_batches},
      {"matmul_deterministic_across_threads", matmul_deterministic_across_threads},
      {"errors_reported", errors_reported},
  };
  return sg_test_suite("matmul", cases, sizeof cases / sizeof cases[0], 120);
}
