/* Evaluation of association models and baselines: integer roundings, the
 * metrics of paper Table 1 and GNN inference with timings (assoc_eval.h,
 * docs/ablation.md). The reports are in report.c. */
#include "assoc_eval.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "models_internal.h"

/* ---- roundings ----------------------------------------------------------------------- */

void assoc_round_no_violation(const double *A, int M, int N, int K, assoc_assign_work *w,
                              int *assoc) {
  double *weight = assoc_assign_work_weights(w);
  for (int i = 0; i < K * M; i++) {
    double l = A[i] > 0 ? log(A[i]) : ASSOC_LOG_FLOOR;
    weight[i] = l > ASSOC_LOG_FLOOR ? l : ASSOC_LOG_FLOOR;
  }
  assoc_assign_max_weight(weight, M, N, K, w, assoc);
}

/* ---- metrics ------------------------------------------------------------------------- */

/* Per-sample results, summed afterwards in sample order so that the means do
 * not depend on the thread count. */
typedef struct per_sample {
  double *rate, *rate_lb, *rate_nv;
  int *violated, *dropped;
} per_sample;

static void per_sample_free(per_sample *ps) {
  void *blocks[] = {ps->rate, ps->rate_lb, ps->rate_nv, ps->violated, ps->dropped};
  for (size_t i = 0; i < sizeof blocks / sizeof blocks[0]; i++) sg_mfree(blocks[i]);
}

static int per_sample_alloc(per_sample *ps, int64_t S) {
  size_t n = S > 0 ? (size_t)S : 1;
  *ps = (per_sample){sg_malloc(n * sizeof(double)), sg_malloc(n * sizeof(double)),
                     sg_malloc(n * sizeof(double)), sg_malloc(n * sizeof(int)),
                     sg_malloc(n * sizeof(int))};
  if (ps->rate && ps->rate_lb && ps->rate_nv && ps->violated && ps->dropped) return 0;
  per_sample_free(ps);
  return -1;
}

/* Thread-local scratch of one sample's evaluation. */
typedef struct sample_scratch {
  double *gain;
  int *load, *one_hot, *lb, *nv;
  assoc_assign_work *assign;
} sample_scratch;

static void scratch_free(sample_scratch *s) {
  void *blocks[] = {s->gain, s->load, s->one_hot, s->lb, s->nv};
  for (size_t i = 0; i < sizeof blocks / sizeof blocks[0]; i++) sg_mfree(blocks[i]);
  assoc_assign_work_free(s->assign);
}

static int scratch_alloc(sample_scratch *s, int M, int N, int K) {
  *s = (sample_scratch){sg_malloc((size_t)M * K * K * sizeof(double)),
                        sg_malloc((size_t)M * sizeof(int)),
                        sg_malloc((size_t)K * sizeof(int)),
                        sg_malloc((size_t)K * sizeof(int)),
                        sg_malloc((size_t)K * sizeof(int)),
                        assoc_assign_work_new(M, N, K)};
  if (s->gain && s->load && s->one_hot && s->lb && s->nv && s->assign) return 0;
  scratch_free(s);
  return -1;
}

/* Evaluates sample s of A~ into ps and the optional association outputs. */
static void eval_sample(const assoc_dataset *ds, int64_t s, const double *A, sample_scratch *w,
                        per_sample *ps, const assoc_eval_assocs *out) {
  int M = ds->M, N = ds->N, K = ds->K;
  const double *As = A + s * K * M;
  assoc_coupling_gain(ds, s, w->gain);
  assoc_problem p = {M, N, K, w->gain};
  assoc_argmax_rows(As, K, M, w->one_hot);
  ps->rate[s] = assoc_rate_int(w->gain, M, K, w->one_hot, NULL);
  ps->violated[s] = assoc_loads(M, K, w->one_hot, w->load) > N;
  assoc_load_balance(&p, w->one_hot, As, w->lb);
  ps->rate_lb[s] = assoc_rate_int(w->gain, M, K, w->lb, NULL);
  ps->dropped[s] = 0;
  for (int k = 0; k < K; k++) ps->dropped[s] += w->lb[k] < 0;
  assoc_round_no_violation(As, M, N, K, w->assign, w->nv);
  ps->rate_nv[s] = assoc_rate_int(w->gain, M, K, w->nv, NULL);
  if (!out) return;
  size_t bytes = (size_t)K * sizeof(int);
  if (out->one_hot) memcpy(out->one_hot + s * K, w->one_hot, bytes);
  if (out->lb) memcpy(out->lb + s * K, w->lb, bytes);
  if (out->nv) memcpy(out->nv + s * K, w->nv, bytes);
}

/* The per-sample rates of ps into the requested members of out. */
static void copy_rates(const per_sample *ps, int64_t S, const assoc_eval_assocs *out) {
  size_t bytes = (size_t)S * sizeof(double);
  if (!out || S <= 0) return;
  if (out->rate) memcpy(out->rate, ps->rate, bytes);
  if (out->rate_lb) memcpy(out->rate_lb, ps->rate_lb, bytes);
  if (out->rate_nv) memcpy(out->rate_nv, ps->rate_nv, bytes);
}

static double mean_of(const double *x, int64_t S) {
  double s = 0.0;
  for (int64_t i = 0; i < S; i++) s += x[i];
  return S > 0 ? s / (double)S : NAN;
}

/* Fills the means of ps (and the ES ratios) into out. */
static void summarise(const assoc_dataset *ds, const per_sample *ps, const double *es_rate,
                      assoc_eval_metrics *out) {
  int64_t S = ds->S, violated = 0, dropped = 0;
  for (int64_t s = 0; s < S; s++) violated += ps->violated[s], dropped += ps->dropped[s];
  *out = (assoc_eval_metrics){.samples = S, .M = ds->M, .N = ds->N, .K = ds->K};
  out->violation_ratio = S > 0 ? (double)violated / (double)S : NAN;
  out->mean_dropped = S > 0 ? (double)dropped / (double)S : NAN;
  out->rate = mean_of(ps->rate, S);
  out->rate_lb = mean_of(ps->rate_lb, S);
  out->rate_no_violation = mean_of(ps->rate_nv, S);
  out->es_rate = es_rate ? mean_of(es_rate, S) : NAN;
  out->ratio_to_es = out->rate_lb / out->es_rate;
  out->ratio_nv_to_es = out->rate_no_violation / out->es_rate;
}

int assoc_eval_assoc_metrics(const assoc_dataset *ds, const double *A, const double *es_rate,
                             assoc_eval_metrics *out, const assoc_eval_assocs *assocs) {
  per_sample ps;
  if (per_sample_alloc(&ps, ds->S)) return -1;
  int failed = 0;
#pragma omp parallel
  {
    sample_scratch w;
    int ok = scratch_alloc(&w, ds->M, ds->N, ds->K) == 0;
    if (!ok) {
#pragma omp atomic write
      failed = 1;
    }
#pragma omp for schedule(static)
    for (int64_t s = 0; s < ds->S; s++)
      if (ok) eval_sample(ds, s, A, &w, &ps, assocs);
    if (ok) scratch_free(&w);
  }
  if (!failed) {
    summarise(ds, &ps, es_rate, out);
    copy_rates(&ps, ds->S, assocs);
  }
  per_sample_free(&ps);
  return failed ? -1 : 0;
}

int assoc_eval_baseline_metrics(const assoc_dataset *ds, const int *assoc, const double *es_rate,
                                double ms_per_sample, assoc_eval_metrics *out) {
  assoc_metrics m;
  if (assoc_metrics_compute(ds, assoc, NULL, es_rate, ms_per_sample, &m, NULL, NULL)) return -1;
  *out = (assoc_eval_metrics){.samples = ds->S, .M = ds->M, .N = ds->N, .K = ds->K};
  out->violation_ratio = m.violation_ratio;
  out->rate = m.mean_rate;
  out->rate_lb = m.mean_lb_rate;
  out->rate_no_violation = m.mean_lb_rate;
  out->mean_dropped = m.mean_dropped;
  out->es_rate = es_rate ? mean_of(es_rate, ds->S) : NAN;
  out->ratio_to_es = m.ratio_to_es;
  out->ratio_nv_to_es = m.ratio_to_es;
  out->infer_us = out->latency_us = 1e3 * ms_per_sample;
  out->batch = 1;
  out->threads = omp_get_max_threads();
  return 0;
}

int assoc_eval_es_rates(const assoc_dataset *ds, double max_leaves, double *rate, int *assoc_out) {
  if (assoc_feasible_count(ds->M, ds->N, ds->K) > max_leaves) return -1;
  size_t SK = (size_t)ds->S * ds->K;
  int *assoc = assoc_out ? assoc_out : sg_malloc((SK > 0 ? SK : 1) * sizeof *assoc);
  assoc_baseline_opts o = assoc_baseline_defaults();
  o.es_max_leaves = max_leaves;
  int rc = assoc ? assoc_run_method(ds, ASSOC_ES, &o, assoc, rate, NULL, NULL, NULL, NULL) : -1;
  if (assoc != assoc_out) sg_mfree(assoc);
  return rc;
}

/* ---- model inference -------------------------------------------------------------------- */

assoc_eval_opts assoc_eval_defaults(double feature_scale) {
  return (assoc_eval_opts){
      .feature_scale = feature_scale, .batch = 256, .latency_samples = 32, .draw_seed = 1};
}

int assoc_eval_check(const assoc_gnn *m, const assoc_dataset *ds, sg_io_error *err) {
  if (assoc_gnn_check_data(m, ds, err)) return -1;
  return 0;
}

int assoc_eval_infer(const assoc_gnn *m, const assoc_dataset *ds, const assoc_eval_opts *o,
                     double *A, double *seconds, sg_io_error *err) {
  if (assoc_eval_check(m, ds, err)) return -1;
  /* chunk 0: assoc_gnn_predict's default, which bounds the working memory */
  assoc_gnn_infer_opts io = {.feature_scale = o->feature_scale, .batch = o->batch, .chunk = 0};
  return assoc_gnn_infer(m, ds, ds->S, &io, A, NULL, seconds, err);
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* Median wall time in seconds of single-sample forwards over the first n
 * samples (outputs discarded). NaN if n = 0. */
static double single_sample_latency(const assoc_model *m, const assoc_dataset *ds, double scale,
                                    int n) {
  if (n > ds->S) n = (int)ds->S;
  if (n <= 0) return NAN;
  double *t = sg_malloc((size_t)n * sizeof *t);
  double *A = sg_malloc((size_t)n * ds->K * ds->M * sizeof *A);
  assoc_gnn_infer_opts io = {.feature_scale = scale, .batch = 1, .chunk = 0};
  double median = NAN;
  if (t && A && !assoc_model_infer(m, ds, n, &io, A, t, NULL, NULL)) {
    qsort(t, n, sizeof *t, cmp_double);
    median = n % 2 ? t[n / 2] : 0.5 * (t[n / 2 - 1] + t[n / 2]);
  }
  sg_mfree(t), sg_mfree(A);
  return median;
}

/* The sampled decoding's members of out. 0 or -1 (memory). */
static int sampled_metrics(const assoc_dataset *ds, const double *A, const assoc_eval_opts *o,
                           assoc_eval_metrics *out) {
  double *rate = sg_malloc((size_t)(ds->S > 0 ? ds->S : 1) * sizeof *rate);
  int rc =
      rate ? assoc_eval_sampled(ds, A, o->draws, o->draw_seed, rate, NULL, &out->decode_us) : -1;
  if (!rc) {
    out->draws = o->draws;
    out->rate_sampled = mean_of(rate, ds->S);
    out->ratio_sampled_to_es = out->rate_sampled / out->es_rate;
  }
  sg_mfree(rate);
  return rc;
}

int assoc_model_eval(const assoc_model *m, const assoc_dataset *ds, const assoc_eval_opts *o,
                     const double *es_rate, assoc_eval_metrics *out, double *A_out,
                     const assoc_eval_assocs *assocs, sg_io_error *err) {
  if (!m || !m->params || !m->forward)
    return assoc_fail(err, "evaluation needs a model with parameters and a forward");
  size_t SKM = (size_t)ds->S * ds->K * ds->M;
  double *A = A_out ? A_out : sg_malloc(SKM * sizeof *A);
  if (!A) return assoc_fail(err, "out of memory");
  double seconds = 0.0;
  /* chunk 0: the model's eval_chunk, which bounds the working memory */
  assoc_gnn_infer_opts io = {.feature_scale = o->feature_scale, .batch = o->batch, .chunk = 0};
  int rc = assoc_model_infer(m, ds, ds->S, &io, A, NULL, &seconds, err);
  double latency = rc ? NAN : single_sample_latency(m, ds, o->feature_scale, o->latency_samples);
  if (!rc && assoc_eval_assoc_metrics(ds, A, es_rate, out, assocs))
    rc = assoc_fail(err, "out of memory");
  if (!rc && o->draws > 1 && sampled_metrics(ds, A, o, out)) rc = assoc_fail(err, "out of memory");
  if (!rc) {
    out->infer_us = ds->S > 0 ? 1e6 * seconds / (double)ds->S : NAN;
    out->latency_us = 1e6 * latency;
    out->batch = o->batch;
    out->threads = omp_get_max_threads();
    out->params = sg_params_numel(m->params);
  }
  if (A != A_out) sg_mfree(A);
  return rc;
}

int assoc_eval_model(const assoc_gnn *m, const assoc_dataset *ds, const assoc_eval_opts *o,
                     const double *es_rate, assoc_eval_metrics *out, double *A_out,
                     const assoc_eval_assocs *assocs, sg_io_error *err) {
  if (assoc_eval_check(m, ds, err)) return -1;
  assoc_model net = assoc_gnn_model(m);
  return assoc_model_eval(&net, ds, o, es_rate, out, A_out, assocs, err);
}
