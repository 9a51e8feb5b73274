/* Internal helpers shared by the op implementations (not installed).
 *
 * - SG_DISPATCH and SG_PARALLEL_IF (tensor/sg_dispatch.h).
 * - Broadcast plans walk NumPy-broadcast operands row by row.
 * - Vector math (exp, log, tanh) through SLEEF.
 * - Threading: loops run in parallel above SG_PAR_MIN elements; every output
 *   element is written by exactly one thread in a fixed order, so results
 *   do not depend on the thread count. */
#ifndef SG_KERNEL_H
#define SG_KERNEL_H

#include <string.h>
#include <tgmath.h>

#include "sg_autograd.h"
#include "sg_dispatch.h"

/* Normalises a possibly negative axis; reports and returns -1 if out of range. */
int sg_norm_axis(const sg_graph *g, const char *op, const sg_tensor *t, int axis);

/* Reports an error unless every tensor is non-NULL (silently: an earlier
 * error was reported) and all share a dtype (reported). */
bool sg_check_same_dtype(const sg_graph *g, const char *op, int n, sg_tensor *const *ts);

/* Formats the shapes of a and b (b may be NULL) into sa and sb as
 * sg_shape_str does; for error paths only, since it costs more than a small
 * op's bookkeeping. */
void sg_shape_strs(const sg_tensor *a, char *sa, const sg_tensor *b, char *sb);

/* The broadcast of n operands against a common output shape, with
 * dimensions merged where possible. Operand i's element for output position
 * (row r, column j) is at row_offset(i, r) + j * inner_stride[i]. */
typedef struct sg_bcast {
  int n_ops;
  int ndim;                                   /* merged output dims */
  int64_t shape[SG_MAX_DIMS];                 /* merged output shape */
  int64_t stride[SG_MAX_INPUTS][SG_MAX_DIMS]; /* per operand, 0 where broadcast */
  int64_t rows, cols;                         /* out = rows x cols, cols = last merged dim */
  int out_ndim;
  int64_t out_shape[SG_MAX_DIMS]; /* unmerged output shape */
} sg_bcast;

/* Builds the plan; reports "shapes ... do not broadcast" naming op. */
bool sg_bcast_plan(const sg_graph *g, const char *op, int n, sg_tensor *const *ts, sg_bcast *p);
/* Builds a plan for n operands of the given shapes against out_shape. */
bool sg_bcast_plan_shapes(int n, const int *ndims, const int64_t (*shapes)[SG_MAX_DIMS],
                          int out_ndim, const int64_t *out_shape, sg_bcast *p);
/* Offset of operand i at the start of output row r. */
static inline int64_t sg_bcast_row_offset(const sg_bcast *p, int i, int64_t r) {
  int64_t off = 0;
  for (int d = p->ndim - 2; d >= 0; d--) {
    int64_t idx = r % p->shape[d];
    r /= p->shape[d];
    off += idx * p->stride[i][d];
  }
  return off;
}
/* True if operand i is broadcast (repeated) along some output dimension. */
bool sg_bcast_is_reduced(const sg_bcast *p, int i);

/* grad_in[...] += sum of grad_out over the dimensions where grad_in was
 * broadcast (= instead of += when !accumulate; see sg_grad_dest).
 * Deterministic for every thread count. */
void sg_accumulate_reduced(sg_tensor *grad_in, const sg_tensor *grad_out, bool accumulate);

/* Vector math on contiguous arrays (y may alias x). */
void sg_vexp_f32(const float *x, float *y, int64_t n);
void sg_vexp_f64(const double *x, double *y, int64_t n);
void sg_vlog_f32(const float *x, float *y, int64_t n);
void sg_vlog_f64(const double *x, double *y, int64_t n);
void sg_vtanh_f32(const float *x, float *y, int64_t n);
void sg_vtanh_f64(const double *x, double *y, int64_t n);

#endif
