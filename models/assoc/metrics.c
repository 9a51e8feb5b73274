/* Load balancing by dropping and the metrics of models.md: mean sum-rate,
 * violation ratio, load-balanced sum-rate, ratio to ES and time per
 * sample. */
#include "solver_work.h"

#include <math.h>
#include <string.h>

/* ---- load balancing by dropping ------------------------------------------------------ */

typedef struct keep_key {
  double score, snr;
  int k;
} keep_key;

/* 1 when a should be kept before b. */
static int keeps_before(keep_key a, keep_key b) {
  if (a.score != b.score) return a.score > b.score;
  if (a.snr != b.snr) return a.snr > b.snr;
  return a.k < b.k;
}

void assoc_load_balance(const assoc_problem *p, const int *assoc, const double *score, int *out) {
  int M = p->M, K = p->K;
  keep_key on_bs[ASSOC_MAX_UES];
  memcpy(out, assoc, (size_t)K * sizeof *out);
  for (int m = 0; m < M; m++) {
    int n = 0;
    for (int k = 0; k < K; k++) {
      if (assoc[k] != m) continue;
      keep_key key = {score ? score[k * M + m] : 0.0, assoc_link_snr(p, k, m), k};
      int i = n++;
      for (; i > 0 && keeps_before(key, on_bs[i - 1]); i--) on_bs[i] = on_bs[i - 1];
      on_bs[i] = key;
    }
    for (int i = p->N; i < n; i++) out[on_bs[i].k] = -1;
  }
}

/* ---- metrics ------------------------------------------------------------------------- */

typedef struct sample_metrics {
  double rate, lb_rate;
  int violated, dropped;
} sample_metrics;

static sample_metrics measure_sample(const assoc_problem *p, const int *assoc, const double *score,
                                     int *load, int *lb) {
  sample_metrics r = {0};
  r.rate = assoc_rate_int(p->gain, p->M, p->K, assoc, NULL);
  r.violated = assoc_loads(p->M, p->K, assoc, load) > p->N;
  assoc_load_balance(p, assoc, score, lb);
  r.lb_rate = assoc_rate_int(p->gain, p->M, p->K, lb, NULL);
  for (int k = 0; k < p->K; k++) r.dropped += lb[k] < 0;
  return r;
}

int assoc_metrics_compute(const assoc_dataset *ds, const int *assoc, const double *score,
                          const double *es_rate, double ms_per_sample, assoc_metrics *out,
                          int *lb_assoc, double *lb_rate) {
  int M = ds->M, K = ds->K, failed = 0;
  double sum_rate = 0, sum_lb = 0, sum_es = 0, violations = 0, dropped = 0;
#pragma omp parallel reduction(+ : sum_rate, sum_lb, sum_es, violations, dropped)
  {
    double *gain = sg_malloc((size_t)M * K * K * sizeof *gain);
    int *load = sg_malloc((size_t)M * sizeof *load), *lb = sg_malloc((size_t)K * sizeof *lb);
    if (!gain || !load || !lb) {
#pragma omp atomic write
      failed = 1;
    }
#pragma omp for schedule(static)
    for (int64_t s = 0; s < ds->S; s++) {
      if (!gain || !load || !lb) continue;
      assoc_coupling_gain(ds, s, gain);
      assoc_problem p = {M, ds->N, K, gain};
      sample_metrics r =
          measure_sample(&p, assoc + s * K, score ? score + s * K * M : NULL, load, lb);
      sum_rate += r.rate, sum_lb += r.lb_rate, violations += r.violated, dropped += r.dropped;
      if (es_rate) sum_es += es_rate[s];
      if (lb_assoc) memcpy(lb_assoc + s * K, lb, (size_t)K * sizeof *lb);
      if (lb_rate) lb_rate[s] = r.lb_rate;
    }
    sg_mfree(gain), sg_mfree(load), sg_mfree(lb);
  }
  if (failed) return -1;
  double S = (double)ds->S;
  *out = (assoc_metrics){.samples = ds->S,
                         .mean_rate = sum_rate / S,
                         .violation_ratio = violations / S,
                         .mean_lb_rate = sum_lb / S,
                         .mean_dropped = dropped / S,
                         .ratio_to_es = es_rate ? sum_lb / sum_es : NAN,
                         .ms_per_sample = ms_per_sample};
  return 0;
}
