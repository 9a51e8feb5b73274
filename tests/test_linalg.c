/* sg_solve: the float64 gradient check, forward values and gradients
 * against PyTorch (tests/make_linalg_fixtures.py) in both dtypes, including
 * the model shape of BFGNN's duality head, the residual of a large system,
 * results independent of the thread count, and the reports of singular
 * matrices and bad shapes. */
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "sg_test.h"

static sg_tensor *apply_solve(sg_graph *g, sg_tensor *const *in, int n, void *ctx) {
  (void)n, (void)ctx;
  return sg_solve(g, in[0], in[1]);
}

/* A well-conditioned random batch: U(-1, 1) plus n on the diagonal. */
static sg_tensor *random_system(sg_rng *r, int nd, const int64_t *shape) {
  sg_tensor *A = sg_rand_uniform(NULL, r, SG_F64, nd, shape, -1, 1);
  int64_t n = shape[nd - 1];
  for (int64_t i = 0; i < A->numel; i += n * n)
    for (int64_t k = 0; k < n; k++) sg_set(A, i + k * n + k, sg_get(A, i + k * n + k) + (double)n);
  sg_set_requires_grad(A, true);
  return A;
}

START_TEST(gradcheck_solve) {
  sg_rng r;
  sg_rng_seed(&r, 5);
  const int64_t shapes[][4] = {{3, 4, 4, 2}, {1, 1, 1, 3}, {2, 5, 5, 1}, {1, 6, 6, 6}};
  for (int c = 0; c < 4; c++) {
    sg_tensor *in[2] = {random_system(&r, 3, (int64_t[]){shapes[c][0], shapes[c][1], shapes[c][1]}),
                        sg_rand_uniform(NULL, &r, SG_F64, 3,
                                        (int64_t[]){shapes[c][0], shapes[c][2], shapes[c][3]}, -1,
                                        1)};
    sg_set_requires_grad(in[1], true);
    SG_ASSERT_CHECK(sg_gradcheck(apply_solve, in, 2, NULL, NULL));
    /* one input at a time: the other gets no gradient buffer */
    sg_set_requires_grad(in[0], false);
    SG_ASSERT_CHECK(sg_gradcheck(apply_solve, in, 2, NULL, NULL));
    sg_set_requires_grad(in[0], true), sg_set_requires_grad(in[1], false);
    SG_ASSERT_CHECK(sg_gradcheck(apply_solve, in, 2, NULL, NULL));
    sg_free(in[0]), sg_free(in[1]);
  }
}
END_TEST

/* ---- PyTorch fixtures ---------------------------------------------------- */

/* Float64: |a - b| <= 1e-10 (|b| + max|b|); the fixtures' condition numbers
 * are below 1e3, so both solves are within ~1e-13 of the exact value.
 * Float32: the inputs are float32-representable and the op solves in
 * double, so X is the float64 solve rounded once (0.5 u); g_B is too, and
 * g_A = -g_B X^T sums r products of rounded factors (2 u each) in double:
 * 8 u (|b| + max|b|) bounds both, with u = 2^-24. */
static void assert_close(const char *what, const sg_tensor *got, const sg_tensor *ref) {
  ck_assert_int_eq(got->numel, ref->numel);
  double scale = 0;
  for (int64_t i = 0; i < ref->numel; i++) scale = fmax(scale, fabs(sg_get(ref, i)));
  double rel = got->dtype == SG_F32 ? 8 * 0x1p-24 : 1e-10;
  for (int64_t i = 0; i < ref->numel; i++) {
    double a = sg_get(got, i), b = sg_get(ref, i), tol = rel * (fabs(b) + scale);
    ck_assert_msg(fabs(a - b) <= tol, "%s %s[%lld] = %.17g, expected %.17g (err %.3g > %.3g)",
                  sg_dtype_name(got->dtype), what, (long long)i, a, b, fabs(a - b), tol);
  }
}

static void run_case(const char *c, sg_dtype dt) {
  sg_tensor *ref[6];
  const char *names[6] = {"A", "B", "X", "w", "g_A", "g_B"};
  for (int i = 0; i < 6; i++) ref[i] = sg_test_fixture("linalg", c, names[i]);
  sg_tensor *A = sg_to_dtype(NULL, ref[0], dt), *B = sg_to_dtype(NULL, ref[1], dt);
  sg_set_requires_grad(A, true), sg_set_requires_grad(B, true);
  sg_graph *g = sg_graph_new();
  sg_tensor *X = sg_solve(g, A, B);
  ck_assert_ptr_nonnull(X);
  assert_close("X", X, ref[2]);
  sg_tensor *w = sg_to_dtype(g, ref[3], dt);
  sg_backward(g, sg_sum_all(g, sg_mul(g, w, X)));
  assert_close("g_A", A->grad, ref[4]);
  assert_close("g_B", B->grad, ref[5]);
  sg_graph_free(g);
  sg_free(A), sg_free(B);
  for (int i = 0; i < 6; i++) sg_free(ref[i]);
}

START_TEST(solve_matches_torch) {
  const char *cases[] = {"small", "pivot", "scalar", "beam"};
  for (int c = 0; c < 4; c++)
    for (int dt = 0; dt < 2; dt++) run_case(cases[c], (sg_dtype)dt);
}
END_TEST

/* ---- larger systems and threads ------------------------------------------------ */

/* A 64 x 64 system: A X reproduces B to round-off. */
START_TEST(solve_residual_at_the_largest_size) {
  sg_rng r;
  sg_rng_seed(&r, 9);
  int64_t n = SG_SOLVE_MAX_N;
  sg_tensor *A = random_system(&r, 3, (int64_t[]){2, n, n});
  sg_tensor *B = sg_rand_uniform(NULL, &r, SG_F64, 3, (int64_t[]){2, n, 3}, -1, 1);
  sg_graph *g = sg_graph_new();
  sg_tensor *X = sg_solve(g, A, B), *AX = sg_matmul(g, A, X, false, false);
  ck_assert_ptr_nonnull(AX);
  for (int64_t i = 0; i < B->numel; i++)
    ck_assert_msg(fabs(sg_get(AX, i) - sg_get(B, i)) < 1e-13, "row %lld: %.3g", (long long)i,
                  sg_get(AX, i) - sg_get(B, i));
  sg_graph_free(g);
  sg_free(A), sg_free(B);
}
END_TEST

/* Solution and gradients of a batch big enough to fork, with 1 and 2 threads. */
static void solve_with_threads(int threads, const sg_tensor *A0, const sg_tensor *B0, double *out) {
  int saved = omp_get_max_threads();
  omp_set_num_threads(threads);
  sg_tensor *A = sg_to_dtype(NULL, A0, SG_F32), *B = sg_to_dtype(NULL, B0, SG_F32);
  sg_set_requires_grad(A, true), sg_set_requires_grad(B, true);
  sg_graph *g = sg_graph_new();
  sg_tensor *X = sg_solve(g, A, B);
  sg_backward(g, sg_sum_all(g, sg_square(g, X)));
  int64_t i = 0;
  for (int64_t e = 0; e < X->numel; e++) out[i++] = sg_get(X, e);
  for (int64_t e = 0; e < A->numel; e++) out[i++] = sg_get(A->grad, e);
  for (int64_t e = 0; e < B->numel; e++) out[i++] = sg_get(B->grad, e);
  sg_graph_free(g);
  sg_free(A), sg_free(B);
  omp_set_num_threads(saved);
}

START_TEST(solve_independent_of_threads) {
  sg_rng r;
  sg_rng_seed(&r, 13);
  int64_t shape[3] = {1024, 8, 8};
  sg_tensor *A = random_system(&r, 3, shape),
            *B = sg_rand_uniform(NULL, &r, SG_F64, 3, shape, -1, 1);
  int64_t total = 3 * A->numel;
  double *one = malloc(sizeof(double) * total), *two = malloc(sizeof(double) * total);
  solve_with_threads(1, A, B, one);
  solve_with_threads(2, A, B, two);
  ck_assert_int_eq(memcmp(one, two, sizeof(double) * total), 0);
  free(one), free(two);
  sg_free(A), sg_free(B);
}
END_TEST

/* ---- reports ------------------------------------------------------------------------ */

START_TEST(solve_reports_singular_and_bad_shapes) {
  sg_test_capture_errors();
  sg_graph *g = sg_graph_new();
  /* matrix 1 of 2 has a zero second column */
  sg_tensor *A =
      sg_from_f64(g, SG_F64, 3, (int64_t[]){2, 2, 2}, (double[]){1, 0, 0, 1, 1, 0, 2, 0});
  sg_tensor *B = sg_ones(g, SG_F64, 3, (int64_t[]){2, 2, 1});
  SG_EXPECT_MISUSE(sg_solve(g, A, B), "sg_solve", "matrix 1 of A [2, 2, 2]", "column 1");
  sg_tensor *N = sg_from_f64(g, SG_F64, 3, (int64_t[]){1, 2, 2}, (double[]){1, NAN, 0, 1});
  SG_EXPECT_MISUSE(sg_solve(g, N, sg_ones(g, SG_F64, 3, (int64_t[]){1, 2, 1})), "sg_solve",
                   "matrix 0", "not finite");
  sg_tensor *R = sg_ones(g, SG_F64, 3, (int64_t[]){2, 2, 3});
  SG_EXPECT_MISUSE(sg_solve(g, R, B), "sg_solve", "A [2, 2, 3]", "need A [..., n, n]");
  sg_tensor *C = sg_ones(g, SG_F64, 3, (int64_t[]){3, 2, 1});
  SG_EXPECT_MISUSE(sg_solve(g, A, C), "sg_solve", "B [3, 2, 1]", "same leading axes");
  sg_tensor *F = sg_ones(g, SG_F32, 3, (int64_t[]){2, 2, 1});
  SG_EXPECT_MISUSE(sg_solve(g, A, F), "sg_solve", "float32");
  int64_t big = SG_SOLVE_MAX_N + 1;
  sg_tensor *L = sg_zeros(g, SG_F64, 2, (int64_t[]){big, big});
  SG_EXPECT_MISUSE(sg_solve(g, L, sg_zeros(g, SG_F64, 2, (int64_t[]){big, 1})), "sg_solve",
                   "n <= 64");
  sg_graph_free(g);
  sg_set_error_handler(NULL, NULL);
}
END_TEST

Suite *suite_linalg(void) {
  const sg_test_case cases[] = {
      {"gradcheck_solve", gradcheck_solve},
      {"solve_matches_torch", solve_matches_torch},
      {"solve_residual_at_the_largest_size", solve_residual_at_the_largest_size},
      {"solve_independent_of_threads", solve_independent_of_threads},
      {"solve_reports_singular_and_bad_shapes", solve_reports_singular_and_bad_shapes},
  };
  return sg_test_suite("linalg", cases, sizeof cases / sizeof cases[0], 60);
}
