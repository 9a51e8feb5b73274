/* Selection ops: forward values against hand-written arrays (ties, NaN,
 * broadcasting), the float64 gradient check of where (the one
 * differentiable op here), that the others stop gradients, and misuse. */
#include <string.h>

#include "sg_test.h"

static void assert_values(const sg_tensor *t, int ndim, const int64_t *shape, const double *want) {
  ck_assert_ptr_nonnull(t);
  ck_assert_int_eq(t->ndim, ndim);
  for (int d = 0; d < ndim; d++) ck_assert_int_eq(t->shape[d], shape[d]);
  for (int64_t i = 0; i < t->numel; i++)
    ck_assert_msg(sg_get(t, i) == want[i], "element %lld: got %g want %g", (long long)i,
                  sg_get(t, i), want[i]);
}

/* ---- argmax ------------------------------------------------------------ */

START_TEST(forward_argmax) {
  sg_graph *g = sg_graph_new();
  for (int dt = 0; dt < 2; dt++) {
    sg_tensor *a = sg_from_f64(g, (sg_dtype)dt, 2, (int64_t[]){2, 3}, (double[]){1, 5, 5, 7, 2, 7});
    /* Ties (5, 5 and 7, 7) go to the lowest index. */
    assert_values(sg_argmax(g, a, 1, false), 1, (int64_t[]){2}, (double[]){1, 0});
    assert_values(sg_argmax(g, a, -1, true), 2, (int64_t[]){2, 1}, (double[]){1, 0});
    assert_values(sg_argmax(g, a, 0, false), 1, (int64_t[]){3}, (double[]){1, 0, 1});
    assert_values(sg_argmax(g, a, -2, true), 2, (int64_t[]){1, 3}, (double[]){1, 0, 1});
    ck_assert_int_eq(sg_argmax(g, a, 1, false)->dtype, dt);
    /* NaN is the maximum; the first NaN wins. */
    sg_tensor *n = sg_from_f64(g, (sg_dtype)dt, 1, (int64_t[]){4}, (double[]){1, NAN, 3, NAN});
    assert_values(sg_argmax(g, n, 0, false), 0, NULL, (double[]){1});
    sg_tensor *neg = sg_from_f64(g, (sg_dtype)dt, 1, (int64_t[]){3}, (double[]){-3, -1, -2});
    assert_values(sg_argmax(g, neg, 0, false), 0, NULL, (double[]){1});
    /* A middle axis of a 3-d tensor, with size-1 neighbours. */
    sg_tensor *b = sg_from_f64(g, (sg_dtype)dt, 3, (int64_t[]){2, 3, 2},
                               (double[]){0, 9, 4, 1, 3, 2, 8, 0, 8, 5, 1, 6});
    assert_values(sg_argmax(g, b, 1, false), 2, (int64_t[]){2, 2}, (double[]){1, 0, 0, 2});
    sg_tensor *c = sg_from_f64(g, (sg_dtype)dt, 3, (int64_t[]){1, 3, 1}, (double[]){2, 8, 4});
    assert_values(sg_argmax(g, c, 1, true), 3, (int64_t[]){1, 1, 1}, (double[]){1});
  }
  /* Long float32 rows (threaded) still hold exact indices. */
  int64_t shape[2] = {4, 100003};
  sg_tensor *big = sg_zeros(g, SG_F32, 2, shape);
  const int64_t where[4] = {99999, 0, 100002, 54321};
  for (int r = 0; r < 4; r++) sg_set(big, r * shape[1] + where[r], 1);
  sg_tensor *am = sg_argmax(g, big, 1, false);
  for (int r = 0; r < 4; r++) ck_assert_double_eq(sg_get(am, r), (double)where[r]);
  sg_graph_free(g);
}
END_TEST

/* The lowest index holding the maximum, NaN above everything: a plain scan
 * of element i of the reduced output (axis split as outer, len, inner). */
static double reference_argmax(const sg_tensor *a, int64_t i, int64_t len, int64_t inner) {
  int64_t base = (i / inner) * len * inner + i % inner, best = 0;
  for (int64_t k = 1; k < len; k++) {
    double v = sg_get(a, base + k * inner), b = sg_get(a, base + best * inner);
    if (isnan(b)) break;
    if (v > b || isnan(v)) best = k;
  }
  return (double)best;
}

/* Many ties (values from a small set), some NaNs, rows spanning several
 * scan blocks and column chunks, both dtypes and every axis. */
START_TEST(argmax_matches_a_plain_scan) {
  sg_rng r;
  sg_rng_seed(&r, 33);
  sg_graph *g = sg_graph_new();
  const int64_t shapes[][3] = {{3, 700, 2}, {2, 5, 600}, {1, 1, 1}, {40, 1, 9}};
  for (int dt = 0; dt < 2; dt++)
    for (int s = 0; s < 4; s++) {
      sg_tensor *a = sg_empty(g, (sg_dtype)dt, 3, shapes[s]);
      for (int64_t i = 0; i < a->numel; i++) {
        uint64_t u = sg_rng_below(&r, 1000);
        double v = (double)(u % 7);
        sg_set(a, i, u < 3 && s != 1 ? NAN : (u % 2 ? v : -v)); /* -0.0 ties 0.0 */
      }
      for (int axis = 0; axis < 3; axis++) {
        int64_t len = shapes[s][axis], inner = 1;
        for (int d = axis + 1; d < 3; d++) inner *= shapes[s][d];
        sg_tensor *am = sg_argmax(g, a, axis, false);
        for (int64_t i = 0; i < am->numel; i++)
          ck_assert_msg(sg_get(am, i) == reference_argmax(a, i, len, inner),
                        "shape %d axis %d element %lld: got %g want %g", s, axis, (long long)i,
                        sg_get(am, i), reference_argmax(a, i, len, inner));
      }
    }
  sg_graph_free(g);
}
END_TEST

/* ---- one_hot ----------------------------------------------------------- */

START_TEST(forward_one_hot) {
  sg_graph *g = sg_graph_new();
  for (int dt = 0; dt < 2; dt++) {
    sg_tensor *i = sg_from_f64(g, (sg_dtype)dt, 1, (int64_t[]){2}, (double[]){2, 0});
    sg_tensor *oh = sg_one_hot(g, i, 3);
    assert_values(oh, 2, (int64_t[]){2, 3}, (double[]){0, 0, 1, 1, 0, 0});
    ck_assert_int_eq(oh->dtype, dt);
    sg_tensor *i2 = sg_from_f64(g, (sg_dtype)dt, 2, (int64_t[]){2, 1}, (double[]){1, 1});
    assert_values(sg_one_hot(g, i2, 2), 3, (int64_t[]){2, 1, 2}, (double[]){0, 1, 0, 1});
    sg_tensor *s = sg_from_f64(g, (sg_dtype)dt, 0, NULL, (double[]){0});
    assert_values(sg_one_hot(g, s, 1), 1, (int64_t[]){1}, (double[]){1});
  }
  /* one_hot(argmax(x)) picks each row's maximum. */
  sg_tensor *x = sg_from_f64(g, SG_F64, 2, (int64_t[]){2, 3}, (double[]){0.1, 0.7, 0.2, 3, -1, 2});
  assert_values(sg_one_hot(g, sg_argmax(g, x, 1, false), 3), 2, (int64_t[]){2, 3},
                (double[]){0, 1, 0, 1, 0, 0});
  sg_graph_free(g);
}
END_TEST

/* ---- compare ----------------------------------------------------------- */

START_TEST(forward_compare) {
  sg_graph *g = sg_graph_new();
  for (int dt = 0; dt < 2; dt++) {
    sg_tensor *a = sg_from_f64(g, (sg_dtype)dt, 2, (int64_t[]){2, 2}, (double[]){1, 2, NAN, 4});
    sg_tensor *b = sg_from_f64(g, (sg_dtype)dt, 1, (int64_t[]){2}, (double[]){2, 2});
    const double want[6][4] = {
        [SG_LT] = {1, 0, 0, 0}, [SG_LE] = {1, 1, 0, 0}, [SG_GT] = {0, 0, 0, 1},
        [SG_GE] = {0, 1, 0, 1}, [SG_EQ] = {0, 1, 0, 0}, [SG_NE] = {1, 0, 1, 1},
    };
    for (int c = SG_LT; c <= SG_NE; c++) {
      sg_tensor *y = sg_compare(g, a, b, (sg_cmp)c);
      assert_values(y, 2, (int64_t[]){2, 2}, want[c]);
      ck_assert_int_eq(y->dtype, dt);
    }
    /* [2, 1] against [3]: an outer comparison. */
    sg_tensor *col = sg_from_f64(g, (sg_dtype)dt, 2, (int64_t[]){2, 1}, (double[]){1, 3});
    sg_tensor *row = sg_from_f64(g, (sg_dtype)dt, 1, (int64_t[]){3}, (double[]){0, 1, 2});
    assert_values(sg_compare(g, col, row, SG_GE), 2, (int64_t[]){2, 3},
                  (double[]){1, 1, 0, 1, 1, 1});
    assert_values(sg_compare(g, row, col, SG_GT), 2, (int64_t[]){2, 3},
                  (double[]){0, 0, 1, 0, 0, 0});
  }
  sg_graph_free(g);
}
END_TEST

/* ---- where ------------------------------------------------------------- */

START_TEST(forward_where) {
  sg_graph *g = sg_graph_new();
  for (int dt = 0; dt < 2; dt++) {
    sg_tensor *cond = sg_from_f64(g, (sg_dtype)dt, 2, (int64_t[]){2, 1}, (double[]){1, 0});
    sg_tensor *a = sg_from_f64(g, (sg_dtype)dt, 1, (int64_t[]){3}, (double[]){1, 2, 3});
    sg_tensor *b = sg_from_f64(g, (sg_dtype)dt, 0, NULL, (double[]){-1});
    assert_values(sg_where(g, cond, a, b), 2, (int64_t[]){2, 3}, (double[]){1, 2, 3, -1, -1, -1});
    /* Any nonzero counts as true, NaN included. */
    sg_tensor *c2 = sg_from_f64(g, (sg_dtype)dt, 1, (int64_t[]){4}, (double[]){-0.5, 0, NAN, 2});
    sg_tensor *a2 = sg_from_f64(g, (sg_dtype)dt, 1, (int64_t[]){4}, (double[]){10, 20, 30, 40});
    sg_tensor *b2 = sg_from_f64(g, (sg_dtype)dt, 1, (int64_t[]){4}, (double[]){-10, -20, -30, -40});
    assert_values(sg_where(g, c2, a2, b2), 1, (int64_t[]){4}, (double[]){10, -20, 30, 40});
    /* where(a > b, b, a) is the elementwise minimum. */
    assert_values(sg_where(g, sg_compare(g, a2, b, SG_GT), b, a2), 1, (int64_t[]){4},
                  (double[]){-1, -1, -1, -1});
  }
  sg_graph_free(g);
}
END_TEST

static sg_tensor *do_where(sg_graph *g, sg_tensor *const *in, int n, void *ctx) {
  (void)n;
  (void)ctx;
  return sg_where(g, in[0], in[1], in[2]);
}

/* cond holds random 0/1 values and never requires a gradient (its finite
 * difference would flip the selection). */
START_TEST(gradcheck_where) {
  const struct {
    int nc, na, nb;
    int64_t c[3], a[3], b[3];
  } cases[] = {
      {2, 2, 2, {3, 4}, {3, 4}, {3, 4}},          {2, 2, 2, {3, 1}, {1, 4}, {3, 4}},
      {3, 2, 0, {2, 3, 4}, {3, 1}, {0}},          {1, 3, 2, {4}, {2, 1, 4}, {1, 1}},
      {3, 3, 3, {2, 1, 1}, {1, 3, 1}, {1, 1, 2}}, {0, 1, 1, {0}, {5}, {5}},
  };
  sg_rng r;
  sg_rng_seed(&r, 31);
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    sg_tensor *c = sg_zeros(NULL, SG_F64, cases[i].nc, cases[i].c);
    for (int64_t j = 0; j < c->numel; j++) sg_set(c, j, (double)sg_rng_below(&r, 2));
    if (c->numel == 1) sg_set(c, 0, (double)(i % 2)); /* a scalar cond: both branches */
    sg_tensor *a = sg_rand_uniform(NULL, &r, SG_F64, cases[i].na, cases[i].a, -2, 2);
    sg_tensor *b = sg_rand_uniform(NULL, &r, SG_F64, cases[i].nb, cases[i].b, -2, 2);
    sg_tensor *in[3] = {c, a, b};
    for (int which = 0; which < 3; which++) { /* a and b, a only, b only */
      sg_set_requires_grad(a, which != 2);
      sg_set_requires_grad(b, which != 1);
      SG_ASSERT_CHECK(sg_gradcheck(do_where, in, 3, NULL, NULL));
    }
    SG_ASSERT_CHECK(sg_check_f32_forward(do_where, in, 3, NULL, 1e-300, 6e-8));
    sg_free(c);
    sg_free(a);
    sg_free(b);
  }
}
END_TEST

/* The mask sends the gradient to exactly one side per element, and none to
 * cond even when it asks for one. */
START_TEST(where_gradient_goes_to_one_side) {
  sg_graph *g = sg_graph_new();
  sg_tensor *c = sg_from_f64(NULL, SG_F64, 1, (int64_t[]){3}, (double[]){1, 0, 1});
  sg_tensor *a = sg_from_f64(NULL, SG_F64, 1, (int64_t[]){3}, (double[]){1, 2, 3});
  sg_tensor *b = sg_from_f64(NULL, SG_F64, 0, NULL, (double[]){5});
  sg_tensor *all[] = {c, a, b};
  for (int i = 0; i < 3; i++) sg_set_requires_grad(all[i], true);
  sg_tensor *y = sg_where(g, c, a, b);
  sg_backward_with(g, y, sg_from_f64(g, SG_F64, 1, (int64_t[]){3}, (double[]){10, 20, 30}));
  assert_values(a->grad, 1, (int64_t[]){3}, (double[]){10, 0, 30});
  assert_values(b->grad, 0, NULL, (double[]){20});
  ck_assert_ptr_null(c->grad);
  /* Only cond requires a gradient: nothing to record. */
  sg_set_requires_grad(a, false);
  sg_set_requires_grad(b, false);
  int64_t tape = sg_graph_tape_len(g);
  ck_assert(!sg_where(g, c, a, b)->requires_grad);
  ck_assert_int_eq(sg_graph_tape_len(g), tape);
  for (int i = 0; i < 3; i++) sg_free(all[i]);
  sg_graph_free(g);
}
END_TEST

/* Above the threading threshold, with rows longer than one work tile. */
START_TEST(forward_large) {
  sg_rng r;
  sg_rng_seed(&r, 34);
  sg_graph *g = sg_graph_new();
  int64_t n = 20011;
  sg_tensor *a = sg_rand_uniform(g, &r, SG_F32, 2, (int64_t[]){3, n}, -1, 1);
  sg_tensor *b = sg_rand_uniform(g, &r, SG_F32, 1, &n, -1, 1);
  sg_tensor *lo = sg_full(g, SG_F32, 0, NULL, -7);
  sg_tensor *gt = sg_compare(g, a, b, SG_GT);
  sg_tensor *w = sg_where(g, gt, a, lo);
  for (int64_t i = 0; i < a->numel; i++) {
    double av = sg_get(a, i), bv = sg_get(b, i % n);
    ck_assert_double_eq(sg_get(gt, i), av > bv ? 1 : 0);
    ck_assert_double_eq(sg_get(w, i), av > bv ? av : -7);
  }
  sg_graph_free(g);
}
END_TEST

/* ---- gradient stops ---------------------------------------------------- */

START_TEST(non_differentiable_outputs_carry_no_gradient) {
  sg_graph *g = sg_graph_new();
  sg_tensor *x = sg_from_f64(NULL, SG_F64, 2, (int64_t[]){2, 2}, (double[]){0, 1, 1, 0});
  sg_tensor *y = sg_from_f64(NULL, SG_F64, 1, (int64_t[]){2}, (double[]){0.5, 0.5});
  sg_set_requires_grad(x, true);
  sg_set_requires_grad(y, true);
  sg_tensor *outs[] = {sg_argmax(g, x, 1, false), sg_one_hot(g, x, 2), sg_compare(g, x, y, SG_LT),
                       sg_detach(g, x)};
  for (size_t i = 0; i < sizeof outs / sizeof outs[0]; i++) {
    ck_assert_ptr_nonnull(outs[i]);
    ck_assert_msg(!outs[i]->requires_grad, "output %zu requires a gradient", i);
    ck_assert_ptr_null(outs[i]->node);
  }
  ck_assert_int_eq(sg_graph_tape_len(g), 0);
  /* detach copies the values; a gradient through x * detach(x) is detach(x). */
  for (int i = 0; i < 4; i++) ck_assert_double_eq(sg_get(outs[3], i), sg_get(x, i));
  ck_assert_ptr_ne(outs[3]->data, x->data);
  sg_tensor *z = sg_mul(g, x, sg_detach(g, x));
  sg_backward_with(g, z, sg_ones(g, SG_F64, 2, (int64_t[]){2, 2}));
  assert_values(x->grad, 2, (int64_t[]){2, 2}, (double[]){0, 1, 1, 0});
  sg_free(x);
  sg_free(y);
  sg_graph_free(g);
}
END_TEST

/* ---- misuse ------------------------------------------------------------ */

START_TEST(misuse_is_reported) {
  sg_graph *g = sg_graph_new();
  sg_test_capture_errors();
  sg_tensor *a = sg_zeros(g, SG_F64, 2, (int64_t[]){2, 3});
  sg_tensor *b = sg_zeros(g, SG_F64, 1, (int64_t[]){4});
  sg_tensor *f = sg_zeros(g, SG_F32, 1, (int64_t[]){3});
  sg_tensor *e = sg_zeros(g, SG_F64, 2, (int64_t[]){2, 0});
  SG_EXPECT_MISUSE(sg_argmax(g, a, 2, false), "sg_argmax", "[2, 3]", "axis 2");
  SG_EXPECT_MISUSE(sg_argmax(g, e, 1, false), "sg_argmax", "[2, 0]", "empty");
  SG_EXPECT_MISUSE(sg_compare(g, a, b, SG_LT), "sg_compare", "[2, 3]", "[4]");
  SG_EXPECT_MISUSE(sg_compare(g, a, f, SG_LT), "sg_compare", "float32", "float64");
  SG_EXPECT_MISUSE(sg_compare(g, a, a, (sg_cmp)17), "sg_compare", "17", "[2, 3]");
  SG_EXPECT_MISUSE(sg_where(g, a, a, b), "sg_where", "[2, 3]", "[4]");
  SG_EXPECT_MISUSE(sg_where(g, f, a, a), "sg_where", "float32", "float64");
  /* one_hot: out of range, negative, fractional and NaN indices. */
  const double bad[] = {3, -1, 1.5, NAN};
  const char *shown[] = {"index 3 ", "index -1 ", "index 1.5 ", "index nan "};
  for (int i = 0; i < 4; i++) {
    sg_tensor *idx = sg_from_f64(g, SG_F32, 2, (int64_t[]){1, 2}, (double[]){0, bad[i]});
    SG_EXPECT_MISUSE(sg_one_hot(g, idx, 3), "sg_one_hot", shown[i], "[1, 2]", "position 1",
                     "[0, 3)");
  }
  SG_EXPECT_MISUSE(sg_one_hot(g, a, 0), "sg_one_hot", "[2, 3]", "0 classes");
  /* NULL inputs (earlier failures) propagate silently. */
  sg_test_errors = (sg_test_error_log){0};
  ck_assert_ptr_null(sg_argmax(g, NULL, 0, false));
  ck_assert_ptr_null(sg_one_hot(g, NULL, 2));
  ck_assert_ptr_null(sg_compare(g, a, NULL, SG_EQ));
  ck_assert_ptr_null(sg_where(g, NULL, a, a));
  ck_assert_ptr_null(sg_detach(g, NULL));
  ck_assert_int_eq(sg_test_errors.count, 0);
  sg_set_error_handler(NULL, NULL);
  sg_graph_free(g);
}
END_TEST

Suite *suite_select(void) {
  const sg_test_case cases[] = {
      {"forward_argmax", forward_argmax},
      {"argmax_matches_a_plain_scan", argmax_matches_a_plain_scan},
      {"forward_one_hot", forward_one_hot},
      {"forward_compare", forward_compare},
      {"forward_where", forward_where},
      {"forward_large", forward_large},
      {"gradcheck_where", gradcheck_where},
      {"where_gradient_goes_to_one_side", where_gradient_goes_to_one_side},
      {"non_differentiable_outputs_carry_no_gradient",
       non_differentiable_outputs_carry_no_gradient},
      {"misuse_is_reported", misuse_is_reported},
  };
  return sg_test_suite("select", cases, sizeof cases / sizeof cases[0], 0);
}
