/* Reductions over one axis (sum, mean, max, logsumexp) and over everything
 * (sum_all, mean_all), each with its forward and backward side by side.
 *
 * The input is viewed as [outer, n, inner] with the reduced axis in the
 * middle; outputs are [outer, inner] (whatever keepdim says about the shape,
 * the memory layout is the same). Loops run along the contiguous inner axis.
 *
 * Backward formulas (go = gradient of the output, y = output):
 *   sum:       ga[o,k,j] += go[o,j]
 *   mean:      ga[o,k,j] += go[o,j] / n
 *   max:       ga[o,k*,j] += go[o,j] at the first maximal k* (saved index)
 *   logsumexp: ga[o,k,j] += go[o,j] * exp(a[o,k,j] - y[o,j])
 *              (0 where the whole slice is -inf, where y is -inf)
 *   sum_all:   ga += go,   mean_all: ga += go / numel
 *
 * Determinism: every output is computed by one thread in a fixed order. Long
 * contiguous sums (rows when inner == 1, and sum_all) are cut into chunks of
 * a fixed size whose partial sums are added in order, so a row may be split
 * across threads without the result depending on the thread count. */
#include "sg_ops.h"
#include "sg_kernel.h"

/* Elements per chunk of a contiguous sum and per parallel work item. */
enum { CHUNK = 4096, TILE = 4096 };
/* Independent accumulators in a contiguous sum: lets the compiler vectorise
 * (it may not reassociate a single running sum) with a fixed order. */
enum { LANES = 16 };

typedef struct rview {
  int64_t outer, n, inner;
} rview;

static int64_t ceil_div(int64_t a, int64_t b) {
  return (a + b - 1) / b;
}
static int64_t min64(int64_t a, int64_t b) {
  return a < b ? a : b;
}

/* Validates the axis and fills the [outer, n, inner] view and the output
 * shape. Returns false after reporting (or silently for a NULL input). */
static bool reduce_setup(sg_graph *g, const char *op, const sg_tensor *a, int axis, bool keepdim,
                         rview *v, int *out_ndim, int64_t *out_shape) {
  if (!a) return false;
  int ax = sg_norm_axis(g, op, a, axis);
  if (ax < 0) return false;
  v->outer = v->inner = 1;
  for (int d = 0; d < ax; d++) v->outer *= a->shape[d];
  for (int d = ax + 1; d < a->ndim; d++) v->inner *= a->shape[d];
  v->n = a->shape[ax];
  int nd = 0;
  for (int d = 0; d < a->ndim; d++) {
    if (d != ax)
      out_shape[nd++] = a->shape[d];
    else if (keepdim)
      out_shape[nd++] = 1;
  }
  *out_ndim = nd;
  return true;
}

/* ---- contiguous chunked sums ------------------------------------------- */

/* Sums accumulate in double whatever the element type: a float32 running
 * sum of a million terms of mean 1 loses 1e-4 of it (measured in
 * tests/test_precision.c), and a sum is bound by memory, not arithmetic. */
#define CHUNK_SUM(x, len, result)                                                                  \
  do {                                                                                             \
    double lane_[LANES] = {0};                                                                     \
    int64_t i_ = 0;                                                                                \
    for (; i_ + LANES <= (len); i_ += LANES)                                                       \
      for (int l_ = 0; l_ < LANES; l_++) lane_[l_] += (x)[i_ + l_];                                \
    for (int l_ = 0; i_ < (len); i_++, l_++) lane_[l_] += (x)[i_];                                 \
    for (int w_ = LANES / 2; w_ > 0; w_ /= 2) /* pairwise, fixed tree */                           \
      for (int l_ = 0; l_ < w_; l_++) lane_[l_] += lane_[l_ + w_];                                 \
    (result) = lane_[0];                                                                           \
  } while (0)

/* out[o] = (sum of the contiguous row x[o*n .. o*n+n)) / divisor, for o <
 * outer, with CHUNK-sized partial sums added in order. Parallel over (row,
 * chunk). */
static void sum_rows(sg_graph *g, sg_dtype dt, const void *xv, void *outv, int64_t outer, int64_t n,
                     double divisor) {
  int64_t n_chunks = n > 0 ? ceil_div(n, CHUNK) : 1, items = outer * n_chunks;
  double *part = sg_arena_alloc(g, (size_t)items * sizeof *part);
  if (!part) return; /* reported; the graph is marked failed */
  SG_DISPATCH(dt, T, {
    const T *x = xv;
    T *out = outv;
    SG_PARALLEL_IF(
        outer * n > SG_PAR_MIN, for (int64_t t = 0; t < items; t++) {
          int64_t o = t / n_chunks, c0 = (t % n_chunks) * CHUNK, len = min64(CHUNK, n - c0);
          double s = 0;
          if (len > 0) CHUNK_SUM(x + o * n + c0, len, s);
          part[t] = s;
        });
    for (int64_t o = 0; o < outer; o++) {
      double s = 0;
      for (int64_t c = 0; c < n_chunks; c++) s += part[o * n_chunks + c];
      out[o] = (T)(s / divisor);
    }
  });
}

/* ---- sum / mean --------------------------------------------------------- */

/* y[o,j] = (sum_k x[o,k,j]) / divisor (1 for sum, n for mean). Each output
 * adds its k terms in order; rows (inner == 1) use the chunked sum. */
static void sum_forward(sg_graph *g, sg_dtype dt, const void *xv, const rview *v, void *yv,
                        double divisor) {
  int64_t n = v->n, inner = v->inner, n_out = v->outer * inner;
  if (inner == 1) {
    sum_rows(g, dt, xv, yv, v->outer, n, divisor);
    return;
  }
  int64_t tiles = ceil_div(inner, TILE), items = v->outer * tiles;
  SG_DISPATCH(dt, T, {
    const T *x = xv;
    T *y = yv;
    SG_PARALLEL_IF(
        n_out * n > SG_PAR_MIN, for (int64_t t = 0; t < items; t++) {
          int64_t o = t / tiles, j0 = (t % tiles) * TILE, j1 = min64(j0 + TILE, inner);
          double acc[TILE]; /* in double: see CHUNK_SUM */
          for (int64_t j = j0; j < j1; j++) acc[j - j0] = 0;
          for (int64_t k = 0; k < n; k++) {
            const T *xr = x + (o * n + k) * inner;
            for (int64_t j = j0; j < j1; j++) acc[j - j0] += xr[j];
          }
          T *yr = y + o * inner;
          for (int64_t j = j0; j < j1; j++) yr[j] = (T)(acc[j - j0] / divisor);
        });
  });
}

/* ga[o,k,j] += scale * go[o,j] (= when !acc, see sg_grad_dest): the
 * broadcast back along the reduced axis.
 * Parallel over fixed tiles of each contiguous run that shares one go value
 * (inner == 1) or one go row (inner > 1). */
static void expand_add(sg_tensor *ga, bool acc, const sg_tensor *go, const rview *v, double scale) {
  int64_t n = v->n, inner = v->inner;
  /* A "run" is a contiguous stretch of ga: a whole slice [o, :] when inner
   * is 1 (one go value), else one row [o, k, :] (one go row). */
  int64_t run = inner == 1 ? n : inner, n_runs = inner == 1 ? v->outer : v->outer * n;
  int64_t tiles = ceil_div(run, TILE), items = n_runs * tiles;
  SG_DISPATCH(ga->dtype, T, {
    T *gx = ga->data, s = (T)scale;
    const T *gy = go->data;
    SG_PARALLEL_IF(
        ga->numel > SG_PAR_MIN, for (int64_t t = 0; t < items; t++) {
          int64_t r = t / tiles, j0 = (t % tiles) * TILE, j1 = min64(j0 + TILE, run);
          T *dst = gx + r * run;
          if (inner == 1) {
            T val = s * gy[r];
            for (int64_t j = j0; j < j1; j++) dst[j] = (acc ? dst[j] : 0) + val;
          } else {
            const T *src = gy + (r / n) * inner;
            for (int64_t j = j0; j < j1; j++) dst[j] = (acc ? dst[j] : 0) + s * src[j];
          }
        });
  });
}

static void sum_backward(sg_graph *g, sg_node *nd) {
  bool acc;
  sg_tensor *ga = sg_grad_dest(g, nd->in[0], &acc);
  rview v = {nd->iarg[0], nd->iarg[1], nd->iarg[2]};
  if (ga) expand_add(ga, acc, nd->out->grad, &v, nd->farg[0]);
}

static const sg_op sum_op = {"sg_sum", sum_backward};
static const sg_op mean_op = {"sg_mean", sum_backward};

static void save_view(sg_node *nd, const rview *v) {
  nd->iarg[0] = v->outer;
  nd->iarg[1] = v->n;
  nd->iarg[2] = v->inner;
}

/* sum (divisor 1) and mean (divisor n); backward scale is 1/divisor. */
static sg_tensor *sum_like(sg_graph *g, const sg_op *op, sg_tensor *a, int axis, bool keepdim,
                           bool is_mean) {
  rview v;
  int nd;
  int64_t shape[SG_MAX_DIMS];
  if (!reduce_setup(g, op->name, a, axis, keepdim, &v, &nd, shape)) return NULL;
  sg_tensor *out = sg_empty(g, a->dtype, nd, shape);
  if (!out) return NULL;
  double divisor = is_mean ? (double)v.n : 1.0;
  sum_forward(g, a->dtype, a->data, &v, out->data, divisor);
  sg_node *node = sg_record(g, op, out, 1, &a);
  if (node) {
    save_view(node, &v);
    node->farg[0] = 1.0 / divisor;
  }
  return out;
}

sg_tensor *(sg_sum)(sg_graph *g, sg_tensor *a, int axis, bool keepdim) {
  return sum_like(g, &sum_op, a, axis, keepdim, false);
}

sg_tensor *(sg_mean)(sg_graph *g, sg_tensor *a, int axis, bool keepdim) {
  return sum_like(g, &mean_op, a, axis, keepdim, true);
}

/* ---- max ---------------------------------------------------------------- */

/* NaN wins (and stays): a slice holding a NaN has a NaN maximum. Ties keep
 * the earlier element, so the saved index is the first maximal one. */
#define MAX_TAKES(v, best) ((v) > (best) || ((v) != (v) && (best) == (best)))

/* Maximum of a contiguous row in LANES independent lanes (vectorisable;
 * the maximum is exact, so the lane split does not change it). */
#define ROW_MAX(T, x, len, result)                                                                 \
  do {                                                                                             \
    T lane_[LANES];                                                                                \
    for (int l_ = 0; l_ < LANES; l_++) lane_[l_] = (x)[0];                                         \
    int64_t i_ = 0;                                                                                \
    for (; i_ + LANES <= (len); i_ += LANES)                                                       \
      for (int l_ = 0; l_ < LANES; l_++)                                                           \
        lane_[l_] = MAX_TAKES((x)[i_ + l_], lane_[l_]) ? (x)[i_ + l_] : lane_[l_];                 \
    for (int l_ = 0; i_ < (len); i_++, l_++)                                                       \
      lane_[l_] = MAX_TAKES((x)[i_], lane_[l_]) ? (x)[i_] : lane_[l_];                             \
    T m_ = lane_[0];                                                                               \
    for (int l_ = 1; l_ < LANES; l_++) m_ = MAX_TAKES(lane_[l_], m_) ? lane_[l_] : m_;             \
    (result) = m_;                                                                                 \
  } while (0)

/* Rows (inner == 1): the maximum, then its first position if wanted. */
static void max_rows(const sg_tensor *a, int64_t outer, int64_t n, sg_tensor *out, int64_t *idx) {
  SG_DISPATCH(a->dtype, T, {
    const T *x = a->data;
    T *y = out->data;
    SG_PARALLEL_IF(
        a->numel > SG_PAR_MIN, for (int64_t o = 0; o < outer; o++) {
          const T *xr = x + o * n;
          T m;
          ROW_MAX(T, xr, n, m);
          y[o] = m;
          if (idx) {
            int64_t k = 0;
            if (m == m)
              while (xr[k] != m) k++;
            else /* the first NaN */
              while (xr[k] == xr[k]) k++;
            idx[o] = k;
          }
        });
  });
}

/* y[o,j] = max_k x[o,k,j]; idx (may be NULL) gets the first maximal k. */
static void max_forward(const sg_tensor *a, const rview *v, sg_tensor *out, int64_t *idx) {
  int64_t n = v->n, inner = v->inner;
  if (inner == 1) {
    max_rows(a, v->outer, n, out, idx);
    return;
  }
  int64_t tiles = ceil_div(inner, TILE), items = v->outer * tiles;
  SG_DISPATCH(a->dtype, T, {
    const T *x = a->data;
    T *y = out->data;
    SG_PARALLEL_IF(
        a->numel > SG_PAR_MIN, for (int64_t t = 0; t < items; t++) {
          int64_t o = t / tiles, j0 = (t % tiles) * TILE, j1 = min64(j0 + TILE, inner);
          T *yr = y + o * inner;
          int64_t *ir = idx ? idx + o * inner : NULL;
          const T *x0 = x + o * n * inner;
          for (int64_t j = j0; j < j1; j++) yr[j] = x0[j];
          if (ir)
            for (int64_t j = j0; j < j1; j++) ir[j] = 0;
          for (int64_t k = 1; k < n; k++) {
            const T *xr = x0 + k * inner;
            if (ir) {
              for (int64_t j = j0; j < j1; j++)
                if (MAX_TAKES(xr[j], yr[j])) yr[j] = xr[j], ir[j] = k;
            } else {
              for (int64_t j = j0; j < j1; j++) yr[j] = MAX_TAKES(xr[j], yr[j]) ? xr[j] : yr[j];
            }
          }
        });
  });
}

/* ga[o, idx[o,j], j] += go[o,j]: one output, one input element. */
static void max_backward(sg_graph *g, sg_node *nd) {
  sg_tensor *ga = sg_grad_buf(g, nd->in[0]);
  if (!ga) return;
  int64_t n = nd->iarg[1], inner = nd->iarg[2], cnt = nd->out->numel;
  const int64_t *idx = nd->saved;
  SG_DISPATCH(ga->dtype, T, {
    T *gx = ga->data;
    const T *gy = nd->out->grad->data;
    SG_PARALLEL_IF(
        cnt > SG_PAR_MIN, for (int64_t p = 0; p < cnt; p++) {
          int64_t o = p / inner, j = p % inner;
          gx[(o * n + idx[p]) * inner + j] += gy[p];
        });
  });
}

static const sg_op max_op = {"sg_max", max_backward};

sg_tensor *(sg_max)(sg_graph *g, sg_tensor *a, int axis, bool keepdim) {
  rview v;
  int nd;
  int64_t shape[SG_MAX_DIMS];
  if (!reduce_setup(g, "sg_max", a, axis, keepdim, &v, &nd, shape)) return NULL;
  if (v.n == 0) {
    char b[96];
    sg_op_error(g, "sg_max", "axis %d of shape %s is empty: the maximum is undefined", axis,
                sg_shape_str(a->ndim, a->shape, b));
    return NULL;
  }
  sg_tensor *out = sg_empty(g, a->dtype, nd, shape);
  if (!out) return NULL;
  /* The argmax is kept only if the op will be recorded (sg_record's test). */
  bool want_idx = sg_grad_enabled(g) && a->requires_grad;
  int64_t *idx = want_idx ? sg_arena_alloc(g, (size_t)out->numel * sizeof(int64_t)) : NULL;
  if (want_idx && !idx) return NULL;
  max_forward(a, &v, out, idx);
  sg_node *node = sg_record(g, &max_op, out, 1, &a);
  if (node) {
    save_view(node, &v);
    node->saved = idx;
  }
  return out;
}

/* ---- logsumexp ---------------------------------------------------------- */
/* y = m + log(sum_k exp(x_k - m)) with m the slice maximum, so every
 * exponent is <= 0 and the sum is >= 1: no overflow, no underflow to 0.
 * A slice that is all -inf has m = -inf; it is shifted by 0 instead, which
 * gives sum 0 and y = -inf without forming -inf - -inf. The exponentials
 * e = exp(x - shift) and 1/sum are kept for the backward:
 *   ga += go * e / sum   (= go * exp(x - y); 0 when the sum is 0). */

typedef struct lse_saved {
  void *e;       /* exp(x - shift), input-shaped */
  void *inv_sum; /* 1 / sum per output, 0 for an all -inf slice */
} lse_saved;

/* e[o,k,j] = exp(x[o,k,j] - shift[o,j]) where shift = m if finite, else 0.
 * Runs are as in expand_add; exp goes through SLEEF a tile at a time. */
static void lse_exponentials(const sg_tensor *a, const rview *v, const sg_tensor *m, void *ev) {
  int64_t n = v->n, inner = v->inner;
  int64_t run = inner == 1 ? n : inner, n_runs = inner == 1 ? v->outer : v->outer * n;
  int64_t tiles = ceil_div(run, TILE), items = n_runs * tiles;
  SG_DISPATCH(a->dtype, T, {
    const T *x = a->data, *mx = m->data;
    T *e = ev;
    SG_PARALLEL_IF(
        a->numel > SG_PAR_MIN, for (int64_t t = 0; t < items; t++) {
          int64_t r = t / tiles, j0 = (t % tiles) * TILE, j1 = min64(j0 + TILE, run);
          const T *xr = x + r * run;
          T *er = e + r * run;
          if (inner == 1) {
            T shift = isfinite(mx[r]) ? mx[r] : 0;
            for (int64_t j = j0; j < j1; j++) er[j] = xr[j] - shift;
          } else {
            const T *mr = mx + (r / n) * inner;
            for (int64_t j = j0; j < j1; j++) er[j] = xr[j] - (isfinite(mr[j]) ? mr[j] : 0);
          }
          if (sizeof(T) == sizeof(float))
            sg_vexp_f32((const float *)er + j0, (float *)er + j0, j1 - j0);
          else
            sg_vexp_f64((const double *)er + j0, (double *)er + j0, j1 - j0);
        });
  });
}

static void lse_backward(sg_graph *g, sg_node *nd) {
  sg_tensor *ga = sg_grad_buf(g, nd->in[0]);
  if (!ga) return;
  const lse_saved *sv = nd->saved;
  int64_t n = nd->iarg[1], inner = nd->iarg[2];
  int64_t run = inner == 1 ? n : inner, n_runs = inner == 1 ? nd->iarg[0] : nd->iarg[0] * n;
  int64_t tiles = ceil_div(run, TILE), items = n_runs * tiles;
  SG_DISPATCH(ga->dtype, T, {
    T *gx = ga->data;
    const T *gy = nd->out->grad->data, *e = sv->e, *inv = sv->inv_sum;
    SG_PARALLEL_IF(
        ga->numel > SG_PAR_MIN, for (int64_t t = 0; t < items; t++) {
          int64_t r = t / tiles, j0 = (t % tiles) * TILE, j1 = min64(j0 + TILE, run);
          T *dst = gx + r * run;
          const T *er = e + r * run;
          if (inner == 1) {
            T w = gy[r] * inv[r];
            for (int64_t j = j0; j < j1; j++) dst[j] += w * er[j];
          } else {
            int64_t base = (r / n) * inner;
            for (int64_t j = j0; j < j1; j++) dst[j] += gy[base + j] * inv[base + j] * er[j];
          }
        });
  });
}

static const sg_op lse_op = {"sg_logsumexp", lse_backward};

sg_tensor *(sg_logsumexp)(sg_graph *g, sg_tensor *a, int axis, bool keepdim) {
  rview v;
  int nd;
  int64_t shape[SG_MAX_DIMS];
  if (!reduce_setup(g, "sg_logsumexp", a, axis, keepdim, &v, &nd, shape)) return NULL;
  sg_tensor *out = sg_empty(g, a->dtype, nd, shape);
  if (!out) return NULL;
  size_t esz = sg_dtype_size(a->dtype);
  void *e = sg_arena_alloc(g, (size_t)a->numel * esz);
  void *inv = sg_arena_alloc(g, (size_t)out->numel * esz);
  if (!e || !inv) return NULL;
  /* An empty slice has maximum -inf (and logsumexp -inf, like log(0)). */
  if (v.n > 0)
    max_forward(a, &v, out, NULL);
  else
    for (int64_t i = 0; i < out->numel; i++) sg_set(out, i, -INFINITY);
  lse_exponentials(a, &v, out, e);
  sum_forward(g, a->dtype, e, &v, inv, 1); /* the sums, inverted below */
  int64_t cnt = out->numel;
  SG_DISPATCH(a->dtype, T, {
    T *y = out->data, *s = inv;
    for (int64_t i = 0; i < cnt; i++) {
      T shift = isfinite(y[i]) ? y[i] : 0;
      y[i] = shift + log(s[i]); /* log(0) = -inf for an all -inf slice */
      s[i] = s[i] > 0 ? 1 / s[i] : 0;
    }
  });
  sg_node *node = sg_record(g, &lse_op, out, 1, &a);
  if (node) {
    save_view(node, &v);
    lse_saved *sv = sg_arena_alloc(g, sizeof *sv);
    if (!sv) return NULL;
    sv->e = e;
    sv->inv_sum = inv;
    node->saved = sv;
  }
  return out;
}

/* ---- sum_all / mean_all ------------------------------------------------- */

static void sum_all_backward(sg_graph *g, sg_node *nd) {
  bool acc;
  sg_tensor *ga = sg_grad_dest(g, nd->in[0], &acc);
  if (!ga) return;
  if (!acc && !nd->in[0]->owned) {
    /* The same value everywhere: left unwritten (sg_node.takes_uniform_grad)
     * for the consumer to use directly or write out. Leaves' gradients are
     * the user's to read, so they are written. */
    double go = sg_get(nd->out->grad, 0);
    ga->uniform = true;
    ga->uniform_value = go * nd->farg[0];
    return;
  }
  rview v = {1, ga->numel, 1};
  expand_add(ga, acc, nd->out->grad, &v, nd->farg[0]);
}

static const sg_op sum_all_op = {"sg_sum_all", sum_all_backward};
static const sg_op mean_all_op = {"sg_mean_all", sum_all_backward};

/* The whole tensor as one row: chunked, so deterministic for any thread count. */
static sg_tensor *sum_all_like(sg_graph *g, const sg_op *op, sg_tensor *a, bool is_mean) {
  if (!a) return NULL;
  sg_tensor *out = sg_empty(g, a->dtype, 0, NULL);
  if (!out) return NULL;
  double divisor = is_mean ? (double)a->numel : 1.0;
  rview v = {1, a->numel, 1};
  sum_forward(g, a->dtype, a->data, &v, out->data, divisor);
  sg_node *node = sg_record(g, op, out, 1, &a);
  if (node) node->farg[0] = 1.0 / divisor;
  return out;
}

sg_tensor *(sg_sum_all)(sg_graph *g, sg_tensor *a) {
  return sum_all_like(g, &sum_all_op, a, false);
}

sg_tensor *(sg_mean_all)(sg_graph *g, sg_tensor *a) {
  return sum_all_like(g, &mean_all_op, a, true);
}
