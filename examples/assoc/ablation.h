/* assoc ablation, shared by its parts: ablation.c (options and the
 * command), ablation_run.c (data, training, evaluation, the curve over K),
 * ablation_report.c (table.md, ablation.json, CSV and plot data) and
 * ablation_plots.c (the gnuplot script and running it). */
#ifndef ASSOC_ABLATION_H
#define ASSOC_ABLATION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "cli.h"
#include "assoc_eval.h"
#include "assoc_train.h"

enum { ONEHOT_SAMPLES = 4, MAX_CURVE_POINTS = 64 };

/* The baselines of the sum-rate-against-K curve (Fig. 4a): the curve's
 * first N_CURVE_BASELINES methods, in this order, before the models. The
 * plots style and label them by position. */
enum { N_CURVE_BASELINES = 5 };
extern const assoc_method abl_curve_baselines[N_CURVE_BASELINES];

/* ---- configuration ------------------------------------------------------------------ */

typedef struct abl_args {
  const char *out;
  bool quick, no_plots, quiet, help;
  bool use[ASSOC_GNN_VARIANT_COUNT];
  assoc_train_config train; /* variant set per model */
  int64_t train_samples, val_samples, test_samples, curve_samples;
  int k_min, k_max, k_step;
  uint64_t seed;
  int threads;
} abl_args;

/* ---- state of a run ------------------------------------------------------------------- */

typedef struct model_run {
  assoc_gnn_variant variant;
  char key[32]; /* file stem, e.g. "attskgs-gnn" */
  char ckpt[1024], log[1024];
  assoc_gnn *model; /* loaded back from the checkpoint */
  double feature_scale;
  double train_seconds, wall_seconds;
  int epochs;
  assoc_eval_metrics test;
  double onehot[ONEHOT_SAMPLES][ASSOC_MAX_UES]; /* row argmax of A~ of the first test samples */
} model_run;

typedef struct curve_data {
  int points, methods;
  double x[MAX_CURVE_POINTS];
  const char *names[16];
  double *lb, *nv; /* methods x points */
} curve_data;

typedef struct abl_run {
  const abl_args *a;
  assoc_dataset train, val, test;
  model_run models[ASSOC_GNN_VARIANT_COUNT];
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

/* ---- ablation_run.c ------------------------------------------------------------------- */

/* Generates the training, validation and test sets (writing test.npz) and
 * trains every model of --models; 0 or -1 (message printed). */
int abl_train(abl_run *r);
/* Evaluates the models and the baselines on the test set and computes the
 * curve over K; 0 or -1 (message printed). */
int abl_evaluate(abl_run *r);

/* ---- ablation_report.c ------------------------------------------------------------------ */

/* Writes fn's output to the file `name` in the output directory, atomically;
 * 0 or -1 (message printed). */
int abl_write_in_dir(const abl_run *r, const char *name, int (*fn)(FILE *, void *), void *user);
/* The Table-1-like table in Markdown (`user` is the abl_run). */
int abl_write_table(FILE *f, void *user);
/* table.md, curve_k.csv and onehot.dat; 0 or -1 (message printed). */
int abl_write_results(abl_run *r);
/* ablation.json, with `plots` (what became of the plots) in its config. */
int abl_write_json(abl_run *r, const char *plots);

/* ---- ablation_plots.c ------------------------------------------------------------------- */

/* Writes plots.gp and runs gnuplot on it. Returns what became of the plots:
 * "written", "not requested (--no-plots)" or "skipped: ..." (with a note on
 * stderr). */
const char *abl_make_plots(const abl_run *r);

#endif
