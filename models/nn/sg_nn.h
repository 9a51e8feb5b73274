/* Neural-network building blocks on top of the library: a registry of named
 * parameters, Linear / MLP / LayerNorm layers that register their
 * parameters in it, and the cosine-annealing-with-warm-restarts learning
 * rate schedule.
 *
 * Parameters are caller-owned (heap) tensors with requires_grad set, all of
 * the registry's dtype; the registry owns them and frees them with itself.
 * Its tensor list goes straight to the optimiser:
 *   sg_adam_new(sg_params_tensors(p), sg_params_count(p), lr).
 * Layer forwards take any leading axes: x [..., in] -> [..., out]. */
#ifndef SG_NN_H
#define SG_NN_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "sinkgrad.h"

/* The shared libraries export what the public headers declare and hide the
 * rest (they are built with -fvisibility=hidden). */
#ifdef __GNUC__
#pragma GCC visibility push(default)
#endif
#ifdef __cplusplus
extern "C" {
#endif

/* ---- parameter registry -------------------------------------------------- */

enum { SG_PARAM_NAME_MAX = 96 };

typedef struct sg_params {
  sg_dtype dtype;
  int count, capacity;
  char (*names)[SG_PARAM_NAME_MAX];
  sg_tensor **tensors;
  int64_t numel; /* the scalars of all parameters */
  int64_t limit; /* > 0: at most this many scalars (sg_params_set_limit) */
} sg_params;

/* NULL when out of memory. */
sg_params *sg_params_new(sg_dtype dt);
/* limit > 0: from now on sg_params_add refuses (NULL, silently) a parameter
 * that would take the registry beyond limit scalars, before allocating it;
 * how a reader builds the model a file describes without trusting its
 * widths (no more parameters than the file holds). 0: no limit. */
void sg_params_set_limit(sg_params *p, int64_t limit);
/* Frees the registry and every parameter tensor (with its gradient). */
void sg_params_free(sg_params *p);
/* Creates a zeroed parameter of the registry's dtype with requires_grad set.
 * Returns NULL (after reporting) for a duplicate or too long name, a bad
 * shape, or when out of memory; NULL without a report beyond the limit. */
sg_tensor *sg_params_add(sg_params *p, const char *name, int ndim, const int64_t *shape);
int sg_params_count(const sg_params *p);     /* number of tensors */
int64_t sg_params_numel(const sg_params *p); /* number of scalars (trainable count) */
sg_tensor *sg_params_get(const sg_params *p, const char *name); /* NULL if absent */
const char *sg_params_name(const sg_params *p, int i);
sg_tensor *sg_params_at(const sg_params *p, int i);
/* The tensors in registration order (valid until the next sg_params_add). */
sg_tensor *const *sg_params_tensors(const sg_params *p);
/* Sum of the element counts of the parameters whose name starts with prefix. */
int64_t sg_params_numel_prefix(const sg_params *p, const char *prefix);
/* Copies every value from src into dst (same names, shapes, any dtypes);
 * 0, or -1 with nothing copied when the two do not match. */
int sg_params_copy(sg_params *dst, const sg_params *src);

/* ---- layers ------------------------------------------------------------------ */

/* y = x W^T + b, W [out, in], b [out] (or none). PyTorch's nn.Linear
 * initialisation: W and b ~ U(-1/sqrt(in), 1/sqrt(in)), W drawn first, both
 * row-major from rng. Registers "<name>.weight" and "<name>.bias". */
typedef struct sg_linear_layer {
  sg_tensor *weight, *bias; /* bias NULL without bias */
  int in, out;
} sg_linear_layer;

int sg_linear_layer_init(sg_linear_layer *l, sg_params *p, const char *name, int in, int out,
                         bool bias, sg_rng *rng); /* 0 or -1 */
sg_tensor *sg_linear_layer_forward(sg_graph *g, const sg_linear_layer *l, sg_tensor *x);

/* Linear(in, h) -> ReLU -> Linear(h, h) -> ReLU -> Linear(h, out), all with
 * bias. Parameter names follow a PyTorch nn.Sequential: "<name>.0.weight",
 * "<name>.0.bias", "<name>.2.*", "<name>.4.*". */
typedef struct sg_mlp {
  sg_linear_layer layer[3];
} sg_mlp;

int sg_mlp_init(sg_mlp *m, sg_params *p, const char *name, int in, int hidden, int out,
                sg_rng *rng); /* 0 or -1 */
sg_tensor *sg_mlp_forward(sg_graph *g, const sg_mlp *m, sg_tensor *x);
/* The same MLP applied to the concatenation [x_0, ..., x_{n-1}] along the
 * last axis without materialising it: the first Linear is split into
 * per-part column blocks of its weight, each applied to its part, and the
 * results are added with broadcasting over the leading axes. So parts
 * [B,K,1,d] and [B,K,M,d] act as the concatenation of the first expanded
 * over M, at the cost of a Linear over B*K rows instead of B*K*M. The
 * widths of the parts (1 to 3 of them) must add up to the MLP's input
 * width. The first Linear and its ReLU are one op, sg_linear_parts. */
sg_tensor *sg_mlp_forward_parts(sg_graph *g, const sg_mlp *m, int n, sg_tensor *const *parts);
/* The mean over `axis` (dropped) of sg_mlp_forward_parts: equal to
 * sg_mean of it up to round-off, but the mean is taken before the last
 * Linear (affine maps commute with means), which then runs on the averaged
 * rows only: a GNN's messages averaged over K neighbours cost a K-th of
 * that Linear. */
sg_tensor *sg_mlp_forward_parts_mean(sg_graph *g, const sg_mlp *m, int n, sg_tensor *const *parts,
                                     int axis);
/* Number of parameters of an MLP(in, h, out). */
int64_t sg_mlp_numel(int64_t in, int64_t hidden, int64_t out);

/* LayerNorm over the last axis: gain 1, bias 0, eps 1e-5. Registers
 * "<name>.weight" (gain) and "<name>.bias". */
typedef struct sg_layernorm_layer {
  sg_tensor *weight, *bias;
  int width;
  double eps;
} sg_layernorm_layer;

int sg_layernorm_layer_init(sg_layernorm_layer *l, sg_params *p, const char *name,
                            int width); /* 0 or -1 */
sg_tensor *sg_layernorm_layer_forward(sg_graph *g, const sg_layernorm_layer *l, sg_tensor *x);

/* ---- learning-rate schedule ------------------------------------------------ */

/* Cosine annealing with warm restarts (torch.optim.lr_scheduler.
 * CosineAnnealingWarmRestarts): period i lasts t0 * t_mult^i epochs, and
 * inside a period lr = lr_min + (lr_max - lr_min) (1 + cos(pi t_cur / t_i)) / 2.
 * epoch is fractional: step it per mini-batch with epoch + batch / batches. */
typedef struct sg_cosine_restarts {
  double t0;  /* first period in epochs, > 0 */
  int t_mult; /* period multiplier, >= 1 */
  double lr_min, lr_max;
} sg_cosine_restarts;

double sg_cosine_restarts_lr(const sg_cosine_restarts *s, double epoch);

#ifdef __cplusplus
}
#endif
#ifdef __GNUC__
#pragma GCC visibility pop
#endif
#endif
