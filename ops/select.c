/* Selection ops: argmax, one_hot, compare, where and detach.
 *
 * argmax, one_hot, compare and detach have no gradient: they record nothing
 * on the tape, and their outputs have requires_grad false even when their
 * inputs require a gradient (a gradient stops there). Their outputs hold
 * exact small integers (indices, 0/1) in the input's dtype.
 *
 * where(cond, a, b) is differentiable in a and b only: the gradient of the
 * output goes to a where cond != 0 and to b elsewhere, summed over the axes
 * where a or b was broadcast; cond gets none. */
#include "sg_ops.h"
#include "sg_kernel.h"

#include <math.h>

/* float32 holds every integer up to 2^24 exactly. */
static const int64_t F32_EXACT_INT = (int64_t)1 << 24;

static int64_t prod(const int64_t *shape, int from, int to) {
  int64_t p = 1;
  for (int d = from; d < to; d++) p *= shape[d];
  return p;
}

/* ---- argmax ------------------------------------------------------------ */
/* Ties go to the lowest index. NaN counts as larger than everything (the
 * first NaN wins), as in NumPy. */

/* Columns of a strided argmax handled by one work item. */
enum { ARGMAX_COLS = 256, ARGMAX_BLOCK = 256 };

/* A contiguous row: the maximum of each block comes from a branch-free
 * loop, and the row is searched only in a block whose maximum beats the
 * best so far. */
#define DEFINE_ARGMAX_ROW(T, S)                                                                    \
  static int64_t argmax_row_##S(const T *x, int64_t len) {                                         \
    int64_t best = 0;                                                                              \
    T best_v = x[0];                                                                               \
    for (int64_t k0 = 0; k0 < len; k0 += ARGMAX_BLOCK) {                                           \
      int64_t k1 = k0 + ARGMAX_BLOCK < len ? k0 + ARGMAX_BLOCK : len;                              \
      T m = x[k0];                                                                                 \
      bool nan = false;                                                                            \
      for (int64_t k = k0; k < k1; k++) {                                                          \
        m = x[k] > m ? x[k] : m;                                                                   \
        nan |= x[k] != x[k];                                                                       \
      }                                                                                            \
      if (nan)                                                                                     \
        for (int64_t k = k0; k < k1; k++)                                                          \
          if (x[k] != x[k]) return k;                                                              \
      if (m > best_v) {                                                                            \
        best_v = m;                                                                                \
        for (best = k0; x[best] != m; best++) continue;                                            \
      }                                                                                            \
    }                                                                                              \
    return best;                                                                                   \
  }
SG_FOR_BOTH_TYPES(DEFINE_ARGMAX_ROW)

/* Columns [i0, i1) of a [len, inner] block: a running best per column,
 * walking the rows in order so the reads are contiguous. */
#define ARGMAX_COLUMNS()                                                                           \
  do {                                                                                             \
    T best_v[ARGMAX_COLS], best[ARGMAX_COLS];                                                      \
    for (int64_t i = i0; i < i1; i++) {                                                            \
      best_v[i - i0] = blk[i];                                                                     \
      best[i - i0] = 0;                                                                            \
    }                                                                                              \
    for (int64_t k = 1; k < len; k++)                                                              \
      for (int64_t i = i0; i < i1; i++) {                                                          \
        T v = blk[k * inner + i], b = best_v[i - i0];                                              \
        bool take = v > b || (v != v && b == b);                                                   \
        best_v[i - i0] = take ? v : b;                                                             \
        best[i - i0] = take ? (T)k : best[i - i0];                                                 \
      }                                                                                            \
    for (int64_t i = i0; i < i1; i++) orow[i] = best[i - i0];                                      \
  } while (0)

static void argmax_kernel(const sg_tensor *a, sg_tensor *out, int64_t outer, int64_t len,
                          int64_t inner) {
  int64_t chunks = (inner + ARGMAX_COLS - 1) / ARGMAX_COLS, n_items = outer * chunks;
  SG_DISPATCH(a->dtype, T, {
    const T *x = a->data;
    T *o = out->data;
    SG_PARALLEL_IF(
        a->numel > SG_PAR_MIN, for (int64_t t = 0; t < n_items; t++) {
          const T *blk = x + (t / chunks) * len * inner;
          T *orow = o + (t / chunks) * inner;
          if (inner == 1) {
            orow[0] = sizeof(T) == sizeof(float) ? (T)argmax_row_f32((const float *)blk, len)
                                                 : (T)argmax_row_f64((const double *)blk, len);
          } else {
            int64_t i0 = (t % chunks) * ARGMAX_COLS;
            int64_t i1 = i0 + ARGMAX_COLS < inner ? i0 + ARGMAX_COLS : inner;
            ARGMAX_COLUMNS();
          }
        });
  });
}

sg_tensor *(sg_argmax)(sg_graph *g, sg_tensor *a, int axis, bool keepdim) {
  if (!a) return NULL;
  int ax = sg_norm_axis(g, "sg_argmax", a, axis);
  if (ax < 0) return NULL;
  int64_t len = a->shape[ax];
  if (len == 0 || (a->dtype == SG_F32 && len > F32_EXACT_INT)) {
    char b[96];
    sg_op_error(g, "sg_argmax", "axis %d of %s %s is %s", axis, sg_dtype_name(a->dtype),
                sg_shape_str(a->ndim, a->shape, b),
                len == 0 ? "empty" : "too long for exact float32 indices");
    return NULL;
  }
  int64_t shape[SG_MAX_DIMS];
  int nd = 0;
  for (int d = 0; d < a->ndim; d++)
    if (d != ax || keepdim) shape[nd++] = d == ax ? 1 : a->shape[d];
  sg_tensor *out = sg_empty(g, a->dtype, nd, shape);
  if (!out) return NULL;
  argmax_kernel(a, out, prod(a->shape, 0, ax), len, prod(a->shape, ax + 1, a->ndim));
  return out;
}

/* ---- one_hot ----------------------------------------------------------- */

/* Reports the first index value that is not an integer in [0, n). */
static bool one_hot_check(sg_graph *g, const sg_tensor *idx, int64_t n_classes) {
  char b[96];
  if (n_classes < 1 || idx->ndim + 1 > SG_MAX_DIMS ||
      (idx->dtype == SG_F32 && n_classes > F32_EXACT_INT)) {
    sg_op_error(g, "sg_one_hot", "cannot make %lld classes for indices %s %s (max %d dims)",
                (long long)n_classes, sg_dtype_name(idx->dtype),
                sg_shape_str(idx->ndim, idx->shape, b), SG_MAX_DIMS);
    return false;
  }
  for (int64_t i = 0; i < idx->numel; i++) {
    double v = sg_get(idx, i);
    if (!(v >= 0 && v < (double)n_classes && v == floor(v))) {
      sg_op_error(g, "sg_one_hot",
                  "index %g at flat position %lld of %s is not an integer in [0, %lld)", v,
                  (long long)i, sg_shape_str(idx->ndim, idx->shape, b), (long long)n_classes);
      return false;
    }
  }
  return true;
}

sg_tensor *(sg_one_hot)(sg_graph *g, sg_tensor *idx, int64_t n_classes) {
  if (!idx || !one_hot_check(g, idx, n_classes)) return NULL;
  int64_t shape[SG_MAX_DIMS];
  for (int d = 0; d < idx->ndim; d++) shape[d] = idx->shape[d];
  shape[idx->ndim] = n_classes;
  sg_tensor *out = sg_empty(g, idx->dtype, idx->ndim + 1, shape);
  if (!out) return NULL;
  int64_t n = idx->numel;
  SG_DISPATCH(idx->dtype, T, {
    const T *x = idx->data;
    T *o = out->data;
    SG_PARALLEL_IF(
        out->numel > SG_PAR_MIN, for (int64_t i = 0; i < n; i++) {
          T *row = o + i * n_classes;
          for (int64_t c = 0; c < n_classes; c++) row[c] = 0;
          row[(int64_t)x[i]] = 1;
        });
  });
  return out;
}

/* ---- compare ----------------------------------------------------------- */
/* C's comparisons already give NaN's semantics: false for everything but
 * !=, which is true. */

/* Columns per parallel work item, so that one long row uses every thread. */
enum { TILE = 4096 };

#define COMPARE_ROW(OP)                                                                            \
  for (int64_t j = j0; j < j1; j++) orow[j] = xa[j * sa] OP yb[j * sb] ? 1 : 0

sg_tensor *(sg_compare)(sg_graph *g, sg_tensor *a, sg_tensor *b, sg_cmp cmp) {
  sg_tensor *in[2] = {a, b};
  sg_bcast p;
  if (!sg_check_same_dtype(g, "sg_compare", 2, in)) return NULL;
  if ((int)cmp < SG_LT || cmp > SG_NE) {
    char b0[96], b1[96];
    sg_op_error(g, "sg_compare", "unknown comparison %d for %s and %s", (int)cmp,
                sg_shape_str(a->ndim, a->shape, b0), sg_shape_str(b->ndim, b->shape, b1));
    return NULL;
  }
  if (!sg_bcast_plan(g, "sg_compare", 2, in, &p)) return NULL;
  sg_tensor *out = sg_empty(g, a->dtype, p.out_ndim, p.out_shape);
  if (!out) return NULL;
  int64_t sa = p.stride[0][p.ndim - 1], sb = p.stride[1][p.ndim - 1];
  int64_t tiles_per_row = (p.cols + TILE - 1) / TILE, n_items = p.rows * tiles_per_row;
  SG_DISPATCH(a->dtype, T, {
    const T *x = a->data, *y = b->data;
    T *o = out->data;
    SG_PARALLEL_IF(
        out->numel > SG_PAR_MIN, for (int64_t t = 0; t < n_items; t++) {
          int64_t r = t / tiles_per_row, j0 = (t % tiles_per_row) * TILE;
          int64_t j1 = j0 + TILE < p.cols ? j0 + TILE : p.cols;
          const T *xa = x + sg_bcast_row_offset(&p, 0, r), *yb = y + sg_bcast_row_offset(&p, 1, r);
          T *orow = o + r * p.cols;
          switch (cmp) {
          case SG_LT:
            COMPARE_ROW(<);
            break;
          case SG_LE:
            COMPARE_ROW(<=);
            break;
          case SG_GT:
            COMPARE_ROW(>);
            break;
          case SG_GE:
            COMPARE_ROW(>=);
            break;
          case SG_EQ:
            COMPARE_ROW(==);
            break;
          case SG_NE:
            COMPARE_ROW(!=);
            break;
          }
        });
  });
  return out;
}

/* ---- where ------------------------------------------------------------- */

/* out (contiguous, shape of the plan's output) = cond != 0 ? a : b, where the
 * plan holds cond, a and b as operands 0, 1, 2. A NULL operand reads as 0. */
static void where_kernel(const sg_bcast *p, sg_dtype dt, const void *cond, const void *a,
                         const void *b, void *out) {
  int64_t sc = p->stride[0][p->ndim - 1], sa = p->stride[1][p->ndim - 1],
          sb = p->stride[2][p->ndim - 1], numel = p->rows * p->cols;
  int64_t tiles_per_row = (p->cols + TILE - 1) / TILE, n_items = p->rows * tiles_per_row;
  SG_DISPATCH(dt, T, {
    const T *c = cond, *x = a, *y = b;
    T *o = out;
    SG_PARALLEL_IF(
        numel > SG_PAR_MIN, for (int64_t t = 0; t < n_items; t++) {
          int64_t r = t / tiles_per_row, j0 = (t % tiles_per_row) * TILE;
          int64_t j1 = j0 + TILE < p->cols ? j0 + TILE : p->cols;
          const T *crow = c + sg_bcast_row_offset(p, 0, r);
          const T *xa = x ? x + sg_bcast_row_offset(p, 1, r) : NULL;
          const T *yb = y ? y + sg_bcast_row_offset(p, 2, r) : NULL;
          T *orow = o + r * p->cols;
          for (int64_t j = j0; j < j1; j++) {
            T xv = xa ? xa[j * sa] : 0, yv = yb ? yb[j * sb] : 0;
            orow[j] = crow[j * sc] != 0 ? xv : yv;
          }
        });
  });
}

/* The gradient reaching a (take_a) or b: go where cond selects it, else 0,
 * then summed over broadcast axes into the operand's gradient. */
static void where_grad_to(sg_graph *g, const sg_bcast *p, const sg_tensor *cond,
                          const sg_tensor *go, sg_tensor *grad, bool take_a) {
  sg_tensor *masked = sg_empty(g, go->dtype, go->ndim, go->shape);
  if (!masked) return; /* out of memory: reported, the graph failed */
  where_kernel(p, go->dtype, cond->data, take_a ? go->data : NULL, take_a ? NULL : go->data,
               masked->data);
  sg_accumulate_reduced(grad, masked, true);
}

/* go is contiguous in the output shape, so it is read through a plan where
 * operands 1 and 2 are the output itself. */
static void where_backward(sg_graph *g, sg_node *n) {
  const sg_tensor *cond = n->saved, *go = n->out->grad;
  sg_tensor *ga = sg_grad_buf(g, n->in[0]), *gb = sg_grad_buf(g, n->in[1]);
  int ndims[3] = {cond->ndim, go->ndim, go->ndim};
  int64_t shapes[3][SG_MAX_DIMS];
  for (int d = 0; d < go->ndim; d++) shapes[1][d] = shapes[2][d] = go->shape[d];
  for (int d = 0; d < cond->ndim; d++) shapes[0][d] = cond->shape[d];
  sg_bcast p;
  sg_bcast_plan_shapes(3, ndims, (const int64_t(*)[SG_MAX_DIMS])shapes, go->ndim, go->shape, &p);
  if (ga) where_grad_to(g, &p, cond, go, ga, true);
  if (gb) where_grad_to(g, &p, cond, go, gb, false);
}
static const sg_op where_op = {"sg_where", where_backward};

sg_tensor *(sg_where)(sg_graph *g, sg_tensor *cond, sg_tensor *a, sg_tensor *b) {
  sg_tensor *in[3] = {cond, a, b};
  sg_bcast p;
  if (!sg_check_same_dtype(g, "sg_where", 3, in) || !sg_bcast_plan(g, "sg_where", 3, in, &p))
    return NULL;
  sg_tensor *out = sg_empty(g, a->dtype, p.out_ndim, p.out_shape);
  if (!out) return NULL;
  where_kernel(&p, a->dtype, cond->data, a->data, b->data, out->data);
  sg_node *n = sg_record(g, &where_op, out, 2, in + 1); /* cond gets no gradient */
  if (n) n->saved = cond;
  return out;
}

/* ---- detach ------------------------------------------------------------ */

sg_tensor *(sg_detach)(sg_graph *g, sg_tensor *a) {
  return a ? sg_clone(g, a) : NULL;
}
