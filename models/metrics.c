/* Batched baseline runs (OpenMP over samples) and the metrics of models.md:
 * mean sum-rate, violation ratio, load-balanced sum-rate, ratio to ES and
 * time per sample. */
#include "assoc_work.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { CHUNK = 64 }; /* samples between progress reports */

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

void sg_load_balance(const sg_problem *p, const int *assoc, const double *score, int *out) {
  int M = p->M, K = p->K;
  keep_key on_bs[SG_MAX_UES];
  memcpy(out, assoc, (size_t)K * sizeof *out);
  for (int m = 0; m < M; m++) {
    int n = 0;
    for (int k = 0; k < K; k++) {
      if (assoc[k] != m) continue;
      keep_key key = {score ? score[k * M + m] : 0.0, sg_link_snr(p, k, m), k};
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

static sample_metrics measure_sample(const sg_problem *p, const int *assoc, const double *score,
                                     int *load, int *lb) {
  sample_metrics r = {0};
  r.rate = sg_rate_int(p->gain, p->M, p->K, assoc, NULL);
  r.violated = sg_loads(p->M, p->K, assoc, load) > p->N;
  sg_load_balance(p, assoc, score, lb);
  r.lb_rate = sg_rate_int(p->gain, p->M, p->K, lb, NULL);
  for (int k = 0; k < p->K; k++) r.dropped += lb[k] < 0;
  return r;
}

int sg_metrics_compute(const sg_dataset *ds, const int *assoc, const double *score,
                       const double *es_rate, double ms_per_sample, sg_metrics *out, int *lb_assoc,
                       double *lb_rate) {
  int M = ds->M, K = ds->K, failed = 0;
  double sum_rate = 0, sum_lb = 0, sum_es = 0, violations = 0, dropped = 0;
#pragma omp parallel reduction(+ : sum_rate, sum_lb, sum_es, violations, dropped)
  {
    double *gain = malloc((size_t)M * K * K * sizeof *gain);
    int *load = malloc((size_t)M * sizeof *load), *lb = malloc((size_t)K * sizeof *lb);
    if (!gain || !load || !lb) {
#pragma omp atomic write
      failed = 1;
    }
#pragma omp for schedule(static)
    for (int64_t s = 0; s < ds->S; s++) {
      if (!gain || !load || !lb) continue;
      sg_coupling_gain(ds, s, gain);
      sg_problem p = {M, ds->N, K, gain};
      sample_metrics r =
          measure_sample(&p, assoc + s * K, score ? score + s * K * M : NULL, load, lb);
      sum_rate += r.rate, sum_lb += r.lb_rate, violations += r.violated, dropped += r.dropped;
      if (es_rate) sum_es += es_rate[s];
      if (lb_assoc) memcpy(lb_assoc + s * K, lb, (size_t)K * sizeof *lb);
      if (lb_rate) lb_rate[s] = r.lb_rate;
    }
    free(gain), free(load), free(lb);
  }
  if (failed) return -1;
  double S = (double)ds->S;
  *out = (sg_metrics){.samples = ds->S,
                      .mean_rate = sum_rate / S,
                      .violation_ratio = violations / S,
                      .mean_lb_rate = sum_lb / S,
                      .mean_dropped = dropped / S,
                      .ratio_to_es = es_rate ? sum_lb / sum_es : NAN,
                      .ms_per_sample = ms_per_sample};
  return 0;
}

/* ---- batched runs -------------------------------------------------------------------- */

static int fail(char *msg, size_t len, const char *text) {
  if (msg && len) snprintf(msg, len, "%s", text);
  return -1;
}

/* Solves samples [begin, end); adds the per-sample seconds to *seconds. */
static int run_chunk(const sg_dataset *ds, sg_method method, const sg_baseline_opts *o,
                     int64_t begin, int64_t end, int *assoc, double *rate, double *seconds) {
  int M = ds->M, N = ds->N, K = ds->K, failed = 0;
  double total = 0.0;
#pragma omp parallel reduction(+ : total)
  {
    double *gain = malloc((size_t)M * K * K * sizeof *gain);
    sg_work *w = sg_work_new(M, N, K);
    if (!gain || !w) {
#pragma omp atomic write
      failed = 1;
    }
#pragma omp for schedule(dynamic)
    for (int64_t s = begin; s < end; s++) {
      if (!gain || !w) continue;
      double t0 = omp_get_wtime();
      sg_coupling_gain(ds, s, gain);
      sg_problem p = {M, N, K, gain};
      rate[s] = sg_solve(method, &p, o, (uint64_t)s, w, assoc + s * K);
      total += omp_get_wtime() - t0;
    }
    free(gain);
    sg_work_free(w);
  }
  *seconds += total;
  return failed ? -1 : 0;
}

int sg_run_method(const sg_dataset *ds, sg_method m, const sg_baseline_opts *o, int *assoc,
                  double *rate, double *ms_per_sample, sg_progress_fn progress, void *user,
                  char *msg, size_t msg_len) {
  if ((unsigned)m >= SG_METHOD_COUNT) return fail(msg, msg_len, "unknown method");
  if (m == SG_ES && sg_feasible_count(ds->M, ds->N, ds->K) > o->es_max_leaves) {
    if (msg && msg_len)
      snprintf(msg, msg_len, "ES would search %.3g associations per sample (limit %.3g)",
               sg_feasible_count(ds->M, ds->N, ds->K), o->es_max_leaves);
    return -1;
  }
  double seconds = 0.0;
  for (int64_t begin = 0; begin < ds->S; begin += CHUNK) {
    int64_t end = begin + CHUNK < ds->S ? begin + CHUNK : ds->S;
    if (run_chunk(ds, m, o, begin, end, assoc, rate, &seconds))
      return fail(msg, msg_len, "out of memory");
    if (progress) progress(user, sg_method_name(m), end, ds->S);
  }
  if (ms_per_sample) *ms_per_sample = 1e3 * seconds / (double)ds->S;
  return 0;
}
