/* Elementwise ops: forward values and float64 gradient checks over shapes
 * that exercise broadcasting and size-1 axes. */
#include "sg_test.h"

typedef sg_tensor *(*binary_fn)(sg_graph *, sg_tensor *, sg_tensor *);
typedef sg_tensor *(*unary_fn)(sg_graph *, sg_tensor *);

static sg_tensor *apply_binary(sg_graph *g, sg_tensor *const *in, int n, void *ctx) {
  (void)n;
  return ((binary_fn)ctx)(g, in[0], in[1]);
}
static sg_tensor *apply_unary(sg_graph *g, sg_tensor *const *in, int n, void *ctx) {
  (void)n;
  return ((unary_fn)ctx)(g, in[0]);
}

/* Shape pairs covering equal shapes, scalars, size-1 axes on either side
 * and rank differences. */
static const struct {
  int na, nb;
  int64_t a[4], b[4];
} pairs[] = {
    {2, 2, {3, 4}, {3, 4}},    {2, 1, {3, 4}, {4}}, {2, 2, {3, 1}, {1, 4}},
    {3, 2, {2, 3, 4}, {3, 1}}, {0, 2, {0}, {2, 3}}, {3, 3, {2, 1, 4}, {1, 3, 1}},
};

/* Values kept away from 0 (for div and the denominators) by shifting to
 * [lo, hi]. */
static sg_tensor *rand_input(sg_rng *r, int nd, const int64_t *shape, double lo, double hi) {
  sg_tensor *t = sg_rand_uniform(NULL, r, SG_F64, nd, shape, lo, hi);
  sg_set_requires_grad(t, true);
  return t;
}

static void check_binary(binary_fn f, double lo, double hi) {
  sg_rng r;
  sg_rng_seed(&r, 7);
  for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++) {
    sg_tensor *in[2] = {rand_input(&r, pairs[i].na, pairs[i].a, lo, hi),
                        rand_input(&r, pairs[i].nb, pairs[i].b, lo, hi)};
    SG_ASSERT_CHECK(sg_gradcheck(apply_binary, in, 2, (void *)f, NULL));
    SG_ASSERT_CHECK(sg_check_f32_forward(apply_binary, in, 2, (void *)f, 1e-6, 1e-6));
    sg_free(in[0]);
    sg_free(in[1]);
  }
}

/* The function-pointer forms of the op macros: (sg_add) names the function. */
START_TEST(gradcheck_add) {
  check_binary((sg_add), -2, 2);
}
END_TEST
START_TEST(gradcheck_sub) {
  check_binary((sg_sub), -2, 2);
}
END_TEST
START_TEST(gradcheck_mul) {
  check_binary((sg_mul), -2, 2);
}
END_TEST
START_TEST(gradcheck_div) {
  check_binary((sg_div), 0.5, 2);
}
END_TEST

static void check_unary(unary_fn f, double lo, double hi, double f32_rtol) {
  sg_rng r;
  sg_rng_seed(&r, 11);
  const int64_t shapes[][3] = {{5, 1, 1}, {3, 4, 1}, {2, 1, 3}};
  const int nds[] = {1, 2, 3};
  for (int i = 0; i < 3; i++) {
    sg_tensor *x = rand_input(&r, nds[i], shapes[i], lo, hi);
    SG_ASSERT_CHECK(sg_gradcheck(apply_unary, &x, 1, (void *)f, NULL));
    SG_ASSERT_CHECK(sg_check_f32_forward(apply_unary, &x, 1, (void *)f, 1e-6, f32_rtol));
    sg_free(x);
  }
}

START_TEST(gradcheck_neg) {
  check_unary((sg_neg), -2, 2, 1e-7);
}
END_TEST
START_TEST(gradcheck_exp) {
  check_unary((sg_exp), -3, 3, 1e-6);
}
END_TEST
START_TEST(gradcheck_log) {
  check_unary((sg_log), 0.2, 3, 1e-6);
}
END_TEST
START_TEST(gradcheck_sqrt) {
  check_unary((sg_sqrt), 0.2, 3, 1e-6);
}
END_TEST
START_TEST(gradcheck_square) {
  check_unary((sg_square), -2, 2, 1e-6);
}
END_TEST
START_TEST(gradcheck_sigmoid) {
  check_unary((sg_sigmoid), -4, 4, 1e-6);
}
END_TEST
START_TEST(gradcheck_tanh) {
  check_unary((sg_tanh), -3, 3, 1e-6);
}
END_TEST
/* Kinked ops are sampled on each side of the kink, never within eps of it. */
START_TEST(gradcheck_abs) {
  check_unary((sg_abs), 0.1, 2, 1e-7);
  check_unary((sg_abs), -2, -0.1, 1e-7);
}
END_TEST
START_TEST(gradcheck_relu) {
  check_unary((sg_relu), 0.1, 2, 1e-7);
  check_unary((sg_relu), -2, -0.1, 1e-7);
}
END_TEST

static sg_tensor *scale_by(sg_graph *g, sg_tensor *const *in, int n, void *ctx) {
  (void)n;
  return sg_scale(g, in[0], *(double *)ctx);
}
static sg_tensor *add_scalar_of(sg_graph *g, sg_tensor *const *in, int n, void *ctx) {
  (void)n;
  return sg_add_scalar(g, in[0], *(double *)ctx);
}
static sg_tensor *pow_of(sg_graph *g, sg_tensor *const *in, int n, void *ctx) {
  (void)n;
  return sg_pow(g, in[0], *(double *)ctx);
}

static void check_scalar_op(sg_check_fn f, const double *params, int np, double lo, double hi) {
  sg_rng r;
  sg_rng_seed(&r, 3);
  for (int i = 0; i < np; i++) {
    sg_tensor *x = rand_input(&r, 2, (int64_t[]){3, 2}, lo, hi);
    SG_ASSERT_CHECK(sg_gradcheck(f, &x, 1, (void *)&params[i], NULL));
    SG_ASSERT_CHECK(sg_check_f32_forward(f, &x, 1, (void *)&params[i], 1e-6, 1e-6));
    sg_free(x);
  }
}

START_TEST(gradcheck_scale) {
  check_scalar_op(scale_by, (double[]){-2.5, 0, 3}, 3, -2, 2);
}
END_TEST
START_TEST(gradcheck_add_scalar) {
  check_scalar_op(add_scalar_of, (double[]){-1, 4}, 2, -2, 2);
}
END_TEST
START_TEST(gradcheck_pow) {
  check_scalar_op(pow_of, (double[]){-1.5, 0.5, 2, 3.7}, 4, 0.3, 2);
}
END_TEST

/* Forward values against hand-computed references, broadcasting included. */
START_TEST(forward_values) {
  sg_graph *g = sg_graph_new();
  sg_tensor *a = sg_from_f64(g, SG_F64, 2, (int64_t[]){2, 3}, (double[]){1, 2, 3, 4, 5, 6});
  sg_tensor *b = sg_from_f64(g, SG_F64, 1, (int64_t[]){3}, (double[]){10, 20, 30});
  sg_tensor *c = sg_from_f64(g, SG_F64, 2, (int64_t[]){2, 1}, (double[]){2, 4});
  const double add[] = {11, 22, 33, 14, 25, 36}, div[] = {0.5, 1, 1.5, 1, 1.25, 1.5};
  sg_tensor *s = sg_add(g, a, b), *q = sg_div(g, a, c);
  ck_assert_int_eq(s->ndim, 2);
  for (int i = 0; i < 6; i++) {
    ck_assert_double_eq(sg_get(s, i), add[i]);
    ck_assert_double_eq(sg_get(q, i), div[i]);
  }
  sg_tensor *x = sg_from_f64(g, SG_F64, 1, (int64_t[]){4}, (double[]){-2, -0.5, 0, 3});
  const double relu[] = {0, 0, 0, 3}, sig0 = 0.5;
  sg_tensor *rl = sg_relu(g, x), *sg = sg_sigmoid(g, x), *th = sg_tanh(g, x), *ex = sg_exp(g, x);
  for (int i = 0; i < 4; i++) {
    ck_assert_double_eq(sg_get(rl, i), relu[i]);
    ck_assert_double_eq_tol(sg_get(th, i), tanh(sg_get(x, i)), 1e-15);
    ck_assert_double_eq_tol(sg_get(ex, i), exp(sg_get(x, i)), 1e-15 * exp(sg_get(x, i)));
  }
  ck_assert_double_eq(sg_get(sg, 2), sig0);
  /* A large negative logit must not overflow exp in the sigmoid. */
  sg_tensor *big = sg_from_f64(g, SG_F32, 1, (int64_t[]){2}, (double[]){-1000, 1000});
  sg_tensor *sb = sg_sigmoid(g, big);
  ck_assert_double_eq(sg_get(sb, 0), 0.0);
  ck_assert_double_eq(sg_get(sb, 1), 1.0);
  sg_graph_free(g);
}
END_TEST

/* Long vectors go through the SLEEF kernels and the threaded loops. */
START_TEST(forward_large_vector_math) {
  sg_graph *g = sg_graph_new();
  sg_rng r;
  sg_rng_seed(&r, 5);
  int64_t n = 100003;
  sg_tensor *x = sg_rand_uniform(g, &r, SG_F64, 1, &n, 0.1, 5);
  sg_tensor *e = sg_exp(g, x), *l = sg_log(g, x), *t = sg_tanh(g, x);
  for (int64_t i = 0; i < n; i += 997) {
    double v = sg_get(x, i);
    /* SLEEF's u10 functions are within 1 ulp, libm within 0.5: 1.5 ulp apart. */
    ck_assert_double_eq_tol(sg_get(e, i), exp(v), 3.4e-16 * exp(v));
    ck_assert_double_eq_tol(sg_get(l, i), log(v), 3.4e-16 * fabs(log(v)));
    ck_assert_double_eq_tol(sg_get(t, i), tanh(v), 3.4e-16);
  }
  sg_graph_free(g);
}
END_TEST

/* sg_add_ and sg_relu_ give sg_add's and sg_relu's values bitwise, in a's
 * own buffer (short rows and the threaded long-vector path), and refuse to
 * overwrite what a gradient may need. */
START_TEST(inplace_forms) {
  sg_rng r;
  sg_rng_seed(&r, 9);
  const struct {
    int na, nb;
    int64_t a[3], b[3];
  } fits[] = {{2, 2, {3, 4}, {3, 4}},
              {2, 1, {3, 4}, {4}},
              {3, 2, {2, 3, 4}, {3, 1}},
              {1, 1, {100003}, {100003}},
              {2, 1, {2, 60000}, {60000}}};
  sg_graph *g = sg_graph_new();
  sg_set_grad_enabled(g, false);
  for (size_t i = 0; i < sizeof fits / sizeof fits[0]; i++) {
    sg_tensor *a = sg_rand_uniform(g, &r, SG_F32, fits[i].na, fits[i].a, -1, 1);
    sg_tensor *b = sg_rand_uniform(g, &r, SG_F32, fits[i].nb, fits[i].b, -1, 1);
    sg_tensor *sum = sg_add(g, a, b), *relu = sg_relu(g, sum);
    void *buffer = a->data;
    ck_assert_ptr_eq(sg_add_(g, a, b), a);
    ck_assert_ptr_eq(a->data, buffer);
    ck_assert_mem_eq(a->data, sum->data, (size_t)a->numel * sizeof(float));
    ck_assert_ptr_eq(sg_relu_(g, a), a);
    ck_assert_mem_eq(a->data, relu->data, (size_t)a->numel * sizeof(float));
  }
  sg_tensor *a = sg_rand_uniform(g, &r, SG_F64, 2, (int64_t[]){3, 1}, -1, 1);
  sg_tensor *wide = sg_rand_uniform(g, &r, SG_F64, 2, (int64_t[]){1, 4}, -1, 1);
  sg_tensor *leaf = sg_rand_uniform(NULL, &r, SG_F64, 1, (int64_t[]){4}, -1, 1);
  sg_set_requires_grad(leaf, true);
  sg_test_capture_errors();
  SG_EXPECT_MISUSE(sg_add_(g, a, wide), "sg_add_", "[1, 4]", "[3, 1]", "larger shape");
  SG_EXPECT_MISUSE(sg_relu_(g, leaf), "sg_relu_", "[4]", "requires a gradient");
  sg_set_grad_enabled(g, true);
  SG_EXPECT_MISUSE(sg_relu_(g, a), "sg_relu_", "gradients are on");
  sg_set_error_handler(NULL, NULL);
  sg_free(leaf);
  sg_graph_free(g);
}
END_TEST

Suite *suite_elementwise(void) {
  const sg_test_case cases[] = {
      {"gradcheck_add", gradcheck_add},
      {"gradcheck_sub", gradcheck_sub},
      {"gradcheck_mul", gradcheck_mul},
      {"gradcheck_div", gradcheck_div},
      {"gradcheck_neg", gradcheck_neg},
      {"gradcheck_scale", gradcheck_scale},
      {"gradcheck_add_scalar", gradcheck_add_scalar},
      {"gradcheck_exp", gradcheck_exp},
      {"gradcheck_log", gradcheck_log},
      {"gradcheck_sqrt", gradcheck_sqrt},
      {"gradcheck_square", gradcheck_square},
      {"gradcheck_pow", gradcheck_pow},
      {"gradcheck_abs", gradcheck_abs},
      {"gradcheck_relu", gradcheck_relu},
      {"gradcheck_sigmoid", gradcheck_sigmoid},
      {"gradcheck_tanh", gradcheck_tanh},
      {"forward_values", forward_values},
      {"forward_large_vector_math", forward_large_vector_math},
      {"inplace_forms", inplace_forms},
  };
  return sg_test_suite("elementwise", cases, sizeof cases / sizeof cases[0], 0);
}
