/* Shape ops: float64 gradient checks over several shapes each (size-1 axes,
 * scalars, empty slices), forward values against hand-written arrays, large
 * tensors against index arithmetic, and misuse reports. */
#include <omp.h>
#include <string.h>

#include "sg_test.h"

static sg_tensor *rand_leaf(sg_rng *r, int nd, const int64_t *shape) {
  sg_tensor *t = sg_rand_uniform(NULL, r, SG_F64, nd, shape, -2, 2);
  sg_set_requires_grad(t, true);
  return t;
}

/* A float32 copy rounds each value once: within 2^-24 relative. The tiny
 * atol only keeps exact zeros from dividing 0 by 0. */
static void check_all(sg_check_fn f, sg_tensor *const *in, int n, void *ctx) {
  SG_ASSERT_CHECK(sg_gradcheck(f, in, n, ctx, NULL));
  SG_ASSERT_CHECK(sg_check_f32_forward(f, in, n, ctx, 1e-300, 6e-8));
}

static void assert_values(const sg_tensor *t, int ndim, const int64_t *shape, const double *want) {
  ck_assert_ptr_nonnull(t);
  ck_assert_int_eq(t->ndim, ndim);
  for (int d = 0; d < ndim; d++) ck_assert_int_eq(t->shape[d], shape[d]);
  for (int64_t i = 0; i < t->numel; i++)
    ck_assert_msg(sg_get(t, i) == want[i], "element %lld: got %g want %g", (long long)i,
                  sg_get(t, i), want[i]);
}

/* 0, 1, 2, ... in the given shape, on g. */
static sg_tensor *arange(sg_graph *g, sg_dtype dt, int nd, const int64_t *shape) {
  sg_tensor *t = sg_empty(g, dt, nd, shape);
  for (int64_t i = 0; i < t->numel; i++) sg_set(t, i, (double)i);
  return t;
}

/* ---- reshape ----------------------------------------------------------- */

typedef struct shape_arg {
  int ndim;
  int64_t shape[SG_MAX_DIMS];
} shape_arg;

static sg_tensor *do_reshape(sg_graph *g, sg_tensor *const *in, int n, void *ctx) {
  (void)n;
  const shape_arg *s = ctx;
  return sg_reshape(g, in[0], s->ndim, s->shape);
}

/* x feeds two reshapes: the backward must add to the gradient, not set it. */
static sg_tensor *reshape_twice(sg_graph *g, sg_tensor *const *in, int n, void *ctx) {
  (void)n;
  const shape_arg *s = ctx;
  sg_tensor *y = sg_reshape(g, in[0], s->ndim, s->shape);
  return sg_mul(g, y, sg_reshape(g, in[0], s->ndim, s->shape));
}

START_TEST(gradcheck_reshape) {
  const struct {
    int nd;
    int64_t in[4];
    shape_arg to;
  } cases[] = {
      {3, {2, 3, 4}, {2, {4, -1}}}, {3, {3, 1, 2}, {1, {6}}}, {1, {5}, {3, {1, 5, 1}}},
      {0, {0}, {1, {1}}},           {2, {2, 3}, {2, {3, 2}}}, {2, {1, 1}, {0, {0}}},
      {2, {4, 3}, {3, {-1, 2, 3}}},
  };
  sg_rng r;
  sg_rng_seed(&r, 21);
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    sg_tensor *x = rand_leaf(&r, cases[i].nd, cases[i].in);
    check_all(do_reshape, &x, 1, (void *)&cases[i].to);
    SG_ASSERT_CHECK(sg_gradcheck(reshape_twice, &x, 1, (void *)&cases[i].to, NULL));
    sg_free(x);
  }
}
END_TEST

/* ---- permute and transpose --------------------------------------------- */

typedef struct perm_arg {
  int perm[SG_MAX_DIMS];
} perm_arg;

static sg_tensor *do_permute(sg_graph *g, sg_tensor *const *in, int n, void *ctx) {
  (void)n;
  return sg_permute(g, in[0], ((const perm_arg *)ctx)->perm);
}

START_TEST(gradcheck_permute) {
  const struct {
    int nd;
    int64_t in[5];
    perm_arg p;
  } cases[] = {
      {3, {2, 3, 4}, {{2, 0, 1}}},
      {3, {1, 3, 2}, {{1, 2, 0}}},
      {4, {2, 1, 3, 2}, {{3, 1, 0, 2}}},
      {3, {2, 3, 2}, {{-1, 0, 1}}},
      {2, {3, 4}, {{0, 1}}},
      {5, {2, 1, 2, 1, 3}, {{4, 2, 0, 3, 1}}},
      {0, {0}, {{0}}},
      /* Axes of 16 or more take the tiled copy, with partial edge tiles. */
      {3, {17, 2, 18}, {{2, 1, 0}}},
      {2, {33, 16}, {{1, 0}}},
  };
  sg_rng r;
  sg_rng_seed(&r, 22);
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    sg_tensor *x = rand_leaf(&r, cases[i].nd, cases[i].in);
    check_all(do_permute, &x, 1, (void *)&cases[i].p);
    sg_free(x);
  }
}
END_TEST

static sg_tensor *do_transpose(sg_graph *g, sg_tensor *const *in, int n, void *ctx) {
  (void)n;
  const int *axes = ctx;
  return sg_transpose(g, in[0], axes[0], axes[1]);
}

START_TEST(gradcheck_transpose) {
  const struct {
    int nd;
    int64_t in[3];
    int axes[2];
  } cases[] = {
      {2, {3, 4}, {0, 1}}, {3, {2, 3, 4}, {0, 2}}, {3, {2, 1, 3}, {-1, -3}},
      {1, {4}, {0, 0}},    {3, {1, 4, 1}, {1, 2}},
  };
  sg_rng r;
  sg_rng_seed(&r, 23);
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    sg_tensor *x = rand_leaf(&r, cases[i].nd, cases[i].in);
    check_all(do_transpose, &x, 1, (void *)cases[i].axes);
    sg_free(x);
  }
}
END_TEST

/* ---- concat ------------------------------------------------------------ */

static sg_tensor *do_concat(sg_graph *g, sg_tensor *const *in, int n, void *ctx) {
  return sg_concat(g, n, in, *(const int *)ctx);
}

/* The same tensor twice: its gradient is the sum of both slabs'. */
static sg_tensor *concat_self(sg_graph *g, sg_tensor *const *in, int n, void *ctx) {
  (void)n;
  sg_tensor *twice[3] = {in[0], in[1], in[0]};
  return sg_concat(g, 3, twice, *(const int *)ctx);
}

START_TEST(gradcheck_concat) {
  sg_rng r;
  sg_rng_seed(&r, 24);
  const struct {
    int n, nd, axis;
    int64_t shapes[3][3];
  } cases[] = {
      {3, 2, 1, {{2, 3}, {2, 1}, {2, 4}}},
      {2, 2, 0, {{1, 3}, {2, 3}}},
      {2, 1, -1, {{3}, {2}}},
      {3, 3, 1, {{2, 1, 2}, {2, 2, 2}, {2, 1, 2}}},
      {1, 2, 0, {{2, 2}}},
      {2, 3, 2, {{1, 2, 1}, {1, 2, 3}}},
  };
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    sg_tensor *in[3];
    for (int i = 0; i < cases[c].n; i++) in[i] = rand_leaf(&r, cases[c].nd, cases[c].shapes[i]);
    check_all(do_concat, in, cases[c].n, (void *)&cases[c].axis);
    if (cases[c].n >= 2) check_all(concat_self, in, 2, (void *)&cases[c].axis);
    for (int i = 0; i < cases[c].n; i++) sg_free(in[i]);
  }
  /* More inputs than a node holds, and only some requiring a gradient: the
   * last one alone must still be recorded. */
  sg_tensor *many[6];
  for (int i = 0; i < 6; i++) {
    many[i] = rand_leaf(&r, 3, (int64_t[]){2, i % 2 + 1, 2});
    sg_set_requires_grad(many[i], i == 1 || i == 5);
  }
  int axis = -2;
  check_all(do_concat, many, 6, &axis);
  for (int i = 0; i < 5; i++) sg_set_requires_grad(many[i], false);
  check_all(do_concat, many, 6, &axis);
  for (int i = 0; i < 6; i++) sg_free(many[i]);
}
END_TEST

/* ---- slice ------------------------------------------------------------- */

typedef struct slice_arg {
  int axis;
  int64_t start, end;
} slice_arg;

static sg_tensor *do_slice(sg_graph *g, sg_tensor *const *in, int n, void *ctx) {
  (void)n;
  const slice_arg *s = ctx;
  return sg_slice(g, in[0], s->axis, s->start, s->end);
}

START_TEST(gradcheck_slice) {
  const struct {
    int nd;
    int64_t in[3];
    slice_arg s;
  } cases[] = {
      {2, {5, 3}, {0, 1, 4}},     {3, {2, 6, 1}, {1, -4, -1}}, {1, {4}, {0, 0, 4}},
      {2, {3, 1}, {1, 0, 1}},     {3, {2, 3, 4}, {-1, 3, 4}},  {2, {2, 3}, {1, 1, 1}},
      {3, {1, 4, 2}, {0, -1, 1}},
  };
  sg_rng r;
  sg_rng_seed(&r, 25);
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    sg_tensor *x = rand_leaf(&r, cases[i].nd, cases[i].in);
    SG_ASSERT_CHECK(sg_gradcheck(do_slice, &x, 1, (void *)&cases[i].s, NULL));
    /* An empty slice has no output element to compare in float32. */
    sg_graph *g = sg_graph_new();
    sg_tensor *y = do_slice(g, &x, 1, (void *)&cases[i].s);
    if (y->numel > 0)
      SG_ASSERT_CHECK(sg_check_f32_forward(do_slice, &x, 1, (void *)&cases[i].s, 1e-300, 6e-8));
    sg_graph_free(g);
    sg_free(x);
  }
}
END_TEST

/* ---- expand ------------------------------------------------------------ */

static sg_tensor *do_expand(sg_graph *g, sg_tensor *const *in, int n, void *ctx) {
  (void)n;
  const shape_arg *s = ctx;
  return sg_expand(g, in[0], s->ndim, s->shape);
}

START_TEST(gradcheck_expand) {
  const struct {
    int nd;
    int64_t in[3];
    shape_arg to;
  } cases[] = {
      {2, {3, 1}, {3, {2, 3, 4}}},       {1, {1}, {1, {5}}},    {0, {0}, {2, {2, 2}}},
      {3, {2, 1, 3}, {3, {2, 4, 3}}},    {1, {4}, {2, {3, 4}}}, {2, {1, 1}, {2, {1, 1}}},
      {3, {1, 2, 1}, {4, {2, 3, 2, 2}}},
  };
  sg_rng r;
  sg_rng_seed(&r, 26);
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    sg_tensor *x = rand_leaf(&r, cases[i].nd, cases[i].in);
    check_all(do_expand, &x, 1, (void *)&cases[i].to);
    sg_free(x);
  }
}
END_TEST

/* ---- repeat ------------------------------------------------------------ */

static sg_tensor *do_repeat(sg_graph *g, sg_tensor *const *in, int n, void *ctx) {
  (void)n;
  return sg_repeat(g, in[0], ctx);
}

START_TEST(gradcheck_repeat) {
  const struct {
    int nd;
    int64_t in[3], reps[3];
  } cases[] = {
      {2, {2, 3}, {2, 1}}, {2, {1, 2}, {3, 2}},       {3, {2, 1, 2}, {1, 3, 2}}, {1, {3}, {4}},
      {2, {2, 2}, {1, 1}}, {3, {1, 1, 1}, {2, 3, 1}}, {3, {2, 3, 1}, {2, 1, 3}}, {0, {0}, {0}},
  };
  sg_rng r;
  sg_rng_seed(&r, 27);
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    sg_tensor *x = rand_leaf(&r, cases[i].nd, cases[i].in);
    check_all(do_repeat, &x, 1, (void *)cases[i].reps);
    sg_free(x);
  }
}
END_TEST

/* ---- forward values ---------------------------------------------------- */

START_TEST(forward_values) {
  sg_graph *g = sg_graph_new();
  for (int dt = 0; dt < 2; dt++) {
    sg_tensor *a23 = arange(g, (sg_dtype)dt, 2, (int64_t[]){2, 3});
    assert_values(sg_reshape(g, a23, 2, (int64_t[]){3, -1}), 2, (int64_t[]){3, 2},
                  (double[]){0, 1, 2, 3, 4, 5});
    assert_values(sg_transpose(g, a23, 0, 1), 2, (int64_t[]){3, 2}, (double[]){0, 3, 1, 4, 2, 5});
    /* out[k][i][j] = a[i][j][k] = 6i + 3j + k */
    sg_tensor *a223 = arange(g, (sg_dtype)dt, 3, (int64_t[]){2, 2, 3});
    assert_values(sg_permute(g, a223, (int[]){2, 0, 1}), 3, (int64_t[]){3, 2, 2},
                  (double[]){0, 3, 6, 9, 1, 4, 7, 10, 2, 5, 8, 11});
    sg_tensor *c21 = sg_from_f64(g, (sg_dtype)dt, 2, (int64_t[]){2, 1}, (double[]){1, 2});
    sg_tensor *c22 = sg_from_f64(g, (sg_dtype)dt, 2, (int64_t[]){2, 2}, (double[]){3, 4, 5, 6});
    sg_tensor *c12 = sg_from_f64(g, (sg_dtype)dt, 2, (int64_t[]){1, 2}, (double[]){1, 2});
    assert_values(sg_concat(g, 2, (sg_tensor *[]){c21, c22}, 1), 2, (int64_t[]){2, 3},
                  (double[]){1, 3, 4, 2, 5, 6});
    assert_values(sg_concat(g, 2, (sg_tensor *[]){c12, c22}, 0), 2, (int64_t[]){3, 2},
                  (double[]){1, 2, 3, 4, 5, 6});
    sg_tensor *a34 = arange(g, (sg_dtype)dt, 2, (int64_t[]){3, 4});
    assert_values(sg_slice(g, a34, 1, 1, -1), 2, (int64_t[]){3, 2}, (double[]){1, 2, 5, 6, 9, 10});
    assert_values(sg_slice(g, a34, 0, -1, 3), 2, (int64_t[]){1, 4}, (double[]){8, 9, 10, 11});
    assert_values(sg_slice(g, a34, -2, 1, 1), 2, (int64_t[]){0, 4}, NULL);
    assert_values(sg_slice(g, a34, -1, 2, 2), 2, (int64_t[]){3, 0}, NULL);
    sg_tensor *e31 = sg_from_f64(g, (sg_dtype)dt, 2, (int64_t[]){3, 1}, (double[]){1, 2, 3});
    assert_values(sg_expand(g, e31, 3, (int64_t[]){2, 3, 2}), 3, (int64_t[]){2, 3, 2},
                  (double[]){1, 1, 2, 2, 3, 3, 1, 1, 2, 2, 3, 3});
    assert_values(sg_repeat(g, c12, (int64_t[]){2, 3}), 2, (int64_t[]){2, 6},
                  (double[]){1, 2, 1, 2, 1, 2, 1, 2, 1, 2, 1, 2});
    assert_values(sg_repeat(g, c21, (int64_t[]){2, 2}), 2, (int64_t[]){4, 2},
                  (double[]){1, 1, 2, 2, 1, 1, 2, 2});
    assert_values(sg_repeat(g, c21, (int64_t[]){0, 2}), 2, (int64_t[]){0, 2}, NULL);
  }
  sg_graph_free(g);
}
END_TEST

/* Outputs are copies: writing to one leaves the input alone. */
START_TEST(outputs_do_not_alias_inputs) {
  sg_graph *g = sg_graph_new();
  sg_tensor *a = arange(g, SG_F64, 2, (int64_t[]){2, 2});
  sg_tensor *outs[] = {sg_reshape(g, a, 1, (int64_t[]){4}),
                       sg_permute(g, a, (int[]){0, 1}),
                       sg_slice(g, a, 0, 0, 2),
                       sg_expand(g, a, 2, (int64_t[]){2, 2}),
                       sg_repeat(g, a, (int64_t[]){1, 1}),
                       sg_concat(g, 1, &a, 0)};
  for (size_t i = 0; i < sizeof outs / sizeof outs[0]; i++) {
    ck_assert_ptr_ne(outs[i]->data, a->data);
    sg_set(outs[i], 0, 100);
    ck_assert_double_eq(sg_get(a, 0), 0);
  }
  sg_graph_free(g);
}
END_TEST

/* Tensors above the threading threshold and rows longer than one tile,
 * checked element by element against index arithmetic. */
START_TEST(forward_large) {
  sg_graph *g = sg_graph_new();
  const int64_t s[3] = {37, 41, 43}; /* 65231 elements */
  sg_tensor *a = arange(g, SG_F64, 3, s);
  sg_tensor *p = sg_permute(g, a, (int[]){2, 0, 1});
  for (int64_t k = 0; k < s[2]; k++)
    for (int64_t i = 0; i < s[0]; i++)
      for (int64_t j = 0; j < s[1]; j++)
        ck_assert_double_eq(sg_get(p, (k * s[0] + i) * s[1] + j), (i * s[1] + j) * s[2] + k);
  sg_tensor *c = sg_concat(g, 2, (sg_tensor *[]){a, a}, 1);
  for (int64_t i = 0; i < c->numel; i += 7) {
    int64_t row = i / (2 * s[1] * s[2]), within = i % (s[1] * s[2]);
    ck_assert_double_eq(sg_get(c, i), row * s[1] * s[2] + within);
  }
  int64_t n = 50000;
  sg_tensor *v = arange(g, SG_F32, 1, &n);
  sg_tensor *rep = sg_repeat(g, v, (int64_t[]){3});
  sg_tensor *sl = sg_slice(g, rep, 0, 10000, 140000);
  ck_assert_int_eq(sl->numel, 130000);
  for (int64_t i = 0; i < sl->numel; i++)
    ck_assert_double_eq(sg_get(sl, i), (double)((i + 10000) % n));
  sg_graph_free(g);
}
END_TEST

/* repeat's backward sums tiles; permute's scatters. Both must give the same
 * bits on one thread and two. */
static sg_tensor *big_chain(sg_graph *g, sg_tensor *x) {
  sg_tensor *t = sg_repeat(g, x, (int64_t[]){3, 1, 4});
  t = sg_permute(g, t, (int[]){1, 2, 0});
  return sg_mul(g, t, t);
}

static void run_big(int threads, sg_tensor *x, sg_tensor **y_out) {
  omp_set_num_threads(threads);
  sg_zero_grad(x);
  sg_graph *g = sg_graph_new();
  sg_tensor *y = big_chain(g, x);
  sg_backward_with(g, y, sg_ones(g, y->dtype, y->ndim, y->shape));
  *y_out = sg_clone(NULL, y);
  sg_graph_free(g);
}

START_TEST(threads_give_bitwise_identical_results) {
  sg_rng r;
  sg_rng_seed(&r, 28);
  sg_tensor *x = sg_rand_normal(NULL, &r, SG_F32, 3, (int64_t[]){20, 30, 50}, 0, 1);
  sg_set_requires_grad(x, true);
  sg_tensor *y1, *y2;
  run_big(1, x, &y1);
  sg_tensor *g1 = sg_clone(NULL, x->grad);
  run_big(2, x, &y2);
  ck_assert_mem_eq(y1->data, y2->data, (size_t)y1->numel * sizeof(float));
  ck_assert_mem_eq(g1->data, x->grad->data, (size_t)x->numel * sizeof(float));
  /* d/dx sum over 12 tiles of t^2 = 24 x: exact in float32 up to rounding. */
  for (int64_t i = 0; i < x->numel; i += 11)
    ck_assert_float_eq_tol(sg_get(x->grad, i), 24 * sg_get(x, i), 1e-5 * fabs(sg_get(x, i)));
  sg_tensor *all[] = {x, y1, y2, g1};
  for (int i = 0; i < 4; i++) sg_free(all[i]);
  omp_set_num_threads(omp_get_num_procs());
}
END_TEST

/* ---- misuse ------------------------------------------------------------ */

/* Runs CALL (an op through its macro) and asserts that it returned NULL
 * after exactly one report naming OP, this file and line, and every
 * fragment listed (shapes, values). __LINE__ here and the op macro's own
 * __LINE__ expand in the same macro invocation, so they agree. */
START_TEST(misuse_is_reported) {
  sg_graph *g = sg_graph_new();
  sg_test_capture_errors();
  sg_tensor *a = sg_zeros(g, SG_F64, 2, (int64_t[]){2, 3});
  sg_tensor *b = sg_zeros(g, SG_F64, 2, (int64_t[]){3, 3});
  sg_tensor *f = sg_zeros(g, SG_F32, 2, (int64_t[]){2, 1});
  SG_EXPECT_MISUSE(sg_permute(g, a, (int[]){0, 0}), "sg_permute", "[2, 3]", "[0, 0]");
  SG_EXPECT_MISUSE(sg_permute(g, a, (int[]){0, 2}), "sg_permute", "[2, 3]", "[0, 2]");
  SG_EXPECT_MISUSE(sg_transpose(g, a, 0, 2), "sg_transpose", "[2, 3]", "axis 2");
  SG_EXPECT_MISUSE(sg_concat(g, 2, (sg_tensor *[]){a, b}, 1), "sg_concat", "[2, 3]", "[3, 3]");
  SG_EXPECT_MISUSE(sg_concat(g, 2, (sg_tensor *[]){a, f}, 1), "sg_concat", "float32", "float64");
  SG_EXPECT_MISUSE(sg_concat(g, 0, (sg_tensor *[]){a}, 0), "sg_concat", "n = 0");
  SG_EXPECT_MISUSE(sg_slice(g, a, 1, 1, 4), "sg_slice", "[2, 3]", "[1, 4)");
  SG_EXPECT_MISUSE(sg_slice(g, a, 1, 2, 1), "sg_slice", "[2, 3]", "[2, 1)");
  SG_EXPECT_MISUSE(sg_slice(g, a, 0, -3, 1), "sg_slice", "[2, 3]", "[-3, 1)");
  SG_EXPECT_MISUSE(sg_expand(g, a, 2, (int64_t[]){2, 4}), "sg_expand", "[2, 3]", "[2, 4]");
  SG_EXPECT_MISUSE(sg_expand(g, a, 1, (int64_t[]){3}), "sg_expand", "[2, 3]");
  SG_EXPECT_MISUSE(sg_reshape(g, a, 2, (int64_t[]){4, 2}), "sg_reshape", "[2, 3]", "[4, 2]");
  SG_EXPECT_MISUSE(sg_reshape(g, a, 2, (int64_t[]){-1, -1}), "sg_reshape", "[2, 3]", "[-1, -1]");
  SG_EXPECT_MISUSE(sg_reshape(g, a, 2, (int64_t[]){4, -1}), "sg_reshape", "[2, 3]", "[4, -1]");
  SG_EXPECT_MISUSE(sg_repeat(g, a, (int64_t[]){2, -1}), "sg_repeat", "[2, 3]", "[2, -1]");
  /* A NULL input (an earlier failure) returns NULL without a new report. */
  sg_test_errors = (sg_test_error_log){0};
  ck_assert_ptr_null(sg_reshape(g, NULL, 1, (int64_t[]){6}));
  ck_assert_ptr_null(sg_permute(g, NULL, (int[]){0}));
  ck_assert_ptr_null(sg_concat(g, 2, (sg_tensor *[]){a, NULL}, 0));
  ck_assert_ptr_null(sg_slice(g, NULL, 0, 0, 1));
  ck_assert_ptr_null(sg_expand(g, NULL, 1, (int64_t[]){2}));
  ck_assert_ptr_null(sg_repeat(g, NULL, (int64_t[]){2}));
  ck_assert_int_eq(sg_test_errors.count, 0);
  sg_set_error_handler(NULL, NULL);
  sg_graph_free(g);
}
END_TEST

Suite *suite_shape(void) {
  const sg_test_case cases[] = {
      {"gradcheck_reshape", gradcheck_reshape},
      {"gradcheck_permute", gradcheck_permute},
      {"gradcheck_transpose", gradcheck_transpose},
      {"gradcheck_concat", gradcheck_concat},
      {"gradcheck_slice", gradcheck_slice},
      {"gradcheck_expand", gradcheck_expand},
      {"gradcheck_repeat", gradcheck_repeat},
      {"forward_values", forward_values},
      {"outputs_do_not_alias_inputs", outputs_do_not_alias_inputs},
      {"forward_large", forward_large},
      {"threads_give_bitwise_identical_results", threads_give_bitwise_identical_results},
      {"misuse_is_reported", misuse_is_reported},
  };
  return sg_test_suite("shape", cases, sizeof cases / sizeof cases[0], 0);
}
