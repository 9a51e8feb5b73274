/* Tensors: creation, element access, seeded random draws, broadcasting. */
#include <stdlib.h>
#include <string.h>

#include "sg_test.h"

START_TEST(creation_and_access) {
  const int64_t shape[3] = {2, 3, 4};
  sg_tensor *z = sg_zeros(NULL, SG_F32, 3, shape), *o = sg_ones(NULL, SG_F64, 3, shape);
  sg_tensor *f = sg_full(NULL, SG_F64, 3, shape, -2.5);
  ck_assert_int_eq(z->numel, 24);
  ck_assert(z->owned && !z->requires_grad && z->grad == NULL && z->node == NULL);
  for (int64_t i = 0; i < 24; i++) {
    ck_assert_double_eq(sg_get(z, i), 0.0);
    ck_assert_double_eq(sg_get(o, i), 1.0);
    ck_assert_double_eq(sg_get(f, i), -2.5);
  }
  sg_set(z, 5, 3.25);
  ck_assert_float_eq(sg_f32(z)[5], 3.25f);
  ck_assert_ptr_null(sg_f64(z));
  sg_tensor *c = sg_to_dtype(NULL, z, SG_F64);
  ck_assert_double_eq(sg_f64(c)[5], 3.25);
  const double vals[4] = {1, -2, 3, -4};
  sg_tensor *d = sg_from_data(NULL, SG_F64, 2, (int64_t[]){2, 2}, vals);
  ck_assert_mem_eq(d->data, vals, sizeof vals);
  sg_tensor *scalar = sg_full(NULL, SG_F32, 0, NULL, 7);
  ck_assert_int_eq(scalar->numel, 1);
  ck_assert_double_eq(sg_get(scalar, 0), 7.0);
  sg_tensor *empty = sg_zeros(NULL, SG_F32, 2, (int64_t[]){0, 5});
  ck_assert_int_eq(empty->numel, 0);
  sg_tensor *five = sg_zeros(NULL, SG_F32, 5, (int64_t[]){1, 2, 1, 3, 2});
  ck_assert_int_eq(five->numel, 12);
  sg_tensor *all[] = {z, o, f, c, d, scalar, empty, five};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) sg_free(all[i]);
}
END_TEST

START_TEST(arena_tensors_live_in_the_graph) {
  sg_graph *g = sg_graph_new();
  sg_tensor *t = sg_ones(g, SG_F32, 2, (int64_t[]){100, 100});
  ck_assert(!t->owned && t->graph == g);
  ck_assert_uint_eq((uintptr_t)t->data % 64, 0); /* aligned for vector loads */
  size_t reserved = sg_graph_arena_bytes(g);
  sg_graph_reset(g);
  sg_ones(g, SG_F32, 2, (int64_t[]){100, 100});
  ck_assert_uint_eq(sg_graph_arena_bytes(g), reserved); /* memory reused, not regrown */
  sg_graph_free(g);
}
END_TEST

static int errors_seen;
static char last_op[64];
static void record_error(const char *op, const char *msg, const char *file, int line, void *u) {
  (void)msg, (void)file, (void)line, (void)u;
  errors_seen++;
  snprintf(last_op, sizeof last_op, "%s", op);
}

START_TEST(bad_shapes_are_reported) {
  sg_set_error_handler(record_error, NULL);
  errors_seen = 0;
  ck_assert_ptr_null(sg_zeros(NULL, SG_F32, SG_MAX_DIMS + 1, (int64_t[8]){1}));
  ck_assert_ptr_null(sg_zeros(NULL, SG_F32, 2, (int64_t[]){3, -1}));
  ck_assert_int_eq(errors_seen, 2);
  ck_assert_str_eq(last_op, "sg_empty");
  sg_set_error_handler(NULL, NULL);
}
END_TEST

START_TEST(rng_is_reproducible) {
  sg_rng a, b, c;
  sg_rng_seed(&a, 42);
  sg_rng_seed(&b, 42);
  sg_rng_seed(&c, 43);
  int same_as_c = 0;
  for (int i = 0; i < 1000; i++) {
    uint64_t x = sg_rng_u64(&a), y = sg_rng_u64(&b), z = sg_rng_u64(&c);
    ck_assert_uint_eq(x, y);
    same_as_c += x == z;
  }
  ck_assert_int_eq(same_as_c, 0);
  sg_rng_seed(&a, 9);
  sg_rng_seed(&b, 9);
  sg_tensor *t1 = sg_rand_normal(NULL, &a, SG_F64, 2, (int64_t[]){17, 3}, 1, 2);
  sg_tensor *t2 = sg_rand_normal(NULL, &b, SG_F64, 2, (int64_t[]){17, 3}, 1, 2);
  ck_assert_mem_eq(t1->data, t2->data, 51 * sizeof(double));
  sg_free(t1);
  sg_free(t2);
}
END_TEST

/* Moments of the draws, with bounds of about 6 standard errors. */
START_TEST(rng_distributions) {
  sg_rng r;
  sg_rng_seed(&r, 2024);
  enum { N = 200000 };
  double su = 0, sn = 0, sn2 = 0, sg = 0, umin = 1, umax = 0;
  for (int i = 0; i < N; i++) {
    double u = sg_rng_uniform(&r), n = sg_rng_normal(&r), gb = sg_rng_gumbel(&r);
    su += u;
    sn += n;
    sn2 += n * n;
    sg += gb;
    umin = fmin(umin, u);
    umax = fmax(umax, u);
    ck_assert(isfinite(gb));
  }
  ck_assert(umin > 0 && umax < 1);
  ck_assert_double_eq_tol(su / N, 0.5, 6 * 0.2887 / sqrt(N));
  ck_assert_double_eq_tol(sn / N, 0.0, 6 / sqrt(N));
  ck_assert_double_eq_tol(sn2 / N, 1.0, 6 * sqrt(2.0 / N));
  ck_assert_double_eq_tol(sg / N, 0.5772156649, 6 * 1.2825 / sqrt(N)); /* Euler-Mascheroni */
  int counts[7] = {0};
  for (int i = 0; i < 70000; i++) counts[sg_rng_below(&r, 7)]++;
  for (int i = 0; i < 7; i++) ck_assert_int_lt(abs(counts[i] - 10000), 600);
}
END_TEST

START_TEST(uniform_tensor_range) {
  sg_rng r;
  sg_rng_seed(&r, 1);
  sg_tensor *t = sg_rand_uniform(NULL, &r, SG_F32, 1, (int64_t[]){1000}, -3, -1);
  for (int64_t i = 0; i < 1000; i++) ck_assert(sg_get(t, i) >= -3 && sg_get(t, i) <= -1);
  sg_free(t);
}
END_TEST

START_TEST(shape_strings) {
  char b[96];
  ck_assert_str_eq(sg_shape_str(3, (int64_t[]){2, 3, 4}, b), "[2, 3, 4]");
  ck_assert_str_eq(sg_shape_str(0, NULL, b), "[]");
}
END_TEST

Suite *suite_tensor(void) {
  Suite *s = suite_create("tensor");
  TCase *tc = tcase_create("tensor");
  tcase_add_test(tc, creation_and_access);
  tcase_add_test(tc, arena_tensors_live_in_the_graph);
  tcase_add_test(tc, bad_shapes_are_reported);
  tcase_add_test(tc, rng_is_reproducible);
  tcase_add_test(tc, rng_distributions);
  tcase_add_test(tc, uniform_tensor_range);
  tcase_add_test(tc, shape_strings);
  suite_add_tcase(s, tc);
  return s;
}
