/* Tensors: allocation hooks, error reporting, creation and element access. */
#include "sg_tensor.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- allocation hooks -------------------------------------------------- */

static void *default_alloc(size_t size, void *user) {
  (void)user;
  return malloc(size);
}
static void *default_realloc(void *p, size_t size, void *user) {
  (void)user;
  return realloc(p, size);
}
static void default_free(void *p, void *user) {
  (void)user;
  free(p);
}
static const sg_allocator default_allocator = {default_alloc, default_realloc, default_free, NULL};
static sg_allocator allocator = {default_alloc, default_realloc, default_free, NULL};

void sg_set_allocator(const sg_allocator *a) {
  allocator = a ? *a : default_allocator;
}

void *sg_malloc(size_t size) {
  return allocator.alloc(size ? size : 1, allocator.user);
}
void *sg_realloc(void *p, size_t size) {
  return allocator.realloc(p, size ? size : 1, allocator.user);
}
void sg_mfree(void *p) {
  if (p) allocator.free(p, allocator.user);
}

/* ---- errors ------------------------------------------------------------ */

static void default_error_handler(const char *op, const char *msg, const char *file, int line,
                                  void *user) {
  (void)user;
  fprintf(stderr, "sinkgrad: %s: %s (called at %s:%d)\n", op, msg, file ? file : "?", line);
  abort();
}
static sg_error_handler error_handler = default_error_handler;
static void *error_user;

void sg_set_error_handler(sg_error_handler h, void *user) {
  error_handler = h ? h : default_error_handler;
  error_user = user;
}

static void report_va(const char *op, const char *file, int line, const char *fmt, va_list ap) {
  char msg[512];
  vsnprintf(msg, sizeof msg, fmt, ap);
  error_handler(op, msg, file, line, error_user);
}

void sg_report_error(const char *op, const char *file, int line, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  report_va(op, file, line, fmt, ap);
  va_end(ap);
}

void sg_op_error(const sg_graph *g, const char *op, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  report_va(op, g ? sg_graph_file(g) : NULL, g ? sg_graph_line(g) : 0, fmt, ap);
  va_end(ap);
}

const char *sg_shape_str(int ndim, const int64_t *shape, char *buf) {
  int pos = snprintf(buf, 96, "[");
  for (int i = 0; i < ndim && pos < 90; i++)
    pos += snprintf(buf + pos, 96 - pos, i ? ", %lld" : "%lld", (long long)shape[i]);
  snprintf(buf + pos, 96 - pos, "]");
  return buf;
}

/* ---- creation ---------------------------------------------------------- */

size_t sg_dtype_size(sg_dtype dt) {
  return dt == SG_F32 ? sizeof(float) : sizeof(double);
}
const char *sg_dtype_name(sg_dtype dt) {
  return dt == SG_F32 ? "float32" : "float64";
}

static sg_tensor *arena_tensor(sg_graph *g, size_t bytes) {
  sg_tensor *t = sg_arena_alloc(g, sizeof *t);
  if (!t) return NULL;
  memset(t, 0, sizeof *t);
  t->data = sg_arena_alloc_data(g, bytes);
  t->graph = g;
  return t->data ? t : NULL;
}

static sg_tensor *heap_tensor(size_t bytes) {
  sg_tensor *t = sg_malloc(sizeof *t);
  if (!t) return NULL;
  memset(t, 0, sizeof *t);
  t->data = sg_malloc(bytes);
  if (!t->data) {
    sg_mfree(t);
    return NULL;
  }
  t->owned = true;
  return t;
}

sg_tensor *sg_empty(sg_graph *g, sg_dtype dt, int ndim, const int64_t *shape) {
  if (ndim < 0 || ndim > SG_MAX_DIMS || (dt != SG_F32 && dt != SG_F64)) {
    sg_op_error(g, "sg_empty", "ndim %d (max %d) or dtype %d is invalid", ndim, SG_MAX_DIMS,
                (int)dt);
    return NULL;
  }
  int64_t numel = 1;
  for (int i = 0; i < ndim; i++) {
    if (shape[i] < 0) {
      char b[96];
      sg_op_error(g, "sg_empty", "negative size in shape %s", sg_shape_str(ndim, shape, b));
      return NULL;
    }
    numel *= shape[i];
  }
  size_t bytes = (size_t)numel * sg_dtype_size(dt);
  sg_tensor *t = g ? arena_tensor(g, bytes) : heap_tensor(bytes);
  /* The arena reports its failure; a heap tensor's is left to its owner,
   * as malloc's is (a loader returns its own message). */
  if (!t) return NULL;
  t->dtype = dt;
  t->ndim = ndim;
  for (int i = 0; i < ndim; i++) t->shape[i] = shape[i];
  t->numel = numel;
  return t;
}

sg_tensor *sg_zeros(sg_graph *g, sg_dtype dt, int ndim, const int64_t *shape) {
  sg_tensor *t = sg_empty(g, dt, ndim, shape);
  if (t) memset(t->data, 0, (size_t)t->numel * sg_dtype_size(dt));
  return t;
}

sg_tensor *sg_full(sg_graph *g, sg_dtype dt, int ndim, const int64_t *shape, double value) {
  sg_tensor *t = sg_empty(g, dt, ndim, shape);
  if (!t) return NULL;
  for (int64_t i = 0; i < t->numel; i++) sg_set(t, i, value);
  return t;
}

sg_tensor *sg_ones(sg_graph *g, sg_dtype dt, int ndim, const int64_t *shape) {
  return sg_full(g, dt, ndim, shape, 1.0);
}

sg_tensor *sg_from_data(sg_graph *g, sg_dtype dt, int ndim, const int64_t *shape,
                        const void *data) {
  sg_tensor *t = sg_empty(g, dt, ndim, shape);
  if (t) memcpy(t->data, data, (size_t)t->numel * sg_dtype_size(dt));
  return t;
}

sg_tensor *sg_from_f64(sg_graph *g, sg_dtype dt, int ndim, const int64_t *shape,
                       const double *data) {
  sg_tensor *t = sg_empty(g, dt, ndim, shape);
  if (!t) return NULL;
  for (int64_t i = 0; i < t->numel; i++) sg_set(t, i, data[i]);
  return t;
}

sg_tensor *sg_clone(sg_graph *g, const sg_tensor *t) {
  return t ? sg_from_data(g, t->dtype, t->ndim, t->shape, t->data) : NULL;
}

sg_tensor *sg_to_dtype(sg_graph *g, const sg_tensor *t, sg_dtype dt) {
  if (!t) return NULL;
  sg_tensor *o = sg_empty(g, dt, t->ndim, t->shape);
  if (!o) return NULL;
  for (int64_t i = 0; i < t->numel; i++) sg_set(o, i, sg_get(t, i));
  return o;
}

void sg_free(sg_tensor *t) {
  if (!t || !t->owned) return;
  if (t->grad && t->grad->owned) sg_free(t->grad);
  sg_free(t->grad_spare);
  sg_mfree(t->data);
  sg_mfree(t);
}

void sg_set_requires_grad(sg_tensor *t, bool on) {
  if (t) t->requires_grad = on;
}

void sg_zero_grad(sg_tensor *t) {
  if (!t || !t->grad) return;
  if (t->grad->owned) { /* a leaf's heap buffer: keep it for the next backward */
    sg_free(t->grad_spare);
    t->grad_spare = t->grad;
  }
  t->grad = NULL;
}

/* ---- access ------------------------------------------------------------ */

double sg_get(const sg_tensor *t, int64_t i) {
  return t->dtype == SG_F32 ? (double)((const float *)t->data)[i] : ((const double *)t->data)[i];
}

void sg_set(sg_tensor *t, int64_t i, double v) {
  if (t->dtype == SG_F32)
    ((float *)t->data)[i] = (float)v;
  else
    ((double *)t->data)[i] = v;
}

float *sg_f32(const sg_tensor *t) {
  return t && t->dtype == SG_F32 ? t->data : NULL;
}
double *sg_f64(const sg_tensor *t) {
  return t && t->dtype == SG_F64 ? t->data : NULL;
}

/* x - x is 0 for a finite x and NaN otherwise; the comparisons of a block
 * are OR-ed without a branch, so the scan vectorises, and only the block
 * holding a bad element is searched element by element. */
#define FIRST_NONFINITE(T, d, n)                                                                   \
  do {                                                                                             \
    enum { BLOCK = 1024 };                                                                         \
    for (int64_t b0 = 0; b0 < (n); b0 += BLOCK) {                                                  \
      int64_t b1 = (n)-b0 < BLOCK ? (n) : b0 + BLOCK;                                              \
      int bad = 0;                                                                                 \
      for (int64_t i = b0; i < b1; i++) bad |= (d)[i] - (d)[i] != (T)0;                            \
      for (int64_t i = b0; bad && i < b1; i++)                                                     \
        if ((d)[i] - (d)[i] != (T)0) return i;                                                     \
    }                                                                                              \
  } while (0)

int64_t sg_first_nonfinite(const sg_tensor *t) {
  if (!t || !t->data) return -1;
  if (t->dtype == SG_F32) {
    const float *d = t->data;
    FIRST_NONFINITE(float, d, t->numel);
  } else {
    const double *d = t->data;
    FIRST_NONFINITE(double, d, t->numel);
  }
  return -1;
}

bool sg_same_shape(const sg_tensor *a, const sg_tensor *b) {
  if (a->ndim != b->ndim) return false;
  for (int i = 0; i < a->ndim; i++)
    if (a->shape[i] != b->shape[i]) return false;
  return true;
}
