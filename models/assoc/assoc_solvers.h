/* Association of UEs to BSs on the wireless system model (docs/system.md):
 * the max-weight assignment, the exact search (ES) and the baselines, runs
 * of any method over a data set, load balancing and the metrics of
 * docs/models.md.
 *
 * Layouts as in assoc_wireless.h: an integer association is assoc[k] in
 * 0..M-1, or -1 for a dropped UE. */
#ifndef ASSOC_SOLVERS_H
#define ASSOC_SOLVERS_H

#include <stdint.h>

#include "assoc_wireless.h"

/* The shared libraries export what the public headers declare and hide the
 * rest (they are built with -fvisibility=hidden). */
#ifdef __GNUC__
#pragma GCC visibility push(default)
#endif
#ifdef __cplusplus
extern "C" {
#endif

/* ---- max-weight assignment (models/assoc/assign.c) ------------------------------- */

/* Scratch of the max-weight assignment for one size; one thread at a time. */
typedef struct assoc_assign_work assoc_assign_work;
assoc_assign_work *assoc_assign_work_new(int M, int N, int K); /* NULL: bad size or no memory */
void assoc_assign_work_free(assoc_assign_work *w);
/* A K x M scratch array of w for the caller's weights. */
double *assoc_assign_work_weights(assoc_assign_work *w);

/* Max-weight assignment of K UEs to N replicas of each of M BSs (Hungarian
 * algorithm on the max(K, M*N) square cost matrix, zero-padded): maximises
 * sum_k weight[k*M + assoc[k]] over the associations with every load <= N
 * that serve min(K, M*N) UEs; the others get -1. Returns the total weight.
 * The weights must be finite. */
double assoc_assign_max_weight(const double *weight, int M, int N, int K, assoc_assign_work *w,
                               int *assoc);

/* ---- methods and problems -------------------------------------------------------- */

typedef enum assoc_method {
  ASSOC_ES,
  ASSOC_MAXSINR,
  ASSOC_MAXSINR_CAPPED,
  ASSOC_RANDINT,
  ASSOC_DA,
  ASSOC_ASSIGN,
  ASSOC_LOCALSEARCH,
  ASSOC_METHOD_COUNT
} assoc_method;

const char *assoc_method_name(assoc_method m); /* "ES", "MaxSINR-capped", ... */
const char *assoc_method_key(assoc_method m);  /* "ES", "MaxSINR_capped", ...: .npz/JSON keys */
int assoc_method_parse(const char *name);      /* name or key, any case; -1 if unknown */

/* One sample's problem: the gain array of assoc_coupling_gain. */
typedef struct assoc_problem {
  int M, N, K;
  const double *gain; /* M x K x K */
} assoc_problem;

/* UEs served by every feasible baseline: min(K, M*N). When K > M*N the
 * remaining K - M*N UEs are dropped (-1). */
int assoc_served_count(const assoc_problem *p);

typedef struct assoc_baseline_opts {
  uint64_t seed;        /* RandInt streams: sample s uses assoc_stream_seed(seed, 1, s) */
  int da_iters;         /* 100 */
  double da_step0;      /* 1.0 (bps/Hz per unit of overload) */
  double es_max_leaves; /* refuse ES above this many feasible associations (1e9) */
} assoc_baseline_opts;
assoc_baseline_opts assoc_baseline_defaults(void);

/* Scratch for one problem size, used by one thread at a time. */
typedef struct assoc_work assoc_work;
assoc_work *assoc_work_new(int M, int N, int K); /* NULL when out of memory */
void assoc_work_free(assoc_work *w);

/* Each solver writes assoc (K) and, except MaxSINR, respects every load <= N
 * and serves exactly assoc_served_count UEs. They return the sum-rate. */
typedef struct assoc_es_stats {
  int64_t nodes, leaves; /* search-tree nodes expanded, complete associations evaluated */
} assoc_es_stats;
double assoc_es(const assoc_problem *p, assoc_work *w, int *assoc, assoc_es_stats *stats);
/* Plain enumeration of every feasible association (tests; small sizes). */
double assoc_es_bruteforce(const assoc_problem *p, int *assoc);
/* Number of feasible associations ES searches (as a double; may be huge). */
double assoc_feasible_count(int M, int N, int K);
double assoc_maxsinr(const assoc_problem *p, int *assoc);
double assoc_maxsinr_capped(const assoc_problem *p, assoc_work *w, int *assoc);
double assoc_randint(const assoc_problem *p, sg_rng *rng, assoc_work *w, int *assoc);
double assoc_da(const assoc_problem *p, int iters, double step0, assoc_work *w, int *assoc);
double assoc_assign(const assoc_problem *p, assoc_work *w, int *assoc);
/* Local search from `start` (feasible): best-improving single moves and
 * pairwise swaps on the true sum-rate until none raises it. */
double assoc_local_search(const assoc_problem *p, const int *start, assoc_work *w, int *assoc);
/* LocalSearch as a baseline: starts from the best of MaxSINR (if feasible),
 * MaxSINR-capped, RandInt, DA and Assign. */
double assoc_local_search_baseline(const assoc_problem *p, const assoc_baseline_opts *o,
                                   uint64_t index, assoc_work *w, int *assoc);
/* Any method on one problem; `index` selects RandInt's stream. */
double assoc_solve(assoc_method m, const assoc_problem *p, const assoc_baseline_opts *o,
                   uint64_t index, assoc_work *w, int *assoc);

/* ---- batched runs and metrics ----------------------------------------------- */

/* Called from the calling thread between chunks of samples. */
typedef void (*assoc_progress_fn)(void *user, const char *what, int64_t done, int64_t total);

/* Runs method m on every sample (OpenMP over samples; the result does not
 * depend on the thread count). assoc: S x K, rate: S (R of assoc, with
 * violations). *ms_per_sample: mean single-sample latency (gain + solve).
 * 0, or -1 with a message (out of memory, ES too large). */
int assoc_run_method(const assoc_dataset *ds, assoc_method m, const assoc_baseline_opts *o,
                     int *assoc, double *rate, double *ms_per_sample, assoc_progress_fn progress,
                     void *user, sg_io_error *err);

/* Load balancing of models.md (K <= ASSOC_MAX_UES): at each BS with more than N UEs keep the N
 * with the largest score[k*M + m] (score NULL: all equal), ties broken by the
 * larger link SNR gain[m,k,k], then the lower k; the others are dropped. */
void assoc_load_balance(const assoc_problem *p, const int *assoc, const double *score, int *out);

typedef struct assoc_metrics {
  int64_t samples;
  double mean_rate;       /* R(A) with violations */
  double violation_ratio; /* fraction of samples with some load > N */
  double mean_lb_rate;    /* R after load balancing */
  double mean_dropped;    /* UEs dropped per sample in the load-balanced association */
  double ratio_to_es;     /* mean_lb_rate / mean ES rate; NaN without ES */
  double ms_per_sample;
} assoc_metrics;

/* Metrics of associations assoc (S x K). score: S x K x M or NULL (see
 * assoc_load_balance). es_rate: S or NULL. lb_assoc/lb_rate (S x K, S) receive
 * the load-balanced associations and rates when not NULL. 0 or -1 (memory). */
int assoc_metrics_compute(const assoc_dataset *ds, const int *assoc, const double *score,
                          const double *es_rate, double ms_per_sample, assoc_metrics *out,
                          int *lb_assoc, double *lb_rate);

#ifdef __cplusplus
}
#endif
#ifdef __GNUC__
#pragma GCC visibility pop
#endif
#endif
