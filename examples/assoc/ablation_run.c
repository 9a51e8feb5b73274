/* assoc ablation, the run: the data sets, training the models, evaluating
 * them and the baselines on the test set, and the sum-rate against K. */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>

#include "ablation.h"

static int generate(const abl_args *a, int K, int64_t S, uint64_t seed, assoc_dataset *ds) {
  assoc_scenario sc = assoc_scenario_default();
  sc.K = K, sc.seed = seed;
  sg_io_error err;
  if (assoc_generate(&sc, S, ds, &err)) {
    fprintf(stderr, "assoc ablation: generating data: %s\n", err.msg);
    return -1;
  }
  (void)a;
  return 0;
}

/* Training, validation (per-epoch metrics) and test sets: independent seeds. */
static int make_data(abl_run *r) {
  const abl_args *a = r->a;
  if (generate(a, 8, a->train_samples, a->seed, &r->train) ||
      generate(a, 8, a->val_samples, a->seed + 1, &r->val) ||
      generate(a, 8, a->test_samples, a->seed + 2, &r->test))
    return -1;
  char path[1024];
  sg_io_error err;
  abl_path_in(path, sizeof path, a->out, "test.npz");
  if (assoc_dataset_save(&r->test, path, &err)) {
    fprintf(stderr, "assoc ablation: %s\n", err.msg);
    return -1;
  }
  return 0;
}

/* ---- training ----------------------------------------------------------------------- */

typedef struct epoch_ctx {
  const abl_args *a;
  const char *name;
  int every;
} epoch_ctx;

static void on_epoch(void *user, const assoc_epoch_stats *st) {
  epoch_ctx *c = user;
  if (st->epoch % c->every && st->epoch != c->a->train.epochs) return;
  abl_note(c->a,
           "  %-12s epoch %4d/%d  loss %8.4f  train rate %6.3f  violations %5.1f%%  "
           "val LB rate %6.3f  val violations %5.1f%%  mu %.3f  (%.1f s)\n",
           c->name, st->epoch, c->a->train.epochs, st->loss, st->train_rate,
           100 * st->violation_ratio, st->has_test ? st->test.mean_lb_rate : NAN,
           st->has_test ? 100 * st->test.violation_ratio : NAN, st->mu[0], st->seconds);
}

static void model_key(assoc_gnn_variant v, char *key, size_t len) {
  snprintf(key, len, "%s", assoc_gnn_variant_name(v));
  for (char *p = key; *p; p++)
    if (*p >= 'A' && *p <= 'Z') *p = (char)(*p - 'A' + 'a');
}

static int train_one(abl_run *r, model_run *mr) {
  const abl_args *a = r->a;
  assoc_train_config c = a->train;
  c.variant = mr->variant;
  epoch_ctx ctx = {a, assoc_gnn_variant_name(mr->variant), c.epochs >= 10 ? c.epochs / 10 : 1};
  assoc_train_io io = {.out = mr->ckpt, .checkpoint_every = c.epochs, .log = mr->log};
  io.epoch_fn = on_epoch, io.user = &ctx;
  assoc_train_result res;
  sg_io_error err;
  double t0 = omp_get_wtime();
  abl_note(a, "training %s (%d epochs of %lld mini-batches of %lld)\n", ctx.name, c.epochs,
           (long long)c.batches_per_epoch, (long long)c.batch);
  if (assoc_train_run(&c, &r->train, &r->val, &io, &res, &err)) {
    fprintf(stderr, "assoc ablation: training %s: %s\n", ctx.name, err.msg);
    return -1;
  }
  mr->wall_seconds = omp_get_wtime() - t0;
  mr->train_seconds = res.seconds;
  mr->epochs = res.epochs_done;
  /* Evaluate what was written: the checkpoint, through the loader. */
  mr->model = assoc_checkpoint_load_model(mr->ckpt, &mr->feature_scale, NULL, &err);
  if (!mr->model) {
    fprintf(stderr, "assoc ablation: %s\n", err.msg);
    return -1;
  }
  return 0;
}

static int train_all(abl_run *r) {
  for (int v = 0; v < ASSOC_GNN_VARIANT_COUNT; v++) {
    if (!r->a->use[v]) continue;
    model_run *mr = &r->models[r->n_models++];
    mr->variant = (assoc_gnn_variant)v;
    model_key(mr->variant, mr->key, sizeof mr->key);
    char name[64];
    snprintf(name, sizeof name, "%s.npz", mr->key);
    abl_path_in(mr->ckpt, sizeof mr->ckpt, r->a->out, name);
    snprintf(name, sizeof name, "train_%s.csv", mr->key);
    abl_path_in(mr->log, sizeof mr->log, r->a->out, name);
    if (train_one(r, mr)) return -1;
  }
  return 0;
}

/* ---- evaluation on the test set -------------------------------------------------------- */

static int run_baselines(abl_run *r) {
  assoc_dataset *ds = &r->test;
  size_t SK = (size_t)ds->S * ds->K;
  int *assoc = malloc(SK * sizeof *assoc);
  double *rate = malloc((size_t)ds->S * sizeof *rate);
  r->es_assoc = malloc(SK * sizeof *r->es_assoc);
  r->es_rate = malloc((size_t)ds->S * sizeof *r->es_rate);
  if (!assoc || !rate || !r->es_assoc || !r->es_rate) return free(assoc), free(rate), -1;
  assoc_baseline_opts o = assoc_baseline_defaults();
  o.seed = ds->seed;
  sg_io_error err;
  int rc = 0;
  for (int m = 0; m < ASSOC_METHOD_COUNT && !rc; m++) { /* ES first: the reference */
    double ms;
    int *dst = m == ASSOC_ES ? r->es_assoc : assoc;
    double *rdst = m == ASSOC_ES ? r->es_rate : rate;
    rc = assoc_run_method(ds, (assoc_method)m, &o, dst, rdst, &ms, NULL, NULL, &err);
    if (!rc) rc = assoc_eval_baseline_metrics(ds, dst, r->es_rate, ms, &r->base[m]);
    r->base_done[m] = rc == 0;
  }
  if (rc) fprintf(stderr, "assoc ablation: baselines: %s\n", err.msg);
  free(assoc), free(rate);
  return rc;
}

static int evaluate_models(abl_run *r) {
  assoc_dataset *ds = &r->test;
  double *A = malloc((size_t)ds->S * ds->K * ds->M * sizeof *A);
  if (!A) return -1;
  sg_io_error err;
  for (int i = 0; i < r->n_models; i++) {
    model_run *mr = &r->models[i];
    assoc_eval_opts o = assoc_eval_defaults(mr->feature_scale);
    if (assoc_eval_model(mr->model, ds, &o, r->es_rate, &mr->test, A, NULL, &err)) {
      fprintf(stderr, "assoc ablation: evaluating %s: %s\n", mr->key, err.msg);
      free(A);
      return -1;
    }
    for (int s = 0; s < ONEHOT_SAMPLES; s++)
      for (int k = 0; k < ds->K; k++) {
        const double *row = A + ((size_t)s * ds->K + k) * ds->M;
        int best = 0;
        for (int m = 1; m < ds->M; m++)
          if (row[m] > row[best]) best = m;
        mr->onehot[s][k] = best;
      }
  }
  free(A);
  return 0;
}

/* ---- generalisation to other K (Fig. 4a) ---------------------------------------------- */

const assoc_method abl_curve_baselines[N_CURVE_BASELINES] = {
    ASSOC_ES, ASSOC_LOCALSEARCH, ASSOC_MAXSINR, ASSOC_DA, ASSOC_RANDINT};

/* Baseline rates of one curve point into column p. */
static int curve_point_baselines(abl_run *r, const assoc_dataset *ds, int p, double *es_rate) {
  curve_data *c = &r->curve;
  size_t SK = (size_t)ds->S * ds->K;
  int *assoc = malloc(SK * sizeof *assoc);
  double *rate = malloc((size_t)ds->S * sizeof *rate);
  assoc_baseline_opts o = assoc_baseline_defaults();
  o.seed = ds->seed;
  sg_io_error err;
  int rc = assoc && rate ? 0 : -1;
  for (int i = 0; i < N_CURVE_BASELINES && !rc; i++) {
    assoc_method m = abl_curve_baselines[i];
    assoc_eval_metrics x;
    rc = assoc_run_method(ds, m, &o, assoc, m == ASSOC_ES ? es_rate : rate, NULL, NULL, NULL, &err);
    if (!rc) rc = assoc_eval_baseline_metrics(ds, assoc, es_rate, 0, &x);
    if (!rc) c->lb[i * c->points + p] = c->nv[i * c->points + p] = x.rate_lb;
  }
  if (rc) fprintf(stderr, "assoc ablation: curve baselines: %s\n", err.msg);
  free(assoc), free(rate);
  return rc;
}

static int curve_point(abl_run *r, int K, int p) {
  const abl_args *a = r->a;
  curve_data *c = &r->curve;
  assoc_dataset ds;
  if (generate(a, K, a->curve_samples, a->seed + 100 + (uint64_t)K, &ds)) return -1;
  double *es = malloc((size_t)ds.S * sizeof *es);
  int rc = es ? curve_point_baselines(r, &ds, p, es) : -1;
  sg_io_error err;
  for (int i = 0; i < r->n_models && !rc; i++) {
    model_run *mr = &r->models[i];
    assoc_eval_opts o = assoc_eval_defaults(mr->feature_scale);
    o.latency_samples = 0;
    assoc_eval_metrics x;
    rc = assoc_eval_model(mr->model, &ds, &o, es, &x, NULL, NULL, &err);
    if (rc) fprintf(stderr, "assoc ablation: %s at K = %d: %s\n", mr->key, K, err.msg);
    int row = N_CURVE_BASELINES + i;
    if (!rc)
      c->lb[row * c->points + p] = x.rate_lb, c->nv[row * c->points + p] = x.rate_no_violation;
  }
  free(es);
  assoc_dataset_free(&ds);
  return rc;
}

static int run_curve(abl_run *r) {
  const abl_args *a = r->a;
  curve_data *c = &r->curve;
  c->points = 0;
  for (int K = a->k_min; K <= a->k_max && c->points < MAX_CURVE_POINTS; K += a->k_step)
    c->x[c->points++] = K;
  c->methods = N_CURVE_BASELINES + r->n_models;
  for (int i = 0; i < N_CURVE_BASELINES; i++)
    c->names[i] = assoc_method_name(abl_curve_baselines[i]);
  for (int i = 0; i < r->n_models; i++)
    c->names[N_CURVE_BASELINES + i] = assoc_gnn_variant_name(r->models[i].variant);
  c->lb = calloc((size_t)c->methods * c->points, sizeof *c->lb);
  c->nv = calloc((size_t)c->methods * c->points, sizeof *c->nv);
  if (!c->lb || !c->nv) return -1;
  for (int p = 0; p < c->points; p++) {
    abl_note(a, "sum-rate against K: K = %d\n", (int)c->x[p]);
    if (curve_point(r, (int)c->x[p], p)) return -1;
  }
  return 0;
}

int abl_train(abl_run *r) {
  return make_data(r) || train_all(r) ? -1 : 0;
}

int abl_evaluate(abl_run *r) {
  abl_note(r->a, "evaluating on %lld test samples\n", (long long)r->test.S);
  return run_baselines(r) || evaluate_models(r) || run_curve(r) ? -1 : 0;
}
