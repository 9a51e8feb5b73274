/* The Linear ops: linear, fused linear+ReLU, linear over column blocks and over concatenated parts,
 * against matmul and the unfused ops, float64 gradient checks and determinism across thread counts.
 */
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "matmul_helpers.h"
#include "sg_config.h"
#include "sg_gemm.h"
#include "sg_test.h"

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

Suite *suite_linear(void) {
  const sg_test_case cases[] = {
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
      {"linear_vs_matmul", linear_vs_matmul},
  };
  return sg_test_suite("linear", cases, sizeof cases / sizeof cases[0], 120);
}
