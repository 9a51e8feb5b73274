/* The flat gradient buffer of data-parallel training (nn_internal.h). */
#include <string.h>

#include "nn_internal.h"

static size_t elem_size(sg_dtype dt) {
  return dt == SG_F32 ? 4 : 8;
}

int64_t sg_grads_flat_size(sg_tensor *const *params, int n, sg_dtype dt, int tail, int *bad) {
  int64_t total = tail;
  for (int i = 0; i < n; i++) {
    if (params[i]->dtype != dt) return *bad = i, -1;
    total += params[i]->numel;
  }
  return total;
}

/* The gradient a backward wrote since the last optimiser step, or NULL. */
static sg_tensor *fresh_grad(const sg_tensor *p) {
  return p->grad_fresh ? p->grad : NULL;
}

/* n values of src times share into dst at element at (src NULL: zeros), in
 * dtype dt, rounding once. */
static void put_scaled(void *dst, sg_dtype dt, int64_t at, const void *src, int64_t n,
                       double share) {
  if (dt == SG_F32) {
    float *d = (float *)dst + at;
    const float *g = src;
    for (int64_t j = 0; j < n; j++) d[j] = g ? (float)((double)g[j] * share) : 0.0f;
  } else {
    double *d = (double *)dst + at;
    const double *g = src;
    for (int64_t j = 0; j < n; j++) d[j] = g ? g[j] * share : 0.0;
  }
}

void sg_grads_flat_pack(sg_tensor *const *params, int n, sg_dtype dt, double share,
                        const double *tail, int n_tail, void *flat) {
  int64_t at = 0;
  for (int i = 0; i < n; i++) {
    sg_tensor *grad = fresh_grad(params[i]);
    if (grad) sg_grad_materialize(grad);
    put_scaled(flat, dt, at, grad ? grad->data : NULL, params[i]->numel, share);
    at += params[i]->numel;
  }
  for (int k = 0; k < n_tail; k++) {
    if (dt == SG_F32)
      ((float *)flat)[at + k] = (float)tail[k];
    else
      ((double *)flat)[at + k] = tail[k];
  }
}

void sg_grads_flat_unpack(sg_tensor *const *params, int n, sg_dtype dt, const void *flat,
                          double *tail, int n_tail) {
  size_t elem = elem_size(dt);
  int64_t at = 0;
  for (int i = 0; i < n; i++) {
    sg_tensor *grad = fresh_grad(params[i]);
    if (grad)
      memcpy(grad->data, (const char *)flat + (size_t)at * elem, (size_t)params[i]->numel * elem);
    at += params[i]->numel;
  }
  for (int k = 0; k < n_tail; k++)
    tail[k] = dt == SG_F32 ? ((const float *)flat)[at + k] : ((const double *)flat)[at + k];
}
