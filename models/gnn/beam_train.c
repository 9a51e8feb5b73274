/* The training loop the beam models (BFGNN, JointGNN) share: argument
 * checks, epochs of mini-batches from shuffles of the samples, the
 * learning rate on cosine warm restarts stepped per mini-batch, the
 * per-epoch callback, and one Adam step on a loss. */
#include <math.h>
#include <stdlib.h>

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
  sg_backward(g, loss);
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

static int train_epochs(const assoc_bfgnn_train_opts *o, int64_t S, sg_rng *r, sg_adam *opt,
                        int64_t *order, assoc_gnn_train_step step, void *ctx, double *last_rate) {
  int64_t batches = o->batches_per_epoch ? o->batches_per_epoch : S / o->batch;
  int64_t cursor = S; /* shuffle first */
  sg_cosine_restarts sched = {o->t0, o->t_mult, o->lr_min, o->lr_max};
  for (int e = 0; e < o->epochs; e++) {
    double sum = 0;
    for (int64_t i = 0; i < batches; i++) {
      const int64_t *idx = next_batch(order, S, o->batch, &cursor, r);
      opt->lr = sg_cosine_restarts_lr(&sched, e + (double)i / (double)batches);
      double rate = step(ctx, idx, o->batch, e + 1);
      if (isnan(rate)) return -1;
      sum += rate;
    }
    if (last_rate) *last_rate = sum / (double)batches;
    if (o->epoch_fn) o->epoch_fn(o->user, e + 1, sum / (double)batches, opt->lr);
  }
  return 0;
}

int assoc_gnn_train_loop(const assoc_bfgnn_train_opts *o, int64_t S, sg_rng *r, sg_adam *opt,
                         assoc_gnn_train_step step, void *ctx, double *last_rate) {
  int64_t *order = malloc((size_t)S * sizeof *order);
  if (!order) return -1;
  for (int64_t s = 0; s < S; s++) order[s] = s;
  int rc = train_epochs(o, S, r, opt, order, step, ctx, last_rate);
  free(order);
  return rc;
}
