/* assoc ablation, the fixed data: the validation and test sets, the data
 * sets of the sum-rate-against-K curve (Fig. 4a), all from the base seed,
 * and the baselines on them, computed once for every seed of the models. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "ablation.h"

int abl_generate(int M, int K, double pt_dbm, int64_t S, uint64_t seed, assoc_dataset *ds) {
  assoc_scenario sc = assoc_scenario_default();
  sc.M = M, sc.K = K, sc.pt_dbm = pt_dbm, sc.seed = seed;
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
  if (abl_generate(2, 8, 30, a->val_samples, a->seed + 1, &r->val) ||
      abl_generate(2, 8, 30, a->test_samples, a->seed + 2, &r->test))
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

/* Method m on ds: its association (assoc), its rates (rate), its metrics
 * (x, may be NULL) against es (NULL: the rates are ES's and become the
 * reference) and its load-balanced association (lb, may be NULL). */
static int baseline_on(const assoc_dataset *ds, assoc_method m, int *assoc, double *rate,
                       const double *es, assoc_eval_metrics *x, int *lb) {
  assoc_baseline_opts o = assoc_baseline_defaults();
  o.seed = ds->seed;
  sg_io_error err;
  double ms;
  assoc_metrics lbm;
  int rc = assoc_run_method(ds, m, &o, assoc, rate, &ms, NULL, NULL, &err);
  if (rc) fprintf(stderr, "assoc ablation: %s: %s\n", assoc_method_name(m), err.msg);
  if (!rc && x) rc = assoc_eval_baseline_metrics(ds, assoc, es ? es : rate, ms, x);
  if (!rc && lb) rc = assoc_metrics_compute(ds, assoc, NULL, NULL, ms, &lbm, lb, NULL);
  return rc;
}

/* ---- the baselines on the test and validation sets ------------------------------------- */

static int run_baselines(abl_run *r) {
  assoc_dataset *ds = &r->test;
  size_t SK = (size_t)ds->S * ds->K;
  double *rate = malloc((size_t)ds->S * sizeof *rate);
  r->es_assoc = malloc(SK * sizeof *r->es_assoc);
  r->es_rate = malloc((size_t)ds->S * sizeof *r->es_rate);
  int rc = rate && r->es_assoc && r->es_rate ? 0 : -1;
  for (int m = 0; m < ASSOC_METHOD_COUNT && !rc; m++) { /* ES first: the reference */
    int es = m == ASSOC_ES, *assoc = es ? r->es_assoc : malloc(SK * sizeof *assoc);
    r->base_lb[m] = malloc(SK * sizeof *r->base_lb[m]);
    rc = assoc && r->base_lb[m] ? 0 : -1;
    if (!rc)
      rc = baseline_on(ds, (assoc_method)m, assoc, es ? r->es_rate : rate, es ? NULL : r->es_rate,
                       &r->base[m], r->base_lb[m]);
    r->base_done[m] = rc == 0;
    if (!es) free(assoc);
  }
  free(rate);
  return rc;
}

/* The curve baselines' LB rates on the validation set (Fig. 2a). */
static int val_baselines(abl_run *r) {
  const assoc_dataset *ds = &r->val;
  size_t SK = (size_t)ds->S * ds->K;
  int *assoc = malloc(SK * sizeof *assoc);
  double *rate = malloc((size_t)ds->S * sizeof *rate), *es = malloc((size_t)ds->S * sizeof *es);
  int rc = assoc && rate && es ? 0 : -1;
  for (int i = 0; i < N_CURVE_BASELINES && !rc; i++) { /* ES first */
    assoc_method m = abl_curve_baselines[i];
    assoc_eval_metrics x;
    rc = baseline_on(ds, m, assoc, m == ASSOC_ES ? es : rate, m == ASSOC_ES ? NULL : es, &x, NULL);
    r->val_base[i] = rc ? NAN : x.rate_lb;
  }
  free(assoc), free(rate), free(es);
  return rc;
}

/* ---- the generalisation curves (Fig. 4a, 4b, 4c) ---------------------------------------- */

const assoc_method abl_curve_baselines[N_CURVE_BASELINES] = {
    ASSOC_ES, ASSOC_LOCALSEARCH, ASSOC_MAXSINR, ASSOC_DA, ASSOC_RANDINT};
const assoc_method abl_bf_curve_baselines[N_BF_CURVE] = {ASSOC_ES, ASSOC_MAXSINR, ASSOC_RANDINT};

/* Where method m's load-balanced association goes for BFGNN, or NULL. */
static int **bf_slot(curve_data *c, int p, assoc_method m) {
  for (int b = 0; b < N_BF_CURVE; b++)
    if (abl_bf_curve_baselines[b] == m) return &c->bf_assoc[p][b];
  return NULL;
}

/* Baseline rates of point p into column p, the ES rates into es_rate, the
 * associations for BFGNN into bf_assoc[p]. */
static int curve_point_baselines(const abl_run *r, curve_data *c, int p) {
  const assoc_dataset *ds = &c->sets[p];
  size_t SK = (size_t)ds->S * ds->K;
  int *assoc = malloc(SK * sizeof *assoc);
  double *rate = malloc((size_t)ds->S * sizeof *rate), *es = c->es_rate[p];
  int rc = assoc && rate ? 0 : -1;
  for (int i = 0; i < N_CURVE_BASELINES && !rc; i++) {
    assoc_method m = abl_curve_baselines[i];
    int **lb = r->a->no_bfgnn ? NULL : bf_slot(c, p, m);
    if (lb && !(*lb = malloc(SK * sizeof **lb))) rc = -1;
    assoc_eval_metrics x;
    if (!rc)
      rc = baseline_on(ds, m, assoc, m == ASSOC_ES ? es : rate, m == ASSOC_ES ? NULL : es, &x,
                       lb ? *lb : NULL);
    if (!rc) c->lb[i * c->points + p] = c->nv[i * c->points + p] = x.rate_lb;
  }
  free(assoc), free(rate);
  return rc;
}

static const char *const curve_parameter[ABL_CURVES] = {"K", "pt_dbm", "M"};
static const char *const curve_file[ABL_CURVES] = {"curve_k.csv", "curve_pt.csv", "curve_m.csv"};

/* The x values of curve i. */
static void curve_points(const abl_args *a, int i, curve_data *c) {
  int lo = i == CURVE_K ? a->k_min : i == CURVE_PT ? a->pt_min : 2;
  int hi = i == CURVE_K ? a->k_max : i == CURVE_PT ? a->pt_max : a->m_max;
  int step = i == CURVE_K ? a->k_step : i == CURVE_PT ? a->pt_step : 1;
  c->points = 0;
  for (int x = lo; x <= hi && c->points < MAX_CURVE_POINTS; x += step) c->x[c->points++] = x;
}

/* The curve's points, methods and arrays; the models' and BFGNN's rows are
 * filled by abl_train_models. */
static int curve_alloc(abl_run *r, int ci) {
  const abl_args *a = r->a;
  curve_data *c = &r->curves[ci];
  c->parameter = curve_parameter[ci], c->file = curve_file[ci];
  curve_points(a, ci, c);
  c->n_models = 0;
  for (int v = 0; v < ABL_MAX_MODELS; v++)
    if (a->use[v]) c->names[N_CURVE_BASELINES + c->n_models++] = abl_model_name(v);
  c->methods = N_CURVE_BASELINES + c->n_models;
  for (int b = 0; b < N_BF_CURVE && !a->no_bfgnn; b++) {
    snprintf(c->bf_names[b], sizeof c->bf_names[b], "%s_BFGNN",
             assoc_method_name(abl_bf_curve_baselines[b]));
    c->names[c->methods++] = c->bf_names[b];
  }
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

/* Point x of curve ci: K x with M 2 (seed base + 100 + K), P_t x dBm with
 * M 2, K 8 (seed base + 300 + P_t), M x with K = 4 M (seed base + 500 + M). */
static int curve_generate(const abl_args *a, int ci, int x, assoc_dataset *ds) {
  int64_t S = a->curve_samples;
  if (ci == CURVE_K) return abl_generate(2, x, 30, S, a->seed + 100 + (uint64_t)x, ds);
  if (ci == CURVE_PT) return abl_generate(2, 8, x, S, a->seed + 300 + (uint64_t)x, ds);
  return abl_generate(x, 4 * x, 30, S, a->seed + 500 + (uint64_t)x, ds);
}

static int curve_sets(abl_run *r, int ci) {
  const abl_args *a = r->a;
  curve_data *c = &r->curves[ci];
  for (int p = 0; p < c->points; p++) {
    int x = (int)c->x[p];
    abl_note(a, "sum-rate against %s: %s = %d (baselines)\n", c->parameter, c->parameter, x);
    if (curve_generate(a, ci, x, &c->sets[p])) return -1;
    c->es_rate[p] = malloc((size_t)c->sets[p].S * sizeof *c->es_rate[p]);
    if (!c->es_rate[p] || curve_point_baselines(r, c, p)) return -1;
  }
  return 0;
}

int abl_prepare(abl_run *r) {
  if (make_data(r)) return -1;
  abl_note(r->a, "baselines on %lld test samples\n", (long long)r->test.S);
  if (run_baselines(r) || val_baselines(r)) return -1;
  for (int ci = 0; ci < ABL_CURVES; ci++)
    if (curve_alloc(r, ci) || curve_sets(r, ci)) return -1;
  return 0;
}

void abl_free_data(abl_run *r) {
  for (int ci = 0; ci < ABL_CURVES; ci++) {
    curve_data *c = &r->curves[ci];
    for (int p = 0; p < c->points; p++) {
      assoc_dataset_free(&c->sets[p]), free(c->es_rate[p]);
      for (int b = 0; b < N_BF_CURVE; b++) free(c->bf_assoc[p][b]);
    }
    free(c->lb), free(c->nv), free(c->lb_sd), free(c->nv_sd);
  }
  for (int m = 0; m < ASSOC_METHOD_COUNT; m++) free(r->base_lb[m]);
  assoc_dataset_free(&r->val), assoc_dataset_free(&r->test);
  free(r->es_assoc), free(r->es_rate);
}
