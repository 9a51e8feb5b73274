/* Training of BFGNN (docs/models.md "BFGNN"): Adam on -mean R(A, V) over
 * mini-batches of training samples, each sample with an association from
 * a fixed per-sample mix, the learning rate on cosine warm restarts; and
 * the mean rate of the model's beams over data-set samples. */
#include <math.h>
#include <stdlib.h>

#include "assoc_gnn.h"

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

/* The association array of sample s: which[s] picks one of the mix. */
typedef struct assoc_mix {
  const int *const *assocs;
  const int *which;
  int K;
} assoc_mix;

/* Gathers the mix's rows of the batch's samples into one S x K array
 * indexed as the data set (only the batch's rows are written). */
static void gather_assoc(const assoc_mix *x, const int64_t *idx, int64_t B, int *dst) {
  for (int64_t b = 0; b < B; b++)
    for (int k = 0; k < x->K; k++)
      dst[idx[b] * x->K + k] = x->assocs[x->which[idx[b]]][idx[b] * x->K + k];
}

/* One Adam step on the batch idx; the batch's mean rate, or NAN. */
static double train_step(sg_graph *g, assoc_bfgnn *m, sg_adam *opt, const assoc_dataset *ds,
                         const int *assoc, const int64_t *idx, int64_t B, double scale) {
  sg_graph_reset(g);
  assoc_bfgnn_batch bt;
  if (assoc_bfgnn_batch_make(g, ds, assoc, idx, 0, B, scale, m->cfg.dtype, &bt)) return NAN;
  assoc_complex V = assoc_bfgnn_forward(g, m, bt.p, bt.q, bt.X, bt.A);
  sg_tensor *R = assoc_bfgnn_rate(g, bt.A, bt.G_re, bt.G_im, V);
  if (!R) return NAN;
  sg_tensor *mean = sg_mean_all(g, R);
  double rate = sg_get(mean, 0);
  sg_params_zero_grad(sg_params_tensors(m->trunk.params), sg_params_count(m->trunk.params));
  sg_backward(g, sg_neg(g, mean));
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

/* Epochs of mini-batches from shuffles of the samples. */
static int train_epochs(sg_graph *g, assoc_bfgnn *m, sg_adam *opt, const assoc_dataset *ds,
                        const assoc_mix *mix, const assoc_bfgnn_train_opts *o, sg_rng *r,
                        int64_t *order, int *assoc, double *last_rate) {
  int64_t batches = o->batches_per_epoch ? o->batches_per_epoch : ds->S / o->batch;
  int64_t cursor = ds->S; /* shuffle first */
  sg_cosine_restarts sched = {o->t0, o->t_mult, o->lr_min, o->lr_max};
  for (int e = 0; e < o->epochs; e++) {
    double sum = 0;
    for (int64_t i = 0; i < batches; i++) {
      const int64_t *idx = next_batch(order, ds->S, o->batch, &cursor, r);
      opt->lr = sg_cosine_restarts_lr(&sched, e + (double)i / (double)batches);
      gather_assoc(mix, idx, o->batch, assoc);
      double rate = train_step(g, m, opt, ds, assoc, idx, o->batch, o->feature_scale);
      if (isnan(rate)) return -2; /* diverged (or an op failed, reported) */
      sum += rate;
    }
    if (last_rate) *last_rate = sum / (double)batches;
    if (o->epoch_fn) o->epoch_fn(o->user, e + 1, sum / (double)batches, opt->lr);
  }
  return 0;
}

int assoc_bfgnn_train(assoc_bfgnn *m, const assoc_dataset *ds, const int *const *assocs,
                      int n_assoc, const assoc_bfgnn_train_opts *o, double *last_rate) {
  if (!m || !ds || !assocs || n_assoc < 1 || !o || o->batch < 1 || o->batch > ds->S ||
      o->epochs < 0 || o->batches_per_epoch < 0 || !(o->feature_scale > 0)) {
    sg_report_error("assoc_bfgnn_train", __FILE__, __LINE__,
                    "bad arguments (need a model, a data set of >= batch samples, >= 1 "
                    "association arrays, batch >= 1, epochs >= 0, batches per epoch >= 0, "
                    "feature scale > 0)");
    return -1;
  }
  sg_rng r;
  sg_rng_seed(&r, o->seed);
  int64_t *order = malloc((size_t)ds->S * sizeof *order);
  int *which = malloc((size_t)ds->S * sizeof *which);
  int *assoc = malloc((size_t)(ds->S * ds->K) * sizeof *assoc);
  sg_graph *g = sg_graph_new();
  sg_adam *opt =
      sg_adam_new(sg_params_tensors(m->trunk.params), sg_params_count(m->trunk.params), o->lr_max);
  int rc = -1;
  if (order && which && assoc && g && opt) {
    for (int64_t s = 0; s < ds->S; s++) {
      order[s] = s;
      which[s] = (int)sg_rng_below(&r, (uint64_t)n_assoc); /* the fixed per-sample mix */
    }
    assoc_mix mix = {assocs, which, ds->K};
    rc = train_epochs(g, m, opt, ds, &mix, o, &r, order, assoc, last_rate);
  }
  sg_adam_free(opt);
  sg_graph_free(g);
  free(order), free(which), free(assoc);
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
