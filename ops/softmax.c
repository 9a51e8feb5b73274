/* Softmax, log-softmax and Gumbel-Softmax along any axis.
 *
 * A tensor is viewed as [outer, n, inner] around the softmax axis (n
 * entries per slice, slices inner apart). Forward kernels are fused: one
 * pass for the slice maximum, one that writes x - max and exponentiates it
 * with SLEEF's vector exp, one that sums and scales. When the axis is the
 * last one (inner == 1), short rows are grouped into tiles so that one
 * vector-exp call covers many rows.
 *
 * Backward formulas (go = output gradient, y = output):
 *   softmax:      gx += y * (go - sum(go * y))
 *   log_softmax:  gx += go - exp(y) * sum(go)
 *   gumbel:       gx += (1/tau) * s * (go - sum(go * s)), s the soft sample
 * Masked entries (x = -inf, so y = 0 or y = -inf) are left out of the sums
 * and get a zero gradient, so a NaN or infinite go there cannot leak into
 * the rest of the slice. Every slice is reduced by one thread in a fixed
 * order: results do not depend on the thread count. Formulas: docs/layers.md. */
#include "sg_kernel.h"
#include "sg_layers.h"

#include <math.h>

enum {
  TILE_ELEMS = 2048,   /* elements per tile of short rows (one vector-exp call) */
  MAX_TILE_ROWS = 256, /* rows per tile, bounds the per-tile stack arrays */
  COL_TILE = 256,      /* columns per work item when the axis is not the last */
  LANES = 16           /* independent accumulators in row reductions */
};

/* ---- row helpers ----------------------------------------------------------
 * Reductions keep LANES partial results so that the compiler can vectorise
 * them without reassociating; the order is fixed, so results are exact
 * functions of the row. */

#define DEFINE_ROW_HELPERS(T, S)                                                                   \
  static T row_max_##S(const T *x, int64_t n) {                                                    \
    T m = x[0];                                                                                    \
    int64_t i = 0;                                                                                 \
    if (n >= LANES) {                                                                              \
      T acc[LANES];                                                                                \
      for (int l = 0; l < LANES; l++) acc[l] = x[l];                                               \
      for (i = LANES; i + LANES <= n; i += LANES)                                                  \
        for (int l = 0; l < LANES; l++) acc[l] = x[i + l] > acc[l] ? x[i + l] : acc[l];            \
      for (int l = 0; l < LANES; l++) m = acc[l] > m ? acc[l] : m;                                 \
    }                                                                                              \
    for (; i < n; i++) m = x[i] > m ? x[i] : m;                                                    \
    return m;                                                                                      \
  }                                                                                                \
  static T row_sum_##S(const T *x, int64_t n) {                                                    \
    T acc[LANES] = {0}, s = 0;                                                                     \
    int64_t i = 0;                                                                                 \
    for (; i + LANES <= n; i += LANES)                                                             \
      for (int l = 0; l < LANES; l++) acc[l] += x[i + l];                                          \
    for (int l = 0; l < LANES; l++) s += acc[l];                                                   \
    for (; i < n; i++) s += x[i];                                                                  \
    return s;                                                                                      \
  }                                                                                                \
  /* sum(go * y) over the entries with y != 0 (softmax: masked or underflowed). */                 \
  static T row_dot_live_##S(const T *go, const T *y, int64_t n) {                                  \
    T acc[LANES] = {0}, s = 0;                                                                     \
    int64_t i = 0;                                                                                 \
    for (; i + LANES <= n; i += LANES)                                                             \
      for (int l = 0; l < LANES; l++) acc[l] += y[i + l] != 0 ? go[i + l] * y[i + l] : 0;          \
    for (int l = 0; l < LANES; l++) s += acc[l];                                                   \
    for (; i < n; i++) s += y[i] != 0 ? go[i] * y[i] : 0;                                          \
    return s;                                                                                      \
  }                                                                                                \
  /* sum(go) over the entries with y != -inf (log_softmax: not masked). */                         \
  static T row_sum_live_##S(const T *go, const T *y, int64_t n) {                                  \
    T acc[LANES] = {0}, s = 0;                                                                     \
    int64_t i = 0;                                                                                 \
    for (; i + LANES <= n; i += LANES)                                                             \
      for (int l = 0; l < LANES; l++) acc[l] += y[i + l] != -INFINITY ? go[i + l] : 0;             \
    for (int l = 0; l < LANES; l++) s += acc[l];                                                   \
    for (; i < n; i++) s += y[i] != -INFINITY ? go[i] : 0;                                         \
    return s;                                                                                      \
  }

SG_FOR_BOTH_TYPES(DEFINE_ROW_HELPERS)

#define ROW_MAX(x, n) SG_TYPED(row_max, x)(x, n)
#define ROW_SUM(x, n) SG_TYPED(row_sum, x)(x, n)
#define ROW_DOT_LIVE(go, y, n) SG_TYPED(row_dot_live, go)(go, y, n)
#define ROW_SUM_LIVE(go, y, n) SG_TYPED(row_sum_live, go)(go, y, n)
#define VEXP(x, y, n) SG_TYPED(sg_vexp, y)(x, y, n)

/* ---- layout -------------------------------------------------------------- */

typedef struct axis_layout {
  int64_t outer, n, inner;
} axis_layout;

static axis_layout layout_of(const sg_tensor *t, int axis) {
  axis_layout L = {1, t->shape[axis], 1};
  for (int d = 0; d < axis; d++) L.outer *= t->shape[d];
  for (int d = axis + 1; d < t->ndim; d++) L.inner *= t->shape[d];
  return L;
}

/* Rows per tile of the last-axis kernels: enough short rows to fill a tile. */
static int64_t rows_per_tile(int64_t n) {
  if (n >= TILE_ELEMS / 2) return 1;
  int64_t r = TILE_ELEMS / n;
  return r < MAX_TILE_ROWS ? r : MAX_TILE_ROWS;
}

static int64_t min64(int64_t a, int64_t b) {
  return a < b ? a : b;
}

/* ---- forward ------------------------------------------------------------- */

/* Softmax (log_mode false) or log-softmax (true) of x into y. y may alias x
 * for softmax only (log-softmax reads x after y holds the exponentials). */
static void forward_last_axis(const sg_tensor *xt, sg_tensor *yt, axis_layout L, bool log_mode) {
  int64_t rows = L.outer * L.inner, n = L.n, rpt = rows_per_tile(n);
  int64_t n_tiles = (rows + rpt - 1) / rpt, total = rows * n;
  SG_DISPATCH(xt->dtype, T, {
    const T *x = xt->data;
    T *y = yt->data;
    SG_PARALLEL_IF(
        total > SG_PAR_MIN, for (int64_t t = 0; t < n_tiles; t++) {
          int64_t r0 = t * rpt, r1 = min64(rows, r0 + rpt);
          T mx[MAX_TILE_ROWS];
          for (int64_t r = r0; r < r1; r++) {
            const T *xr = x + r * n;
            T *yr = y + r * n;
            T m = ROW_MAX(xr, n);
            mx[r - r0] = m;
            for (int64_t j = 0; j < n; j++) yr[j] = xr[j] - m;
          }
          VEXP(y + r0 * n, y + r0 * n, (r1 - r0) * n);
          for (int64_t r = r0; r < r1; r++) {
            const T *xr = x + r * n;
            T *yr = y + r * n;
            T s = ROW_SUM(yr, n);
            if (log_mode) {
              /* (x - max) - log s, not x - (max + log s): the latter rounds
               * max + log s to the ulp of max (1e-3 at logits of 1e4) */
              T m = mx[r - r0], log_s = log(s);
              for (int64_t j = 0; j < n; j++) yr[j] = (xr[j] - m) - log_s;
            } else {
              T inv = 1 / s;
              for (int64_t j = 0; j < n; j++) yr[j] *= inv;
            }
          }
        });
  });
}

/* The same along an axis that is not the last: each work item is one outer
 * index and up to COL_TILE neighbouring columns, reduced together. */
static void forward_strided(const sg_tensor *xt, sg_tensor *yt, axis_layout L, bool log_mode) {
  int64_t n = L.n, inner = L.inner, col_tiles = (inner + COL_TILE - 1) / COL_TILE;
  int64_t n_items = L.outer * col_tiles, total = L.outer * n * inner;
  SG_DISPATCH(xt->dtype, T, {
    const T *x = xt->data;
    T *y = yt->data;
    SG_PARALLEL_IF(
        total > SG_PAR_MIN, for (int64_t it = 0; it < n_items; it++) {
          int64_t o = it / col_tiles, j0 = (it % col_tiles) * COL_TILE,
                  w = min64(COL_TILE, inner - j0);
          const T *xs = x + o * n * inner + j0;
          T *ys = y + o * n * inner + j0;
          T mx[COL_TILE], s[COL_TILE];
          for (int64_t j = 0; j < w; j++) mx[j] = xs[j], s[j] = 0;
          for (int64_t i = 1; i < n; i++)
            for (int64_t j = 0; j < w; j++)
              mx[j] = xs[i * inner + j] > mx[j] ? xs[i * inner + j] : mx[j];
          for (int64_t i = 0; i < n; i++) {
            T *yi = ys + i * inner;
            for (int64_t j = 0; j < w; j++) yi[j] = xs[i * inner + j] - mx[j];
            VEXP(yi, yi, w);
            for (int64_t j = 0; j < w; j++) s[j] += yi[j];
          }
          if (log_mode) {
            for (int64_t j = 0; j < w; j++) s[j] = log(s[j]); /* as in forward_last_axis */
            for (int64_t i = 0; i < n; i++)
              for (int64_t j = 0; j < w; j++)
                ys[i * inner + j] = (xs[i * inner + j] - mx[j]) - s[j];
          } else {
            for (int64_t j = 0; j < w; j++) s[j] = 1 / s[j];
            for (int64_t i = 0; i < n; i++)
              for (int64_t j = 0; j < w; j++) ys[i * inner + j] *= s[j];
          }
        });
  });
}

static void forward(const sg_tensor *x, sg_tensor *y, axis_layout L, bool log_mode) {
  if (x->numel == 0) return;
  if (L.inner == 1)
    forward_last_axis(x, y, L, log_mode);
  else
    forward_strided(x, y, L, log_mode);
}

/* ---- backward ------------------------------------------------------------ */

/* gx += scale * y * (go - sum(go * y)), zero where y == 0. */
static void softmax_grad(const sg_tensor *yt, const sg_tensor *got, sg_tensor *gxt, bool accumulate,
                         axis_layout L, double scale) {
  int64_t n = L.n, inner = L.inner, total = yt->numel;
  if (total == 0) return;
  SG_DISPATCH(yt->dtype, T, {
    const T *y = yt->data, *go = got->data;
    T *gx = gxt->data, sc = (T)scale;
    if (inner == 1) {
      int64_t rows = L.outer;
      SG_PARALLEL_IF(
          total > SG_PAR_MIN, for (int64_t r = 0; r < rows; r++) {
            const T *yr = y + r * n, *gr = go + r * n;
            T *gxr = gx + r * n;
            T dot = ROW_DOT_LIVE(gr, yr, n);
            for (int64_t j = 0; j < n; j++)
              gxr[j] = (accumulate ? gxr[j] : 0) + (yr[j] != 0 ? sc * yr[j] * (gr[j] - dot) : 0);
          });
    } else {
      int64_t col_tiles = (inner + COL_TILE - 1) / COL_TILE, n_items = L.outer * col_tiles;
      SG_PARALLEL_IF(
          total > SG_PAR_MIN, for (int64_t it = 0; it < n_items; it++) {
            int64_t o = it / col_tiles, j0 = (it % col_tiles) * COL_TILE;
            int64_t w = min64(COL_TILE, inner - j0), base = o * n * inner + j0;
            T dot[COL_TILE] = {0};
            for (int64_t i = 0; i < n; i++)
              for (int64_t j = 0; j < w; j++) {
                int64_t e = base + i * inner + j;
                dot[j] += y[e] != 0 ? go[e] * y[e] : 0;
              }
            for (int64_t i = 0; i < n; i++)
              for (int64_t j = 0; j < w; j++) {
                int64_t e = base + i * inner + j;
                gx[e] = (accumulate ? gx[e] : 0) + (y[e] != 0 ? sc * y[e] * (go[e] - dot[j]) : 0);
              }
          });
    }
  });
}

/* gx += go - exp(y) * sum(go) (= if !accumulate), zero where y == -inf. exp(y) is recomputed
 * with the vector exp into a per-thread stack buffer, a tile at a time. */
static void log_softmax_grad_last_axis(const sg_tensor *yt, const sg_tensor *got, sg_tensor *gxt,
                                       bool accumulate, axis_layout L) {
  int64_t rows = L.outer, n = L.n, rpt = rows_per_tile(n), total = rows * n;
  int64_t n_tiles = (rows + rpt - 1) / rpt;
  SG_DISPATCH(yt->dtype, T, {
    const T *y = yt->data, *go = got->data;
    T *gx = gxt->data;
    SG_PARALLEL_IF(
        total > SG_PAR_MIN, for (int64_t t = 0; t < n_tiles; t++) {
          int64_t r0 = t * rpt, r1 = min64(rows, r0 + rpt);
          T gsum[MAX_TILE_ROWS], ebuf[TILE_ELEMS];
          for (int64_t r = r0; r < r1; r++) gsum[r - r0] = ROW_SUM_LIVE(go + r * n, y + r * n, n);
          /* A tile is either whole short rows (one chunk) or one long row. */
          for (int64_t e0 = r0 * n; e0 < r1 * n; e0 += TILE_ELEMS) {
            int64_t len = min64(TILE_ELEMS, r1 * n - e0);
            VEXP(y + e0, ebuf, len);
            for (int64_t e = e0; e < e0 + len;) {
              int64_t r = e / n, end = min64((r + 1) * n, e0 + len);
              T s = gsum[r - r0];
              for (; e < end; e++)
                gx[e] =
                    (accumulate ? gx[e] : 0) + (y[e] != -INFINITY ? go[e] - ebuf[e - e0] * s : 0);
            }
          }
        });
  });
}

static void log_softmax_grad_strided(const sg_tensor *yt, const sg_tensor *got, sg_tensor *gxt,
                                     bool accumulate, axis_layout L) {
  int64_t n = L.n, inner = L.inner, col_tiles = (inner + COL_TILE - 1) / COL_TILE;
  int64_t n_items = L.outer * col_tiles, total = yt->numel;
  SG_DISPATCH(yt->dtype, T, {
    const T *y = yt->data, *go = got->data;
    T *gx = gxt->data;
    SG_PARALLEL_IF(
        total > SG_PAR_MIN, for (int64_t it = 0; it < n_items; it++) {
          int64_t o = it / col_tiles, j0 = (it % col_tiles) * COL_TILE;
          int64_t w = min64(COL_TILE, inner - j0), base = o * n * inner + j0;
          T gsum[COL_TILE] = {0}, ebuf[COL_TILE];
          for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < w; j++) {
              int64_t e = base + i * inner + j;
              gsum[j] += y[e] != -INFINITY ? go[e] : 0;
            }
          for (int64_t i = 0; i < n; i++) {
            int64_t e0 = base + i * inner;
            VEXP(y + e0, ebuf, w);
            for (int64_t j = 0; j < w; j++)
              gx[e0 + j] = (accumulate ? gx[e0 + j] : 0) +
                           (y[e0 + j] != -INFINITY ? go[e0 + j] - ebuf[j] * gsum[j] : 0);
          }
        });
  });
}

static void softmax_backward(sg_graph *g, sg_node *n) {
  bool acc;
  sg_tensor *gx = sg_grad_dest(g, n->in[0], &acc);
  axis_layout L = {n->iarg[0], n->iarg[1], n->iarg[2]};
  if (gx) softmax_grad(n->out, n->out->grad, gx, acc, L, 1.0);
}

static void log_softmax_backward(sg_graph *g, sg_node *n) {
  bool acc;
  sg_tensor *gx = sg_grad_dest(g, n->in[0], &acc);
  axis_layout L = {n->iarg[0], n->iarg[1], n->iarg[2]};
  if (!gx || n->out->numel == 0) return;
  if (L.inner == 1)
    log_softmax_grad_last_axis(n->out, n->out->grad, gx, acc, L);
  else
    log_softmax_grad_strided(n->out, n->out->grad, gx, acc, L);
}

static const sg_op softmax_op = {"sg_softmax", softmax_backward};
static const sg_op log_softmax_op = {"sg_log_softmax", log_softmax_backward};

static void save_layout(sg_node *n, axis_layout L) {
  n->iarg[0] = L.outer;
  n->iarg[1] = L.n;
  n->iarg[2] = L.inner;
}

static sg_tensor *softmax_common(sg_graph *g, const sg_op *op, sg_tensor *x, int axis,
                                 bool log_mode) {
  if (!x) return NULL;
  int ax = sg_norm_axis(g, op->name, x, axis);
  if (ax < 0) return NULL;
  sg_tensor *y = sg_empty(g, x->dtype, x->ndim, x->shape);
  if (!y) return NULL;
  axis_layout L = layout_of(x, ax);
  forward(x, y, L, log_mode);
  sg_node *n = sg_record(g, op, y, 1, &x);
  if (n) save_layout(n, L);
  return y;
}

sg_tensor *(sg_softmax)(sg_graph *g, sg_tensor *x, int axis) {
  return softmax_common(g, &softmax_op, x, axis, false);
}

sg_tensor *(sg_log_softmax)(sg_graph *g, sg_tensor *x, int axis) {
  return softmax_common(g, &log_softmax_op, x, axis, true);
}

/* ---- Gumbel-Softmax ------------------------------------------------------ */

static void gumbel_backward(sg_graph *g, sg_node *n) {
  const sg_tensor *soft = n->saved; /* the output itself unless hard */
  axis_layout L = {n->iarg[0], n->iarg[1], n->iarg[2]};
  double inv_tau = 1.0 / n->farg[0];
  /* d/dlogits = d/dnoise: both enter as logits + noise. */
  for (int i = 0; i < n->n_in; i++) {
    sg_tensor *gi = sg_grad_buf(g, n->in[i]);
    if (gi) softmax_grad(soft, n->out->grad, gi, true, L, inv_tau);
  }
}

static const sg_op gumbel_op = {"sg_gumbel_softmax", gumbel_backward};

/* z = (logits + G) / tau, with G from noise or drawn from rng in flat order. */
static void perturb(const sg_tensor *lt, const sg_tensor *nt, sg_rng *rng, double tau,
                    sg_tensor *zt) {
  int64_t cnt = lt->numel;
  SG_DISPATCH(lt->dtype, T, {
    const T *l = lt->data;
    T *z = zt->data, tt = (T)tau;
    if (nt) {
      const T *G = nt->data;
      SG_PARALLEL_IF(cnt > SG_PAR_MIN,
                     for (int64_t i = 0; i < cnt; i++) z[i] = (l[i] + G[i]) / tt;);
    } else {
      for (int64_t i = 0; i < cnt; i++) z[i] = (l[i] + (T)sg_rng_gumbel(rng)) / tt;
    }
  });
}

/* out = one-hot of the argmax of soft along the axis (ties: lowest index). */
static void one_hot_argmax(const sg_tensor *st, sg_tensor *ot, axis_layout L) {
  int64_t n = L.n, inner = L.inner, cols = L.outer * inner, total = st->numel;
  SG_DISPATCH(st->dtype, T, {
    const T *s = st->data;
    T *o = ot->data;
    SG_PARALLEL_IF(
        total > SG_PAR_MIN, for (int64_t c = 0; c < cols; c++) {
          int64_t base = (c / inner) * n * inner + c % inner, best = 0;
          for (int64_t i = 1; i < n; i++)
            if (s[base + i * inner] > s[base + best * inner]) best = i;
          for (int64_t i = 0; i < n; i++) o[base + i * inner] = i == best ? 1 : 0;
        });
  });
}

static bool gumbel_args_ok(sg_graph *g, const sg_tensor *logits, double tau, const sg_tensor *noise,
                           const sg_rng *rng) {
  char b0[96], b1[96];
  if (!(tau > 0) || !isfinite(tau)) {
    sg_op_error(g, "sg_gumbel_softmax", "tau must be positive and finite, got %g (logits %s)", tau,
                sg_shape_str(logits->ndim, logits->shape, b0));
    return false;
  }
  if (!noise && !rng) {
    sg_op_error(g, "sg_gumbel_softmax",
                "needs Gumbel noise or a generator to draw it: both are NULL (logits %s)",
                sg_shape_str(logits->ndim, logits->shape, b0));
    return false;
  }
  if (noise && (!sg_same_shape(noise, logits) || noise->dtype != logits->dtype)) {
    sg_op_error(g, "sg_gumbel_softmax", "noise %s %s must match logits %s %s",
                sg_dtype_name(noise->dtype), sg_shape_str(noise->ndim, noise->shape, b0),
                sg_dtype_name(logits->dtype), sg_shape_str(logits->ndim, logits->shape, b1));
    return false;
  }
  return true;
}

sg_tensor *(sg_gumbel_softmax)(sg_graph *g, sg_tensor *logits, double tau, int axis, bool hard,
                               sg_tensor *noise, sg_rng *rng) {
  if (!logits) return NULL;
  int ax = sg_norm_axis(g, "sg_gumbel_softmax", logits, axis);
  if (ax < 0 || !gumbel_args_ok(g, logits, tau, noise, rng)) return NULL;
  axis_layout L = layout_of(logits, ax);
  sg_tensor *soft = sg_empty(g, logits->dtype, logits->ndim, logits->shape);
  if (!soft) return NULL;
  perturb(logits, noise, rng, tau, soft);
  forward(soft, soft, L, false); /* softmax in place */
  sg_tensor *out = soft;
  if (hard) {
    out = sg_empty(g, logits->dtype, logits->ndim, logits->shape);
    if (!out) return NULL;
    one_hot_argmax(soft, out, L);
  }
  sg_tensor *in[2] = {logits, noise};
  sg_node *n = sg_record(g, &gumbel_op, out, noise ? 2 : 1, in);
  if (n) {
    save_layout(n, L);
    n->farg[0] = tau;
    n->saved = soft;
  }
  return out;
}
