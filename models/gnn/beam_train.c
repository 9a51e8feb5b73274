/* The training loop the beam models (BFGNN, JointGNN) share: argument
 * checks, epochs of mini-batches from shuffles of the samples, the
 * learning rate on cosine warm restarts stepped per mini-batch, the
 * per-epoch callback, and one Adam step on a loss. */
#include <math.h>

#include "gnn_internal.h"

int assoc_gnn_train_check(const char *fn, const void *model, const assoc_dataset *ds,
                          const assoc_bfgnn_train_opts *o) {
  if (model && ds && o && o->batch >= 1 && o->batch <= ds->S && o->epochs >= 0 &&
      o->batches_per_epoch >= 0 && o->feature_scale > 0)
    return 0;
  sg_report_error(fn, __FILE__, __LINE__,
                  "bad arguments (need a model, a data set of >= batch samples, batch >= 1, "
                  "epochs >= 0, batches per epoch >= 0, feature scale > 0)");
  return -1;
}

double assoc_gnn_adam_step(sg_graph *g, sg_params *params, sg_adam *opt, sg_tensor *R,
                           sg_tensor *loss) {
  if (!R || !loss) return NAN;
  double rate = sg_get(sg_mean_all(g, R), 0);
  sg_params_zero_grad(sg_params_tensors(params), sg_params_count(params));
  if (sg_backward(g, loss)) return NAN; /* anomaly mode's report: no update */
  sg_adam_step(opt);
  return rate;
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

int assoc_gnn_train_loop(const assoc_bfgnn_train_opts *o, assoc_beam_train_state *st,
                         assoc_gnn_train_step step, void *ctx, double *last_rate) {
  int64_t S = st->S, batches = o->batches_per_epoch ? o->batches_per_epoch : S / o->batch;
  sg_cosine_restarts sched = {o->t0, o->t_mult, o->lr_min, o->lr_max};
  for (int e = st->epoch; e < o->epochs; e++) {
    double sum = 0;
    for (int64_t i = 0; i < batches; i++) {
      const int64_t *idx = next_batch(st->order, S, o->batch, &st->cursor, &st->shuffle);
      st->adam->lr = sg_cosine_restarts_lr(&sched, e + (double)i / (double)batches);
      double rate = step(ctx, idx, o->batch, e + 1);
      if (isnan(rate)) return -2; /* diverged, or an op failed (reported) */
      sum += rate;
    }
    st->epoch = e + 1;
    if (last_rate) *last_rate = sum / (double)batches;
    if (o->epoch_fn) o->epoch_fn(o->user, e + 1, sum / (double)batches, st->adam->lr);
  }
  return 0;
}
