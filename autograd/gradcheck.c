/* Gradient checking: autograd against central finite differences in float64,
 * and float32 forwards against float64 forwards. Public API, so users can
 * check their own ops the same way the test suite checks ours. */
#include "sg_autograd.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

sg_gradcheck_opts sg_gradcheck_defaults(void) {
  return (sg_gradcheck_opts){
      .eps = 1e-6, .atol = 1e-7, .rtol = 1e-6, .projections = 0, .seed = 12345};
}

/* L(x) = sum(w * f(x)); NaN if f failed. */
static double weighted_output(sg_graph *g, sg_check_fn f, sg_tensor *const *inputs, int n,
                              void *ctx, const sg_tensor *w, sg_tensor **y_out) {
  sg_tensor *y = f(g, inputs, n, ctx);
  if (y_out) *y_out = y;
  if (!y || y->numel != w->numel || y->dtype != SG_F64) return NAN;
  double s = 0;
  const double *yd = y->data, *wd = w->data;
  for (int64_t i = 0; i < y->numel; i++) s += yd[i] * wd[i];
  return s;
}

static double eval_no_grad(sg_graph *g, sg_check_fn f, sg_tensor *const *inputs, int n, void *ctx,
                           const sg_tensor *w) {
  sg_graph_reset(g);
  bool was = sg_set_grad_enabled(g, false);
  double v = weighted_output(g, f, inputs, n, ctx, w, NULL);
  sg_set_grad_enabled(g, was);
  return v;
}

typedef struct compare_state {
  sg_gradcheck_result *res;
  double atol, rtol;
} compare_state;

static void compare(compare_state *st, int input, int64_t index, double analytic, double numeric) {
  sg_gradcheck_result *r = st->res;
  double abs_err = fabs(analytic - numeric);
  double ratio = abs_err / (st->atol + st->rtol * fabs(numeric));
  if (r->checked == 0 || !(ratio <= r->worst)) { /* a NaN ratio counts as the worst */
    r->worst = isnan(ratio) ? INFINITY : ratio;
    r->input = input;
    r->index = index;
    r->analytic = analytic;
    r->numeric = numeric;
    r->abs_err = abs_err;
    r->rel_err = abs_err / fmax(fabs(numeric), 1e-300);
  }
  r->checked++;
}

static void finish(sg_gradcheck_result *r, const char *what) {
  r->ok = r->checked > 0 && r->worst <= 1.0;
  snprintf(r->msg, sizeof r->msg,
           "%s %s: worst at input %d index %lld: analytic %.12g numeric %.12g abs err %.3g "
           "rel err %.3g (%.3g of tolerance, %lld compared)",
           what, r->ok ? "passed" : "FAILED", r->input, (long long)r->index, r->analytic,
           r->numeric, r->abs_err, r->rel_err, r->worst, (long long)r->checked);
}

static bool inputs_valid(sg_tensor *const *inputs, int n, sg_gradcheck_result *r) {
  for (int i = 0; i < n; i++) {
    if (!inputs[i] || inputs[i]->dtype != SG_F64 || !inputs[i]->owned) {
      snprintf(r->msg, sizeof r->msg, "gradcheck: input %d must be a caller-owned float64 tensor",
               i);
      return false;
    }
  }
  return true;
}

/* Checks one input element by element. */
static void check_elements(sg_graph *g, sg_check_fn f, sg_tensor *const *inputs, int n, void *ctx,
                           const sg_tensor *w, int i, double eps, compare_state *st) {
  sg_tensor *x = inputs[i];
  double *xd = x->data;
  const double *ga = x->grad ? x->grad->data : NULL;
  for (int64_t j = 0; j < x->numel; j++) {
    double saved = xd[j];
    xd[j] = saved + eps;
    double lp = eval_no_grad(g, f, inputs, n, ctx, w);
    xd[j] = saved - eps;
    double lm = eval_no_grad(g, f, inputs, n, ctx, w);
    xd[j] = saved;
    compare(st, i, j, ga ? ga[j] : 0.0, (lp - lm) / (2 * eps));
  }
}

/* Checks one input along random directions v: grad . v against the
 * directional difference quotient. */
static void check_projections(sg_graph *g, sg_check_fn f, sg_tensor *const *inputs, int n,
                              void *ctx, const sg_tensor *w, int i, const sg_gradcheck_opts *o,
                              sg_rng *rng, compare_state *st) {
  sg_tensor *x = inputs[i];
  double *xd = x->data;
  const double *ga = x->grad ? x->grad->data : NULL;
  sg_tensor *saved = sg_clone(NULL, x),
            *v = sg_rand_normal(NULL, rng, SG_F64, x->ndim, x->shape, 0, 1);
  const double *sd = saved->data, *vd = v->data;
  for (int p = 0; p < o->projections; p++) {
    if (p > 0)
      for (int64_t j = 0; j < x->numel; j++) ((double *)v->data)[j] = sg_rng_normal(rng);
    double analytic = 0;
    for (int64_t j = 0; j < x->numel; j++) analytic += (ga ? ga[j] : 0.0) * vd[j];
    for (int64_t j = 0; j < x->numel; j++) xd[j] = sd[j] + o->eps * vd[j];
    double lp = eval_no_grad(g, f, inputs, n, ctx, w);
    for (int64_t j = 0; j < x->numel; j++) xd[j] = sd[j] - o->eps * vd[j];
    double lm = eval_no_grad(g, f, inputs, n, ctx, w);
    memcpy(xd, sd, (size_t)x->numel * sizeof *xd);
    compare(st, i, p, analytic, (lp - lm) / (2 * o->eps));
  }
  sg_free(saved);
  sg_free(v);
}

sg_gradcheck_result sg_gradcheck(sg_check_fn f, sg_tensor *const *inputs, int n, void *ctx,
                                 const sg_gradcheck_opts *opts) {
  sg_gradcheck_opts o = opts ? *opts : sg_gradcheck_defaults();
  sg_gradcheck_result r = {.input = -1};
  if (!inputs_valid(inputs, n, &r)) return r;
  sg_rng rng;
  sg_rng_seed(&rng, o.seed);
  sg_graph *g = sg_graph_new();
  for (int i = 0; i < n; i++) sg_zero_grad(inputs[i]);

  /* Analytic gradients of L = sum(w * y) through autograd. */
  sg_tensor *y = f(g, inputs, n, ctx);
  if (!y || y->dtype != SG_F64 || !y->requires_grad) {
    snprintf(r.msg, sizeof r.msg, "gradcheck: f returned %s",
             !y ? "NULL" : (y->dtype != SG_F64 ? "a float32 tensor" : "no gradient path"));
    sg_graph_free(g);
    return r;
  }
  sg_tensor *w = sg_rand_normal(NULL, &rng, SG_F64, y->ndim, y->shape, 0, 1);
  sg_backward_with(g, y, w);

  compare_state st = {&r, o.atol, o.rtol};
  for (int i = 0; i < n; i++) {
    if (!inputs[i]->requires_grad) continue;
    if (o.projections > 0)
      check_projections(g, f, inputs, n, ctx, w, i, &o, &rng, &st);
    else
      check_elements(g, f, inputs, n, ctx, w, i, o.eps, &st);
  }
  finish(&r, "gradcheck");
  sg_free(w);
  sg_graph_free(g);
  return r;
}

sg_gradcheck_result sg_check_f32_forward(sg_check_fn f, sg_tensor *const *inputs, int n, void *ctx,
                                         double atol, double rtol) {
  sg_gradcheck_result r = {.input = -1};
  if (!inputs_valid(inputs, n, &r) || n > 16) return r;
  sg_tensor *in32[16];
  for (int i = 0; i < n; i++) in32[i] = sg_to_dtype(NULL, inputs[i], SG_F32);
  sg_graph *g = sg_graph_new();
  sg_set_grad_enabled(g, false);
  sg_tensor *y64 = f(g, inputs, n, ctx), *y32 = f(g, in32, n, ctx);
  if (!y64 || !y32 || y64->numel != y32->numel || y32->dtype != SG_F32) {
    snprintf(r.msg, sizeof r.msg, "f32 forward check: f failed or changed shape/dtype");
  } else {
    compare_state st = {&r, atol, rtol};
    for (int64_t j = 0; j < y64->numel; j++) compare(&st, 0, j, sg_get(y32, j), sg_get(y64, j));
    finish(&r, "float32 forward");
  }
  for (int i = 0; i < n; i++) sg_free(in32[i]);
  sg_graph_free(g);
  return r;
}

/* ---- float32 forward and gradient against float64 ------------------------ */

/* ||a - b|| / ||b|| over n elements (a float32 tensor against float64). */
static double rel_l2(const sg_tensor *a32, const sg_tensor *b64) {
  const float *a = sg_f32(a32);
  const double *b = sg_f64(b64);
  double num = 0, den = 0;
  for (int64_t j = 0; j < b64->numel; j++) {
    double d = (double)a[j] - b[j];
    num += d * d, den += b[j] * b[j];
  }
  return den > 0 ? sqrt(num / den) : (num > 0 ? INFINITY : 0);
}

/* Output y and the gradients of sum(w * y) of f on inputs (grads zeroed
 * first); y lives in g. */
static sg_tensor *run_weighted(sg_graph *g, sg_check_fn f, sg_tensor *const *inputs, int n,
                               void *ctx, sg_rng *rng, sg_tensor **w) {
  for (int i = 0; i < n; i++) sg_zero_grad(inputs[i]);
  sg_tensor *y = f(g, inputs, n, ctx);
  if (!y || !y->requires_grad) return NULL;
  if (!*w) *w = sg_rand_normal(NULL, rng, SG_F64, y->ndim, y->shape, 0, 1);
  sg_tensor *wy = sg_to_dtype(g, *w, y->dtype);
  sg_backward_with(g, y, wy);
  return y;
}

sg_gradcheck_result sg_check_f32_grad(sg_check_fn f, sg_tensor *const *inputs, int n, void *ctx,
                                      double rtol) {
  sg_gradcheck_result r = {.input = -1};
  if (!inputs_valid(inputs, n, &r) || n > 16) return r;
  sg_tensor *in32[16], *in64[16], *w = NULL;
  for (int i = 0; i < n; i++) {
    /* Both precisions see the same values: the float32 roundings. */
    in32[i] = sg_to_dtype(NULL, inputs[i], SG_F32);
    in64[i] = sg_to_dtype(NULL, in32[i], SG_F64);
    sg_set_requires_grad(in32[i], inputs[i]->requires_grad);
    sg_set_requires_grad(in64[i], inputs[i]->requires_grad);
  }
  sg_rng rng;
  sg_rng_seed(&rng, sg_gradcheck_defaults().seed);
  sg_graph *g64 = sg_graph_new(), *g32 = sg_graph_new();
  sg_tensor *y64 = run_weighted(g64, f, in64, n, ctx, &rng, &w);
  sg_tensor *y32 = y64 ? run_weighted(g32, f, in32, n, ctx, &rng, &w) : NULL;
  if (!y64 || !y32 || y32->dtype != SG_F32 || y64->dtype != SG_F64 || y32->numel != y64->numel) {
    snprintf(r.msg, sizeof r.msg, "f32 gradient check: f failed, changed shape or has no gradient");
  } else {
    /* input -1 is the output, i >= 0 input i's gradient */
    for (int i = -1; i < n; i++) {
      if (i >= 0 && (!in64[i]->requires_grad || !in64[i]->grad)) continue;
      double e = i < 0 ? rel_l2(y32, y64) : rel_l2(in32[i]->grad, in64[i]->grad);
      if (r.checked == 0 || !(e / rtol <= r.worst))
        r.worst = isnan(e) ? INFINITY : e / rtol, r.input = i, r.rel_err = e;
      r.checked++;
    }
    r.ok = r.worst <= 1;
    snprintf(r.msg, sizeof r.msg,
             "float32 against float64 %s: worst %s %d: relative L2 error %.3g (tolerance %.3g, "
             "%lld compared)",
             r.ok ? "passed" : "FAILED", r.input < 0 ? "output" : "gradient of input", r.input,
             r.rel_err, rtol, (long long)r.checked);
  }
  for (int i = 0; i < n; i++) sg_free(in32[i]), sg_free(in64[i]);
  sg_free(w);
  sg_graph_free(g64);
  sg_graph_free(g32);
  return r;
}
