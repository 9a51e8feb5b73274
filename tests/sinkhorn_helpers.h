/* Helpers shared by the Sinkhorn test files (test_sinkhorn.c,
 * test_sinkhorn_forward.c): a plain reference of the forward, inputs, the op
 * as an sg_check_fn and gradient helpers. */
#ifndef SINKHORN_HELPERS_H
#define SINKHORN_HELPERS_H

#include <math.h>
#include <stdlib.h>

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

static inline double lse(const double *v, int n, int stride) {
  double mx = -INFINITY, s = 0;
  for (int i = 0; i < n; i++) mx = fmax(mx, v[i * stride]);
  for (int i = 0; i < n; i++) s += exp(v[i * stride] - mx);
  return mx + log(s);
}

static inline void ref_sample(double *x, int K, int M, double row_mass, double cap, int iters,
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

static inline ref_stats ref_run(const sg_tensor *x, double row_mass, double cap, int iters,
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

static inline double max_abs(const sg_tensor *t) {
  double m = 0;
  for (int64_t i = 0; i < t->numel; i++) m = fmax(m, fabs(sg_get(t, i)));
  return m;
}

/* ---- inputs ------------------------------------------------------------- */

/* log_softmax over M of N(0, spread) logits plus a per-column bias (so
 * columns are capped), or the raw logits when normalise is false. */
static inline sg_tensor *make_input(sg_rng *r, int S, int K, int M, double spread,
                                    const double *bias, bool normalise) {
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

static inline sg_tensor *apply_sinkhorn(sg_graph *g, sg_tensor *const *in, int n, void *ctx) {
  (void)n;
  const sk_case *c = ctx;
  if (c->balanced)
    return sg_sinkhorn_balanced(g, in[0], c->row_mass, c->cap, c->iters, c->tol, c->mode, NULL);
  return sg_sinkhorn(g, in[0], c->row_mass, c->cap, c->iters, c->tol, c->mode, NULL);
}

static inline sg_tensor *grad_of(sg_tensor *x, const sk_case *c, const sg_tensor *w,
                                 sg_sinkhorn_info *info) {
  sg_graph *g = sg_graph_new();
  sg_zero_grad(x);
  sg_tensor *y = sg_sinkhorn(g, x, c->row_mass, c->cap, c->iters, c->tol, c->mode, info);
  sg_backward_with(g, y, w);
  sg_graph_free(g);
  return sg_clone(NULL, x->grad);
}

static inline double max_abs_diff(const sg_tensor *a, const sg_tensor *b) {
  double d = 0;
  for (int64_t i = 0; i < a->numel; i++) d = fmax(d, fabs(sg_get(a, i) - sg_get(b, i)));
  return d;
}

#endif
