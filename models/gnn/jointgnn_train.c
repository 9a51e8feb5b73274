/* Training of JointGNN (docs/models.md "JointGNN"): Adam on -mean R(A~, V)
 * (plus the optional load penalty from epoch T on) over mini-batches of
 * training samples, with the loop, schedule and seed semantics of BFGNN's
 * training (beam_train.c). */
#include <math.h>

#include "gnn_internal.h"

/* The Gumbel noise's generator: its own stream, so that the shuffles are
 * those of BFGNN's training for the same seed. */
#define JOINT_NOISE_STREAM 0x6a6f696e74676e6eULL

assoc_jointgnn_train_opts assoc_jointgnn_train_defaults(double feature_scale) {
  return (assoc_jointgnn_train_opts){.base = assoc_bfgnn_train_defaults(feature_scale)};
}

typedef struct joint_ctx {
  const assoc_jointgnn *m;
  assoc_beam_train_state *st;
  const assoc_dataset *ds;
  const assoc_jointgnn_penalty *pen; /* NULL: pure sum rate */
  double scale;
} joint_ctx;

/* With Gumbel-softmax: the block's rows of the whole batch's noise, drawn
 * as one process's forward pass draws it (assoc_model_gumbel), into
 * *noise; else NULL. 0, or -1 after a reported failure. */
static int block_noise(sg_graph *g, joint_ctx *c, const assoc_gnn_block *b, sg_tensor **noise) {
  *noise = NULL;
  if (!c->m->cfg.gumbel) return 0;
  assoc_model_call call = {
      .mode = ASSOC_GNN_TRAIN, .rng = &c->st->noise, .rows_lo = b->lo, .batch_rows = b->B};
  *noise = assoc_model_gumbel(g, &call, c->m->cfg.dtype, b->hi - b->lo, c->ds->K, c->ds->M);
  return *noise ? 0 : -1;
}

/* The rates R(A~, V) and the loss (with the penalty from its epoch) of the block. */
static assoc_gnn_step_out joint_step(void *ctx, sg_graph *g, const assoc_gnn_block *b) {
  joint_ctx *c = ctx;
  assoc_bfgnn_batch bt;
  sg_tensor *noise;
  if (assoc_bfgnn_batch_make(g, c->ds, NULL, b->idx + b->lo, 0, b->hi - b->lo, c->scale,
                             c->m->cfg.dtype, &bt) ||
      block_noise(g, c, b, &noise))
    return (assoc_gnn_step_out){NULL, NULL};
  assoc_jointgnn_output out =
      assoc_jointgnn_forward(g, c->m, bt.p, bt.q, bt.X, ASSOC_GNN_TRAIN, &c->st->noise, noise);
  sg_tensor *R = assoc_jointgnn_rate(g, &out, bt.G_re, bt.G_im);
  sg_tensor *loss = R ? assoc_jointgnn_loss(g, R, &out, c->pen, b->epoch, NULL) : NULL;
  return (assoc_gnn_step_out){R, loss};
}

static int opts_check(const assoc_jointgnn *m, const assoc_dataset *ds,
                      const assoc_jointgnn_train_opts *o) {
  if (assoc_gnn_train_check("assoc_jointgnn_train", m, ds, o ? &o->base : NULL)) return -1;
  const assoc_jointgnn_penalty *p = &o->penalty;
  if (!p->mu || (isfinite(p->capacity) && isfinite(p->delta) && p->start_epoch >= 1)) return 0;
  sg_report_error("assoc_jointgnn_train", __FILE__, __LINE__,
                  "penalty: capacity %g, delta %g, start epoch %d: need finite values and a "
                  "start epoch >= 1",
                  p->capacity, p->delta, p->start_epoch);
  return -1;
}

int assoc_jointgnn_train_start(const assoc_jointgnn *m, const assoc_dataset *ds,
                               const assoc_jointgnn_train_opts *o, assoc_beam_train_state *st) {
  if (opts_check(m, ds, o)) return -1;
  uint64_t seed = o->base.seed;
  if (!assoc_gnn_train_state_init(st, m->trunk.params, ds, seed, seed ^ JOINT_NOISE_STREAM,
                                  o->base.lr_max))
    return 0;
  sg_report_error("assoc_jointgnn_train_start", __FILE__, __LINE__, "out of memory");
  return -1;
}

/* The state belongs to this model and data set. */
static int state_check(const assoc_jointgnn *m, const assoc_dataset *ds,
                       const assoc_beam_train_state *st) {
  if (st && st->order && st->adam && st->S == ds->S && st->M == ds->M &&
      st->adam->n_params == sg_params_count(m->trunk.params) && st->epoch >= 0)
    return 0;
  sg_report_error("assoc_jointgnn_train_resume", __FILE__, __LINE__,
                  "the training state does not belong to this model and data set (S %lld, M %d; "
                  "the state's S %lld, M %d)",
                  (long long)ds->S, ds->M, st ? (long long)st->S : -1LL, st ? st->M : -1);
  return -1;
}

int assoc_jointgnn_train_resume(assoc_jointgnn *m, const assoc_dataset *ds,
                                const assoc_jointgnn_train_opts *o, assoc_beam_train_state *st,
                                double *last_rate) {
  if (opts_check(m, ds, o) || state_check(m, ds, st)) return -1;
  joint_ctx c = {.m = m,
                 .st = st,
                 .ds = ds,
                 .pen = o->penalty.mu ? &o->penalty : NULL,
                 .scale = o->base.feature_scale};
  return assoc_gnn_train_loop(&o->base, st, joint_step, &c, last_rate);
}

int assoc_jointgnn_train(assoc_jointgnn *m, const assoc_dataset *ds,
                         const assoc_jointgnn_train_opts *o, double *last_rate) {
  assoc_beam_train_state st;
  if (assoc_jointgnn_train_start(m, ds, o, &st)) return -1;
  int rc = assoc_jointgnn_train_resume(m, ds, o, &st, last_rate);
  assoc_beam_train_state_free(&st);
  return rc;
}
