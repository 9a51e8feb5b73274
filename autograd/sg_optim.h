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
/* One step over the parameters whose gradient (p->grad) a backward wrote
 * since the previous step. */
void sg_adam_step(sg_adam *opt);
/* One step with gradients the caller supplies: grads[i] (n == n_params
 * entries, in the order of the parameters given to sg_adam_new) is the
 * gradient of parameter i, of its dtype and shape, or NULL to leave that
 * parameter (and its step count) untouched. The parameters' own grad
 * fields are neither read nor cleared. The update is the one sg_adam_step
 * makes (the same code): equal gradients give bitwise equal parameters and
 * moments. On misuse (n not the parameter count, a gradient of another
 * dtype or shape) nothing is updated and the error handler receives the
 * op, the parameter index, both shapes and the caller's file and line;
 * returns 0, or -1 after reporting. E.g. gradients from finite differences
 * or from another framework:
 *   sg_tensor *g[2] = {grad_w, grad_b};
 *   sg_adam_step_grads(opt, g, 2); */
int(sg_adam_step_grads)(sg_adam *opt, sg_tensor *const *grads, int n, const char *file, int line);
#define sg_adam_step_grads(opt, grads, n) (sg_adam_step_grads)(opt, grads, n, __FILE__, __LINE__)
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
