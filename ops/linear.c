/* The Linear ops, forward and backward: sg_linear, sg_linear_cols (a column
 * block of W), sg_linear_relu (fused ReLU) and sg_linear_parts (the first
 * Linear of an MLP on concatenated parts). Their GEMM calls are routed in
 * ops/gemm.
 *
 * Backward formulas for y = x W^T + b (go = gradient of y):
 *   dx = go W,  dW = go^T x,  db = column sums of go
 * (over all leading rows of x, accumulated straight into the gradients). */
#include "sg_gemm.h"
#include "sg_kernel.h"
#include "sg_ops.h"

static int64_t ceil_div(int64_t a, int64_t b) {
  return (a + b - 1) / b;
}
static int64_t min64(int64_t a, int64_t b) {
  return a < b ? a : b;
}

/* ==== linear ============================================================= */

enum { BIAS_TILE = 256 };

/* gb[j] += sum over rows of go[r, j] (= if !acc), rows added in order;
 * columns are split among threads in fixed tiles. */
static void bias_grad(sg_tensor *gb, bool acc, const sg_tensor *go, int64_t rows, int64_t cols) {
  int64_t tiles = ceil_div(cols, BIAS_TILE);
  SG_DISPATCH(gb->dtype, T, {
    T *gbd = gb->data;
    const T *g = go->data;
    SG_PARALLEL_IF(
        rows * cols > SG_PAR_MIN, for (int64_t t = 0; t < tiles; t++) {
          int64_t j0 = t * BIAS_TILE, j1 = min64(j0 + BIAS_TILE, cols);
          if (!acc)
            for (int64_t j = j0; j < j1; j++) gbd[j] = 0;
          for (int64_t r = 0; r < rows; r++)
            for (int64_t j = j0; j < j1; j++) gbd[j] += g[r * cols + j];
        });
  });
}

/* The gradient buffer of W's column block [col0, col0 + width): a block
 * narrower than W writes only its columns, so W's gradient must then start
 * from zeros and the block adds to it. */
static sg_tensor *weight_grad_dest(sg_graph *g, sg_tensor *w, int64_t width, bool *acc) {
  *acc = true;
  return width == w->shape[1] ? sg_grad_dest(g, w, acc) : sg_grad_buf(g, w);
}

/* The two products of a Linear block's backward, with go [rows, out] the
 * gradient of x [rows, width] W[:, col0 : col0 + width]^T (W [out, in]):
 * dx += go W[:, block] and dW[:, block] += go^T x (= when not
 * accumulating), as one pair when both are wanted. gw: W's gradient buffer
 * fetched already (acc_w: add to it), or NULL; w_late: W is x itself, so
 * its gradient is fetched after dx is written and the second contribution
 * adds to the first. */
static void block_backward(sg_graph *g, const sg_tensor *go, sg_tensor *x, sg_tensor *w,
                           int64_t rows, int64_t col0, sg_tensor *gw, bool acc_w, bool w_late) {
  int64_t in = w->shape[1], out = w->shape[0], width = x->shape[x->ndim - 1];
  sg_dtype dt = go->dtype;
  size_t col_bytes = (size_t)col0 * sg_dtype_size(dt);
  bool acc_x = true;
  sg_tensor *gx = sg_grad_dest(g, x, &acc_x);
  sg_gemm_args dx = {.dt = dt,
                     .m = rows,
                     .n = width,
                     .k = out,
                     .alpha = 1,
                     .a = go->data,
                     .lda = out,
                     .b = (char *)w->data + col_bytes,
                     .ldb = in,
                     .beta = acc_x,
                     .c = gx ? gx->data : NULL,
                     .ldc = width};
  sg_gemm_args dw = {.dt = dt,
                     .ta = true,
                     .m = out,
                     .n = width,
                     .k = rows,
                     .alpha = 1,
                     .a = go->data,
                     .lda = out,
                     .b = x->data,
                     .ldb = width,
                     .ldc = in};
  if (gx && gw) {
    dw.beta = acc_w;
    dw.c = (char *)gw->data + col_bytes;
    dx.scratch = sg_gemm_args_scratch(g, &dx);
    dw.scratch = sg_gemm_args_scratch(g, &dw);
    sg_gemm_pair(&dx, &dw);
    sg_gemm_args_scratch_done(g, &dw);
    sg_gemm_args_scratch_done(g, &dx);
    return;
  }
  if (gx) {
    dx.scratch = sg_gemm_args_scratch(g, &dx);
    sg_gemm_run(&dx);
    sg_gemm_args_scratch_done(g, &dx);
  }
  if (w_late) gw = weight_grad_dest(g, w, width, &acc_w);
  if (gw) {
    dw.beta = acc_w;
    dw.c = (char *)gw->data + col_bytes;
    dw.scratch = sg_gemm_args_scratch(g, &dw);
    sg_gemm_run(&dw);
    sg_gemm_args_scratch_done(g, &dw);
  }
}

/* Weights are W[:, col0 : col0 + width] of W [out, in]: row stride in. */
static void linear_backward(sg_graph *g, sg_node *nd) {
  sg_tensor *x = nd->in[0], *w = nd->in[1], *go = nd->out->grad;
  int64_t rows = nd->iarg[0], col0 = nd->iarg[1], width = x->shape[x->ndim - 1];
  bool acc_w = true;
  sg_tensor *gw = x != w ? weight_grad_dest(g, w, width, &acc_w) : NULL;
  block_backward(g, go, x, w, rows, col0, gw, acc_w, x == w);
  bool acc_b = true;
  sg_tensor *gbias = sg_grad_dest(g, nd->in[2], &acc_b);
  if (gbias) bias_grad(gbias, acc_b, go, rows, w->shape[0]);
}

static const sg_op linear_op = {"sg_linear", linear_backward};
static const sg_op linear_cols_op = {"sg_linear_cols", linear_backward};

/* b [out] for W [out, in], or NULL; else reported under op's name. */
static bool bias_fits(sg_graph *g, const char *op, const sg_tensor *b, const sg_tensor *w) {
  if (!b || (b->ndim == 1 && b->shape[0] == w->shape[0])) return true;
  char sb[96], sw[96];
  sg_shape_strs(b, sb, w, sw);
  sg_op_error(g, op, "bias %s must be [out] for W %s", sb, sw);
  return false;
}

/* x [..., width] against columns col0.. of W [out, in] (all of them for
 * sg_linear: col0 0, width in); bias [out] or NULL. */
static bool linear_check(sg_graph *g, const sg_op *kind, const sg_tensor *x, const sg_tensor *w,
                         int64_t col0, const sg_tensor *b) {
  char sx[96], sw[96];
  const char *op = kind->name;
  bool whole = kind != &linear_cols_op;
  if (x->ndim < 1 || w->ndim != 2 ||
      (whole ? x->shape[x->ndim - 1] != w->shape[1]
             : col0 < 0 || col0 > w->shape[1] || x->shape[x->ndim - 1] > w->shape[1] - col0)) {
    sg_shape_strs(x, sx, w, sw);
    if (whole)
      sg_op_error(g, op, "x %s must be [..., in] and W %s [out, in] with the same in", sx, sw);
    else
      sg_op_error(g, op, "x %s must be [..., width] with columns %lld..%lld inside W %s [out, in]",
                  sx, (long long)col0, (long long)(col0 + x->shape[x->ndim - 1]), sw);
    return false;
  }
  return bias_fits(g, op, b, w);
}

/* y = max(y + b, 0) over the rows of y [rows, cols] (b NULL: max(y, 0)):
 * the epilogue of sg_linear_relu, one pass in place. */
static void bias_relu(sg_tensor *y, const sg_tensor *b, int64_t rows, int64_t cols) {
  SG_DISPATCH(y->dtype, T, {
    T *yd = y->data;
    const T *bd = b ? b->data : NULL;
    SG_PARALLEL_IF(
        y->numel > SG_PAR_MIN, for (int64_t r = 0; r < rows; r++) {
          T *row = yd + r * cols;
          if (bd)
            for (int64_t j = 0; j < cols; j++) {
              T v = row[j] + bd[j];
              row[j] = v > 0 ? v : 0;
            }
          else
            for (int64_t j = 0; j < cols; j++) row[j] = row[j] > 0 ? row[j] : 0;
        });
  });
}

/* go = 0 where the ReLU output y is not positive, in place: the gradient
 * of the pre-activation (no one else reads this node's output gradient). */
static void mask_inactive(sg_tensor *go, const sg_tensor *y) {
  int64_t n = go->numel;
  SG_DISPATCH(go->dtype, T, {
    T *gd = go->data;
    const T *yd = y->data;
    SG_PARALLEL_IF(n > SG_PAR_MIN, for (int64_t i = 0; i < n; i++) gd[i] = yd[i] > 0 ? gd[i] : 0;);
  });
}

static void linear_relu_backward(sg_graph *g, sg_node *nd) {
  mask_inactive(nd->out->grad, nd->out);
  linear_backward(g, nd);
}

static const sg_op linear_relu_op = {"sg_linear_relu", linear_relu_backward};

static sg_tensor *linear(sg_graph *g, const sg_op *op, sg_tensor *x, sg_tensor *w, int64_t col0,
                         sg_tensor *b) {
  sg_tensor *in[3] = {x, w, b};
  if (!sg_check_same_dtype(g, op->name, b ? 3 : 2, in) || !linear_check(g, op, x, w, col0, b))
    return NULL;
  int64_t n_in = w->shape[1], width = x->shape[x->ndim - 1], n_out = w->shape[0];
  int64_t shape[SG_MAX_DIMS];
  memcpy(shape, x->shape, sizeof shape);
  shape[x->ndim - 1] = n_out;
  sg_tensor *y = sg_empty(g, x->dtype, x->ndim, shape);
  if (!y) return NULL;
  /* Leading dims fold into rows: one [rows, width] x [width, out] GEMM. */
  int64_t rows = 1;
  for (int d = 0; d < x->ndim - 1; d++) rows *= x->shape[d];
  bool relu = op == &linear_relu_op, bias_first = b && !relu;
  if (bias_first) { /* the GEMM adds its product to the broadcast bias */
    SG_DISPATCH(x->dtype, T, {
      T *yd = y->data;
      const T *bd = b->data;
      SG_PARALLEL_IF(y->numel > SG_PAR_MIN, for (int64_t r = 0; r < rows; r++) memcpy(
                                                yd + r * n_out, bd, (size_t)n_out * sizeof(T)););
    });
  }
  const char *w_block = (const char *)w->data + (size_t)col0 * sg_dtype_size(w->dtype);
  void *scratch = sg_gemm_scratch(g, x->dtype, false, true, rows, n_out, width);
  sg_gemm(x->dtype, false, true, rows, n_out, width, 1, x->data, width, w_block, n_in,
          bias_first ? 1 : 0, y->data, n_out, scratch);
  sg_gemm_scratch_done(g, scratch, x->dtype, false, true, rows, n_out, width);
  if (relu) bias_relu(y, b, rows, n_out);
  sg_node *node = sg_record(g, op, y, 3, in);
  if (node) {
    node->iarg[0] = rows;
    node->iarg[1] = col0;
  }
  return y;
}

sg_tensor *(sg_linear)(sg_graph *g, sg_tensor *x, sg_tensor *w, sg_tensor *b) {
  return linear(g, &linear_op, x, w, 0, b);
}

sg_tensor *(sg_linear_cols)(sg_graph *g, sg_tensor *x, sg_tensor *w, int64_t col0, sg_tensor *b) {
  return linear(g, &linear_cols_op, x, w, col0, b);
}

sg_tensor *(sg_linear_relu)(sg_graph *g, sg_tensor *x, sg_tensor *w, sg_tensor *b) {
  return linear(g, &linear_relu_op, x, w, 0, b);
}

/* ==== the first Linear of an MLP on concatenated parts ================== */

/* How the parts of sg_linear_parts lie against the output [lead..., out]:
 * part i is x_i [lead_i..., width_i] times the column block [col0_i,
 * col0_i + width_i) of W; its leading axes, right-aligned against the
 * output's, broadcast (row stride 0) where they are 1. */
typedef struct parts_layout {
  int n, nd; /* parts; leading axes of the output */
  int64_t lead[SG_MAX_DIMS], rows;
  int64_t stride[SG_MAX_INPUTS][SG_MAX_DIMS]; /* in rows of part i */
  int64_t part_rows[SG_MAX_INPUTS], col0[SG_MAX_INPUTS], width[SG_MAX_INPUTS];
} parts_layout;

/* Whether the leading axes (all but the last, right-aligned) of a and b
 * broadcast against each other. */
static bool leading_axes_broadcast(const sg_tensor *a, const sg_tensor *b) {
  for (int k = 2; k <= a->ndim && k <= b->ndim; k++) {
    int64_t sa = a->shape[a->ndim - k], sb = b->shape[b->ndim - k];
    if (sa != 1 && sb != 1 && sa != sb) return false;
  }
  return true;
}

/* The output's rows, and each part's rows and row strides along the
 * output's leading axes (0 where it repeats). */
static void parts_rows(parts_layout *pl, sg_tensor *const *x) {
  pl->rows = 1;
  for (int d = 0; d < pl->nd; d++) pl->rows *= pl->lead[d];
  for (int i = 0; i < pl->n; i++) {
    int off = pl->nd - (x[i]->ndim - 1);
    int64_t s = 1;
    for (int d = pl->nd - 1; d >= 0; d--) {
      int64_t size = d >= off ? x[i]->shape[d - off] : 1;
      pl->stride[i][d] = size == 1 ? 0 : s;
      s *= size;
    }
    pl->part_rows[i] = s;
  }
}

/* Fills pl from the parts' shapes, or reports why they do not fit W. */
static bool parts_layout_make(sg_graph *g, int n, sg_tensor *const *x, const sg_tensor *w,
                              parts_layout *pl) {
  *pl = (parts_layout){.n = n};
  int64_t in = 0;
  for (int i = 0; i < n; i++) {
    pl->nd = x[i]->ndim - 1 > pl->nd ? x[i]->ndim - 1 : pl->nd;
    pl->col0[i] = in;
    pl->width[i] = x[i]->shape[x[i]->ndim - 1];
    in += pl->width[i];
  }
  for (int d = 0; d < pl->nd; d++) pl->lead[d] = 1;
  for (int i = 0; i < n; i++) /* the output takes each axis's non-1 size */
    for (int d = 0; d < x[i]->ndim - 1; d++)
      if (x[i]->shape[d] != 1) pl->lead[pl->nd - (x[i]->ndim - 1) + d] = x[i]->shape[d];
  char s1[96], s2[96];
  if (in != w->shape[1]) {
    sg_shape_strs(x[0], s1, w, s2);
    sg_op_error(g, "sg_linear_parts",
                "the parts' widths (first part %s) add up to %lld, W %s has %lld columns", s1,
                (long long)in, s2, (long long)w->shape[1]);
    return false;
  }
  for (int i = 0; i < n; i++)
    for (int j = i + 1; j < n; j++)
      if (!leading_axes_broadcast(x[i], x[j])) {
        sg_shape_strs(x[i], s1, x[j], s2);
        sg_op_error(g, "sg_linear_parts",
                    "part %d %s and part %d %s do not broadcast over their leading axes", i, s1, j,
                    s2);
        return false;
      }
  parts_rows(pl, x);
  return true;
}

/* The row of part i that output row r reads. */
static int64_t part_row(const parts_layout *pl, int i, int64_t r) {
  int64_t row = 0;
  for (int d = pl->nd - 1; d >= 0; d--) {
    row += (r % pl->lead[d]) * pl->stride[i][d];
    r /= pl->lead[d];
  }
  return row;
}

/* A part repeated along no axis: its rows are the output's. */
static bool part_is_full(const parts_layout *pl, int i) {
  return pl->part_rows[i] == pl->rows;
}

/* y[r] = b + the products prod[i] [part_rows_i, out] of every part but
 * `skip`, each at the row output row r reads, added in part order. */
static void fill_broadcast_sum(sg_tensor *y, const sg_tensor *b, sg_tensor *const *prod,
                               const parts_layout *pl, int skip) {
  int64_t out = y->shape[y->ndim - 1];
  SG_DISPATCH(y->dtype, T, {
    T *yd = y->data;
    const T *bd = b ? b->data : NULL;
    SG_PARALLEL_IF(
        y->numel > SG_PAR_MIN, for (int64_t r = 0; r < pl->rows; r++) {
          T *row = yd + r * out;
          for (int64_t j = 0; j < out; j++) row[j] = bd ? bd[j] : 0;
          for (int i = 0; i < pl->n; i++) {
            if (i == skip) continue;
            const T *p = (const T *)prod[i]->data + part_row(pl, i, r) * out;
            for (int64_t j = 0; j < out; j++) row[j] += p[j];
          }
        });
  });
}

static void linear_parts_backward(sg_graph *g, sg_node *nd);
static const sg_op linear_parts_op = {"sg_linear_parts", linear_parts_backward};

/* Part i's share of the output gradient go: go itself for a full part,
 * else go summed over the axes where the part repeats (arena scratch). */
static sg_tensor *part_grad(sg_graph *g, const parts_layout *pl, int i, const sg_tensor *x,
                            sg_tensor *go) {
  if (part_is_full(pl, i)) return go;
  int64_t shape[SG_MAX_DIMS];
  memcpy(shape, x->shape, sizeof shape);
  shape[x->ndim - 1] = go->shape[go->ndim - 1];
  sg_tensor *gi = sg_empty(g, go->dtype, x->ndim, shape);
  if (gi) sg_accumulate_reduced(gi, go, false);
  return gi;
}

/* Inputs: the n parts, W, b (or NULL); iarg: n, relu. W's gradient is
 * fetched once for all blocks (they are disjoint and cover W) unless W is
 * also a part: then, as in linear_backward, after that part's dx. */
static void linear_parts_backward(sg_graph *g, sg_node *nd) {
  int n = (int)nd->iarg[0];
  sg_tensor *w = nd->in[n], *b = nd->in[n + 1], *go = nd->out->grad;
  if (nd->iarg[1]) mask_inactive(go, nd->out);
  parts_layout pl;
  parts_layout_make(g, n, nd->in, w, &pl);
  bool w_is_part = false;
  for (int i = 0; i < n; i++) w_is_part |= nd->in[i] == w;
  bool acc_w = true;
  sg_tensor *gw = w_is_part ? NULL : sg_grad_dest(g, w, &acc_w);
  for (int i = 0; i < n; i++) {
    sg_tensor *gi = part_grad(g, &pl, i, nd->in[i], go);
    if (!gi) return; /* out of memory: reported, the graph failed */
    block_backward(g, gi, nd->in[i], w, pl.part_rows[i], pl.col0[i], gw, acc_w, w_is_part);
    if (i == 0) {
      bool acc_b = true;
      sg_tensor *gb = sg_grad_dest(g, b, &acc_b);
      if (gb) bias_grad(gb, acc_b, gi, pl.part_rows[0], w->shape[0]);
    }
    if (gi != go) sg_release(g, gi);
  }
}

/* W [out, in], parts of at least one axis, bias [out] or NULL. */
static bool parts_check(sg_graph *g, int n, sg_tensor *const *x, const sg_tensor *w,
                        const sg_tensor *b) {
  char s1[96], s2[96];
  const char *op = linear_parts_op.name;
  for (int i = 0; i < n; i++)
    if (x[i]->ndim < 1 || w->ndim != 2) {
      sg_shape_strs(x[i], s1, w, s2);
      sg_op_error(g, op, "part %d %s must be [..., width] and W %s [out, in]", i, s1, s2);
      return false;
    }
  return bias_fits(g, op, b, w);
}

/* Part i's product x_i W[:, block_i]^T, [part_rows_i, out] (beta 1: added
 * to what c holds). */
static void part_product(sg_graph *g, const parts_layout *pl, int i, const sg_tensor *x,
                         const sg_tensor *w, void *c, double beta) {
  size_t col_bytes = (size_t)pl->col0[i] * sg_dtype_size(w->dtype);
  sg_gemm_args p = {.dt = w->dtype,
                    .tb = true,
                    .m = pl->part_rows[i],
                    .n = w->shape[0],
                    .k = pl->width[i],
                    .alpha = 1,
                    .a = x->data,
                    .lda = pl->width[i],
                    .b = (const char *)w->data + col_bytes,
                    .ldb = w->shape[1],
                    .beta = beta,
                    .c = c,
                    .ldc = w->shape[0]};
  p.scratch = sg_gemm_args_scratch(g, &p);
  sg_gemm_run(&p);
  sg_gemm_args_scratch_done(g, &p);
}

/* The broadcast parts' products go to scratch and are summed with the
 * bias into y in one pass; the first full part's GEMM then adds itself to
 * y (beta 1), so the largest product is never stored apart. */
sg_tensor *(sg_linear_parts)(sg_graph *g, int n, sg_tensor *const *x, sg_tensor *w, sg_tensor *b,
                             bool relu) {
  const char *op = linear_parts_op.name;
  if (n < 1 || n > SG_MAX_INPUTS - 2) {
    sg_op_error(g, op, "takes 1 to %d parts, got %d", SG_MAX_INPUTS - 2, n);
    return NULL;
  }
  sg_tensor *in[SG_MAX_INPUTS];
  for (int i = 0; i < n; i++) in[i] = x[i];
  in[n] = w;
  in[n + 1] = b;
  parts_layout pl;
  if (!sg_check_same_dtype(g, op, b ? n + 2 : n + 1, in) || !parts_check(g, n, x, w, b) ||
      !parts_layout_make(g, n, x, w, &pl))
    return NULL;
  int64_t out = w->shape[0], shape[SG_MAX_DIMS];
  memcpy(shape, pl.lead, sizeof shape);
  shape[pl.nd] = out;
  sg_tensor *y = sg_empty(g, w->dtype, pl.nd + 1, shape);
  if (!y) return NULL;
  int full = -1;
  for (int i = 0; i < n && full < 0; i++)
    if (part_is_full(&pl, i)) full = i;
  sg_tensor *prod[SG_MAX_INPUTS] = {NULL};
  for (int i = 0; i < n; i++) {
    if (i == full) continue;
    prod[i] = sg_empty(g, w->dtype, 2, (int64_t[]){pl.part_rows[i], out});
    if (!prod[i]) return NULL;
    part_product(g, &pl, i, x[i], w, prod[i]->data, 0);
  }
  fill_broadcast_sum(y, b, prod, &pl, full);
  for (int i = n - 1; i >= 0; i--)
    if (prod[i]) sg_release(g, prod[i]);
  if (full >= 0) part_product(g, &pl, full, x[full], w, y->data, 1);
  if (relu) bias_relu(y, NULL, pl.rows, out);
  sg_node *node = sg_record(g, &linear_parts_op, y, n + 2, in);
  if (node) {
    node->iarg[0] = n;
    node->iarg[1] = relu;
  }
  return y;
}
