/* Linear solve of a batch of square systems: X = A^{-1} B.
 *
 * Forward, per matrix: LU factorisation with partial pivoting (the row of
 * largest magnitude in the column becomes the pivot), then forward and back
 * substitution for the r right-hand sides. The factorisation and the
 * substitutions run in double for both dtypes, so a float32 solve is the
 * float64 solve of its (float32) inputs, rounded once at the end; small
 * systems are cheap enough that the extra precision costs nothing.
 *
 * Backward (X = A^{-1} B, go = dL/dX):
 *   gB += A^{-T} go
 *   gA += -(A^{-T} go) X^T
 * The LU of A is recomputed in the backward instead of being kept: for the
 * small systems this op serves (beamformers: 2N x 2N) it costs about what
 * reading it back would. Each matrix is handled by one thread, so results
 * do not depend on the thread count. Formulas: docs/layers.md. */
#include "sg_kernel.h"
#include "sg_ops.h"

#include <math.h>
#include <stdlib.h>

/* ---- LU in double ------------------------------------------------------------ */

/* LU of the n x n row-major lu in place, with perm[i] the row of A that is
 * row i of P A. Returns -1, or the first column whose pivot is 0 or not
 * finite (the matrix is singular to working precision, or holds NaN). */
static int lu_factor(double *lu, int *perm, int n) {
  for (int i = 0; i < n; i++) perm[i] = i;
  for (int j = 0; j < n; j++) {
    int p = j;
    for (int i = j + 1; i < n; i++)
      if (fabs(lu[i * n + j]) > fabs(lu[p * n + j])) p = i;
    if (!(fabs(lu[p * n + j]) > 0) || !isfinite(lu[p * n + j])) return j;
    if (p != j) {
      for (int c = 0; c < n; c++) {
        double t = lu[j * n + c];
        lu[j * n + c] = lu[p * n + c], lu[p * n + c] = t;
      }
      int t = perm[j];
      perm[j] = perm[p], perm[p] = t;
    }
    for (int i = j + 1; i < n; i++) {
      double f = lu[i * n + j] /= lu[j * n + j];
      for (int c = j + 1; c < n; c++) lu[i * n + c] -= f * lu[j * n + c];
    }
  }
  return -1;
}

/* col <- A^{-1} col (one right-hand side). */
static void lu_solve(const double *lu, const int *perm, int n, double *col, double *tmp) {
  for (int i = 0; i < n; i++) tmp[i] = col[perm[i]]; /* P b */
  for (int i = 1; i < n; i++)                        /* L y = P b */
    for (int k = 0; k < i; k++) tmp[i] -= lu[i * n + k] * tmp[k];
  for (int i = n - 1; i >= 0; i--) { /* U x = y */
    for (int k = i + 1; k < n; k++) tmp[i] -= lu[i * n + k] * tmp[k];
    tmp[i] /= lu[i * n + i];
  }
  for (int i = 0; i < n; i++) col[i] = tmp[i];
}

/* col <- A^{-T} col: A^T = U^T L^T P, so solve U^T t = b, L^T w = t, and
 * x = P^T w (x[perm[i]] = w[i]). */
static void lu_solve_transposed(const double *lu, const int *perm, int n, double *col,
                                double *tmp) {
  for (int i = 0; i < n; i++) {
    double s = col[i];
    for (int k = 0; k < i; k++) s -= lu[k * n + i] * tmp[k];
    tmp[i] = s / lu[i * n + i];
  }
  for (int i = n - 1; i >= 0; i--)
    for (int k = i + 1; k < n; k++) tmp[i] -= lu[k * n + i] * tmp[k];
  for (int i = 0; i < n; i++) col[perm[i]] = tmp[i];
}

/* ---- per-matrix kernels -------------------------------------------------------- */

typedef struct solve_dims {
  int64_t batch, r;
  int n;
} solve_dims;

/* Scratch of one matrix, on the stack of the thread that solves it: the LU,
 * the gradient of A in double, the permutation, a column and a temporary. */
typedef struct solve_scratch {
  double lu[SG_SOLVE_MAX_N * SG_SOLVE_MAX_N], ga[SG_SOLVE_MAX_N * SG_SOLVE_MAX_N];
  double col[SG_SOLVE_MAX_N], tmp[SG_SOLVE_MAX_N];
  int perm[SG_SOLVE_MAX_N];
} solve_scratch;

#define DEFINE_SOLVE_KERNELS(T, S)                                                                 \
  /* Factorises matrix i of A into s; -1, or the singular column. */                               \
  static int factor_##S(const T *A, int64_t i, int n, solve_scratch *s) {                          \
    const T *a = A + i * n * n;                                                                    \
    for (int64_t e = 0; e < (int64_t)n * n; e++) s->lu[e] = (double)a[e];                          \
    return lu_factor(s->lu, s->perm, n);                                                           \
  }                                                                                                \
  /* X_i = A_i^{-1} B_i, a column at a time; -1, or the singular column of A_i. */                 \
  static int solve_one_##S(const T *A, const T *Bm, T *X, int64_t i, solve_dims d) {               \
    solve_scratch s;                                                                               \
    int bad = factor_##S(A, i, d.n, &s);                                                           \
    if (bad >= 0) return bad;                                                                      \
    const T *b = Bm + i * d.n * d.r;                                                               \
    T *x = X + i * d.n * d.r;                                                                      \
    for (int64_t c = 0; c < d.r; c++) {                                                            \
      for (int k = 0; k < d.n; k++) s.col[k] = (double)b[k * d.r + c];                             \
      lu_solve(s.lu, s.perm, d.n, s.col, s.tmp);                                                   \
      for (int k = 0; k < d.n; k++) x[k * d.r + c] = (T)s.col[k];                                  \
    }                                                                                              \
    return -1;                                                                                     \
  }                                                                                                \
  /* With y = A_i^{-T} go_i (a column at a time): gB_i += y and gA_i += -y X_i^T                   \
   * (each skipped if NULL; gA summed in double over the columns, in order). */                    \
  static void backward_one_##S(const T *A, const T *X, const T *go, T *gA, bool acc_a, T *gB,      \
                               bool acc_b, int64_t i, solve_dims d) {                              \
    solve_scratch s;                                                                               \
    int n = d.n;                                                                                   \
    int64_t nr = n * d.r;                                                                          \
    factor_##S(A, i, n, &s); /* not singular: the forward succeeded */                             \
    for (int e = 0; e < n * n; e++) s.ga[e] = 0;                                                   \
    const T *x = X + i * nr, *g = go + i * nr;                                                     \
    for (int64_t c = 0; c < d.r; c++) {                                                            \
      for (int k = 0; k < n; k++) s.col[k] = (double)g[k * d.r + c];                               \
      lu_solve_transposed(s.lu, s.perm, n, s.col, s.tmp);                                          \
      if (gB)                                                                                      \
        for (int k = 0; k < n; k++) {                                                              \
          T *o = gB + i * nr + k * d.r + c;                                                        \
          *o = (T)((acc_b ? (double)*o : 0) + s.col[k]);                                           \
        }                                                                                          \
      for (int row = 0; gA && row < n; row++)                                                      \
        for (int col = 0; col < n; col++)                                                          \
          s.ga[row * n + col] -= s.col[row] * (double)x[col * d.r + c];                            \
    }                                                                                              \
    T *ga = gA ? gA + i * n * n : NULL;                                                            \
    for (int e = 0; ga && e < n * n; e++) ga[e] = (T)((acc_a ? (double)ga[e] : 0) + s.ga[e]);      \
  }

SG_FOR_BOTH_TYPES(DEFINE_SOLVE_KERNELS)

/* ---- forward and backward over the batch ------------------------------------------- */

/* Work above which the batch loop forks. */
static bool worth_threads(solve_dims d) {
  return d.batch > 1 && d.batch * d.n * (d.n + d.r) * d.n >= SG_PAR_MIN;
}

/* Solves every matrix; -1, or the index of the first singular matrix
 * (*column: its singular column). -2 when out of memory. */
static int64_t solve_forward(const sg_tensor *A, const sg_tensor *B, sg_tensor *X, solve_dims d,
                             int *column) {
  int *bad = malloc(sizeof(int) * (size_t)d.batch);
  if (!bad) return -2;
  SG_DISPATCH(A->dtype, T, {
    const T *a = A->data, *b = B->data;
    T *x = X->data;
    SG_PARALLEL_IF(
        worth_threads(d),
        for (int64_t i = 0; i < d.batch; i++) { bad[i] = SG_TYPED(solve_one, a)(a, b, x, i, d); });
  });
  int64_t first = -1;
  for (int64_t i = 0; i < d.batch && first < 0; i++)
    if (bad[i] >= 0) first = i, *column = bad[i];
  free(bad);
  return first;
}

static void solve_backward(sg_graph *g, sg_node *n) {
  sg_tensor *A = n->in[0], *B = n->in[1], *X = n->out;
  bool acc_a = false, acc_b = false;
  sg_tensor *gA = sg_grad_dest(g, A, &acc_a), *gB = sg_grad_dest(g, B, &acc_b);
  if (!gA && !gB) return;
  solve_dims d = {n->iarg[0], n->iarg[2], (int)n->iarg[1]};
  SG_DISPATCH(A->dtype, T, {
    const T *a = A->data, *x = X->data, *go = X->grad->data;
    T *ga = gA ? gA->data : NULL, *gb = gB ? gB->data : NULL;
    SG_PARALLEL_IF(
        worth_threads(d), for (int64_t i = 0; i < d.batch; i++) {
          SG_TYPED(backward_one, a)(a, x, go, ga, acc_a, gb, acc_b, i, d);
        });
  });
}

static const sg_op solve_op = {"sg_solve", solve_backward};

/* ---- the op ------------------------------------------------------------------ */

static bool solve_shapes_ok(sg_graph *g, const sg_tensor *A, const sg_tensor *B, solve_dims *d) {
  bool ok = A->ndim >= 2 && B->ndim == A->ndim && A->shape[A->ndim - 1] == A->shape[A->ndim - 2] &&
            B->shape[B->ndim - 2] == A->shape[A->ndim - 1] && A->shape[A->ndim - 1] >= 1 &&
            A->shape[A->ndim - 1] <= SG_SOLVE_MAX_N;
  for (int k = 0; ok && k < A->ndim - 2; k++) ok = A->shape[k] == B->shape[k];
  if (!ok) {
    char sa[96], sb[96];
    sg_shape_strs(A, sa, B, sb);
    sg_op_error(g, "sg_solve",
                "A %s, B %s: need A [..., n, n] (1 <= n <= %d) and B [..., n, r] with the same "
                "leading axes",
                sa, sb, SG_SOLVE_MAX_N);
    return false;
  }
  d->n = (int)A->shape[A->ndim - 1];
  d->r = B->shape[B->ndim - 1];
  d->batch = d->n ? A->numel / ((int64_t)d->n * d->n) : 0;
  return true;
}

sg_tensor *(sg_solve)(sg_graph *g, sg_tensor *A, sg_tensor *B) {
  sg_tensor *in[2] = {A, B};
  solve_dims d;
  if (!sg_check_same_dtype(g, "sg_solve", 2, in) || !solve_shapes_ok(g, A, B, &d)) return NULL;
  sg_tensor *X = sg_empty(g, B->dtype, B->ndim, B->shape);
  if (!X) return NULL;
  int column = 0;
  int64_t bad = d.batch > 0 && d.r > 0 ? solve_forward(A, B, X, d, &column) : -1;
  if (bad == -2) return sg_op_error(g, "sg_solve", "out of memory"), NULL;
  if (bad >= 0) {
    char sa[96];
    sg_shape_strs(A, sa, NULL, NULL);
    sg_op_error(g, "sg_solve",
                "matrix %lld of A %s is singular or not finite (no usable pivot in column %d)",
                (long long)bad, sa, column);
    return NULL;
  }
  sg_node *n = sg_record(g, &solve_op, X, 2, in);
  if (n) n->iarg[0] = d.batch, n->iarg[1] = d.n, n->iarg[2] = d.r;
  return X;
}
