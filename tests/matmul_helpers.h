/* Helpers shared by the matrix-product test files (test_gemm.c, test_matmul.c,
 * test_linear.c): a naive GEMM, its tolerance, and a bitwise comparison of
 * an op's output and gradients on one and two threads. */
#ifndef MATMUL_HELPERS_H
#define MATMUL_HELPERS_H

#include <omp.h>
#include <string.h>

#include "sg_test.h"

/* ---- naive reference ---------------------------------------------------- */

/* Element (i, j) of op(X) for a stored rows x cols row-major matrix. */
static inline double op_at(const sg_tensor *x, int64_t off, int64_t ld, bool trans, int64_t i,
                           int64_t j) {
  return sg_get(x, off + (trans ? j * ld + i : i * ld + j));
}

/* C = op(A) op(B) on single matrices (at the given element offsets), in
 * long double; abs gets sum_p |a_ip b_pj| for error bounds. */
static inline void naive_gemm(const sg_tensor *a, int64_t aoff, int64_t lda, bool ta,
                              const sg_tensor *b, int64_t boff, int64_t ldb, bool tb, int64_t m,
                              int64_t n, int64_t k, double *c, double *abs) {
  for (int64_t i = 0; i < m; i++)
    for (int64_t j = 0; j < n; j++) {
      long double s = 0, sa = 0;
      for (int64_t p = 0; p < k; p++) {
        long double v = (long double)op_at(a, aoff, lda, ta, i, p) * op_at(b, boff, ldb, tb, p, j);
        s += v;
        sa += fabsl(v);
      }
      c[i * n + j] = (double)s;
      if (abs) abs[i * n + j] = (double)sa;
    }
}

/* Round-off bound of a k-term dot product in type dt: k * epsilon * sum |terms|
 * (FMA or not, any summation order), plus the operands' own rounding. */
static inline double dot_tol(sg_dtype dt, int64_t k, double abs_sum) {
  double eps = dt == SG_F32 ? 1.2e-7 : 2.3e-16;
  return (double)(k + 2) * eps * abs_sum + 1e-300;
}

static inline void with_threads(int n) {
  omp_set_num_threads(n);
}

/* in[0] = x, in[1] = W, in[2] = bias (optional); ctx: the column offset. */
static inline void assert_same_on_1_and_2_threads(sg_check_fn f, sg_tensor *const *in, int n_in,
                                                  void *ctx) {
  int was = omp_get_max_threads();
  sg_tensor *got[2][SG_MAX_INPUTS + 1];
  for (int th = 0; th < 2; th++) {
    with_threads(th + 1);
    sg_graph *g = sg_graph_new();
    for (int j = 0; j < n_in; j++) sg_zero_grad(in[j]);
    sg_tensor *y = f(g, in, n_in, ctx);
    sg_backward(g, sg_sum_all(g, sg_square(g, y)));
    got[th][0] = sg_clone(NULL, y);
    for (int j = 0; j < n_in; j++) got[th][j + 1] = sg_clone(NULL, in[j]->grad);
    sg_graph_free(g);
  }
  with_threads(was);
  for (int j = 0; j <= n_in; j++) {
    size_t bytes = (size_t)got[0][j]->numel * sg_dtype_size(got[0][j]->dtype);
    ck_assert_msg(memcmp(got[0][j]->data, got[1][j]->data, bytes) == 0,
                  "%s %s differs between 1 and 2 threads", sg_dtype_name(got[0][j]->dtype),
                  j ? "a gradient" : "the output");
    sg_free(got[0][j]);
    sg_free(got[1][j]);
  }
}

#endif
