/* sinkgrad differentiable combinatorial layers: softmax, LayerNorm,
 * Gumbel-Softmax, capacity Sinkhorn and scaled dot-product attention.
 * Formulas and gradients: docs/layers.md. */
#ifndef SG_LAYERS_H
#define SG_LAYERS_H

#include "sg_ops.h"

/* The shared libraries export what the public headers declare and hide the
 * rest (they are built with -fvisibility=hidden). */
#ifdef __GNUC__
#pragma GCC visibility push(default)
#endif
#ifdef __cplusplus
extern "C" {
#endif

/* ---- ops/softmax.c ----------------------------------------------------- */
/* Stable for logits of magnitude 1e4 and for -inf entries (masked), as long
 * as every slice along axis has one finite entry. */
sg_tensor *(sg_softmax)(sg_graph *g, sg_tensor *x, int axis);
sg_tensor *(sg_log_softmax)(sg_graph *g, sg_tensor *x, int axis);
/* softmax((logits + G) / tau) along axis. noise: the Gumbel sample G (same
 * shape as logits) or NULL to draw it from rng. hard: the forward is the
 * one-hot of the argmax (ties: lowest index) while the gradient is the soft
 * sample's (straight-through). */
sg_tensor *(sg_gumbel_softmax)(sg_graph *g, sg_tensor *logits, double tau, int axis, bool hard,
                               sg_tensor *noise, sg_rng *rng);
#define sg_softmax(g, ...) (sg_softmax)(SG_AT(g), __VA_ARGS__)
#define sg_log_softmax(g, ...) (sg_log_softmax)(SG_AT(g), __VA_ARGS__)
#define sg_gumbel_softmax(g, ...) (sg_gumbel_softmax)(SG_AT(g), __VA_ARGS__)

/* ---- ops/layernorm.c --------------------------------------------------- */
/* Normalises over the last axis (width D): (x - mean) / sqrt(var + eps) *
 * gain + bias, biased variance as PyTorch. gain and bias: [D] or NULL. */
sg_tensor *(sg_layer_norm)(sg_graph *g, sg_tensor *x, sg_tensor *gain, sg_tensor *bias, double eps);
#define sg_layer_norm(g, ...) (sg_layer_norm)(SG_AT(g), __VA_ARGS__)

/* ---- ops/sinkhorn.c ---------------------------------------------------- */
typedef enum sg_sinkhorn_grad {
  SG_SINKHORN_UNROLLED, /* backward through every iteration run */
  SG_SINKHORN_IMPLICIT  /* differentiate the fixed point; memory independent of iterations */
} sg_sinkhorn_grad;

typedef struct sg_sinkhorn_info {
  int iters;         /* iterations run (largest over the batch) */
  double col_excess; /* largest remaining column excess over capacity (mass units) */
  bool converged;    /* col_excess < tol for every sample */
  /* The column step caps a column when its mass exceeds col_cap: a kink.
   * kink_margin is the smallest |mass / col_cap - 1| any column step after
   * the first decided on (over the batch; infinite after one iteration);
   * near_kink counts the samples whose margin is below
   * SG_SINKHORN_NEAR_KINK_ULPS units of the dtype's round-off, where the
   * decision, and so the unrolled gradient, may differ between float32 and
   * float64 or between two summation orders. */
  double kink_margin;
  int64_t near_kink;
} sg_sinkhorn_info;
#define SG_SINKHORN_NEAR_KINK_ULPS 16

/* Capacity Sinkhorn-Knopp in the log domain over x [..., K, M] (K rows, M
 * columns, batched over leading axes). Repeats a column step (cap each
 * column's mass at col_cap) then a row step (each row's mass = row_mass)
 * until max_iters or the largest column excess < tol; ends on a row step.
 * Returns the log of the balanced matrix (same shape). info may be NULL. */
sg_tensor *(sg_sinkhorn)(sg_graph *g, sg_tensor *x, double row_mass, double col_cap, int max_iters,
                         double tol, sg_sinkhorn_grad mode, sg_sinkhorn_info *info);
#define sg_sinkhorn(g, ...) (sg_sinkhorn)(SG_AT(g), __VA_ARGS__)

/* Balanced Sinkhorn-Knopp: the same, but every column step scales each
 * column to col_cap exactly (x_km <- x_km - (LSE_k x_km - log c)) instead
 * of capping the columns above it, so the map has no kink. Needs K row_mass
 * = M col_cap: the capacity problem then has every column at its cap, and
 * both converge to the same fixed point; sg_sinkhorn decides near that
 * point, column by column, on which side of the cap round-off lands (see
 * sg_sinkhorn_info.near_kink), this one does not. For fewer rows than
 * capacity, append rows of slack mass. The tolerance measures the largest
 * |column mass - col_cap|. */
sg_tensor *(sg_sinkhorn_balanced)(sg_graph *g, sg_tensor *x, double row_mass, double col_cap,
                                  int max_iters, double tol, sg_sinkhorn_grad mode,
                                  sg_sinkhorn_info *info);
#define sg_sinkhorn_balanced(g, ...) (sg_sinkhorn_balanced)(SG_AT(g), __VA_ARGS__)

/* ---- ops/attention.c --------------------------------------------------- */
/* softmax(q k^T / sqrt(d)) v over q [..., Lq, d], k [..., Lk, d],
 * v [..., Lk, dv] -> [..., Lq, dv]; leading (batch) axes broadcast. */
sg_tensor *(sg_attention)(sg_graph *g, sg_tensor *q, sg_tensor *k, sg_tensor *v);
#define sg_attention(g, ...) (sg_attention)(SG_AT(g), __VA_ARGS__)

#ifdef __cplusplus
}
#endif
#ifdef __GNUC__
#pragma GCC visibility pop
#endif
#endif
