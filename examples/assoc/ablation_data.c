/* assoc ablation, the fixed data: the validation and test sets, the data
 * sets of the sum-rate-against-K curve (Fig. 4a), all from the base seed,
 * and the baselines on them, computed once for every seed of the models. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "ablation.h"

int abl_generate(int K, int64_t S, uint64_t seed, assoc_dataset *ds) {
  assoc_scenario sc = assoc_scenario_default();
  sc.K = K, sc.seed = seed;
  sg_io_error err;
  if (assoc_generate(&sc, S, ds, &err)) {
    fprintf(stderr, "assoc ablation: generating data: %s\n", err.msg);
    return -1;
  }
  return 0;
}

/* Validation (per-epoch metrics) and test sets: seeds base + 1, base + 2. */
static int make_data(abl_run *r) {
  const abl_args *a = r->a;
  if (abl_generate(8, a->val_samples, a->seed + 1, &r->val) ||
      abl_generate(8, a->test_samples, a->seed + 2, &r->test))
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

/* ---- the baselines on the test set ------------------------------------------------------ */

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

/* ---- the curve over K (Fig. 4a) -------------------------------------------------------- */

const assoc_method abl_curve_baselines[N_CURVE_BASELINES] = {
    ASSOC_ES, ASSOC_LOCALSEARCH, ASSOC_MAXSINR, ASSOC_DA, ASSOC_RANDINT};

/* Baseline rates of curve point p into column p, the ES rates into es_rate. */
static int curve_point_baselines(abl_run *r, int p) {
  curve_data *c = &r->curve;
  const assoc_dataset *ds = &c->sets[p];
  size_t SK = (size_t)ds->S * ds->K;
  int *assoc = malloc(SK * sizeof *assoc);
  double *rate = malloc((size_t)ds->S * sizeof *rate), *es = c->es_rate[p];
  assoc_baseline_opts o = assoc_baseline_defaults();
  o.seed = ds->seed;
  sg_io_error err;
  int rc = assoc && rate ? 0 : -1;
  for (int i = 0; i < N_CURVE_BASELINES && !rc; i++) {
    assoc_method m = abl_curve_baselines[i];
    assoc_eval_metrics x;
    rc = assoc_run_method(ds, m, &o, assoc, m == ASSOC_ES ? es : rate, NULL, NULL, NULL, &err);
    if (!rc) rc = assoc_eval_baseline_metrics(ds, assoc, es, 0, &x);
    if (!rc) c->lb[i * c->points + p] = c->nv[i * c->points + p] = x.rate_lb;
  }
  if (rc) fprintf(stderr, "assoc ablation: curve baselines: %s\n", err.msg);
  free(assoc), free(rate);
  return rc;
}

/* The curve's points, methods and arrays; the models' rows are filled by
 * abl_train_models. */
static int curve_alloc(abl_run *r) {
  const abl_args *a = r->a;
  curve_data *c = &r->curve;
  c->points = 0;
  for (int K = a->k_min; K <= a->k_max && c->points < MAX_CURVE_POINTS; K += a->k_step)
    c->x[c->points++] = K;
  int n_models = 0;
  for (int v = 0; v < ABL_MAX_MODELS; v++)
    if (a->use[v]) c->names[N_CURVE_BASELINES + n_models++] = abl_model_name(v);
  c->methods = N_CURVE_BASELINES + n_models;
  for (int i = 0; i < N_CURVE_BASELINES; i++)
    c->names[i] = assoc_method_name(abl_curve_baselines[i]);
  for (int i = 0; i < c->methods; i++) c->runs[i] = i < N_CURVE_BASELINES ? 0 : a->seeds;
  size_t n = (size_t)c->methods * c->points;
  c->lb = calloc(n, sizeof *c->lb), c->nv = calloc(n, sizeof *c->nv);
  c->lb_sd = calloc(n, sizeof *c->lb_sd), c->nv_sd = calloc(n, sizeof *c->nv_sd);
  if (!c->lb || !c->nv || !c->lb_sd || !c->nv_sd) return -1;
  for (size_t i = 0; i < (size_t)N_CURVE_BASELINES * c->points; i++)
    c->lb_sd[i] = c->nv_sd[i] = NAN;
  return 0;
}

/* Curve point K: seed base + 100 + K. */
static int curve_sets(abl_run *r) {
  const abl_args *a = r->a;
  curve_data *c = &r->curve;
  for (int p = 0; p < c->points; p++) {
    int K = (int)c->x[p];
    abl_note(a, "sum-rate against K: K = %d (baselines)\n", K);
    if (abl_generate(K, a->curve_samples, a->seed + 100 + (uint64_t)K, &c->sets[p])) return -1;
    c->es_rate[p] = malloc((size_t)c->sets[p].S * sizeof *c->es_rate[p]);
    if (!c->es_rate[p] || curve_point_baselines(r, p)) return -1;
  }
  return 0;
}

int abl_prepare(abl_run *r) {
  if (make_data(r)) return -1;
  abl_note(r->a, "baselines on %lld test samples\n", (long long)r->test.S);
  return run_baselines(r) || curve_alloc(r) || curve_sets(r) ? -1 : 0;
}

void abl_free_data(abl_run *r) {
  curve_data *c = &r->curve;
  for (int p = 0; p < c->points; p++) assoc_dataset_free(&c->sets[p]), free(c->es_rate[p]);
  free(c->lb), free(c->nv), free(c->lb_sd), free(c->nv_sd);
  assoc_dataset_free(&r->val), assoc_dataset_free(&r->test);
  free(r->es_assoc), free(r->es_rate);
}
