/* What a trained association GNN does with its inputs, and what its
 * training gradient looks like (assoc_train.h, "Diagnosis"): how far A~
 * depends on the sample and how saturated it is, how often its argmax is
 * each UE's strongest link, and the gradient of the rate term and of the
 * load penalty on one mini-batch, per part of the network. */
#include <math.h>
#include <stdbool.h>
#include <string.h>

#include "assoc_train.h"
#include "models_internal.h"
#include "train_internal.h"

enum { GROUP_NAME_MAX = sizeof(((assoc_diagnosis *)0)->groups[0].name) };

/* The group of a parameter: its name up to the first dot, or up to the
 * second for the update layers ("layers.1.f5"), or the third for an MLP of
 * a layer ("layers.1.f5" from "layers.1.f5.2.weight"). */
static void group_of(const char *name, char *out) {
  int dots = strncmp(name, "layers.", 7) ? 1 : 3, i = 0;
  for (; name[i] && i < GROUP_NAME_MAX - 1; i++) {
    if (name[i] == '.' && --dots == 0) break;
    out[i] = name[i];
  }
  out[i] = '\0';
}

static int group_index(assoc_diagnosis *d, const char *name) {
  char key[GROUP_NAME_MAX];
  group_of(name, key);
  for (int i = 0; i < d->n_groups; i++)
    if (!strcmp(d->groups[i].name, key)) return i;
  if (d->n_groups == ASSOC_DIAGNOSIS_MAX_GROUPS) return d->n_groups - 1;
  memcpy(d->groups[d->n_groups].name, key, sizeof key);
  return d->n_groups++;
}

/* Squared gradient norms per group, minus base when given, added to the
 * rate (penalty false) or penalty entries. */
static void add_grad_norms(assoc_diagnosis *d, const sg_params *ps, const double *base,
                           bool penalty) {
  int64_t at = 0;
  for (int i = 0; i < sg_params_count(ps); i++) {
    const sg_tensor *p = sg_params_at(ps, i);
    int gi = group_index(d, sg_params_name(ps, i));
    for (int64_t j = 0; j < p->numel; j++, at++) {
      double v = p->grad ? sg_get(p->grad, j) : 0.0;
      if (base) v -= base[at];
      if (penalty)
        d->groups[gi].grad_penalty += v * v;
      else
        d->groups[gi].grad_rate += v * v;
    }
  }
}

static double *copy_grads(const sg_params *ps) {
  double *g = sg_malloc((size_t)sg_params_numel(ps) * sizeof *g);
  int64_t at = 0;
  for (int i = 0; g && i < sg_params_count(ps); i++) {
    const sg_tensor *p = sg_params_at(ps, i);
    for (int64_t j = 0; j < p->numel; j++) g[at++] = p->grad ? sg_get(p->grad, j) : 0.0;
  }
  return g;
}

/* Gradients on the first `batch` samples, Gumbel noise from seed: the rate
 * term alone (mu = 0) and the penalty term (the loss with mu minus it). */
static int gradient_split(assoc_gnn *m, const assoc_dataset *ds, double scale, const double *mu,
                          double delta, const assoc_diagnosis_opts *o, assoc_diagnosis *d,
                          sg_io_error *err) {
  int64_t B = o->batch < ds->S ? o->batch : ds->S;
  sg_graph *g = sg_graph_new();
  double zeros[ASSOC_MAX_BS] = {0}, *rate_grad = NULL;
  assoc_gnn_batch in;
  int rc = !g ? assoc_fail(err, "out of memory") : 0;
  if (!rc &&
      assoc_gnn_batch_make(g, ds, NULL, 0, B, scale, m->cfg.features, m->cfg.dtype, true, &in))
    rc = assoc_fail(err, "could not build the inputs");
  sg_tensor *noise = rc ? NULL : sg_empty(g, m->cfg.dtype, 3, (int64_t[]){B, ds->K, ds->M});
  if (!rc && noise) {
    sg_rng r;
    sg_rng_seed(&r, o->seed);
    for (int64_t i = 0; i < noise->numel; i++) sg_set(noise, i, sg_rng_gumbel(&r));
    d->loss_rate = assoc_gnn_loss_grad(m, &in, noise, zeros, delta, NULL, NULL, NULL);
    rate_grad = copy_grads(m->params);
    add_grad_norms(d, m->params, NULL, false);
    d->loss_total = assoc_gnn_loss_grad(m, &in, noise, mu, delta, NULL, NULL, NULL);
    if (rate_grad) add_grad_norms(d, m->params, rate_grad, true);
    if (!rate_grad || !isfinite(d->loss_rate) || !isfinite(d->loss_total))
      rc = assoc_fail(err, "the gradient could not be computed");
  }
  sg_mfree(rate_grad);
  sg_graph_free(g);
  return rc;
}

/* Statistics of the eval-mode A~ of the first o->samples samples. */
static void assoc_statistics(const assoc_dataset *ds, const double *A, int64_t S, double *gain,
                             assoc_diagnosis *d) {
  int M = ds->M, K = ds->K;
  double max_sum = 0, saturated = 0, strongest = 0, sd_sum = 0;
  for (int64_t s = 0; s < S; s++) {
    assoc_coupling_gain(ds, s, gain);
    for (int k = 0; k < K; k++) {
      const double *row = A + (s * K + k) * M;
      int best = 0, strong = 0;
      for (int m = 1; m < M; m++) {
        if (row[m] > row[best]) best = m;
        if (gain[((int64_t)m * K + k) * K + k] > gain[((int64_t)strong * K + k) * K + k])
          strong = m;
      }
      max_sum += row[best], saturated += row[best] > 0.99, strongest += best == strong;
    }
  }
  for (int64_t e = 0; e < (int64_t)K * M; e++) {
    double sum = 0, sq = 0;
    for (int64_t s = 0; s < S; s++)
      sum += A[s * K * M + e], sq += A[s * K * M + e] * A[s * K * M + e];
    double mean = sum / (double)S;
    sd_sum += sqrt(fmax(sq / (double)S - mean * mean, 0.0));
  }
  d->row_max_mean = max_sum / (double)(S * K);
  d->row_saturated = saturated / (double)(S * K);
  d->agree_strongest = strongest / (double)(S * K);
  d->assoc_sd = sd_sum / (double)(K * M);
}

static int eval_statistics(const assoc_gnn *m, const assoc_dataset *ds, double scale,
                           const assoc_diagnosis_opts *o, assoc_diagnosis *d, sg_io_error *err) {
  int64_t S = o->samples < ds->S ? o->samples : ds->S;
  double *A = sg_malloc((size_t)(S * ds->K * ds->M) * sizeof *A);
  double *gain = sg_malloc((size_t)ds->M * ds->K * ds->K * sizeof *gain);
  int rc = !A || !gain ? assoc_fail(err, "out of memory") : 0;
  assoc_gnn_infer_opts io = {.feature_scale = scale, .batch = 256, .chunk = 0};
  if (!rc) rc = assoc_gnn_infer(m, ds, S, &io, A, NULL, NULL, err);
  if (!rc) assoc_statistics(ds, A, S, gain, d);
  d->samples = S;
  sg_mfree(A), sg_mfree(gain);
  return rc;
}

assoc_diagnosis_opts assoc_diagnosis_defaults(void) {
  return (assoc_diagnosis_opts){.samples = 2000, .batch = 256, .seed = 1};
}

int assoc_diagnose(const char *checkpoint, const assoc_dataset *ds, const assoc_diagnosis_opts *o,
                   assoc_diagnosis *d, sg_io_error *err) {
  memset(d, 0, sizeof *d);
  if (o->samples < 1 || o->batch < 1) return assoc_fail(err, "samples and batch must be >= 1");
  assoc_checkpoint_state st;
  if (assoc_checkpoint_read(checkpoint, false, &st, err)) return -1;
  int rc = assoc_gnn_check_data(st.model, ds, err);
  if (!rc && ds->M != st.data_M)
    rc = assoc_fail(err, "%s: mu has %d entries, the data set has M = %d BSs", checkpoint,
                    st.data_M, ds->M);
  d->M = ds->M, d->epoch = st.epoch;
  for (int m = 0; !rc && m < ds->M; m++) d->mu[m] = st.mu[m];
  if (!rc) rc = eval_statistics(st.model, ds, st.feature_scale, o, d, err);
  if (!rc) rc = gradient_split(st.model, ds, st.feature_scale, st.mu, st.cfg.delta, o, d, err);
  for (int i = 0; i < d->n_groups; i++)
    d->groups[i].grad_rate = sqrt(d->groups[i].grad_rate),
    d->groups[i].grad_penalty = sqrt(d->groups[i].grad_penalty);
  assoc_checkpoint_state_free(&st);
  return rc;
}
