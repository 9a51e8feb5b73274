/* assoc ablation, shared by its parts: ablation.c (options and the
 * command), ablation_data.c (the fixed data sets and the baselines),
 * ablation_run.c (training and evaluating every model with every seed, the
 * means and standard deviations), ablation_report.c (table.md,
 * ablation.json, CSV and plot data) and ablation_plots.c (the gnuplot
 * script and running it). */
#ifndef ASSOC_ABLATION_H
#define ASSOC_ABLATION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "cli.h"
#include "assoc_eval.h"
#include "assoc_train.h"

enum { ONEHOT_SAMPLES = 4, MAX_CURVE_POINTS = 64, ABL_MAX_SEEDS = 100 };

/* The models: the paper's four (index = assoc_gnn_variant) and, at index
 * ABL_IMPROVED, SKGS-GNN+: SKGS-GNN on the link-nodes features trained on
 * the ES associations of its training set (abl_improved_config). */
enum { ABL_IMPROVED = ASSOC_GNN_VARIANT_COUNT, ABL_MAX_MODELS };
extern const char *const abl_improved_name; /* "SKGS-GNN+" */
/* Turns a run's configuration into SKGS-GNN+'s. */
void abl_improved_config(assoc_train_config *c);
/* A model's display name, by index. */
const char *abl_model_name(int index);

/* The training set of run seed s is generated with seed s for the base
 * seed and with ABL_TRAIN_SEED_OFFSET + s for every other seed: a range the
 * fixed sets of the run (base seed + 1, + 2, + 100 + K) never reach. */
#define ABL_TRAIN_SEED_OFFSET (UINT64_C(1) << 62)

/* The baselines of the sum-rate-against-K curve (Fig. 4a): the curve's
 * first N_CURVE_BASELINES methods, in this order, before the models. The
 * plots style and label them by position. */
enum { N_CURVE_BASELINES = 5 };
extern const assoc_method abl_curve_baselines[N_CURVE_BASELINES];

/* ---- configuration ------------------------------------------------------------------ */

typedef struct abl_args {
  const char *out;
  bool quick, no_plots, quiet, help;
  bool use[ABL_MAX_MODELS];
  assoc_train_config train; /* variant and seed set per run */
  int64_t train_samples, val_samples, test_samples, curve_samples;
  int k_min, k_max, k_step;
  uint64_t seed; /* the base seed: fixed data sets, first run */
  int seeds;     /* runs per model, seeds seed .. seed + seeds - 1 */
  int draws;     /* sampled decoding of the models' test results (assoc eval --draws) */
  int threads;
} abl_args;

/* ---- state of a run ------------------------------------------------------------------- */

/* The per-epoch series of a training run, averaged over the seeds for the
 * training plots (columns of the training log). */
enum {
  EPOCH_LOSS,
  EPOCH_TRAIN_RATE,
  EPOCH_VIOLATION,
  EPOCH_VAL_LB_RATE,
  EPOCH_VAL_VIOLATION,
  EPOCH_SERIES
};
extern const char *const abl_epoch_series_names[EPOCH_SERIES];

/* One model trained with one seed. */
typedef struct seed_run {
  uint64_t seed;
  char ckpt[1024], log[1024];
  double train_seconds, wall_seconds;
  int epochs;
  assoc_eval_metrics test;
  double curve_lb[MAX_CURVE_POINTS], curve_nv[MAX_CURVE_POINTS];
  double *epoch_series; /* train.epochs x EPOCH_SERIES, NaN where not logged */
} seed_run;

/* One model over its seeds. */
typedef struct model_run {
  assoc_gnn_variant variant;
  int index;                   /* in abl_args.use: the variant, or ABL_IMPROVED */
  const char *name;            /* abl_model_name(index) */
  char key[32];                /* file stem, e.g. "attskgs-gnn" */
  seed_run *runs;              /* abl_args.seeds */
  int n_runs;                  /* completed runs */
  assoc_eval_metrics mean, sd; /* of the test metrics over the runs */
  double train_seconds, train_seconds_sd;
  double *epoch_mean, *epoch_sd;                /* train.epochs x EPOCH_SERIES */
  double onehot[ONEHOT_SAMPLES][ASSOC_MAX_UES]; /* row argmax of A~, first seed's model */
} model_run;

typedef struct curve_data {
  int points, methods;
  double x[MAX_CURVE_POINTS];
  const char *names[16];
  double *lb, *nv;       /* methods x points: baselines, then the models' means */
  double *lb_sd, *nv_sd; /* methods x points: the models' sd over seeds (NaN for baselines) */
  int runs[16];          /* per method: seeds behind the row (0: a baseline) */
  assoc_dataset sets[MAX_CURVE_POINTS];
  double *es_rate[MAX_CURVE_POINTS]; /* ES rate per sample of each set */
} curve_data;

typedef struct abl_run {
  const abl_args *a;
  assoc_dataset val, test;
  model_run models[ABL_MAX_MODELS];
  int n_models;
  assoc_eval_metrics base[ASSOC_METHOD_COUNT];
  bool base_done[ASSOC_METHOD_COUNT];
  int *es_assoc; /* test set, S x K */
  double *es_rate;
  curve_data curve;
  double seconds_total;
} abl_run;

/* ---- ablation.c ---------------------------------------------------------------------- */

/* Progress on stderr unless --quiet. */
void abl_note(const abl_args *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* buf = dir/name. */
void abl_path_in(char *buf, size_t len, const char *dir, const char *name);

/* The seed of run r (0-based) and the seed of its training set. */
uint64_t abl_run_seed(const abl_args *a, int r);
uint64_t abl_train_data_seed(const abl_args *a, int r);

/* ---- ablation_data.c ------------------------------------------------------------------ */

/* Generates S samples with K UEs of the paper scenario; 0 or -1 (printed). */
int abl_generate(int K, int64_t S, uint64_t seed, assoc_dataset *ds);
/* The fixed data sets (validation, test, written to test.npz, and the
 * curve's), the baselines on the test set and on every curve point; 0 or
 * -1 (message printed). */
int abl_prepare(abl_run *r);
void abl_free_data(abl_run *r);

/* ---- ablation_run.c ------------------------------------------------------------------- */

/* Trains every model of --models with every seed, evaluates each on the
 * test set and the curve sets, and summarises them over the seeds; 0 or -1
 * (message printed). */
int abl_train_models(abl_run *r);
void abl_free_models(abl_run *r);

/* ---- ablation_report.c ------------------------------------------------------------------ */

/* Writes fn's output to the file `name` in the output directory, atomically;
 * 0 or -1 (message printed). */
int abl_write_in_dir(const abl_run *r, const char *name, int (*fn)(FILE *, void *), void *user);
/* The Table-1-like table in Markdown (`user` is the abl_run). */
int abl_write_table(FILE *f, void *user);
/* table.md, curve_k.csv, onehot.dat and, with several seeds, the
 * per-epoch means and sds train_<model>-seeds.csv; 0 or -1 (message
 * printed). */
int abl_write_results(abl_run *r);
/* ablation.json, with `plots` (what became of the plots) in its config. */
int abl_write_json(abl_run *r, const char *plots);

/* ---- ablation_plots.c ------------------------------------------------------------------- */

/* Writes plots.gp and runs gnuplot on it. Returns what became of the plots:
 * "written", "not requested (--no-plots)" or "skipped: ..." (with a note on
 * stderr). */
const char *abl_make_plots(const abl_run *r);

#endif
