/* Compares the float members of two .npz files whose names start with a
 * prefix (e.g. "param." of two training checkpoints):
 *   npz_compare A.npz B.npz PREFIX TOL
 * prints ||A - B|| / ||A|| over all those members together (the norm-wise
 * relative difference) and, for information, the largest difference of an
 * element relative to the largest |value| of its member; exit 0 when the
 * norm-wise difference is at most TOL (TOL 0: every member bit for bit), 1
 * when it is larger,
 * 2 when a file cannot be read, a member is missing from B, is not float
 * or differs in shape, or no member has the prefix. A float32 member may be
 * compared with a float64 one (never bit for bit the same). For tests/mpi_train_test.sh. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sinkgrad.h"

static double value(const sg_array *a, int64_t i) {
  return a->type == SG_NPY_F32 ? ((const float *)a->data)[i] : ((const double *)a->data)[i];
}

static bool is_float(const sg_array *a) {
  return a->type == SG_NPY_F32 || a->type == SG_NPY_F64;
}

/* Float members of one shape (float32 against float64 allowed). */
static bool same_layout(const sg_array *a, const sg_array *b) {
  if (!is_float(a) || !is_float(b) || a->ndim != b->ndim) return false;
  for (int d = 0; d < a->ndim; d++)
    if (a->shape[d] != b->shape[d]) return false;
  return true;
}

typedef struct difference {
  double sq_diff, sq_a; /* sums over every member of (a - b)^2 and a^2 */
  double worst;         /* the largest |a - b| of a member over its largest |a| */
  const char *worst_name;
  bool bitwise;
} difference;

/* Adds member a of A and b of B to d; -1 when b is missing or of another layout. */
static int add_member(const char *name, const sg_array *a, const sg_array *b, difference *d) {
  if (!b || !same_layout(a, b)) return -1;
  size_t bytes = (size_t)a->numel * (a->type == SG_NPY_F32 ? 4 : 8);
  d->bitwise &= a->type == b->type && memcmp(a->data, b->data, bytes) == 0;
  double scale = 0, diff = 0;
  for (int64_t i = 0; i < a->numel; i++) {
    double x = value(a, i), e = x - value(b, i);
    d->sq_diff += e * e, d->sq_a += x * x;
    scale = fmax(scale, fabs(x)), diff = fmax(diff, fabs(e));
  }
  double rel = scale > 0 ? diff / scale : diff;
  if (rel > d->worst) d->worst = rel, d->worst_name = name;
  return 0;
}

int main(int argc, char **argv) {
  if (argc != 5) {
    fprintf(stderr, "usage: npz_compare A.npz B.npz PREFIX TOL\n");
    return 2;
  }
  sg_io_error err;
  sg_npz *za = sg_npz_open(argv[1], &err), *zb = za ? sg_npz_open(argv[2], &err) : NULL;
  if (!za || !zb) {
    fprintf(stderr, "npz_compare: %s\n", err.msg);
    sg_npz_close(za);
    return 2;
  }
  const char *prefix = argv[3];
  double tol = atof(argv[4]);
  difference d = {.bitwise = true};
  int members = 0, status = 0;
  for (int i = 0; i < sg_npz_count(za) && status == 0; i++) {
    const char *name = sg_npz_name(za, i);
    if (strncmp(name, prefix, strlen(prefix)) != 0) continue;
    members++;
    if (add_member(name, sg_npz_get(za, name), sg_npz_get(zb, name), &d)) {
      fprintf(stderr,
              "npz_compare: member %s is missing from %s, is not float or differs in shape\n", name,
              argv[2]);
      status = 2;
    }
  }
  if (status == 0 && members == 0) {
    fprintf(stderr, "npz_compare: %s has no member named %s*\n", argv[1], prefix);
    status = 2;
  }
  if (status == 0) {
    double rel = d.sq_a > 0 ? sqrt(d.sq_diff / d.sq_a) : sqrt(d.sq_diff);
    printf("%d members %s*: %s; ||A - B|| / ||A|| = %.3g; largest element difference %.3g of "
           "its member's largest value%s%s\n",
           members, prefix, d.bitwise ? "bit for bit the same" : "differ", rel, d.worst,
           d.worst_name ? " in " : "", d.worst_name ? d.worst_name : "");
    status = (tol == 0 ? !d.bitwise : rel > tol) ? 1 : 0;
  }
  sg_npz_close(za);
  sg_npz_close(zb);
  return status;
}
