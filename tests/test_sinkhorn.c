/* Capacity Sinkhorn: float64 gradient checks of both backward modes,
 * implicit against unrolled on converged inputs, PyTorch fixtures
 * (tests/make_sinkhorn_fixtures.py), misuse reports and the balanced
 * variant. */
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "sg_test.h"
#include "sinkhorn_helpers.h"

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
    sg_tensor *f[5] = {
        sg_test_fixture("sinkhorn", name, "x"), sg_test_fixture("sinkhorn", name, "w"),
        sg_test_fixture("sinkhorn", name, "y"), sg_test_fixture("sinkhorn", name, "gx"),
        sg_test_fixture("sinkhorn", name, "meta")};
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
  const sg_test_case cases[] = {
      {"gradcheck_sinkhorn", gradcheck_sinkhorn},
      {"gradcheck_sinkhorn_variants", gradcheck_sinkhorn_variants},
      {"gradcheck_sinkhorn_implicit", gradcheck_sinkhorn_implicit},
      {"implicit_matches_unrolled", implicit_matches_unrolled},
      {"implicit_not_converged", implicit_not_converged},
      {"fixtures_torch", fixtures_torch},
      {"misuse_reports", misuse_reports},
      {"gradcheck_balanced", gradcheck_balanced},
      {"balanced_no_kink", balanced_no_kink},
  };
  return sg_test_suite("sinkhorn", cases, sizeof cases / sizeof cases[0], 300);
}
