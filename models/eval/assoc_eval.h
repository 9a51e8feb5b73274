/* Evaluation of association models and baselines (docs/models.md, "Evaluation
 * metrics"; docs/ablation.md): integer roundings of a fractional association
 * A~, the metrics of paper Table 1 over a data set, GNN inference over a data
 * set of any size (M, K, Pt) with the training feature scale, and the JSON
 * report of the ablation study.
 *
 * Layouts as in assoc_wireless.h: A~ of sample s is A[(s*K + k)*M + m]; integer
 * associations assoc[s*K + k] in 0..M-1 or -1 (dropped). */
#ifndef ASSOC_EVAL_H
#define ASSOC_EVAL_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "assoc_gnn.h"
#include "assoc_solvers.h"

/* The shared libraries export what the public headers declare and hide the
 * rest (they are built with -fvisibility=hidden). */
#ifdef __GNUC__
#pragma GCC visibility push(default)
#endif
#ifdef __cplusplus
extern "C" {
#endif

/* ---- integer roundings ------------------------------------------------------------- */

/* Smallest log a~ used by the rounding: entries below exp(ASSOC_LOG_FLOOR)
 * (including exact zeros) count as that. */
#define ASSOC_LOG_FLOOR (-1000.0)

/* The load-feasible rounding of a fractional association A (K x M): the
 * max-weight assignment on log A (floored at ASSOC_LOG_FLOOR), i.e. the most
 * probable association under A among those that respect the limit N. */
void assoc_round_no_violation(const double *A, int M, int N, int K, assoc_assign_work *w,
                              int *assoc);

/* Sampled decoding: per sample, the association of the largest sum-rate
 * among `draws` candidates: the no-violation rounding of A~ and draws - 1
 * no-violation roundings of log a~ + Gumbel noise (the most probable
 * feasible association under a draw from A~; sample s's noise comes from
 * assoc_stream_seed(seed, 2, s)). draws 1 is the plain rounding. rate (S)
 * receives the chosen rates, assoc (S x K, may be NULL) the associations,
 * *us_per_sample (may be NULL) the mean time of one sample's decoding on
 * one thread (the rates' gains included). Deterministic, independent of the
 * thread count. 0, or -1 (draws < 1, no memory). */
int assoc_eval_sampled(const assoc_dataset *ds, const double *A, int draws, uint64_t seed,
                       double *rate, int *assoc, double *us_per_sample);

/* ---- metrics --------------------------------------------------------------------------- */

typedef struct assoc_eval_metrics {
  int64_t samples;
  int M, N, K;
  double violation_ratio;   /* samples whose one-hot (row argmax) overloads some BS */
  double rate;              /* mean R(A_1hot), with violations */
  double rate_lb;           /* mean R after load balancing by dropping (keep largest a~_km) */
  double rate_no_violation; /* mean R of assoc_round_no_violation (never overloads) */
  double mean_dropped;      /* UEs dropped per sample by the load balancing */
  double es_rate;           /* mean ES rate (NaN without ES) */
  double ratio_to_es;       /* rate_lb / es_rate (ratio of means; NaN without ES) */
  double ratio_nv_to_es;    /* rate_no_violation / es_rate */
  double infer_us;          /* inference per sample, batched (features + forward) */
  double latency_us;        /* median single-sample latency (batch 1) */
  int batch;                /* the batch of infer_us */
  int threads;              /* OpenMP threads during the timing */
  int64_t params;           /* trainable parameters (0 for baselines) */
  /* sampled decoding (assoc_eval_sampled; draws 0: not run) */
  int draws;
  double rate_sampled;        /* mean R of the best of the draws */
  double ratio_sampled_to_es; /* rate_sampled / es_rate */
  double decode_us;           /* its time per sample on one thread, beside infer_us */
} assoc_eval_metrics;

/* The integer associations behind the metrics, per sample: where the caller
 * wants them (every member may be NULL; S x K associations as in
 * assoc_wireless.h, S rates). */
typedef struct assoc_eval_assocs {
  int *one_hot; /* row argmax of A~ (may overload a BS) */
  int *lb;      /* one_hot load-balanced: an overloaded BS keeps its N largest a~, -1 dropped */
  int *nv;      /* assoc_round_no_violation (loads <= N, min(K, M*N) UEs served) */
  double *rate, *rate_lb, *rate_nv; /* assoc_rate_int of each */
} assoc_eval_assocs;

/* Fills the metrics of fractional associations A (S x K x M) on ds (the
 * timing and parameter members are left zero). es_rate: S, or NULL. assocs
 * (may be NULL) receives the associations and their rates. Deterministic and
 * independent of the thread count. 0 or -1 (no memory). */
int assoc_eval_assoc_metrics(const assoc_dataset *ds, const double *A, const double *es_rate,
                             assoc_eval_metrics *out, const assoc_eval_assocs *assocs);

/* Metrics of an integer baseline association (S x K) in the same struct:
 * rate and violations as produced, rate_lb after assoc_load_balance (weakest
 * links dropped), rate_no_violation equal to rate_lb (a baseline has no
 * A~ to round again). 0 or -1 (no memory). */
int assoc_eval_baseline_metrics(const assoc_dataset *ds, const int *assoc, const double *es_rate,
                                double ms_per_sample, assoc_eval_metrics *out);

/* Runs ES on every sample of ds: rate (S) receives the optimal rates and
 * assoc (S x K, may be NULL) the optimal associations. 0, or -1 when ES would
 * search more than max_leaves associations per sample or when out of
 * memory. */
int assoc_eval_es_rates(const assoc_dataset *ds, double max_leaves, double *rate, int *assoc);

/* ---- model inference ------------------------------------------------------------------ */

/* How a data set becomes model inputs (models.md, system.md "Model inputs"):
 * p = P_t dBm / 30 per BS, q = 1 per UE, H features divided by the training
 * feature_scale. */
typedef struct assoc_eval_opts {
  double feature_scale; /* the scale stored with the model (> 0) */
  int batch;            /* samples per batch (>= 1; default 256); assoc_gnn_predict runs a
                         * batch in chunks of its default size */
  int latency_samples;  /* single-sample forwards timed for latency_us (default 32; 0: skip) */
  int draws;            /* > 1: also the sampled decoding with this many draws (default 0) */
  uint64_t draw_seed;   /* its seed (default 1) */
} assoc_eval_opts;
assoc_eval_opts assoc_eval_defaults(double feature_scale);

/* 0 when model m can run on ds (2N = fe, fp = fq = 1), else -1 with a message. */
int assoc_eval_check(const assoc_gnn *m, const assoc_dataset *ds, sg_io_error *err);

/* Runs m in eval mode (no noise, no gradient) on every sample of ds in
 * batches, each through assoc_gnn_predict (chunked: the working memory stays
 * a few MiB above the weights); A (S x K x M) receives A~ as double.
 * *seconds (may be NULL): wall time of inputs + forward. 0, or -1 with a
 * message. */
int assoc_eval_infer(const assoc_gnn *m, const assoc_dataset *ds, const assoc_eval_opts *o,
                     double *A, double *seconds, sg_io_error *err);

/* assoc_eval_infer + assoc_eval_assoc_metrics + timings (batched per sample and
 * single-sample median) + parameter count. A (may be NULL) receives A~,
 * assocs (may be NULL) the associations and rates behind the metrics.
 * 0, or -1 with a message. */
int assoc_eval_model(const assoc_gnn *m, const assoc_dataset *ds, const assoc_eval_opts *o,
                     const double *es_rate, assoc_eval_metrics *out, double *A,
                     const assoc_eval_assocs *assocs, sg_io_error *err);

/* ---- reports ------------------------------------------------------------------------ */

/* Writes a JSON number (null when not finite). */
void assoc_json_write_number(FILE *f, double v);
/* Writes a JSON string literal with escapes. */
void assoc_json_write_string(FILE *f, const char *s);
/* The metrics as one JSON object: {"violation_ratio": ..., "rate": ...,
 * "rate_load_balanced": ..., "rate_no_violation": ..., "ratio_to_es": ...,
 * "infer_us": ..., "params": ..., ...}. */
void assoc_eval_metrics_json(FILE *f, const assoc_eval_metrics *x);

/* Adds <prefix>_assoc (int32 S x K: the BS of each UE, -1 dropped) and
 * <prefix>_rate (float64 S) to w, as 'assoc baselines --out' writes a
 * method (docs/system.md). 0, or -1 with a message. */
int assoc_npz_add_assoc(sg_npz_writer *w, const char *prefix, const assoc_dataset *ds,
                        const int *assoc, const double *rate, sg_io_error *err);

/* Adds the associations of a model's evaluation (every member of x set) to
 * w: <key>_onehot_assoc/_rate (row argmax), <key>_lb_assoc/_rate (load
 * balanced) and <key>_nv_assoc/_rate (no-violation rounding), key e.g.
 * assoc_gnn_variant_key. 0, or -1 with a message. */
int assoc_eval_npz_add(sg_npz_writer *w, const char *key, const assoc_dataset *ds,
                       const assoc_eval_assocs *x, sg_io_error *err);

/* ---- statistics over runs ---------------------------------------------------------- */

/* Mean and sample standard deviation (divisor n - 1) of x[0], x[stride],
 * ..., x[(n-1) stride], summed in that order; sd is NaN for n < 2, both are
 * NaN for n < 1 and the mean of one value is that value. */
void assoc_mean_sd(const double *x, int n, size_t stride, double *mean, double *sd);

/* The real-valued members of assoc_eval_metrics (violation_ratio .. latency_us,
 * then the sampled decoding's rate_sampled, ratio_sampled_to_es and decode_us),
 * by their JSON names, e.g. for per-run tables. */
enum { ASSOC_EVAL_REAL_METRICS = 13, ASSOC_EVAL_SAMPLED_METRICS = 3 /* the last three */ };
typedef struct assoc_eval_real_metric {
  const char *name; /* JSON key, as in assoc_eval_metrics_json */
  size_t offset;    /* of the double in assoc_eval_metrics */
} assoc_eval_real_metric;
extern const assoc_eval_real_metric assoc_eval_real_metrics[ASSOC_EVAL_REAL_METRICS];

/* Every real-valued metric of n runs (n >= 1) as its mean (into mean) and
 * sample standard deviation (into sd, may be NULL) with assoc_mean_sd; the
 * other members (sizes, batch, threads, params) are copied from runs[0]. */
void assoc_eval_metrics_mean_sd(const assoc_eval_metrics *runs, int n, assoc_eval_metrics *mean,
                                assoc_eval_metrics *sd);

/* Writes a file atomically: write(f, user) fills a temporary file beside
 * path, which is renamed over path only when write returned 0 and every
 * write succeeded. 0, or -1 with a message in err (path untouched). */
int assoc_write_atomic(const char *path, int (*write)(FILE *f, void *user), void *user,
                       sg_io_error *err);

/* The paper's Table 1 (MRT rows plus times and counts) for one model;
 * NaN where the paper gives no number. */
typedef struct assoc_paper_row {
  const char *name;   /* "AttSKGS-GNN", ... */
  double violation;   /* fraction */
  double rate;        /* sum-rate with violations (MRT) */
  double rate_lb;     /* load-balanced sum-rate (MRT) */
  double train_hours; /* A100 */
  double infer_ms;
  double params_m; /* millions */
} assoc_paper_row;
/* The paper's row for variant v. */
assoc_paper_row assoc_paper_table1(assoc_gnn_variant v);

/* One method of an ablation: a model or a baseline. A model trained n_runs
 * times (n_runs >= 1, e.g. with several seeds) is written with its runs:
 * "metrics" and "train_seconds" are then the means over per_seed and
 * per_seed_train_seconds (assoc_eval_metrics_mean_sd; the members metrics
 * and train_seconds are not used), and "seeds", "per_seed" (every real
 * metric and train_seconds, one value per run) and "sd" (their sample
 * standard deviations) are added. n_runs 0: one evaluation as given. */
typedef struct assoc_ablation_entry {
  const char *name; /* "AttSKGS-GNN", "ES", ... */
  const char *kind; /* "model" or "baseline" */
  assoc_eval_metrics metrics;
  double train_seconds; /* NaN for baselines */
  int epochs;           /* 0 for baselines */
  int n_runs;
  const uint64_t *seeds;                /* n_runs */
  const assoc_eval_metrics *per_seed;   /* n_runs */
  const double *per_seed_train_seconds; /* n_runs */
} assoc_ablation_entry;

/* A generalisation curve (paper Fig. 4): the load-balanced rate (and the
 * no-violation rate) of each method against a varied parameter. */
typedef struct assoc_ablation_curve {
  const char *parameter; /* "K", "pt_dbm", ... */
  int points, methods;
  const double *x;          /* points */
  const char *const *names; /* methods */
  const double *rate_lb;    /* methods x points */
  const double *rate_nv;    /* methods x points (may be NULL) */
  /* Standard deviations over runs, methods x points (may be NULL), written
   * as rate_load_balanced_sd and rate_no_violation_sd for the methods i
   * with runs[i] >= 1 (runs may be NULL: none). */
  const double *rate_lb_sd, *rate_nv_sd;
  const int *runs;
} assoc_ablation_curve;

typedef struct assoc_ablation_report {
  const char *config_json; /* a JSON object describing the run (inserted verbatim), or NULL */
  const assoc_ablation_entry *entries;
  int n_entries;
  const assoc_ablation_curve *curves;
  int n_curves;
  /* Further top-level members, inserted verbatim after "curves" (e.g.
   * "\"beams\": [...]", without a leading comma), or NULL. */
  const char *extra_json;
} assoc_ablation_report;

/* Writes the report as JSON to f (0, or -1 on a write error). */
int assoc_ablation_json(FILE *f, const assoc_ablation_report *r);
/* The same, atomically to path. */
int assoc_ablation_write_json(const char *path, const assoc_ablation_report *r, sg_io_error *err);

#ifdef __cplusplus
}
#endif
#ifdef __GNUC__
#pragma GCC visibility pop
#endif
#endif
