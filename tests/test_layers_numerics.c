/* Layers, numerics: stability cases (1e4 logits, -inf masks, tau 0.01), and forward values and
 * gradients against PyTorch fixtures written by tests/make_layer_fixtures.py. */
#include "layers_helpers.h"
#include "sg_test.h"

#include <float.h>
#include <omp.h>
#include <string.h>

/* ---- stability ----------------------------------------------------------- */

/* Logits of magnitude 1e4 in both dtypes: finite, rows sum to 1, equal to
 * the shifted-exponential reference, finite gradients. */
START_TEST(stability_large_logits) {
  const double xs[] = {1e4, -1e4, 0, 1e4 - 1, -5e3, 9999.5, 1e4, -1e4};
  for (int dt = 0; dt < 2; dt++) {
    sg_graph *g = sg_graph_new();
    sg_tensor *x = sg_from_f64(NULL, (sg_dtype)dt, 2, (int64_t[]){2, 4}, xs);
    sg_set_requires_grad(x, true);
    sg_tensor *y = sg_softmax(g, x, -1), *ly = sg_log_softmax(g, x, -1);
    for (int row = 0; row < 2; row++) {
      double m = -INFINITY, s = 0, sum_y = 0;
      for (int j = 0; j < 4; j++) m = fmax(m, sg_get(x, row * 4 + j));
      for (int j = 0; j < 4; j++) s += exp(sg_get(x, row * 4 + j) - m);
      for (int j = 0; j < 4; j++) {
        int i = row * 4 + j;
        double ref = exp(sg_get(x, i) - m) / s, lref = sg_get(x, i) - m - log(s);
        double tol = dt == SG_F32 ? 4 * FLT_EPSILON : 4 * DBL_EPSILON;
        ck_assert_double_eq_tol(sg_get(y, i), ref, tol);
        /* |lref| is up to 2e4: relative to the input magnitude */
        ck_assert_double_eq_tol(sg_get(ly, i), lref, tol * 2e4);
        sum_y += sg_get(y, i);
      }
      ck_assert_double_eq_tol(sum_y, 1.0, dt == SG_F32 ? 4 * FLT_EPSILON : 4 * DBL_EPSILON);
    }
    sg_tensor *go = sg_full(g, (sg_dtype)dt, 2, (int64_t[]){2, 4}, 0.5);
    sg_set(go, 0, 2.0);
    sg_backward_with(g, y, go);
    sg_backward_with(g, ly, go);
    for (int i = 0; i < 8; i++) ck_assert(isfinite(sg_get(x->grad, i)));
    sg_free(x);
    sg_graph_free(g);
  }
}
END_TEST

/* Rows with -inf entries equal the softmax of their finite entries alone;
 * the masked entries get exactly zero gradient even if the gradient
 * arriving there is NaN or infinite, and the others get the gradient of the
 * reduced problem. Same for log_softmax, and along a non-last axis. */
static void check_masked(bool log_mode, int axis, sg_dtype dt) {
  /* 3 slices of 5; row 2 keeps one finite entry */
  const double base[3][5] = {{0.5, -INFINITY, 1.5, -2, -INFINITY},
                             {-INFINITY, 3, 0.25, -INFINITY, 1},
                             {-INFINITY, -INFINITY, -INFINITY, 0.75, -INFINITY}};
  const double gos[3][5] = {
      {1, NAN, -0.5, 2, INFINITY}, {-INFINITY, 0.3, -1.2, NAN, 0.7}, {NAN, 1, -INFINITY, 0.4, NAN}};
  /* axis 1: x[i][j] = base[i][j]; axis 0: x[j][i] = base[i][j] (slices are columns) */
  double xs[15], gs[15];
  int64_t shape[2] = {axis == 1 ? 3 : 5, axis == 1 ? 5 : 3};
  for (int i = 0; i < 3; i++)
    for (int j = 0; j < 5; j++) {
      int e = axis == 1 ? i * 5 + j : j * 3 + i;
      xs[e] = base[i][j];
      gs[e] = gos[i][j];
    }
  sg_graph *g = sg_graph_new();
  sg_tensor *x = sg_from_f64(NULL, dt, 2, shape, xs);
  sg_set_requires_grad(x, true);
  sg_tensor *y = log_mode ? sg_log_softmax(g, x, axis) : sg_softmax(g, x, axis);
  sg_backward_with(g, y, sg_from_f64(g, dt, 2, shape, gs));
  double tol = dt == SG_F32 ? 8 * FLT_EPSILON : 8 * DBL_EPSILON;
  for (int i = 0; i < 3; i++) {
    /* reference on the finite entries only */
    double m = -INFINITY, s = 0, gsum = 0, gdot = 0;
    for (int j = 0; j < 5; j++) m = fmax(m, base[i][j]);
    for (int j = 0; j < 5; j++) s += exp(base[i][j] - m);
    for (int j = 0; j < 5; j++)
      if (isfinite(base[i][j])) {
        gsum += gos[i][j];
        gdot += gos[i][j] * exp(base[i][j] - m) / s;
      }
    for (int j = 0; j < 5; j++) {
      int e = axis == 1 ? i * 5 + j : j * 3 + i;
      double yv = sg_get(y, e), gx = sg_get(x->grad, e);
      if (!isfinite(base[i][j])) {
        ck_assert_double_eq(yv, log_mode ? -INFINITY : 0.0);
        ck_assert_double_eq(gx, 0.0);
        continue;
      }
      double p = exp(base[i][j] - m) / s;
      double yref = log_mode ? base[i][j] - m - log(s) : p;
      double gref = log_mode ? gos[i][j] - p * gsum : p * (gos[i][j] - gdot);
      ck_assert_double_eq_tol(yv, yref, tol * (1 + fabs(yref)));
      ck_assert_double_eq_tol(gx, gref, tol * 4);
    }
  }
  sg_free(x);
  sg_graph_free(g);
}

START_TEST(stability_masked) {
  for (int dt = 0; dt < 2; dt++)
    for (int axis = 0; axis < 2; axis++) {
      check_masked(false, axis, (sg_dtype)dt);
      check_masked(true, axis, (sg_dtype)dt);
    }
}
END_TEST

/* tau = 0.01: logits/tau reach 1e3, the output is still finite, each row
 * sums to 1 and the gradient (scaled by 1/tau) is finite. */
START_TEST(stability_small_tau) {
  for (int dt = 0; dt < 2; dt++) {
    for (int hard = 0; hard < 2; hard++) {
      sg_graph *g = sg_graph_new();
      sg_rng r;
      sg_rng_seed(&r, 1234);
      int64_t shape[2] = {64, 7};
      sg_tensor *x = sg_rand_normal(NULL, &r, (sg_dtype)dt, 2, shape, 0, 3);
      sg_set_requires_grad(x, true);
      sg_tensor *y = sg_gumbel_softmax(g, x, 0.01, -1, hard, NULL, &r);
      sg_tensor *go = sg_rand_normal(g, &r, (sg_dtype)dt, 2, shape, 0, 1);
      sg_backward_with(g, y, go);
      for (int row = 0; row < 64; row++) {
        double s = 0;
        for (int j = 0; j < 7; j++) {
          ck_assert(isfinite(sg_get(y, row * 7 + j)));
          ck_assert(isfinite(sg_get(x->grad, row * 7 + j)));
          s += sg_get(y, row * 7 + j);
        }
        ck_assert_double_eq_tol(s, 1.0, dt == SG_F32 ? 8 * FLT_EPSILON : 8 * DBL_EPSILON);
      }
      sg_free(x);
      sg_graph_free(g);
    }
  }
}
END_TEST

/* ---- PyTorch fixtures ---------------------------------------------------- */

/* Float64 runs must match PyTorch to |a - b| <= 1e-10 (1 + |b|).
 *
 * Float32 runs: the fixture inputs and weights are float32-representable,
 * so the float32 result differs from the float64 reference only by the
 * kernel's own round-off. We allow |a - b| <= 64 u (|b| + max|b|) on top of
 * the float64 allowance (the reference's own round-off, all there is where
 * the exact value is 0), with u = 2^-24 and max|b| over the compared tensor.
 * Why 64 u: first-order error analysis gives at most ~10 roundings along
 * each output's own chain (exp to 1 ulp, a subtraction, a reciprocal,
 * products), reductions of up to 300 terms in 16 lanes (<= 35 dependent
 * additions, whose error is relative to the sum of the magnitudes, hence
 * the normwise max|b| term), and an error in z - max(z) amplified by
 * |z - max(z)| <~ 20 through the exponential. The largest case is a
 * saturated softmax row (y_max = 0.99998) whose gradient y (go - sum(go y))
 * cancels: its error is relative to |go| / tau rather than to max|gx|, and
 * the measured worst case there is 34 u; typical cases measure 1-3 u. */
#define F64_TOL 1e-10
#define F32_ULPS 64.0

static void assert_close(const char *what, const sg_tensor *got, const sg_tensor *ref) {
  ck_assert_msg(got->numel == ref->numel, "%s: %lld values, expected %lld", what,
                (long long)got->numel, (long long)ref->numel);
  double scale = 0;
  for (int64_t i = 0; i < ref->numel; i++)
    if (isfinite(sg_get(ref, i))) scale = fmax(scale, fabs(sg_get(ref, i)));
  for (int64_t i = 0; i < ref->numel; i++) {
    double a = sg_get(got, i), b = sg_get(ref, i);
    if (isinf(b)) {
      ck_assert_msg(a == b, "%s[%lld] = %.17g, expected %g", what, (long long)i, a, b);
      continue;
    }
    /* float32 also gets the float64 allowance: the reference has its own
     * round-off, which is all there is where the exact value is 0 */
    double tol = F64_TOL * (1 + fabs(b));
    if (got->dtype == SG_F32) tol += F32_ULPS * 0x1p-24 * (fabs(b) + scale);
    ck_assert_msg(fabs(a - b) <= tol, "%s[%lld] = %.17g, expected %.17g (err %.3g > tol %.3g)",
                  what, (long long)i, a, b, fabs(a - b), tol);
  }
}

/* Runs f on the fixture inputs converted to dt (inputs with an expected
 * gradient require one), seeds the backward with w, and compares y and the
 * gradients with the fixture. */
static void run_fixture(const char *c, sg_check_fn f, void *ctx, sg_tensor *const *in,
                        sg_tensor *const *grads, int n, sg_dtype dt) {
  char what[128];
  sg_tensor *conv[4];
  for (int i = 0; i < n; i++) {
    conv[i] = sg_to_dtype(NULL, in[i], dt);
    sg_set_requires_grad(conv[i], grads[i] != NULL);
  }
  sg_tensor *y_ref = sg_test_fixture("layers", c, "y"), *w = sg_test_fixture("layers", c, "w");
  sg_graph *g = sg_graph_new();
  sg_tensor *y = f(g, conv, n, ctx);
  ck_assert_msg(y != NULL, "%s: op failed", c);
  snprintf(what, sizeof what, "%s %s y", c, sg_dtype_name(dt));
  assert_close(what, y, y_ref);
  sg_backward_with(g, y, sg_to_dtype(g, w, dt));
  for (int i = 0; i < n; i++) {
    if (!grads[i]) continue;
    snprintf(what, sizeof what, "%s %s grad of input %d", c, sg_dtype_name(dt), i);
    ck_assert_ptr_nonnull(conv[i]->grad);
    assert_close(what, conv[i]->grad, grads[i]);
  }
  sg_graph_free(g);
  free_all(conv, n);
  sg_free(y_ref), sg_free(w);
}

START_TEST(fixtures_softmax) {
  const char *names[] = {"last", "mid", "first", "long", "widemid", "big", "mask"};
  for (int lg = 0; lg < 2; lg++)
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
      char c[64];
      snprintf(c, sizeof c, "%s_%s", lg ? "lsm" : "sm", names[i]);
      sg_tensor *x = sg_test_fixture("layers", c, "x"), *gx = sg_test_fixture("layers", c, "g_x"),
                *params = sg_test_fixture("layers", c, "params");
      int axis = (int)sg_get(params, 0);
      for (int dt = 0; dt < 2; dt++)
        run_fixture(c, lg ? apply_log_softmax : apply_softmax, &axis, &x, &gx, 1, (sg_dtype)dt);
      sg_free(x), sg_free(gx), sg_free(params);
    }
}
END_TEST

START_TEST(fixtures_layer_norm) {
  const char *names[] = {"gb", "none", "gain", "bias", "blocks", "d1"};
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    char c[64];
    snprintf(c, sizeof c, "ln_%s", names[i]);
    sg_tensor *params = sg_test_fixture("layers", c, "params");
    ln_ctx ctx = {sg_get(params, 0), sg_get(params, 1) != 0, sg_get(params, 2) != 0};
    sg_tensor *in[3], *grads[3];
    int n = 0;
    in[n] = sg_test_fixture("layers", c, "x"), grads[n++] = sg_test_fixture("layers", c, "g_x");
    if (ctx.gain)
      in[n] = sg_test_fixture("layers", c, "gain"),
      grads[n++] = sg_test_fixture("layers", c, "g_gain");
    if (ctx.bias)
      in[n] = sg_test_fixture("layers", c, "bias"),
      grads[n++] = sg_test_fixture("layers", c, "g_bias");
    for (int dt = 0; dt < 2; dt++)
      run_fixture(c, apply_layer_norm, &ctx, in, grads, n, (sg_dtype)dt);
    free_all(in, n), free_all(grads, n);
    sg_free(params);
  }
}
END_TEST

START_TEST(fixtures_gumbel_softmax) {
  const char *names[] = {"t1", "t01", "t5", "hard", "mid", "hardmid"};
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    char c[64];
    snprintf(c, sizeof c, "gs_%s", names[i]);
    sg_tensor *params = sg_test_fixture("layers", c, "params");
    gs_ctx ctx = {sg_get(params, 0), (int)sg_get(params, 1), sg_get(params, 2) != 0};
    sg_tensor *g_logits = sg_test_fixture("layers", c, "g_logits");
    /* the noise enters as logits + noise: the same gradient */
    sg_tensor *in[2] = {sg_test_fixture("layers", c, "logits"),
                        sg_test_fixture("layers", c, "noise")},
              *grads[2] = {g_logits, g_logits};
    for (int dt = 0; dt < 2; dt++) run_fixture(c, apply_gumbel, &ctx, in, grads, 2, (sg_dtype)dt);
    free_all(in, 2);
    sg_free(g_logits), sg_free(params);
  }
}
END_TEST

START_TEST(fixtures_attention) {
  const char *names[] = {"basic", "skgs", "lk1", "shared", "long"};
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    char c[64];
    snprintf(c, sizeof c, "at_%s", names[i]);
    sg_tensor *in[3] = {sg_test_fixture("layers", c, "q"), sg_test_fixture("layers", c, "k"),
                        sg_test_fixture("layers", c, "v")};
    sg_tensor *grads[3] = {sg_test_fixture("layers", c, "g_q"), sg_test_fixture("layers", c, "g_k"),
                           sg_test_fixture("layers", c, "g_v")};
    for (int dt = 0; dt < 2; dt++)
      run_fixture(c, apply_attention, NULL, in, grads, 3, (sg_dtype)dt);
    free_all(in, 3), free_all(grads, 3);
  }
}
END_TEST

Suite *suite_layers_numerics(void) {
  const sg_test_case cases[] = {
      {"stability_large_logits", stability_large_logits},
      {"stability_masked", stability_masked},
      {"stability_small_tau", stability_small_tau},
      {"fixtures_softmax", fixtures_softmax},
      {"fixtures_layer_norm", fixtures_layer_norm},
      {"fixtures_gumbel_softmax", fixtures_gumbel_softmax},
      {"fixtures_attention", fixtures_attention},
  };
  return sg_test_suite("layers_numerics", cases, sizeof cases / sizeof cases[0], 120);
}
