/* The association methods by name, one entry point for any of them, and
 * batched runs over a data set (OpenMP over samples). */
#include "solver_work.h"

#include <math.h>
#include <omp.h>
#include <strings.h>

#include "models_internal.h"

enum { CHUNK = 64 }; /* samples between progress reports */

/* ---- names ---------------------------------------------------------------------- */

static const char *const method_names[ASSOC_METHOD_COUNT] = {
    "ES", "MaxSINR", "MaxSINR-capped", "RandInt", "DA", "Assign", "LocalSearch"};
static const char *const method_keys[ASSOC_METHOD_COUNT] = {
    "ES", "MaxSINR", "MaxSINR_capped", "RandInt", "DA", "Assign", "LocalSearch"};

const char *assoc_method_name(assoc_method m) {
  return (unsigned)m < ASSOC_METHOD_COUNT ? method_names[m] : "?";
}
const char *assoc_method_key(assoc_method m) {
  return (unsigned)m < ASSOC_METHOD_COUNT ? method_keys[m] : "?";
}

int assoc_method_parse(const char *name) {
  for (int m = 0; m < ASSOC_METHOD_COUNT; m++)
    if (!strcasecmp(name, method_names[m]) || !strcasecmp(name, method_keys[m])) return m;
  return -1;
}

assoc_baseline_opts assoc_baseline_defaults(void) {
  assoc_baseline_opts o = {.seed = 1, .da_iters = 100, .da_step0 = 1.0, .es_max_leaves = 1e9};
  return o;
}

/* ---- dispatch ------------------------------------------------------------------------ */

double assoc_solve(assoc_method m, const assoc_problem *p, const assoc_baseline_opts *o,
                   uint64_t index, assoc_work *w, int *assoc) {
  sg_rng rng;
  switch (m) {
  case ASSOC_ES:
    return assoc_es(p, w, assoc, NULL);
  case ASSOC_MAXSINR:
    return assoc_maxsinr(p, assoc);
  case ASSOC_MAXSINR_CAPPED:
    return assoc_maxsinr_capped(p, w, assoc);
  case ASSOC_RANDINT:
    sg_rng_seed(&rng, assoc_stream_seed(o->seed, 1, index));
    return assoc_randint(p, &rng, w, assoc);
  case ASSOC_DA:
    return assoc_da(p, o->da_iters, o->da_step0, w, assoc);
  case ASSOC_ASSIGN:
    return assoc_assign(p, w, assoc);
  case ASSOC_LOCALSEARCH:
    return assoc_local_search_baseline(p, o, index, w, assoc);
  default:
    return NAN;
  }
}

/* ---- batched runs -------------------------------------------------------------------- */

/* Solves samples [begin, end); adds the per-sample seconds to *seconds. */
static int run_chunk(const assoc_dataset *ds, assoc_method method, const assoc_baseline_opts *o,
                     int64_t begin, int64_t end, int *assoc, double *rate, double *seconds) {
  int M = ds->M, N = ds->N, K = ds->K, failed = 0;
  double total = 0.0;
#pragma omp parallel reduction(+ : total)
  {
    double *gain = sg_malloc((size_t)M * K * K * sizeof *gain);
    assoc_work *w = assoc_work_new(M, N, K);
    if (!gain || !w) {
#pragma omp atomic write
      failed = 1;
    }
#pragma omp for schedule(dynamic)
    for (int64_t s = begin; s < end; s++) {
      if (!gain || !w) continue;
      double t0 = omp_get_wtime();
      assoc_coupling_gain(ds, s, gain);
      assoc_problem p = {M, N, K, gain};
      rate[s] = assoc_solve(method, &p, o, (uint64_t)s, w, assoc + s * K);
      total += omp_get_wtime() - t0;
    }
    sg_mfree(gain);
    assoc_work_free(w);
  }
  *seconds += total;
  return failed ? -1 : 0;
}

int assoc_run_method(const assoc_dataset *ds, assoc_method m, const assoc_baseline_opts *o,
                     int *assoc, double *rate, double *ms_per_sample, assoc_progress_fn progress,
                     void *user, sg_io_error *err) {
  if ((unsigned)m >= ASSOC_METHOD_COUNT) return assoc_fail(err, "unknown method");
  if (m == ASSOC_ES && assoc_feasible_count(ds->M, ds->N, ds->K) > o->es_max_leaves)
    return assoc_fail(err, "ES would search %.3g associations per sample (limit %.3g)",
                      assoc_feasible_count(ds->M, ds->N, ds->K), o->es_max_leaves);
  double seconds = 0.0;
  for (int64_t begin = 0; begin < ds->S; begin += CHUNK) {
    int64_t end = begin + CHUNK < ds->S ? begin + CHUNK : ds->S;
    if (run_chunk(ds, m, o, begin, end, assoc, rate, &seconds))
      return assoc_fail(err, "out of memory");
    if (progress) progress(user, assoc_method_name(m), end, ds->S);
  }
  if (ms_per_sample) *ms_per_sample = 1e3 * seconds / (double)ds->S;
  return 0;
}
