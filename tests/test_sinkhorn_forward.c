/* Capacity Sinkhorn, forward properties: row and column sums, per-sample stopping, infeasible
 * capacities, masked entries, thread-count independence and the memory of the implicit backward. */
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "sg_test.h"
#include "sinkhorn_helpers.h"

/* ---- forward properties ------------------------------------------------- */

static void col_row_sums(const sg_tensor *y, int64_t s, double *cols, double *rows) {
  int64_t K = y->shape[y->ndim - 2], M = y->shape[y->ndim - 1];
  for (int64_t m = 0; m < M; m++) cols[m] = 0;
  for (int64_t k = 0; k < K; k++) {
    rows[k] = 0;
    for (int64_t m = 0; m < M; m++) {
      double p = exp(sg_get(y, (s * K + k) * M + m));
      rows[k] += p;
      cols[m] += p;
    }
  }
}

/* Values against the plain reference, rows summing to row_mass, columns
 * within capacity + tol at convergence, and iteration counts. */
START_TEST(forward_values) {
  sg_rng r;
  sg_rng_seed(&r, 106);
  sg_tensor *x = make_input(&r, 5, 6, 3, 1.5, (double[]){1.0, 0, -0.3}, false);
  sg_graph *g = sg_graph_new();
  sg_sinkhorn_info info;
  /* tol <= 0: exactly max_iters, never "converged". */
  sg_tensor *y = sg_sinkhorn(g, x, 1.5, 3.0, 7, 0.0, SG_SINKHORN_UNROLLED, &info);
  ck_assert_int_eq(info.iters, 7);
  ck_assert(!info.converged);
  sg_tensor *yref;
  ref_run(x, 1.5, 3.0, 7, &yref);
  ck_assert_double_lt(max_abs_diff(y, yref), 1e-13);
  double cols[3], rows[6];
  for (int s = 0; s < 5; s++) {
    col_row_sums(y, s, cols, rows);
    for (int k = 0; k < 6; k++) ck_assert_double_eq_tol(rows[k], 1.5, 1e-14);
  }
  /* A tolerance: stops early, and every column is within cap + tol. */
  y = sg_sinkhorn(g, x, 1.5, 3.0, 1000, 1e-9, SG_SINKHORN_UNROLLED, &info);
  ck_assert(info.converged && info.iters < 1000 && info.col_excess < 1e-9);
  for (int s = 0; s < 5; s++) {
    col_row_sums(y, s, cols, rows);
    for (int m = 0; m < 3; m++) ck_assert_double_le(cols[m], 3.0 + 1e-9);
    for (int k = 0; k < 6; k++) ck_assert_double_eq_tol(rows[k], 1.5, 1e-14);
  }
  sg_free(yref);
  sg_free(x);
  sg_graph_free(g);
}
END_TEST

/* Per-sample stopping: a sample's result does not depend on its batch. */
START_TEST(per_sample_stopping) {
  sg_rng r;
  sg_rng_seed(&r, 107);
  sg_tensor *x = make_input(&r, 6, 6, 3, 1.5, (double[]){1.0, 0.2, 0}, true);
  sg_graph *g = sg_graph_new();
  sg_sinkhorn_info all, one;
  sg_tensor *y = sg_sinkhorn(g, x, 1, 2.5, 500, 1e-7, SG_SINKHORN_UNROLLED, &all);
  int max_single = 0, min_single = 1 << 30;
  for (int s = 0; s < 6; s++) {
    sg_tensor *xs = sg_from_data(g, SG_F64, 3, (int64_t[]){1, 6, 3}, sg_f64(x) + s * 18);
    sg_tensor *ys = sg_sinkhorn(g, xs, 1, 2.5, 500, 1e-7, SG_SINKHORN_UNROLLED, &one);
    ck_assert(memcmp(sg_f64(ys), sg_f64(y) + s * 18, 18 * sizeof(double)) == 0);
    max_single = one.iters > max_single ? one.iters : max_single;
    min_single = one.iters < min_single ? one.iters : min_single;
  }
  ck_assert_int_eq(all.iters, max_single);
  ck_assert_int_lt(min_single, max_single); /* the samples really stopped apart */
  sg_graph_free(g);
  sg_free(x);
}
END_TEST

/* K > M*N: infeasible. It runs max_iters, rows still sum to row_mass, every
 * column ends above capacity, converging to the common sum K r / M. */
START_TEST(infeasible_capacity) {
  sg_rng r;
  sg_rng_seed(&r, 108);
  sg_tensor *x = make_input(&r, 3, 10, 2, 1.5, (double[]){0.5, 0, 0}, true);
  sg_graph *g = sg_graph_new();
  sg_sinkhorn_info info;
  sg_tensor *y = sg_sinkhorn(g, x, 1, 4.0, 300, 1e-3, SG_SINKHORN_UNROLLED, &info);
  ck_assert_int_eq(info.iters, 300);
  ck_assert(!info.converged);
  ck_assert_double_eq_tol(info.col_excess, (10 - 2 * 4.0) / 2, 1e-9);
  double cols[2], rows[10];
  for (int s = 0; s < 3; s++) {
    col_row_sums(y, s, cols, rows);
    for (int k = 0; k < 10; k++) ck_assert_double_eq_tol(rows[k], 1, 1e-14);
    for (int m = 0; m < 2; m++) ck_assert_double_eq_tol(cols[m], 5.0, 1e-9);
  }
  sg_graph_free(g);
  sg_free(x);
}
END_TEST

/* Masked (-inf) entries keep zero mass, the rest stays finite, and a loss
 * over the finite outputs sends no gradient to the masked inputs. */
START_TEST(masked_entries) {
  sg_rng r;
  sg_rng_seed(&r, 109);
  for (int mode = 0; mode < 2; mode++) {
    sg_tensor *x = make_input(&r, 2, 6, 3, 1.5, (double[]){1.0, 0, 0}, true);
    sg_set(x, 0, -INFINITY);
    sg_set(x, 3 * 3 + 2, -INFINITY);
    sg_graph *g = sg_graph_new();
    sg_tensor *w = sg_rand_normal(g, &r, SG_F64, 3, x->shape, 0, 1);
    sg_set(w, 0, 0);
    sg_set(w, 11, 0);
    sg_tensor *y = sg_sinkhorn(g, x, 1, 2.5, 200, 1e-12, (sg_sinkhorn_grad)mode, NULL);
    sg_backward_with(g, y, w);
    for (int64_t i = 0; i < y->numel; i++) {
      bool masked = i == 0 || i == 11;
      ck_assert(masked ? sg_get(y, i) == -INFINITY : isfinite(sg_get(y, i)));
      ck_assert(isfinite(sg_get(x->grad, i)));
      if (masked) ck_assert_double_eq(sg_get(x->grad, i), 0);
    }
    sg_graph_free(g);
    sg_free(x);
  }
}
END_TEST

/* A mask that splits a sample into two blocks (rows 0-1 on column 0, rows
 * 2-3 on column 1): the result is fixed (every finite entry is log 1), so
 * the gradient is zero; the implicit system then has a second null
 * direction besides the gauge. */
START_TEST(masked_disconnected) {
  const double inf = INFINITY;
  sg_tensor *x = sg_from_f64(NULL, SG_F64, 3, (int64_t[]){1, 4, 2},
                             (double[]){0.3, -inf, -0.7, -inf, -inf, 1.1, -inf, 0.2});
  sg_set_requires_grad(x, true);
  sg_rng r;
  sg_rng_seed(&r, 112);
  for (int mode = 0; mode < 2; mode++) {
    sg_graph *g = sg_graph_new();
    sg_tensor *w = sg_rand_normal(g, &r, SG_F64, 3, x->shape, 0, 1);
    const int masked[] = {1, 3, 4, 6};
    for (int i = 0; i < 4; i++) sg_set(w, masked[i], 0);
    sg_zero_grad(x);
    sg_tensor *y = sg_sinkhorn(g, x, 1, 2.0, 10, 0, (sg_sinkhorn_grad)mode, NULL);
    sg_backward_with(g, y, w);
    for (int i = 0; i < 8; i++) {
      ck_assert(isfinite(sg_get(y, i)) ? fabs(sg_get(y, i)) < 1e-15 : sg_get(y, i) == -inf);
      ck_assert_double_eq_tol(sg_get(x->grad, i), 0, 1e-15);
    }
    sg_graph_free(g);
  }
  sg_free(x);
}
END_TEST

/* Two 2 x 2 blocks (rows 0-1 on columns 0-1, rows 2-3 on columns 2-3) of
 * a 4 x 4 sample with K r = M c: each block is balanced on its own, and the
 * implicit system has a second, inexact null direction besides the gauge.
 * The implicit gradient still matches the converged unrolled one. */
START_TEST(masked_blocks_implicit) {
  const double inf = INFINITY;
  sg_tensor *x = sg_from_f64(NULL, SG_F64, 3, (int64_t[]){1, 4, 4},
                             (double[]){0.3, -0.4, -inf, -inf, -0.9, 0.5, -inf, -inf, -inf, -inf,
                                        0.7, -0.2, -inf, -inf, 0.1, 0.6});
  sg_set_requires_grad(x, true);
  sg_rng r;
  sg_rng_seed(&r, 113);
  sg_tensor *w = sg_rand_normal(NULL, &r, SG_F64, 3, x->shape, 0, 1);
  for (int i = 0; i < 16; i++)
    if (isinf(sg_get(x, i))) sg_set(w, i, 0);
  sk_case cu = {1, 1.0, 3000, 1e-13, SG_SINKHORN_UNROLLED, false};
  sk_case ci = {1, 1.0, 3000, 1e-13, SG_SINKHORN_IMPLICIT, false};
  sg_sinkhorn_info info;
  sg_tensor *gu = grad_of(x, &cu, w, &info), *gi = grad_of(x, &ci, w, &info);
  ck_assert(info.converged);
  ck_assert_double_gt(max_abs(gu), 0.1);
  ck_assert_double_lt(max_abs_diff(gu, gi), 1e-6);
  sg_free(gu);
  sg_free(gi);
  sg_free(w);
  sg_free(x);
}
END_TEST

/* Results, info and gradients are bitwise the same on 1 and 2 threads
 * (the batch is large enough to run in parallel). */
START_TEST(thread_independent) {
  sg_rng r;
  sg_rng_seed(&r, 110);
  sg_tensor *x = make_input(&r, 512, 8, 2, 1.5, (double[]){0.8, 0, 0}, true);
  sg_tensor *w = sg_rand_normal(NULL, &r, SG_F64, 3, x->shape, 0, 1);
  int saved = omp_get_max_threads();
  for (int mode = 0; mode < 2; mode++) {
    sk_case c = {1, 4.0, 50, 1e-6, (sg_sinkhorn_grad)mode, false};
    omp_set_num_threads(1);
    sg_sinkhorn_info i1, i2;
    sg_tensor *g1 = grad_of(x, &c, w, &i1);
    omp_set_num_threads(2);
    sg_tensor *g2 = grad_of(x, &c, w, &i2);
    ck_assert(memcmp(sg_f64(g1), sg_f64(g2), (size_t)x->numel * sizeof(double)) == 0);
    ck_assert(i1.iters == i2.iters && i1.col_excess == i2.col_excess);
    sg_free(g1);
    sg_free(g2);
  }
  omp_set_num_threads(saved);
  sg_free(x);
  sg_free(w);
}
END_TEST

/* Arena bytes after forward + backward on a fresh graph: the implicit mode
 * keeps nothing per iteration; the unrolled mode keeps a record of 1 + K + M
 * numbers per sample and iteration after the first. */
static size_t arena_after(const sg_tensor *x0, int iters, sg_sinkhorn_grad mode) {
  sg_tensor *x = sg_clone(NULL, x0);
  sg_set_requires_grad(x, true);
  sg_graph *g = sg_graph_new();
  sg_tensor *y = sg_sinkhorn(g, x, 1, 4.0, iters, 0, mode, NULL);
  sg_backward_with(g, y, sg_ones(g, x->dtype, 3, x->shape));
  size_t bytes = sg_graph_arena_bytes(g);
  sg_graph_free(g);
  sg_free(x);
  return bytes;
}

START_TEST(memory_implicit_flat) {
  sg_rng r;
  sg_rng_seed(&r, 111);
  sg_tensor *x = make_input(&r, 256, 8, 2, 1.5, (double[]){0.8, 0, 0}, true);
  size_t record = 256 * (1 + 8 + 2) * sizeof(double);
  ck_assert_uint_eq(arena_after(x, 10, SG_SINKHORN_IMPLICIT),
                    arena_after(x, 1000, SG_SINKHORN_IMPLICIT));
  ck_assert_uint_ge(arena_after(x, 1000, SG_SINKHORN_UNROLLED), 999 * record);
  sg_free(x);
}
END_TEST

Suite *suite_sinkhorn_forward(void) {
  const sg_test_case cases[] = {
      {"forward_values", forward_values},
      {"per_sample_stopping", per_sample_stopping},
      {"infeasible_capacity", infeasible_capacity},
      {"masked_entries", masked_entries},
      {"masked_disconnected", masked_disconnected},
      {"masked_blocks_implicit", masked_blocks_implicit},
      {"thread_independent", thread_independent},
      {"memory_implicit_flat", memory_implicit_flat},
  };
  return sg_test_suite("sinkhorn_forward", cases, sizeof cases / sizeof cases[0], 300);
}
