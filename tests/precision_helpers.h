/* The gradient checks shared by the float32-against-float64 model tests
 * (test_precision.c: the association GNNs; test_beam_precision.c: BFGNN
 * and JointGNN), on an assoc_precision_report. */
#ifndef PRECISION_HELPERS_H
#define PRECISION_HELPERS_H

#include "assoc_train.h"
#include "sg_test.h"

/* Whole gradient vector, and each parameter tensor. A tensor whose float64
 * gradient cancels to (nearly) nothing by the models' symmetry (the same p
 * for every BS, the softmax over BSs: measured 1e-21..1e-9 of the whole
 * vector) has no meaningful relative error; it must be within 1e-5 of the
 * whole vector's norm instead. */
static const double GRAD_RTOL = 1e-4, PARAM_RTOL = 1e-3, PARAM_ATOL_OF_WHOLE = 1e-5;

static double grad_norm(const sg_tensor *t) {
  double s = 0;
  for (int64_t j = 0; t->grad && j < t->numel; j++) s += sg_get(t->grad, j) * sg_get(t->grad, j);
  return sqrt(s);
}

/* Asserts the report's whole-vector and per-tensor gradient errors (p32,
 * p64: the parameters the report compared; name says which model in a
 * failure). Returns the largest per-tensor error as a fraction of its
 * allowance. */
static double check_param_grads(const assoc_precision_report *r, const sg_params *p32,
                                const sg_params *p64, const char *name) {
  ck_assert_msg(r->grad_rel <= GRAD_RTOL,
                "%s: gradient %.3g from float64 (%lld ReLU decisions replayed, first %s)", name,
                r->grad_rel, (long long)r->relu_flips, r->first_flip);
  double whole = 0, worst = 0;
  for (int i = 0; i < r->n_params; i++) whole = hypot(whole, grad_norm(sg_params_at(p64, i)));
  for (int i = 0; i < r->n_params; i++) {
    double g64 = grad_norm(sg_params_at(p64, i)), err_norm = r->param_rel[i] * g64;
    /* a zero float64 gradient: param_rel is 0 or infinite, the float32 norm is the error */
    if (!(g64 > 0)) err_norm = grad_norm(sg_params_at(p32, i));
    double allowed = PARAM_RTOL * g64 + PARAM_ATOL_OF_WHOLE * whole;
    worst = fmax(worst, err_norm / allowed);
    ck_assert_msg(err_norm <= allowed,
                  "%s: %s gradient off by %.3g relative (%.3g of the whole vector)", name,
                  sg_params_name(p32, i), r->param_rel[i], err_norm / whole);
  }
  return worst;
}

#endif
