/* Shape ops: reshape, permute/transpose, concat, slice, expand and repeat,
 * each with its forward and backward side by side.
 *
 * Every output is a fresh contiguous copy in the graph's arena; no output
 * aliases its input, so writing to an output never changes an input.
 *
 * Almost every forward and backward here is one "strided copy": walk an
 * index space and move each element from a source offset to a destination
 * offset (or add it there), where both offsets are linear in the index. A
 * copy plan describes that walk; it drops size-1 dimensions and merges
 * neighbours that both sides walk contiguously, so the inner loop is as long
 * as possible (a memcpy when both sides are contiguous there).
 *
 * Backward formulas (go = gradient of the output):
 *   reshape: ga += go (same element order)
 *   permute: ga += go permuted by the inverse permutation
 *   concat:  g_i += the slab of go that input i was copied to
 *   slice:   ga[start:end along axis] += go
 *   expand:  ga += go summed over the expanded axes
 *   repeat:  ga += the sum of go over every tile
 * Each accumulating copy writes every destination element at most once, so
 * the threaded loops never race and results do not depend on thread count. */
#include "sg_ops.h"
#include "sg_kernel.h"

#include <stdio.h>

/* Repeat views its output with two loop dimensions per tensor dimension. */
enum { PLAN_MAX_DIMS = 2 * SG_MAX_DIMS, TILE = 4096, BLOCK = 16 };

typedef struct copy_plan {
  int nd;
  int64_t numel;
  int64_t shape[PLAN_MAX_DIMS];
  int64_t dst_stride[PLAN_MAX_DIMS], src_stride[PLAN_MAX_DIMS];
  int64_t dst_off, src_off; /* in elements */
} copy_plan;

static copy_plan plan_new(int64_t dst_off, int64_t src_off) {
  return (copy_plan){.nd = 0, .numel = 1, .dst_off = dst_off, .src_off = src_off};
}

/* Appends an outer-to-inner loop dimension, merging it into the previous one
 * when both sides step through the pair as one contiguous range. */
static void plan_push(copy_plan *p, int64_t size, int64_t dst_stride, int64_t src_stride) {
  p->numel *= size;
  if (size == 1) return;
  int last = p->nd - 1;
  if (last >= 0 && p->dst_stride[last] == size * dst_stride &&
      p->src_stride[last] == size * src_stride) {
    p->shape[last] *= size;
    p->dst_stride[last] = dst_stride;
    p->src_stride[last] = src_stride;
    return;
  }
  p->shape[p->nd] = size;
  p->dst_stride[p->nd] = dst_stride;
  p->src_stride[p->nd] = src_stride;
  p->nd++;
}

/* Row-major element strides of a shape. */
static void contiguous_strides(int ndim, const int64_t *shape, int64_t *stride) {
  int64_t s = 1;
  for (int d = ndim - 1; d >= 0; d--) {
    stride[d] = s;
    s *= shape[d];
  }
}

/* Offsets of the start of row r (all plan dims but the innermost). */
static void plan_row_offsets(const copy_plan *p, int64_t r, int64_t *dst, int64_t *src) {
  int64_t d_off = p->dst_off, s_off = p->src_off;
  for (int d = p->nd - 2; d >= 0; d--) {
    int64_t idx = r % p->shape[d];
    r /= p->shape[d];
    d_off += idx * p->dst_stride[d];
    s_off += idx * p->src_stride[d];
  }
  *dst = d_off;
  *src = s_off;
}

#define COPY_RUN(OP)                                                                               \
  do {                                                                                             \
    if (ds == 1 && ss == 1)                                                                        \
      for (int64_t j = j0; j < j1; j++) drow[j] OP srow[j];                                        \
    else                                                                                           \
      for (int64_t j = j0; j < j1; j++) drow[j * ds] OP srow[j * ss];                              \
  } while (0)

/* Runs the plan row by row: dst[...] = src[...] or, with accumulate,
 * dst[...] += src[...]. Work items are (row, column tile) pairs so a single
 * long row still uses every thread. */
static void plan_run_rows(const copy_plan *p, sg_dtype dt, void *dst, const void *src,
                          bool accumulate) {
  int64_t cols = p->nd ? p->shape[p->nd - 1] : 1;
  int64_t ds = p->nd ? p->dst_stride[p->nd - 1] : 1, ss = p->nd ? p->src_stride[p->nd - 1] : 1;
  int64_t tiles_per_row = (cols + TILE - 1) / TILE, n_items = p->numel / cols * tiles_per_row;
  size_t elem = sg_dtype_size(dt);
  SG_DISPATCH(dt, T, {
    T *d = dst;
    const T *s = src;
    SG_PARALLEL_IF(
        p->numel > SG_PAR_MIN, for (int64_t t = 0; t < n_items; t++) {
          int64_t r = t / tiles_per_row, j0 = (t % tiles_per_row) * TILE;
          int64_t j1 = j0 + TILE < cols ? j0 + TILE : cols, d_off, s_off;
          plan_row_offsets(p, r, &d_off, &s_off);
          T *drow = d + d_off;
          const T *srow = s + s_off;
          if (!accumulate && ds == 1 && ss == 1)
            memcpy(drow + j0, srow + j0, (size_t)(j1 - j0) * elem);
          else if (accumulate)
            COPY_RUN(+=);
          else
            COPY_RUN(=);
        });
  });
}

/* A transposing copy (dst contiguous along the innermost loop, src along
 * another loop dim k) reads one cache line per element when run row by row.
 * It runs in BLOCK x BLOCK tiles of (k, innermost) instead, so the lines a
 * tile touches stay in cache. Returns k, or -1 if tiling does not apply. */
static int plan_tile_axis(const copy_plan *p) {
  int last = p->nd - 1;
  if (p->nd < 2 || p->dst_stride[last] != 1 || p->src_stride[last] == 1 || p->shape[last] < BLOCK)
    return -1;
  for (int d = 0; d < last; d++)
    if (p->src_stride[d] == 1 && p->shape[d] >= BLOCK) return d;
  return -1;
}

/* Offsets of batch b, counting over every loop dim except k and the last. */
static void plan_batch_offsets(const copy_plan *p, int k, int64_t b, int64_t *dst, int64_t *src) {
  int64_t d_off = p->dst_off, s_off = p->src_off;
  for (int d = p->nd - 2; d >= 0; d--) {
    if (d == k) continue;
    int64_t idx = b % p->shape[d];
    b /= p->shape[d];
    d_off += idx * p->dst_stride[d];
    s_off += idx * p->src_stride[d];
  }
  *dst = d_off;
  *src = s_off;
}

#define TILE_RUN(OP)                                                                               \
  for (int64_t i = i0; i < i1; i++) {                                                              \
    T *drow = d + d_off + i * dk;                                                                  \
    const T *srow = s + s_off + i;                                                                 \
    for (int64_t j = j0; j < j1; j++) drow[j] OP srow[j * ss];                                     \
  }

static void plan_run_tiled(const copy_plan *p, int k, sg_dtype dt, void *dst, const void *src,
                           bool accumulate) {
  int last = p->nd - 1;
  int64_t nk = p->shape[k], nl = p->shape[last], dk = p->dst_stride[k], ss = p->src_stride[last];
  int64_t bk = (nk + BLOCK - 1) / BLOCK, bl = (nl + BLOCK - 1) / BLOCK;
  int64_t n_items = p->numel / (nk * nl) * bk * bl;
  SG_DISPATCH(dt, T, {
    T *d = dst;
    const T *s = src;
    SG_PARALLEL_IF(
        p->numel > SG_PAR_MIN, for (int64_t t = 0; t < n_items; t++) {
          int64_t j0 = (t % bl) * BLOCK, i0 = (t / bl % bk) * BLOCK, d_off, s_off;
          int64_t j1 = j0 + BLOCK < nl ? j0 + BLOCK : nl, i1 = i0 + BLOCK < nk ? i0 + BLOCK : nk;
          plan_batch_offsets(p, k, t / (bl * bk), &d_off, &s_off);
          if (accumulate) {
            TILE_RUN(+=)
          } else {
            TILE_RUN(=)
          }
        });
  });
}

/* Runs the plan. Accumulating plans must write each dst element once. */
static void plan_run(const copy_plan *p, sg_dtype dt, void *dst, const void *src, bool accumulate) {
  if (p->numel == 0) return;
  int k = plan_tile_axis(p);
  if (k >= 0)
    plan_run_tiled(p, k, dt, dst, src, accumulate);
  else
    plan_run_rows(p, dt, dst, src, accumulate);
}

/* dst (numel elements) = or += src, flat. */
static void flat_copy(sg_dtype dt, void *dst, const void *src, int64_t numel, bool accumulate) {
  copy_plan p = plan_new(0, 0);
  plan_push(&p, numel, 1, 1);
  plan_run(&p, dt, dst, src, accumulate);
}

/* ---- reshape ----------------------------------------------------------- */

static void reshape_backward(sg_graph *g, sg_node *n) {
  bool acc;
  sg_tensor *ga = sg_grad_dest_inplace(g, n, n->in[0], &acc);
  if (ga && ga->data != n->out->grad->data) /* else: taken over, nothing to copy */
    flat_copy(ga->dtype, ga->data, n->out->grad->data, ga->numel, acc);
}
static const sg_op reshape_op = {"sg_reshape", reshape_backward};

/* Resolves a target shape with at most one -1 against numel into out. */
static bool resolve_shape(sg_graph *g, const sg_tensor *a, int ndim, const int64_t *shape,
                          int64_t *out) {
  char b0[96], b1[96];
  if (ndim < 0 || ndim > SG_MAX_DIMS || (ndim > 0 && !shape)) {
    sg_op_error(g, "sg_reshape", "target ndim %d is invalid (max %d) for input %s", ndim,
                SG_MAX_DIMS, sg_shape_str(a->ndim, a->shape, b0));
    return false;
  }
  int infer = -1;
  int64_t known = 1;
  for (int d = 0; d < ndim; d++) {
    out[d] = shape[d];
    if (shape[d] == -1 && infer < 0) {
      infer = d;
    } else if (shape[d] < 0) {
      sg_op_error(g, "sg_reshape",
                  "target shape %s has a negative size or more than one -1 "
                  "(input %s)",
                  sg_shape_str(ndim, shape, b1), sg_shape_str(a->ndim, a->shape, b0));
      return false;
    } else {
      known *= shape[d];
    }
  }
  bool ok = infer >= 0 ? known > 0 && a->numel % known == 0 : known == a->numel;
  if (!ok) {
    sg_op_error(g, "sg_reshape", "cannot reshape %s (%lld elements) to %s",
                sg_shape_str(a->ndim, a->shape, b0), (long long)a->numel,
                sg_shape_str(ndim, shape, b1));
    return false;
  }
  if (infer >= 0) out[infer] = a->numel / known;
  return true;
}

sg_tensor *(sg_reshape)(sg_graph *g, sg_tensor *a, int ndim, const int64_t *shape) {
  if (!a) return NULL;
  int64_t target[SG_MAX_DIMS];
  if (!resolve_shape(g, a, ndim, shape, target)) return NULL;
  sg_tensor *out = sg_empty(g, a->dtype, ndim, target);
  if (!out) return NULL;
  flat_copy(a->dtype, out->data, a->data, a->numel, false);
  sg_record(g, &reshape_op, out, 1, &a);
  return out;
}

/* ---- permute and transpose --------------------------------------------- */

/* The gradient of out = permute(a, perm) walks ga contiguously: ga's axis
 * perm[d] is out's axis d. */
static void permute_backward(sg_graph *g, sg_node *n) {
  bool acc;
  sg_tensor *ga = sg_grad_dest(g, n->in[0], &acc);
  if (!ga) return;
  const sg_tensor *go = n->out->grad;
  int64_t go_stride[SG_MAX_DIMS], ga_stride[SG_MAX_DIMS], src_stride_for_ga[SG_MAX_DIMS];
  contiguous_strides(go->ndim, go->shape, go_stride);
  contiguous_strides(ga->ndim, ga->shape, ga_stride);
  for (int d = 0; d < go->ndim; d++) src_stride_for_ga[n->iarg[d]] = go_stride[d];
  copy_plan p = plan_new(0, 0);
  for (int d = 0; d < ga->ndim; d++)
    plan_push(&p, ga->shape[d], ga_stride[d], src_stride_for_ga[d]);
  plan_run(&p, ga->dtype, ga->data, go->data, acc);
}
static const sg_op permute_op = {"sg_permute", permute_backward};
static const sg_op transpose_op = {"sg_transpose", permute_backward};

/* Copies a with its axes reordered: out axis d is a's axis perm[d] (already
 * validated and normalised). */
static sg_tensor *permute_apply(sg_graph *g, const sg_op *op, sg_tensor *a, const int *perm) {
  int64_t shape[SG_MAX_DIMS], out_stride[SG_MAX_DIMS], in_stride[SG_MAX_DIMS];
  for (int d = 0; d < a->ndim; d++) shape[d] = a->shape[perm[d]];
  sg_tensor *out = sg_empty(g, a->dtype, a->ndim, shape);
  if (!out) return NULL;
  contiguous_strides(a->ndim, shape, out_stride);
  contiguous_strides(a->ndim, a->shape, in_stride);
  copy_plan p = plan_new(0, 0);
  for (int d = 0; d < a->ndim; d++) plan_push(&p, shape[d], out_stride[d], in_stride[perm[d]]);
  plan_run(&p, a->dtype, out->data, a->data, false);
  sg_node *n = sg_record(g, op, out, 1, &a);
  if (n)
    for (int d = 0; d < a->ndim; d++) n->iarg[d] = perm[d];
  return out;
}

static const char *perm_str(int ndim, const int *perm, char *buf) {
  int64_t wide[SG_MAX_DIMS];
  for (int d = 0; d < ndim; d++) wide[d] = perm[d];
  return sg_shape_str(ndim, wide, buf);
}

sg_tensor *(sg_permute)(sg_graph *g, sg_tensor *a, const int *perm) {
  if (!a) return NULL;
  int norm[SG_MAX_DIMS];
  bool seen[SG_MAX_DIMS] = {false}, ok = perm || a->ndim == 0;
  for (int d = 0; ok && d < a->ndim; d++) {
    norm[d] = perm[d] < 0 ? perm[d] + a->ndim : perm[d];
    ok = norm[d] >= 0 && norm[d] < a->ndim && !seen[norm[d]];
    if (ok) seen[norm[d]] = true;
  }
  if (!ok) {
    char b0[96], b1[96];
    sg_op_error(g, "sg_permute", "perm %s is not a permutation of the %d axes of %s",
                perm ? perm_str(a->ndim, perm, b1) : "NULL", a->ndim,
                sg_shape_str(a->ndim, a->shape, b0));
    return NULL;
  }
  return permute_apply(g, &permute_op, a, norm);
}

sg_tensor *(sg_transpose)(sg_graph *g, sg_tensor *a, int axis0, int axis1) {
  if (!a) return NULL;
  int x0 = sg_norm_axis(g, "sg_transpose", a, axis0);
  int x1 = x0 < 0 ? -1 : sg_norm_axis(g, "sg_transpose", a, axis1);
  if (x1 < 0) return NULL;
  int perm[SG_MAX_DIMS];
  for (int d = 0; d < a->ndim; d++) perm[d] = d;
  perm[x0] = x1;
  perm[x1] = x0;
  return permute_apply(g, &transpose_op, a, perm);
}

/* ---- concat ------------------------------------------------------------ */
/* A concat may have more inputs than a node holds, so the node keeps the
 * input list in saved (iarg[0] = count, iarg[1] = axis) and is recorded
 * with one representative input that requires a gradient. */

/* The plan copying between input t (contiguous) and its slab of the
 * concatenated tensor, which starts at `offset` along axis. */
static copy_plan slab_plan(const sg_tensor *t, const sg_tensor *whole, int axis, int64_t offset,
                           bool to_whole) {
  int64_t t_stride[SG_MAX_DIMS], w_stride[SG_MAX_DIMS];
  contiguous_strides(t->ndim, t->shape, t_stride);
  contiguous_strides(whole->ndim, whole->shape, w_stride);
  int64_t whole_off = offset * w_stride[axis];
  copy_plan p = to_whole ? plan_new(whole_off, 0) : plan_new(0, whole_off);
  for (int d = 0; d < t->ndim; d++)
    plan_push(&p, t->shape[d], to_whole ? w_stride[d] : t_stride[d],
              to_whole ? t_stride[d] : w_stride[d]);
  return p;
}

static void concat_backward(sg_graph *g, sg_node *n) {
  sg_tensor *const *ts = n->saved;
  int axis = (int)n->iarg[1];
  int64_t offset = 0;
  for (int64_t i = 0; i < n->iarg[0]; i++) {
    sg_tensor *gi = sg_grad_buf(g, ts[i]);
    if (gi) {
      copy_plan p = slab_plan(gi, n->out->grad, axis, offset, false);
      plan_run(&p, gi->dtype, gi->data, n->out->grad->data, true);
    }
    offset += ts[i]->shape[axis];
  }
}
static const sg_op concat_op = {"sg_concat", concat_backward};

/* Every input must match ts[0] in dtype, rank and every dim but axis. */
static bool concat_check(sg_graph *g, int n, sg_tensor *const *ts, int axis) {
  for (int i = 1; i < n; i++) {
    const sg_tensor *t = ts[i];
    bool ok = t->dtype == ts[0]->dtype && t->ndim == ts[0]->ndim;
    for (int d = 0; ok && d < t->ndim; d++) ok = d == axis || t->shape[d] == ts[0]->shape[d];
    if (!ok) {
      char b0[96], b1[96];
      sg_op_error(g, "sg_concat", "input %d %s %s does not match input 0 %s %s outside axis %d", i,
                  sg_dtype_name(t->dtype), sg_shape_str(t->ndim, t->shape, b1),
                  sg_dtype_name(ts[0]->dtype), sg_shape_str(ts[0]->ndim, ts[0]->shape, b0), axis);
      return false;
    }
  }
  return true;
}

static void concat_record(sg_graph *g, sg_tensor *out, int n, sg_tensor *const *ts, int axis) {
  sg_tensor *rep = ts[0];
  for (int i = 0; i < n; i++)
    if (ts[i]->requires_grad) {
      rep = ts[i];
      break;
    }
  sg_node *node = sg_record(g, &concat_op, out, 1, &rep);
  if (!node) return;
  sg_tensor **list = sg_arena_alloc(g, (size_t)n * sizeof *list);
  if (!list) return; /* out of memory: the graph failed, no backward runs */
  for (int i = 0; i < n; i++) list[i] = ts[i];
  node->saved = list;
  node->iarg[0] = n;
  node->iarg[1] = axis;
}

sg_tensor *(sg_concat)(sg_graph *g, int n, sg_tensor *const *ts, int axis) {
  if (n < 1 || !ts) {
    sg_op_error(g, "sg_concat", "needs at least one input, got n = %d%s", n,
                ts ? "" : " and a NULL list");
    return NULL;
  }
  for (int i = 0; i < n; i++)
    if (!ts[i]) return NULL;
  int ax = sg_norm_axis(g, "sg_concat", ts[0], axis);
  if (ax < 0 || !concat_check(g, n, ts, ax)) return NULL;
  int64_t shape[SG_MAX_DIMS];
  for (int d = 0; d < ts[0]->ndim; d++) shape[d] = ts[0]->shape[d];
  shape[ax] = 0;
  for (int i = 0; i < n; i++) shape[ax] += ts[i]->shape[ax];
  sg_tensor *out = sg_empty(g, ts[0]->dtype, ts[0]->ndim, shape);
  if (!out) return NULL;
  int64_t offset = 0;
  for (int i = 0; i < n; i++) {
    copy_plan p = slab_plan(ts[i], out, ax, offset, true);
    plan_run(&p, out->dtype, out->data, ts[i]->data, false);
    offset += ts[i]->shape[ax];
  }
  concat_record(g, out, n, ts, ax);
  return out;
}

/* ---- slice ------------------------------------------------------------- */
/* Negative start/end count from the end as in Python; unlike Python, bounds
 * are not clamped: after normalising, 0 <= start <= end <= size is required
 * and anything else is reported. start == end gives an empty axis. */

static void slice_backward(sg_graph *g, sg_node *n) {
  sg_tensor *ga = sg_grad_buf(g, n->in[0]);
  if (!ga) return;
  copy_plan p = slab_plan(n->out->grad, ga, (int)n->iarg[0], n->iarg[1], true);
  plan_run(&p, ga->dtype, ga->data, n->out->grad->data, true);
}
static const sg_op slice_op = {"sg_slice", slice_backward};

sg_tensor *(sg_slice)(sg_graph *g, sg_tensor *a, int axis, int64_t start, int64_t end) {
  if (!a) return NULL;
  int ax = sg_norm_axis(g, "sg_slice", a, axis);
  if (ax < 0) return NULL;
  int64_t size = a->shape[ax];
  int64_t s = start < 0 ? start + size : start, e = end < 0 ? end + size : end;
  if (s < 0 || e > size || s > e) {
    char b[96];
    sg_op_error(g, "sg_slice", "range [%lld, %lld) is out of bounds for axis %d of size %lld in %s",
                (long long)start, (long long)end, axis, (long long)size,
                sg_shape_str(a->ndim, a->shape, b));
    return NULL;
  }
  int64_t shape[SG_MAX_DIMS];
  for (int d = 0; d < a->ndim; d++) shape[d] = a->shape[d];
  shape[ax] = e - s;
  sg_tensor *out = sg_empty(g, a->dtype, a->ndim, shape);
  if (!out) return NULL;
  copy_plan p = slab_plan(out, a, ax, s, false);
  plan_run(&p, a->dtype, out->data, a->data, false);
  sg_node *n = sg_record(g, &slice_op, out, 1, &a);
  if (n) {
    n->iarg[0] = ax;
    n->iarg[1] = s;
  }
  return out;
}

/* ---- expand ------------------------------------------------------------ */
/* NumPy broadcast_to: shape has at least a->ndim entries; a's dims align
 * with its trailing entries and each must equal the target or be 1. */

static void expand_backward(sg_graph *g, sg_node *n) {
  sg_tensor *ga = sg_grad_buf(g, n->in[0]);
  if (ga) sg_accumulate_reduced(ga, n->out->grad, true);
}
static const sg_op expand_op = {"sg_expand", expand_backward};

static bool expand_check(sg_graph *g, const sg_tensor *a, int ndim, const int64_t *shape) {
  char b0[96], b1[96];
  if (ndim < a->ndim || ndim > SG_MAX_DIMS || (!shape && ndim > 0)) {
    sg_op_error(g, "sg_expand", "cannot broadcast %s to %d dims (need %d to %d)",
                sg_shape_str(a->ndim, a->shape, b0), ndim, a->ndim, SG_MAX_DIMS);
    return false;
  }
  bool ok = true;
  for (int d = 0; ok && d < ndim; d++) {
    int src = d - (ndim - a->ndim);
    ok = shape[d] >= 0 && (src < 0 || a->shape[src] == 1 || a->shape[src] == shape[d]);
  }
  if (!ok)
    sg_op_error(g, "sg_expand", "cannot broadcast %s to %s", sg_shape_str(a->ndim, a->shape, b0),
                sg_shape_str(ndim, shape, b1));
  return ok;
}

sg_tensor *(sg_expand)(sg_graph *g, sg_tensor *a, int ndim, const int64_t *shape) {
  if (!a) return NULL;
  if (!expand_check(g, a, ndim, shape)) return NULL;
  sg_tensor *out = sg_empty(g, a->dtype, ndim, shape);
  if (!out) return NULL;
  int64_t out_stride[SG_MAX_DIMS], in_stride[SG_MAX_DIMS];
  contiguous_strides(ndim, shape, out_stride);
  contiguous_strides(a->ndim, a->shape, in_stride);
  copy_plan p = plan_new(0, 0);
  for (int d = 0; d < ndim; d++) {
    int src = d - (ndim - a->ndim);
    bool broadcast = src < 0 || (a->shape[src] == 1 && shape[d] != 1);
    plan_push(&p, shape[d], out_stride[d], broadcast ? 0 : in_stride[src]);
  }
  plan_run(&p, a->dtype, out->data, a->data, false);
  sg_record(g, &expand_op, out, 1, &a);
  return out;
}

/* ---- repeat ------------------------------------------------------------ */
/* reps has exactly a->ndim entries (>= 0; no new leading axes, unlike
 * torch): out.shape[d] = a.shape[d] * reps[d], and out viewed as
 * [reps[0], a.shape[0], reps[1], a.shape[1], ...] holds a in every tile. */

/* ga row (all dims but the last) += the matching row of every tile of go,
 * tiles in row-major order: a fixed summation order for every element. */
static void repeat_backward(sg_graph *g, sg_node *n) {
  sg_tensor *ga = sg_grad_buf(g, n->in[0]);
  if (!ga || ga->numel == 0) return;
  const sg_tensor *go = n->out->grad;
  int nd = ga->ndim;
  const int64_t *reps = n->saved;
  int64_t go_stride[SG_MAX_DIMS], n_tiles = 1;
  contiguous_strides(nd, go->shape, go_stride);
  for (int d = 0; d < nd; d++) n_tiles *= reps[d];
  int64_t cols = nd ? ga->shape[nd - 1] : 1, rows = ga->numel / cols;
  SG_DISPATCH(ga->dtype, T, {
    T *gi = ga->data;
    const T *gout = go->data;
    SG_PARALLEL_IF(
        go->numel > SG_PAR_MIN, for (int64_t r = 0; r < rows; r++) {
          int64_t base = 0, rem = r; /* offset of this row inside tile 0 of go */
          for (int d = nd - 2; d >= 0; d--) {
            base += (rem % ga->shape[d]) * go_stride[d];
            rem /= ga->shape[d];
          }
          T *dst = gi + r * cols;
          for (int64_t t = 0; t < n_tiles; t++) {
            int64_t off = base, k = t;
            for (int d = nd - 1; d >= 0; d--) {
              off += (k % reps[d]) * ga->shape[d] * go_stride[d];
              k /= reps[d];
            }
            const T *src = gout + off;
            for (int64_t j = 0; j < cols; j++) dst[j] += src[j];
          }
        });
  });
}
static const sg_op repeat_op = {"sg_repeat", repeat_backward};

sg_tensor *(sg_repeat)(sg_graph *g, sg_tensor *a, const int64_t *reps) {
  if (!a) return NULL;
  bool ok = reps || a->ndim == 0;
  for (int d = 0; ok && d < a->ndim; d++) ok = reps[d] >= 0;
  if (!ok) {
    char b0[96], b1[96];
    sg_op_error(g, "sg_repeat", "reps %s must hold %d non-negative counts for %s",
                reps ? sg_shape_str(a->ndim, reps, b1) : "NULL", a->ndim,
                sg_shape_str(a->ndim, a->shape, b0));
    return NULL;
  }
  int64_t shape[SG_MAX_DIMS], out_stride[SG_MAX_DIMS], in_stride[SG_MAX_DIMS];
  for (int d = 0; d < a->ndim; d++) shape[d] = a->shape[d] * reps[d];
  sg_tensor *out = sg_empty(g, a->dtype, a->ndim, shape);
  if (!out) return NULL;
  contiguous_strides(a->ndim, shape, out_stride);
  contiguous_strides(a->ndim, a->shape, in_stride);
  copy_plan p = plan_new(0, 0);
  for (int d = 0; d < a->ndim; d++) {
    plan_push(&p, reps[d], a->shape[d] * out_stride[d], 0);
    plan_push(&p, a->shape[d], out_stride[d], in_stride[d]);
  }
  plan_run(&p, a->dtype, out->data, a->data, false);
  sg_node *n = sg_record(g, &repeat_op, out, 1, &a);
  if (n) {
    int64_t *saved = sg_arena_alloc(g, SG_MAX_DIMS * sizeof *saved);
    if (!saved) return NULL;
    for (int d = 0; d < a->ndim; d++) saved[d] = reps[d];
    n->saved = saved;
  }
  return out;
}
