/* Training of BFGNN (docs/models.md "BFGNN"): Adam on -mean R(A, V) over
 * mini-batches of training samples, each sample with an association from
 * a fixed per-sample mix, the learning rate on cosine warm restarts; and
 * the mean rate of the model's beams over data-set samples. */
#include <math.h>
#include <stdlib.h>

#include "gnn_internal.h"

assoc_bfgnn_train_opts assoc_bfgnn_train_defaults(double feature_scale) {
  return (assoc_bfgnn_train_opts){.feature_scale = feature_scale,
                                  .batch = 64,
                                  .epochs = 1,
                                  .lr_min = 1e-8,
                                  .lr_max = 5e-5,
                                  .t0 = 50,
                                  .t_mult = 2,
                                  .seed = 1};
}

/* A BFGNN step's context: the model, the data, and the association of
 * sample s, assocs[which[s]]. */
typedef struct bfgnn_ctx {
  const assoc_bfgnn *m;
  const assoc_dataset *ds;
  const int *const *assocs;
  const int *which;
  int *assoc; /* S x K; the block's rows gathered from the mix */
  double scale;
} bfgnn_ctx;

/* The rates and loss -mean R of the block. */
static assoc_gnn_step_out bfgnn_step(void *ctx, sg_graph *g, const assoc_gnn_block *b) {
  bfgnn_ctx *c = ctx;
  int K = c->ds->K;
  const int64_t *idx = b->idx + b->lo;
  int64_t n = b->hi - b->lo;
  for (int64_t i = 0; i < n; i++)
    for (int k = 0; k < K; k++)
      c->assoc[idx[i] * K + k] = c->assocs[c->which[idx[i]]][idx[i] * K + k];
  assoc_bfgnn_batch bt;
  if (assoc_bfgnn_batch_make(g, c->ds, c->assoc, idx, 0, n, c->scale, c->m->cfg.dtype, &bt))
    return (assoc_gnn_step_out){NULL, NULL};
  assoc_complex V = assoc_bfgnn_forward(g, c->m, bt.p, bt.q, bt.X, bt.A);
  sg_tensor *R = assoc_bfgnn_rate(g, bt.A, bt.G_re, bt.G_im, V);
  return (assoc_gnn_step_out){R, R ? sg_neg(g, sg_mean_all(g, R)) : NULL};
}

int assoc_bfgnn_train(assoc_bfgnn *m, const assoc_dataset *ds, const int *const *assocs,
                      int n_assoc, const assoc_bfgnn_train_opts *o, double *last_rate) {
  if (assoc_gnn_train_check("assoc_bfgnn_train", m, ds, o)) return -1;
  if (!assocs || n_assoc < 1) {
    sg_report_error("assoc_bfgnn_train", __FILE__, __LINE__, "need >= 1 association arrays");
    return -1;
  }
  assoc_beam_train_state st;
  if (assoc_gnn_train_state_init(&st, m->trunk.params, ds, o->seed, 0, o->lr_max)) return -1;
  int *which = malloc((size_t)ds->S * sizeof *which);
  int *assoc = malloc((size_t)(ds->S * ds->K) * sizeof *assoc);
  bfgnn_ctx c = {m, ds, assocs, which, assoc, o->feature_scale};
  int rc = -1;
  if (which && assoc) {
    for (int64_t s = 0; s < ds->S; s++) /* the fixed per-sample mix, then the shuffles */
      which[s] = (int)sg_rng_below(&st.shuffle, (uint64_t)n_assoc);
    rc = assoc_gnn_train_loop(o, &st, bfgnn_step, &c, last_rate);
  }
  assoc_beam_train_state_free(&st);
  free(which), free(assoc);
  return rc;
}

double assoc_bfgnn_mean_rate(const assoc_bfgnn *m, const assoc_dataset *ds, const int *assoc,
                             int64_t start, int64_t count, double feature_scale) {
  sg_graph *g = sg_graph_new();
  if (!g) return NAN;
  sg_set_grad_enabled(g, false);
  double sum = 0;
  for (int64_t s = start; s < start + count && !isnan(sum); s += 64) {
    int64_t B = start + count - s < 64 ? start + count - s : 64;
    sg_graph_reset(g);
    assoc_bfgnn_batch bt;
    if (assoc_bfgnn_batch_make(g, ds, assoc, NULL, s, B, feature_scale, m->cfg.dtype, &bt)) {
      sum = NAN;
      break;
    }
    assoc_complex V = assoc_bfgnn_forward(g, m, bt.p, bt.q, bt.X, bt.A);
    sg_tensor *R = assoc_bfgnn_rate(g, bt.A, bt.G_re, bt.G_im, V);
    for (int64_t b = 0; R && b < B; b++) sum += sg_get(R, b);
    if (!R) sum = NAN;
  }
  sg_graph_free(g);
  return sum / (double)count;
}
