/* Helpers shared by the layer test files (test_layers.c, test_layers_numerics.c):
 * random leaves, checks, a misuse recorder and the ops under test as sg_check_fn. */
#ifndef LAYERS_HELPERS_H
#define LAYERS_HELPERS_H

#include <stdio.h>
#include <string.h>

#include "sg_test.h"

static inline sg_tensor *rand_leaf(sg_rng *r, int nd, const int64_t *shape, double lo, double hi) {
  sg_tensor *t = sg_rand_uniform(NULL, r, SG_F64, nd, shape, lo, hi);
  sg_set_requires_grad(t, true);
  return t;
}

static inline void free_all(sg_tensor **ts, int n) {
  for (int i = 0; i < n; i++) sg_free(ts[i]);
}

/* Gradcheck with the default (strictest allowed) tolerances, then the
 * float32 forward against the float64 one. */
static inline void check_op(sg_check_fn f, sg_tensor *const *in, int n, void *ctx, double f32_tol) {
  SG_ASSERT_CHECK(sg_gradcheck(f, in, n, ctx, NULL));
  SG_ASSERT_CHECK(sg_check_f32_forward(f, in, n, ctx, f32_tol, f32_tol));
}

/* Records misuse reports instead of aborting. */
static int n_errors;
static char last_error[512];
static inline void record_error(const char *op, const char *msg, const char *file, int line,
                                void *u) {
  (void)file, (void)line, (void)u;
  n_errors++;
  snprintf(last_error, sizeof last_error, "%s: %s", op, msg);
}

#define ASSERT_MISUSE(expr, needle)                                                                \
  do {                                                                                             \
    int before_ = n_errors;                                                                        \
    ck_assert_ptr_null(expr);                                                                      \
    ck_assert_int_eq(n_errors, before_ + 1);                                                       \
    ck_assert_msg(strstr(last_error, needle), "error '%s' lacks '%s'", last_error, needle);        \
  } while (0)

static inline sg_tensor *apply_softmax(sg_graph *g, sg_tensor *const *in, int n, void *ctx) {
  (void)n;
  return sg_softmax(g, in[0], *(int *)ctx);
}
static inline sg_tensor *apply_log_softmax(sg_graph *g, sg_tensor *const *in, int n, void *ctx) {
  (void)n;
  return sg_log_softmax(g, in[0], *(int *)ctx);
}

typedef struct ln_ctx {
  double eps;
  bool gain, bias;
} ln_ctx;

/* inputs: x, then the gain if used, then the bias if used */
static inline sg_tensor *apply_layer_norm(sg_graph *g, sg_tensor *const *in, int n, void *ctx) {
  (void)n;
  const ln_ctx *c = ctx;
  sg_tensor *gain = c->gain ? in[1] : NULL, *bias = c->bias ? in[c->gain ? 2 : 1] : NULL;
  return sg_layer_norm(g, in[0], gain, bias, c->eps);
}

typedef struct gs_ctx {
  double tau;
  int axis;
  bool hard;
} gs_ctx;

/* inputs: logits, noise */
static inline sg_tensor *apply_gumbel(sg_graph *g, sg_tensor *const *in, int n, void *ctx) {
  (void)n;
  const gs_ctx *c = ctx;
  return sg_gumbel_softmax(g, in[0], c->tau, c->axis, c->hard, in[1], NULL);
}

static inline sg_tensor *apply_attention(sg_graph *g, sg_tensor *const *in, int n, void *ctx) {
  (void)n, (void)ctx;
  return sg_attention(g, in[0], in[1], in[2]);
}

#endif
