/* assoc ablation, the models: trains every model once per seed (the
 * training set, the initialisation and the Gumbel noise and data order
 * follow the run's seed), evaluates each trained model on the fixed test
 * and curve sets, and summarises a model's runs as means and sample
 * standard deviations. */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ablation.h"

const char *const abl_epoch_series_names[EPOCH_SERIES] = {"loss", "train_rate", "violation_ratio",
                                                          "test_lb_rate", "test_violation_ratio"};

/* ---- training --------------------------------------------------------------------------- */

typedef struct epoch_ctx {
  const abl_args *a;
  char name[64];
  int every;
  seed_run *run;
} epoch_ctx;

static void record_epoch(seed_run *sr, int epochs, const assoc_epoch_stats *st) {
  if (st->epoch < 1 || st->epoch > epochs) return;
  double *row = sr->epoch_series + (size_t)(st->epoch - 1) * EPOCH_SERIES;
  row[EPOCH_LOSS] = st->loss;
  row[EPOCH_TRAIN_RATE] = st->train_rate;
  row[EPOCH_VIOLATION] = st->violation_ratio;
  row[EPOCH_VAL_LB_RATE] = st->has_test ? st->test.mean_lb_rate : NAN;
  row[EPOCH_VAL_VIOLATION] = st->has_test ? st->test.violation_ratio : NAN;
}

static void on_epoch(void *user, const assoc_epoch_stats *st) {
  epoch_ctx *c = user;
  record_epoch(c->run, c->a->train.epochs, st);
  if (st->epoch % c->every && st->epoch != c->a->train.epochs) return;
  abl_note(c->a,
           "  %-12s epoch %4d/%d  loss %8.4f  train rate %6.3f  violations %5.1f%%  "
           "val LB rate %6.3f  val violations %5.1f%%  mu %.3f  (%.1f s)\n",
           c->name, st->epoch, c->a->train.epochs, st->loss, st->train_rate,
           100 * st->violation_ratio, st->has_test ? st->test.mean_lb_rate : NAN,
           st->has_test ? 100 * st->test.violation_ratio : NAN, st->mu[0], st->seconds);
}

/* The run's name in the progress: the model, and its seed when there are several. */
static void run_name(const abl_args *a, const model_run *mr, const seed_run *sr, char *buf,
                     size_t len) {
  const char *name = mr->name;
  if (a->seeds > 1)
    snprintf(buf, len, "%s seed %llu", name, (unsigned long long)sr->seed);
  else
    snprintf(buf, len, "%s", name);
}

/* SM-GNN through its hooks (abl_sm_hooks). */
static int train_sm(abl_run *r, const char *name, seed_run *sr, const assoc_train_config *c,
                    const assoc_dataset *train) {
  double t0 = omp_get_wtime();
  abl_note(r->a, "training %s (%d epochs, through the SM-GNN hooks)\n", name, c->epochs);
  if (abl_sm()->train(c, train, abl_lead() ? &r->val : NULL, sr->ckpt, &sr->train_seconds)) {
    fprintf(stderr, "assoc ablation: training %s failed\n", name);
    return -1;
  }
  sr->wall_seconds = omp_get_wtime() - t0;
  sr->epochs = c->epochs;
  return 0;
}

static int train_one(abl_run *r, const model_run *mr, seed_run *sr, const assoc_dataset *train) {
  const abl_args *a = r->a;
  assoc_train_config c = a->train;
  c.variant = mr->variant, c.seed = sr->seed;
  if (mr->index == ABL_IMPROVED) abl_improved_config(&c);
  epoch_ctx ctx = {.a = a, .every = c.epochs >= 10 ? c.epochs / 10 : 1, .run = sr};
  run_name(a, mr, sr, ctx.name, sizeof ctx.name);
  if (mr->index == ABL_SM) return train_sm(r, ctx.name, sr, &c, train);
  assoc_train_io io = {.out = sr->ckpt, .checkpoint_every = c.epochs, .log = sr->log};
  io.epoch_fn = on_epoch, io.user = &ctx;
  assoc_train_result res;
  sg_io_error err;
  double t0 = omp_get_wtime();
  abl_note(a, "training %s (%d epochs of %lld mini-batches of %lld)\n", ctx.name, c.epochs,
           (long long)c.batches_per_epoch, (long long)c.batch);
  if (assoc_train_run(&c, train, abl_lead() ? &r->val : NULL, &io, &res, &err)) {
    fprintf(stderr, "assoc ablation: training %s: %s\n", ctx.name, err.msg);
    return -1;
  }
  sr->wall_seconds = omp_get_wtime() - t0;
  sr->train_seconds = res.seconds;
  sr->epochs = res.epochs_done;
  return 0;
}

/* ---- evaluation ------------------------------------------------------------------------- */

/* The row argmax of A~ of the first test samples. */
static void onehot_of(const assoc_dataset *ds, const double *A, model_run *mr) {
  for (int s = 0; s < ONEHOT_SAMPLES; s++)
    for (int k = 0; k < ds->K; k++) {
      const double *row = A + ((size_t)s * ds->K + k) * ds->M;
      int best = 0;
      for (int m = 1; m < ds->M; m++)
        if (row[m] > row[best]) best = m;
      mr->onehot[s][k] = best;
    }
}

/* The run's LB and NV associations of the test set, kept for the beams. */
static int alloc_assocs(const assoc_dataset *ds, seed_run *sr) {
  size_t SK = (size_t)ds->S * ds->K;
  sr->lb_assoc = malloc(SK * sizeof *sr->lb_assoc);
  sr->nv_assoc = malloc(SK * sizeof *sr->nv_assoc);
  return sr->lb_assoc && sr->nv_assoc ? 0 : -1;
}

/* Test metrics of a run and its associations; the first run's one-hot
 * associations too. */
static int evaluate_test(abl_run *r, model_run *mr, seed_run *sr, const assoc_gnn *m, double scale,
                         bool first) {
  const assoc_dataset *ds = &r->test;
  double *A = first ? malloc((size_t)ds->S * ds->K * ds->M * sizeof *A) : NULL;
  if ((first && !A) || alloc_assocs(ds, sr)) return free(A), -1;
  assoc_eval_opts o = assoc_eval_defaults(scale);
  o.draws = r->a->draws, o.draw_seed = r->a->seed;
  sg_io_error err;
  assoc_eval_assocs keep = {.lb = sr->lb_assoc, .nv = sr->nv_assoc};
  int rc = assoc_eval_model(m, ds, &o, r->es_rate, &sr->test, A, &keep, &err);
  if (rc) fprintf(stderr, "assoc ablation: evaluating %s: %s\n", mr->key, err.msg);
  if (!rc && A) onehot_of(ds, A, mr);
  free(A);
  return rc;
}

/* Rates of a run on every curve set (m NULL: SM-GNN through its hook). */
static int evaluate_curves(abl_run *r, const model_run *mr, seed_run *sr, const assoc_gnn *m,
                           double scale) {
  sg_io_error err = {0};
  for (int ci = 0; ci < ABL_CURVES; ci++) {
    const curve_data *c = &r->curves[ci];
    for (int p = 0; p < c->points; p++) {
      assoc_eval_opts o = assoc_eval_defaults(scale);
      o.latency_samples = 0;
      assoc_eval_metrics x;
      int rc = m ? assoc_eval_model(m, &c->sets[p], &o, c->es_rate[p], &x, NULL, NULL, &err)
                 : abl_sm()->evaluate(sr->ckpt, &c->sets[p], c->es_rate[p], &x, NULL, NULL);
      if (rc) {
        fprintf(stderr, "assoc ablation: %s at %s = %g: %s\n", mr->key, c->parameter, c->x[p],
                err.msg);
        return -1;
      }
      sr->curve_lb[ci][p] = x.rate_lb, sr->curve_nv[ci][p] = x.rate_no_violation;
    }
  }
  return 0;
}

/* SM-GNN: its test metrics, its LB association (also in place of the NV
 * one, which it has not; and in Fig. 3b in place of the one-hot one) and
 * its curves, through its hook. */
static int evaluate_sm(abl_run *r, model_run *mr, seed_run *sr, bool first) {
  const assoc_dataset *ds = &r->test;
  if (alloc_assocs(ds, sr) ||
      abl_sm()->evaluate(sr->ckpt, ds, r->es_rate, &sr->test, sr->lb_assoc, &sr->sm_own_rate))
    return -1;
  memcpy(sr->nv_assoc, sr->lb_assoc, (size_t)ds->S * ds->K * sizeof *sr->nv_assoc);
  for (int s = 0; first && s < ONEHOT_SAMPLES; s++) /* Fig. 3b: its LB association */
    for (int k = 0; k < ds->K; k++) mr->onehot[s][k] = sr->lb_assoc[s * ds->K + k];
  return evaluate_curves(r, mr, sr, NULL, 1);
}

/* Evaluates what was written: the checkpoint, through the loader. */
static int evaluate_run(abl_run *r, model_run *mr, seed_run *sr, bool first) {
  if (mr->index == ABL_SM) return evaluate_sm(r, mr, sr, first);
  double scale;
  sg_io_error err;
  assoc_gnn *m = assoc_checkpoint_load_model(sr->ckpt, &scale, NULL, &err);
  if (!m) {
    fprintf(stderr, "assoc ablation: %s\n", err.msg);
    return -1;
  }
  int rc = evaluate_test(r, mr, sr, m, scale, first) || evaluate_curves(r, mr, sr, m, scale);
  assoc_gnn_free(m);
  return rc ? -1 : 0;
}

/* ---- the runs ------------------------------------------------------------------------------ */

/* "attskgs-gnn", ..., "skgs-gnn-plus". */
static void model_key(const char *name, char *key, size_t len) {
  size_t n = 0;
  for (const char *p = name; *p && n + 6 < len; p++)
    if (*p == '+')
      n += (size_t)snprintf(key + n, len - n, "-plus");
    else
      key[n++] = (char)(*p >= 'A' && *p <= 'Z' ? *p - 'A' + 'a' : *p);
  key[n] = '\0';
}

/* <model>.npz and train_<model>.csv with one seed, <model>-seed<s>.npz and
 * train_<model>-seed<s>.csv with several. */
static void run_paths(const abl_args *a, const model_run *mr, seed_run *sr) {
  char tag[40] = "", name[96];
  if (a->seeds > 1) snprintf(tag, sizeof tag, "-seed%llu", (unsigned long long)sr->seed);
  snprintf(name, sizeof name, "%s%s.npz", mr->key, tag);
  abl_path_in(sr->ckpt, sizeof sr->ckpt, a->out, name);
  snprintf(name, sizeof name, "train_%s%s.csv", mr->key, tag);
  abl_path_in(sr->log, sizeof sr->log, a->out, name);
}

static int init_model(const abl_args *a, model_run *mr, int index) {
  size_t cells = (size_t)a->train.epochs * EPOCH_SERIES;
  assoc_train_config c = a->train;
  if (index == ABL_IMPROVED) abl_improved_config(&c);
  mr->variant = index == ABL_IMPROVED ? c.variant : (assoc_gnn_variant)index;
  mr->index = index, mr->name = abl_model_name(index);
  model_key(mr->name, mr->key, sizeof mr->key);
  mr->runs = calloc((size_t)a->seeds, sizeof *mr->runs);
  mr->epoch_mean = malloc(cells * sizeof *mr->epoch_mean);
  mr->epoch_sd = malloc(cells * sizeof *mr->epoch_sd);
  if (!mr->runs || !mr->epoch_mean || !mr->epoch_sd) return -1;
  for (int j = 0; j < a->seeds; j++) {
    seed_run *sr = &mr->runs[j];
    sr->seed = abl_run_seed(a, j);
    run_paths(a, mr, sr);
    if (!(sr->epoch_series = malloc(cells * sizeof *sr->epoch_series))) return -1;
    for (size_t i = 0; i < cells; i++) sr->epoch_series[i] = NAN;
  }
  return 0;
}

static int init_models(abl_run *r) {
  for (int v = 0; v < ABL_MAX_MODELS; v++)
    if (r->a->use[v] && init_model(r->a, &r->models[r->n_models++], v)) {
      fprintf(stderr, "assoc ablation: out of memory\n");
      return -1;
    }
  return abl_beams_init(r);
}

/* Run j of every model, on its own training set. */
static int train_seed(abl_run *r, int j) {
  const abl_args *a = r->a;
  assoc_dataset train;
  if (abl_generate(2, 8, 30, a->train_samples, abl_train_data_seed(a, j), &train)) return -1;
  int rc = 0;
  for (int i = 0; i < r->n_models && !rc; i++) {
    model_run *mr = &r->models[i];
    rc = train_one(r, mr, &mr->runs[j], &train) ||
         (abl_lead() && evaluate_run(r, mr, &mr->runs[j], j == 0));
    if (!rc) mr->n_runs = j + 1;
  }
  if (!rc) rc = abl_beams_seed(r, j, &train);
  assoc_dataset_free(&train);
  return rc ? -1 : 0;
}

/* ---- means and standard deviations over the seeds -------------------------------------- */

static void summarise_curve(abl_run *r, int i) {
  const model_run *mr = &r->models[i];
  double lb[ABL_MAX_SEEDS], nv[ABL_MAX_SEEDS];
  for (int ci = 0; ci < ABL_CURVES; ci++) {
    curve_data *c = &r->curves[ci];
    for (int p = 0; p < c->points; p++) {
      for (int j = 0; j < mr->n_runs; j++) lb[j] = mr->runs[j].curve_lb[ci][p];
      for (int j = 0; j < mr->n_runs; j++) nv[j] = mr->runs[j].curve_nv[ci][p];
      size_t at = (size_t)(N_CURVE_BASELINES + i) * c->points + p;
      assoc_mean_sd(lb, mr->n_runs, 1, &c->lb[at], &c->lb_sd[at]);
      assoc_mean_sd(nv, mr->n_runs, 1, &c->nv[at], &c->nv_sd[at]);
    }
  }
}

static void summarise_epochs(const abl_args *a, model_run *mr) {
  double x[ABL_MAX_SEEDS];
  for (size_t i = 0; i < (size_t)a->train.epochs * EPOCH_SERIES; i++) {
    for (int j = 0; j < mr->n_runs; j++) x[j] = mr->runs[j].epoch_series[i];
    assoc_mean_sd(x, mr->n_runs, 1, &mr->epoch_mean[i], &mr->epoch_sd[i]);
  }
}

static void summarise(abl_run *r, int i) {
  model_run *mr = &r->models[i];
  assoc_eval_metrics test[ABL_MAX_SEEDS];
  double train[ABL_MAX_SEEDS];
  for (int j = 0; j < mr->n_runs; j++) test[j] = mr->runs[j].test;
  for (int j = 0; j < mr->n_runs; j++) train[j] = mr->runs[j].train_seconds;
  assoc_eval_metrics_mean_sd(test, mr->n_runs, &mr->mean, &mr->sd);
  assoc_mean_sd(train, mr->n_runs, 1, &mr->train_seconds, &mr->train_seconds_sd);
  summarise_curve(r, i);
  summarise_epochs(r->a, mr);
}

int abl_train_models(abl_run *r) {
  if (init_models(r)) return -1;
  for (int j = 0; j < r->a->seeds; j++)
    if (train_seed(r, j)) return -1;
  if (!abl_lead()) return 0; /* trained: no results to summarise */
  for (int i = 0; i < r->n_models; i++) summarise(r, i);
  abl_beams_summarise(r);
  return 0;
}

void abl_free_models(abl_run *r) {
  for (int i = 0; i < r->n_models; i++) {
    model_run *mr = &r->models[i];
    for (int j = 0; mr->runs && j < r->a->seeds; j++) {
      seed_run *sr = &mr->runs[j];
      free(sr->epoch_series), free(sr->lb_assoc), free(sr->nv_assoc);
    }
    free(mr->runs), free(mr->epoch_mean), free(mr->epoch_sd);
  }
  abl_beams_free(r);
}
