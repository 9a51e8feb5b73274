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
 * Computation (stabilised scaling form). Every iterate is x_km - u_k - v_m,
 * so after the first column step (done in the log domain: the input's rows
 * need not be normalised and its masses may overflow) we keep reference
 * potentials U0, V0, the kernel G_km = exp(x_km - U0_k - V0_m) and scalings
 * a_k, b_m with masses G_km a_k b_m; then a column step is b_m *= c / colsum_m
 * on the columns whose mass exceeds c (the log-domain test LSE > log c, so at
 * equality a column is not capped), a row step is a_k = r / sum_m G_km b_m,
 * and no iteration needs an exp or a log. The scalings stay within
 * [ABSORB_MIN, 1] (b) and so bounded (a); when a b_m falls below ABSORB_MIN
 * they are absorbed into U0, V0 and G is recomputed (log-domain
 * stabilisation; entries of G that underflow carry no mass that a sum could
 * see). The output is x_km - U0_k - V0_m + log a_k + log b_m.
 *
 * Unrolled backward: the forward saves, per sample and iteration t >= 1, the
 * scalings (a, b) entering it, or the new reference (U0, V0) when it starts
 * a new epoch: (1 + K + M) numbers instead of a K*M iterate. The backward
 * rebuilds G per epoch, recomputes each iteration's column masses with the
 * forward's code (so the capped/uncapped decisions are bitwise the
 * forward's) and applies
 *   row step:    g_km <- g_km - p_km * sum_m g_km,       p = softmax_m(z)
 *   column step: g_km <- g_km - sigma_km * sum_k g_km,  sigma = softmax_k(x),
 *                only on the columns the forward capped;
 * z is the iterate after the column step.
 *
 * Implicit backward: the output y = x - u_k - v_m satisfies the optimality
 * conditions of min KL(P | exp x) s.t. row sums = r, column sums <= c:
 * rows of P = exp(y) sum to r, and active columns (A: capped at an
 * iteration after the first, or all columns when K r >= M c) sum to c.
 * Differentiating them gives, with a_k = sum_m gy_km, b_m = sum_k gy_km,
 * R, C the row and column sums of P,
 *   [diag R   P_A   ] [alpha]   [a  ]
 *   [P_A^T  diag C_A] [beta ] = [b_A],   g_km = gy_km - P_km (alpha_k + beta_m)
 * (beta_m = 0 outside A), solved per sample through the Schur complement on
 * beta (size |A| <= M) by Cholesky. When every column carrying mass is
 * active the system is singular by one (row and column totals coincide;
 * (1, -1) is its null vector); the right-hand side is consistent, and we fix
 * the gauge by setting beta = 0 for the last active column (any further
 * rank loss, from masked entries splitting the sample into blocks, shows as
 * a vanishing Cholesky pivot and is fixed the same way).
 *   Only the first column step acts on rows that are not yet normalised: a
 * column it caps may end below capacity (the row step that follows can
 * lower it), so it shifts the fixed point without being active. The result
 * is the fixed point of the first iterate, so g is then passed exactly
 * through that first column step, recomputed from the input.
 *   Memory is O(size) (the output, the per-sample scalings and one flag per
 * column), independent of the iteration count. When the iteration has not converged, the implicit
 * backward differentiates as if the current iterate were the fixed point:
 * it uses the current P and active set, i.e. it returns the gradient of the
 * balancing that keeps rows at r and active columns at their current sums. */
#include <float.h>
#include <omp.h>
#include <stdint.h>

#include "sg_kernel.h"
#include "sg_layers.h"

/* With a tolerance the iteration count is not known in advance: the saved
 * scalings are allocated in blocks of FIRST_BLOCK, then doubling, iterations
 * (so at most half the saved memory is unused when samples stop early).
 * Without one (tol <= 0) a single block holds all max_iters. */
enum { FIRST_BLOCK = 16 };

typedef struct sk_params {
  double row_mass, col_cap, log_cap, tol;
  int max_iters;
  bool balanced; /* sg_sinkhorn_balanced: every column step scales to the cap */
} sk_params;

/* Saved records of iterations [first_t, first_t + n_slots), laid out
 * [sample][slot][1 + K + M]; blocks are chained newest first. */
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
  double *margin;  /* [S] smallest |colsum / cap - 1| a column step decided on */
  /* K r >= M c: no column can end below its capacity, so the fixed point
   * has every column tight (K r = M c) or over (K r > M c) and the implicit
   * backward treats every column as active, capped or not. */
  bool all_tight;
  sk_block *last; /* unrolled: newest block of saved records */
  /* Forward state per sample, dtype elements: scalings a [S*K], b [S*M],
   * reference potentials U0 [S*K], V0 [S*M], column masses [S*M]; and
   * whether an absorption started a new epoch since the last record. */
  void *a, *b, *U0, *V0, *colsum;
  bool *new_epoch;
} sk_state;

/* Per-thread scratch: one region per OpenMP thread. *per_thread is rounded
 * up to whole pairs of cache lines, so threads never share a line. */
static void *thread_scratch(sg_graph *g, size_t *per_thread) {
  *per_thread = (*per_thread + 127) / 128 * 128;
  return sg_arena_alloc(g, *per_thread * (size_t)omp_get_max_threads());
}

static bool par_worth(int64_t work) {
  return work > SG_PAR_MIN;
}

/* Absorption threshold for b (a then stays below about M r / ABSORB_MIN).
 * The output x - U0 - V0 + log a + log b loses |log a| + |log b| ulps to
 * cancellation, so the scalings are kept within a few powers of ten; an
 * absorption costs about one log-domain iteration and happens only while
 * the potentials drift (K r > M c, or extreme inputs). */
#define ABSORB_MIN_f32 1e-4f
#define ABSORB_MIN_f64 1e-6

#define SK_T float
#define SK(name) name##_f32
#define SK_VEXP sg_vexp_f32
#define SK_ABSORB_MIN ABSORB_MIN_f32
#include "sinkhorn_kernels.h"
#undef SK_T
#undef SK
#undef SK_VEXP
#undef SK_ABSORB_MIN
#define SK_T double
#define SK(name) name##_f64
#define SK_VEXP sg_vexp_f64
#define SK_ABSORB_MIN ABSORB_MIN_f64
#include "sinkhorn_kernels.h"
#undef SK_T
#undef SK
#undef SK_VEXP
#undef SK_ABSORB_MIN

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
static const sg_op sinkhorn_balanced_op = {"sg_sinkhorn_balanced", sinkhorn_backward};

static bool check_args(sg_graph *g, const char *op, const sg_tensor *x, double row_mass,
                       double col_cap, int max_iters, double tol, sg_sinkhorn_grad mode) {
  char b[96];
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

/* Balanced: the row masses must fill the columns exactly, K r = M c. */
static bool check_balanced(sg_graph *g, const sg_tensor *x, double row_mass, double col_cap) {
  double K = (double)x->shape[x->ndim - 2], M = (double)x->shape[x->ndim - 1];
  if (fabs(K * row_mass - M * col_cap) <= 1e-12 * M * col_cap) return true;
  char b[96];
  sg_op_error(g, "sg_sinkhorn_balanced",
              "needs K row_mass = M col_cap, got K %g x %g against M %g x %g (x %s): add rows "
              "of slack mass, or use sg_sinkhorn",
              K, row_mass, M, col_cap, sg_shape_str(x->ndim, x->shape, b));
  return false;
}

static void *zeroed(sg_graph *g, size_t bytes) {
  void *p = sg_arena_alloc(g, bytes + 1);
  if (p) memset(p, 0, bytes);
  return p;
}

static sk_state *state_new(sg_graph *g, const sg_tensor *x, const sk_params *p) {
  sk_state *st = zeroed(g, sizeof *st);
  if (!st) return NULL;
  st->rows = x->shape[x->ndim - 2];
  st->cols = x->shape[x->ndim - 1];
  st->samples = x->numel / (st->rows * st->cols);
  st->p = *p;
  st->all_tight =
      p->balanced || (double)st->rows * p->row_mass >= (double)st->cols * p->col_cap * (1 - 1e-12);
  size_t S = (size_t)st->samples, K = (size_t)st->rows, M = (size_t)st->cols;
  size_t es = sg_dtype_size(x->dtype);
  st->iters = zeroed(g, S * sizeof *st->iters);
  st->excess = zeroed(g, S * sizeof *st->excess);
  st->done = zeroed(g, S * sizeof *st->done);
  st->new_epoch = zeroed(g, S * sizeof *st->new_epoch);
  st->active = zeroed(g, S * M);
  st->margin = sg_arena_alloc(g, S * sizeof *st->margin);
  st->a = zeroed(g, S * K * es);
  st->U0 = zeroed(g, S * K * es);
  st->b = zeroed(g, S * M * es);
  st->V0 = zeroed(g, S * M * es);
  st->colsum = zeroed(g, S * M * es);
  if (sg_graph_failed(g)) return NULL; /* out of memory (reported) */
  for (size_t i = 0; i < S; i++) st->margin[i] = INFINITY;
  return st;
}

/* info: iterations (largest over samples), largest final excess (NaN if any
 * sample's is NaN), converged iff every sample met the tolerance, and how
 * close the column steps' decisions came to the kink. */
static void fill_info(const sk_state *st, sg_dtype dt, sg_sinkhorn_info *info) {
  sg_sinkhorn_info r = {.iters = 0, .col_excess = 0, .converged = true, .kink_margin = INFINITY};
  double near = SG_SINKHORN_NEAR_KINK_ULPS * (dt == SG_F32 ? FLT_EPSILON : DBL_EPSILON);
  for (int64_t s = 0; s < st->samples; s++) {
    if (st->iters[s] > r.iters) r.iters = st->iters[s];
    if (st->excess[s] > r.col_excess || isnan(st->excess[s])) r.col_excess = st->excess[s];
    r.converged = r.converged && st->done[s];
    if (st->margin[s] < r.kink_margin) r.kink_margin = st->margin[s];
    r.near_kink += st->margin[s] < near;
  }
  *info = r;
}

static sg_tensor *sinkhorn(sg_graph *g, const sg_op *op, sg_tensor *x, double row_mass,
                           double col_cap, int max_iters, double tol, sg_sinkhorn_grad mode,
                           sg_sinkhorn_info *info) {
  bool balanced = op == &sinkhorn_balanced_op;
  if (info)
    *info =
        (sg_sinkhorn_info){.iters = 0, .col_excess = NAN, .converged = false, .kink_margin = NAN};
  if (!x || !check_args(g, op->name, x, row_mass, col_cap, max_iters, tol, mode) ||
      (balanced && !check_balanced(g, x, row_mass, col_cap)))
    return NULL;
  sg_tensor *y = sg_empty(g, x->dtype, x->ndim, x->shape);
  if (!y) return NULL;
  sk_params p = {.row_mass = row_mass,
                 .col_cap = col_cap,
                 .log_cap = log(col_cap),
                 .tol = tol,
                 .max_iters = max_iters,
                 .balanced = balanced};
  sk_state *st = state_new(g, x, &p);
  if (!st) return NULL;
  /* Save records only if this op will be recorded (sg_record's condition). */
  bool save = sg_grad_enabled(g) && x->requires_grad && mode == SG_SINKHORN_UNROLLED;
  if (x->dtype == SG_F32)
    forward_f32(g, st, x->data, y->data, save);
  else
    forward_f64(g, st, x->data, y->data, save);
  if (sg_graph_failed(g)) return NULL; /* a record block or scratch was not had */
  if (info) fill_info(st, x->dtype, info);
  sg_node *n = sg_record(g, op, y, 1, &x);
  if (n) {
    n->iarg[0] = mode;
    n->saved = st;
  }
  return y;
}

sg_tensor *(sg_sinkhorn)(sg_graph *g, sg_tensor *x, double row_mass, double col_cap, int max_iters,
                         double tol, sg_sinkhorn_grad mode, sg_sinkhorn_info *info) {
  return sinkhorn(g, &sinkhorn_op, x, row_mass, col_cap, max_iters, tol, mode, info);
}

sg_tensor *(sg_sinkhorn_balanced)(sg_graph *g, sg_tensor *x, double row_mass, double col_cap,
                                  int max_iters, double tol, sg_sinkhorn_grad mode,
                                  sg_sinkhorn_info *info) {
  return sinkhorn(g, &sinkhorn_balanced_op, x, row_mass, col_cap, max_iters, tol, mode, info);
}
