/* Layers: softmax, log_softmax, Gumbel-Softmax, LayerNorm and attention.
 * Float64 gradient checks over several shapes, the straight-through
 * Gumbel gradient, thread-count determinism and misuse reports. */
#include "layers_helpers.h"
#include "sg_test.h"

#include <float.h>
#include <omp.h>
#include <string.h>

/* ---- softmax and log_softmax --------------------------------------------- */

/* Shapes and axes: last, middle and first axis, slices of length 1, rows
 * longer than the 16 reduction lanes, and a strided axis wider than one
 * column tile (256). */
static const struct {
  int nd;
  int64_t shape[3];
  int axis;
} softmax_shapes[] = {
    {2, {3, 5}, -1},   {3, {2, 4, 3}, 1}, {2, {4, 3}, 0},   {1, {5}, 0},
    {3, {2, 3, 1}, 2}, {3, {2, 1, 3}, 1}, {2, {3, 40}, -1}, {3, {1, 3, 300}, 1},
};

static void gradcheck_softmax_like(sg_check_fn f) {
  sg_rng r;
  sg_rng_seed(&r, 21);
  for (size_t i = 0; i < sizeof softmax_shapes / sizeof softmax_shapes[0]; i++) {
    sg_tensor *x = rand_leaf(&r, softmax_shapes[i].nd, softmax_shapes[i].shape, -3, 3);
    int axis = softmax_shapes[i].axis;
    /* float32: inputs of magnitude 3 rounded to float32 move the outputs by
     * ~2*3*2^-24 (relative) and the kernel adds a few roundings: 1e-6 covers
     * both with a margin of ~2. */
    check_op(f, &x, 1, &axis, 1e-6);
    sg_free(x);
  }
}

START_TEST(gradcheck_softmax) {
  gradcheck_softmax_like(apply_softmax);
  /* Masked entries: -inf stays -inf when perturbed, so the numeric
   * derivative there is 0, and the analytic one must be 0 too. */
  double xs[] = {0.3, -INFINITY, 1.2, -0.7, -INFINITY, -INFINITY, 2.0, -INFINITY};
  sg_tensor *x = sg_from_f64(NULL, SG_F64, 2, (int64_t[]){2, 4}, xs);
  sg_set_requires_grad(x, true);
  int axis = -1;
  SG_ASSERT_CHECK(sg_gradcheck(apply_softmax, &x, 1, &axis, NULL));
  sg_free(x);
}
END_TEST

START_TEST(gradcheck_log_softmax) {
  gradcheck_softmax_like(apply_log_softmax);
}
END_TEST

/* ---- layer norm ---------------------------------------------------------- */

START_TEST(gradcheck_layer_norm) {
  static const struct {
    int nd;
    int64_t shape[3];
    bool gain, bias;
  } cases[] = {
      {2, {3, 4}, true, true},
      {3, {2, 3, 5}, false, false},
      {2, {4, 7}, true, false},
      {2, {3, 2}, false, true},
      {2, {2, 2}, true, true},
      {2, {40, 6}, true, true},
      {1, {20}, true, true},
      /* Widths that take the vectorised row sums and row groups. */
      {2, {3, 48}, true, true},
      {3, {2, 2, 67}, true, false},
  };
  sg_rng r;
  sg_rng_seed(&r, 33);
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    int64_t D = cases[i].shape[cases[i].nd - 1];
    sg_tensor *in[3];
    int n = 0;
    in[n++] = rand_leaf(&r, cases[i].nd, cases[i].shape, -2, 2);
    if (cases[i].gain) in[n++] = rand_leaf(&r, 1, &D, 0.5, 1.5);
    if (cases[i].bias) in[n++] = rand_leaf(&r, 1, &D, -1, 1);
    ln_ctx c = {1e-5, cases[i].gain, cases[i].bias};
    /* float32: normalised outputs are O(1); each passes ~6 roundings plus a
     * 20-term sum, and the 2^-24 input rounding is amplified by rstd*|x| <~ 4. */
    check_op(apply_layer_norm, in, n, &c, 1e-6);
    free_all(in, n);
  }
}
END_TEST

/* D = 1: the variance is 0, the normalised value is exactly 0, so y = bias
 * (0 without bias), the input gradient is exactly 0, the gain gradient is
 * 0 and the bias gradient is the summed output gradient. The function is
 * constant in x, so this is the true derivative, not a convention. */
START_TEST(layer_norm_width_one) {
  sg_graph *g = sg_graph_new();
  sg_rng r;
  sg_rng_seed(&r, 4);
  for (int dt = 0; dt < 2; dt++) {
    sg_tensor *x = sg_rand_uniform(NULL, &r, (sg_dtype)dt, 2, (int64_t[]){5, 1}, -3, 3);
    sg_tensor *gain = sg_full(NULL, (sg_dtype)dt, 1, (int64_t[]){1}, 1.7);
    sg_tensor *bias = sg_full(NULL, (sg_dtype)dt, 1, (int64_t[]){1}, -0.25);
    sg_set_requires_grad(x, true);
    sg_set_requires_grad(gain, true);
    sg_set_requires_grad(bias, true);
    sg_tensor *y = sg_layer_norm(g, x, gain, bias, 1e-5);
    sg_tensor *y0 = sg_layer_norm(g, x, NULL, NULL, 1e-5);
    sg_tensor *go = sg_rand_normal(g, &r, (sg_dtype)dt, 2, (int64_t[]){5, 1}, 0, 1);
    sg_backward_with(g, y, go);
    double go_sum = 0;
    for (int i = 0; i < 5; i++) {
      ck_assert_double_eq(sg_get(y, i), sg_get(bias, 0));
      ck_assert_double_eq(sg_get(y0, i), 0.0);
      ck_assert_double_eq(sg_get(x->grad, i), 0.0);
      go_sum += sg_get(go, i);
    }
    ck_assert_double_eq(sg_get(gain->grad, 0), 0.0);
    ck_assert_double_eq_tol(sg_get(bias->grad, 0), go_sum, dt == SG_F32 ? 1e-6 : 1e-15);
    sg_free(x), sg_free(gain), sg_free(bias);
    sg_graph_reset(g);
  }
  sg_graph_free(g);
}
END_TEST

/* ---- Gumbel-Softmax ------------------------------------------------------ */

/* The gradient of the hard sample (straight-through) is bitwise the soft
 * sample's, for the same logits, noise and output gradient. */
static void assert_hard_grad_is_soft(sg_tensor *const *in, gs_ctx c) {
  sg_rng r;
  sg_rng_seed(&r, 5);
  sg_tensor *logits = sg_clone(NULL, in[0]), *grads[2];
  sg_set_requires_grad(logits, true);
  for (int hard = 0; hard < 2; hard++) {
    sg_graph *g = sg_graph_new();
    sg_tensor *y = sg_gumbel_softmax(g, logits, c.tau, c.axis, hard, in[1], NULL);
    sg_backward_with(g, y, sg_rand_normal(g, &r, SG_F64, y->ndim, y->shape, 0, 1));
    grads[hard] = sg_clone(NULL, logits->grad);
    sg_zero_grad(logits);
    sg_rng_seed(&r, 5); /* the same output gradient for both */
    sg_graph_free(g);
  }
  ck_assert_mem_eq(grads[0]->data, grads[1]->data, (size_t)logits->numel * sizeof(double));
  sg_free(grads[0]), sg_free(grads[1]), sg_free(logits);
}

START_TEST(gradcheck_gumbel_softmax) {
  static const struct {
    int nd;
    int64_t shape[3];
    int axis;
  } shapes[] = {{2, {3, 4}, -1}, {3, {2, 3, 2}, 1}, {2, {4, 3}, 0}};
  const double taus[] = {0.1, 1, 5};
  sg_rng r;
  sg_rng_seed(&r, 55);
  for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
    for (int t = 0; t < 3; t++) {
      for (int scaled = 0; scaled < 2; scaled++) {
        /* raw: logits in [-2, 2] and Gumbel noise, so a small tau gives a
         * nearly one-hot sample; scaled: both multiplied by tau, so that
         * (logits + noise) / tau is O(1) and the 1/tau-sized gradient is
         * far from zero everywhere */
        double sc = scaled ? taus[t] : 1;
        sg_tensor *in[2] = {rand_leaf(&r, shapes[s].nd, shapes[s].shape, -2 * sc, 2 * sc),
                            sg_rand_gumbel(NULL, &r, SG_F64, shapes[s].nd, shapes[s].shape)};
        for (int64_t i = 0; i < in[1]->numel; i++) sg_set(in[1], i, sg_get(in[1], i) * sc);
        sg_set_requires_grad(in[1], true); /* d/dnoise is checked too */
        gs_ctx c = {taus[t], shapes[s].axis, false};
        check_op(apply_gumbel, in, 2, &c, 1e-6);
        assert_hard_grad_is_soft(in, c);
        free_all(in, 2);
      }
    }
  }
}
END_TEST

/* hard: the forward is the one-hot of the soft sample's argmax and the
 * gradient is exactly the soft sample's gradient. */
START_TEST(gumbel_hard_straight_through) {
  sg_rng r;
  sg_rng_seed(&r, 8);
  for (int axis = 0; axis < 2; axis++) {
    int64_t shape[2] = {5, 4};
    sg_tensor *logits = rand_leaf(&r, 2, shape, -2, 2);
    sg_tensor *noise = sg_rand_gumbel(NULL, &r, SG_F64, 2, shape);
    sg_tensor *go = sg_rand_normal(NULL, &r, SG_F64, 2, shape, 0, 1);
    sg_graph *g = sg_graph_new();
    sg_tensor *soft = sg_gumbel_softmax(g, logits, 0.5, axis, false, noise, NULL);
    sg_backward_with(g, soft, go);
    sg_tensor *soft_grad = sg_clone(NULL, logits->grad);
    sg_zero_grad(logits);
    sg_tensor *hard = sg_gumbel_softmax(g, logits, 0.5, axis, true, noise, NULL);
    sg_backward_with(g, hard, go);
    ck_assert_mem_eq(logits->grad->data, soft_grad->data, 20 * sizeof(double));
    /* one-hot at the argmax along the axis */
    int64_t n = shape[axis], m = shape[1 - axis], st = axis == 0 ? 4 : 1, sm = axis == 0 ? 1 : 4;
    for (int64_t c = 0; c < m; c++) {
      int64_t best = 0;
      for (int64_t i = 1; i < n; i++)
        if (sg_get(soft, c * sm + i * st) > sg_get(soft, c * sm + best * st)) best = i;
      for (int64_t i = 0; i < n; i++)
        ck_assert_double_eq(sg_get(hard, c * sm + i * st), i == best ? 1.0 : 0.0);
    }
    sg_free(logits), sg_free(noise), sg_free(go), sg_free(soft_grad);
    sg_graph_free(g);
  }
  /* ties go to the lowest index */
  sg_graph *g = sg_graph_new();
  sg_tensor *flat = sg_from_f64(g, SG_F64, 2, (int64_t[]){2, 3}, (double[]){1, 1, 1, 0, 2, 2});
  sg_tensor *zero = sg_zeros(g, SG_F64, 2, (int64_t[]){2, 3});
  sg_tensor *h = sg_gumbel_softmax(g, flat, 1.0, -1, true, zero, NULL);
  const double expect[] = {1, 0, 0, 0, 1, 0};
  for (int i = 0; i < 6; i++) ck_assert_double_eq(sg_get(h, i), expect[i]);
  sg_graph_free(g);
}
END_TEST

/* Noise drawn from rng is G_i = sg_rng_gumbel in flat order: the same as
 * passing that noise explicitly, and reproducible from the seed. */
START_TEST(gumbel_rng_noise) {
  sg_graph *g = sg_graph_new();
  int64_t shape[3] = {3, 4, 5};
  sg_rng r;
  sg_rng_seed(&r, 77);
  sg_tensor *logits = sg_rand_normal(g, &r, SG_F64, 3, shape, 0, 1);
  sg_rng a, b;
  sg_rng_seed(&a, 99);
  sg_rng_seed(&b, 99);
  sg_tensor *noise = sg_empty(g, SG_F64, 3, shape);
  for (int64_t i = 0; i < noise->numel; i++) sg_set(noise, i, sg_rng_gumbel(&b));
  sg_tensor *drawn = sg_gumbel_softmax(g, logits, 0.7, 1, false, NULL, &a);
  sg_tensor *given = sg_gumbel_softmax(g, logits, 0.7, 1, false, noise, NULL);
  ck_assert_mem_eq(drawn->data, given->data, (size_t)noise->numel * sizeof(double));
  /* both generators advanced by exactly numel draws */
  ck_assert_uint_eq(sg_rng_u64(&a), sg_rng_u64(&b));
  sg_graph_free(g);
}
END_TEST

/* ---- attention ----------------------------------------------------------- */

START_TEST(gradcheck_attention) {
  static const struct {
    int nd[3];
    int64_t s[3][4];
  } cases[] = {
      {{3, 3, 3}, {{2, 3, 4}, {2, 5, 4}, {2, 5, 3}}},          /* plain batch */
      {{4, 4, 4}, {{2, 3, 1, 4}, {2, 1, 2, 4}, {2, 3, 2, 4}}}, /* AttSKGS-GNN */
      {{3, 3, 3}, {{3, 1, 5}, {3, 4, 5}, {3, 4, 2}}},          /* Lq = 1 */
      {{3, 3, 3}, {{2, 3, 4}, {2, 1, 4}, {2, 1, 3}}},          /* Lk = 1 */
      {{2, 2, 2}, {{3, 4}, {2, 4}, {2, 5}}},                   /* no batch axes */
      {{4, 2, 4}, {{2, 2, 3, 4}, {3, 4}, {2, 1, 3, 5}}},       /* k shared, v broadcast */
      {{3, 3, 3}, {{1, 2, 20}, {1, 3, 20}, {1, 3, 17}}},       /* d past the 16 lanes */
      {{3, 3, 3}, {{1, 2, 3}, {2, 2, 3}, {2, 2, 2}}},          /* q broadcast */
  };
  sg_rng r;
  sg_rng_seed(&r, 66);
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    sg_tensor *in[3];
    for (int j = 0; j < 3; j++) in[j] = rand_leaf(&r, cases[i].nd[j], cases[i].s[j], -1.5, 1.5);
    check_op(apply_attention, in, 3, NULL, 1e-6);
    free_all(in, 3);
  }
}
END_TEST

/* q == k == v (self-attention on one tensor): gradients from the three
 * roles accumulate into one buffer. */
START_TEST(gradcheck_attention_shared_input) {
  sg_rng r;
  sg_rng_seed(&r, 67);
  sg_tensor *x = rand_leaf(&r, 3, (int64_t[]){2, 3, 4}, -1, 1);
  sg_tensor *in[3] = {x, x, x};
  SG_ASSERT_CHECK(sg_gradcheck(apply_attention, in, 3, NULL, NULL));
  sg_free(x);
}
END_TEST

/* ---- threads and misuse -------------------------------------------------- */

/* Forward and backward of each layer on inputs above the parallel
 * threshold, with 1 and with 2 threads: bitwise identical. */
typedef struct run_out {
  sg_tensor *y, *grads[3];
} run_out;

static run_out run_threads(sg_check_fn f, void *ctx, sg_tensor *const *in, int n, int threads) {
  omp_set_num_threads(threads);
  run_out r = {0};
  sg_graph *g = sg_graph_new();
  for (int i = 0; i < n; i++) sg_zero_grad(in[i]);
  sg_tensor *y = f(g, in, n, ctx);
  sg_rng rng;
  sg_rng_seed(&rng, 3);
  sg_backward_with(g, y, sg_rand_normal(g, &rng, y->dtype, y->ndim, y->shape, 0, 1));
  r.y = sg_clone(NULL, y);
  for (int i = 0; i < n; i++) r.grads[i] = sg_clone(NULL, in[i]->grad);
  sg_graph_free(g);
  return r;
}

static void assert_thread_invariant(sg_check_fn f, void *ctx, sg_tensor *const *in, int n) {
  run_out a = run_threads(f, ctx, in, n, 1), b = run_threads(f, ctx, in, n, 2);
  size_t es = sg_dtype_size(a.y->dtype);
  ck_assert_mem_eq(a.y->data, b.y->data, (size_t)a.y->numel * es);
  for (int i = 0; i < n; i++) {
    ck_assert_mem_eq(a.grads[i]->data, b.grads[i]->data, (size_t)a.grads[i]->numel * es);
    sg_free(a.grads[i]), sg_free(b.grads[i]);
  }
  sg_free(a.y), sg_free(b.y);
}

START_TEST(thread_determinism) {
  sg_rng r;
  sg_rng_seed(&r, 90);
  for (int dt = 0; dt < 2; dt++) {
    int64_t big[3] = {64, 40, 33};
    sg_tensor *x = sg_rand_normal(NULL, &r, (sg_dtype)dt, 3, big, 0, 2);
    sg_set_requires_grad(x, true);
    for (int axis = 0; axis < 3; axis++) {
      assert_thread_invariant(apply_softmax, &axis, &x, 1);
      assert_thread_invariant(apply_log_softmax, &axis, &x, 1);
    }
    int64_t D = 33;
    sg_tensor *ln_in[3] = {x, sg_rand_normal(NULL, &r, (sg_dtype)dt, 1, &D, 1, 0.3),
                           sg_rand_normal(NULL, &r, (sg_dtype)dt, 1, &D, 0, 0.3)};
    sg_set_requires_grad(ln_in[1], true), sg_set_requires_grad(ln_in[2], true);
    ln_ctx lc = {1e-5, true, true};
    assert_thread_invariant(apply_layer_norm, &lc, ln_in, 3);
    sg_free(ln_in[1]), sg_free(ln_in[2]), sg_free(x);
    /* AttSKGS shape: k broadcast over K, so its gradient is reduced */
    int64_t qs[4] = {64, 8, 1, 64}, ks[4] = {64, 1, 2, 64}, vs[4] = {64, 8, 2, 64};
    sg_tensor *at[3] = {sg_rand_normal(NULL, &r, (sg_dtype)dt, 4, qs, 0, 1),
                        sg_rand_normal(NULL, &r, (sg_dtype)dt, 4, ks, 0, 1),
                        sg_rand_normal(NULL, &r, (sg_dtype)dt, 4, vs, 0, 1)};
    for (int i = 0; i < 3; i++) sg_set_requires_grad(at[i], true);
    assert_thread_invariant(apply_attention, NULL, at, 3);
    free_all(at, 3);
    /* k and v broadcast in ways that go through scratch and the reduction */
    int64_t qs2[4] = {8, 64, 1, 32}, ks2[4] = {8, 1, 2, 32}, vs2[4] = {1, 64, 2, 32};
    sg_tensor *at2[3] = {sg_rand_normal(NULL, &r, (sg_dtype)dt, 4, qs2, 0, 1),
                         sg_rand_normal(NULL, &r, (sg_dtype)dt, 4, ks2, 0, 1),
                         sg_rand_normal(NULL, &r, (sg_dtype)dt, 4, vs2, 0, 1)};
    for (int i = 0; i < 3; i++) sg_set_requires_grad(at2[i], true);
    assert_thread_invariant(apply_attention, NULL, at2, 3);
    free_all(at2, 3);
  }
}
END_TEST

START_TEST(misuse_errors) {
  sg_set_error_handler(record_error, NULL);
  sg_graph *g = sg_graph_new();
  sg_rng r;
  sg_rng_seed(&r, 1);
  sg_tensor *x = sg_zeros(g, SG_F64, 2, (int64_t[]){3, 4});
  sg_tensor *x32 = sg_zeros(g, SG_F32, 2, (int64_t[]){3, 4});
  ASSERT_MISUSE(sg_softmax(g, x, 2), "[3, 4]");
  ASSERT_MISUSE(sg_log_softmax(g, x, -3), "[3, 4]");
  ASSERT_MISUSE(sg_gumbel_softmax(g, x, 0.0, -1, false, NULL, &r), "tau");
  ASSERT_MISUSE(sg_gumbel_softmax(g, x, -1.0, -1, false, NULL, &r), "tau");
  ASSERT_MISUSE(sg_gumbel_softmax(g, x, 1.0, -1, false, NULL, NULL), "both are NULL");
  ASSERT_MISUSE(
      sg_gumbel_softmax(g, x, 1.0, -1, false, sg_zeros(g, SG_F64, 1, (int64_t[]){4}), NULL), "[4]");
  ASSERT_MISUSE(sg_gumbel_softmax(g, x, 1.0, -1, false, x32, NULL), "float32");
  sg_tensor *gain5 = sg_ones(g, SG_F64, 1, (int64_t[]){5});
  ASSERT_MISUSE(sg_layer_norm(g, x, gain5, NULL, 1e-5), "[5]");
  ASSERT_MISUSE(sg_layer_norm(g, x, NULL, sg_ones(g, SG_F32, 1, (int64_t[]){4}), 1e-5), "float32");
  ASSERT_MISUSE(sg_layer_norm(g, x, NULL, NULL, -1.0), "eps");
  sg_tensor *q = sg_zeros(g, SG_F64, 3, (int64_t[]){2, 3, 4});
  sg_tensor *k = sg_zeros(g, SG_F64, 3, (int64_t[]){2, 5, 4});
  sg_tensor *v = sg_zeros(g, SG_F64, 3, (int64_t[]){2, 5, 6});
  ASSERT_MISUSE(sg_attention(g, q, sg_zeros(g, SG_F64, 3, (int64_t[]){2, 5, 3}), v), "[2, 5, 3]");
  ASSERT_MISUSE(sg_attention(g, q, k, sg_zeros(g, SG_F64, 3, (int64_t[]){2, 4, 6})), "(Lk)");
  ASSERT_MISUSE(sg_attention(g, sg_zeros(g, SG_F64, 3, (int64_t[]){3, 3, 4}), k, v),
                "do not broadcast");
  ASSERT_MISUSE(sg_attention(g, sg_zeros(g, SG_F64, 1, (int64_t[]){4}), k, v), "two axes");
  ASSERT_MISUSE(sg_attention(g, sg_zeros(g, SG_F32, 3, (int64_t[]){2, 3, 4}), k, v), "dtype");
  /* NULL inputs (an earlier failure) return NULL without a new report */
  int before = n_errors;
  ck_assert_ptr_null(sg_softmax(g, NULL, 0));
  ck_assert_ptr_null(sg_gumbel_softmax(g, NULL, 1.0, 0, false, NULL, &r));
  ck_assert_ptr_null(sg_layer_norm(g, NULL, NULL, NULL, 1e-5));
  ck_assert_ptr_null(sg_attention(g, q, NULL, v));
  ck_assert_int_eq(n_errors, before);
  sg_graph_free(g);
  sg_set_error_handler(NULL, NULL);
}
END_TEST

Suite *suite_layers(void) {
  const sg_test_case cases[] = {
      {"gradcheck_softmax", gradcheck_softmax},
      {"gradcheck_log_softmax", gradcheck_log_softmax},
      {"gradcheck_layer_norm", gradcheck_layer_norm},
      {"layer_norm_width_one", layer_norm_width_one},
      {"gradcheck_gumbel_softmax", gradcheck_gumbel_softmax},
      {"gumbel_hard_straight_through", gumbel_hard_straight_through},
      {"gumbel_rng_noise", gumbel_rng_noise},
      {"gradcheck_attention", gradcheck_attention},
      {"gradcheck_attention_shared_input", gradcheck_attention_shared_input},
      {"thread_determinism", thread_determinism},
      {"misuse_errors", misuse_errors},
  };
  return sg_test_suite("layers", cases, sizeof cases / sizeof cases[0], 120);
}
