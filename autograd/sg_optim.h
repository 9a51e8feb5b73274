/* Optimisers: Adam over a list of parameter tensors (caller-owned
 * leaves with requires_grad). A step updates only the parameters that
 * received a gradient since the previous step (as PyTorch skips parameters
 * whose .grad is None), so a parameter no loss reaches is never touched. */
#ifndef SG_OPTIM_H
#define SG_OPTIM_H

#include "sg_autograd.h"

/* The shared libraries export what the public headers declare and hide the
 * rest (they are built with -fvisibility=hidden). */
#ifdef __GNUC__
#pragma GCC visibility push(default)
#endif
#ifdef __cplusplus
extern "C" {
#endif

typedef struct sg_adam {
  int n_params;
  sg_tensor **params;
  sg_tensor **m, **v; /* first and second moment estimates, in each parameter's dtype */
  int64_t *steps;     /* per-parameter step counts (bias correction) */
  double lr, beta1, beta2, eps, weight_decay;
} sg_adam;

/* Adam with PyTorch's defaults (beta 0.9/0.999, eps 1e-8, no weight decay). */
sg_adam *sg_adam_new(sg_tensor *const *params, int n_params, double lr);
void sg_adam_step(sg_adam *opt);
void sg_adam_free(sg_adam *opt);

/* Zeroes the gradients of all parameters. */
void sg_params_zero_grad(sg_tensor *const *params, int n_params);

#ifdef __cplusplus
}
#endif
#ifdef __GNUC__
#pragma GCC visibility pop
#endif
#endif
