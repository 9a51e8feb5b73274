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
  assoc_jointgnn *m;
  assoc_beam_train_state *st;
  sg_graph *g;
  const assoc_dataset *ds;
  const assoc_jointgnn_penalty *pen; /* NULL: pure sum rate */
  double scale;
} joint_ctx;

static double joint_step(void *ctx, const int64_t *idx, int64_t B, int epoch) {
  joint_ctx *c = ctx;
  sg_graph *g = c->g;
  sg_graph_reset(g);
  assoc_bfgnn_batch bt;
  if (assoc_bfgnn_batch_make(g, c->ds, NULL, idx, 0, B, c->scale, c->m->cfg.dtype, &bt)) return NAN;
  assoc_jointgnn_output out =
      assoc_jointgnn_forward(g, c->m, bt.p, bt.q, bt.X, ASSOC_GNN_TRAIN, &c->st->noise, NULL);
  sg_tensor *R = assoc_jointgnn_rate(g, &out, bt.G_re, bt.G_im);
  sg_tensor *loss = R ? assoc_jointgnn_loss(g, R, &out, c->pen, epoch, NULL) : NULL;
  return assoc_gnn_adam_step(g, c->m->trunk.params, c->st->adam, R, loss);
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
                 .g = sg_graph_new(),
                 .ds = ds,
                 .pen = o->penalty.mu ? &o->penalty : NULL,
                 .scale = o->base.feature_scale};
  int rc = c.g ? assoc_gnn_train_loop(&o->base, st, joint_step, &c, last_rate) : -1;
  sg_graph_free(c.g);
  return rc;
}

int assoc_jointgnn_train(assoc_jointgnn *m, const assoc_dataset *ds,
                         const assoc_jointgnn_train_opts *o, double *last_rate) {
  assoc_beam_train_state st;
  if (assoc_jointgnn_train_start(m, ds, o, &st)) return -1;
  int rc = assoc_jointgnn_train_resume(m, ds, o, &st, last_rate);
  assoc_beam_train_state_free(&st);
  return rc;
}
