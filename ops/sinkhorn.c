#ifndef SK_TEMPLATE
/* Capacity Sinkhorn-Knopp in the log domain, with an unrolled and an
 * implicit backward (formulas and measurements: docs/layers.md).
 *
 * x [..., K, M] is a batch of S = numel / (K*M) samples, each K rows (users)
 * by M columns (base stations), holding log masses. One iteration is
 *   column step  x_km <- x_km - max(0, LSE_k x_km - log c)  (c = col_cap)
 *   row step     x_km <- x_km - LSE_m x_km + log r          (r = row_mass)
 * and after each iteration a sample's column excess is
 *   e = max(0, max_m sum_k exp(x_km) - c).
 * Stopping is per sample: a sample stops after the first iteration that
 * leaves e < tol, or after max_iters. tol <= 0 can never be met, so every
 * sample then runs exactly max_iters. A sample's result depends only on that
 * sample, never on its batch-mates, and the unrolled backward goes through
 * exactly the iterations that sample ran.
 *
 * Unrolled backward: the forward saves every iterate x^t entering iteration
 * t >= 1 (x^0 is the input), O(iters * size) arena memory; the backward
 * recomputes each iteration's LSEs from x^t with the same code as the forward
 * (so the capped/uncapped decisions are bitwise the forward's) and applies
 *   row step:    g_km <- g_km - p_km * sum_m g_km,       p = softmax_m(z)
 *   column step: g_km <- g_km - sigma_km * sum_k g_km,  sigma = softmax_k(x),
 *                only for columns the forward capped (LSE > log c);
 * z is the iterate after the column step.
 *
 * Implicit backward: the output y = x - u_k - v_m satisfies the optimality
 * conditions of min KL(P | exp x) s.t. row sums = r, column sums <= c:
 * rows of P = exp(y) sum to r, and columns with v_m > 0 (capped at some
 * iteration: the active set A) sum to c. Differentiating them gives, with
 * a_k = sum_m gy_km, b_m = sum_k gy_km, R, C the row and column sums of P,
 *   [diag R   P_A   ] [alpha]   [a  ]
 *   [P_A^T  diag C_A] [beta ] = [b_A],   gx_km = gy_km - P_km (alpha_k + beta_m)
 * (beta_m = 0 outside A), solved per sample through the Schur complement on
 * beta (size |A| <= M) by Cholesky. When every column carrying mass is
 * active the system is singular by one (row and column totals coincide;
 * (1, -1) is its null vector); the right-hand side is consistent, and we fix
 * the gauge by setting beta = 0 for the last active column. Memory is the
 * output plus one active flag per column, independent of the iteration
 * count. When the iteration has not converged, the implicit backward
 * differentiates as if the current iterate were the fixed point: it uses the
 * current P and active set, i.e. it returns the gradient of the balancing
 * that keeps rows at r and active columns at their current sums. */
#include <omp.h>
#include <stdint.h>

#include "sg_kernel.h"
#include "sg_layers.h"

/* Iterations run between two arena allocations of saved iterates; bounds
 * the unused saved memory when samples stop early to this many iterations. */
enum { ITER_BLOCK = 16 };

typedef struct sk_params {
  double row_mass, col_cap, log_row, log_cap, tol;
  int max_iters;
} sk_params;

/* Saved iterates of iterations [first_t, first_t + n_slots), laid out
 * [sample][slot][K*M]; blocks are chained newest first. */
typedef struct sk_block {
  struct sk_block *prev;
  int64_t first_t, n_slots;
  void *data;
} sk_block;

/* Everything the forward leaves for the backward (and for info). */
typedef struct sk_state {
  int64_t samples, rows, cols;
  sk_params p;
  int32_t *iters;  /* [S] iterations run */
  double *excess;  /* [S] column excess after the last iteration */
  bool *done;      /* [S] stopped (tolerance met) */
  uint8_t *active; /* [S*M] column capped at an iteration after the first */
  /* K r >= M c: no column can end below its capacity, so the fixed point
   * has every column tight (K r = M c) or over (K r > M c) and the implicit
   * backward treats every column as active, capped or not. */
  bool all_tight;
  sk_block *last;  /* unrolled: newest block of saved iterates */
  void *col_lse;   /* [S*M] column LSEs of the current iterate (forward only) */
} sk_state;

/* Per-thread scratch: one region per OpenMP thread. */
static void *thread_scratch(sg_graph *g, size_t per_thread, int *n_threads) {
  *n_threads = omp_get_max_threads();
  return sg_arena_alloc(g, per_thread * (size_t)*n_threads);
}

static bool par_worth(int64_t work) {
  return work > SG_PAR_MIN;
}

#define SK_TEMPLATE
#define SK_T float
#define SK(name) name##_f32
#define SK_VEXP sg_vexp_f32
#include "sinkhorn.c"
#undef SK_T
#undef SK
#undef SK_VEXP
#define SK_T double
#define SK(name) name##_f64
#define SK_VEXP sg_vexp_f64
#include "sinkhorn.c"
#undef SK_T
#undef SK
#undef SK_VEXP
#undef SK_TEMPLATE

/* ---- the op ------------------------------------------------------------ */

static void sinkhorn_backward(sg_graph *g, sg_node *n) {
  sg_tensor *gx = sg_grad_buf(g, n->in[0]);
  if (!gx) return;
  const sk_state *st = n->saved;
  if (n->iarg[0] == SG_SINKHORN_IMPLICIT) {
    if (gx->dtype == SG_F32)
      implicit_backward_f32(g, st, n->in[0]->data, n->out->data, n->out->grad->data, gx->data);
    else
      implicit_backward_f64(g, st, n->in[0]->data, n->out->data, n->out->grad->data, gx->data);
  } else {
    if (gx->dtype == SG_F32)
      unrolled_backward_f32(g, st, n->in[0]->data, n->out->grad->data, gx->data);
    else
      unrolled_backward_f64(g, st, n->in[0]->data, n->out->grad->data, gx->data);
  }
}

static const sg_op sinkhorn_op = {"sg_sinkhorn", sinkhorn_backward};

static bool check_args(sg_graph *g, const sg_tensor *x, double row_mass, double col_cap,
                       int max_iters, double tol, sg_sinkhorn_grad mode) {
  char b[96];
  const char *op = "sg_sinkhorn";
  if (x->ndim < 2 || x->shape[x->ndim - 1] < 1 || x->shape[x->ndim - 2] < 1) {
    sg_op_error(g, op, "x must be [..., K, M] with K, M >= 1, got shape %s",
                sg_shape_str(x->ndim, x->shape, b));
    return false;
  }
  if (!(row_mass > 0) || !isfinite(row_mass) || !(col_cap > 0) || !isfinite(col_cap)) {
    sg_op_error(g, op, "row_mass (%g) and col_cap (%g) must be finite and > 0 (x %s)", row_mass,
                col_cap, sg_shape_str(x->ndim, x->shape, b));
    return false;
  }
  if (max_iters < 1 || isnan(tol)) {
    sg_op_error(g, op, "need max_iters >= 1 (got %d) and a tol that is not NaN (x %s)", max_iters,
                sg_shape_str(x->ndim, x->shape, b));
    return false;
  }
  if (mode != SG_SINKHORN_UNROLLED && mode != SG_SINKHORN_IMPLICIT) {
    sg_op_error(g, op, "unknown gradient mode %d (x %s)", (int)mode,
                sg_shape_str(x->ndim, x->shape, b));
    return false;
  }
  return true;
}

static sk_state *state_new(sg_graph *g, const sg_tensor *x, const sk_params *p) {
  sk_state *st = sg_arena_alloc(g, sizeof *st);
  memset(st, 0, sizeof *st);
  st->rows = x->shape[x->ndim - 2];
  st->cols = x->shape[x->ndim - 1];
  st->samples = x->numel / (st->rows * st->cols);
  st->p = *p;
  st->all_tight = (double)st->rows * p->row_mass >= (double)st->cols * p->col_cap * (1 - 1e-12);
  size_t S = (size_t)st->samples, M = (size_t)st->cols;
  st->iters = sg_arena_alloc(g, S * sizeof *st->iters + 1);
  st->excess = sg_arena_alloc(g, S * sizeof *st->excess + 1);
  st->done = sg_arena_alloc(g, S * sizeof *st->done + 1);
  st->active = sg_arena_alloc(g, S * M + 1);
  st->col_lse = sg_arena_alloc(g, S * M * sg_dtype_size(x->dtype) + 1);
  memset(st->iters, 0, S * sizeof *st->iters);
  memset(st->done, 0, S * sizeof *st->done);
  memset(st->active, 0, S * M);
  return st;
}

/* info: iterations (largest over samples), largest final excess (NaN if any
 * sample's is NaN), converged iff every sample met the tolerance. */
static void fill_info(const sk_state *st, sg_sinkhorn_info *info) {
  sg_sinkhorn_info r = {.iters = 0, .col_excess = 0, .converged = true};
  for (int64_t s = 0; s < st->samples; s++) {
    if (st->iters[s] > r.iters) r.iters = st->iters[s];
    if (st->excess[s] > r.col_excess || isnan(st->excess[s])) r.col_excess = st->excess[s];
    r.converged = r.converged && st->done[s];
  }
  *info = r;
}

sg_tensor *(sg_sinkhorn)(sg_graph *g, sg_tensor *x, double row_mass, double col_cap, int max_iters,
                         double tol, sg_sinkhorn_grad mode, sg_sinkhorn_info *info) {
  if (info) *info = (sg_sinkhorn_info){.iters = 0, .col_excess = NAN, .converged = false};
  if (!x || !check_args(g, x, row_mass, col_cap, max_iters, tol, mode)) return NULL;
  sg_tensor *y = sg_empty(g, x->dtype, x->ndim, x->shape);
  if (!y) return NULL;
  memcpy(y->data, x->data, (size_t)x->numel * sg_dtype_size(x->dtype));
  sk_params p = {.row_mass = row_mass,
                 .col_cap = col_cap,
                 .log_row = log(row_mass),
                 .log_cap = log(col_cap),
                 .tol = tol,
                 .max_iters = max_iters};
  sk_state *st = state_new(g, x, &p);
  /* Save iterates only if this op will be recorded (sg_record's condition). */
  bool save = sg_grad_enabled(g) && x->requires_grad && mode == SG_SINKHORN_UNROLLED;
  if (x->dtype == SG_F32)
    forward_f32(g, st, y->data, save);
  else
    forward_f64(g, st, y->data, save);
  if (info) fill_info(st, info);
  sg_node *n = sg_record(g, &sinkhorn_op, y, 1, &x);
  if (n) {
    n->iarg[0] = mode;
    n->saved = st;
  }
  return y;
}

#else /* SK_TEMPLATE: kernels for one element type SK_T ------------------- */

/* c[m] = LSE_k x_km of one K x M sample. Leaves e_km = exp(x_km - max_k x_km)
 * and sum[m] = sum_k e_km, so the column softmax is e_km / sum[m]. An all
 * -inf column gives c = -inf (e = 0); a NaN propagates. */
static void SK(col_lse)(const SK_T *x, int64_t K, int64_t M, SK_T *c, SK_T *e, SK_T *sum) {
  for (int64_t m = 0; m < M; m++) c[m] = -INFINITY;
  for (int64_t k = 0; k < K; k++)
    for (int64_t m = 0; m < M; m++)
      if (x[k * M + m] > c[m]) c[m] = x[k * M + m];
  for (int64_t m = 0; m < M; m++) {
    if (!isfinite(c[m])) c[m] = 0; /* no finite shift: exp of the raw values */
    sum[m] = 0;
  }
  for (int64_t k = 0; k < K; k++)
    for (int64_t m = 0; m < M; m++) e[k * M + m] = x[k * M + m] - c[m];
  SK_VEXP(e, e, K * M);
  for (int64_t k = 0; k < K; k++)
    for (int64_t m = 0; m < M; m++) sum[m] += e[k * M + m];
  for (int64_t m = 0; m < M; m++) c[m] += log(sum[m]);
}

/* rho[k] = LSE_m x_km, with e_km = exp(x_km - max_m x_km), sum[k] = sum_m e_km. */
static void SK(row_lse)(const SK_T *x, int64_t K, int64_t M, SK_T *rho, SK_T *e, SK_T *sum) {
  for (int64_t k = 0; k < K; k++) {
    const SK_T *xr = x + k * M;
    SK_T mx = -INFINITY;
    for (int64_t m = 0; m < M; m++)
      if (xr[m] > mx) mx = xr[m];
    rho[k] = isfinite(mx) ? mx : 0;
    for (int64_t m = 0; m < M; m++) e[k * M + m] = xr[m] - rho[k];
  }
  SK_VEXP(e, e, K * M);
  for (int64_t k = 0; k < K; k++) {
    SK_T s = 0;
    for (int64_t m = 0; m < M; m++) s += e[k * M + m];
    sum[k] = s;
    rho[k] += log(s);
  }
}

/* The column step's shifts max(0, c_m - log cap); at equality a column is
 * not capped. Shared by forward and backward so both decide alike. */
static void SK(col_shifts)(const SK_T *c, int64_t M, SK_T log_cap, SK_T *shift) {
  for (int64_t m = 0; m < M; m++) {
    SK_T s = c[m] - log_cap;
    shift[m] = s > 0 ? s : 0;
  }
}

/* One iteration in place on sample y whose column LSEs are c; afterwards c
 * holds the new iterate's column LSEs. Marks capped columns in active.
 * Returns the sample's column excess (mass units, >= 0; NaN propagates). */
static double SK(iterate)(SK_T *y, int64_t K, int64_t M, SK_T *c, const sk_params *p,
                          uint8_t *active, SK_T *ws) {
  SK_T *e = ws, *sum = e + K * M, *rho = sum + K + M, *shift = rho + K;
  SK(col_shifts)(c, M, (SK_T)p->log_cap, shift);
  if (active)
    for (int64_t m = 0; m < M; m++) active[m] |= shift[m] > 0;
  for (int64_t k = 0; k < K; k++)
    for (int64_t m = 0; m < M; m++) y[k * M + m] -= shift[m];
  SK(row_lse)(y, K, M, rho, e, sum);
  for (int64_t k = 0; k < K; k++) {
    SK_T d = (SK_T)p->log_row - rho[k];
    for (int64_t m = 0; m < M; m++) y[k * M + m] += d;
  }
  SK(col_lse)(y, K, M, c, e, sum);
  double excess = 0;
  for (int64_t m = 0; m < M; m++) {
    double ex = exp((double)c[m]) - p->col_cap;
    if (ex > excess || isnan(ex)) excess = ex;
  }
  return excess;
}

static size_t SK(forward_scratch)(int64_t K, int64_t M) {
  return (size_t)(K * M + 2 * K + 2 * M) * sizeof(SK_T);
}

/* Runs up to n iterations (global iterations t0 .. t0+n-1) of sample s,
 * first saving each iterate x^t (t >= 1) into blk when blk is not NULL. */
static void SK(run_sample)(sk_state *st, SK_T *ys, int64_t s, int64_t n, const sk_block *blk,
                           SK_T *ws) {
  int64_t K = st->rows, M = st->cols;
  SK_T *c = (SK_T *)st->col_lse + s * M;
  uint8_t *active = st->active + s * M;
  if (st->iters[s] == 0) {
    SK_T *e = ws, *sum = e + K * M;
    SK(col_lse)(ys, K, M, c, e, sum);
  }
  for (int64_t j = 0; j < n; j++) {
    int64_t t = st->iters[s];
    if (blk && t >= blk->first_t) {
      SK_T *slot = (SK_T *)blk->data + (s * blk->n_slots + (t - blk->first_t)) * K * M;
      memcpy(slot, ys, (size_t)(K * M) * sizeof *slot);
    }
    /* Active set: columns capped after the first iteration (see the top). */
    st->excess[s] = SK(iterate)(ys, K, M, c, &st->p, t >= 1 ? active : NULL, ws);
    st->iters[s]++;
    if (st->excess[s] < st->p.tol) {
      st->done[s] = true;
      return;
    }
  }
}

/* The whole forward, in blocks of ITER_BLOCK iterations: each block
 * allocates the saved iterates it may need, then runs every still-running
 * sample in parallel (one thread per sample, so results do not depend on
 * the thread count). */
static void SK(forward)(sg_graph *g, sk_state *st, SK_T *y, bool save) {
  int64_t S = st->samples, KM = st->rows * st->cols;
  if (S == 0) return;
  int n_threads;
  size_t per = SK(forward_scratch)(st->rows, st->cols);
  char *scratch = thread_scratch(g, per, &n_threads);
  int64_t running = S;
  for (int64_t t0 = 0; t0 < st->p.max_iters && running > 0; t0 += ITER_BLOCK) {
    int64_t n = st->p.max_iters - t0 < ITER_BLOCK ? st->p.max_iters - t0 : ITER_BLOCK;
    sk_block *blk = NULL;
    if (save) { /* slots for x^t, t in [max(t0, 1), t0 + n) */
      int64_t first = t0 > 0 ? t0 : 1;
      if (t0 + n > first) {
        blk = sg_arena_alloc(g, sizeof *blk);
        blk->prev = st->last;
        blk->first_t = first;
        blk->n_slots = t0 + n - first;
        blk->data = sg_arena_alloc(g, (size_t)(S * blk->n_slots * KM) * sizeof(SK_T));
        st->last = blk;
      }
    }
#pragma omp parallel for if (par_worth(S * KM * n)) schedule(static)
    for (int64_t s = 0; s < S; s++) {
      if (st->done[s]) continue;
      SK_T *ws = (SK_T *)(scratch + per * (size_t)omp_get_thread_num());
      SK(run_sample)(st, y + s * KM, s, n, blk, ws);
    }
    running = 0;
    for (int64_t s = 0; s < S; s++) running += !st->done[s];
  }
}

/* ---- unrolled backward ------------------------------------------------- */

/* Replaces g (gradient w.r.t. the iterate after iteration t) by the
 * gradient w.r.t. x = x^t, recomputing the iteration's LSEs from x. */
static void SK(iteration_backward)(const SK_T *x, SK_T *g, int64_t K, int64_t M, SK_T log_cap,
                                   SK_T *ws) {
  SK_T *sig = ws, *p = sig + K * M, *z = p + K * M, *c = z + K * M, *colsum = c + M;
  SK_T *shift = colsum + M, *rho = shift + M, *rowsum = rho + K;
  SK(col_lse)(x, K, M, c, sig, colsum);
  SK(col_shifts)(c, M, log_cap, shift);
  for (int64_t k = 0; k < K; k++)
    for (int64_t m = 0; m < M; m++) z[k * M + m] = x[k * M + m] - shift[m];
  SK(row_lse)(z, K, M, rho, p, rowsum);
  /* Row step: g -= softmax_m(z) * (row sum of g). */
  for (int64_t k = 0; k < K; k++) {
    SK_T gsum = 0;
    for (int64_t m = 0; m < M; m++) gsum += g[k * M + m];
    SK_T coef = gsum / rowsum[k];
    for (int64_t m = 0; m < M; m++) g[k * M + m] -= p[k * M + m] * coef;
  }
  /* Column step, capped columns: g -= softmax_k(x) * (column sum of g). */
  SK_T *coef = c; /* c is no longer needed */
  for (int64_t m = 0; m < M; m++) coef[m] = 0;
  for (int64_t k = 0; k < K; k++)
    for (int64_t m = 0; m < M; m++) coef[m] += g[k * M + m];
  for (int64_t m = 0; m < M; m++) coef[m] = shift[m] > 0 ? coef[m] / colsum[m] : 0;
  for (int64_t k = 0; k < K; k++)
    for (int64_t m = 0; m < M; m++) g[k * M + m] -= sig[k * M + m] * coef[m];
}

static void SK(unrolled_backward)(sg_graph *g, const sk_state *st, const SK_T *x0, const SK_T *gy,
                                  SK_T *gx) {
  int64_t S = st->samples, K = st->rows, M = st->cols, KM = K * M;
  int n_threads;
  size_t per = (size_t)(4 * KM + 2 * K + 3 * M) * sizeof(SK_T);
  char *scratch = thread_scratch(g, per, &n_threads);
  int64_t work = 0;
  for (int64_t s = 0; s < S; s++) work += st->iters[s] * KM;
#pragma omp parallel for if (par_worth(work)) schedule(static)
  for (int64_t s = 0; s < S; s++) {
    SK_T *ws = (SK_T *)(scratch + per * (size_t)omp_get_thread_num());
    SK_T *gs = ws, *iter_ws = ws + KM;
    memcpy(gs, gy + s * KM, (size_t)KM * sizeof *gs);
    const sk_block *blk = st->last;
    for (int64_t t = st->iters[s] - 1; t >= 0; t--) {
      const SK_T *xt = x0 + s * KM;
      if (t > 0) {
        while (t < blk->first_t) blk = blk->prev;
        xt = (const SK_T *)blk->data + (s * blk->n_slots + (t - blk->first_t)) * KM;
      }
      SK(iteration_backward)(xt, gs, K, M, (SK_T)st->p.log_cap, iter_ws);
    }
    for (int64_t i = 0; i < KM; i++) gx[s * KM + i] += gs[i];
  }
}

/* ---- implicit backward ------------------------------------------------- */

/* Solves the symmetric positive semi-definite system A x = b of size n in
 * place by Cholesky (A's lower triangle is overwritten). A pivot that is
 * not above tiny * (its original diagonal) marks a redundant equation: its
 * unknown is set to 0 (consistent systems only). */
static void SK(psd_solve)(double *A, double *b, int64_t n, double tiny) {
  for (int64_t j = 0; j < n; j++) {
    double d = A[j * n + j], diag = d;
    for (int64_t q = 0; q < j; q++) d -= A[j * n + q] * A[j * n + q];
    bool skip = !(d > tiny * diag);
    A[j * n + j] = skip ? 0 : sqrt(d);
    for (int64_t i = j + 1; i < n; i++) {
      double v = A[i * n + j];
      for (int64_t q = 0; q < j; q++) v -= A[i * n + q] * A[j * n + q];
      A[i * n + j] = skip ? 0 : v / A[j * n + j];
    }
  }
  for (int64_t i = 0; i < n; i++) { /* L w = b */
    double v = b[i];
    for (int64_t q = 0; q < i; q++) v -= A[i * n + q] * b[q];
    b[i] = A[i * n + i] > 0 ? v / A[i * n + i] : 0;
  }
  for (int64_t i = n - 1; i >= 0; i--) { /* L^T x = w */
    double v = b[i];
    for (int64_t q = i + 1; q < n; q++) v -= A[q * n + i] * b[q];
    b[i] = A[i * n + i] > 0 ? v / A[i * n + i] : 0;
  }
}

/* Which columns carry an unknown beta: the active ones (all of them when
 * K r >= M c, see sk_state.all_tight), minus the last active one when every
 * column with mass is active (the gauge). */
static void SK(unknowns)(const uint8_t *active, bool all_tight, const double *C, int64_t M,
                         uint8_t *unknown) {
  bool all_massive_active = true;
  int64_t last = -1;
  for (int64_t m = 0; m < M; m++) {
    unknown[m] = all_tight || active[m];
    if (unknown[m]) last = m;
    if (!unknown[m] && C[m] > 0) all_massive_active = false;
  }
  if (all_massive_active && last >= 0) unknown[last] = 0;
}

static void SK(fixed_point_backward)(const SK_T *y, double *go, int64_t K, int64_t M,
                                     const uint8_t *active, bool all_tight, double *w) {
  double *P = w, *R = P + K * M, *a = R + K, *C = a + K, *b = C + M, *A = b + M;
  uint8_t *unknown = (uint8_t *)(A + M * M);
  for (int64_t i = 0; i < K * M; i++) P[i] = (double)y[i];
  sg_vexp_f64(P, P, K * M);
  for (int64_t m = 0; m < M; m++) C[m] = b[m] = 0;
  for (int64_t k = 0; k < K; k++) {
    R[k] = a[k] = 0;
    for (int64_t m = 0; m < M; m++) {
      double pv = P[k * M + m], gv = go[k * M + m];
      R[k] += pv, a[k] += gv, C[m] += pv, b[m] += gv;
    }
  }
  SK(unknowns)(active, all_tight, C, M, unknown);
  /* Schur complement on beta: (diag C - P^T diag(1/R) P) beta = b - P^T (a/R),
   * with identity rows for the columns without an unknown (beta = 0). */
  for (int64_t i = 0; i < M; i++)
    for (int64_t j = 0; j < M; j++) A[i * M + j] = i == j ? (unknown[i] ? C[i] : 1) : 0;
  for (int64_t i = 0; i < M; i++) b[i] = unknown[i] ? b[i] : 0;
  for (int64_t k = 0; k < K; k++) {
    const double *pk = P + k * M;
    for (int64_t i = 0; i < M; i++) {
      if (!unknown[i]) continue;
      b[i] -= pk[i] * a[k] / R[k];
      for (int64_t j = 0; j < M; j++)
        if (unknown[j]) A[i * M + j] -= pk[i] * pk[j] / R[k];
    }
  }
  SK(psd_solve)(A, b, M, 1e-12);
  const double *beta = b;
  for (int64_t k = 0; k < K; k++) {
    const double *pk = P + k * M;
    double alpha = a[k];
    for (int64_t m = 0; m < M; m++) alpha -= pk[m] * beta[m];
    alpha /= R[k];
    for (int64_t m = 0; m < M; m++) go[k * M + m] -= pk[m] * (alpha + beta[m]);
  }
}

/* Backward through the first column step, recomputed from the input x0
 * with the forward's code: go -= softmax_k(x0) * (column sum of go) on the
 * columns it capped. tw: scratch of K*M + 3M elements of SK_T. */
static void SK(first_col_step_backward)(const SK_T *x0, double *go, int64_t K, int64_t M,
                                        SK_T log_cap, SK_T *tw) {
  SK_T *e = tw, *c = e + K * M, *sum = c + M, *shift = sum + M;
  SK(col_lse)(x0, K, M, c, e, sum);
  SK(col_shifts)(c, M, log_cap, shift);
  for (int64_t m = 0; m < M; m++) {
    if (!(shift[m] > 0)) continue;
    double h = 0;
    for (int64_t k = 0; k < K; k++) h += go[k * M + m];
    h /= (double)sum[m];
    for (int64_t k = 0; k < K; k++) go[k * M + m] -= (double)e[k * M + m] * h;
  }
}

static void SK(implicit_backward)(sg_graph *g, const sk_state *st, const SK_T *x0, const SK_T *y,
                                  const SK_T *gy, SK_T *gx) {
  int64_t S = st->samples, K = st->rows, M = st->cols, KM = K * M;
  int n_threads;
  size_t doubles = (size_t)(2 * KM + 2 * K + 2 * M + M * M) * sizeof(double);
  size_t typed = (size_t)(KM + 3 * M) * sizeof(SK_T);
  size_t per = (doubles + typed + (size_t)M + 63) / 64 * 64;
  char *scratch = thread_scratch(g, per, &n_threads);
#pragma omp parallel for if (par_worth(S * KM * (M + 4))) schedule(static)
  for (int64_t s = 0; s < S; s++) {
    char *ws = scratch + per * (size_t)omp_get_thread_num();
    double *go = (double *)ws, *w = go + KM;
    SK_T *tw = (SK_T *)(ws + doubles);
    for (int64_t i = 0; i < KM; i++) go[i] = (double)gy[s * KM + i];
    SK(fixed_point_backward)(y + s * KM, go, K, M, st->active + s * M, st->all_tight, w);
    SK(first_col_step_backward)(x0 + s * KM, go, K, M, (SK_T)st->p.log_cap, tw);
    for (int64_t i = 0; i < KM; i++) gx[s * KM + i] += (SK_T)go[i];
  }
}

#endif /* SK_TEMPLATE */
