/* Broadcasting plans, axis and dtype checks shared by the ops. */
#include "sg_kernel.h"

#include <stdio.h>

int sg_norm_axis(const sg_graph *g, const char *op, const sg_tensor *t, int axis) {
  int a = axis < 0 ? axis + t->ndim : axis;
  if (a < 0 || a >= t->ndim) {
    char b[96];
    sg_op_error(g, op, "axis %d is out of range for shape %s", axis,
                sg_shape_str(t->ndim, t->shape, b));
    return -1;
  }
  return a;
}

bool sg_check_same_dtype(const sg_graph *g, const char *op, int n, sg_tensor *const *ts) {
  for (int i = 0; i < n; i++)
    if (!ts[i]) return false;
  for (int i = 1; i < n; i++) {
    if (ts[i]->dtype != ts[0]->dtype) {
      char b0[96], b1[96];
      sg_op_error(g, op, "dtype mismatch: %s %s and %s %s", sg_dtype_name(ts[0]->dtype),
                  sg_shape_str(ts[0]->ndim, ts[0]->shape, b0), sg_dtype_name(ts[i]->dtype),
                  sg_shape_str(ts[i]->ndim, ts[i]->shape, b1));
      return false;
    }
  }
  return true;
}

void sg_shape_strs(const sg_tensor *a, char *sa, const sg_tensor *b, char *sb) {
  sg_shape_str(a->ndim, a->shape, sa);
  if (b) sg_shape_str(b->ndim, b->shape, sb);
}

/* Drops size-1 output dims, then merges neighbours that every operand walks
 * contiguously, so that the inner loop is as long as possible. */
static void merge_dims(sg_bcast *p, int out_ndim, const int64_t *out_shape,
                       int64_t (*strides)[SG_MAX_DIMS]) {
  int nd = 0;
  for (int d = 0; d < out_ndim; d++) {
    if (out_shape[d] == 1) continue;
    bool merge = nd > 0;
    for (int i = 0; i < p->n_ops && merge; i++)
      merge = p->stride[i][nd - 1] == strides[i][d] * out_shape[d];
    if (merge) {
      p->shape[nd - 1] *= out_shape[d];
      for (int i = 0; i < p->n_ops; i++) p->stride[i][nd - 1] = strides[i][d];
    } else {
      p->shape[nd] = out_shape[d];
      for (int i = 0; i < p->n_ops; i++) p->stride[i][nd] = strides[i][d];
      nd++;
    }
  }
  if (nd == 0) {
    p->shape[0] = 1;
    for (int i = 0; i < p->n_ops; i++) p->stride[i][0] = 0;
    nd = 1;
  }
  p->ndim = nd;
  p->cols = p->shape[nd - 1];
  p->rows = 1;
  for (int d = 0; d < nd - 1; d++) p->rows *= p->shape[d];
}

bool sg_bcast_plan_shapes(int n, const int *ndims, const int64_t (*shapes)[SG_MAX_DIMS],
                          int out_ndim, const int64_t *out_shape, sg_bcast *p) {
  int64_t strides[SG_MAX_INPUTS][SG_MAX_DIMS];
  p->n_ops = n;
  p->out_ndim = out_ndim;
  for (int d = 0; d < out_ndim; d++) p->out_shape[d] = out_shape[d];
  for (int i = 0; i < n; i++) {
    int64_t s = 1;
    for (int d = out_ndim - 1; d >= 0; d--) {
      int src = d - (out_ndim - ndims[i]);
      int64_t size = src >= 0 ? shapes[i][src] : 1;
      if (size != 1 && size != out_shape[d]) return false;
      strides[i][d] = size == 1 ? 0 : s;
      s *= size;
    }
  }
  merge_dims(p, out_ndim, out_shape, strides);
  return true;
}

bool sg_bcast_plan(const sg_graph *g, const char *op, int n, sg_tensor *const *ts, sg_bcast *p) {
  int ndims[SG_MAX_INPUTS] = {0};
  int64_t shapes[SG_MAX_INPUTS][SG_MAX_DIMS];
  int64_t out_shape[SG_MAX_DIMS] = {0};
  int out_ndim = 0;
  for (int i = 0; i < n; i++) out_ndim = ts[i]->ndim > out_ndim ? ts[i]->ndim : out_ndim;
  bool ok = true;
  for (int d = 0; d < out_ndim; d++) {
    out_shape[d] = 1;
    for (int i = 0; i < n; i++) {
      int src = d - (out_ndim - ts[i]->ndim);
      int64_t size = src >= 0 ? ts[i]->shape[src] : 1;
      if (size == 1) continue;
      if (out_shape[d] != 1 && out_shape[d] != size) ok = false;
      out_shape[d] = size;
    }
  }
  for (int i = 0; i < n; i++) {
    ndims[i] = ts[i]->ndim;
    for (int d = 0; d < ts[i]->ndim; d++) shapes[i][d] = ts[i]->shape[d];
  }
  if (ok)
    ok = sg_bcast_plan_shapes(n, ndims, (const int64_t(*)[SG_MAX_DIMS])shapes, out_ndim, out_shape,
                              p);
  if (!ok) {
    char msg[400];
    int pos = snprintf(msg, sizeof msg, "shapes");
    for (int i = 0; i < n; i++) {
      char b[96];
      pos += snprintf(msg + pos, sizeof msg - pos, "%s %s", i ? (i == n - 1 ? " and" : ",") : "",
                      sg_shape_str(ts[i]->ndim, ts[i]->shape, b));
    }
    sg_op_error(g, op, "%s do not broadcast", msg);
  }
  return ok;
}

bool sg_bcast_is_reduced(const sg_bcast *p, int i) {
  for (int d = 0; d < p->ndim; d++)
    if (p->stride[i][d] == 0 && p->shape[d] > 1) return true;
  return false;
}

void sg_accumulate_reduced(sg_tensor *grad_in, const sg_tensor *grad_out, bool accumulate) {
  int ndims[1] = {grad_in->ndim};
  int64_t shapes[1][SG_MAX_DIMS];
  for (int d = 0; d < grad_in->ndim; d++) shapes[0][d] = grad_in->shape[d];
  sg_bcast p;
  sg_bcast_plan_shapes(1, ndims, (const int64_t(*)[SG_MAX_DIMS])shapes, grad_out->ndim,
                       grad_out->shape, &p);
  int64_t rows = p.rows, cols = p.cols, s = p.stride[0][p.ndim - 1];
  bool reduced = sg_bcast_is_reduced(&p, 0);
  if (!accumulate && !reduced && grad_in->data == grad_out->data) return; /* in place */
  SG_DISPATCH(grad_in->dtype, T, {
    T *gi = grad_in->data;
    const T *go = grad_out->data;
    if (!reduced) {
      /* Same number of elements in the same order: a flat, parallel add. */
      int64_t n = grad_in->numel;
      SG_PARALLEL_IF(n > SG_PAR_MIN,
                     for (int64_t i = 0; i < n; i++) gi[i] = (accumulate ? gi[i] : 0) + go[i];);
    } else {
      if (!accumulate) memset(gi, 0, (size_t)grad_in->numel * sizeof(T));
      /* Serial in output order: a fixed summation order for any thread count. */
      for (int64_t r = 0; r < rows; r++) {
        T *dst = gi + sg_bcast_row_offset(&p, 0, r);
        const T *src = go + r * cols;
        if (s == 0) {
          T acc = 0;
          for (int64_t j = 0; j < cols; j++) acc += src[j];
          dst[0] += acc;
        } else {
          for (int64_t j = 0; j < cols; j++) dst[j * s] += src[j];
        }
      }
    }
  });
}
