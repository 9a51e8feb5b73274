/* Reductions: float64 gradient checks over shapes and axes (size-1 axes,
 * negative axes, keepdim both ways), forward values against naive loops and
 * hand-computed values, stability of logsumexp, ties and NaN in max, and
 * determinism of the threaded sums. */
#include <omp.h>
#include <string.h>

#include "sg_test.h"

typedef sg_tensor *(*axis_fn)(sg_graph *, sg_tensor *, int, bool);

typedef struct axis_call {
  axis_fn f;
  int axis;
  bool keepdim;
} axis_call;

static sg_tensor *apply_axis(sg_graph *g, sg_tensor *const *in, int n, void *ctx) {
  (void)n;
  const axis_call *c = ctx;
  return c->f(g, in[0], c->axis, c->keepdim);
}

typedef sg_tensor *(*all_fn)(sg_graph *, sg_tensor *);
static sg_tensor *apply_all(sg_graph *g, sg_tensor *const *in, int n, void *ctx) {
  (void)n;
  return ((all_fn)ctx)(g, in[0]);
}

/* Shapes and axes: size-1 axes reduced and kept, negative axes, 1-D. */
static const struct {
  int nd;
  int64_t shape[4];
  int axis;
} cases[] = {
    {1, {5}, 0},       {2, {3, 4}, 0},       {2, {3, 4}, 1},        {2, {3, 4}, -1},
    {3, {2, 3, 4}, 1}, {3, {2, 3, 4}, -3},   {3, {2, 1, 3}, 1},     {3, {2, 1, 3}, -1},
    {2, {1, 4}, 0},    {4, {2, 3, 1, 2}, 2}, {4, {2, 3, 1, 2}, -3},
};
enum { N_CASES = sizeof cases / sizeof cases[0] };

/* Distinct values at least 0.08 apart (a shuffled grid plus small jitter),
 * so that max has no ties within the finite-difference step. */
static sg_tensor *distinct_input(sg_rng *r, int nd, const int64_t *shape) {
  sg_tensor *t = sg_empty(NULL, SG_F64, nd, shape);
  double *d = t->data;
  for (int64_t i = 0; i < t->numel; i++) d[i] = (double)i;
  for (int64_t i = t->numel - 1; i > 0; i--) {
    int64_t j = (int64_t)sg_rng_below(r, (uint64_t)i + 1);
    double tmp = d[i];
    d[i] = d[j];
    d[j] = tmp;
  }
  for (int64_t i = 0; i < t->numel; i++) d[i] = 0.1 * d[i] - 1 + 0.01 * sg_rng_uniform(r);
  sg_set_requires_grad(t, true);
  return t;
}

static void check_axis_op(axis_fn f, double lo, double hi, bool distinct) {
  sg_rng r;
  sg_rng_seed(&r, 21);
  for (int i = 0; i < N_CASES; i++) {
    for (int keep = 0; keep < 2; keep++) {
      sg_tensor *x = distinct
                         ? distinct_input(&r, cases[i].nd, cases[i].shape)
                         : sg_rand_uniform(NULL, &r, SG_F64, cases[i].nd, cases[i].shape, lo, hi);
      sg_set_requires_grad(x, true);
      axis_call c = {f, cases[i].axis, keep};
      SG_ASSERT_CHECK(sg_gradcheck(apply_axis, &x, 1, &c, NULL));
      SG_ASSERT_CHECK(sg_check_f32_forward(apply_axis, &x, 1, &c, 1e-6, 1e-6));
      sg_free(x);
    }
  }
}

START_TEST(gradcheck_sum) {
  check_axis_op((sg_sum), -2, 2, false);
}
END_TEST
START_TEST(gradcheck_mean) {
  check_axis_op((sg_mean), -2, 2, false);
}
END_TEST
START_TEST(gradcheck_max) {
  check_axis_op((sg_max), 0, 0, true);
}
END_TEST
START_TEST(gradcheck_logsumexp) {
  check_axis_op((sg_logsumexp), -3, 3, false);
}
END_TEST

static void check_all_op(all_fn f) {
  sg_rng r;
  sg_rng_seed(&r, 23);
  const int nds[] = {0, 1, 2, 3};
  const int64_t shapes[][3] = {{0}, {7}, {3, 1}, {2, 3, 4}};
  for (int i = 0; i < 4; i++) {
    sg_tensor *x = sg_rand_uniform(NULL, &r, SG_F64, nds[i], shapes[i], -2, 2);
    sg_set_requires_grad(x, true);
    SG_ASSERT_CHECK(sg_gradcheck(apply_all, &x, 1, (void *)f, NULL));
    SG_ASSERT_CHECK(sg_check_f32_forward(apply_all, &x, 1, (void *)f, 1e-6, 1e-6));
    sg_free(x);
  }
}

START_TEST(gradcheck_sum_all) {
  check_all_op((sg_sum_all));
}
END_TEST
START_TEST(gradcheck_mean_all) {
  check_all_op((sg_mean_all));
}
END_TEST

/* ---- forward values ----------------------------------------------------- */

/* Naive reference: reduce x (viewed as [outer, n, inner]) with kind 0 sum,
 * 1 mean, 2 max, 3 logsumexp computed in long double the textbook way. */
static double naive_reduce(const sg_tensor *x, int64_t n, int64_t inner, int64_t o, int64_t j,
                           int kind) {
  long double acc = kind == 2 ? -INFINITY : 0;
  for (int64_t k = 0; k < n; k++) {
    long double v = sg_get(x, (o * n + k) * inner + j);
    if (kind == 2)
      acc = v > acc ? v : acc;
    else if (kind == 3)
      acc += expl(v);
    else
      acc += v;
  }
  if (kind == 1) acc /= n;
  if (kind == 3) acc = logl(acc);
  return (double)acc;
}

START_TEST(forward_vs_naive) {
  const axis_fn fns[] = {(sg_sum), (sg_mean), (sg_max), (sg_logsumexp)};
  sg_graph *g = sg_graph_new();
  sg_rng r;
  sg_rng_seed(&r, 5);
  /* Large enough that the threaded and chunked paths run (n > CHUNK too). */
  const int64_t shape[3] = {3, 9000, 5}, row_shape[2] = {4, 70001};
  sg_tensor *x3 = sg_rand_uniform(g, &r, SG_F64, 3, shape, -3, 3);
  sg_tensor *x2 = sg_rand_uniform(g, &r, SG_F64, 2, row_shape, -3, 3);
  for (int kind = 0; kind < 4; kind++) {
    for (int axis = 0; axis < 3; axis++) {
      sg_tensor *y = fns[kind](g, x3, axis, true);
      ck_assert_int_eq(y->ndim, 3);
      ck_assert_int_eq(y->shape[axis], 1);
      int64_t outer = 1, inner = 1;
      for (int d = 0; d < axis; d++) outer *= shape[d];
      for (int d = axis + 1; d < 3; d++) inner *= shape[d];
      for (int64_t o = 0; o < outer; o++)
        for (int64_t j = 0; j < inner; j++) {
          double want = naive_reduce(x3, shape[axis], inner, o, j, kind);
          ck_assert_double_eq_tol(sg_get(y, o * inner + j), want, 1e-12 * (1 + fabs(want)));
        }
    }
    sg_tensor *y = fns[kind](g, x2, -1, false);
    ck_assert_int_eq(y->ndim, 1);
    ck_assert_int_eq(y->shape[0], 4);
    for (int64_t o = 0; o < 4; o++) {
      double want = naive_reduce(x2, row_shape[1], 1, o, 0, kind);
      ck_assert_double_eq_tol(sg_get(y, o), want, 1e-12 * (1 + fabs(want)));
    }
  }
  sg_graph_free(g);
}
END_TEST

START_TEST(forward_values) {
  sg_graph *g = sg_graph_new();
  for (int dt = 0; dt < 2; dt++) {
    sg_tensor *x = sg_from_f64(g, (sg_dtype)dt, 2, (int64_t[]){2, 3}, (double[]){1, 2, 3, 4, 5, 6});
    sg_tensor *s0 = sg_sum(g, x, 0, false), *s1 = sg_sum(g, x, -1, true);
    ck_assert_int_eq(s0->ndim, 1);
    ck_assert_int_eq(s1->ndim, 2);
    ck_assert_int_eq(s1->shape[0], 2);
    ck_assert_int_eq(s1->shape[1], 1);
    ck_assert_double_eq(sg_get(s0, 0), 5);
    ck_assert_double_eq(sg_get(s0, 2), 9);
    ck_assert_double_eq(sg_get(s1, 0), 6);
    ck_assert_double_eq(sg_get(s1, 1), 15);
    sg_tensor *m = sg_mean(g, x, 1, false), *mx = sg_max(g, x, 0, false);
    ck_assert_double_eq(sg_get(m, 0), 2);
    ck_assert_double_eq(sg_get(m, 1), 5);
    ck_assert_double_eq(sg_get(mx, 1), 5);
    sg_tensor *all = sg_sum_all(g, x), *mall = sg_mean_all(g, x);
    ck_assert_int_eq(all->ndim, 0);
    ck_assert_int_eq(all->numel, 1);
    ck_assert_int_eq(mall->ndim, 0);
    ck_assert_double_eq(sg_get(all, 0), 21);
    ck_assert_double_eq(sg_get(mall, 0), 3.5);
  }
  sg_graph_free(g);
}
END_TEST

/* logsumexp of [1e4, 1e4 - 1] overflows exp when computed naively. */
START_TEST(logsumexp_stable) {
  sg_graph *g = sg_graph_new();
  double want = 1e4 + log1p(exp(-1.0));
  for (int dt = 0; dt < 2; dt++) {
    sg_tensor *x = sg_from_f64(g, (sg_dtype)dt, 1, (int64_t[]){2}, (double[]){1e4, 1e4 - 1});
    sg_tensor *y = sg_logsumexp(g, x, 0, false);
    ck_assert_int_eq(y->ndim, 0);
    double tol = dt == SG_F32 ? 1e4 * 1.2e-7 : 1e4 * 2.3e-16;
    ck_assert_double_eq_tol(sg_get(y, 0), want, tol);
  }
  /* Very negative values must not underflow to log(0). */
  sg_tensor *x = sg_from_f64(g, SG_F64, 1, (int64_t[]){2}, (double[]){-1e4, -1e4});
  ck_assert_double_eq_tol(sg_get(sg_logsumexp(g, x, 0, false), 0), -1e4 + log(2.0), 1e-11);
  sg_graph_free(g);
}
END_TEST

/* -inf entries contribute exp(-inf) = 0; an all -inf slice gives -inf and a
 * zero (not NaN) gradient. */
START_TEST(logsumexp_neg_inf) {
  sg_graph *g = sg_graph_new();
  for (int dt = 0; dt < 2; dt++) {
    sg_tensor *x = sg_from_f64(NULL, (sg_dtype)dt, 2, (int64_t[]){3, 3},
                               (double[]){-INFINITY, 0, log(3.0),          /* log(1 + 3) */
                                          -INFINITY, -INFINITY, -INFINITY, /* all -inf */
                                          2, -INFINITY, 2});               /* 2 + log 2 */
    sg_set_requires_grad(x, true);
    sg_tensor *y = sg_logsumexp(g, x, 1, false);
    double tol = dt == SG_F32 ? 4e-7 : 1e-15;
    ck_assert_double_eq_tol(sg_get(y, 0), log(4.0), tol);
    ck_assert(isinf(sg_get(y, 1)) && sg_get(y, 1) < 0);
    ck_assert_double_eq_tol(sg_get(y, 2), 2 + log(2.0), tol);
    sg_backward_with(g, y, sg_ones(g, (sg_dtype)dt, 1, (int64_t[]){3}));
    const double want[9] = {0, 0.25, 0.75, 0, 0, 0, 0.5, 0, 0.5};
    for (int i = 0; i < 9; i++) {
      double v = sg_get(x->grad, i);
      ck_assert_msg(!isnan(v), "NaN gradient at %d", i);
      ck_assert_double_eq_tol(v, want[i], tol);
    }
    /* Along axis 0 (inner > 1 path): column 0 is [-inf, -inf, 2]. */
    sg_zero_grad(x);
    sg_graph_reset(g);
    sg_tensor *y0 = sg_logsumexp(g, x, 0, true);
    ck_assert_double_eq_tol(sg_get(y0, 0), 2, tol);
    ck_assert_double_eq_tol(sg_get(y0, 1), 0, tol);
    sg_backward_with(g, y0, sg_ones(g, (sg_dtype)dt, 2, (int64_t[]){1, 3}));
    for (int i = 0; i < 9; i++) ck_assert(!isnan(sg_get(x->grad, i)));
    ck_assert_double_eq_tol(sg_get(x->grad, 6), 1, tol);
    sg_free(x);
    sg_graph_reset(g);
  }
  sg_graph_free(g);
}
END_TEST

/* Ties send the gradient to the first maximal element, along the last axis
 * (inner == 1) and along a leading axis (inner > 1). */
START_TEST(max_ties_first) {
  sg_graph *g = sg_graph_new();
  for (int dt = 0; dt < 2; dt++) {
    sg_tensor *x =
        sg_from_f64(NULL, (sg_dtype)dt, 2, (int64_t[]){2, 3}, (double[]){1, 3, 3, 2, 2, 0});
    sg_set_requires_grad(x, true);
    sg_tensor *y = sg_max(g, x, 1, false);
    ck_assert_double_eq(sg_get(y, 0), 3);
    ck_assert_double_eq(sg_get(y, 1), 2);
    sg_backward_with(g, y, sg_from_f64(g, (sg_dtype)dt, 1, (int64_t[]){2}, (double[]){10, 20}));
    const double want1[6] = {0, 10, 0, 20, 0, 0};
    for (int i = 0; i < 6; i++) ck_assert_double_eq(sg_get(x->grad, i), want1[i]);
    sg_zero_grad(x);
    sg_graph_reset(g);
    sg_tensor *z =
        sg_from_f64(NULL, (sg_dtype)dt, 2, (int64_t[]){3, 2}, (double[]){5, 1, 5, 4, 2, 4});
    sg_set_requires_grad(z, true);
    sg_tensor *y0 = sg_max(g, z, 0, true);
    sg_backward_with(g, y0, sg_ones(g, (sg_dtype)dt, 2, (int64_t[]){1, 2}));
    const double want0[6] = {1, 0, 0, 1, 0, 0};
    for (int i = 0; i < 6; i++) ck_assert_double_eq(sg_get(z->grad, i), want0[i]);
    /* A long row (the vectorised path): equal maxima at 37 and 80. */
    sg_tensor *row = sg_zeros(NULL, (sg_dtype)dt, 2, (int64_t[]){2, 100});
    for (int i = 0; i < 200; i++) sg_set(row, i, sin(i));
    sg_set(row, 37, 5);
    sg_set(row, 80, 5);
    sg_set(row, 100 + 99, 7); /* last element of row 1 */
    sg_set_requires_grad(row, true);
    sg_tensor *ym = sg_max(g, row, -1, false);
    ck_assert_double_eq(sg_get(ym, 0), 5);
    ck_assert_double_eq(sg_get(ym, 1), 7);
    sg_backward_with(g, ym, sg_ones(g, (sg_dtype)dt, 1, (int64_t[]){2}));
    for (int i = 0; i < 200; i++)
      ck_assert_double_eq(sg_get(row->grad, i), i == 37 || i == 199 ? 1 : 0);
    sg_free(row);
    sg_free(x);
    sg_free(z);
    sg_graph_reset(g);
  }
  sg_graph_free(g);
}
END_TEST

START_TEST(max_propagates_nan) {
  sg_graph *g = sg_graph_new();
  sg_tensor *x = sg_from_f64(g, SG_F64, 2, (int64_t[]){2, 3}, (double[]){1, NAN, 2, NAN, 0, 5});
  sg_tensor *y = sg_max(g, x, 1, false), *y0 = sg_max(g, x, 0, false);
  ck_assert(isnan(sg_get(y, 0)));
  ck_assert(isnan(sg_get(y, 1)));
  ck_assert(isnan(sg_get(y0, 0)));
  ck_assert(isnan(sg_get(y0, 1)));
  ck_assert_double_eq(sg_get(y0, 2), 5);
  /* A NaN in a long row, where lanes are compared. */
  sg_tensor *row = sg_zeros(g, SG_F32, 1, (int64_t[]){100});
  sg_set(row, 3, 9);
  sg_set(row, 50, NAN);
  ck_assert(isnan(sg_get(sg_max(g, row, 0, false), 0)));
  sg_graph_free(g);
}
END_TEST

/* ---- determinism and accuracy of threaded sums ------------------------- */

static sg_tensor *run_with_threads(sg_graph *g, int threads, all_fn f, sg_tensor *x) {
  int was = omp_get_max_threads();
  omp_set_num_threads(threads);
  sg_tensor *y = f(g, x);
  omp_set_num_threads(was);
  return y;
}

static sg_tensor *sum_last_axis(sg_graph *g, sg_tensor *x) {
  return sg_sum(g, x, -1, false);
}
static sg_tensor *sum_first_axis(sg_graph *g, sg_tensor *x) {
  return sg_sum(g, x, 0, false);
}
static sg_tensor *lse_last_axis(sg_graph *g, sg_tensor *x) {
  return sg_logsumexp(g, x, -1, false);
}

START_TEST(sums_deterministic_across_threads) {
  sg_graph *g = sg_graph_new();
  sg_rng r;
  sg_rng_seed(&r, 99);
  const all_fn fns[] = {(sg_sum_all), (sg_mean_all), sum_last_axis, sum_first_axis, lse_last_axis};
  const int64_t shapes[][2] = {{1, 1000003}, {3, 333337}, {40000, 3}};
  for (int dt = 0; dt < 2; dt++) {
    for (int s = 0; s < 3; s++) {
      sg_tensor *x = sg_rand_uniform(g, &r, (sg_dtype)dt, 2, shapes[s], -1, 1);
      for (size_t f = 0; f < sizeof fns / sizeof fns[0]; f++) {
        sg_tensor *y1 = run_with_threads(g, 1, fns[f], x), *y2 = run_with_threads(g, 2, fns[f], x);
        ck_assert_int_eq(y1->numel, y2->numel);
        ck_assert_msg(memcmp(y1->data, y2->data, (size_t)y1->numel * sg_dtype_size(y1->dtype)) == 0,
                      "fn %zu shape %d dtype %d differs between 1 and 2 threads", f, s, dt);
      }
    }
  }
  sg_graph_free(g);
}
END_TEST

/* The chunked, multi-lane float32 sum of a million values stays close to
 * the exact sum (a single running float sum drifts by ~1e-4 relative). */
START_TEST(sum_all_f32_accuracy) {
  sg_graph *g = sg_graph_new();
  sg_rng r;
  sg_rng_seed(&r, 7);
  int64_t n = 1 << 20;
  sg_tensor *x = sg_rand_uniform(g, &r, SG_F32, 1, &n, 0, 1);
  long double exact = 0;
  for (int64_t i = 0; i < n; i++) exact += sg_get(x, i);
  double got = sg_get(sg_sum_all(g, x), 0);
  ck_assert_double_eq_tol(got, (double)exact, 1e-6 * (double)exact);
  sg_graph_free(g);
}
END_TEST

/* ---- misuse ------------------------------------------------------------- */

typedef struct err_log {
  int count;
  char op[64], msg[400];
} err_log;

static void record_error(const char *op, const char *msg, const char *file, int line, void *user) {
  (void)file;
  (void)line;
  err_log *l = user;
  l->count++;
  snprintf(l->op, sizeof l->op, "%s", op);
  snprintf(l->msg, sizeof l->msg, "%s", msg);
}

START_TEST(errors_reported) {
  err_log log = {0};
  sg_set_error_handler(record_error, &log);
  sg_graph *g = sg_graph_new();
  sg_tensor *x = sg_zeros(g, SG_F64, 2, (int64_t[]){2, 3});
  ck_assert_ptr_null(sg_sum(g, x, 2, false));
  ck_assert_int_eq(log.count, 1);
  ck_assert_str_eq(log.op, "sg_sum");
  ck_assert_ptr_nonnull(strstr(log.msg, "[2, 3]"));
  ck_assert_ptr_null(sg_logsumexp(g, x, -3, true));
  ck_assert_str_eq(log.op, "sg_logsumexp");
  sg_tensor *empty = sg_zeros(g, SG_F64, 2, (int64_t[]){2, 0});
  ck_assert_ptr_null(sg_max(g, empty, 1, false));
  ck_assert_str_eq(log.op, "sg_max");
  ck_assert_ptr_nonnull(strstr(log.msg, "[2, 0]"));
  ck_assert_int_eq(log.count, 3);
  /* NULL in, NULL out, silently. */
  ck_assert_ptr_null(sg_mean(g, NULL, 0, false));
  ck_assert_ptr_null(sg_sum_all(g, NULL));
  ck_assert_int_eq(log.count, 3);
  /* Empty reductions: sum 0, logsumexp -inf. */
  sg_tensor *s = sg_sum(g, empty, 1, false), *l = sg_logsumexp(g, empty, 1, false);
  ck_assert_double_eq(sg_get(s, 1), 0);
  ck_assert(isinf(sg_get(l, 0)) && sg_get(l, 0) < 0);
  sg_graph_free(g);
  sg_set_error_handler(NULL, NULL);
}
END_TEST

Suite *suite_reduce(void) {
  const sg_test_case cases[] = {
      {"gradcheck_sum", gradcheck_sum},
      {"gradcheck_mean", gradcheck_mean},
      {"gradcheck_max", gradcheck_max},
      {"gradcheck_logsumexp", gradcheck_logsumexp},
      {"gradcheck_sum_all", gradcheck_sum_all},
      {"gradcheck_mean_all", gradcheck_mean_all},
      {"forward_vs_naive", forward_vs_naive},
      {"forward_values", forward_values},
      {"logsumexp_stable", logsumexp_stable},
      {"logsumexp_neg_inf", logsumexp_neg_inf},
      {"max_ties_first", max_ties_first},
      {"max_propagates_nan", max_propagates_nan},
      {"sums_deterministic_across_threads", sums_deterministic_across_threads},
      {"sum_all_f32_accuracy", sum_all_f32_accuracy},
      {"errors_reported", errors_reported},
  };
  return sg_test_suite("reduce", cases, sizeof cases / sizeof cases[0], 0);
}
