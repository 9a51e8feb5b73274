/* Layer normalisation over the last axis, with optional gain and bias.
 *
 * Forward, per row of width D (two-pass statistics around a pivot, biased
 * variance as PyTorch):
 *   p = x_0, o = sum(x - p) / D, x - mean = (x - p) - o (see CENTER),
 *   var = sum((x - mean)^2) / D, rstd = 1 / sqrt(var + eps)
 *   xhat = (x - mean) * rstd, y = xhat * gain + bias
 * p, o and rstd are saved per row in the arena for the backward:
 *   gh = go * gain (go if no gain)
 *   gx    += rstd * (gh - mean(gh) - xhat * mean(gh * xhat))
 *   ggain += sum over rows of go * xhat,  gbias += sum over rows of go
 * The gain and bias gradients are summed per fixed block of rows into arena
 * scratch, then the blocks are summed in order, so the result does not
 * depend on the thread count. Width 1: var = 0, so xhat = 0, y = bias and
 * the input gradient is exactly 0. Formulas: docs/layers.md. */
#include "sg_kernel.h"
#include "sg_layers.h"

#include <math.h>

/* Vector width of the row reductions: the widest the build targets (a
 * wider GCC vector type would be split, and change the ABI of helpers). */
#if defined(__AVX512F__)
#define VEC_BYTES 64
#elif defined(__AVX__)
#define VEC_BYTES 32
#else
#define VEC_BYTES 16
#endif

enum {
  BLOCK_ROWS = 32, /* rows per partial sum of the parameter gradients */
  STAT_ROWS = 16,  /* most rows per group of the forward and backward passes */
  L1_BYTES = 4096, /* bytes of one input per group: all a group touches stays in L1 */
  COL_CHUNK = 256  /* columns per work item when summing the partial sums */
};

/* Row reductions accumulate whole vectors (GCC vector extensions: VEC_BYTES
 * of lanes), then add the lanes as a pairwise tree of half-vector additions.
 * The order is fixed, so a row's sums depend on the row only; the tree
 * replaces the chain of scalar additions that dominated short rows. */
typedef float vec_f32 __attribute__((vector_size(VEC_BYTES)));
typedef float quarter_f32 __attribute__((vector_size(16))); /* 4 lanes */
typedef double vec_f64 __attribute__((vector_size(VEC_BYTES)));
typedef double quarter_f64 __attribute__((vector_size(16))); /* 2 lanes */

static float lane_total_f32(vec_f32 v) {
#if VEC_BYTES == 64
  typedef float half_f32 __attribute__((vector_size(32)));
  half_f32 h = __builtin_shufflevector(v, v, 0, 1, 2, 3, 4, 5, 6, 7) +
               __builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15);
  quarter_f32 q =
      __builtin_shufflevector(h, h, 0, 1, 2, 3) + __builtin_shufflevector(h, h, 4, 5, 6, 7);
#elif VEC_BYTES == 32
  quarter_f32 q =
      __builtin_shufflevector(v, v, 0, 1, 2, 3) + __builtin_shufflevector(v, v, 4, 5, 6, 7);
#else
  quarter_f32 q = v;
#endif
  return (q[0] + q[2]) + (q[1] + q[3]);
}

static double lane_total_f64(vec_f64 v) {
#if VEC_BYTES == 64
  typedef double half_f64 __attribute__((vector_size(32)));
  half_f64 h =
      __builtin_shufflevector(v, v, 0, 1, 2, 3) + __builtin_shufflevector(v, v, 4, 5, 6, 7);
  quarter_f64 q = __builtin_shufflevector(h, h, 0, 1) + __builtin_shufflevector(h, h, 2, 3);
#elif VEC_BYTES == 32
  quarter_f64 q = __builtin_shufflevector(v, v, 0, 1) + __builtin_shufflevector(v, v, 2, 3);
#else
  quarter_f64 q = v;
#endif
  return q[0] + q[1];
}

/* x - mean, computed as (x - p) - o with p the row's first element and o
 * = mean(x - p): x - p is exact when x and p are within a factor 2, so a
 * row with a large mean and a small spread keeps the digits of its spread
 * (a float32 mean of 1e4 alone is rounded to 1e-3). */
#define CENTER(x, p, o) (((x) - (p)) - (o))

#define DEFINE_ROW_HELPERS(T, S)                                                                   \
  enum { NV_##S = VEC_BYTES / sizeof(T) };                                                         \
  static vec_##S load_##S(const T *p) {                                                            \
    vec_##S v;                                                                                     \
    memcpy(&v, p, sizeof v);                                                                       \
    return v;                                                                                      \
  }                                                                                                \
  /* sum(x - p) */                                                                                 \
  static T row_sum_dev_##S(const T *x, T p, int64_t n) {                                           \
    vec_##S acc = {0};                                                                             \
    int64_t i = 0;                                                                                 \
    for (; i + NV_##S <= n; i += NV_##S) acc += load_##S(x + i) - p;                               \
    T s = lane_total_##S(acc);                                                                     \
    for (; i < n; i++) s += x[i] - p;                                                              \
    return s;                                                                                      \
  }                                                                                                \
  /* sum(((x - p) - o)^2) */                                                                       \
  static T row_sq_dev_##S(const T *x, T p, T o, int64_t n) {                                       \
    vec_##S acc = {0};                                                                             \
    int64_t i = 0;                                                                                 \
    for (; i + NV_##S <= n; i += NV_##S) {                                                         \
      vec_##S d = (load_##S(x + i) - p) - o;                                                       \
      acc += d * d;                                                                                \
    }                                                                                              \
    T s = lane_total_##S(acc);                                                                     \
    for (; i < n; i++) s += CENTER(x[i], p, o) * CENTER(x[i], p, o);                               \
    return s;                                                                                      \
  }                                                                                                \
  /* sums of gh = go * gain (go if gain is NULL) and of gh * (x - mean) */                         \
  static void row_grad_sums_##S(const T *restrict go, const T *restrict gain, const T *restrict x, \
                                T p, T o, int64_t n, T *sum_gh, T *sum_ghxc) {                     \
    vec_##S a = {0}, b = {0};                                                                      \
    int64_t i = 0;                                                                                 \
    for (; i + NV_##S <= n; i += NV_##S) {                                                         \
      vec_##S gh = gain ? load_##S(go + i) * load_##S(gain + i) : load_##S(go + i);                \
      a += gh;                                                                                     \
      b += gh * ((load_##S(x + i) - p) - o);                                                       \
    }                                                                                              \
    T sa = lane_total_##S(a), sb = lane_total_##S(b);                                              \
    for (; i < n; i++) {                                                                           \
      T gh = gain ? go[i] * gain[i] : go[i];                                                       \
      sa += gh;                                                                                    \
      sb += gh * CENTER(x[i], p, o);                                                               \
    }                                                                                              \
    *sum_gh = sa;                                                                                  \
    *sum_ghxc = sb;                                                                                \
  }                                                                                                \
  /* One row of the backward: gx += rstd (gh - a - xhat b) (= if !acc),                            \
   * pg += go xhat and pb += go, each skipped when NULL (gain NULL: gh = go). */                   \
  static void row_backward_##S(T *restrict gx, bool acc, T *restrict pg, T *restrict pb,           \
                               const T *restrict go, const T *restrict x, const T *restrict gain,  \
                               T p, T o, T rstd, T a, T b, int64_t n) {                            \
    if (gx && gain && pg && pb) { /* the usual case, in one pass */                                \
      for (int64_t j = 0; j < n; j++) {                                                            \
        T xh = CENTER(x[j], p, o) * rstd;                                                          \
        gx[j] = (acc ? gx[j] : 0) + rstd * (go[j] * gain[j] - a - xh * b);                         \
        pg[j] += go[j] * xh;                                                                       \
        pb[j] += go[j];                                                                            \
      }                                                                                            \
      return;                                                                                      \
    }                                                                                              \
    if (gx && gain)                                                                                \
      for (int64_t j = 0; j < n; j++)                                                              \
        gx[j] = (acc ? gx[j] : 0) + rstd * (go[j] * gain[j] - a - CENTER(x[j], p, o) * rstd * b);  \
    else if (gx)                                                                                   \
      for (int64_t j = 0; j < n; j++)                                                              \
        gx[j] = (acc ? gx[j] : 0) + rstd * (go[j] - a - CENTER(x[j], p, o) * rstd * b);            \
    if (pg)                                                                                        \
      for (int64_t j = 0; j < n; j++) pg[j] += go[j] * (CENTER(x[j], p, o) * rstd);                \
    if (pb)                                                                                        \
      for (int64_t j = 0; j < n; j++) pb[j] += go[j];                                              \
  }

SG_FOR_BOTH_TYPES(DEFINE_ROW_HELPERS)

#define ROW_SUM_DEV(x, p, n) SG_TYPED(row_sum_dev, x)(x, p, n)
#define ROW_SQ_DEV(x, p, o, n) SG_TYPED(row_sq_dev, x)(x, p, o, n)
#define ROW_GRAD_SUMS(go, gain, x, p, o, n, a, b)                                                  \
  SG_TYPED(row_grad_sums, go)(go, gain, x, p, o, n, a, b)
#define ROW_BACKWARD(gx, acc, pg, pb, go, x, gain, p, o, r, a, b, n)                               \
  SG_TYPED(row_backward, go)(gx, acc, pg, pb, go, x, gain, p, o, r, a, b, n)

static int64_t min64(int64_t a, int64_t b) {
  return a < b ? a : b;
}

/* Saved per row, in the tensor's dtype: the pivot (the row's first
 * element), the mean's offset from it, and rstd (see CENTER). */
typedef struct ln_saved {
  void *pivot, *offset, *rstd;
} ln_saved;

/* Rows per group of the forward and backward passes: up to STAT_ROWS short
 * rows, fewer long ones so that the group is still in L1 on the next pass. */
static int64_t group_rows(int64_t D, size_t esz) {
  int64_t r = L1_BYTES / (D * (int64_t)esz);
  return r < 1 ? 1 : r > STAT_ROWS ? STAT_ROWS : r;
}

/* Rows go by groups: each pass over a group (row sums, squared deviations,
 * 1/sqrt, outputs) has independent iterations, so the latency of one row's
 * reductions overlaps the next row's instead of adding up. */
static void ln_forward(const sg_tensor *xt, const sg_tensor *gt, const sg_tensor *bt, sg_tensor *yt,
                       double eps, int64_t rows, int64_t D, ln_saved *sv) {
  int64_t grp = group_rows(D, sg_dtype_size(xt->dtype));
  int64_t total = xt->numel, n_groups = (rows + grp - 1) / grp;
  SG_DISPATCH(xt->dtype, T, {
    const T *x = xt->data, *gain = gt ? gt->data : NULL, *bias = bt ? bt->data : NULL;
    T *y = yt->data, *pivots = sv->pivot, *offsets = sv->offset, *rstds = sv->rstd;
    SG_PARALLEL_IF(
        total > SG_PAR_MIN, for (int64_t gi = 0; gi < n_groups; gi++) {
          int64_t r0 = gi * grp, nr = min64(rows - r0, grp);
          T *piv = pivots + r0, *off = offsets + r0, *rstd = rstds + r0;
          for (int64_t i = 0; i < nr; i++) piv[i] = x[(r0 + i) * D];
          for (int64_t i = 0; i < nr; i++) off[i] = ROW_SUM_DEV(x + (r0 + i) * D, piv[i], D) / (T)D;
          for (int64_t i = 0; i < nr; i++)
            rstd[i] = ROW_SQ_DEV(x + (r0 + i) * D, piv[i], off[i], D) / (T)D;
          for (int64_t i = 0; i < nr; i++) rstd[i] = 1 / sqrt(rstd[i] + (T)eps);
          for (int64_t i = 0; i < nr; i++) {
            const T *xr = x + (r0 + i) * D;
            T *yr = y + (r0 + i) * D, p = piv[i], o = off[i], rs = rstd[i];
            if (gain && bias)
              for (int64_t j = 0; j < D; j++) yr[j] = CENTER(xr[j], p, o) * rs * gain[j] + bias[j];
            else if (gain)
              for (int64_t j = 0; j < D; j++) yr[j] = CENTER(xr[j], p, o) * rs * gain[j];
            else if (bias)
              for (int64_t j = 0; j < D; j++) yr[j] = CENTER(xr[j], p, o) * rs + bias[j];
            else
              for (int64_t j = 0; j < D; j++) yr[j] = CENTER(xr[j], p, o) * rs;
          }
        });
  });
}

/* Backward over blocks of BLOCK_ROWS rows: the input gradient row by row,
 * and each block's partial sums of go * xhat (pg) and go (pb), either of
 * which may be NULL when not needed. */
static void ln_backward_blocks(const sg_tensor *xt, const sg_tensor *gt, const sg_tensor *got,
                               sg_tensor *gxt, bool acc, const ln_saved *sv, int64_t rows,
                               int64_t D, void *pg_buf, void *pb_buf) {
  int64_t n_blocks = (rows + BLOCK_ROWS - 1) / BLOCK_ROWS, total = xt->numel;
  int64_t grp = group_rows(2 * D, sg_dtype_size(xt->dtype)); /* reads go and x */
  SG_DISPATCH(xt->dtype, T, {
    const T *x = xt->data, *gain = gt ? gt->data : NULL, *go = got->data;
    const T *pivots = sv->pivot, *offsets = sv->offset, *rstds = sv->rstd;
    T *gx = gxt ? gxt->data : NULL, *pg = pg_buf, *pb = pb_buf;
    T inv_d = 1 / (T)D;
    SG_PARALLEL_IF(
        total > SG_PAR_MIN, for (int64_t blk = 0; blk < n_blocks; blk++) {
          T *pgb = pg ? pg + blk * D : NULL, *pbb = pb ? pb + blk * D : NULL;
          if (pgb) memset(pgb, 0, (size_t)D * sizeof *pgb);
          if (pbb) memset(pbb, 0, (size_t)D * sizeof *pbb);
          int64_t blk_end = min64(rows, (blk + 1) * BLOCK_ROWS);
          /* by groups: the group's row sums first (independent rows overlap),
           * then its rows, in order */
          for (int64_t r0 = blk * BLOCK_ROWS; r0 < blk_end; r0 += grp) {
            int64_t nr = min64(blk_end - r0, grp);
            T a[STAT_ROWS] = {0}, b[STAT_ROWS] = {0};
            for (int64_t i = 0; gx && i < nr; i++) {
              int64_t r = r0 + i;
              T sum_gh, sum_ghxc;
              ROW_GRAD_SUMS(go + r * D, gain, x + r * D, pivots[r], offsets[r], D, &sum_gh,
                            &sum_ghxc);
              /* mean(gh * xhat) = rstd * mean(gh * (x - mean)) */
              a[i] = sum_gh * inv_d, b[i] = sum_ghxc * inv_d * rstds[r];
            }
            for (int64_t i = 0; i < nr; i++) {
              int64_t r = r0 + i;
              ROW_BACKWARD(gx ? gx + r * D : NULL, acc, pgb, pbb, go + r * D, x + r * D, gain,
                           pivots[r], offsets[r], rstds[r], a[i], b[i], D);
            }
          }
        });
  });
}

/* grad[j] += sum over blocks of partial[blk][j], blocks in order (= if
 * !acc). */
static void sum_blocks(sg_tensor *grad, bool acc, const void *partial, int64_t n_blocks,
                       int64_t D) {
  int64_t n_chunks = (D + COL_CHUNK - 1) / COL_CHUNK, total = n_blocks * D;
  SG_DISPATCH(grad->dtype, T, {
    const T *p = partial;
    T *gd = grad->data;
    SG_PARALLEL_IF(
        total > SG_PAR_MIN, for (int64_t c = 0; c < n_chunks; c++) {
          int64_t j0 = c * COL_CHUNK, j1 = min64(D, j0 + COL_CHUNK);
          if (!acc)
            for (int64_t j = j0; j < j1; j++) gd[j] = 0;
          for (int64_t blk = 0; blk < n_blocks; blk++)
            for (int64_t j = j0; j < j1; j++) gd[j] += p[blk * D + j];
        });
  });
}

static void layer_norm_backward(sg_graph *g, sg_node *n) {
  sg_tensor *x = n->in[0], *gain = n->in[1];
  /* Fetched in the order they are written below (x, gain, bias): a tensor
   * passed twice has its second contribution added to the first. */
  bool acc_x, acc_gain, acc_bias;
  sg_tensor *gx = sg_grad_dest(g, x, &acc_x), *ggain = sg_grad_dest(g, gain, &acc_gain),
            *gbias = sg_grad_dest(g, n->in[2], &acc_bias);
  int64_t rows = n->iarg[0], D = n->iarg[1];
  if (rows * D == 0) return;
  int64_t n_blocks = (rows + BLOCK_ROWS - 1) / BLOCK_ROWS;
  size_t part_bytes = (size_t)(n_blocks * D) * sg_dtype_size(x->dtype);
  void *pg = ggain ? sg_arena_alloc(g, part_bytes) : NULL;
  void *pb = gbias ? sg_arena_alloc(g, part_bytes) : NULL;
  if ((ggain && !pg) || (gbias && !pb)) return; /* out of memory: the graph failed */
  ln_backward_blocks(x, gain, n->out->grad, gx, acc_x, n->saved, rows, D, pg, pb);
  if (ggain) sum_blocks(ggain, acc_gain, pg, n_blocks, D);
  if (gbias) sum_blocks(gbias, acc_bias, pb, n_blocks, D);
}

static const sg_op layer_norm_op = {"sg_layer_norm", layer_norm_backward};

/* gain and bias must be [D] vectors of x's dtype. */
static bool param_ok(sg_graph *g, const sg_tensor *x, const sg_tensor *p, const char *what) {
  if (!p) return true;
  int64_t D = x->shape[x->ndim - 1];
  if (p->ndim != 1 || p->shape[0] != D || p->dtype != x->dtype) {
    char b0[96], b1[96];
    sg_op_error(g, "sg_layer_norm", "%s %s %s must be a [%lld] vector of %s to match x %s", what,
                sg_dtype_name(p->dtype), sg_shape_str(p->ndim, p->shape, b0), (long long)D,
                sg_dtype_name(x->dtype), sg_shape_str(x->ndim, x->shape, b1));
    return false;
  }
  return true;
}

sg_tensor *(sg_layer_norm)(sg_graph *g, sg_tensor *x, sg_tensor *gain, sg_tensor *bias,
                           double eps) {
  if (!x) return NULL;
  char b[96];
  if (x->ndim < 1) {
    sg_op_error(g, "sg_layer_norm", "x must have at least one axis, got shape %s",
                sg_shape_str(x->ndim, x->shape, b));
    return NULL;
  }
  if (!(eps >= 0) || !isfinite(eps)) {
    sg_op_error(g, "sg_layer_norm", "eps must be finite and >= 0, got %g (x %s)", eps,
                sg_shape_str(x->ndim, x->shape, b));
    return NULL;
  }
  if (!param_ok(g, x, gain, "gain") || !param_ok(g, x, bias, "bias")) return NULL;
  sg_tensor *y = sg_empty(g, x->dtype, x->ndim, x->shape);
  if (!y) return NULL;
  int64_t D = x->shape[x->ndim - 1], rows = D ? x->numel / D : 0;
  size_t stat_bytes = (size_t)rows * sg_dtype_size(x->dtype);
  ln_saved *sv = sg_arena_alloc(g, sizeof *sv);
  if (!sv) return NULL;
  sv->pivot = sg_arena_alloc(g, stat_bytes);
  sv->offset = sg_arena_alloc(g, stat_bytes);
  sv->rstd = sg_arena_alloc(g, stat_bytes);
  if (!sv->pivot || !sv->offset || !sv->rstd) return NULL;
  if (rows * D > 0) ln_forward(x, gain, bias, y, eps, rows, D, sv);
  sg_tensor *in[3] = {x, gain, bias};
  sg_node *n = sg_record(g, &layer_norm_op, y, 3, in);
  if (n) {
    n->iarg[0] = rows;
    n->iarg[1] = D;
    n->farg[0] = eps;
    n->saved = sv;
  }
  return y;
}
