/* The training loop the beam models (BFGNN, JointGNN) share: argument
 * checks, epochs of mini-batches from shuffles of the samples, the
 * learning rate on cosine warm restarts stepped per mini-batch, the
 * per-epoch callback, and per step the gradients of the step's loss and
 * one Adam step.
 *
 * Data-parallel (o->dist with R > 1 ranks; assoc_gnn_dist): every rank
 * draws every shuffle and the whole batch's noise, and builds the loss of
 * its block, samples B*r/R .. B*(r+1)/R of the batch. The loss is a mean
 * over the block, so rank r's gradient is scaled by its share b_r / B
 * before the sum: sum_r (b_r/B) grad mean_{block r} = grad mean_{batch},
 * the one-process gradient up to round-off. One sum per step carries the
 * gradients (the flat buffer of nn_internal.h, which the GNN trainer uses
 * too) and the block's rate times its share (NaN on a rank whose step
 * failed, so that every rank stops at that step together); then every rank
 * takes the same Adam step. */
#include <math.h>

#include "gnn_internal.h"
#include "nn_internal.h"

enum { STEP_TAIL = 1 }; /* after the gradients: the rate times the block's share */

static int dist_check(const char *fn, const assoc_bfgnn_train_opts *o) {
  const assoc_gnn_dist *d = o->dist;
  if (!d || (d->ranks == 1 && d->rank == 0)) return 0;
  if (d->sum && d->ranks > 1 && d->rank >= 0 && d->rank < d->ranks && o->batch >= d->ranks)
    return 0;
  sg_report_error(fn, __FILE__, __LINE__,
                  "data-parallel training: rank %d of %d ranks, a sum %s, a mini-batch of %lld "
                  "samples (need 0 <= rank < ranks, a sum, and batch >= ranks to split it)",
                  d->rank, d->ranks, d->sum ? "set" : "missing", (long long)o->batch);
  return -1;
}

int assoc_gnn_train_check(const char *fn, const void *model, const assoc_dataset *ds,
                          const assoc_bfgnn_train_opts *o) {
  if (model && ds && o && o->batch >= 1 && o->batch <= ds->S && o->epochs >= 0 &&
      o->batches_per_epoch >= 0 && o->feature_scale > 0)
    return dist_check(fn, o);
  sg_report_error(fn, __FILE__, __LINE__,
                  "bad arguments (need a model, a data set of >= batch samples, batch >= 1, "
                  "epochs >= 0, batches per epoch >= 0, feature scale > 0)");
  return -1;
}

static void shuffle(int64_t *a, int64_t n, sg_rng *r) {
  for (int64_t i = n - 1; i > 0; i--) {
    int64_t j = (int64_t)sg_rng_below(r, (uint64_t)i + 1), t = a[i];
    a[i] = a[j], a[j] = t;
  }
}

/* The next mini-batch of the shuffled order (reshuffled when fewer than
 * batch samples are left). */
static const int64_t *next_batch(int64_t *order, int64_t S, int64_t batch, int64_t *cursor,
                                 sg_rng *r) {
  if (*cursor + batch > S) {
    shuffle(order, S, r);
    *cursor = 0;
  }
  const int64_t *idx = order + *cursor;
  *cursor += batch;
  return idx;
}

int assoc_gnn_train_state_init(assoc_beam_train_state *st, sg_params *p, const assoc_dataset *ds,
                               uint64_t seed, uint64_t noise_seed, double lr) {
  *st = (assoc_beam_train_state){.M = ds->M, .S = ds->S, .cursor = ds->S}; /* shuffle first */
  sg_rng_seed(&st->shuffle, seed);
  sg_rng_seed(&st->noise, noise_seed);
  st->order = sg_malloc((size_t)ds->S * sizeof *st->order);
  st->adam = sg_adam_new(sg_params_tensors(p), sg_params_count(p), lr);
  if (!st->order || !st->adam) {
    assoc_beam_train_state_free(st);
    return -1;
  }
  for (int64_t s = 0; s < ds->S; s++) st->order[s] = s;
  return 0;
}

void assoc_beam_train_state_free(assoc_beam_train_state *st) {
  if (!st) return;
  sg_mfree(st->order);
  sg_adam_free(st->adam);
  st->order = NULL, st->adam = NULL;
}

/* ---- one step ------------------------------------------------------------------------- */

/* The run's gradient sum: d NULL on one process. */
typedef struct step_sum {
  const assoc_gnn_dist *d;
  sg_dtype dt; /* of the parameters */
  int64_t n;   /* elements of flat */
  void *flat;  /* the gradients, then STEP_TAIL */
} step_sum;

static int step_sum_init(step_sum *s, const assoc_bfgnn_train_opts *o, const sg_adam *opt) {
  *s = (step_sum){0};
  if (!o->dist || o->dist->ranks == 1 || opt->n_params < 1) return 0;
  int bad;
  s->d = o->dist, s->dt = opt->params[0]->dtype;
  s->n = sg_grads_flat_size(opt->params, opt->n_params, s->dt, STEP_TAIL, &bad);
  if (s->n >= 0 && (s->flat = sg_malloc((size_t)s->n * (s->dt == SG_F32 ? 4 : 8)))) return 0;
  sg_report_error("assoc_gnn_train_loop", __FILE__, __LINE__,
                  s->n < 0 ? "the parameters have different dtypes"
                           : "out of memory for the gradient buffer");
  return -1;
}

/* Several ranks: the gradients and the block's rate times share become
 * their sums over the ranks. 0, or -1 when the sum failed (reported). */
static int sum_over_ranks(step_sum *s, const sg_adam *opt, double share, double *rate) {
  double tail[STEP_TAIL] = {*rate * share};
  sg_grads_flat_pack(opt->params, opt->n_params, s->dt, share, tail, STEP_TAIL, s->flat);
  if (s->d->sum(s->d->user, s->flat, s->n, s->dt)) return -1;
  sg_grads_flat_unpack(opt->params, opt->n_params, s->dt, s->flat, tail, STEP_TAIL);
  *rate = tail[0];
  return 0;
}

/* The gradients of the step's loss (zeroed first; summed over the ranks)
 * and the Adam step unless the batch's mean rate (into *rate) is NaN: some
 * rank's step failed, or training diverged. 0, or -1 when the sum failed. */
static int adam_step(sg_graph *g, sg_adam *opt, assoc_gnn_step_out out, step_sum *s, double share,
                     double *rate) {
  *rate = out.R && out.loss ? sg_get(sg_mean_all(g, out.R), 0) : NAN;
  sg_params_zero_grad(opt->params, opt->n_params);
  if (!isnan(*rate) && sg_backward(g, out.loss)) *rate = NAN; /* anomaly mode's report */
  if (s->d && sum_over_ranks(s, opt, share, rate)) return -1;
  if (!isnan(*rate)) sg_adam_step(opt);
  return 0;
}

/* ---- the loop --------------------------------------------------------------------------- */

/* This rank's block of a batch of B samples: [B*r/R, B*(r+1)/R). */
static void block_of(const step_sum *s, int64_t B, int64_t *lo, int64_t *hi) {
  int r = s->d ? s->d->rank : 0, R = s->d ? s->d->ranks : 1;
  *lo = B * r / R, *hi = B * (r + 1) / R;
}

static int epochs(const assoc_bfgnn_train_opts *o, assoc_beam_train_state *st,
                  assoc_gnn_train_step step, void *ctx, sg_graph *g, step_sum *s,
                  double *last_rate) {
  int64_t S = st->S, batches = o->batches_per_epoch ? o->batches_per_epoch : S / o->batch;
  sg_cosine_restarts sched = {o->t0, o->t_mult, o->lr_min, o->lr_max};
  assoc_gnn_block b = {.B = o->batch};
  block_of(s, o->batch, &b.lo, &b.hi);
  double share = (double)(b.hi - b.lo) / (double)o->batch;
  for (int e = st->epoch; e < o->epochs; e++) {
    double sum = 0;
    b.epoch = e + 1;
    for (int64_t i = 0; i < batches; i++) {
      b.idx = next_batch(st->order, S, o->batch, &st->cursor, &st->shuffle);
      st->adam->lr = sg_cosine_restarts_lr(&sched, e + (double)i / (double)batches);
      sg_graph_reset(g);
      double rate;
      if (adam_step(g, st->adam, step(ctx, g, &b), s, share, &rate)) return -1;
      if (isnan(rate)) return -2; /* diverged, or a step failed (reported) */
      sum += rate;
    }
    st->epoch = e + 1;
    if (last_rate) *last_rate = sum / (double)batches;
    if (o->epoch_fn) o->epoch_fn(o->user, e + 1, sum / (double)batches, st->adam->lr);
  }
  return 0;
}

int assoc_gnn_train_loop(const assoc_bfgnn_train_opts *o, assoc_beam_train_state *st,
                         assoc_gnn_train_step step, void *ctx, double *last_rate) {
  step_sum s = {0};
  sg_graph *g = sg_graph_new();
  int rc = g ? step_sum_init(&s, o, st->adam) : -1;
  if (!rc) rc = epochs(o, st, step, ctx, g, &s, last_rate);
  sg_mfree(s.flat);
  sg_graph_free(g);
  return rc;
}
