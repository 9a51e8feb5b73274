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
  sg_adam *opt;
  sg_graph *g;
  const assoc_dataset *ds;
  const assoc_jointgnn_penalty *pen; /* NULL: pure sum rate */
  sg_rng noise;
  double scale;
} joint_ctx;

static double joint_step(void *ctx, const int64_t *idx, int64_t B, int epoch) {
  joint_ctx *c = ctx;
  sg_graph *g = c->g;
  sg_graph_reset(g);
  assoc_bfgnn_batch bt;
  if (assoc_bfgnn_batch_make(g, c->ds, NULL, idx, 0, B, c->scale, c->m->cfg.dtype, &bt)) return NAN;
  assoc_jointgnn_output out =
      assoc_jointgnn_forward(g, c->m, bt.p, bt.q, bt.X, ASSOC_GNN_TRAIN, &c->noise, NULL);
  sg_tensor *R = assoc_jointgnn_rate(g, &out, bt.G_re, bt.G_im);
  sg_tensor *loss = R ? assoc_jointgnn_loss(g, R, &out, c->pen, epoch, NULL) : NULL;
  return assoc_gnn_adam_step(g, c->m->trunk.params, c->opt, R, loss);
}

static int penalty_check(const assoc_jointgnn_penalty *p) {
  if (!p->mu || (isfinite(p->capacity) && isfinite(p->delta) && p->start_epoch >= 1)) return 0;
  sg_report_error("assoc_jointgnn_train", __FILE__, __LINE__,
                  "penalty: capacity %g, delta %g, start epoch %d: need finite values and a "
                  "start epoch >= 1",
                  p->capacity, p->delta, p->start_epoch);
  return -1;
}

int assoc_jointgnn_train(assoc_jointgnn *m, const assoc_dataset *ds,
                         const assoc_jointgnn_train_opts *o, double *last_rate) {
  if (assoc_gnn_train_check("assoc_jointgnn_train", m, ds, o ? &o->base : NULL) ||
      penalty_check(&o->penalty))
    return -1;
  sg_rng r;
  sg_rng_seed(&r, o->base.seed);
  sg_params *ps = m->trunk.params;
  joint_ctx c = {.m = m,
                 .opt = sg_adam_new(sg_params_tensors(ps), sg_params_count(ps), o->base.lr_max),
                 .g = sg_graph_new(),
                 .ds = ds,
                 .pen = o->penalty.mu ? &o->penalty : NULL,
                 .scale = o->base.feature_scale};
  sg_rng_seed(&c.noise, o->base.seed ^ JOINT_NOISE_STREAM);
  int rc = -1;
  if (c.opt && c.g)
    rc = assoc_gnn_train_loop(&o->base, ds->S, &r, c.opt, joint_step, &c, last_rate);
  sg_adam_free(c.opt);
  sg_graph_free(c.g);
  return rc;
}
