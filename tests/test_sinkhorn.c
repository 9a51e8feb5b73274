/* Capacity Sinkhorn: float64 gradient checks of both backward modes,
 * implicit against unrolled on converged inputs, PyTorch fixtures
 * (tests/make_sinkhorn_fixtures.py), forward properties, K > M*N, memory,
 * thread-count independence and misuse reports. */
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "sg_test.h"

/* ---- a plain reference of the forward, for input screening ------------- */

/* Runs the iteration of docs/layers.md on one K x M sample of doubles for
 * exactly iters iterations. Reports whether any column step capped, whether
 * the final column sums leave some column under capacity, and the distance
 * to the max(0, .) kink of every column step of a column not yet capped
 * after the first iteration (such columns stay at or above capacity, so
 * their kink is never crossed). */
typedef struct ref_stats {
  bool capped, some_under;
  double kink;
} ref_stats;

static double lse(const double *v, int n, int stride) {
  double mx = -INFINITY, s = 0;
  for (int i = 0; i < n; i++) mx = fmax(mx, v[i * stride]);
  for (int i = 0; i < n; i++) s += exp(v[i * stride] - mx);
  return mx + log(s);
}

static void ref_sample(double *x, int K, int M, double row_mass, double cap, int iters,
                       ref_stats *st) {
  bool sticky[16] = {false};
  for (int t = 0; t < iters; t++) {
    for (int m = 0; m < M; m++) {
      double d = lse(x + m, K, M) - log(cap);
      if (!sticky[m]) st->kink = fmin(st->kink, fabs(d));
      if (d > 0) {
        st->capped = true;
        sticky[m] |= t >= 1;
        for (int k = 0; k < K; k++) x[k * M + m] -= d;
      }
    }
    for (int k = 0; k < K; k++) {
      double r = lse(x + k * M, M, 1);
      for (int m = 0; m < M; m++) x[k * M + m] += log(row_mass) - r;
    }
  }
  for (int m = 0; m < M; m++) st->some_under |= exp(lse(x + m, K, M)) < cap;
}

static ref_stats ref_run(const sg_tensor *x, double row_mass, double cap, int iters,
                         sg_tensor **y_out) {
  int K = (int)x->shape[x->ndim - 2], M = (int)x->shape[x->ndim - 1];
  sg_tensor *y = sg_clone(NULL, x);
  ref_stats st = {false, false, INFINITY};
  for (int64_t s = 0; s < x->numel / (K * M); s++)
    ref_sample(sg_f64(y) + s * K * M, K, M, row_mass, cap, iters, &st);
  if (y_out)
    *y_out = y;
  else
    sg_free(y);
  return st;
}

static double max_abs(const sg_tensor *t) {
  double m = 0;
  for (int64_t i = 0; i < t->numel; i++) m = fmax(m, fabs(sg_get(t, i)));
  return m;
}

/* ---- inputs ------------------------------------------------------------- */

/* log_softmax over M of N(0, spread) logits plus a per-column bias (so
 * columns are capped), or the raw logits when normalise is false. */
static sg_tensor *make_input(sg_rng *r, int S, int K, int M, double spread, const double *bias,
                             bool normalise) {
  sg_tensor *x = sg_empty(NULL, SG_F64, 3, (int64_t[]){S, K, M});
  double *d = sg_f64(x);
  for (int64_t i = 0; i < x->numel; i++) d[i] = spread * sg_rng_normal(r) + bias[i % M];
  for (int64_t row = 0; normalise && row < x->numel / M; row++) {
    double l = lse(d + row * M, M, 1);
    for (int m = 0; m < M; m++) d[row * M + m] -= l;
  }
  sg_set_requires_grad(x, true);
  return x;
}

typedef struct sk_case {
  double row_mass, cap;
  int iters;
  double tol;
  sg_sinkhorn_grad mode;
  bool balanced; /* sg_sinkhorn_balanced */
} sk_case;

static sg_tensor *apply_sinkhorn(sg_graph *g, sg_tensor *const *in, int n, void *ctx) {
  (void)n;
  const sk_case *c = ctx;
  if (c->balanced)
    return sg_sinkhorn_balanced(g, in[0], c->row_mass, c->cap, c->iters, c->tol, c->mode, NULL);
  return sg_sinkhorn(g, in[0], c->row_mass, c->cap, c->iters, c->tol, c->mode, NULL);
}

/* ---- gradchecks ----------------------------------------------------------- */

static const struct {
  int S, K, M;
  double cap, bias[3];
} shapes[] = {
    {3, 6, 2, 4.0, {1.5, 0, 0}},    /* K = 6 < M*N = 8 */
    {2, 8, 2, 4.0, {0.8, 0, 0}},    /* K = M*N = 8 */
    {4, 6, 3, 2.0, {0.9, 0.3, 0}},  /* K = M*N = 6 */
    {3, 5, 3, 2.0, {1.0, 0, -0.5}}, /* K = 5 < M*N = 6, three columns */
};

START_TEST(gradcheck_sinkhorn) {
  sg_rng r;
  sg_rng_seed(&r, 101);
  const int iters[] = {1, 3, 20};
  for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
    sg_tensor *x = make_input(&r, shapes[i].S, shapes[i].K, shapes[i].M, 1.5, shapes[i].bias, true);
    for (int j = 0; j < 3; j++) {
      sk_case c = {1.0, shapes[i].cap, iters[j], 0.0, SG_SINKHORN_UNROLLED, false};
      ref_stats st = ref_run(x, c.row_mass, c.cap, c.iters, NULL);
      /* The input exercises capping, and differences of step 1e-6 (which
       * move an LSE by at most 1e-6) cannot cross the kink. */
      ck_assert_msg(st.capped, "shape %zu: no column was capped", i);
      ck_assert_msg(st.kink > 1e-5, "shape %zu iters %d: kink at %g", i, c.iters, st.kink);
      if (shapes[i].K < shapes[i].M * shapes[i].cap && c.iters == 20)
        ck_assert_msg(st.some_under, "shape %zu: no column under capacity", i);
      SG_ASSERT_CHECK(sg_gradcheck(apply_sinkhorn, &x, 1, &c, NULL));
      /* float32 round-off bound: see fixtures_torch. */
      double atol = 32 * 0x1p-24 * (1 + max_abs(x));
      SG_ASSERT_CHECK(sg_check_f32_forward(apply_sinkhorn, &x, 1, &c, atol, 0));
    }
    sg_free(x);
  }
}
END_TEST

/* Unnormalised rows with row_mass 2, per-sample stopping at a tolerance,
 * and K > M*N (infeasible), all through the unrolled backward. */
START_TEST(gradcheck_sinkhorn_variants) {
  sg_rng r;
  sg_rng_seed(&r, 102);
  sg_tensor *xu = make_input(&r, 3, 4, 3, 1.0, (double[]){0.5, 0, 0}, false);
  sk_case cu = {2.0, 3.0, 5, 0.0, SG_SINKHORN_UNROLLED, false};
  ck_assert(ref_run(xu, 2.0, 3.0, 5, NULL).kink > 1e-5);
  SG_ASSERT_CHECK(sg_gradcheck(apply_sinkhorn, &xu, 1, &cu, NULL));

  /* Stopping at tol: the samples stop after different iteration counts. */
  sg_tensor *xt = make_input(&r, 4, 6, 3, 1.5, (double[]){1.0, 0.2, 0}, true);
  sk_case ct = {1.0, 2.5, 400, 1e-5, SG_SINKHORN_UNROLLED, false};
  sg_graph *g = sg_graph_new();
  sg_sinkhorn_info info;
  sg_sinkhorn(g, xt, 1.0, 2.5, 400, 1e-5, SG_SINKHORN_UNROLLED, &info);
  ck_assert(info.converged && info.iters > 3 && info.iters < 400);
  SG_ASSERT_CHECK(sg_gradcheck(apply_sinkhorn, &xt, 1, &ct, NULL));

  sg_tensor *xi = make_input(&r, 2, 10, 2, 1.5, (double[]){0.5, 0, 0}, true);
  sk_case ci = {1.0, 4.0, 20, 0.0, SG_SINKHORN_UNROLLED, false};
  ck_assert(ref_run(xi, 1.0, 4.0, 20, NULL).kink > 1e-5);
  SG_ASSERT_CHECK(sg_gradcheck(apply_sinkhorn, &xi, 1, &ci, NULL));
  /* Strongly infeasible (K r / M c = 2.5): the column scalings shrink 2.5x
   * per iteration, so 60 iterations cross several absorptions (epochs). */
  sk_case ca = {1.0, 2.0, 60, 0.0, SG_SINKHORN_UNROLLED, false};
  ck_assert(ref_run(xi, 1.0, 2.0, 60, NULL).kink > 1e-5);
  SG_ASSERT_CHECK(sg_gradcheck(apply_sinkhorn, &xi, 1, &ca, NULL));
  sg_graph_free(g);
  sg_free(xu);
  sg_free(xt);
  sg_free(xi);
}
END_TEST

/* The implicit gradient is the gradient of the fixed-point map, so it must
 * match finite differences of a forward converged to round-off (tol 0 and
 * enough iterations: a fixed iteration count keeps the map smooth). */
static void check_implicit_fd(sg_tensor *x, double row_mass, double cap, int iters) {
  sk_case c = {row_mass, cap, iters, 0.0, SG_SINKHORN_IMPLICIT, false};
  sg_graph *g = sg_graph_new();
  sg_sinkhorn_info info;
  sg_set_grad_enabled(g, false);
  sg_sinkhorn(g, x, row_mass, cap, iters, 0.0, SG_SINKHORN_IMPLICIT, &info);
  sg_graph_free(g);
  double floor = fmax(0, x->shape[1] * row_mass - x->shape[2] * cap) / (double)x->shape[2];
  ck_assert_msg(info.col_excess - floor < 1e-13, "not converged: excess %g", info.col_excess);
  SG_ASSERT_CHECK(sg_gradcheck(apply_sinkhorn, &x, 1, &c, NULL));
}

START_TEST(gradcheck_sinkhorn_implicit) {
  sg_rng r;
  sg_rng_seed(&r, 103);
  sg_tensor *xs[] = {
      make_input(&r, 3, 6, 3, 1.5, (double[]){1.0, 0, -0.3}, true), /* K < MN, cap 2.5 */
      make_input(&r, 3, 8, 2, 1.5, (double[]){0.8, 0, 0}, true),    /* K = MN = 8 */
      make_input(&r, 3, 6, 3, 1.5, (double[]){0.8, 0, -0.3}, true), /* K = MN = 6 */
      make_input(&r, 3, 4, 3, 1.0, (double[]){0.5, 0, 0}, false),   /* raw rows */
      make_input(&r, 2, 10, 2, 1.5, (double[]){0.5, 0, 0}, true),   /* K > MN */
  };
  const double caps[] = {2.5, 4.0, 2.0, 3.0, 4.0}, masses[] = {1, 1, 1, 2, 1};
  for (int i = 0; i < 5; i++) {
    check_implicit_fd(xs[i], masses[i], caps[i], 1500);
    sg_free(xs[i]);
  }
}
END_TEST

/* ---- implicit against unrolled ----------------------------------------- */

static sg_tensor *grad_of(sg_tensor *x, const sk_case *c, const sg_tensor *w,
                          sg_sinkhorn_info *info) {
  sg_graph *g = sg_graph_new();
  sg_zero_grad(x);
  sg_tensor *y = sg_sinkhorn(g, x, c->row_mass, c->cap, c->iters, c->tol, c->mode, info);
  sg_backward_with(g, y, w);
  sg_graph_free(g);
  return sg_clone(NULL, x->grad);
}

static double max_abs_diff(const sg_tensor *a, const sg_tensor *b) {
  double d = 0;
  for (int64_t i = 0; i < a->numel; i++) d = fmax(d, fabs(sg_get(a, i) - sg_get(b, i)));
  return d;
}

/* Returns the largest |implicit - unrolled| gradient difference. */
static double implicit_vs_unrolled(sg_rng *r, sg_tensor *x, double row_mass, double cap, int iters,
                                   double tol) {
  sg_tensor *w = sg_rand_normal(NULL, r, SG_F64, x->ndim, x->shape, 0, 1);
  sk_case cu = {row_mass, cap, iters, tol, SG_SINKHORN_UNROLLED, false};
  sk_case ci = {row_mass, cap, iters, tol, SG_SINKHORN_IMPLICIT, false};
  sg_sinkhorn_info iu, ii;
  sg_tensor *gu = grad_of(x, &cu, w, &iu), *gi = grad_of(x, &ci, w, &ii);
  ck_assert_int_eq(iu.iters, ii.iters);
  double d = max_abs_diff(gu, gi);
  sg_free(w);
  sg_free(gu);
  sg_free(gi);
  return d;
}

START_TEST(implicit_matches_unrolled) {
  sg_rng r;
  sg_rng_seed(&r, 104);
  struct {
    int S, K, M;
    double spread, bias[3], row_mass, cap;
    bool normalise;
  } cases[] = {
      {4, 6, 3, 1.5, {1.0, 0, -0.3}, 1, 2.5, true}, /* K < MN: capped and uncapped */
      {4, 8, 2, 1.5, {0.8, 0, 0}, 1, 4.0, true},    /* K = MN, M = 2 */
      {4, 6, 3, 1.5, {0.8, 0, -0.3}, 1, 2.0, true}, /* K = MN, M = 3 */
      {4, 4, 3, 1.0, {0.5, 0, 0}, 2, 3.0, false},   /* raw rows, row_mass 2 */
      {3, 10, 2, 1.5, {0.5, 0, 0}, 1, 4.0, true},   /* K > MN */
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    sg_tensor *x = make_input(&r, cases[i].S, cases[i].K, cases[i].M, cases[i].spread,
                              cases[i].bias, cases[i].normalise);
    /* K > M*N never meets a tolerance: run a fixed count instead. */
    bool infeasible = cases[i].K * cases[i].row_mass > cases[i].M * cases[i].cap;
    double d =
        implicit_vs_unrolled(&r, x, cases[i].row_mass, cases[i].cap, 3000, infeasible ? 0 : 1e-12);
    ck_assert_msg(d < 1e-6, "case %zu: implicit and unrolled differ by %g", i, d);
    sg_free(x);
  }
}
END_TEST

/* Not converged: the implicit gradient differs from the unrolled one (it
 * differentiates the current iterate as if it were the fixed point). After
 * a single iteration with K r < M c no column is active yet, and both are
 * the exact gradient of that iteration. */
START_TEST(implicit_not_converged) {
  sg_rng r;
  sg_rng_seed(&r, 105);
  sg_tensor *x = make_input(&r, 3, 6, 3, 2.0, (double[]){1.5, 0, 0}, true);
  ck_assert(ref_run(x, 1, 2.5, 1, NULL).capped);
  ck_assert_double_lt(implicit_vs_unrolled(&r, x, 1, 2.5, 1, 0), 1e-14);
  ck_assert_double_gt(implicit_vs_unrolled(&r, x, 1, 2.5, 3, 0), 1e-3);
  ck_assert_double_gt(implicit_vs_unrolled(&r, x, 1, 2.0, 1, 0), 1e-3); /* K r = M c */
  sg_free(x);
}
END_TEST

/* ---- PyTorch fixtures --------------------------------------------------- */

static const char *const fixture_cases[] = {
    "lt_t1",
    "lt_t3",
    "lt_t20",
    "eq2_t1",
    "eq2_t3",
    "eq2_t20",
    "eq3_t1",
    "eq3_t3",
    "eq3_t20",
    "lt3_t10",
    "tol_unrolled",
    "unnorm_unrolled",
    "unnorm_implicit",
    "infeasible_unrolled",
    "infeasible_implicit",
    "conv_implicit_lt",
    "conv_implicit_eq",
    "conv_implicit_eq3",
    "noconv_implicit",
    "bal_eq2_t3",
    "bal_eq2_t20",
    "bal_eq3_t20",
    "bal_unnorm",
    "bal_tol_unrolled",
    "bal_conv_implicit",
};

static sg_tensor *load_fixture(const char *name, const char *part) {
  char path[512];
  snprintf(path, sizeof path, "%s/sinkhorn_%s_%s.npy", SG_FIXTURE_DIR, name, part);
  sg_io_error err;
  sg_tensor *t = sg_npy_load(path, &err);
  ck_assert_msg(t != NULL, "%s: %s", path, err.msg);
  ck_assert_int_eq(t->dtype, SG_F64);
  return t;
}

/* Runs a fixture case in dtype dt; returns y and the input's gradient. */
static void run_fixture(sg_tensor *const *f, sg_dtype dt, sg_tensor **y_out, sg_tensor **g_out,
                        sg_sinkhorn_info *info) {
  const double *meta = sg_f64(f[4]);
  sg_tensor *x = sg_to_dtype(NULL, f[0], dt), *w = sg_to_dtype(NULL, f[1], dt);
  sg_set_requires_grad(x, true);
  sg_graph *g = sg_graph_new();
  sk_case c = {meta[0], meta[1], (int)meta[2], meta[3], (sg_sinkhorn_grad)meta[4], meta[8] != 0};
  sg_tensor *y = c.balanced
                     ? sg_sinkhorn_balanced(g, x, c.row_mass, c.cap, c.iters, c.tol, c.mode, info)
                     : sg_sinkhorn(g, x, c.row_mass, c.cap, c.iters, c.tol, c.mode, info);
  ck_assert_ptr_nonnull(y);
  sg_backward_with(g, y, w);
  *y_out = sg_to_dtype(NULL, y, SG_F64);
  *g_out = sg_to_dtype(NULL, x->grad, SG_F64);
  sg_graph_free(g);
  sg_free(x);
  sg_free(w);
}

/* float32 bound: each float32 operation errs by u = 2^-24 relative; the
 * log-domain values, potentials and LSEs are of magnitude up to about
 * 1 + max|x|, so rounding the input, the first column step and the final
 * x - U0 - V0 + log a + log b each err by a few u (1 + max|x|), and the
 * scaling iterations by a few u relative in the masses; the normalised
 * iteration contracts, so these errors do not pile up with the iteration
 * count (measured: under 2 u (1 + max|x|) for the output and under
 * u (1 + max|x|)(1 + max|g|) for the gradient, up to 2000 iterations). We
 * allow 32 u (1 + max|x|), times (1 + max|g|) for the gradient. The float32
 * runs of the converged cases cannot reach tol 1e-13 and run to max_iters,
 * still converged to float32 round-off. */
START_TEST(fixtures_torch) {
  const double u32 = 0x1p-24;
  for (size_t c = 0; c < sizeof fixture_cases / sizeof fixture_cases[0]; c++) {
    const char *name = fixture_cases[c];
    sg_tensor *f[5] = {load_fixture(name, "x"), load_fixture(name, "w"), load_fixture(name, "y"),
                       load_fixture(name, "gx"), load_fixture(name, "meta")};
    const double *meta = sg_f64(f[4]);
    sg_tensor *y, *gx;
    sg_sinkhorn_info info;
    run_fixture(f, SG_F64, &y, &gx, &info);
    ck_assert_msg(max_abs_diff(y, f[2]) <= 1e-10, "%s: y off by %g", name, max_abs_diff(y, f[2]));
    ck_assert_msg(max_abs_diff(gx, f[3]) <= 1e-10, "%s: grad off by %g", name,
                  max_abs_diff(gx, f[3]));
    ck_assert_int_eq(info.iters, (int)meta[5]);
    ck_assert_double_eq_tol(info.col_excess, meta[6], 1e-10);
    ck_assert_int_eq(info.converged, meta[7] != 0);
    sg_free(y);
    sg_free(gx);

    run_fixture(f, SG_F32, &y, &gx, &info);
    double scale = 32 * u32 * (1 + max_abs(f[0]));
    ck_assert_msg(max_abs_diff(y, f[2]) <= scale, "%s f32: y off by %g (bound %g)", name,
                  max_abs_diff(y, f[2]), scale);
    ck_assert_msg(max_abs_diff(gx, f[3]) <= scale * (1 + max_abs(f[3])),
                  "%s f32: grad off by %g (bound %g)", name, max_abs_diff(gx, f[3]),
                  scale * (1 + max_abs(f[3])));
    sg_free(y);
    sg_free(gx);
    for (int i = 0; i < 5; i++) sg_free(f[i]);
  }
}
END_TEST

/* ---- forward properties ------------------------------------------------- */

static void col_row_sums(const sg_tensor *y, int64_t s, double *cols, double *rows) {
  int64_t K = y->shape[y->ndim - 2], M = y->shape[y->ndim - 1];
  for (int64_t m = 0; m < M; m++) cols[m] = 0;
  for (int64_t k = 0; k < K; k++) {
    rows[k] = 0;
    for (int64_t m = 0; m < M; m++) {
      double p = exp(sg_get(y, (s * K + k) * M + m));
      rows[k] += p;
      cols[m] += p;
    }
  }
}

/* Values against the plain reference, rows summing to row_mass, columns
 * within capacity + tol at convergence, and iteration counts. */
START_TEST(forward_values) {
  sg_rng r;
  sg_rng_seed(&r, 106);
  sg_tensor *x = make_input(&r, 5, 6, 3, 1.5, (double[]){1.0, 0, -0.3}, false);
  sg_graph *g = sg_graph_new();
  sg_sinkhorn_info info;
  /* tol <= 0: exactly max_iters, never "converged". */
  sg_tensor *y = sg_sinkhorn(g, x, 1.5, 3.0, 7, 0.0, SG_SINKHORN_UNROLLED, &info);
  ck_assert_int_eq(info.iters, 7);
  ck_assert(!info.converged);
  sg_tensor *yref;
  ref_run(x, 1.5, 3.0, 7, &yref);
  ck_assert_double_lt(max_abs_diff(y, yref), 1e-13);
  double cols[3], rows[6];
  for (int s = 0; s < 5; s++) {
    col_row_sums(y, s, cols, rows);
    for (int k = 0; k < 6; k++) ck_assert_double_eq_tol(rows[k], 1.5, 1e-14);
  }
  /* A tolerance: stops early, and every column is within cap + tol. */
  y = sg_sinkhorn(g, x, 1.5, 3.0, 1000, 1e-9, SG_SINKHORN_UNROLLED, &info);
  ck_assert(info.converged && info.iters < 1000 && info.col_excess < 1e-9);
  for (int s = 0; s < 5; s++) {
    col_row_sums(y, s, cols, rows);
    for (int m = 0; m < 3; m++) ck_assert_double_le(cols[m], 3.0 + 1e-9);
    for (int k = 0; k < 6; k++) ck_assert_double_eq_tol(rows[k], 1.5, 1e-14);
  }
  sg_free(yref);
  sg_free(x);
  sg_graph_free(g);
}
END_TEST

/* Per-sample stopping: a sample's result does not depend on its batch. */
START_TEST(per_sample_stopping) {
  sg_rng r;
  sg_rng_seed(&r, 107);
  sg_tensor *x = make_input(&r, 6, 6, 3, 1.5, (double[]){1.0, 0.2, 0}, true);
  sg_graph *g = sg_graph_new();
  sg_sinkhorn_info all, one;
  sg_tensor *y = sg_sinkhorn(g, x, 1, 2.5, 500, 1e-7, SG_SINKHORN_UNROLLED, &all);
  int max_single = 0, min_single = 1 << 30;
  for (int s = 0; s < 6; s++) {
    sg_tensor *xs = sg_from_data(g, SG_F64, 3, (int64_t[]){1, 6, 3}, sg_f64(x) + s * 18);
    sg_tensor *ys = sg_sinkhorn(g, xs, 1, 2.5, 500, 1e-7, SG_SINKHORN_UNROLLED, &one);
    ck_assert(memcmp(sg_f64(ys), sg_f64(y) + s * 18, 18 * sizeof(double)) == 0);
    max_single = one.iters > max_single ? one.iters : max_single;
    min_single = one.iters < min_single ? one.iters : min_single;
  }
  ck_assert_int_eq(all.iters, max_single);
  ck_assert_int_lt(min_single, max_single); /* the samples really stopped apart */
  sg_graph_free(g);
  sg_free(x);
}
END_TEST

/* K > M*N: infeasible. It runs max_iters, rows still sum to row_mass, every
 * column ends above capacity, converging to the common sum K r / M. */
START_TEST(infeasible_capacity) {
  sg_rng r;
  sg_rng_seed(&r, 108);
  sg_tensor *x = make_input(&r, 3, 10, 2, 1.5, (double[]){0.5, 0, 0}, true);
  sg_graph *g = sg_graph_new();
  sg_sinkhorn_info info;
  sg_tensor *y = sg_sinkhorn(g, x, 1, 4.0, 300, 1e-3, SG_SINKHORN_UNROLLED, &info);
  ck_assert_int_eq(info.iters, 300);
  ck_assert(!info.converged);
  ck_assert_double_eq_tol(info.col_excess, (10 - 2 * 4.0) / 2, 1e-9);
  double cols[2], rows[10];
  for (int s = 0; s < 3; s++) {
    col_row_sums(y, s, cols, rows);
    for (int k = 0; k < 10; k++) ck_assert_double_eq_tol(rows[k], 1, 1e-14);
    for (int m = 0; m < 2; m++) ck_assert_double_eq_tol(cols[m], 5.0, 1e-9);
  }
  sg_graph_free(g);
  sg_free(x);
}
END_TEST

/* Masked (-inf) entries keep zero mass, the rest stays finite, and a loss
 * over the finite outputs sends no gradient to the masked inputs. */
START_TEST(masked_entries) {
  sg_rng r;
  sg_rng_seed(&r, 109);
  for (int mode = 0; mode < 2; mode++) {
    sg_tensor *x = make_input(&r, 2, 6, 3, 1.5, (double[]){1.0, 0, 0}, true);
    sg_set(x, 0, -INFINITY);
    sg_set(x, 3 * 3 + 2, -INFINITY);
    sg_graph *g = sg_graph_new();
    sg_tensor *w = sg_rand_normal(g, &r, SG_F64, 3, x->shape, 0, 1);
    sg_set(w, 0, 0);
    sg_set(w, 11, 0);
    sg_tensor *y = sg_sinkhorn(g, x, 1, 2.5, 200, 1e-12, (sg_sinkhorn_grad)mode, NULL);
    sg_backward_with(g, y, w);
    for (int64_t i = 0; i < y->numel; i++) {
      bool masked = i == 0 || i == 11;
      ck_assert(masked ? sg_get(y, i) == -INFINITY : isfinite(sg_get(y, i)));
      ck_assert(isfinite(sg_get(x->grad, i)));
      if (masked) ck_assert_double_eq(sg_get(x->grad, i), 0);
    }
    sg_graph_free(g);
    sg_free(x);
  }
}
END_TEST

/* A mask that splits a sample into two blocks (rows 0-1 on column 0, rows
 * 2-3 on column 1): the result is fixed (every finite entry is log 1), so
 * the gradient is zero; the implicit system then has a second null
 * direction besides the gauge. */
START_TEST(masked_disconnected) {
  const double inf = INFINITY;
  sg_tensor *x = sg_from_f64(NULL, SG_F64, 3, (int64_t[]){1, 4, 2},
                             (double[]){0.3, -inf, -0.7, -inf, -inf, 1.1, -inf, 0.2});
  sg_set_requires_grad(x, true);
  sg_rng r;
  sg_rng_seed(&r, 112);
  for (int mode = 0; mode < 2; mode++) {
    sg_graph *g = sg_graph_new();
    sg_tensor *w = sg_rand_normal(g, &r, SG_F64, 3, x->shape, 0, 1);
    const int masked[] = {1, 3, 4, 6};
    for (int i = 0; i < 4; i++) sg_set(w, masked[i], 0);
    sg_zero_grad(x);
    sg_tensor *y = sg_sinkhorn(g, x, 1, 2.0, 10, 0, (sg_sinkhorn_grad)mode, NULL);
    sg_backward_with(g, y, w);
    for (int i = 0; i < 8; i++) {
      ck_assert(isfinite(sg_get(y, i)) ? fabs(sg_get(y, i)) < 1e-15 : sg_get(y, i) == -inf);
      ck_assert_double_eq_tol(sg_get(x->grad, i), 0, 1e-15);
    }
    sg_graph_free(g);
  }
  sg_free(x);
}
END_TEST

/* Two 2 x 2 blocks (rows 0-1 on columns 0-1, rows 2-3 on columns 2-3) of
 * a 4 x 4 sample with K r = M c: each block is balanced on its own, and the
 * implicit system has a second, inexact null direction besides the gauge.
 * The implicit gradient still matches the converged unrolled one. */
START_TEST(masked_blocks_implicit) {
  const double inf = INFINITY;
  sg_tensor *x = sg_from_f64(NULL, SG_F64, 3, (int64_t[]){1, 4, 4},
                             (double[]){0.3, -0.4, -inf, -inf, -0.9, 0.5, -inf, -inf, -inf, -inf,
                                        0.7, -0.2, -inf, -inf, 0.1, 0.6});
  sg_set_requires_grad(x, true);
  sg_rng r;
  sg_rng_seed(&r, 113);
  sg_tensor *w = sg_rand_normal(NULL, &r, SG_F64, 3, x->shape, 0, 1);
  for (int i = 0; i < 16; i++)
    if (isinf(sg_get(x, i))) sg_set(w, i, 0);
  sk_case cu = {1, 1.0, 3000, 1e-13, SG_SINKHORN_UNROLLED, false};
  sk_case ci = {1, 1.0, 3000, 1e-13, SG_SINKHORN_IMPLICIT, false};
  sg_sinkhorn_info info;
  sg_tensor *gu = grad_of(x, &cu, w, &info), *gi = grad_of(x, &ci, w, &info);
  ck_assert(info.converged);
  ck_assert_double_gt(max_abs(gu), 0.1);
  ck_assert_double_lt(max_abs_diff(gu, gi), 1e-6);
  sg_free(gu);
  sg_free(gi);
  sg_free(w);
  sg_free(x);
}
END_TEST

/* Results, info and gradients are bitwise the same on 1 and 2 threads
 * (the batch is large enough to run in parallel). */
START_TEST(thread_independent) {
  sg_rng r;
  sg_rng_seed(&r, 110);
  sg_tensor *x = make_input(&r, 512, 8, 2, 1.5, (double[]){0.8, 0, 0}, true);
  sg_tensor *w = sg_rand_normal(NULL, &r, SG_F64, 3, x->shape, 0, 1);
  int saved = omp_get_max_threads();
  for (int mode = 0; mode < 2; mode++) {
    sk_case c = {1, 4.0, 50, 1e-6, (sg_sinkhorn_grad)mode, false};
    omp_set_num_threads(1);
    sg_sinkhorn_info i1, i2;
    sg_tensor *g1 = grad_of(x, &c, w, &i1);
    omp_set_num_threads(2);
    sg_tensor *g2 = grad_of(x, &c, w, &i2);
    ck_assert(memcmp(sg_f64(g1), sg_f64(g2), (size_t)x->numel * sizeof(double)) == 0);
    ck_assert(i1.iters == i2.iters && i1.col_excess == i2.col_excess);
    sg_free(g1);
    sg_free(g2);
  }
  omp_set_num_threads(saved);
  sg_free(x);
  sg_free(w);
}
END_TEST

/* Arena bytes after forward + backward on a fresh graph: the implicit mode
 * keeps nothing per iteration; the unrolled mode keeps a record of 1 + K + M
 * numbers per sample and iteration after the first. */
static size_t arena_after(const sg_tensor *x0, int iters, sg_sinkhorn_grad mode) {
  sg_tensor *x = sg_clone(NULL, x0);
  sg_set_requires_grad(x, true);
  sg_graph *g = sg_graph_new();
  sg_tensor *y = sg_sinkhorn(g, x, 1, 4.0, iters, 0, mode, NULL);
  sg_backward_with(g, y, sg_ones(g, x->dtype, 3, x->shape));
  size_t bytes = sg_graph_arena_bytes(g);
  sg_graph_free(g);
  sg_free(x);
  return bytes;
}

START_TEST(memory_implicit_flat) {
  sg_rng r;
  sg_rng_seed(&r, 111);
  sg_tensor *x = make_input(&r, 256, 8, 2, 1.5, (double[]){0.8, 0, 0}, true);
  size_t record = 256 * (1 + 8 + 2) * sizeof(double);
  ck_assert_uint_eq(arena_after(x, 10, SG_SINKHORN_IMPLICIT),
                    arena_after(x, 1000, SG_SINKHORN_IMPLICIT));
  ck_assert_uint_ge(arena_after(x, 1000, SG_SINKHORN_UNROLLED), 999 * record);
  sg_free(x);
}
END_TEST

/* ---- misuse ------------------------------------------------------------- */

static int n_errors;
static char last_error[512];
static void record_error(const char *op, const char *msg, const char *file, int line, void *u) {
  (void)file, (void)line, (void)u;
  n_errors++;
  snprintf(last_error, sizeof last_error, "%s: %s", op, msg);
}

START_TEST(misuse_reports) {
  sg_set_error_handler(record_error, NULL);
  sg_graph *g = sg_graph_new();
  sg_tensor *x = sg_zeros(g, SG_F64, 3, (int64_t[]){2, 4, 3});
  sg_tensor *v = sg_zeros(g, SG_F64, 1, (int64_t[]){4});
  sg_sinkhorn_info info = {.iters = 99};
  n_errors = 0;
  ck_assert_ptr_null(sg_sinkhorn(g, NULL, 1, 2, 10, 0, SG_SINKHORN_UNROLLED, &info));
  ck_assert_int_eq(n_errors, 0); /* NULL input: silent */
  ck_assert_int_eq(info.iters, 0);
  ck_assert_ptr_null(sg_sinkhorn(g, v, 1, 2, 10, 0, SG_SINKHORN_UNROLLED, NULL));
  ck_assert_ptr_nonnull(strstr(last_error, "[4]"));
  ck_assert_ptr_null(sg_sinkhorn(g, x, 0, 2, 10, 0, SG_SINKHORN_UNROLLED, NULL));
  ck_assert_ptr_nonnull(strstr(last_error, "[2, 4, 3]"));
  ck_assert_ptr_null(sg_sinkhorn(g, x, 1, NAN, 10, 0, SG_SINKHORN_UNROLLED, NULL));
  ck_assert_ptr_null(sg_sinkhorn(g, x, 1, -1, 10, 0, SG_SINKHORN_UNROLLED, NULL));
  ck_assert_ptr_null(sg_sinkhorn(g, x, 1, 2, 0, 0, SG_SINKHORN_UNROLLED, NULL));
  ck_assert_ptr_null(sg_sinkhorn(g, x, 1, 2, 10, NAN, SG_SINKHORN_UNROLLED, NULL));
  ck_assert_ptr_null(sg_sinkhorn(g, x, 1, 2, 10, 0, (sg_sinkhorn_grad)7, NULL));
  ck_assert_ptr_nonnull(strstr(last_error, "sg_sinkhorn"));
  ck_assert_int_eq(n_errors, 7);
  /* balanced: K row_mass must equal M col_cap (here 4 x 1 against 3 x 2) */
  ck_assert_ptr_null(sg_sinkhorn_balanced(g, x, 1, 2, 10, 0, SG_SINKHORN_UNROLLED, NULL));
  ck_assert_ptr_nonnull(strstr(last_error, "sg_sinkhorn_balanced"));
  ck_assert_ptr_nonnull(strstr(last_error, "slack"));
  ck_assert_int_eq(n_errors, 8);
  sg_graph_free(g);
  sg_set_error_handler(NULL, NULL);
}
END_TEST

/* ---- balanced ------------------------------------------------------------------ */

/* Balanced Sinkhorn at K = M N (the paper's 8 UEs on 2 BSs of 4, and 6 on 3
 * of 2), unrolled at 1, 3 and 20 iterations and implicit at convergence,
 * and row_mass 1.5 on unnormalised rows. */
START_TEST(gradcheck_balanced) {
  sg_rng r;
  sg_rng_seed(&r, 111);
  for (size_t i = 1; i <= 2; i++) { /* the K = M*N shapes */
    sg_tensor *x = make_input(&r, shapes[i].S, shapes[i].K, shapes[i].M, 1.5, shapes[i].bias, true);
    for (int j = 0; j < 3; j++) {
      sk_case c = {1.0, shapes[i].cap, (const int[]){1, 3, 20}[j], 0.0, SG_SINKHORN_UNROLLED, true};
      SG_ASSERT_CHECK(sg_gradcheck(apply_sinkhorn, &x, 1, &c, NULL));
      SG_ASSERT_CHECK(sg_check_f32_grad(apply_sinkhorn, &x, 1, &c, 1e-5));
    }
    sk_case ci = {1.0, shapes[i].cap, 400, 0.0, SG_SINKHORN_IMPLICIT, true};
    SG_ASSERT_CHECK(sg_gradcheck(apply_sinkhorn, &x, 1, &ci, NULL));
    sg_free(x);
  }
  sg_tensor *xu = make_input(&r, 3, 6, 3, 1.0, (double[]){0.5, 0, 0}, false);
  sk_case cu = {1.5, 3.0, 5, 0.0, SG_SINKHORN_UNROLLED, true};
  SG_ASSERT_CHECK(sg_gradcheck(apply_sinkhorn, &xu, 1, &cu, NULL));
  sg_free(xu);
}
END_TEST

/* Near convergence at K = M N the capacity version's columns sit within
 * round-off of their caps, where its unrolled float32 gradient takes
 * either branch; the balanced one has no branch: its float32 gradient
 * stays at round-off from float64 at 50 iterations, and it converges to
 * the capacity version's fixed point. */
START_TEST(balanced_no_kink) {
  sg_rng r;
  sg_rng_seed(&r, 112);
  sg_tensor *x = make_input(&r, 256, 8, 2, 2.0, (double[]){0.5, 0, 0}, true);
  sk_case bal = {1.0, 4.0, 50, 0.0, SG_SINKHORN_UNROLLED, true};
  SG_ASSERT_CHECK(sg_check_f32_grad(apply_sinkhorn, &x, 1, &bal, 1e-5));
  sg_graph *g = sg_graph_new();
  sg_sinkhorn_info ib, ic;
  sg_tensor *yb = sg_sinkhorn_balanced(g, x, 1.0, 4.0, 400, 0.0, SG_SINKHORN_UNROLLED, &ib);
  sg_tensor *yc = sg_sinkhorn(g, x, 1.0, 4.0, 400, 0.0, SG_SINKHORN_UNROLLED, &ic);
  ck_assert(isinf(ib.kink_margin) && ib.near_kink == 0);
  ck_assert_msg(ic.near_kink > 0, "the capacity version decided no column near its cap");
  ck_assert_msg(max_abs_diff(yb, yc) < 1e-9, "fixed points differ by %g", max_abs_diff(yb, yc));
  sg_graph_free(g);
  sg_free(x);
}
END_TEST

Suite *suite_sinkhorn(void) {
  Suite *s = suite_create("sinkhorn");
  struct {
    const char *name;
    const TTest *test;
  } cases[] = {
      {"gradcheck_sinkhorn", gradcheck_sinkhorn},
      {"gradcheck_sinkhorn_variants", gradcheck_sinkhorn_variants},
      {"gradcheck_sinkhorn_implicit", gradcheck_sinkhorn_implicit},
      {"implicit_matches_unrolled", implicit_matches_unrolled},
      {"implicit_not_converged", implicit_not_converged},
      {"fixtures_torch", fixtures_torch},
      {"forward_values", forward_values},
      {"per_sample_stopping", per_sample_stopping},
      {"infeasible_capacity", infeasible_capacity},
      {"masked_entries", masked_entries},
      {"masked_disconnected", masked_disconnected},
      {"masked_blocks_implicit", masked_blocks_implicit},
      {"thread_independent", thread_independent},
      {"memory_implicit_flat", memory_implicit_flat},
      {"misuse_reports", misuse_reports},
      {"gradcheck_balanced", gradcheck_balanced},
      {"balanced_no_kink", balanced_no_kink},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    TCase *tc = tcase_create(cases[i].name);
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, cases[i].test);
    suite_add_tcase(s, tc);
  }
  return s;
}
